"""The applicant forms' CSRF token (portal/protection/csrf_tokens.py): signed once a minute per
session, and refused as before when forged, another session's or older than the limit
(another session's: tests/test_security.py)."""

import time

import pytest
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

from tests.factories import CAPTCHA, form_fields

WRONG_CODE = {"code": "000000", "phone": "13900000009", "id_last6": "000000", "captcha": CAPTCHA}
LIMIT = 3600  # flask-wtf's default WTF_CSRF_TIME_LIMIT, which the portal keeps


@pytest.fixture(params=["sqlite"])
def backend(request) -> str:
    """The token is signed in the web process: one database is enough."""
    return request.param


@pytest.fixture
def later(monkeypatch):
    """Moves this process's clock (and so the tokens' signing and checking times) ahead."""
    real, ahead = time.time, [0.0]
    monkeypatch.setattr(time, "time", lambda: real() + ahead[0])

    def move(seconds: float) -> None:
        ahead[0] += seconds

    return move


def page_fields(client, page: str = "verify") -> dict[str, str]:
    return form_fields(client.get(f"/tianjin/{page}").get_data(as_text=True))


def refused(client, fields: dict[str, str]) -> bool:
    """Whether a post of a wrong code is refused for its token (past the token, the answer is
    not found, or the captcha's when it has expired)."""
    response = client.post("/tianjin/verify", data={**fields, **WRONG_CODE})
    return response.status_code == 400 and "页面已过期" in response.get_data(as_text=True)


def test_pages_within_a_minute_carry_one_signed_token(client, later):
    first = page_fields(client)["csrf_token"]
    later(30)
    assert page_fields(client, "resend")["csrf_token"] == first


def test_the_token_is_signed_again_after_a_minute_and_taken(client, later):
    first = page_fields(client)["csrf_token"]
    later(61)
    fields = page_fields(client)
    assert fields["csrf_token"] != first
    assert not refused(client, fields)


def test_a_kept_token_is_refused_once_older_than_the_limit(client, later):
    """Signed when the session's first page was made, not when the last one was."""
    fields = page_fields(client)
    later(50)
    assert page_fields(client)["csrf_token"] == fields["csrf_token"]
    fields = page_fields(client)
    later(LIMIT - 50 + 2)
    assert refused(client, fields)


def test_a_token_within_the_limit_is_taken(client, later):
    fields = page_fields(client)
    later(LIMIT - 5)
    assert not refused(client, fields)


def test_a_forged_token_is_refused(app, client):
    fields = page_fields(client)
    value, _, signature = fields["csrf_token"].rpartition(".")
    forged = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    assert refused(client, {**fields, "csrf_token": f"{value}.{forged}"})
    cookie = client.get_cookie("session").value
    raw = SecureCookieSessionInterface().get_signing_serializer(app).loads(cookie)["csrf_token"]
    signed_elsewhere = URLSafeTimedSerializer("another-key", salt="wtf-csrf-token").dumps(raw)
    assert refused(client, {**fields, "csrf_token": signed_elsewhere})
    assert not refused(client, fields)
