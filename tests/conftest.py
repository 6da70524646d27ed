"""Fixtures: the app on SQLite and on PostgreSQL, a client, a provider, filings and their codes.

Each test starts from a migrated database holding only the rollout table: the data
tables are emptied and the data migration (0002) is run again.
"""

import json
import os
import re
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from flask_migrate import stamp, upgrade

from portal import create_app, providers
from portal.clock import utcnow
from portal.extensions import db
from tests.factories import CAPTCHA, new_filing_body

PG_ADMIN_URL = os.environ.get("PORTAL_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
PG_DATABASE = "portal_test"
REDIS_TEST_URL = os.environ.get("PORTAL_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _pg_url() -> str:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)
        ).fetchone()
        if not exists:
            connection.execute(f"CREATE DATABASE {PG_DATABASE}")
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_DATABASE}"


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory) -> dict[str, str]:
    sqlite_path = tmp_path_factory.mktemp("db") / "portal.sqlite3"
    return {"sqlite": f"sqlite:///{sqlite_path}", "postgresql": _pg_url()}


@pytest.fixture(scope="session")
def migrated(database_urls) -> set[str]:
    """Backends already migrated in this session."""
    return set()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def env(backend, database_urls, tmp_path) -> dict[str, str]:
    """The environment the app is built from; a test may change it before using `app`."""
    return {
        "DATABASE_URL": database_urls[backend],
        "SECRET_KEY": "test-secret",
        "SMS_BACKEND": "file",
        "SMS_FILE_PATH": str(tmp_path / "sms.jsonl"),
        "CAPTCHA_TEST_ANSWER": CAPTCHA,
        "REDIS_URL": "",
        "PORTAL_ENV": "development",
    }


@pytest.fixture
def app(env, backend, migrated):
    app = create_app(env)
    app.config.update(TESTING=True)
    with app.app_context():
        if backend not in migrated:
            upgrade()
            migrated.add(backend)
        _reset_data()
        yield app
        db.session.remove()
        db.engine.dispose()


def _reset_data() -> None:
    """Empty every table, then load the rollout table again through its migration."""
    tables = [table for table in reversed(db.metadata.sorted_tables)]
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            names = ", ".join(table.name for table in tables)
            connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(table.delete())
    stamp(revision="0001")
    upgrade()


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
