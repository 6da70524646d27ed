"""The second factor of a console sign-in: TOTP codes (RFC 6238) and recovery codes.

The TOTP secret is kept sealed (`protection.sealing`). A code is good once: the time
step it matched is claimed with one `UPDATE … WHERE last step < this one`, so a replay
within its window, or a second request racing the first, is refused. Recovery codes
carry 80 random bits each, so a plain SHA-256 keeps them safely (nobody can search that
space), and using one is a single `UPDATE … WHERE used_at IS NULL`.
"""

import base64
import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno
import sqlalchemy as sa

from portal.extensions import db
from portal.messages import CONSOLE
from portal.models import Admin, RecoveryCode
from portal.protection import sealing

# Codes of the step before and after are accepted too: phones' clocks drift.
STEPS_EITHER_SIDE = 1
RECOVERY_CODES = 10
_TOTP_CODE = re.compile(r"\d{6}", re.ASCII)
_LOOKALIKES = str.maketrans("01", "ol")


@dataclass(frozen=True)
class Enrolment:
    secret: str
    totp_uri: str
    recovery_codes: list[str]


def enrol(admin: Admin, now: datetime) -> Enrolment:
    """A new secret, in force at once, and new recovery codes (the CLI and the demo)."""
    reset(admin)
    secret = pending_secret(admin)
    admin.totp_enrolled_at = now
    return Enrolment(secret, totp_uri(admin, secret), issue_recovery_codes(admin))


def reset(admin: Admin) -> None:
    """No second factor until the account enrols again."""
    admin.totp_secret = None
    admin.totp_enrolled_at = None
    admin.totp_last_step = None
    db.session.execute(sa.delete(RecoveryCode).where(RecoveryCode.admin_id == admin.id))


def pending_secret(admin: Admin) -> str:
    """The secret an account enrolling in the console is shown, made on first asking."""
    if admin.totp_secret is None:
        admin.totp_secret = seal_secret(admin.username, pyotp.random_base32())
    return _secret(admin)


def seal_secret(username: str, secret: str) -> str:
    """The secret sealed for its account's row (`data reseal` finds it by the username)."""
    return sealing.seal(secret, sealing.place(Admin.totp_secret, username))


def _secret(admin: Admin) -> str:
    return sealing.unseal(admin.totp_secret, sealing.place(Admin.totp_secret, admin.username))


def confirm(admin: Admin, code: str, now: datetime) -> list[str] | None:
    """The enrolment is confirmed by one code of the pending secret: its recovery codes."""
    if admin.totp_secret is None or not _claim_code(admin, code, now):
        return None
    admin.totp_enrolled_at = now
    return issue_recovery_codes(admin)


def totp_uri(admin: Admin, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(
        name=admin.username, issuer_name=CONSOLE["totp_issuer"]
    )


def qr_data_uri(uri: str) -> str:
    """The QR code as an SVG `data:` URI: an image the Content-Security-Policy allows."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)


def current_code(admin: Admin, now: datetime) -> str:
    return pyotp.TOTP(_secret(admin)).at(now)


def accept(admin: Admin, entered: str, now: datetime) -> str | None:
    """Checks a TOTP code or a recovery code of an enrolled account: which one it was."""
    code = _normalise(entered)
    if _TOTP_CODE.fullmatch(code):
        return "totp" if _claim_code(admin, code, now) else None
    used = db.session.execute(
        sa.update(RecoveryCode)
        .where(
            RecoveryCode.admin_id == admin.id,
            RecoveryCode.code_digest == _recovery_digest(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
    )
    return "recovery" if used.rowcount == 1 else None


def recovery_codes_left(admin: Admin) -> int:
    return db.session.scalar(
        sa.select(sa.func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.admin_id == admin.id, RecoveryCode.used_at.is_(None))
    )


def issue_recovery_codes(admin: Admin) -> list[str]:
    """Ten new codes, replacing any left; shown once, kept only as digests."""
    db.session.execute(sa.delete(RecoveryCode).where(RecoveryCode.admin_id == admin.id))
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    db.session.add_all(
        RecoveryCode(admin_id=admin.id, code_digest=_recovery_digest(_normalise(code)))
        for code in codes
    )
    return codes


def _claim_code(admin: Admin, code: str, now: datetime) -> bool:
    step = _matching_step(_secret(admin), _normalise(code), now)
    if step is None:
        return False
    claimed = db.session.execute(
        sa.update(Admin)
        .where(
            Admin.id == admin.id,
            sa.or_(Admin.totp_last_step.is_(None), Admin.totp_last_step < step),
        )
        .values(totp_last_step=step)
    )
    return claimed.rowcount == 1


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current - STEPS_EITHER_SIDE, current + STEPS_EITHER_SIDE + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _normalise(entered: str) -> str:
    """Full-width digits, spaces and the dashes of a recovery code are forgiven."""
    return re.sub(r"[\s-]", "", unicodedata.normalize("NFKC", entered)).lower()


def _recovery_code() -> str:
    """80 bits in base32 (letters and 2–7: no 0/O or 1/l to confuse), as xxxx-xxxx-xxxx-xxxx."""
    text = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def _recovery_digest(code: str) -> str:
    """A 0 or 1 typed for the letter o or l is forgiven: the codes hold no such digit."""
    return hashlib.sha256(code.translate(_LOOKALIKES).encode()).hexdigest()
