"""The sweep and the verify lookup at national scale, on PostgreSQL (issue 6).

    .venv/bin/python -m tests.load.sweep_scale [--rows 1000000] [--expired 100000] [--window N]

Bulk-loads filings (one verification each) with COPY into a fresh `portal_sweep_bench`
database, then measures:

- the verify lookup (a wrong code for a known phone, the full `verify` operation) as p50
  over many attempts with 10,000 filings and again with `--rows` (target: within 1.3×);
- the expiry sweep returning `--expired` due filings out of `--rows` (target: < 5 s): its
  statements with the commits between its chunks, and its last commit (which, as each one
  before it, queues its events' webhook jobs, 50 events a job, on Redis db 14), timed apart;
  the rows it updated in `filings` and `verifications`, and how many of those were HOT.

The expired filings are drawn at random from the last `--window` loaded, by default from all
but the first 10,000: spread over the whole table, the sweep's worst case. In service the
filings that fall due together were submitted together, a day apart from their deadline, and
lie together in the table: `--window 200000` is a day's backlog of which half expired.
"""

import argparse
import os
import random
import statistics
import time
import uuid
from datetime import UTC, timedelta
from pathlib import Path

import psycopg
import sqlalchemy as sa
from flask_migrate import upgrade
from redis import Redis

from portal import create_app, events, providers, sweeps
from portal.clock import utcnow
from portal.extensions import db
from portal.protection import sealing
from portal.protection.personal_data import seal_code, sealed_phone
from portal.verification import verify
from tests.load import bulk, postgres
from tests.load.data import PROVINCES

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "portal_sweep_bench"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
FILING_COLUMNS = (
    "id", "provider_id", "reference", "province_slug", "type", "status", "content",
    "created_at", "deadline",
)  # fmt: skip
VERIFICATION_COLUMNS = (
    "filing_id", "province_slug", "phone_sealed", "phone_digest", "phone_masked", "roles",
    "code_digest", "code_sealed", "id_digest", "id_masked", "status", "wrong_id_count",
    "resend_count", "noon_resend_at", "noon_resent",
)  # fmt: skip

# The live codes of the pending verifications just copied (their ids are the table's own).
LIVE_CODES = """
INSERT INTO live_codes (verification_id, province_slug, code_digest, noon_resend_at)
SELECT id, province_slug, code_digest, noon_resend_at FROM verifications
WHERE filing_id = ANY(%s) AND status = 'pending'
"""


def phone_of(index: int) -> str:
    return f"13{index:09d}"


def load(url: str, provider_id: int, start: int, stop: int, expired: set[int], now) -> None:
    """Filings `start`..`stop`: those in `expired` pending past their deadline, a tenth still
    pending, the rest long decided; one verification each (the pending ones with a live code).
    The expired deadlines follow the order of loading, a millisecond apart, as deadlines follow
    submission in service: the sweep's chunks, read in deadline order, lie as they would."""
    naive_now = now.astimezone(UTC).replace(tzinfo=None)
    filings, verifications = [], []
    for index in range(start, stop):
        filing_id = uuid.uuid4().hex
        if index in expired:
            status = "pending_verification"
            deadline = naive_now - timedelta(days=1) + timedelta(milliseconds=index)
        elif index % 10 == 0:
            status, deadline = "pending_verification", naive_now + timedelta(hours=12)
        else:
            status, deadline = "approved", naive_now - timedelta(days=30)
        province = PROVINCES[index % len(PROVINCES)]
        created = naive_now - timedelta(days=1)
        filings.append((filing_id, provider_id, f"S-{index}", province, "new_website",
                        status, "{}", created, deadline))  # fmt: skip
        pending = status == "pending_verification"
        # Live codes are unique per province: a pending row's "code" is its index.
        code = f"{index % 1_000_000:06d}" if pending else "000000"
        phone = sealed_phone(filing_id, phone_of(index))
        verifications.append((filing_id, province, phone["phone_sealed"], phone["phone_digest"],
                              phone["phone_masked"], '["website"]',
                              sealing.digest("code", code) if pending else f"old-{index}",
                              seal_code(filing_id, code), "x", "**", "pending" if pending else "verified",
                              0, 0, created, False))  # fmt: skip
    bulk.copy_rows(url, {"filings": (FILING_COLUMNS, filings),
                         "verifications": (VERIFICATION_COLUMNS, verifications)})  # fmt: skip
    pending = [row[0] for row in filings if row[5] == "pending_verification"]
    with psycopg.connect(url) as connection:
        connection.execute(LIVE_CODES, [pending])
        connection.execute("ANALYZE filings")
        connection.execute("ANALYZE pending_filings")
        connection.execute("ANALYZE verifications")


