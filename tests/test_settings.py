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
    env.update(PORTAL_ENV="production", REDIS_URL=REDIS_TEST_URL, CAPTCHA_TEST_ANSWER="")
    env["PUBLIC_BASE_URL"] = "https://beian.example.cn"
    return env


def test_embedded_default_needs_no_settings(tmp_path):
    config = settings.from_env({}, str(tmp_path))
    assert config["PRODUCTION"] is False
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'portal.sqlite3'}"
    assert config["REDIS_URL"] is None
    assert config["SMS_BACKEND"] == "file"
    assert config["SMS_FILE_PATH"] == str(tmp_path / "sms.jsonl")
    assert config["RATELIMIT_ENABLED"] is True
    assert config["SMS_RECEIPT_TOKEN"] is None
    assert config["SMS_RECEIPT_WAIT_SECONDS"] == 120


def test_the_cloud_gateways_and_receipts_are_set_from_the_environment(tmp_path):
    environ = {
        "SMS_BACKEND": "aliyun,tencent",
        "ALIYUN_SMS_SIGN_NAME": "通信管理局",
        "TENCENT_SMS_REGION": "ap-beijing",
        "SMS_RECEIPT_TOKEN": "t0ken",
        "SMS_RECEIPT_WAIT_SECONDS": "300",
    }
    config = settings.from_env(environ, str(tmp_path))
    assert {name: config[name] for name in environ} == {
        **environ,
        "SMS_RECEIPT_WAIT_SECONDS": 300,
    }
    with pytest.raises(settings.SettingsError, match="SMS_RECEIPT_WAIT_SECONDS"):
        settings.from_env({"SMS_RECEIPT_WAIT_SECONDS": "2m"}, str(tmp_path))


def test_embedded_default_keeps_its_generated_secret_key(tmp_path):
    """Sessions and sealed codes survive a restart: the generated key is stored and reused."""
    first = settings.from_env({}, str(tmp_path))["SECRET_KEY"]
    second = settings.from_env({}, str(tmp_path))["SECRET_KEY"]
    assert len(first) >= 32
    assert first == second
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_production_refuses_to_start_without_its_required_settings():
    required = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "PUBLIC_BASE_URL")
    with pytest.raises(SettingsError) as refused:
        create_app({**PRODUCTION, **dict.fromkeys(required, "")})
    for name in required:
        assert name in str(refused.value)


@pytest.mark.parametrize("missing", settings.REQUIRED_IN_PRODUCTION)
def test_production_names_exactly_the_missing_setting(missing):
    with pytest.raises(SettingsError) as refused:
        create_app({**PRODUCTION, missing: ""})
    named = {name for name in settings.REQUIRED_IN_PRODUCTION if name in str(refused.value)}
    assert named == {missing}


def test_production_texts_link_to_the_public_base_url():
    app = create_app({**PRODUCTION, "PUBLIC_BASE_URL": "https://beian.example.cn/"})
    assert app.config["PUBLIC_BASE_URL"] == "https://beian.example.cn"


@pytest.mark.parametrize("given", ["beian.example.cn", "ftp://beian.example.cn", "https://"])
def test_a_public_base_url_a_phone_cannot_open_is_refused(tmp_path, given):
    with pytest.raises(SettingsError, match="PUBLIC_BASE_URL"):
        settings.from_env({"PUBLIC_BASE_URL": given}, str(tmp_path))


def test_metrics_allow_defaults_to_loopback(tmp_path):
    allowed = settings.from_env({}, str(tmp_path))["METRICS_ALLOW"]
    assert [str(network) for network in allowed] == ["127.0.0.0/8", "::1/128"]


def test_a_metrics_allow_that_is_no_address_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="METRICS_ALLOW"):
        settings.from_env({"METRICS_ALLOW": "10.0.0.0/8,prometheus"}, str(tmp_path))


