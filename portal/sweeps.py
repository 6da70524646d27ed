"""The periodic sweeps (SPEC §4, §10): expiry, the noon resend and the erasure of personal
data past its retention period, as set-based SQL.

Each statement claims its rows with `UPDATE … WHERE <still due> RETURNING`, so a
sweep is idempotent and two sweeps running at once never act on a row twice.
The rules never wait for a sweep: verify and resend check the deadline themselves.
"""

from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql

from portal import audit, captchas, events, live_codes, pruning, signin_throttle
from portal.delivery import outbox, relay, reroute
from portal.extensions import db
from portal.models import (
    Filing,
    FilingStatus,
    LiveCode,
    MessageKind,
    ReturnReason,
    SmsMessage,
    Verification,
    VerificationStatus,
)
from portal.protection import limits

# Filings returned per statement: bounded memory and parameter lists however many fall due at
# once (SQLite takes at most 32,766 parameters a statement).
EXPIRE_CHUNK = 30_000
# The transaction-level advisory lock an expiry holds on PostgreSQL (the same in every process).
EXPIRY_LOCK = 0x53574545


def expire(now: datetime) -> list[str]:
    """Return every filing still pending at its deadline; their pending verifications expire.

    One expiry at a time: on PostgreSQL a sweep that finds another's expiry under way leaves
    it to that one (SQLite lets one writer in at a time anyway). A filing whose row another
    transaction holds (a verify, a worker recording its texts) is left to the next sweep: the
    sweep never waits for a row, so it cannot deadlock with one that locks several filings.
    The UPDATE's WHERE checks each row again, so a filing verified meanwhile stays.
    """
    if not _expiry_lock():
        return []
    returned: list[str] = []
    after = None
    while due := _due_filings(now, after):
        returned += _return_expired(due, after, now)
        if len(due) < EXPIRE_CHUNK:
            break
        after = due[-1]
    return returned


def _expiry_lock() -> bool:
    if db.session.get_bind().dialect.name != "postgresql":
        return True
    return db.session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(EXPIRY_LOCK)))


def _due_filings(now: datetime, after: tuple[str, datetime] | None) -> list[tuple[str, datetime]]:
    """The next chunk of due filings as (id, deadline), locked, read from
    ix_filings_pending_deadline in (deadline, id) order after the last chunk's key: no chunk
    reads an earlier one's rows."""
    query = sa.select(Filing.id, Filing.deadline).where(
        Filing.status == FilingStatus.PENDING_VERIFICATION,
        Filing.deadline <= now,
        *_keys_after(after),
    )
    query = query.order_by(Filing.deadline, Filing.id).limit(EXPIRE_CHUNK)
    return list(db.session.execute(query.with_for_update(skip_locked=True)))


def _keys_after(key: tuple[str, datetime] | None) -> list[sa.ColumnElement[bool]]:
    """Past `key` (id, deadline) in ix_filings_pending_deadline's (deadline, id) order."""
    if key is None:
        return []
    filing_id, deadline = key
    return [sa.tuple_(Filing.deadline, Filing.id) > (deadline, filing_id)]


def _return_expired(
    due: list[tuple[str, datetime]], after: tuple[str, datetime] | None, now: datetime
) -> list[str]:
    """Return the chunk's filings. The UPDATE reads the chunk's own (deadline, id) range of
    ix_filings_pending_deadline: bounded by the ids alone it read every due filing left."""
    last_id, last_deadline = due[-1]
    returned = list(
        db.session.scalars(
            sa.update(Filing)
            .where(
                among(Filing.id, [filing_id for filing_id, _ in due]),
                Filing.status == FilingStatus.PENDING_VERIFICATION,
                Filing.deadline <= now,
                *_keys_after(after),
                sa.tuple_(Filing.deadline, Filing.id) <= (last_deadline, last_id),
            )
            .values(status=FilingStatus.RETURNED, return_reason=ReturnReason.EXPIRED, final_at=now)
            .returning(Filing.id)
            .execution_options(synchronize_session=False)
        )
    )
    if not returned:
        return []
    expired = db.session.scalars(
        sa.update(Verification)
        .where(
            among(Verification.filing_id, returned),
            Verification.status == VerificationStatus.PENDING,
        )
        .values(status=VerificationStatus.EXPIRED)
        .returning(Verification.id)
        .execution_options(synchronize_session=False)
    ).all()
    for part in _within_parameter_limit(expired):
        live_codes.release_ids(among(LiveCode.verification_id, part))
    for event_id in events.record_status_changes(returned, now):
        outbox.event_after_commit(event_id)
    return returned


