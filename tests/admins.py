"""Console accounts for the tests: made directly, with a cheap password hash and an enrolled
TOTP secret, and a sign-in that posts a real code of the moment."""

import pyotp
import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from portal import two_factor
from portal.admin import auth
from portal.extensions import db
from portal.models import Admin

PASSWORD = "Correct horse battery 9"
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
# A cheap hash keeps the suite fast; accounts.create (scrypt) is tested on its own.
FAST_HASH = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")


def make_admin(username: str, province: str | None, now) -> Admin:
    return Admin(
        username=username,
        password_hash=FAST_HASH,
        province_slug=province,
        created_at=now,
        totp_secret=two_factor.seal_secret(username, TOTP_SECRET),
        totp_enrolled_at=now,
    )


def current_code(secret: str = TOTP_SECRET) -> str:
    """The code of this moment as the console sees it (a test's frozen clock included)."""
    return pyotp.TOTP(secret).at(auth.utcnow())


def sign_in(client, username: str, password: str = PASSWORD, otp: str | None = None):
    """Signs in with the current code; tests sign one account in many times in 30 s, so the
    code may be used again (the replay rule has tests of its own, in tests/test_signin.py)."""
    if otp is None:
        db.session.execute(
            sa.update(Admin).where(Admin.username == username).values(totp_last_step=None)
        )
        db.session.commit()
        otp = current_code()
    page = client.get("/admin/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    return client.post(
        "/admin/login",
        data={"csrf_token": token, "username": username, "password": password, "otp": otp},
    )


def csrf(client, path: str = "/admin/") -> str:
    page = client.get(path).get_data(as_text=True)
    return page.split('name="csrf_token" value="')[1].split('"')[0]
