"""Keyed protection of secrets at rest: a copy of the database alone reveals no code or ID.

Codes and ID last-six are matched through an HMAC keyed from `DATA_KEY`; a code is
also sealed (Fernet) so that a resend can send the same code again.
"""

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet
from flask import current_app


def _derive(purpose: str) -> bytes:
    key = current_app.config["DATA_KEY"].encode()
    return hmac.new(key, purpose.encode(), hashlib.sha256).digest()


def digest(purpose: str, value: str) -> str:
    return hmac.new(_derive(f"digest:{purpose}"), value.encode(), hashlib.sha256).hexdigest()


def _fernet() -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derive("seal")))


def seal(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def unseal(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()
