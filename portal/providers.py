"""Access providers: their API keys (kept only as a digest) and webhook secrets (sealed)."""

import hashlib
import re
import secrets
from datetime import datetime

import sqlalchemy as sa

from portal.extensions import db
from portal.models import Provider
from portal.protection import sealing

KEY_PREFIX = "bk_"
KEY_BYTES = 32
# What `secrets.token_urlsafe(KEY_BYTES)` makes: 43 URL-safe base64 characters.
KEY_SHAPE = re.compile(rf"{KEY_PREFIX}[A-Za-z0-9_-]{{43}}", re.ASCII)


def _key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def create(name: str, callback_url: str | None, now: datetime) -> tuple[Provider, str]:
    """A new provider and its API key, which is shown this once and never stored."""
    api_key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    provider = Provider(
        name=name,
        api_key_digest=_key_digest(api_key),
        webhook_secret_sealed=_sealed_secret(name, secrets.token_urlsafe(32)),
        callback_url=callback_url,
        created_at=now,
    )
    db.session.add(provider)
    db.session.flush()
    return provider, api_key


def rotate_key(provider: Provider) -> str:
    api_key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    provider.api_key_digest = _key_digest(api_key)
    return api_key


def authenticate(api_key: str) -> Provider | None:
    """The active provider of this key; a string that is not shaped like a key costs no lookup."""
    if not KEY_SHAPE.fullmatch(api_key):
        return None
    return db.session.scalar(
        sa.select(Provider).where(
            Provider.api_key_digest == _key_digest(api_key), Provider.active.is_(True)
        )
    )


def rotate_secret(provider: Provider) -> str:
    secret = secrets.token_urlsafe(32)
    provider.webhook_secret_sealed = _sealed_secret(provider.name, secret)
    return secret


def webhook_secret(provider: Provider) -> str:
    return sealing.unseal(
        provider.webhook_secret_sealed, sealing.place(Provider.webhook_secret_sealed, provider.name)
    )


def _sealed_secret(name: str, secret: str) -> str:
    """Bound to the provider's name, which never changes and is known before the row's id."""
    return sealing.seal(secret, sealing.place(Provider.webhook_secret_sealed, name))
