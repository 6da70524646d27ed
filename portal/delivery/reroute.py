"""A text sent once more, through the next gateway, when the first may not have delivered
it (SPEC §9): when its receipt says `undelivered`, or when the gateway timed out and no
receipt came within `SMS_RECEIPT_WAIT_SECONDS`. Only a first text is rerouted, once; a
text whose gateway timed out is never sent elsewhere before then, so that a slow gateway
does not make one text arrive twice.
"""

from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from portal.delivery import outbox
from portal.delivery.gateways import Accepted, TimedOut
from portal.extensions import db
from portal.models import MessageStatus, SmsMessage, Verification, VerificationStatus

BATCH = 1000


def unless_confirmed_by(outcome: Accepted | TimedOut, sent_at: datetime) -> datetime | None:
    """When a text just handed to a gateway goes elsewhere unless a receipt confirms it."""
    if isinstance(outcome, TimedOut):
        return sent_at + timedelta(seconds=current_app.config["SMS_RECEIPT_WAIT_SECONDS"])
    return None


def after_receipt(delivered: bool, rerouted_from: int | None, now: datetime) -> datetime | None:
    """An `undelivered` receipt for a first text sends it on at once; any other ends the wait."""
    return now if not delivered and rerouted_from is None else None


def reroute_due(now: datetime) -> list[int]:
    """Queue, through the next gateway, each text due to go elsewhere whose code is still
    pending; returns the new texts' ids. Called by the sweep and after receipts."""
    taken = _take_due(now)
    if not taken:
        return []
    failover = current_app.extensions["sms"]
    pending = set(
        db.session.scalars(
            sa.select(Verification.id).where(
                Verification.id.in_({row.verification_id for row in taken}),
                Verification.status == VerificationStatus.PENDING,
            )
        )
    )
    rows = [
        {
            "verification_id": row.verification_id,
            "kind": row.kind,
            "created_at": now,
            "next_attempt_at": now,
            "rerouted_from": row.id,
        }
        for row in taken
        if row.verification_id in pending and failover.next_after(row.gateway) is not None
    ]
    if not rows:
        return []
    message_ids = list(db.session.scalars(sa.insert(SmsMessage).returning(SmsMessage.id), rows))
    for message_id in message_ids:
        outbox.text_after_commit(message_id)
    return message_ids


def _take_due(now: datetime) -> list[sa.Row]:
    """Each due text, once: its `reroute_at` is cleared in the same statement."""
    due = sa.and_(SmsMessage.reroute_at <= now, SmsMessage.status == MessageStatus.SENT)
    batch = (
        sa.select(SmsMessage.id)
        .where(due)
        .order_by(SmsMessage.reroute_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    return db.session.execute(
        sa.update(SmsMessage)
        .where(SmsMessage.id.in_(batch), due)
        .values(reroute_at=None)
        .returning(SmsMessage.id, SmsMessage.verification_id, SmsMessage.kind, SmsMessage.gateway)
        .execution_options(synchronize_session=False)
    ).all()