def lookup_p50(rows: int, attempts: int = 2000) -> float:
    """p50 in ms of a verify attempt with a wrong code for a known phone (state unchanged)."""
    timings = []
    now = utcnow()
    for _ in range(attempts):
        index = random.randrange(rows)
        province = PROVINCES[index % len(PROVINCES)]
        started = time.perf_counter()
        verify(province, phone_of(index), "999999", "000000", now)
        timings.append((time.perf_counter() - started) * 1000)
        db.session.rollback()
    return statistics.median(timings)


def _time_event_writing() -> list[float]:
    """Time spent writing the webhook events (`events.record_status_changes`), kept apart."""
    spent = [0.0]
    write = events.record_status_changes

    def timed(filing_ids, now):
        started = time.perf_counter()
        try:
            return write(filing_ids, now)
        finally:
            spent[0] += time.perf_counter() - started

    events.record_status_changes = timed
    return spent


def _explain_each_statement() -> None:
    """Print each statement's plan as run, with its rows, buffers and duration (`auto_explain`
    with ANALYZE but no per-node timing, which would slow the statements it measures)."""
    connection = db.session.connection()
    connection.connection.driver_connection.add_notice_handler(
        lambda notice: print(notice.message_primary, flush=True)
    )
    for setting in (
        "LOAD 'auto_explain'",
        "SET client_min_messages = log",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_analyze = on",
        "SET auto_explain.log_buffers = on",
        "SET auto_explain.log_timing = off",
        "SET auto_explain.log_wal = on",
    ):
        connection.exec_driver_sql(setting)


UPDATES = """
SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
WHERE relname IN ('filings', 'verifications')
"""


def _updates_so_far() -> dict[str, tuple[int, int]]:
    """Rows updated in each table, and how many of those updates were HOT, as the server's
    statistics hold them. The expiry commits chunk by chunk, so its own transaction's counters
    would hold only the last chunk. A backend reports its counters at a transaction's end at
    most once a second: this one waits that long, reports, and reads afresh."""
    time.sleep(1.1)
    db.session.execute(sa.select(sa.func.pg_stat_clear_snapshot()))
    db.session.commit()
    return {table: (rows, hot) for table, rows, hot in db.session.execute(sa.text(UPDATES))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--expired", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument(
        "--window", type=int, help="draw the expired from the last WINDOW filings loaded"
    )
    parser.add_argument(
        "--explain", action="store_true", help="print the sweep's plans, rows and buffers"
    )
    postgres.add_option(parser)
    args = parser.parse_args()
    Redis.from_url(REDIS_URL).flushdb()
    postgres.on_fresh_database(args, DATABASE, measure)


def measure(args, url: str) -> None:
    env = {"DATABASE_URL": url, "REDIS_URL": REDIS_URL, "SECRET_KEY": "sweep-scale",
           "PORTAL_ENV": "development", "LOG_FORMAT": "text"}  # fmt: skip
    app = create_app(env)
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        provider, _ = providers.create("规模压测", None, utcnow())
        db.session.commit()
        provider_id = provider.id
        now = utcnow()
        # None of the expired ones is among the first `small`.
        first = args.rows - args.window if args.window else args.small
        expired = set(random.sample(range(max(first, args.small), args.rows), args.expired))
        plain = psycopg.conninfo.make_conninfo(url)
        load(plain, provider_id, 0, args.small, expired, now)
        small_p50 = lookup_p50(args.small)
        print(f"verify lookup p50 with {args.small:,} filings: {small_p50:.2f} ms", flush=True)
        started = time.perf_counter()
        for start in range(args.small, args.rows, 100_000):
            load(plain, provider_id, start, min(start + 100_000, args.rows), expired, now)
        print(f"loaded {args.rows:,} filings in {time.perf_counter() - started:.0f} s", flush=True)
        large_p50 = lookup_p50(args.rows)
        print(
            f"verify lookup p50 with {args.rows:,} filings: {large_p50:.2f} ms"
            f" ({large_p50 / small_p50:.2f}× the small table)",
            flush=True,
        )
        before = _updates_so_far()
        writing = _time_event_writing()
        if args.explain:
            _explain_each_statement()
        started = time.perf_counter()
        returned = sweeps.expire(utcnow())
        statements = time.perf_counter() - started
        db.session.commit()
        total = time.perf_counter() - started
        after = _updates_so_far()
        print(
            f"expiry sweep: {len(returned):,} of {args.rows:,} filings returned in {total:.2f} s"
            f" (status updates {statements - writing[0]:.2f} s, writing the {len(returned):,}"
            f" webhook events {writing[0]:.2f} s, the last commit and queueing {total - statements:.2f} s)"
        )
        for table, (rows, hot) in after.items():
            rows, hot = rows - before[table][0], hot - before[table][1]
            print(f"  {table}: {rows:,} rows updated, {hot:,} of them HOT", flush=True)
        db.session.remove()
        db.engine.dispose()


if __name__ == "__main__":
    main()
