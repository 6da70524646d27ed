"""Nothing lost (issue 5): a Redis outage during submissions and a worker killed while it
delivers; every code goes out, none twice (the gateway can drop a repeat by its key).

Each test runs a Redis of its own (stopped and started as the test needs) and, for the
killed worker, a real `flask --app wsgi worker --burst` process. A gateway that always
fails is tested in tests/test_sms_jobs.py.
"""

import json
import os
import re
import signal
import threading
import time
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from rq import SimpleWorker
from rq.registry import StartedJobRegistry

from portal import queues
from portal.clock import utcnow
from portal.delivery import outbox, relay
from portal.extensions import db
from portal.messages import Outcome
from portal.models import MessageStatus, SmsMessage, Verification
from portal.protection import sealing
from portal.protection.personal_data import verification_phone
from tests.factories import (
    CAPTCHA,
    ID_A,
    ID_B,
    ID_C,
    ID_D,
    form_fields,
    new_filing_body,
    principal,
    queues_on,
)
from tests.stack import STARTUP_SECONDS, start_flask


@pytest.fixture(params=["postgresql"])
def backend(request) -> str:
    """A worker process shares the database: PostgreSQL, as in production."""
    return request.param


@pytest.fixture
def on_own_redis(env, own_redis) -> None:
    """The app queues its jobs and keeps its rate-limit counters on our Redis (before `app`)."""
    env["REDIS_URL"] = own_redis.url
    env["RATELIMIT_ENABLED"] = "true"


def run_worker(queue, max_jobs: int = 50) -> None:
    every = list(queues_on(queue.connection).values())
    SimpleWorker(every, connection=queue.connection).work(burst=True, max_jobs=max_jobs)


def sent_lines(env) -> list[dict]:
    path = Path(env["SMS_FILE_PATH"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def filing(reference: str, phones: tuple[str, str], ids: tuple[str, str]) -> dict:
    site = {"domain": f"{reference.lower()}.example.cn", "name": "网站"}
    return new_filing_body(
        reference,
        entity={"name": "公司", "principal": principal(phones[0], ids[0])},
        websites=[{**site, "principal": principal(phones[1], ids[1])}],
    )


def submit(client, headers, body) -> None:
    response = client.post("/api/v1/filings", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()


def test_a_redis_outage_loses_no_code_and_sends_none_twice(
    on_own_redis, own_redis, app, client, provider, env
):
    headers = provider[1]
    queue = app.extensions["rq_queues"][queues.SMS]
    submit(client, headers, filing("BEFORE", ("13900000001", "13900000002"), (ID_A, ID_B)))
    run_worker(queue)
    submit(client, headers, filing("QUEUED", ("13900000003", "13900000004"), (ID_C, ID_D)))
    assert queue.count == 1  # the filing's two texts, in one job

    own_redis.stop()  # the queued job is lost with it
    submit(client, headers, filing("DURING", ("13900000005", "13900000006"), (ID_A, ID_B)))
    page = client.get("/tianjin/verify")
    assert page.status_code == 200
    fields = form_fields(page.get_data(as_text=True))
    values = {"code": "000000", "phone": "13900000001", "id_last6": "011239", "captcha": CAPTCHA}
    attempt = client.post("/tianjin/verify", data={**fields, **values})
    assert Outcome.NOT_FOUND.message in attempt.get_data(as_text=True)

    own_redis.start()
    assert queue.count == 0
    later = utcnow() + outbox.RQ_GRACE + outbox.claim_period()
    assert relay.relay(later) == 4
    run_worker(queue)
    assert relay.relay(later + outbox.claim_period()) == 0
    run_worker(queue)

    lines = sent_lines(env)
    assert Counter(line["to"] for line in lines) == {f"1390000000{n}": 1 for n in range(1, 7)}
    db.session.remove()
    digests = {
        verification_phone(v): v.code_digest for v in db.session.scalars(sa.select(Verification))
    }
    for line in lines:
        (code,) = re.findall(r"(?<!\d)\d{6}(?!\d)", line["text"])
        assert sealing.digest("code", code) == digests[line["to"]]
    messages = db.session.scalars(sa.select(SmsMessage)).all()
    assert [(m.status, m.attempts) for m in messages] == [(MessageStatus.SENT, 1)] * 6


class BlockingGateway:
    """An SMS gateway that answers 200, but holds the first request until `release`."""

    def __init__(self):
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.requests: list[tuple[dict, dict]] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                gateway.requests.append((dict(self.headers), body))
                if len(gateway.requests) == 1:
                    gateway.arrived.set()
                    gateway.release.wait(STARTUP_SECONDS)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the worker that asked is gone

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/sms"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def blocking_gateway(env):
    with BlockingGateway() as gateway:
        env["SMS_BACKEND"] = "http"
        env["SMS_HTTP_URL"] = gateway.url
        yield gateway


@pytest.fixture
def immediate_retries(monkeypatch) -> None:
    """RQ retries at once, so RQ's own recovery of the killed job can be run here."""
    zeros = (0,) * len(outbox.SMS_RETRY_DELAYS)
    monkeypatch.setattr(outbox, "SMS_RETRY_DELAYS", zeros)


def test_a_worker_killed_while_sending_is_made_good_by_the_relay(
    on_own_redis, blocking_gateway, immediate_retries, app, client, provider, env, tmp_path
):
    queue = app.extensions["rq_queues"][queues.SMS]
    body = new_filing_body(
        websites=[
            {"domain": "a.example.cn", "name": "网", "principal": principal("13900000001", ID_A)}
        ]
    )
    submit(client, provider[1], body)
    (job_id,) = queue.job_ids

    worker = start_flask(env, ["worker", "--burst"], tmp_path / "worker.log")
    try:
        arrived = blocking_gateway.arrived.wait(STARTUP_SECONDS)
        assert arrived, (tmp_path / "worker.log").read_text(errors="replace")
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(timeout=10) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
    blocking_gateway.release.set()

    db.session.remove()
    (message,) = db.session.scalars(sa.select(SmsMessage)).all()
    assert (message.status, message.attempts) == (MessageStatus.QUEUED, 1)
    started = StartedJobRegistry(queue=queue)
    assert started.get_job_ids(cleanup=False) == [job_id]

    # The relay leaves the text to the job holding it, and takes it at the first sweep after
    # the hold ran out (no RQ_GRACE: the job that held it is dead, not late).
    assert relay.relay(utcnow() + outbox.claim_period() - timedelta(seconds=5)) == 0
    assert relay.relay(utcnow() + outbox.claim_period()) == 1
    run_worker(queue)

    db.session.remove()
    (message,) = db.session.scalars(sa.select(SmsMessage)).all()
    assert (message.status, message.attempts) == (MessageStatus.SENT, 2)
    first, second = blocking_gateway.requests
    assert first[0]["Idempotency-Key"] == second[0]["Idempotency-Key"] == f"sms-{message.id}"
    assert first[1] == second[1]

    # RQ's own recovery: once the dead worker's entry expires (job timeout + 60 s), a
    # worker's maintenance retries the abandoned job. It finds the text sent: no repeat.
    started.cleanup(timestamp=time.time() + 180 + 60 + 1)
    assert started.count == 0
    assert job_id in queue.job_ids
    run_worker(queue)
    assert len(blocking_gateway.requests) == 2
    assert queue.failed_job_registry.count == 0
