"""Console sessions, kept on the server (SPEC §10).

The cookie holds a random token; the table holds its digest, when the session began,
when it was last seen and when it ended. A session ends after `ADMIN_IDLE_MINUTES`
without a request, after `ADMIN_SESSION_HOURS` in all, and at sign-out, a password
change or a reset of the second factor, for every copy of the cookie at once.
`last_seen_at` is written at most once a minute, so a session may time out up to a
minute early, never late.
"""

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from portal.extensions import db
from portal.models import Admin, AdminSession

TOUCH_EVERY = timedelta(minutes=1)


def start(admin: Admin, now: datetime) -> None:
    """A new session for the admin; its token becomes `admin.session_key`."""
    token = secrets.token_urlsafe(32)
    db.session.add(
        AdminSession(
            token_digest=_digest(token), admin_id=admin.id, created_at=now, last_seen_at=now
        )
    )
    admin.session_key = token


def resume(token: str, now: datetime) -> Admin | None:
    """The admin whose live session this token is; a due `last_seen_at` is committed."""
    found = db.session.execute(
        sa.select(AdminSession, Admin)
        .join(Admin, Admin.id == AdminSession.admin_id)
        .where(
            AdminSession.token_digest == _digest(token),
            AdminSession.ended_at.is_(None),
            AdminSession.created_at > now - _longest(),
            AdminSession.last_seen_at > now - _idle(),
            Admin.active.is_(True),
        )
    ).first()
    if found is None:
        return None
    console_session, admin = found
    if now - console_session.last_seen_at >= TOUCH_EVERY:
        console_session.last_seen_at = now
        db.session.commit()
    admin.session_key = token
    return admin


def end(token: str, now: datetime) -> None:
    db.session.execute(
        sa.update(AdminSession)
        .where(AdminSession.token_digest == _digest(token), AdminSession.ended_at.is_(None))
        .values(ended_at=now)
    )


def end_all(admin: Admin, now: datetime, keep: str | None = None) -> None:
    """Ends every session of the admin, but the one of `keep` (the caller's own)."""
    others = sa.update(AdminSession).where(
        AdminSession.admin_id == admin.id, AdminSession.ended_at.is_(None)
    )
    if keep is not None:
        others = others.where(AdminSession.token_digest != _digest(keep))
    db.session.execute(others.values(ended_at=now))


def _idle() -> timedelta:
    return timedelta(minutes=current_app.config["ADMIN_IDLE_MINUTES"])


def _longest() -> timedelta:
    return timedelta(hours=current_app.config["ADMIN_SESSION_HOURS"])


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
