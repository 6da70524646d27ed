"""How long a verify attempt takes on each "not found" path: the figures in docs/security.md.

Not a test (a timed test would be flaky); run it by hand:

    .venv/bin/python -m tests.bench_verify_timing [--rounds 400] [--backend sqlite|postgresql]

It builds the app on a scratch database, submits one filing, and then times, in a
shuffled order, POSTs of the verify form (the whole request: CSRF, captcha, the
attempt, a new challenge, the commit, the page) and calls of `verify()` alone, for
an unknown phone, a wrong code and a wrong ID last six. Each answers 该条验证库里找不到
记录或已完成验证。; the wrong-ID count is put back after each try so the filing stays open.
"""

import argparse
import json
import os
import random
import re
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from flask_migrate import upgrade

from portal import create_app, providers
from portal.clock import utcnow
from portal.extensions import db
from portal.messages import Outcome
from portal.models import Verification
from portal.verification import verify
from tests.conftest import pg_database
from tests.factories import CAPTCHA, form_fields, new_filing_body

PHONE, ID_LAST6 = "13900000001", "011239"
UNKNOWN_PHONE = "13700000009"


@contextmanager
def scratch_database(backend: str):
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.sqlite3"
        return
    with pg_database(f"portal_bench_timing_{os.getpid()}") as url:
        yield url


def cases(code: str) -> dict[str, dict[str, str]]:
    wrong_code = f"{(int(code) + 500_000) % 1_000_000:06d}"
    return {
        "unknown phone": {"code": code, "phone": UNKNOWN_PHONE, "id_last6": ID_LAST6},
        "wrong code": {"code": wrong_code, "phone": PHONE, "id_last6": ID_LAST6},
        "wrong ID": {"code": code, "phone": PHONE, "id_last6": "999999"},
    }


def reset_wrong_ids() -> None:
    db.session.execute(sa.update(Verification).values(wrong_id_count=0))
    db.session.commit()


def time_requests(client, values: dict[str, dict[str, str]], rounds: int) -> dict[str, list]:
    order = [name for name in values for _ in range(rounds)]
    random.shuffle(order)
    times: dict[str, list[float]] = {name: [] for name in values}
    for name in order:
        fields = form_fields(client.get("/tianjin/verify").get_data(as_text=True))
        data = {**fields, "captcha": CAPTCHA, **values[name]}
        start = time.perf_counter()
        response = client.post("/tianjin/verify", data=data)
        times[name].append(time.perf_counter() - start)
        assert Outcome.NOT_FOUND.message in response.get_data(as_text=True), name
        reset_wrong_ids()
    return times


def time_operation(values: dict[str, dict[str, str]], rounds: int) -> dict[str, list]:
    order = [name for name in values for _ in range(rounds)]
    random.shuffle(order)
    times: dict[str, list[float]] = {name: [] for name in values}
    for name in order:
        given = values[name]
        start = time.perf_counter()
        result = verify("tianjin", given["phone"], given["code"], given["id_last6"], utcnow())
        db.session.commit()
        times[name].append(time.perf_counter() - start)
        assert result.outcome == Outcome.NOT_FOUND, name
        reset_wrong_ids()
    return times


def summary(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Median and quartiles in ms, and the median's 95% interval (order statistics)."""
    rows = {}
    for name, samples in times.items():
        ordered = sorted(samples)
        n = len(ordered)
        half_width = int(1.96 * (n**0.5) / 2)
        quartiles = statistics.quantiles(ordered, n=4)
        rows[name] = {
            "median_ms": round(statistics.median(ordered) * 1000, 3),
            "q1_ms": round(quartiles[0] * 1000, 3),
            "q3_ms": round(quartiles[2] * 1000, 3),
            "median_95ci_ms": [
                round(ordered[max(n // 2 - half_width, 0)] * 1000, 3),
                round(ordered[min(n // 2 + half_width, n - 1)] * 1000, 3),
            ],
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    args = parser.parse_args()
    with scratch_database(args.backend) as url, tempfile.TemporaryDirectory() as folder:
        sms_file = Path(folder) / "sms.jsonl"
        app = create_app(
            {
                "DATABASE_URL": url,
                "SECRET_KEY": "bench",
                "SMS_BACKEND": "file",
                "SMS_FILE_PATH": str(sms_file),
                "CAPTCHA_TEST_ANSWER": CAPTCHA,
                "REDIS_URL": "",
                "RATELIMIT_ENABLED": "false",
            }
        )
        with app.app_context():
            upgrade()
            _, api_key = providers.create("bench", None, utcnow())
            db.session.commit()
            client = app.test_client()
            headers = {"Authorization": f"Bearer {api_key}"}
            response = client.post("/api/v1/filings", json=new_filing_body(), headers=headers)
            assert response.status_code == 201, response.get_data(as_text=True)
            texts = [json.loads(line) for line in sms_file.read_text().splitlines()]
            code = next(re.search(r"\d{6}", t["text"]).group() for t in texts if t["to"] == PHONE)
            values = cases(code)
            time_requests(client, values, 30)  # warm up
            report = {
                "backend": args.backend,
                "rounds": args.rounds,
                "request": summary(time_requests(client, values, args.rounds)),
                "verify()": summary(time_operation(values, args.rounds)),
            }
            db.session.remove()
            db.engine.dispose()
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
