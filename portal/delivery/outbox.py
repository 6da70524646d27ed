"""The outbox: each text (`SmsMessage`) and webhook event (`Event`) is a row written in the
transaction that asked for it, and handed to a job only once that transaction commits.

A path asks with `text_after_commit` / `events_after_commit`; SQLAlchemy's session events do
the rest, so a plain `db.session.commit()` queues the rows and a rollback queues nothing. Jobs
go onto RQ when `REDIS_URL` is set (by the name of their entry point in `portal.jobs`) and run
in-process otherwise. A row whose job Redis refused is marked never queued
(`enqueue_failed_at`): the relay takes it at the next sweep, without the grace it leaves a job
that is in Redis and merely late.

A job takes rows with `claim`, one conditional UPDATE for texts and events alike: a row is
taken only while undelivered and held by nobody, and the taker holds it for `claim_period()`.
"""

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.utils import import_attribute

from portal import queues
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Event, MessageStatus, SmsMessage

log = logging.getLogger(__name__)

# Growing delays between attempts at one text: eight attempts over about two hours.
SMS_RETRY_DELAYS = (5, 15, 60, 300, 900, 1800, 3600)
SMS_MAX_ATTEMPTS = len(SMS_RETRY_DELAYS) + 1
# Webhooks are retried for more than 24 hours (the delays add up to about 26 h).
WEBHOOK_RETRY_DELAYS = (10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 21600, 43200)
WEBHOOK_MAX_ATTEMPTS = len(WEBHOOK_RETRY_DELAYS) + 1
# With RQ, the relay leaves a row whose job is in Redis this long past its due time to RQ.
RQ_GRACE = timedelta(minutes=5)
# Texts a batch job claims and sends at once (`sending`).
SMS_BATCH = 200
BATCH_RETRIES = 3
# A commit with more events than this queues them `EVENT_BATCH` to a job, which may take
# `EVENT_BATCH_SECONDS`: one slow receiver after another, each up to webhooks.TIMEOUT_SECONDS.
EVENTS_ONE_BY_ONE = 10
EVENT_BATCH = 50
EVENT_BATCH_SECONDS = EVENT_BATCH * 5 + 60

# What is not delivered yet, for each kind of row.
UNDELIVERED = {
    SmsMessage: SmsMessage.status == MessageStatus.QUEUED,
    Event: sa.and_(Event.delivered_at.is_(None), Event.next_attempt_at.is_not(None)),
}

_ASKED = "outbox"


def job_seconds() -> int:
    """How long RQ lets a delivery job run (`DELIVERY_JOB_SECONDS`, 180 by default: a batch of
    texts whose gateways all time out takes about 130 s)."""
    return current_app.config["DELIVERY_JOB_SECONDS"]


def claim_period() -> timedelta:
    """How long a job holds the rows it attempts: longer than it may run, so a hold runs out
    only when its job is dead; the relay then takes the rows at its next sweep."""
    return timedelta(seconds=job_seconds() + 30)


@dataclass
class _Asked:
    texts: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


def text_after_commit(message_id: int) -> None:
    _asked().texts.append(message_id)


def events_after_commit(event_ids: list[str]) -> None:
    _asked().events.extend(event_ids)


def _asked() -> _Asked:
    return db.session.info.setdefault(_ASKED, _Asked())


@sa.event.listens_for(db.session, "after_commit")
def _queue_committed(session) -> None:
    """Queue what the committed transaction asked for: its texts in batch jobs (a filing's
    texts in one job); its events one job each, or in batch jobs when there are many."""
    asked = session.info.pop(_ASKED, None)
    if asked is None:
        return
    if asked.texts:
        queue_texts(asked.texts)
    if asked.events:
        queue_events(asked.events)


@sa.event.listens_for(db.session, "after_transaction_end")
def _forget_uncommitted(session, transaction) -> None:
    """A transaction that ended without committing (rolled back, closed) asks for nothing."""
    if transaction.parent is None:
        session.info.pop(_ASKED, None)


def texts_run_in_process() -> bool:
    """Without Redis a commit sends its texts itself, before it returns."""
    return queues.rq_queue(queues.SMS) is None


def queue_texts(message_ids: list[int]) -> None:
    """Texts `SMS_BATCH` to a job (a filing's texts, or a noon resend of thousands). A batch
    job that fails as a whole (the database away) is run again by RQ; it claims only the texts
    still to send."""
    batches = list(_chunks(message_ids, SMS_BATCH))
    _hand_over(
        queues.SMS,
        "deliver_sms_batch",
        SmsMessage,
        batches,
        retry=batch_retry(),
        timeout=job_seconds(),
    )


