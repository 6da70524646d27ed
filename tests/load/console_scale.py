"""The console at national scale, on PostgreSQL (issue 14).

    .venv/bin/python -m tests.load.console_scale [--rows 1000000] [--small 10000] [--explain]

Loads `--small` filings over 31 provinces and twelve months (tests/load/bulk.py: their
verifications, texts, events and audit entries, sealed as the portal writes them) into a
fresh `portal_console_bench` database, measures, loads the rest up to `--rows` and measures
again. Each measurement goes through the Flask test client signed in with TOTP as a national
admin or as the admin of the largest province (guangdong): the dashboard, the filing search
(by reference, by phone, by status and a month of dates, the first page unfiltered and its
400th), a
filing's page, the CSV export of 50,000 filings (its time, and its memory while it streams:
tracemalloc's and the process's RSS every 5,000 rows) and the intake (`POST /api/v1/filings`,
texts queued on Redis db 11 or `BENCH_REDIS_URL`, no worker). `--explain` prints `EXPLAIN
(ANALYZE, BUFFERS)` of every statement of one request of each kind that took over 1 ms.
`--url … --profile [KINDS]` profiles the pages instead, as tests/load/profile_routes.py does.
"""

import argparse
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from flask import current_app
from flask.testing import FlaskClient
from flask_migrate import upgrade
from redis import Redis

from portal import audit, create_app, providers
from portal.clock import shanghai_date, utcnow
from portal.extensions import db
from portal.models import Admin, AuditChain, Filing, Provider, Province
from tests.admins import make_admin, sign_in
from tests.load import bulk, postgres, profile_routes
from tests.load.data import filing_body

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "portal_console_bench"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
PROVIDERS = 200
LARGEST = "guangdong"
CHUNK = 25_000
TABLES = (
    "filings",
    "pending_filings",
    "erasure_due",
    "verifications",
    "sms_messages",
    "events",
    "audit_entries",
)
REPEATS = {"dashboard": 20, "search": 40, "detail": 30, "intake": 60}


class RequestContextClient(FlaskClient):
    """Each request in an app context of its own, as in production (its own `g` and DB
    session); unlike the suite's client, a streamed body is left streaming."""

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="",
        metavar="KINDS",
        help="with --url: cProfile each kind of page (those whose name holds one of the"
        " comma-separated KINDS, or all) instead of measuring",
    )
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--url",
        help="an existing database instead of a fresh one: with --load, fill it up to --rows"
        " filings (a new one is migrated to --revision); else measure what it holds",
    )
    parser.add_argument("--load", action="store_true")
    parser.add_argument(
        "--first",
        type=int,
        help="with --load: the filings --first..--rows of a load of --of filings in all (spread"
        " over the months as that load's), not those after what is there",
    )
    parser.add_argument("--of", type=int)
    parser.add_argument(
        "--beside",
        action="store_true",
        help="with --first: beside another load, so without audit entries, ids from --ids-from",
    )
    parser.add_argument("--ids-from", type=int, default=100_000_000)
    parser.add_argument("--revision", default="head")
    postgres.add_option(parser)
    args = parser.parse_args()
    Redis.from_url(REDIS_URL).flushdb()
    try:
        if args.url:
            with _app(args.url).app_context():
                if args.load:
                    part = None
                    if args.first is not None:
                        part = bulk.Part(
                            args.first, args.of or args.rows, args.beside, args.ids_from
                        )
                    _load_up_to(args.url, args.rows, args.revision, part)
                elif args.profile is not None:
                    _profile_all(args.top, args.profile)
                else:
                    _report({_filings(): _measure_all(args.explain)})
                db.session.remove()
                db.engine.dispose()
        else:
            postgres.on_fresh_database(args, DATABASE, measure)
    finally:
        Redis.from_url(REDIS_URL).flushdb()


def _app(url: str):
    env = {"DATABASE_URL": url, "REDIS_URL": REDIS_URL, "SECRET_KEY": "console-scale",
           "PORTAL_ENV": "development", "LOG_FORMAT": "text", "RATELIMIT_ENABLED": "false"}  # fmt: skip
    app = create_app(env)
    app.test_client_class = RequestContextClient
    return app