def _within_parameter_limit(values: list) -> list[list]:
    """`values` whole on PostgreSQL (one array parameter); in parts SQLite can bind."""
    if db.session.get_bind().dialect.name == "postgresql":
        return [values] if values else []
    return [values[start : start + EXPIRE_CHUNK] for start in range(0, len(values), EXPIRE_CHUNK)]


def among(column: sa.ColumnElement, values: list) -> sa.ColumnElement[bool]:
    """`column IN values`; on PostgreSQL `= ANY` of one array parameter, not one parameter a
    value (30,000 of them cost ~0.7 s a statement to bind, send, parse and plan)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, values, type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def noon_resend(now: datetime) -> list[int]:
    """Send each code still pending at 12:00 on the day after submission once more, once."""
    verification_ids = live_codes.take_noon_resends(now)
    if not verification_ids:
        return []
    db.session.execute(
        sa.update(Verification)
        .where(Verification.id.in_(verification_ids))
        .values(noon_resent=True)
        .execution_options(synchronize_session=False)
    )
    message_ids = list(
        db.session.scalars(
            sa.insert(SmsMessage).returning(SmsMessage.id),
            [
                {
                    "verification_id": verification_id,
                    "kind": MessageKind.NOON_RESEND,
                    "created_at": now,
                    "next_attempt_at": now,
                }
                for verification_id in verification_ids
            ],
        )
    )
    for message_id in message_ids:
        outbox.text_after_commit(message_id)
    return message_ids


# Filings whose personal data one statement erases.
ERASE_CHUNK = 1_000


def erase_personal_data(now: datetime) -> int:
    """Erase the sealed names, phones and codes of every filing final for longer than the
    retention period; masked forms and digests stay. Returns how many filings."""
    days = current_app.config["PERSONAL_DATA_RETENTION_DAYS"]
    erased = 0
    while chunk := _erase_chunk(now - timedelta(days=days), now):
        erased += len(chunk)
        if len(chunk) < ERASE_CHUNK:
            break
    return erased


def _erase_chunk(final_before: datetime, now: datetime) -> list[str]:
    due = sa.and_(Filing.personal_data_erased_at.is_(None), Filing.final_at <= final_before)
    chunk = (
        sa.select(Filing.id)
        .where(due)
        .order_by(Filing.final_at)
        .limit(ERASE_CHUNK)
        .with_for_update(skip_locked=True)
    )
    filing_ids = list(
        db.session.scalars(
            sa.update(Filing)
            .where(Filing.id.in_(chunk), due)
            .values(personal_data_sealed=None, personal_data_erased_at=now)
            .returning(Filing.id)
            .execution_options(synchronize_session=False)
        )
    )
    if filing_ids:
        db.session.execute(
            sa.update(Verification)
            .where(Verification.filing_id.in_(filing_ids))
            .values(phone_sealed=None, code_sealed=None)
            .execution_options(synchronize_session=False)
        )
    return filing_ids


def run_due(now: datetime) -> dict[str, int]:
    """Both sweeps, the erasure of personal data past its retention period, the texts due to
    go through another gateway, the deletion of expired captchas, of finished per-phone counts
    and of sign-in throttles gone quiet, then the relay of anything left undelivered, then the
    pruning of what has outlived its period and of the audit log past its retention; commits."""
    expired = expire(now)
    resent = noon_resend(now)
    erased = erase_personal_data(now)
    rerouted = reroute.reroute_due(now)
    captchas.delete_expired(now)
    limits.delete_finished_windows(now)
    signin_throttle.prune(now)
    db.session.commit()
    relayed = relay.relay(now)
    pruned = pruning.prune(now)
    audit_pruned = audit.prune(now)
    return {
        "expired": len(expired),
        "noon_resent": len(resent),
        "personal_data_erased": erased,
        "rerouted": len(rerouted),
        "relayed": relayed,
        "pruned": pruned,
        "audit_pruned": audit_pruned,
    }
