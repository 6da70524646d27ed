"""Keyed protection of secrets at rest: a copy of the database alone reveals no personal data.

Two cipher suites, both from `cryptography` (SPEC §10): `standard` (AES-256-GCM,
HMAC-SHA256) and `sm` (SM4-GCM, HMAC-SM3, the algorithms of GB/T 39786-2021).
`CRYPTO_SUITE` names the one new values are made with, `DATA_KEY` the keys, the first
current.

A sealed value is `<suite>.<key id>.<base64 of nonce, ciphertext and tag>`: its header
says how to open it, so a value sealed before a suite switch or a key rotation stays
readable (while its key is held) and `data reseal` can tell what is not current.
`bound_to` is authenticated with it: a value copied to another row or column does not
open. Lookups go by keyed digest; a lookup matches a digest under every key and both
suites, so a switch or a rotation in progress loses no row.
"""

import base64
import functools
import os
import secrets

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

SUITES = ("standard", "sm")
NONCE_BYTES = 12
TAG_BYTES = 16


class Unsealable(Exception):
    """A sealed value this process cannot open: unknown suite or key, or altered or moved."""


def unavailable(suite: str) -> str | None:
    """Why this OpenSSL cannot run the suite (some builds leave SM4 or SM3 out), or None."""
    try:
        _mac(suite, b"probe", b"")
        _encrypt(suite, "probe", bytes(NONCE_BYTES), b"", b"")
    except UnsupportedAlgorithm as error:
        return str(error)
    return None


def _mac(suite: str, key: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.SM3() if suite == "sm" else hashes.SHA256())
    mac.update(data)
    return mac.finalize()


@functools.lru_cache(maxsize=64)
def _derive(suite: str, key: str, purpose: str) -> bytes:
    """A subkey per purpose. Under `standard` it is the one digests were made with before
    the suites, so the digests already stored still match."""
    return _mac(suite, key.encode(), purpose.encode())


@functools.lru_cache(maxsize=64)
def key_id(key: str) -> str:
    """Names a key in a sealed value's header without revealing it."""
    return _derive("standard", key, "key-id")[:4].hex()


def _keys() -> tuple[str, ...]:
    return current_app.config["DATA_KEYS"]


def _suite() -> str:
    return current_app.config["CRYPTO_SUITE"]


def _digest(suite: str, key: str, purpose: str, value: str) -> str:
    return _mac(suite, _derive(suite, key, f"digest:{purpose}"), value.encode()).hex()


def digest(purpose: str, value: str) -> str:
    """The digest to store, under the current suite and key."""
    return _digest(_suite(), _keys()[0], purpose, value)


def digests(purpose: str, value: str) -> list[str]:
    """The value's digest under every key and both suites, current first: what a lookup
    must match."""
    current = _suite()
    suites = [current] + [suite for suite in SUITES if suite != current]
    return [_digest(suite, key, purpose, value) for suite in suites for key in _keys()]


def matches(stored: str, purpose: str, value: str) -> bool:
    return any(secrets.compare_digest(stored, candidate) for candidate in digests(purpose, value))


def derived_tokens(purpose: str, value: str) -> list[str]:
    """A 96-bit URL-safe token made from the value under every key and both suites, current
    first: whoever holds a key can make it again, nobody else can (or tell it from random)."""
    current = _suite()
    suites = [current] + [suite for suite in SUITES if suite != current]
    return [
        base64.urlsafe_b64encode(
            bytes.fromhex(_digest(suite, key, f"token:{purpose}", value))[:12]
        ).decode()
        for suite in suites
        for key in _keys()
    ]


@functools.lru_cache(maxsize=64)
def _aes(key: str) -> AESGCM:
    return AESGCM(_derive("standard", key, "seal:aes-256-gcm"))


def _sm4_key(key: str) -> bytes:
    return _derive("sm", key, "seal:sm4-gcm")[:16]


def _encrypt(suite: str, key: str, nonce: bytes, data: bytes, bound_to: bytes) -> bytes:
    """Ciphertext and tag."""
    if suite == "standard":
        return _aes(key).encrypt(nonce, data, bound_to)
    encryptor = Cipher(algorithms.SM4(_sm4_key(key)), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(bound_to)
    return encryptor.update(data) + encryptor.finalize() + encryptor.tag


def _decrypt(suite: str, key: str, nonce: bytes, sealed: bytes, bound_to: bytes) -> bytes:
    if suite == "standard":
        return _aes(key).decrypt(nonce, sealed, bound_to)
    ciphertext, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
    decryptor = Cipher(algorithms.SM4(_sm4_key(key)), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(bound_to)
    return decryptor.update(ciphertext) + decryptor.finalize()


def header() -> str:
    """What every value sealed now starts with: `data reseal` leaves those alone."""
    return f"{_suite()}.{key_id(_keys()[0])}."


def seal(value: str, bound_to: str = "") -> str:
    suite, key = _suite(), _keys()[0]
    nonce = os.urandom(NONCE_BYTES)
    sealed = _encrypt(suite, key, nonce, value.encode(), f"{suite}:{bound_to}".encode())
    return header() + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def unseal(token: str, bound_to: str = "") -> str:
    suite, named, payload = _parts(token)
    key = next((key for key in _keys() if key_id(key) == named), None)
    if key is None:
        raise Unsealable(f"sealed under key {named}, which DATA_KEY does not hold")
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        opened = _decrypt(
            suite, key, raw[:NONCE_BYTES], raw[NONCE_BYTES:], f"{suite}:{bound_to}".encode()
        )
    except (InvalidTag, ValueError) as error:  # ValueError: not base64, or too short
        raise Unsealable("altered, or sealed for another row") from error
    return opened.decode()


def _parts(token: str) -> tuple[str, str, str]:
    parts = token.split(".")
    if len(parts) != 3 or parts[0] not in SUITES:
        raise Unsealable("not a sealed value")
    return parts[0], parts[1], parts[2]


def place(column, row_key: str) -> str:
    """What a value is sealed for: its column (`table.column`) and its row."""
    return f"{column.expression}:{row_key}"