def measure(args, url: str) -> None:
    """The whole run: `--small` filings, measured; up to `--rows`, measured again."""
    with _app(url).app_context():
        results = {}
        for rows in (args.small, args.rows):
            _load_up_to(url, rows, args.revision)
            results[rows] = _measure_all(args.explain)
        _report(results)
        db.session.remove()
        db.engine.dispose()


def _filings() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Filing))


def _loaded() -> int:
    """How many filings tests/load/bulk.py loaded (the intake's are not among them)."""
    bulk_loaded = Filing.reference.like("BA-%")
    return db.session.scalar(sa.select(sa.func.count()).select_from(Filing).where(bulk_loaded))


def _load_up_to(url: str, rows: int, revision: str, part: bulk.Part | None = None) -> None:
    """More filings, `rows` in all, spread over the months like those loaded before them; or
    a `part` of a larger load."""
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    if not sa.inspect(db.engine).has_table("filings"):
        upgrade(directory=str(ROOT / "migrations"), revision=revision)
    seeding = _seeding()
    loaded, spread = range(_loaded(), rows), range(_loaded(), rows)
    started, building = time.perf_counter(), 0.0
    bulk.carry_on(plain, seeding)
    if part is not None:
        loaded, spread = range(part.first, rows), range(0, part.of)
        if part.beside:
            seeding.audit = False
            seeding.next_verification = seeding.next_message = part.ids_from
    for indices in bulk.chunks(loaded, CHUNK):
        built = time.perf_counter()
        tables = bulk.national_rows(seeding, indices, spread)
        building += time.perf_counter() - built
        bulk.copy_rows(plain, tables)
    if seeding.audit:
        _close_chain(seeding)
    bulk.reset_sequences(plain)
    bulk.analyze(plain, TABLES)
    print(
        f"loaded {_filings():,} filings in {time.perf_counter() - started:.0f} s"
        f" (making the rows {building:.0f} s)",
        flush=True,
    )


def _seeding() -> bulk.Seeding:
    """The providers and an admin per province and a national one (made on a first load);
    the seeding's starting state."""
    now = utcnow()
    if not db.session.scalar(sa.select(sa.func.count()).select_from(Admin)):
        for number in range(PROVIDERS):
            providers.create(f"接入商{number:03d}", None, now)
        for slug in [None, *_slugs()]:
            db.session.add(make_admin(f"bench-{slug or 'national'}", slug, now))
        db.session.commit()
    admins = {slug or "": (id_, name) for id_, name, slug in db.session.execute(
        sa.select(Admin.id, Admin.username, Admin.province_slug))}  # fmt: skip
    return bulk.Seeding(
        provinces=_slugs(),
        provider_ids=db.session.scalars(
            sa.select(Provider.id).where(Provider.name.like("接入商%")).order_by(Provider.id)
        ).all(),
        admins=admins,
        now=now,
        suite=current_app.config.get("CRYPTO_SUITE", "standard"),
        data_key=current_app.config["DATA_KEYS"][0],
    )


def _slugs() -> list[str]:
    return db.session.scalars(sa.select(Province.slug).order_by(Province.slug)).all()


def _close_chain(seeding: bulk.Seeding) -> None:
    """The audit chain's head moved on to the last entry loaded, as `audit.record` leaves it."""
    chain = db.session.get(AuditChain, audit.CHAIN_ID)
    audit._store_chain(seeding.audit_seq, seeding.audit_mac, chain.anchor_seq, chain.anchor_mac)
    db.session.commit()


def _measure_all(explain: bool) -> dict[str, dict]:
    app = current_app
    api_key = _api_key()
    results: dict[str, dict] = {}
    for who, kinds in _kinds().items():
        client = app.test_client()
        response = sign_in(client, f"bench-{who}")
        assert response.status_code == 302, response.status_code
        for kind, path in kinds.items():
            repeats = REPEATS.get(kind.split(":")[0], REPEATS["detail"])
            results[f"{kind} ({who})"] = _timed(client, path, repeats)
            if explain:
                _explain(client, path(), f"{kind} ({who})")
        results[f"CSV export ({who})"] = _export(client)
    results["intake"] = _intake(app, api_key)
    return results


