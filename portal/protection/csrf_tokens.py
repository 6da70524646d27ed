"""The applicant forms' CSRF token, signed once a minute per session rather than on every page.

flask-wtf's `generate_csrf` builds a `URLSafeTimedSerializer` and signs the session's raw
token with the time on every page. Here the signed token is kept for the session's raw token
and signed again once a sixtieth of `WTF_CSRF_TIME_LIMIT` has passed (a minute of the
default hour), so a page's token still lives at least that much less than the limit. The
check is flask-wtf's own (`CSRFProtect`): a forged token, another session's or one older
than the limit is refused as before.
"""

import hashlib
import os
import time

from flask import current_app, g, session
from flask_wtf.csrf import _FlaskFormCSRF
from itsdangerous import URLSafeTimedSerializer

REUSED_FOR = 1 / 60  # of WTF_CSRF_TIME_LIMIT; a minute when there is no limit
KEPT = 4096  # sessions whose token a process keeps signed


def current() -> str:
    """This session's signed token, left in `g` where flask-wtf's `generate_csrf` looks first."""
    config = current_app.config
    field_name = config["WTF_CSRF_FIELD_NAME"]
    if field_name in g:
        return g.get(field_name)
    raw = session.get(field_name)
    if not isinstance(raw, str):
        raw = session[field_name] = hashlib.sha1(os.urandom(64)).hexdigest()
    limit = config["WTF_CSRF_TIME_LIMIT"]
    reused_for = limit * REUSED_FOR if limit else 60
    secret = config.get("WTF_CSRF_SECRET_KEY", current_app.secret_key)
    token = _signed(secret, raw, reused_for)
    setattr(g, field_name, token)
    return token


# (secret, raw token) -> (signed token, when signed); emptied when full, which costs only a
# signature per session.
_kept: dict[tuple, tuple[str, float]] = {}


def _signed(secret: str | bytes, raw: str, reused_for: float) -> str:
    """The token as flask-wtf signs it, signed again once it is `reused_for` seconds old."""
    now, key = time.time(), (secret, raw)
    kept = _kept.get(key)
    if kept is not None and now - kept[1] < reused_for:
        return kept[0]
    token = URLSafeTimedSerializer(secret, salt="wtf-csrf-token").dumps(raw)
    if len(_kept) >= KEPT:
        _kept.clear()
    _kept[key] = (token, now)
    return token


class KeptTokenCSRF(_FlaskFormCSRF):
    """flask-wtf's form CSRF, its token the kept one (`current`)."""

    def generate_csrf_token(self, csrf_token_field) -> str:
        return current()
