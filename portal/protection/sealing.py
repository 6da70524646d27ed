"""Keyed protection of secrets at rest: a copy of the database alone reveals no code or ID.

Codes and ID last-six are matched through an HMAC keyed from `DATA_KEY`; a code is
also sealed (Fernet) so that a resend can send the same code again. `DATA_KEY` may
hold several comma-separated keys, the first current: digests and seals are made
with it, lookups match a digest under every key and unsealing tries every key, so a
rotation loses no live code (the README says how to rotate).
"""

import base64
import functools
import hashlib
import hmac

from cryptography.fernet import Fernet, MultiFernet
from flask import current_app


def _keys() -> tuple[str, ...]:
    return current_app.config["DATA_KEYS"]


@functools.lru_cache(maxsize=64)
def _derive(key: str, purpose: str) -> bytes:
    return hmac.new(key.encode(), purpose.encode(), hashlib.sha256).digest()


def _digest(key: str, purpose: str, value: str) -> str:
    return hmac.new(_derive(key, f"digest:{purpose}"), value.encode(), hashlib.sha256).hexdigest()


def digest(purpose: str, value: str) -> str:
    """The digest to store, under the current key."""
    return _digest(_keys()[0], purpose, value)


def digests(purpose: str, value: str) -> list[str]:
    """The value's digest under every key, current first: what a lookup must match."""
    return [_digest(key, purpose, value) for key in _keys()]


def matches(stored: str, purpose: str, value: str) -> bool:
    return any(hmac.compare_digest(stored, candidate) for candidate in digests(purpose, value))


def derived_tokens(purpose: str, value: str) -> list[str]:
    """A 96-bit URL-safe token made from the value under every key, current first: whoever
    holds a key can make it again, nobody else can (or tell it from random)."""
    return [
        base64.urlsafe_b64encode(
            bytes.fromhex(_digest(key, f"token:{purpose}", value))[:12]
        ).decode()
        for key in _keys()
    ]


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(base64.urlsafe_b64encode(_derive(key, "seal"))) for key in _keys()])


def seal(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def unseal(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()
