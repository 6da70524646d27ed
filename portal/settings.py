"""Settings, read from the environment in one place.

With nothing set, the portal runs on the embedded default: a SQLite file and a
secret key in the instance folder, SMS written to a file the `/dev/sms` inbox
reads, jobs run in-process. `PORTAL_ENV=production` refuses to start unless the
secret key, the database, Redis and the public address are given.
"""

import ipaddress
import secrets
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from portal.protection import sealing

REQUIRED_IN_PRODUCTION = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "PUBLIC_BASE_URL")
# Who may read /metrics: the loopback addresses unless METRICS_ALLOW names others.
METRICS_ALLOW = "127.0.0.0/8,::1"
# Connect and read time-out of every Redis client: a frozen Redis costs a page this long per
# call, not redis-py's 5 s default (the portal works on without Redis).
REDIS_TIMEOUT_SECONDS = 0.5
# The embedded default's address (`make run`), the texts' link unless PUBLIC_BASE_URL is set.
DEVELOPMENT_URL = "http://127.0.0.1:5000"
ENVIRONMENTS = ("development", "production")
# The cloud gateways' settings (SPEC §9), read as given; the gateway checks what it needs.
GATEWAY_SETTINGS = (
    "ALIYUN_SMS_ACCESS_KEY_ID",
    "ALIYUN_SMS_ACCESS_KEY_SECRET",
    "ALIYUN_SMS_SIGN_NAME",
    "ALIYUN_SMS_TEMPLATE_CODE",
    "ALIYUN_SMS_ENDPOINT",
    "ALIYUN_SMS_PROTOCOL",
    "TENCENT_SMS_SECRET_ID",
    "TENCENT_SMS_SECRET_KEY",
    "TENCENT_SMS_SDK_APP_ID",
    "TENCENT_SMS_SIGN_NAME",
    "TENCENT_SMS_TEMPLATE_ID",
    "TENCENT_SMS_REGION",
    "TENCENT_SMS_ENDPOINT",
    "TENCENT_SMS_PROTOCOL",
)
MIN_AUDIT_RETENTION_DAYS = 180


class SettingsError(RuntimeError):
    pass


def from_env(environ: Mapping[str, str], instance_path: str) -> dict:
    portal_env = environ.get("PORTAL_ENV") or "development"
    if portal_env not in ENVIRONMENTS:
        # A misspelt "production" must not start the development mode (/dev/sms, test captcha).
        raise SettingsError(f"PORTAL_ENV is development or production, not {portal_env!r}")
    production = portal_env == "production"
    if production:
        missing = [name for name in REQUIRED_IN_PRODUCTION if not environ.get(name)]
        if missing:
            raise SettingsError(f"PORTAL_ENV=production needs {', '.join(missing)}")
        if environ.get("CAPTCHA_TEST_ANSWER"):
            raise SettingsError("CAPTCHA_TEST_ANSWER is refused in production")
        if _flag(environ, "CALLBACK_ALLOW_PRIVATE"):
            raise SettingsError("CALLBACK_ALLOW_PRIVATE is refused in production")
    instance = Path(instance_path)
    secret_key = environ.get("SECRET_KEY") or _instance_secret(instance)
    fallbacks = secret_key_fallbacks(environ.get("SECRET_KEY_FALLBACKS"), environ.get("DATA_KEY"))
    sms_backend = environ.get("SMS_BACKEND") or ("console" if production else "file")
    redis_timeouts = _redis_timeouts(environ)
    return {
        "PRODUCTION": production,
        "SECRET_KEY": secret_key,
        "SECRET_KEY_FALLBACKS": fallbacks,
        "DATA_KEYS": data_keys(environ.get("DATA_KEY"), secret_key),
        "CRYPTO_SUITE": crypto_suite(environ.get("CRYPTO_SUITE")),
        "PERSONAL_DATA_RETENTION_DAYS": _count(environ, "PERSONAL_DATA_RETENTION_DAYS", "30"),
        "SQLALCHEMY_DATABASE_URI": database_url(
            environ.get("DATABASE_URL") or f"sqlite:///{instance / 'portal.sqlite3'}"
        ),
        "REDIS_URL": environ.get("REDIS_URL") or None,
        "SMS_BACKEND": sms_backend,
        "SMS_FILE_PATH": environ.get("SMS_FILE_PATH") or str(instance / "sms.jsonl"),
        "SMS_HTTP_URL": environ.get("SMS_HTTP_URL"),
        **{name: environ.get(name) for name in GATEWAY_SETTINGS},
        # Receipts are taken at /sms/receipts/<gateway>/<token>; unset, every one answers 404.
        "SMS_RECEIPT_TOKEN": environ.get("SMS_RECEIPT_TOKEN") or None,
        # RQ stops a delivery job after this; a killed job's texts are taken again 30 s later.
        "DELIVERY_JOB_SECONDS": _positive(environ, "DELIVERY_JOB_SECONDS", 180),
        "SMS_RECEIPT_WAIT_SECONDS": _count(environ, "SMS_RECEIPT_WAIT_SECONDS") or 120,
        # Pacing per phone, as the carriers require (portal/delivery/pacing.py).
        "SMS_PHONE_MIN_INTERVAL_SECONDS": _count(environ, "SMS_PHONE_MIN_INTERVAL_SECONDS", "60"),
        "SMS_PHONE_HOURLY": _positive(environ, "SMS_PHONE_HOURLY", 5),
        "SMS_PHONE_DAILY": _positive(environ, "SMS_PHONE_DAILY", 10),
        "CAPTCHA_TEST_ANSWER": environ.get("CAPTCHA_TEST_ANSWER") or None,
        "RATELIMIT_ENABLED": environ.get("RATELIMIT_ENABLED", "true").lower() != "false",
        # Rate-limit counters live in Redis beside the jobs, else in this process's memory.
        "RATELIMIT_STORAGE_URI": environ.get("REDIS_URL") or "memory://",
        "RATELIMIT_STORAGE_OPTIONS": redis_timeouts,
        "REDIS_OPTIONS": redis_timeouts,
        "METRICS_ALLOW": metrics_allow(environ.get("METRICS_ALLOW") or METRICS_ALLOW),
        "TRUSTED_PROXIES": _count(environ, "TRUSTED_PROXIES"),
        # Ready-made captcha images kept in Redis (0: every image made on demand).
        "CAPTCHA_POOL_SIZE": int(environ.get("CAPTCHA_POOL_SIZE") or 2000),
        # Log lines as JSON objects (with the request id) unless LOG_FORMAT=text.
        "LOG_FORMAT": "text" if environ.get("LOG_FORMAT") == "text" else "json",
        "PUBLIC_BASE_URL": public_base_url(environ.get("PUBLIC_BASE_URL") or DEVELOPMENT_URL),
        # Console sessions end after this long without a request, and after this long in all.
        "ADMIN_IDLE_MINUTES": _positive(environ, "ADMIN_IDLE_MINUTES", 15),
        "ADMIN_SESSION_HOURS": _positive(environ, "ADMIN_SESSION_HOURS", 8),
        "AUDIT_RETENTION_DAYS": _audit_retention_days(environ),
        # Callbacks to loopback and private addresses: for local receivers in development.
        "CALLBACK_ALLOW_PRIVATE": _flag(environ, "CALLBACK_ALLOW_PRIVATE"),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
    }


