"""Admin accounts: creating them, checking passwords, and sign-in throttling.

Throttled two ways: an account is locked for a while after consecutive failures
(a national admin can unlock it), and a client address that fails too often is
refused before any password is checked.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from portal.extensions import db
from portal.messages import CONSOLE
from portal.models import Admin, Province, SigninFailure

ACCOUNT_FAILURES_BEFORE_LOCK = 5
LOCK_FOR = timedelta(minutes=15)
ADDRESS_FAILURES_PER_WINDOW = 20
ADDRESS_WINDOW = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 10


class AccountError(ValueError):
    pass


@dataclass(frozen=True)
class SignIn:
    admin: Admin | None
    error: str | None = None


def create(username: str, password: str, province_slug: str | None, now: datetime) -> Admin:
    if province_slug is not None and db.session.get(Province, province_slug) is None:
        raise AccountError(CONSOLE["unknown_province"].format(slug=province_slug))
    if db.session.scalar(sa.select(Admin.id).where(Admin.username == username)):
        raise AccountError(CONSOLE["username_taken"].format(username=username))
    check_password_strength(password)
    admin = Admin(
        username=username,
        password_hash=generate_password_hash(password),
        province_slug=province_slug,
        session_token=secrets.token_urlsafe(32),
        created_at=now,
    )
    db.session.add(admin)
    db.session.flush()
    return admin


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(CONSOLE["password_too_short"].format(length=MIN_PASSWORD_LENGTH))


def change_password(admin: Admin, current: str, new: str) -> None:
    if not check_password_hash(admin.password_hash, current):
        raise AccountError(CONSOLE["wrong_current_password"])
    reset_password(admin, new)


def reset_password(admin: Admin, password: str) -> None:
    """A new password also signs out the account's other sessions."""
    check_password_strength(password)
    admin.password_hash = generate_password_hash(password)
    admin.session_token = secrets.token_urlsafe(32)


def sign_in(username: str, password: str, address: str, now: datetime) -> SignIn:
    if _address_failures(address, now) >= ADDRESS_FAILURES_PER_WINDOW:
        return SignIn(None, CONSOLE["too_many_signin_failures"])
    admin = db.session.scalar(sa.select(Admin).where(Admin.username == username))
    if admin is not None and admin.locked_until is not None and admin.locked_until > now:
        return SignIn(None, CONSOLE["account_locked"])
    if admin is None or not admin.active or not check_password_hash(admin.password_hash, password):
        _count_failure(admin, username, address, now)
        return SignIn(None, CONSOLE["bad_credentials"])
    admin.failed_signins = 0
    admin.locked_until = None
    return SignIn(admin)


def unlock(admin: Admin) -> None:
    admin.failed_signins = 0
    admin.locked_until = None


def _address_failures(address: str, now: datetime) -> int:
    return db.session.scalar(
        sa.select(sa.func.count())
        .select_from(SigninFailure)
        .where(SigninFailure.address == address, SigninFailure.failed_at > now - ADDRESS_WINDOW)
    )


def _count_failure(admin: Admin | None, username: str, address: str, now: datetime) -> None:
    db.session.add(SigninFailure(address=address, username=username[:64], failed_at=now))
    if admin is None:
        return
    failures = db.session.scalar(
        sa.update(Admin)
        .where(Admin.id == admin.id)
        .values(failed_signins=Admin.failed_signins + 1)
        .returning(Admin.failed_signins)
        .execution_options(synchronize_session=False)
    )
    if failures >= ACCOUNT_FAILURES_BEFORE_LOCK:
        admin.locked_until = now + LOCK_FOR
        admin.failed_signins = 0
