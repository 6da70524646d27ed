"""The relay, run by every sweep: it queues again each text and event that no job delivered.

It takes a row at once when its job never reached Redis (`enqueue_failed_at`) or when the
hold of the job attempting it ran out (the job died mid-attempt); a row whose job is in Redis
it leaves to RQ for `RQ_GRACE` past its due time. Without Redis every due row is taken.
"""

from datetime import datetime, timedelta

import sqlalchemy as sa

from portal import queues
from portal.delivery import outbox
from portal.delivery.outbox import RQ_GRACE, UNDELIVERED, claim_period
from portal.extensions import db
from portal.models import Event, SmsMessage

RELAY_BATCH = 1000


def relay(now: datetime) -> int:
    """Queue again every text and event no job has delivered by its due time; how many.

    Each row taken is pushed one claim period on and its marks are cleared, so the next relay
    (or one running at the same time) does not queue it again while its job waits for a
    worker; the job it is handed to can claim it, since the relay holds nothing.
    """
    grace = timedelta(0) if queues.rq_queue(queues.SMS) is None else RQ_GRACE
    message_ids = _take_due(SmsMessage, now, grace)
    event_ids = _take_due(Event, now, grace)
    db.session.commit()
    if message_ids:
        outbox.queue_texts(message_ids)
    if event_ids:
        outbox.queue_events(event_ids)
    return len(message_ids) + len(event_ids)


def _take_due(model, now: datetime, grace: timedelta) -> list:
    due = sa.and_(
        UNDELIVERED[model],
        outbox.unheld(model, now),
        sa.or_(
            model.next_attempt_at <= now - grace,
            sa.and_(model.enqueue_failed_at.is_not(None), model.next_attempt_at <= now),
            model.held_until.is_not(None),
        ),
    )
    batch = sa.select(model.id).where(due).order_by(model.next_attempt_at).limit(RELAY_BATCH)
    return list(
        db.session.scalars(
            sa.update(model)
            .where(model.id.in_(batch), due)
            .values(next_attempt_at=now + claim_period(), held_until=None, enqueue_failed_at=None)
            .returning(model.id)
            .execution_options(synchronize_session=False)
        )
    )
