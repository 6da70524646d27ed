"""Settings, read from the environment in one place.

With nothing set, the portal runs on the embedded default: a SQLite file and a
secret key in the instance folder, SMS written to a file the `/dev/sms` inbox
reads, jobs run in-process. `PORTAL_ENV=production` refuses to start unless the
secret key, the database and Redis are given.
"""

import secrets
from collections.abc import Mapping
from pathlib import Path

REQUIRED_IN_PRODUCTION = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")
ENVIRONMENTS = ("development", "production")
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
    sms_backend = environ.get("SMS_BACKEND") or ("console" if production else "file")
    return {
        "PRODUCTION": production,
        "SECRET_KEY": secret_key,
        "DATA_KEYS": data_keys(environ.get("DATA_KEY"), secret_key),
        "SQLALCHEMY_DATABASE_URI": database_url(
            environ.get("DATABASE_URL") or f"sqlite:///{instance / 'portal.sqlite3'}"
        ),
        "REDIS_URL": environ.get("REDIS_URL") or None,
        "SMS_BACKEND": sms_backend,
        "SMS_FILE_PATH": environ.get("SMS_FILE_PATH") or str(instance / "sms.jsonl"),
        "SMS_HTTP_URL": environ.get("SMS_HTTP_URL"),
        "CAPTCHA_TEST_ANSWER": environ.get("CAPTCHA_TEST_ANSWER") or None,
        "RATELIMIT_ENABLED": environ.get("RATELIMIT_ENABLED", "true").lower() != "false",
        # Rate-limit counters live in Redis beside the jobs, else in this process's memory.
        "RATELIMIT_STORAGE_URI": environ.get("REDIS_URL") or "memory://",
        "TRUSTED_PROXIES": _count(environ, "TRUSTED_PROXIES"),
        # Ready-made captcha images kept in Redis (0: every image made on demand).
        "CAPTCHA_POOL_SIZE": int(environ.get("CAPTCHA_POOL_SIZE") or 2000),
        # Log lines as JSON objects (with the request id) unless LOG_FORMAT=text.
        "LOG_FORMAT": "text" if environ.get("LOG_FORMAT") == "text" else "json",
        "PUBLIC_BASE_URL": environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000").rstrip("/"),
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
    keys = tuple(key.strip() for key in value.split(",") if key.strip())
    if not keys:
        raise SettingsError("DATA_KEY holds no key")
    return keys


def _count(environ: Mapping[str, str], name: str) -> int:
    value = environ.get(name) or "0"
    if not value.isdigit():
        raise SettingsError(f"{name} is a whole number, not {value!r}")
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
