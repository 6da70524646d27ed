"""Fixtures: the app on SQLite and on PostgreSQL, a client, a provider, filings and their codes.

Each test starts from a migrated database holding only what the migrations load
(the rollout table): every table is emptied and those rows are put back.
"""

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from flask_migrate import upgrade
from redis import Redis
from rq import Queue

from portal import create_app, providers, queues
from portal.clock import utcnow
from portal.extensions import db
from tests.factories import CAPTCHA, new_filing_body
from tests.servers import Endpoint, RedisServer

PG_ADMIN_URL = os.environ.get("PORTAL_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
# A Redis database of each pytest-xdist worker's own (gw0 → 15, gw1 → 13, …); 14 is the benchmark's.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
REDIS_TEST_URL = os.environ.get("PORTAL_TEST_REDIS", f"redis://127.0.0.1:6379/{15 - 2 * _WORKER}")


@contextmanager
def pg_database(name: str):
    """A fresh PostgreSQL database of this name, dropped at the end; yields its URL."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def sqlite_database_url(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'portal.sqlite3'}"


@pytest.fixture(scope="session")
def postgresql_database_url():
    """Made only when a test runs on PostgreSQL: `-m "not pg"` needs no PostgreSQL."""
    with pg_database(f"portal_test_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="session")
def database_urls(sqlite_database_url, postgresql_database_url) -> dict[str, str]:
    return {"sqlite": sqlite_database_url, "postgresql": postgresql_database_url}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`pg`: every test that needs PostgreSQL; `browser`: every test in tests/browser. The
    production-stack tests (minutes each, mostly waiting) run first, so that with `-n 2` the
    other worker runs the rest beside them instead of both waiting on them at the end."""
    browser_tests = Path(__file__).parent / "browser"
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgresql = callspec is not None and callspec.params.get("backend") == "postgresql"
        if on_postgresql or "postgresql_database_url" in item.fixturenames:
            item.add_marker(pytest.mark.pg)
        if browser_tests in item.path.parents:
            item.add_marker(pytest.mark.browser)
    items.sort(key=lambda item: item.get_closest_marker("stack") is None)


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of the test's own, to stop and start under the app."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def migrated() -> dict:
    """The seed rows of each backend already migrated in this session."""
    return {}


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def env(request, backend, tmp_path) -> dict[str, str]:
    """The environment the app is built from; a test may change it before using `app`."""
    return {
        "DATABASE_URL": request.getfixturevalue(f"{backend}_database_url"),
        "SECRET_KEY": "test-secret",
        "SMS_BACKEND": "file",
        "SMS_FILE_PATH": str(tmp_path / "sms.jsonl"),
        "CAPTCHA_TEST_ANSWER": CAPTCHA,
        "REDIS_URL": "",
        "PORTAL_ENV": "development",
        # Tests send many requests from one address; tests of the limits turn them on.
        "RATELIMIT_ENABLED": "false",
        # Tests send one phone several texts at once; tests/test_pacing.py keeps the limits.
        "SMS_PHONE_MIN_INTERVAL_SECONDS": "0",
        "SMS_PHONE_HOURLY": "1000",
        "SMS_PHONE_DAILY": "1000",
    }


class RequestPerContextClient(FlaskClient):
    """Each request in an app context of its own, as in production: its own `g` (so the
    signed-in user and CSRF token do not leak between clients) and its own DB session. A
    streamed body is read inside it too, as a server reads it before the context ends."""

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **{**kwargs, "buffered": True})


@pytest.fixture
def app(env, backend, migrated):
    app = create_app(env)
    app.config.update(TESTING=True)
    app.test_client_class = RequestPerContextClient
    with app.app_context():
        if backend not in migrated:
            upgrade()
            migrated[backend] = _seed_rows()
        _reset_data(migrated[backend])
        yield app
        db.session.remove()
        db.engine.dispose()


def _seed_rows() -> dict[sa.Table, list[dict]]:
    """The rows the migrations load (the rollout table), kept to restore before each test."""
    with db.engine.connect() as connection:
        return {
            table: [dict(row._mapping) for row in connection.execute(sa.select(table))]
            for table in db.metadata.sorted_tables
        }


def _reset_data(seed: dict[sa.Table, list[dict]]) -> None:
    tables = list(reversed(db.metadata.sorted_tables))
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            names = ", ".join(table.name for table in tables)
            connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(table.delete())
        for table, rows in seed.items():
            if rows:
                connection.execute(table.insert(), rows)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def provider(app):
    """A provider and its API key, as `(provider, headers)`."""
    created, api_key = providers.create("测试接入商", "http://127.0.0.1:9/hook", utcnow())
    db.session.commit()
    return created, {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
def sent_codes(env):
    """Reads the codes sent so far from the `file` SMS backend: `sent_codes()[phone]` is the last."""

    def read() -> dict[str, str]:
        path = Path(env["SMS_FILE_PATH"])
        codes = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                message = json.loads(line)
                codes[message["to"]] = re.search(r"核验码为(\d{6})", message["text"]).group(1)
        return codes

    return read


@pytest.fixture
def submit_filing(client, provider):
    """POSTs a filing through the API and returns its JSON."""
    _, headers = provider

    def submit(body: dict | None = None) -> dict:
        response = client.post("/api/v1/filings", json=body or new_filing_body(), headers=headers)
        assert response.status_code in (200, 201), response.get_json()
        return response.get_json()

    return submit


class Clock:
    """A frozen clock for the modules that read the time; move it with `clock.now = …`."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    frozen = Clock(utcnow())
    for module in (
        "portal.jobs",
        "portal.delivery.outbox",
        "portal.delivery.sending",
        "portal.delivery.webhooks",
        "portal.api.routes",
        "portal.cli",
        "provinces.pages",
        "portal.admin.auth",
    ):
        monkeypatch.setattr(f"{module}.utcnow", frozen)
    return frozen


@pytest.fixture
def redis_connection():
    """The test Redis (db 15), empty before and after."""
    connection = Redis.from_url(REDIS_TEST_URL)
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


@pytest.fixture
def slow_receiver(allow_local_callbacks, provider, request):
    """The provider's callback URL, a local endpoint taking the test module's
    `RECEIVER_DELAY_SECONDS` to answer each post."""
    with Endpoint(delay=request.module.RECEIVER_DELAY_SECONDS) as receiver:
        provider[0].callback_url = receiver.url
        db.session.commit()
        yield receiver


@pytest.fixture
def allow_local_callbacks(env) -> None:
    """Callbacks may reach the test's receivers on 127.0.0.1, as in development (set before
    `app` is built; use it through `usefixtures`, which sets it up first)."""
    env["CALLBACK_ALLOW_PRIVATE"] = "true"


@pytest.fixture
def on_rq(env, redis_connection) -> None:
    """Jobs go to RQ on the test Redis (set before `app` is built)."""
    env["REDIS_URL"] = REDIS_TEST_URL


@pytest.fixture
def rq_queues(on_rq, app) -> dict[str, Queue]:
    return app.extensions["rq_queues"]


@pytest.fixture
def queue(rq_queues) -> Queue:
    """The texts' queue; `run_worker(queue)` runs the jobs of all three."""
    return rq_queues[queues.SMS]
