"""The session cookie (portal/protection/signing.py): Flask's own cookie, signed by a
serializer kept while the keys stay the same, with key rotation through SECRET_KEY_FALLBACKS."""

import pytest
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature, TimestampSigner

from portal import create_app
from portal.extensions import db
from portal.messages import Outcome
from tests.factories import CAPTCHA, form_fields

PHONE, ID_LAST6 = "13900000001", "011239"
SESSION = {"captchas": ["a" * 32], "csrf_token": "b" * 40}


@pytest.fixture
def frozen_signing_time(monkeypatch):
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: 1_800_000_000)


def stock_serializer(app):
    return SecureCookieSessionInterface().get_signing_serializer(app)


def test_the_signing_serializer_is_built_once(app):
    kept = app.session_interface.get_signing_serializer(app)
    assert app.session_interface.get_signing_serializer(app) is kept
    assert kept.make_signer() is kept.make_signer()


def test_the_cookie_is_the_one_flask_signs(app, frozen_signing_time):
    """Cookies from before the change still open a session, and the other way round."""
    kept = app.session_interface.get_signing_serializer(app)
    assert kept.dumps(SESSION) == stock_serializer(app).dumps(SESSION)
    assert kept.loads(stock_serializer(app).dumps(SESSION)) == SESSION
    assert stock_serializer(app).loads(kept.dumps(SESSION)) == SESSION


def test_a_cookie_signed_with_another_key_is_refused(app):
    app.secret_key = "another-key"
    signed = stock_serializer(app).dumps(SESSION)
    app.secret_key = "test-secret"
    with pytest.raises(BadSignature):
        app.session_interface.get_signing_serializer(app).loads(signed)


def image_status(client, challenge_id: str) -> int:
    return client.get(f"/tianjin/captcha/{challenge_id}.png").status_code


def test_a_rotated_key_keeps_its_sessions_while_it_is_a_fallback(app, client):
    """The image is served only to the session whose page made the challenge: here, to a
    cookie signed with the key before the rotation, until that key is dropped."""
    challenge_id = form_fields(client.get("/tianjin/verify").get_data(as_text=True))["captcha_id"]
    assert image_status(client, challenge_id) == 200
    app.config.update(SECRET_KEY="rotated", SECRET_KEY_FALLBACKS=["test-secret"])
    assert image_status(client, challenge_id) == 200
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert image_status(client, challenge_id) == 404


def test_a_rotation_set_in_the_environment_keeps_open_sessions_and_sealed_codes(
    env, client, submit_filing, sent_codes
):
    """`SECRET_KEY_FALLBACKS` read from the environment: after the switch, a session opened
    before it still gets its captcha image, and a code sealed before it still verifies
    (`DATA_KEY` holds the key the data was sealed with)."""
    submit_filing()
    code = sent_codes()[PHONE]
    challenge_id = form_fields(client.get("/tianjin/verify").get_data(as_text=True))["captcha_id"]
    rotated = create_app(
        {
            **env,
            "SECRET_KEY": "rotated",
            "SECRET_KEY_FALLBACKS": "test-secret",
            "DATA_KEY": "test-secret",
        }
    )
    after = rotated.test_client()
    after.set_cookie("session", client.get_cookie("session").value)
    assert after.get(f"/tianjin/captcha/{challenge_id}.png").status_code == 200
    fields = form_fields(after.get("/tianjin/verify").get_data(as_text=True))
    values = {"code": code, "phone": PHONE, "id_last6": ID_LAST6, "captcha": CAPTCHA}
    answer = after.post("/tianjin/verify", data={**fields, **values})
    assert Outcome.VERIFIED_OTHERS_PENDING.message in answer.get_data(as_text=True)
    with rotated.app_context():
        db.engine.dispose()