def batch_retry() -> Retry:
    """RQ's retries of a batch job of texts that failed as a whole."""
    return Retry(max=BATCH_RETRIES, interval=list(SMS_RETRY_DELAYS[:BATCH_RETRIES]))


def queue_events(event_ids: list[str]) -> None:
    """A few events one job each (RQ retries each); many (a sweep) `EVENT_BATCH` to a job."""
    if len(event_ids) <= EVENTS_ONE_BY_ONE:
        _hand_over(
            queues.WEBHOOKS,
            "deliver_event",
            Event,
            event_ids,
            retry=webhook_retry(),
            timeout=job_seconds(),
        )
    else:
        batches = list(_chunks(event_ids, EVENT_BATCH))
        _hand_over(
            queues.WEBHOOKS, "deliver_event_batch", Event, batches, timeout=EVENT_BATCH_SECONDS
        )


def webhook_retry(delays: tuple[int, ...] | None = None) -> Retry | None:
    """RQ's retries of an event's job: after each of `delays`, by default all of them."""
    delays = WEBHOOK_RETRY_DELAYS if delays is None else delays
    return Retry(max=len(delays), interval=list(delays)) if delays else None


def queue_at(when: datetime | None, job: str, model, arg, retry: Retry | None) -> None:
    """`portal.jobs.<job>(arg)` for rows due later (a retry, a paced text), or at once when
    `when` is None; only with RQ: in-process, the relay runs them when they are due."""
    queue = queues.rq_queue(_QUEUE_OF[model])
    if queue is None:
        return
    try:
        if when is None:
            queue.enqueue(f"portal.jobs.{job}", arg, retry=retry, job_timeout=job_seconds())
        else:
            queue.enqueue_at(
                when, f"portal.jobs.{job}", arg, retry=retry, job_timeout=job_seconds()
            )
    except RedisError:
        log.warning("could not queue %s(%r); the next sweep will", job, arg)
        mark_never_queued(model, _ids([arg]))


_QUEUE_OF = {SmsMessage: queues.SMS, Event: queues.WEBHOOKS}


def _hand_over(queue_name: str, job: str, model, args: list, **options) -> None:
    """`portal.jobs.<job>` once for each of `args` (a row id or a list of them): queued on RQ,
    pipelined, or run in-process one after another."""
    queue = queues.rq_queue(queue_name)
    if queue is None:
        func = import_attribute(f"portal.jobs.{job}")
        for arg in args:
            _run_in_process(func, arg)
        return
    try:
        for start in range(0, len(args), 1000):
            queue.enqueue_many(
                [
                    Queue.prepare_data(f"portal.jobs.{job}", (arg,), **options)
                    for arg in args[start : start + 1000]
                ]
            )
    except RedisError:
        row_ids = _ids(args)
        log.warning("could not queue %s for %d rows; the next sweep will", job, len(row_ids))
        mark_never_queued(model, row_ids)


def _run_in_process(func: Callable, arg) -> None:
    try:
        func(arg)
    except Exception:
        log.warning("in-process job %s(%r) failed; the relay retries it", func.__name__, arg)


def mark_never_queued(model, row_ids: list) -> None:
    """Rows whose job Redis did not take. On a connection of its own: this runs after the
    session committed (inside its `after_commit`, where the session cannot emit SQL)."""
    with db.engine.begin() as connection:
        for chunk in _chunks(row_ids, 1000):
            connection.execute(
                sa.update(model).where(model.id.in_(chunk)).values(enqueue_failed_at=utcnow())
            )


def claim(model, row_ids: list, now: datetime) -> list:
    """Take the rows for one attempt, each only while it is undelivered and nobody holds it
    (no hold, or one that ran out); returns the ids taken, each now held for `claim_period()`. Commits,
    so the hold is seen by every other job at once."""
    taken = list(
        db.session.scalars(
            sa.update(model)
            .where(model.id.in_(row_ids), UNDELIVERED[model], unheld(model, now))
            .values(attempts=model.attempts + 1, held_until=now + claim_period())
            .returning(model.id)
            .execution_options(synchronize_session=False)
        )
    )
    db.session.commit()
    return taken


def unheld(model, now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(model.held_until.is_(None), model.held_until <= now)


def schedule_retry(row, delays: tuple[int, ...], now: datetime) -> bool:
    """After a failed attempt: release the hold and set when the next is due, or none. True
    when one is left."""
    left = row.attempts <= len(delays)
    row.held_until = None
    row.next_attempt_at = now + timedelta(seconds=delays[row.attempts - 1]) if left else None
    return left


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _ids(args: list) -> list:
    """The row ids of job arguments that are each a row id or a list of them."""
    return [row_id for arg in args for row_id in (arg if isinstance(arg, list) else [arg])]
