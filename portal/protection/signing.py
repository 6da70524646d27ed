"""The session cookie's signing, set up once per secret key rather than on every request.

Flask's `SecureCookieSessionInterface` builds a `URLSafeTimedSerializer` for each request
and the serializer a `TimestampSigner` for each `dumps` and `loads`, whose every signature
derives its key from the secret again (two HMACs). The keys do not change in a process, so
the serializer, its signer and the derived keys are kept; they are built anew only when
`SECRET_KEY` or `SECRET_KEY_FALLBACKS` change. The cookie is the same, byte for byte.
"""

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import want_bytes


class KeptKeysSigner(TimestampSigner):
    """A `TimestampSigner` that derives each of its keys once, when it is built."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        derive = super().derive_key
        self._derived = {key: derive(key) for key in self.secret_keys}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        key = self.secret_keys[-1] if secret_key is None else want_bytes(secret_key)
        derived = self._derived.get(key)
        return derived if derived is not None else super().derive_key(key)


class KeptSignerSerializer(URLSafeTimedSerializer):
    """A `URLSafeTimedSerializer` that signs and checks with one signer, built with it."""

    default_signer = KeptKeysSigner

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._signer = super().make_signer()

    def make_signer(self, salt: str | bytes | None = None) -> TimestampSigner:
        if salt is None or want_bytes(salt) == self.salt:
            return self._signer
        return super().make_signer(salt)


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, its serializer kept while the keys stay the same."""

    def __init__(self) -> None:
        self._kept: tuple[tuple, URLSafeTimedSerializer] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            return None
        # Oldest first, the current key last, as Flask orders them.
        keys = (*(app.config["SECRET_KEY_FALLBACKS"] or ()), app.secret_key)
        kept = self._kept
        if kept is None or kept[0] != keys:
            kept = self._kept = (keys, self._serializer(keys))
        return kept[1]

    def _serializer(self, keys: tuple) -> URLSafeTimedSerializer:
        return KeptSignerSerializer(
            list(keys),
            salt=self.salt,
            serializer=self.serializer,
            signer_kwargs={
                "key_derivation": self.key_derivation,
                "digest_method": self.digest_method,
            },
        )
