"""The periodic sweeps (SPEC §4, §10): expiry, the noon resend and the erasure of personal
data past its retention period, as set-based SQL.

Each statement claims its rows with `UPDATE … WHERE <still due> RETURNING`, so a
sweep is idempotent and two sweeps running at once never act on a row twice.
The rules never wait for a sweep: verify and resend check the deadline themselves.
"""

from collections.abc import Iterator
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from portal import audit, captchas, events, id_lists, live_codes, pruning, signin_throttle
from portal.delivery import outbox, relay, reroute
from portal.extensions import db
from portal.models import (
    ErasureDue,
    Filing,
    FilingStatus,
    LiveCode,
    MessageKind,
    PendingFiling,
    ReturnReason,
    SmsMessage,
    Verification,
    VerificationStatus,
)
from portal.protection import limits

# Filings returned per statement: bounded memory however many fall due at once. Past ~20,000
# ids PostgreSQL's planner read the whole filings table for them rather than probe its key
# (docs/performance.md).
EXPIRE_CHUNK = 10_000
# Due entries read at once and shared out between chunks (`_chunks_due`). Five chunks keep a
# backlog's updates HOT; ten did as well but scattered each chunk more (docs/performance.md).
EXPIRE_WINDOW = 5 * EXPIRE_CHUNK
# The transaction-level advisory lock an expiry holds on PostgreSQL (the same in every process).
EXPIRY_LOCK = 0x53574545


def expire(now: datetime) -> list[str]:
    """Return every filing still pending at its deadline; their pending verifications expire.

    One expiry at a time: on PostgreSQL a sweep that finds another's expiry under way leaves
    it to that one (SQLite lets one writer in at a time anyway). A filing whose row another
    transaction holds (a verify, a worker recording its texts) is left to the next sweep: the
    sweep never waits for a row, so it cannot deadlock with one that locks several filings.
    The lock checks each filing's own status and deadline as it takes the row, so a filing
    verified meanwhile stays, whatever its entry in the pending list says.

    Each chunk but the first starts by committing those before it (`_chunks_due` says why);
    the last is left to the caller's commit, so an expiry of one chunk commits nothing itself.
    """
    if not _expiry_lock():
        return []
    returned: list[str] = []
    for number, filing_ids in enumerate(_chunks_due(now)):
        if number and not _commit_and_lock_again():
            break
        returned += _return_expired(filing_ids, now)
    return returned


def _expiry_lock() -> bool:
    if db.session.get_bind().dialect.name != "postgresql":
        return True
    return db.session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(EXPIRY_LOCK)))


def _commit_and_lock_again() -> bool:
    """False when another sweep took the expiry's lock in between: the rest is left to it."""
    db.session.commit()
    return _expiry_lock()


