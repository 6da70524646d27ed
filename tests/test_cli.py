"""`flask providers create` (SPEC §8): a key shown once, kept only as its digest."""

import hashlib
import json
import os

import pytest
import sqlalchemy as sa

from portal import cli, create_app, providers
from portal.extensions import db
from portal.models import Provider
from tests.conftest import pg_database
from tests.factories import new_filing_body


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def create(runner, *args: str) -> dict:
    result = runner.invoke(args=["providers", "create", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_providers_create_prints_a_key_and_secret_as_the_last_line(runner):
    shown = create(runner, "新接入商", "--callback-url", "https://hooks.example.cn/icp")
    assert set(shown) == {"api_key", "webhook_secret"}
    provider = db.session.scalar(sa.select(Provider).where(Provider.name == "新接入商"))
    assert provider.callback_url == "https://hooks.example.cn/icp"
    assert providers.webhook_secret(provider) == shown["webhook_secret"]
    assert provider.active


def test_the_created_key_works_against_the_api(runner, client):
    api_key = create(runner, "新接入商")["api_key"]
    headers = {"Authorization": f"Bearer {api_key}"}
    response = client.post("/api/v1/filings", json=new_filing_body(), headers=headers)
    assert response.status_code == 201
    filing_id = response.get_json()["id"]
    assert client.get(f"/api/v1/filings/{filing_id}", headers=headers).status_code == 200


def test_the_database_holds_only_the_keys_sha256_digest(runner):
    api_key = create(runner, "新接入商")["api_key"]
    row = db.session.execute(
        sa.text("SELECT * FROM providers WHERE name = :name"), {"name": "新接入商"}
    ).one()
    assert hashlib.sha256(api_key.encode()).hexdigest() in row
    assert all(api_key not in str(value) for value in row)


def test_each_provider_gets_its_own_key_and_secret(runner):
    first = create(runner, "甲接入商")
    second = create(runner, "乙接入商")
    assert first["api_key"] != second["api_key"]
    assert first["webhook_secret"] != second["webhook_secret"]


def test_callback_url_is_optional(runner):
    create(runner, "新接入商")
    provider = db.session.scalar(sa.select(Provider).where(Provider.name == "新接入商"))
    assert provider.callback_url is None


def test_a_taken_provider_name_is_refused_with_a_message(runner):
    create(runner, "新接入商")
    result = runner.invoke(args=["providers", "create", "新接入商"])
    assert result.exit_code != 0
    assert "already exists" in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Provider)) == 1


@pytest.fixture
def never_migrated(env, backend, tmp_path):
    """The environment with its database empty: `db upgrade` never ran on it."""
    if backend == "sqlite":
        yield {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
        return
    with pg_database(f"portal_empty_{os.getpid()}") as url:
        yield {**env, "DATABASE_URL": url}


@pytest.mark.parametrize(
    "command",
    [
        ["sweep"],
        ["demo"],
        ["providers", "create", "新接入商"],
        ["admins", "create", "someone", "--national", "--password", "Long-enough-1234"],
        ["audit", "verify"],
        ["worker", "--burst"],
    ],
    ids=" ".join,
)
def test_a_command_on_a_database_never_migrated_says_so_in_one_line(never_migrated, command):
    app = create_app(never_migrated)
    with app.app_context():  # as `flask` runs a command
        result = app.test_cli_runner().invoke(args=command)

        assert result.exit_code == 1
        assert result.output.strip() == f"Error: {cli.NOT_MIGRATED}"
        assert sa.inspect(db.engine).get_table_names() == []
        db.engine.dispose()