def data_keys(value: str | None, secret_key: str) -> tuple[str, ...]:
    """`DATA_KEY` holds one key or several, comma-separated, the first current (see README)."""
    if not value:
        return (secret_key,)
    keys = _comma_separated(value)
    if not keys:
        raise SettingsError("DATA_KEY holds no key")
    return keys


def secret_key_fallbacks(value: str | None, data_key: str | None) -> list[str]:
    """`SECRET_KEY_FALLBACKS`: earlier secret keys, comma-separated, whose sessions and captcha
    challenges are still taken during a rotation (see README). `DATA_KEY` defaults to
    `SECRET_KEY`, so rotating the secret key without it would lose the key the data was sealed
    with: refused."""
    keys = _comma_separated(value or "")
    if keys and not data_key:
        raise SettingsError(
            "SECRET_KEY_FALLBACKS needs DATA_KEY: set DATA_KEY to the SECRET_KEY the data was"
            " sealed with before rotating SECRET_KEY, or the sealed data can no longer be read"
        )
    return list(keys)


def _comma_separated(value: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in value.split(",") if key.strip())


def public_base_url(value: str) -> str:
    """The address every text links to: it must be one a phone can open."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(
            f"PUBLIC_BASE_URL is the portal's public address such as https://beian.example.cn, not {value!r}"
        )
    return value.strip().rstrip("/")


def metrics_allow(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """`METRICS_ALLOW`: comma-separated addresses or networks (`10.0.0.0/8`)."""
    try:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in value.split(",")
            if part.strip()
        )
    except ValueError as error:
        raise SettingsError(f"METRICS_ALLOW holds addresses or networks: {error}") from None


def _redis_timeouts(environ: Mapping[str, str]) -> dict[str, float]:
    value = environ.get("REDIS_TIMEOUT_SECONDS") or str(REDIS_TIMEOUT_SECONDS)
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 60:
        raise SettingsError(f"REDIS_TIMEOUT_SECONDS is a number of seconds, not {value!r}")
    return {"socket_connect_timeout": seconds, "socket_timeout": seconds}


def crypto_suite(value: str | None) -> str:
    """Personal data is sealed under `standard` or `sm` (SPEC §10); nothing else starts."""
    suite = value or "standard"
    if suite not in sealing.SUITES:
        raise SettingsError(f"CRYPTO_SUITE is standard or sm, not {suite!r}")
    if reason := sealing.unavailable(suite):
        raise SettingsError(f"CRYPTO_SUITE={suite} cannot run on this OpenSSL: {reason}")
    return suite


def _count(environ: Mapping[str, str], name: str, default: str = "0") -> int:
    value = environ.get(name) or default
    if not value.isdigit():
        raise SettingsError(f"{name} is a whole number, not {value!r}")
    return int(value)


def _positive(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name) or str(default)
    if not value.isdigit() or int(value) == 0:
        raise SettingsError(f"{name} is a whole number above 0, not {value!r}")
    return int(value)


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "false").lower() == "true"


def _audit_retention_days(environ: Mapping[str, str]) -> int:
    """Audit records are kept at least six months (GB/T 22239-2019, level 3)."""
    value = environ.get("AUDIT_RETENTION_DAYS") or "365"
    if not value.isdigit() or int(value) < MIN_AUDIT_RETENTION_DAYS:
        raise SettingsError(
            f"AUDIT_RETENTION_DAYS is a whole number of days, at least {MIN_AUDIT_RETENTION_DAYS}, not {value!r}"
        )
    return int(value)


def database_url(url: str) -> str:
    """`postgresql://` works as written: it is served by psycopg 3, the driver we ship."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _instance_secret(instance: Path) -> str:
    """The embedded default keeps one generated key, so sessions and sealed codes survive a restart."""
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()
