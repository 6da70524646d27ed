"""How many texts one RQ worker delivers per second to a fast gateway (issue 6: ≥ 500/s).

    .venv/bin/python -m tests.load.sms_throughput [--texts 4000]

On PostgreSQL (a fresh `portal_sms_bench` database) and Redis db 14, with the fake gateway
(tests/load/gateway.py) in a subprocess: the same number of queued texts is delivered
once by one job per text (`deliver_sms`, as the API queues them) and once by batch jobs
(`deliver_sms_batch`, as a noon resend or a relay queues them), each by one `SimpleWorker`
(what `flask worker` runs), timed from the first job to an empty queue.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from flask_migrate import upgrade
from redis import Redis
from rq import Queue, SimpleWorker

from portal import create_app, jobs, providers, queues
from portal.api.schemas import FilingIn
from portal.clock import utcnow
from portal.delivery import outbox
from portal.extensions import db
from portal.filings import submit
from portal.models import MessageStatus, SmsMessage
from tests.load import postgres
from tests.load.data import PROVINCES, filing_body

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "portal_sms_bench"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
GATEWAY_PORT = 8104
MODES = ("one job per text", "batch jobs")


def queued_texts(provider, count: int) -> list[int]:
    """Filings of two principals each (two texts), committed without queueing their jobs."""
    for index in range(count // 2):
        body = filing_body("new_filing")
        body["province"] = PROVINCES[index % len(PROVINCES)]
        submit(provider, FilingIn.model_validate(body), utcnow())
        db.session.info.pop("outbox", None)
        if index % 200 == 0:
            db.session.commit()
    db.session.commit()
    return list(
        db.session.scalars(
            sa.select(SmsMessage.id).where(SmsMessage.status == MessageStatus.QUEUED)
        )
    )


def drain(queue: Queue) -> float:
    started = time.perf_counter()
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    return time.perf_counter() - started


def sent_count() -> int:
    db.session.rollback()
    return db.session.scalar(
        sa.select(sa.func.count()).where(SmsMessage.status == MessageStatus.SENT)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=MODES)
    postgres.add_option(parser)
    args = parser.parse_args()
    postgres.on_fresh_database(args, DATABASE, measure)


def measure(args, database_url: str) -> None:
    redis = Redis.from_url(REDIS_URL)
    redis.flushdb()
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": "sms-throughput",
        "SMS_BACKEND": "http",
        "SMS_HTTP_URL": f"http://127.0.0.1:{GATEWAY_PORT}/sms",
        "PORTAL_ENV": "development",
        "LOG_FORMAT": "text",
    }
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.load.gateway",
            "--port",
            str(GATEWAY_PORT),
            "--redis",
            REDIS_URL,
        ],
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        app = create_app(env)
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"))
            provider, _ = providers.create("短信压测", None, utcnow())
            db.session.commit()
            queue = queues.rq_queue(queues.SMS)
            results = {}
            for mode in args.modes:
                ids = queued_texts(provider, args.texts)
                before = sent_count()
                if mode == "one job per text":
                    for message_id in ids:
                        queue.enqueue(jobs.deliver_sms, message_id)
                else:
                    outbox.queue_texts(ids)
                seconds = drain(queue)
                sent = sent_count() - before
                results[mode] = (len(ids), sent, seconds)
                print(
                    f"{mode}: {sent}/{len(ids)} texts sent in {seconds:.2f} s = {sent / seconds:.0f}/s"
                )
            db.session.remove()
            db.engine.dispose()
    finally:
        os.killpg(gateway.pid, signal.SIGTERM)
        gateway.wait()
    print(f"gateway received {int(redis.get('bench:received') or 0)} texts")


if __name__ == "__main__":
    main()
