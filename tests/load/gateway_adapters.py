"""Texts a second through each gateway adapter, and receipts a second one web process takes
(issue 11: ≥ 300 texts/s through each SDK adapter; ≥ 2,000 receipts/s in batches of 500).

    .venv/bin/python -m tests.load.gateway_adapters [--texts 3000] [--receipts 20000]

Adapters: `SEND_THREADS` threads (a batch job's sending threads) call `send` on one adapter,
against a stand-in in a process of its own (tests/cloud_standins.py, which checks every
request's signature). Baseline from the same run: the `http` adapter to the fake gateway of
tests/load/gateway.py; and the failover of both SDK adapters, its breakers' state in Redis. Receipts: the app in this process on PostgreSQL (a fresh
`portal_receipts_bench` database), `--receipts` texts sent through Aliyun, then their
receipts POSTed 500 to a request through the WSGI stack (Flask's test client), first as new
receipts and then again (all repeats: the lookup without the update).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa
from flask_migrate import upgrade
from redis import Redis

from portal import create_app, providers
from portal.api.schemas import FilingIn
from portal.clock import utcnow
from portal.delivery import sending
from portal.delivery.failover import Failover
from portal.delivery.gateways.http import HttpGateway
from portal.delivery.texts import Text
from portal.extensions import db
from portal.filings import submit
from portal.models import MessageKind, SmsMessage
from tests.cloud_standins import aliyun_settings
from tests.load import postgres
from tests.load.data import filing_body
from tests.test_gateways import aliyun, tencent

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
PORTS = {"aliyun": 8111, "tencent": 8112, "http": 8113}
DATABASE = "portal_receipts_bench"
TOKEN = "bench-receipt-token"
BATCH = 500
FAILOVER = "aliyun,tencent (breakers in Redis)"


class _Port:
    def __init__(self, port: int):
        self.endpoint = f"127.0.0.1:{port}"


def _serve(name: str) -> subprocess.Popen:
    command = (
        ["-m", "tests.load.gateway", "--port", str(PORTS[name]), "--redis", REDIS_URL]
        if name == "http"
        else ["-m", "tests.cloud_standins", name, str(PORTS[name])]
    )
    process = subprocess.Popen([sys.executable, *command], cwd=ROOT, start_new_session=True)
    time.sleep(1.5)
    return process


def adapter(name: str):
    if name == "http":
        return HttpGateway(f"http://127.0.0.1:{PORTS['http']}/sms")
    if name == FAILOVER:
        gateways = [aliyun(_Port(PORTS["aliyun"])), tencent(_Port(PORTS["tencent"]))]
        return Failover(gateways, Redis.from_url(REDIS_URL))
    return {"aliyun": aliyun, "tencent": tencent}[name](_Port(PORTS[name]))


def texts_per_second(name: str, count: int) -> float:
    gateway = adapter(name)
    texts = [
        Text(
            f"sms-{n}",
            f"139{n:08d}",
            "【天津市通信管理局】您的备案短信核验码为123456",
            "123456",
            "tianjin/verify",
        )
        for n in range(count)
    ]
    with ThreadPoolExecutor(max_workers=sending.SEND_THREADS) as senders:
        list(senders.map(gateway.send, texts[: sending.SEND_THREADS * 4]))  # connections warmed
        started = time.perf_counter()
        accepted = list(senders.map(gateway.send, texts))
        seconds = time.perf_counter() - started
    assert len(accepted) == count
    return count / seconds


def measure_adapters(args) -> dict[str, float]:
    rates = {}
    for name in ("http", "aliyun", "tencent", FAILOVER):
        servers = [_serve(s) for s in (("aliyun", "tencent") if name == FAILOVER else (name,))]
        try:
            rates[name] = texts_per_second(name, args.texts)
        finally:
            for server in servers:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait()
        print(
            f"{name}: {rates[name]:.0f} texts/s ({args.texts} texts, {sending.SEND_THREADS} threads)"
        )
    return rates


def measure_receipts(args, database_url: str) -> None:
    server = _serve("aliyun")
    try:
        env = {
            "DATABASE_URL": database_url,
            "SECRET_KEY": "receipts-bench",
            "SMS_BACKEND": "aliyun",
            "SMS_RECEIPT_TOKEN": TOKEN,
            "REDIS_URL": "",
            "LOG_FORMAT": "text",
            **aliyun_settings(_Port(PORTS["aliyun"])),
        }
        app = create_app(env)
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"))
            _sent_texts(args.receipts)
            reports = _reports()
            client = app.test_client()
            for label in ("new receipts", "the same again (repeats)"):
                seconds = _post_all(client, reports)
                print(
                    f"receipts, {label}: {len(reports) / seconds:.0f}/s ({len(reports)} in batches of {BATCH})"
                )
            recorded = db.session.scalar(
                sa.select(sa.func.count()).where(SmsMessage.delivery.is_not(None))
            )
            print(f"texts with a receipt: {recorded}")
            db.session.remove()
            db.engine.dispose()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()


def _sent_texts(count: int) -> None:
    """One filing sent through Aliyun, then `count` texts like its own, sent, with their BizIds."""
    provider, _ = providers.create("回执压测", None, utcnow())
    db.session.commit()
    submit(provider, FilingIn.model_validate(filing_body("new_filing")), utcnow())
    db.session.commit()
    verification_id = db.session.scalar(sa.select(SmsMessage.verification_id).limit(1))
    now = utcnow()
    rows = [
        {
            "verification_id": verification_id,
            "kind": MessageKind.INITIAL,
            "status": "sent",
            "created_at": now,
            "sent_at": now,
            "gateway": "aliyun",
            "gateway_message_id": f"bench-{n}^0",
        }
        for n in range(count)
    ]
    db.session.execute(sa.insert(SmsMessage), rows)
    db.session.commit()


def _reports() -> list[dict]:
    rows = db.session.execute(
        sa.select(SmsMessage.id, SmsMessage.gateway_message_id).where(
            SmsMessage.gateway_message_id.like("bench-%")
        )
    ).all()
    return [
        {
            "phone_number": "13900000001",
            "send_time": "2026-12-01 10:00:00",
            "report_time": "2026-12-01 10:00:05",
            "success": n % 10 != 0,
            "err_code": "DELIVERED" if n % 10 else "MK:0001",
            "err_msg": "用户接收成功",
            "sms_size": "1",
            "biz_id": gateway_id,
            "out_id": f"sms-{message_id}",
        }
        for n, (message_id, gateway_id) in enumerate(rows)
    ]


def _post_all(client, reports: list[dict]) -> float:
    bodies = [json.dumps(reports[i : i + BATCH]) for i in range(0, len(reports), BATCH)]
    started = time.perf_counter()
    for body in bodies:
        response = client.post(
            f"/sms/receipts/aliyun/{TOKEN}", data=body, content_type="application/json"
        )
        assert response.status_code == 200, response.get_data(as_text=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=3000)
    parser.add_argument("--receipts", type=int, default=20000)
    postgres.add_option(parser)
    args = parser.parse_args()
    measure_adapters(args)
    postgres.on_fresh_database(args, DATABASE, measure_receipts)


if __name__ == "__main__":
    main()
