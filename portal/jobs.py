"""Background jobs and how they are queued.

Job functions are module-level, take ids, and are idempotent. They are queued only
after the transaction that wrote their rows commits (`commit()`), on RQ when
`REDIS_URL` is set and in-process otherwise.
"""

import functools
import logging
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app, has_app_context
from redis.exceptions import RedisError
from rq import Retry

from portal import keys
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Filing, MessageStatus, Province, SmsMessage
from portal.sms import code_text

log = logging.getLogger(__name__)

# Growing delays between attempts at one text: eight attempts over about two hours.
SMS_RETRY_DELAYS = (5, 15, 60, 300, 900, 1800, 3600)
SMS_MAX_ATTEMPTS = len(SMS_RETRY_DELAYS) + 1


def deliver_after_commit(message: SmsMessage) -> None:
    db.session.info.setdefault("outbox", []).append(message)


def commit() -> None:
    """Commit the session, then queue delivery of the texts it wrote."""
    db.session.flush()
    message_ids = [message.id for message in db.session.info.pop("outbox", [])]
    db.session.commit()
    for message_id in message_ids:
        enqueue(deliver_sms, message_id, retry_delays=SMS_RETRY_DELAYS)


def enqueue(func: Callable, *args, retry_delays: tuple[int, ...] = ()) -> None:
    queue = current_app.extensions.get("rq_queue")
    if queue is None:
        _run_in_process(func, *args)
        return
    retry = Retry(max=len(retry_delays), interval=list(retry_delays)) if retry_delays else None
    try:
        queue.enqueue(func, *args, retry=retry)
    except RedisError:
        log.warning("could not queue %s%r; it stays in the outbox", func.__name__, args)


def _run_in_process(func: Callable, *args) -> None:
    try:
        func(*args)
    except Exception:
        db.session.rollback()
        log.exception("in-process job %s%r failed; it stays in the outbox", func.__name__, args)


def in_app_context(func: Callable) -> Callable:
    """Run a job inside the app, creating one when the worker did not push it."""

    @functools.wraps(func)
    def wrapper(*args):
        if has_app_context():
            return func(*args)
        from portal import create_app

        with create_app().app_context():
            return func(*args)

    return wrapper


@in_app_context
def deliver_sms(message_id: int) -> None:
    message = db.session.get(SmsMessage, message_id)
    if message is None or message.status != MessageStatus.QUEUED:
        return
    verification = message.verification
    province = db.session.get(Province, verification.province_slug)
    text = code_text(
        province, keys.unseal(verification.code_sealed), current_app.config["PUBLIC_BASE_URL"]
    )
    message.attempts += 1
    try:
        current_app.extensions["sms"].send(verification.phone, text, f"sms-{message.id}")
    except Exception as error:
        message.last_error = f"{type(error).__name__}: {error}"[:500]
        if message.attempts >= SMS_MAX_ATTEMPTS:
            message.status = MessageStatus.FAILED
            db.session.commit()
            return
        db.session.commit()
        raise
    now = utcnow()
    message.status = MessageStatus.SENT
    message.sent_at = now
    _start_the_clock(verification.filing_id, now + timedelta(hours=province.code_validity_hours))
    db.session.commit()


def _start_the_clock(filing_id: str, deadline) -> None:
    """The code's validity runs from its first sending: the first text sent sets the deadline."""
    db.session.execute(
        sa.update(Filing)
        .where(Filing.id == filing_id, Filing.deadline.is_(None))
        .values(deadline=deadline)
    )
