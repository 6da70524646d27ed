"""What one `/metrics` scrape costs with large outbox tables (issue 13, item 7).

    .venv/bin/python -m tests.load.metrics_scrape [--rows 1000000] [--shared-postgres]

Fills `sms_messages` and `events` with `--rows` rows each (one in a hundred still to
deliver, the rest delivered long ago) in a fresh `portal_metrics_bench` database on
PostgreSQL, and in a SQLite file, then times scrapes in-process (the test client, Redis
on db 14): the median and the slowest of `--scrapes`, and apart from them what reading the
backlogs costs (what a scrape pays once per `BACKLOG_SECONDS` per process).
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from flask_migrate import upgrade

from portal import create_app, monitoring, providers
from portal.clock import utcnow
from portal.extensions import db
from tests.load import postgres

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "portal_metrics_bench"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def fill(rows: int) -> None:
    """One filing and verification, `rows` texts and `rows` events, 1 % still to deliver."""
    provider, _ = providers.create("指标压测", None, utcnow())
    db.session.flush()
    now = utcnow()
    db.session.execute(
        sa.text(
            "INSERT INTO filings (id, provider_id, reference, province_slug, type, status,"
            " content, created_at) VALUES ('f1', :provider, 'M-1', 'tianjin', 'new_website',"
            " 'approved', '{}', :now)"
        ),
        {"provider": provider.id, "now": now},
    )
    db.session.execute(
        sa.text(
            "INSERT INTO verifications (id, filing_id, province_slug, phone, roles, code_digest,"
            " code_sealed, id_digest, id_masked, status, wrong_id_count, resend_count,"
            " noon_resend_at, noon_resent) VALUES (1, 'f1', 'tianjin', '13900000001', '[]',"
            " 'x', 'x', 'x', '**', 'verified', 0, 0, :now, false)"
        ),
        {"now": now},
    )
    db.session.commit()
    series = _series(rows)
    db.session.execute(
        sa.text(
            f"INSERT INTO sms_messages (verification_id, kind, status, attempts, created_at,"
            f" sent_at) SELECT 1, 'first', CASE WHEN n % 100 = 0 THEN 'queued' ELSE 'sent' END,"
            f" 1, :now, :now FROM {series}"
        ),
        {"now": now},
    )
    db.session.execute(
        sa.text(
            f"INSERT INTO events (id, filing_id, provider_id, type, occurred_at, status,"
            f" attempts, next_attempt_at, delivered_at) SELECT 'e' || n, 'f1', :provider,"
            f" 'filing.status_changed', :now, 'under_review', 1,"
            f" CASE WHEN n % 100 = 0 THEN :now END, CASE WHEN n % 100 = 0 THEN NULL ELSE :now END"
            f" FROM {series}"
        ),
        {"provider": provider.id, "now": now},
    )
    db.session.commit()
    db.session.execute(sa.text("ANALYZE"))
    db.session.commit()


def _series(rows: int) -> str:
    if db.engine.dialect.name == "postgresql":
        return f"generate_series(1, {rows}) AS s(n)"
    return (
        f"(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows})"
        " SELECT n FROM s)"
    )


def time_scrapes(app, scrapes: int) -> list[float]:
    client = app.test_client()
    timings = []
    for _ in range(scrapes):
        started = time.perf_counter()
        response = client.get("/metrics")
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return timings


def measure(args, url: str) -> None:
    env = {"DATABASE_URL": url, "REDIS_URL": REDIS_URL, "SECRET_KEY": "metrics-bench",
           "PORTAL_ENV": "development", "LOG_FORMAT": "text"}  # fmt: skip
    app = create_app(env)
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        backend = db.engine.dialect.name
        started = time.perf_counter()
        fill(args.rows)
        print(f"{backend}: {args.rows:,} texts and events loaded in"
              f" {time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
        reads = []
        for _ in range(args.scrapes):
            started = time.perf_counter()
            monitoring._read_backlogs()
            reads.append((time.perf_counter() - started) * 1000)
        print(f"{backend}: reading the backlogs p50 {statistics.median(reads):.1f} ms", flush=True)
        db.session.remove()
    timings = time_scrapes(app, args.scrapes)
    print(
        f"{backend}: /metrics p50 {statistics.median(timings):.1f} ms,"
        f" slowest {max(timings):.1f} ms over {args.scrapes} scrapes",
        flush=True,
    )
    with app.app_context():
        db.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=50)
    postgres.add_option(parser)
    args = parser.parse_args()
    postgres.on_fresh_database(args, DATABASE, measure)
    with tempfile.TemporaryDirectory() as folder:
        measure(args, f"sqlite:///{folder}/metrics.sqlite3")


if __name__ == "__main__":
    main()