def test_every_redis_client_gets_the_connect_and_read_time_outs(tmp_path):
    config = settings.from_env({"REDIS_TIMEOUT_SECONDS": "0.8"}, str(tmp_path))
    expected = {"socket_connect_timeout": 0.8, "socket_timeout": 0.8}
    assert config["REDIS_OPTIONS"] == config["RATELIMIT_STORAGE_OPTIONS"] == expected


@pytest.mark.parametrize("given", ["0", "-1", "soon", "nan", "600"])
def test_a_redis_time_out_that_is_no_short_duration_is_refused(tmp_path, given):
    with pytest.raises(SettingsError, match="REDIS_TIMEOUT_SECONDS"):
        settings.from_env({"REDIS_TIMEOUT_SECONDS": given}, str(tmp_path))


def test_a_delivery_job_may_run_180_s_unless_set(tmp_path):
    assert settings.from_env({}, str(tmp_path))["DELIVERY_JOB_SECONDS"] == 180
    assert (
        settings.from_env({"DELIVERY_JOB_SECONDS": "20"}, str(tmp_path))["DELIVERY_JOB_SECONDS"]
        == 20
    )


@pytest.mark.parametrize("given", ["0", "-5", "soon"])
def test_a_delivery_job_time_that_is_no_positive_number_is_refused(tmp_path, given):
    with pytest.raises(SettingsError, match="DELIVERY_JOB_SECONDS"):
        settings.from_env({"DELIVERY_JOB_SECONDS": given}, str(tmp_path))


def test_the_apps_redis_clients_carry_the_time_outs(production_env):
    env = {**production_env, "REDIS_TIMEOUT_SECONDS": "0.7", "RATELIMIT_ENABLED": "true"}
    app = create_app(env)
    queue_options = app.extensions["rq_queues"]["sms"].connection.connection_pool.connection_kwargs
    limiter_storage = app.extensions["rate_limiter"].storage.storage
    limiter_options = limiter_storage.connection_pool.connection_kwargs
    for options in (queue_options, limiter_options):
        assert options["socket_timeout"] == options["socket_connect_timeout"] == 0.7


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
    assert set(app.extensions["rq_queues"]) == {"sms", "webhooks", "maintenance"}


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
    with pytest.raises(SettingsError, match="SMS_BACKEND 'pigeon'"):
        create_app({**PRODUCTION, "SMS_BACKEND": "pigeon"})


def test_http_sms_backend_needs_a_gateway_url():
    with pytest.raises(SettingsError, match="SMS_HTTP_URL"):
        create_app({**PRODUCTION, "SMS_BACKEND": "http", "SMS_HTTP_URL": ""})


@pytest.mark.parametrize(("given", "enabled"), [("false", False), ("FALSE", False), ("true", True)])
def test_rate_limits_switch_off_only_when_asked(tmp_path, given, enabled):
    config = settings.from_env({"RATELIMIT_ENABLED": given}, str(tmp_path))
    assert config["RATELIMIT_ENABLED"] is enabled


def test_secret_key_fallbacks_are_read_and_need_the_data_key(tmp_path):
    """A rotation of `SECRET_KEY` without `DATA_KEY` set would change the key the personal data
    is sealed with (it defaults to `SECRET_KEY`): refused, naming the setting to set."""
    environ = {"SECRET_KEY": "new", "SECRET_KEY_FALLBACKS": " old-2, old-1 ,", "DATA_KEY": "old-1"}
    config = settings.from_env(environ, str(tmp_path))
    assert config["SECRET_KEY_FALLBACKS"] == ["old-2", "old-1"]
    assert config["DATA_KEYS"] == ("old-1",)
    assert settings.from_env({}, str(tmp_path))["SECRET_KEY_FALLBACKS"] == []
    with pytest.raises(SettingsError, match="SECRET_KEY_FALLBACKS needs DATA_KEY"):
        settings.from_env({"SECRET_KEY": "new", "SECRET_KEY_FALLBACKS": "old"}, str(tmp_path))