def _api_key() -> str:
    _, api_key = providers.create(f"压测接入商 {utcnow().isoformat()}", None, utcnow())
    db.session.commit()
    return api_key


def _kinds() -> dict[str, dict[str, Callable[[], str]]]:
    """Per admin (national, the largest province's), each kind of console page: a function
    giving the path of one request of it."""
    loaded = _loaded()
    today = shanghai_date(utcnow())
    month = {"created_from": (today - timedelta(days=60)).isoformat(),
             "created_to": (today - timedelta(days=30)).isoformat()}  # fmt: skip
    ids = {
        who: db.session.scalars(
            sa.select(Filing.id)
            .where(sa.true() if who == "national" else Filing.province_slug == who)
            .order_by(sa.func.random())
            .limit(REPEATS["detail"])
        ).all()
        for who in ("national", LARGEST)
    }
    db.session.commit()

    def random_index() -> int:
        return random.randrange(loaded)

    def kinds(who: str) -> dict[str, Callable[[], str]]:
        return {
        "dashboard": lambda: "/admin/",
        "search: first page": lambda: "/admin/filings",
        "search: page 400": lambda: "/admin/filings?page=400",
        "search: reference": lambda: f"/admin/filings?reference={bulk.reference(random_index())}",
        "search: phone": lambda: f"/admin/filings?phone={bulk.site_phone(random_index())}",
        "search: status and a month": lambda: "/admin/filings?" + _query(
            {"status": random.choice(["approved", "returned", "rejected"]), **month}),
        "search: pending": lambda: "/admin/filings?status=pending_verification",
        "filing page": lambda: f"/admin/filings/{random.choice(ids[who])}",
        "audit log": lambda: "/admin/audit",
    }  # fmt: skip

    return {who: kinds(who) for who in ("national", LARGEST)}


def _profile_all(top: int, only: str | None) -> None:
    """Per kind of page: its SQL statements, its CPU time without the profiler, and
    cProfile's top entries (tests/load/profile_routes.py's report)."""
    app = current_app
    for who, kinds in _kinds().items():
        client = app.test_client()
        assert sign_in(client, f"bench-{who}").status_code == 302
        for kind, path in kinds.items():
            if only and not any(part in kind for part in only.split(",")):
                continue

            def ask(client=client, path=path) -> None:
                assert client.get(path()).status_code == 200

            statements = profile_routes.count_statements(app, ask)
            print(f"-- {kind} ({who}): {statements:.1f} SQL statements a request", flush=True)
            print(profile_routes.profile(f"{kind} ({who})", ask, 100, top), flush=True)


def _query(values: dict[str, str]) -> str:
    return "&".join(f"{name}={value}" for name, value in values.items())


def _timed(client, path, repeats: int) -> dict:
    """Wall-clock times; the CPU time this process spent on each request (Flask, the ORM, the
    templates); and PostgreSQL's, its processes' CPU time over the requests, by request. A
    busy machine stretches the first; the CPU times are what the request costs."""
    timings, cpu = [], []
    server_started = _server_cpu()
    for _ in range(repeats):
        url = path()
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return _summary(timings, cpu, (_server_cpu() - server_started) / repeats)


def _summary(timings: list[float], cpu: list[float], server: float) -> dict:
    cuts = statistics.quantiles(timings, n=20)
    return {"p50": statistics.median(timings), "p95": cuts[18], "cpu": statistics.median(cpu),
            "server": server}  # fmt: skip


