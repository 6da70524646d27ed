"""`flask providers create` (SPEC §8): a key shown once, kept only as its digest."""

import hashlib
import json

import pytest
import sqlalchemy as sa

from portal import providers
from portal.extensions import db
from portal.models import Provider
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
