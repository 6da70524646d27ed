"""Where the hot routes spend their time: cProfile of each, in-process (docs/performance.md).

    .venv/bin/python -m tests.load.profile_routes [--backend postgresql] [--requests 300]
        [--top 25] [--route verify_page,verify_post,intake,captcha,healthz,texts_job] [--cpu]

The app is built as the bench needs it (a fixed captcha answer, no rate limits, Redis for
the queues and the captcha pool: BENCH_REDIS_URL, default db 14) on a scratch database
(PostgreSQL on the machine's server, or SQLite) and asked through Flask's test client: no
HTTP, no gunicorn, one thread. Each route is asked as tests/load/saturate.py asks it. Per
route: the SQL statements a request issues; its mean wall time and this process's CPU time
without the profiler (PostgreSQL's and Redis's own work is not in the second, which a busy
machine stretches less); the profile's top entries by own and by cumulative time.
`texts_job` is not a route: the worker's job sending one intake's two texts.
"""

import argparse
import cProfile
import io
import os
import pstats
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from tests.bench_verify_timing import scratch_database
from tests.conftest import pg_database
from tests.factories import CAPTCHA, form_fields
from tests.load.data import filing_body

ROUTES = ("healthz", "verify_page", "verify_post", "intake", "captcha")


def build_app(database_url: str, sms_file: Path):
    from flask_migrate import upgrade

    from portal import create_app, providers
    from portal.clock import utcnow
    from portal.extensions import db

    app = create_app(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": "bench",
            "SMS_BACKEND": "file",
            "SMS_FILE_PATH": str(sms_file),
            "CAPTCHA_TEST_ANSWER": CAPTCHA,
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
            "RATELIMIT_ENABLED": "false",
        }
    )
    with app.app_context():
        upgrade()
        _, api_key = providers.create("bench", None, utcnow())
        db.session.commit()
    return app, api_key


def asker(route: str, client, api_key: str) -> Callable[[], None]:
    """One request of the route, as the bench's capacity phase makes it."""
    if route == "texts_job":
        return texts_job(client, api_key)
    if route == "healthz":
        return lambda: _expect(client.get("/healthz"), 200)
    if route == "verify_page":
        return lambda: _expect(client.get("/tianjin/verify"), 200)
    if route == "intake":
        headers = {"Authorization": f"Bearer {api_key}"}
        return lambda: _expect(
            client.post("/api/v1/filings", json=filing_body("new_filing"), headers=headers), 201
        )
    fields = form_fields(client.get("/tianjin/verify").get_data(as_text=True))
    if route == "captcha":
        path = f"/tianjin/captcha/{fields['captcha_id']}.png"
        return lambda: _expect(client.get(path), 200)

    def post_wrong_code() -> None:
        values = {"code": "000000", "phone": f"139{random.randrange(10**8):08d}",
                  "id_last6": "000000", "captcha": CAPTCHA}  # fmt: skip
        response = client.post(
            "/tianjin/verify", data={**fields, **values}, headers={"HX-Request": "true"}
        )
        _expect(response, 200)
        fields.update(form_fields(response.get_data(as_text=True)))

    return post_wrong_code


def texts_job(client, api_key: str, filings: int = 1000) -> Callable[[], None]:
    """`deliver_sms_batch` for one intake's texts, as a worker runs it for each filing (the
    gateway a file): the intakes are made first, their jobs taken off the queue."""
    from portal import jobs, queues
    from portal.extensions import db
    from portal.models import SmsMessage, Verification

    headers = {"Authorization": f"Bearer {api_key}"}
    ids = []
    for _ in range(filings):
        response = client.post("/api/v1/filings", json=filing_body("new_filing"), headers=headers)
        _expect(response, 201)
        ids.append(response.get_json()["id"])
    app = client.application
    with app.app_context():
        queues.rq_queue(queues.SMS).empty()
        per_filing = [
            list(
                db.session.scalars(
                    sa.select(SmsMessage.id)
                    .join(Verification)
                    .where(Verification.filing_id == filing_id)
                )
            )
            for filing_id in ids
        ]

    def send_one_filings_texts() -> None:
        with app.app_context():
            jobs.deliver_sms_batch(per_filing.pop())

    return send_one_filings_texts


def _expect(response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.get_data()[:300])


def count_statements(app, ask: Callable[[], None], requests: int = 20) -> float:
    from portal.extensions import db

    with app.app_context():
        engine = db.engine
    seen = []

    def record(*args) -> None:
        seen.append(1)

    sa.event.listen(engine, "before_cursor_execute", record)
    for _ in range(requests):
        ask()
    sa.event.remove(engine, "before_cursor_execute", record)
    return len(seen) / requests


def profile(route: str, ask: Callable[[], None], requests: int, top: int, cpu: bool = False) -> str:
    for _ in range(30):  # warm-up: pools, template cache, imports
        ask()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(requests):
        ask()
    cpu_ms = (time.process_time() - cpu_start) / requests * 1000
    mean_ms = (time.perf_counter() - start) / requests * 1000
    profiler = cProfile.Profile(time.process_time) if cpu else cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        ask()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    out.write(f"== {route}: {mean_ms:.2f} ms a request without the profiler,"
              f" {cpu_ms:.2f} ms of this process's CPU ==\n")  # fmt: skip
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def _database(backend: str):
    """A scratch database; on PostgreSQL one named for this process, so that two profiles
    (two engineers, a before and an after tree) can run at once."""
    if backend == "sqlite":
        return scratch_database(backend)
    return pg_database(f"portal_profile_{os.getpid()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--route", default=",".join(ROUTES))
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="profile this process's CPU time, not the wall clock (waits on PostgreSQL and "
        "Redis drop out, and so does most of a busy machine's noise)",
    )
    args = parser.parse_args()
    with _database(args.backend) as url, tempfile.TemporaryDirectory() as folder:
        app, api_key = build_app(url, Path(folder) / "sms.jsonl")
        client = app.test_client()
        for route in args.route.split(","):
            ask = asker(route, client, api_key)
            statements = count_statements(app, ask)
            print(f"-- {route}: {statements:.1f} SQL statements a request", flush=True)
            print(profile(route, ask, args.requests, args.top, args.cpu), flush=True)
        from portal.extensions import db

        with app.app_context():
            db.engine.dispose()


if __name__ == "__main__":
    main()