def _server_cpu() -> float:
    """CPU milliseconds the backends connected to this database (as pg_stat_activity lists
    them) have used; /proc counts in clock ticks."""
    with db.engine.connect() as connection:
        pids = (
            connection.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            )
            .scalars()
            .all()
        )
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def _export(client) -> dict:
    """The 50,000-row export: its time; then again under tracemalloc, the Python heap and the
    process's RSS as it streams, every 5,000 rows."""
    started, started_cpu, server = time.perf_counter(), time.process_time(), _server_cpu()
    rows = _stream(client, lambda _rows: None)
    seconds, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    server = (_server_cpu() - server) / 1000
    samples = []
    tracemalloc.start()
    _stream(
        client, lambda count: samples.append((count, tracemalloc.get_traced_memory()[0], _rss()))
    )
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"rows": rows, "seconds": seconds, "cpu": cpu, "server": server, "heap_peak": peak,
            "samples": samples}  # fmt: skip


def _stream(client, sample) -> int:
    """Reads the export as it streams, calling `sample(rows so far)` every 5,000 rows."""
    response = client.get("/admin/filings.csv", buffered=False)
    assert response.status_code == 200
    lines, next_sample = 0, 5000
    for chunk in response.response:
        lines += chunk.count(b"\n" if isinstance(chunk, bytes) else "\n")
        if lines > next_sample:
            sample(next_sample)
            next_sample += 5000
    response.close()
    return lines - 1


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _intake(app, api_key: str) -> dict:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {api_key}"}
    timings, cpu = [], []
    server_started = _server_cpu()
    for _ in range(REPEATS["intake"]):
        body = filing_body(random.choice(["new_filing", "new_website"]))
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.post("/api/v1/filings", json=body, headers=headers)
        timings.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        assert response.status_code in (200, 201), response.get_data(as_text=True)
    return _summary(timings, cpu, (_server_cpu() - server_started) / REPEATS["intake"])


def _explain(client, path: str, title: str) -> None:
    """EXPLAIN ANALYZE of each statement of one request that took over 3 ms."""
    statements = []

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["started"] = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        spent = (time.perf_counter() - conn.info.pop("started")) * 1000
        if spent > 3 and statement.lstrip().upper().startswith("SELECT"):
            statements.append((spent, statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", before)
    sa.event.listen(db.engine, "after_cursor_execute", after)
    try:
        client.get(path)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", before)
        sa.event.remove(db.engine, "after_cursor_execute", after)
    print(f"\n#### {title}: {path}\n")
    with db.engine.connect() as connection:
        for spent, statement, parameters in statements:
            plan = connection.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
            ).scalars()
            print(f"{spent:.1f} ms:\n{statement}\n{parameters}\n" + "\n".join(plan) + "\n")
        connection.rollback()


def _report(results: dict[int, dict[str, dict]]) -> None:
    """A table per kind of request, p50 and p95 at each size (and the last size's p50 over the
    first's); then each export's time and memory as it streamed."""
    sizes = sorted(results)
    heads = "".join(f" p50 at {size:,} | p95 | CPU p50 | PostgreSQL CPU |" for size in sizes)
    ratio = len(sizes) > 1
    print(f"\n| work |{heads}" + (" × |" if ratio else ""))
    print("|---|" + "---:|---:|---:|---:|" * len(sizes) + ("---:|" if ratio else ""))
    for kind, first in results[sizes[0]].items():
        if "p50" not in first:
            continue
        cells = "".join(
            f" {results[size][kind]['p50']:.1f} ms | {results[size][kind]['p95']:.1f} ms"
            f" | {results[size][kind]['cpu']:.1f} ms | {results[size][kind]['server']:.1f} ms |"
            for size in sizes
        )
        last = results[sizes[-1]][kind]
        print(f"| {kind} |{cells}" + (f" {last['p50'] / first['p50']:.2f}× |" if ratio else ""))
    for size in sizes:
        for kind, export in results[size].items():
            if "rows" not in export:
                continue
            print(f"\n{kind} at {size:,} filings: {export['rows']:,} rows in"
                  f" {export['seconds']:.2f} s (CPU {export['cpu']:.2f} s, PostgreSQL's"
                  f" {export['server']:.2f} s); tracemalloc peak"
                  f" {export['heap_peak'] / 2**20:.1f} MiB; Python heap / RSS by rows:")  # fmt: skip
            for rows, heap, rss in export["samples"]:
                print(f"  {rows:>6,}: {heap / 2**20:6.1f} MiB  {rss / 2**20:7.1f} MiB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