def _chunks_due(now: datetime) -> Iterator[list[str]]:
    """The due filings' ids in chunks of at most `EXPIRE_CHUNK`: each chunk takes every n-th of
    the next `EXPIRE_WINDOW` entries of the pending list, in deadline order.

    Filings that fall due together were submitted together and share pages of `filings` and
    `verifications`. A page has room for a few new row versions (fillfactor 85) until the old
    ones, once committed, are pruned. Chunks of consecutive entries updated half the rows of
    each page they touched in a backlog, and two thirds of those updates found no room: not
    HOT, each row then indexed anew (docs/performance.md). Shared out, each chunk updates a
    fifth of them, and the commit before the next lets their old versions be pruned."""
    after = None
    while due := _due_entries(now, after):
        parts = -(-len(due) // EXPIRE_CHUNK)
        for part in range(parts):
            yield [filing_id for filing_id, _ in due[part::parts]]
        if len(due) < EXPIRE_WINDOW:
            return
        after = due[-1]


# An entry's deadline as stored (naive UTC), not made aware row by row: only a window's last is
# used, as the next window's key.
_STORED_DEADLINE = sa.type_coerce(PendingFiling.deadline, sa.DateTime)


def _due_entries(now: datetime, after: tuple[str, datetime] | None) -> list[tuple[str, datetime]]:
    """The next `EXPIRE_WINDOW` entries of the pending list past their deadline, as (filing
    id, deadline), read from ix_pending_filings_deadline in (deadline, id) order after the last
    window's key: no window reads an earlier one's rows."""
    return list(
        db.session.execute(
            sa.select(PendingFiling.filing_id, _STORED_DEADLINE)
            .where(PendingFiling.deadline <= now, *_keys_after(after))
            .order_by(PendingFiling.deadline, PendingFiling.filing_id)
            .limit(EXPIRE_WINDOW)
        )
    )


def _keys_after(key: tuple[str, datetime] | None) -> list[sa.ColumnElement[bool]]:
    """Past `key` (id, deadline) in ix_pending_filings_deadline's (deadline, id) order."""
    if key is None:
        return []
    filing_id, deadline = key
    return [sa.tuple_(_STORED_DEADLINE, PendingFiling.filing_id) > (deadline, filing_id)]


def _return_expired(filing_ids: list[str], now: datetime) -> list[str]:
    """Return those of these filings still pending at their deadline, each locked as it is
    checked (one another transaction holds is skipped, left to the next sweep); expire their
    pending codes, write their events and move them from the pending list to the erasure's.
    No index of filings names `status`, `return_reason` or `final_at`: on PostgreSQL these are
    HOT updates."""
    locked = Filing.__table__.alias("locked")
    still_due = (
        sa.select(locked.c.id)
        .where(
            id_lists.among(locked.c.id, filing_ids),
            locked.c.status == FilingStatus.PENDING_VERIFICATION,
            locked.c.deadline <= now,
        )
        .with_for_update(skip_locked=True)
    )
    returned = list(
        db.session.scalars(
            sa.update(Filing)
            .where(Filing.id.in_(still_due))
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
            id_lists.among(Verification.filing_id, returned),
            Verification.status == VerificationStatus.PENDING,
        )
        .values(status=VerificationStatus.EXPIRED)
        .returning(Verification.id)
        .execution_options(synchronize_session=False)
    ).all()
    for part in id_lists.in_parts(expired):
        live_codes.release_ids(id_lists.among(LiveCode.verification_id, part))
    outbox.events_after_commit(events.record_status_changes(returned, now))
    _no_longer_pending(returned, now)
    return returned


def _no_longer_pending(filing_ids: list[str], now: datetime) -> None:
    """The returned filings leave the pending list and join the erasure's, final at `now`
    (each list's own rows are read, not the filings')."""
    leaving = id_lists.among(PendingFiling.filing_id, filing_ids)
    db.session.execute(
        sa.insert(ErasureDue).from_select(
            ["final_at", "filing_id"],
            sa.select(sa.literal(now, ErasureDue.final_at.type), PendingFiling.filing_id).where(
                leaving
            ),
        )
    )
    db.session.execute(
        sa.delete(PendingFiling).where(leaving).execution_options(synchronize_session=False)
    )


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
    while True:
        taken, chunk_erased = _erase_chunk(now - timedelta(days=days), now)
        erased += chunk_erased
        if taken < ERASE_CHUNK:
            return erased


def _erase_chunk(final_before: datetime, now: datetime) -> tuple[int, int]:
    """The next due entries of the erasure's list, their filings locked (one another
    transaction holds is left to the next sweep): those filings erased and the entries
    dropped. Returns how many entries were taken and how many filings erased."""
    taken = list(
        db.session.scalars(
            sa.select(ErasureDue.filing_id)
            .join(Filing, Filing.id == ErasureDue.filing_id)
            .where(ErasureDue.final_at <= final_before)
            .order_by(ErasureDue.final_at, ErasureDue.filing_id)
            .limit(ERASE_CHUNK)
            .with_for_update(of=Filing, skip_locked=True)
        )
    )
    if not taken:
        return 0, 0
    filing_ids = list(
        db.session.scalars(
            sa.update(Filing)
            .where(Filing.id.in_(taken), Filing.personal_data_erased_at.is_(None))
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
    db.session.execute(
        sa.delete(ErasureDue)
        .where(ErasureDue.final_at <= final_before, ErasureDue.filing_id.in_(taken))
        .execution_options(synchronize_session=False)
    )
    return len(taken), len(filing_ids)


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
