"""Settings from the environment (SPEC §8): the embedded default, production's refusals, URLs."""

import pytest

from portal import create_app, settings
from portal.extensions import db
from portal.settings import SettingsError
from tests.conftest import REDIS_TEST_URL

PRODUCTION = {
    "PORTAL_ENV": "production",
    "SECRET_KEY": "production-secret",
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/portal",
    "REDIS_URL": REDIS_TEST_URL,
    "PUBLIC_BASE_URL": "https://beian.example.cn",
    "CAPTCHA_TEST_ANSWER": "",
    "SMS_BACKEND": "console",
}


@pytest.fixture
def production_env(env) -> dict[str, str]:
    """The test environment switched to production (its database, Redis, no test captcha)."""
    env.update(
        PORTAL_ENV="production",
        REDIS_URL=REDIS_TEST_URL,
        PUBLIC_BASE_URL="https://beian.example.cn",
        CAPTCHA_TEST_ANSWER="",
    )
    return env


def test_embedded_default_needs_no_settings(tmp_path):
    config = settings.from_env({}, str(tmp_path))
    assert config["PRODUCTION"] is False
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'portal.sqlite3'}"
    assert config["REDIS_URL"] is None
    assert config["SMS_BACKEND"] == "file"
    assert config["SMS_FILE_PATH"] == str(tmp_path / "sms.jsonl")
    assert config["RATELIMIT_ENABLED"] is True


def test_embedded_default_keeps_its_generated_secret_key(tmp_path):
    """Sessions and sealed codes survive a restart: the generated key is stored and reused."""
    first = settings.from_env({}, str(tmp_path))["SECRET_KEY"]
    second = settings.from_env({}, str(tmp_path))["SECRET_KEY"]
    assert len(first) >= 32
    assert first == second
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_production_refuses_to_start_without_secret_key_database_redis_and_address():
    required = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "PUBLIC_BASE_URL")
    with pytest.raises(SettingsError) as refused:
        create_app({**PRODUCTION, **dict.fromkeys(required, "")})
    for name in required:
        assert name in str(refused.value)


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_URL", "REDIS_URL", "PUBLIC_BASE_URL"])
def test_production_names_exactly_the_missing_setting(missing):
    with pytest.raises(SettingsError) as refused:
        create_app({**PRODUCTION, missing: ""})
    named = {name for name in settings.REQUIRED_IN_PRODUCTION if name in str(refused.value)}
    assert named == {missing}


def test_production_refuses_a_captcha_test_answer():
    with pytest.raises(SettingsError, match="CAPTCHA_TEST_ANSWER"):
        create_app({**PRODUCTION, "CAPTCHA_TEST_ANSWER": "TEST"})


@pytest.mark.parametrize("misspelt", ["prod", "Production", "staging"])
def test_unknown_portal_env_is_refused(misspelt):
    """A misspelt `production` must not start the development mode with its SMS inbox."""
    with pytest.raises(SettingsError, match=misspelt):
        create_app({**PRODUCTION, "PORTAL_ENV": misspelt})


def test_production_starts_with_its_required_settings():
    app = create_app(PRODUCTION)
    assert app.config["PRODUCTION"] is True
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["CAPTCHA_TEST_ANSWER"] is None
    assert "rq_queue" in app.extensions


@pytest.mark.parametrize(
    ("given", "used"),
    [
        (
            "postgresql://postgres@127.0.0.1:5432/portal",
            "postgresql+psycopg://postgres@127.0.0.1:5432/portal",
        ),
        (
            "postgres://user:pw@db.internal/portal",
            "postgresql+psycopg://user:pw@db.internal/portal",
        ),
        (
            "postgresql+psycopg://postgres@127.0.0.1/portal",
            "postgresql+psycopg://postgres@127.0.0.1/portal",
        ),
        ("sqlite:////srv/portal.sqlite3", "sqlite:////srv/portal.sqlite3"),
    ],
)
def test_database_url_is_used_as_written(given, used):
    """`postgresql://…` works as written: it is served by psycopg 3, the driver shipped."""
    app = create_app({**PRODUCTION, "DATABASE_URL": given})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == used
    with app.app_context():
        assert db.engine.url.render_as_string(hide_password=False) == used


def test_postgresql_url_connects_through_psycopg(database_urls):
    url = database_urls["postgresql"]
    assert url.startswith("postgresql://")
    app = create_app({**PRODUCTION, "DATABASE_URL": url})
    with app.app_context():
        assert db.engine.dialect.driver == "psycopg"
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT 1").scalar() == 1
        db.engine.dispose()


def test_sms_inbox_is_not_served_in_production(production_env):
    client = create_app(production_env).test_client()
    response = client.get("/dev/sms")
    assert response.status_code == 404
    assert "开发短信收件箱" not in response.get_data(as_text=True)


def test_sms_inbox_lists_the_sent_messages_in_development(client, submit_filing, sent_codes):
    submit_filing()
    response = client.get("/dev/sms")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    codes = sent_codes()
    assert set(codes) == {"13900000001", "13900000002"}
    for phone, code in codes.items():
        assert phone in page
        assert code in page


def test_unknown_sms_backend_is_refused():
    with pytest.raises(ValueError, match="SMS_BACKEND 'pigeon'"):
        create_app({**PRODUCTION, "SMS_BACKEND": "pigeon"})


def test_http_sms_backend_needs_a_gateway_url():
    with pytest.raises(ValueError, match="SMS_HTTP_URL"):
        create_app({**PRODUCTION, "SMS_BACKEND": "http", "SMS_HTTP_URL": ""})


@pytest.mark.parametrize(("given", "enabled"), [("false", False), ("FALSE", False), ("true", True)])
def test_rate_limits_switch_off_only_when_asked(tmp_path, given, enabled):
    config = settings.from_env({"RATELIMIT_ENABLED": given}, str(tmp_path))
    assert config["RATELIMIT_ENABLED"] is enabled
