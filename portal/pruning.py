"""What the sweep deletes, and how long each kind of row is kept (SPEC §10 sets the periods).

Kept for good: filings, their verifications (masked forms and digests: the personal data in
them is erased on its own schedule) and their status-change events, which the API lists and
the timeline shows.

Deleted:
- verify attempts that named no verification (a wrong code, an unknown phone), after
  ABUSE_TRACES_KEPT: no timeline shows them and anyone who posts adds to them; they are kept,
  as long as personal data is, only to look into abuse;
- a filing's delivery details once it has been in a final status for DETAILS_KEPT, the least
  audit retention SPEC §10 allows: its verify attempts, the texts that were sent and the
  webhook attempts of the events that were delivered. A text that failed and the attempts of
  an event never delivered stay: they are the evidence of a failure (a few rows a filing).

Rows go BATCH at a time, each batch its own transaction, so no lock is held for long.
"""

from datetime import datetime, timedelta

import sqlalchemy as sa

from portal.extensions import db
from portal.models import (
    FINAL_STATUSES,
    Event,
    Filing,
    MessageStatus,
    SmsMessage,
    Verification,
    VerifyAttempt,
    WebhookDelivery,
)

ABUSE_TRACES_KEPT = timedelta(days=30)
DETAILS_KEPT = timedelta(days=180)
BATCH = 5_000
# Per kind of row and sweep: a sweep stays short, and a backlog drains over the next ones.
BATCHES_PER_SWEEP = 10


def prune(now: datetime) -> int:
    """Delete what has outlived its period; commits. Returns how many rows went."""
    closed_before = now - DETAILS_KEPT
    doomed = [
        (VerifyAttempt, _attempts_without_verification(now - ABUSE_TRACES_KEPT)),
        (VerifyAttempt, _attempts_of_filings_closed(closed_before)),
        (SmsMessage, _texts_sent_for_filings_closed(closed_before)),
        (WebhookDelivery, _webhook_attempts_delivered_for_filings_closed(closed_before)),
    ]
    return sum(_delete_in_batches(model, ids) for model, ids in doomed)


def _attempts_without_verification(before: datetime) -> sa.Select:
    return sa.select(VerifyAttempt.id).where(
        VerifyAttempt.verification_id.is_(None), VerifyAttempt.attempted_at < before
    )


def _attempts_of_filings_closed(before: datetime) -> sa.Select:
    return (
        sa.select(VerifyAttempt.id)
        .join(Verification)
        .where(VerifyAttempt.attempted_at < before, _closed_before(Verification.filing_id, before))
    )


def _texts_sent_for_filings_closed(before: datetime) -> sa.Select:
    return (
        sa.select(SmsMessage.id)
        .join(Verification)
        .where(
            SmsMessage.status == MessageStatus.SENT,
            SmsMessage.created_at < before,
            _closed_before(Verification.filing_id, before),
        )
    )


def _webhook_attempts_delivered_for_filings_closed(before: datetime) -> sa.Select:
    return (
        sa.select(WebhookDelivery.id)
        .join(Event)
        .where(
            WebhookDelivery.attempted_at < before,
            Event.delivered_at.is_not(None),
            _closed_before(Event.filing_id, before),
        )
    )


def _closed_before(filing_id: sa.ColumnElement, before: datetime) -> sa.ColumnElement[bool]:
    """That filing reached its final status before `before` (`final_at` moves with every
    status change into a final one)."""
    return sa.exists().where(
        Filing.id == filing_id, Filing.status.in_(FINAL_STATUSES), Filing.final_at < before
    )


def _delete_in_batches(model: type[db.Model], ids: sa.Select) -> int:
    deleted = 0
    for _ in range(BATCHES_PER_SWEEP):
        count = db.session.execute(
            sa.delete(model)
            .where(model.id.in_(ids.limit(BATCH)))
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
        deleted += count
        if count < BATCH:
            break
    return deleted
