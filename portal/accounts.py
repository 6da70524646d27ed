"""Console accounts: creating them, their passwords, and signing in with two factors.

A sign-in needs the password and a TOTP code (or a recovery code) of an enrolled
account; an account not yet enrolled is sent to enrol once its password is right.
Every failure reads the same, and costs the same: an unknown name is checked against
a decoy hash. Failures slow their address down (`signin_throttle`); they never lock
the account.
"""

import functools
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from portal import admin_sessions, signin_throttle, two_factor
from portal.extensions import db
from portal.messages import CONSOLE
from portal.models import Admin, PreviousPassword, Province

MIN_PASSWORD_LENGTH = 12
PASSWORD_CLASSES_NEEDED = 3
# A new password may not be the current one or one of the four before it.
PASSWORDS_REMEMBERED = 5


class AccountError(ValueError):
    pass


@dataclass(frozen=True)
class SignIn:
    admin: Admin | None
    # The password was right but the account has no second factor yet: it enrols now.
    must_enrol: bool = False
    second_factor: str | None = None  # "totp" or "recovery"


FAILED = SignIn(None)


def create(username: str, password: str, province_slug: str | None, now: datetime) -> Admin:
    """An account that enrols its second factor at its first sign-in."""
    if province_slug is not None and db.session.get(Province, province_slug) is None:
        raise AccountError(CONSOLE["unknown_province"].format(slug=province_slug))
    if db.session.scalar(sa.select(Admin.id).where(Admin.username == username)):
        raise AccountError(CONSOLE["username_taken"].format(username=username))
    check_password_rules(password, username)
    admin = Admin(
        username=username,
        password_hash=generate_password_hash(password),
        province_slug=province_slug,
        created_at=now,
    )
    db.session.add(admin)
    db.session.flush()
    return admin


def check_password_rules(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(CONSOLE["password_too_short"].format(length=MIN_PASSWORD_LENGTH))
    if _character_classes(password) < PASSWORD_CLASSES_NEEDED:
        raise AccountError(CONSOLE["password_too_simple"])
    if username.casefold() in password.casefold():
        raise AccountError(CONSOLE["password_has_username"])


def _character_classes(password: str) -> int:
    """Lower case, upper case, digits, and everything else (CJK characters count there)."""
    lower = any(c.islower() for c in password)
    upper = any(c.isupper() for c in password)
    digit = any(c.isdigit() for c in password)
    other = any(not (c.islower() or c.isupper() or c.isdigit()) for c in password)
    return lower + upper + digit + other


def change_password(admin: Admin, current: str, new: str, now: datetime) -> None:
    if not check_password_hash(admin.password_hash, current):
        raise AccountError(CONSOLE["wrong_current_password"])
    reset_password(admin, new, now)


def reset_password(admin: Admin, password: str, now: datetime) -> None:
    """A new password also ends the account's other sessions."""
    check_password_rules(password, admin.username)
    if any(check_password_hash(known, password) for known in _recent_hashes(admin)):
        raise AccountError(CONSOLE["password_reused"].format(count=PASSWORDS_REMEMBERED))
    db.session.add(
        PreviousPassword(admin_id=admin.id, password_hash=admin.password_hash, replaced_at=now)
    )
    admin.password_hash = generate_password_hash(password)
    db.session.flush()
    _forget_older_passwords(admin)
    admin_sessions.end_all(admin, now, keep=admin.session_key)


def _recent_hashes(admin: Admin) -> list[str]:
    previous = db.session.scalars(
        sa.select(PreviousPassword.password_hash)
        .where(PreviousPassword.admin_id == admin.id)
        .order_by(PreviousPassword.id.desc())
        .limit(PASSWORDS_REMEMBERED - 1)
    )
    return [admin.password_hash, *previous]


def _forget_older_passwords(admin: Admin) -> None:
    kept = (
        sa.select(PreviousPassword.id)
        .where(PreviousPassword.admin_id == admin.id)
        .order_by(PreviousPassword.id.desc())
        .limit(PASSWORDS_REMEMBERED - 1)
    )
    db.session.execute(
        sa.delete(PreviousPassword).where(
            PreviousPassword.admin_id == admin.id,
            PreviousPassword.id.not_in(kept.scalar_subquery()),
        )
    )


def enrol_two_factor(admin: Admin, now: datetime) -> two_factor.Enrolment:
    """A new TOTP secret and recovery codes at once (the CLI); the old ones and every session end."""
    admin_sessions.end_all(admin, now)
    return two_factor.enrol(admin, now)


def reset_two_factor(admin: Admin, now: datetime) -> None:
    """The account enrols anew at its next sign-in (a lost phone); its sessions end."""
    admin_sessions.end_all(admin, now)
    two_factor.reset(admin)


def sign_in(username: str, password: str, otp: str, address: str, now: datetime) -> SignIn:
    """Commits the throttle's slots before any password is checked, so that they hold
    however many tries run at once (and no write lock is held while hashing)."""
    slots = signin_throttle.reserve(username, address, now)
    db.session.commit()
    if slots is None:
        return FAILED
    admin = db.session.scalar(sa.select(Admin).where(Admin.username == username))
    if not _password_matches(admin, password):
        return FAILED
    if not admin.enrolled:
        signin_throttle.release(slots, now)
        return SignIn(admin, must_enrol=True)
    second_factor = two_factor.accept(admin, otp, now)
    if second_factor is None:
        return FAILED
    signin_throttle.release(slots, now)
    return SignIn(admin, second_factor=second_factor)


def _password_matches(admin: Admin | None, password: str) -> bool:
    """An unknown name is checked against a decoy: its answer takes as long."""
    known_hash = admin.password_hash if admin is not None else _decoy_hash()
    matches = check_password_hash(known_hash, password)
    return matches and admin is not None and admin.active


@functools.cache
def _decoy_hash() -> str:
    return generate_password_hash(secrets.token_urlsafe(16))
