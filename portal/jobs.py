"""Background jobs and how they are queued.

Job functions are module-level, take ids, and are idempotent. They are queued only
after the transaction that wrote their rows commits (`after_commit` + `commit`),
on RQ when `REDIS_URL` is set and in-process otherwise. Each row to deliver (an SMS,
a webhook event) is its own outbox entry: a job claims it, and `relay` queues again
whatever no job has delivered by its `next_attempt_at`, so a message accepted while
Redis was down, or a retry lost with a worker, still goes out.
"""

import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app, has_app_context
from redis.exceptions import RedisError
from rq import Queue, Retry
from sqlalchemy.orm import joinedload

from portal import deadlines, monitoring, queues, webhooks
from portal.clock import utcnow
from portal.delivery import pacing, reroute
from portal.delivery.gateways import Accepted, TimedOut
from portal.delivery.texts import text_for
from portal.extensions import db
from portal.models import Event, MessageStatus, Province, SmsMessage

log = logging.getLogger(__name__)

# Growing delays between attempts at one text: eight attempts over about two hours.
SMS_RETRY_DELAYS = (5, 15, 60, 300, 900, 1800, 3600)
SMS_MAX_ATTEMPTS = len(SMS_RETRY_DELAYS) + 1
# Webhooks are retried for more than 24 hours (the delays add up to about 26 h).
WEBHOOK_RETRY_DELAYS = (10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 21600, 43200)
WEBHOOK_MAX_ATTEMPTS = len(WEBHOOK_RETRY_DELAYS) + 1
# How long a job holds a row it is delivering before the relay may hand it to another.
CLAIM = timedelta(seconds=60)
# With RQ, the relay leaves a row this long past its due time to RQ's own retry first.
RQ_GRACE = timedelta(minutes=5)
RELAY_BATCH = 1000
# Texts a batch job claims and sends at once, over keep-alive connections, `SEND_THREADS` at a
# time (a real gateway answers in tens of milliseconds: sending one by one would wait on it).
# A single text is sent by one job per text only when it is retried (`deliver_sms`).
SMS_BATCH = 200
SEND_THREADS = 16
BATCH_RETRIES = 3
# A commit with more events than this queues them `EVENT_BATCH` to a job.
EVENTS_ONE_BY_ONE = 10
EVENT_BATCH = 50


def after_commit(func: Callable, row_id) -> None:
    db.session.info.setdefault("after_commit", []).append((func, row_id))


def commit() -> None:
    """Commit the session, then queue the jobs it asked for: its texts in batch jobs (a filing's
    texts in one job); its events one job each, or in batch jobs when there are many (a sweep
    returning thousands of filings)."""
    queued = db.session.info.pop("after_commit", [])
    db.session.commit()
    texts = [row_id for func, row_id in queued if func is deliver_sms]
    if texts:
        enqueue_sms_batches(texts)
    _enqueue_events([row_id for func, row_id in queued if func is deliver_event])


def _enqueue_events(event_ids: list[str]) -> None:
    """A few events one job each (RQ retries each); many (a sweep) `EVENT_BATCH` to a job."""
    if len(event_ids) <= EVENTS_ONE_BY_ONE:
        for event_id in event_ids:
            _enqueue_event(event_id)
        return
    # Posted one after another: a batch may wait on slow receivers up to their timeout each.
    timeout = EVENT_BATCH * webhooks.TIMEOUT_SECONDS + 60
    _enqueue_batches(queues.WEBHOOKS, deliver_event_batch, event_ids, EVENT_BATCH, timeout=timeout)


def enqueue_sms_batches(message_ids: list[int]) -> None:
    """Queue texts `SMS_BATCH` to a job (a filing's texts, or a noon resend of thousands)."""
    # A batch job that fails as a whole (the database away) is run again; each text it
    # sent is marked sent, so a repeat claims only the texts still to send.
    _enqueue_batches(queues.SMS, deliver_sms_batch, message_ids, SMS_BATCH, retry=_batch_retry())


def _batch_retry() -> Retry:
    return Retry(max=BATCH_RETRIES, interval=list(SMS_RETRY_DELAYS[:BATCH_RETRIES]))


def _enqueue_batches(queue_name: str, func: Callable, row_ids: list, size: int, **options) -> None:
    """`func` on `size` rows at a time: in-process, or as RQ jobs queued pipelined."""
    batches = [row_ids[i : i + size] for i in range(0, len(row_ids), size)]
    queue = queues.rq_queue(queue_name)
    if queue is None:
        for batch in batches:
            _run_in_process(func, batch)
        return
    try:
        for start in range(0, len(batches), 1000):
            queue.enqueue_many(
                [
                    Queue.prepare_data(func, (batch,), **options)
                    for batch in batches[start : start + 1000]
                ]
            )
    except RedisError:
        log.warning("could not queue %s for %d rows; the relay will", func.__name__, len(row_ids))


def _enqueue_event(event_id: str) -> None:
    """One event's job, which RQ runs again after each delay while the receiver fails."""
    queue = queues.rq_queue(queues.WEBHOOKS)
    if queue is None:
        _run_in_process(deliver_event, event_id)
        return
    retry = Retry(max=len(WEBHOOK_RETRY_DELAYS), interval=list(WEBHOOK_RETRY_DELAYS))
    try:
        queue.enqueue(deliver_event, event_id, retry=retry)
    except RedisError:
        log.warning("could not queue event %r; the relay will queue it later", event_id)


def _run_in_process(func: Callable, row_id) -> None:
    try:
        func(row_id)
    except Exception:
        db.session.rollback()
        log.warning("in-process job %s(%r) failed; the relay retries it", func.__name__, row_id)


def in_app_context(func: Callable) -> Callable:
    """Run a job in an app context of its own, so it has its own database session."""

    @functools.wraps(func)
    def wrapper(*args):
        app = current_app._get_current_object() if has_app_context() else _worker_app()
        with app.app_context():
            return func(*args)

    return wrapper


@functools.cache
def _worker_app():
    """The app of a plain `rq worker`, built once per process."""
    from portal import create_app

    return create_app()


def _claim(model, row_id, pending, now: datetime):
    """Take the row for one attempt; None when it is done or another job holds it."""
    row = db.session.get(model, row_id, populate_existing=True)
    if row is None or not pending(row):
        return None
    claimed = db.session.execute(
        sa.update(model)
        .where(model.id == row_id, model.attempts == row.attempts)
        .values(attempts=row.attempts + 1, next_attempt_at=now + CLAIM)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return db.session.get(model, row_id, populate_existing=True) if claimed else None


def _schedule_retry(row, delays: tuple[int, ...], now: datetime) -> bool:
    """After a failed attempt: when the next is due, or none. True when one is left."""
    left = row.attempts <= len(delays)
    row.next_attempt_at = now + timedelta(seconds=delays[row.attempts - 1]) if left else None
    return left


class TextNotSent(Exception):
    pass


@in_app_context
def deliver_sms(message_id: int) -> None:
    """One text, as `deliver_sms_batch` sends it: the job of a text's retry. It raises while
    the text has attempts left, so that RQ runs it again after the next delay."""
    if _send_texts([message_id]):
        raise TextNotSent(f"text {message_id} not sent")


@in_app_context
def deliver_sms_batch(message_ids: list[int]) -> None:
    """Sends the texts still to send; each that fails gets a `deliver_sms` job for its retry."""
    for message in _send_texts(message_ids):
        _retry_later(queues.SMS, deliver_sms, message, SMS_RETRY_DELAYS)


def _send_texts(message_ids: list[int]) -> list[SmsMessage]:
    """One claim, the sends in parallel, one commit; returns the texts that failed and have an
    attempt left.

    The claim is one `UPDATE … WHERE status = 'queued' RETURNING`: it takes every text still to
    send, so a text already sent (a duplicate job, a relay) is never sent again. A text over its
    phone's pacing limits waits (`_wait`). A code's first text sent starts its validity, a
    code none of whose texts could be sent runs from acceptance (portal/deadlines.py). A text
    whose gateway did not answer in time counts as sent (it may have arrived): `reroute`
    decides whether it goes elsewhere.
    """
    claimed = _claim_texts(message_ids, utcnow())
    if not claimed:
        return []
    ready, waiting = pacing.plan(claimed, utcnow())
    for message, slot in waiting:
        _wait(message, slot)
    provinces = {p.slug: p for p in db.session.scalars(sa.select(Province))}
    outcomes = _send_all(ready, provinces) if ready else []
    sent = [(message, outcome) for message, outcome in outcomes if _handed_over(outcome)]
    _mark_sent(sent, utcnow(), provinces)
    retries = [
        message
        for message, outcome in outcomes
        if not _handed_over(outcome) and _fail(message, outcome, utcnow())
    ]
    db.session.commit()
    _enqueue_when_due(waiting)
    return retries


def _wait(message: SmsMessage, slot: datetime) -> None:
    """Leave the text queued until pacing lets it go; the wait is not an attempt."""
    message.attempts -= 1
    message.next_attempt_at = slot
    message.paced_until = slot


def _enqueue_when_due(waiting: list[tuple[SmsMessage, datetime]]) -> None:
    """Texts that wait, as RQ jobs delayed until each may go; in-process, the relay sends them
    when due (nothing sleeps)."""
    queue = queues.rq_queue(queues.SMS)
    if queue is None or not waiting:
        return
    by_slot: dict[datetime, list[int]] = {}
    for message, slot in waiting:
        by_slot.setdefault(slot, []).append(message.id)
    try:
        for slot, message_ids in by_slot.items():
            queue.enqueue_at(slot, deliver_sms_batch, message_ids, retry=_batch_retry())
    except RedisError:
        log.warning("could not queue %d paced texts; the relay will", len(waiting))


def _handed_over(outcome: Accepted | Exception) -> bool:
    return isinstance(outcome, Accepted | TimedOut)


def _claim_texts(message_ids: list[int], now: datetime) -> list[SmsMessage]:
    claimed = list(
        db.session.scalars(
            sa.update(SmsMessage)
            .where(SmsMessage.id.in_(message_ids), SmsMessage.status == MessageStatus.QUEUED)
            .values(attempts=SmsMessage.attempts + 1, next_attempt_at=now + CLAIM)
            .returning(SmsMessage.id)
            .execution_options(synchronize_session=False)
        )
    )
    db.session.commit()
    if not claimed:
        return []
    return list(
        db.session.scalars(
            sa.select(SmsMessage)
            .where(SmsMessage.id.in_(claimed))
            .options(joinedload(SmsMessage.verification))
            .execution_options(populate_existing=True)
        ).unique()
    )


def _send_all(
    messages: list[SmsMessage], provinces: dict[str, Province]
) -> list[tuple[SmsMessage, Accepted | Exception]]:
    """Each text's outcome; the texts are written here, the sending runs on threads."""
    base_url = current_app.config["PUBLIC_BASE_URL"]
    gateway = current_app.extensions["sms"]
    texts = [
        text_for(message, provinces[message.verification.province_slug], base_url)
        for message in messages
    ]

    def send(text) -> Accepted | Exception:
        try:
            return gateway.send(text)
        except Exception as error:
            return error

    outcomes = map(send, texts) if len(texts) == 1 else _senders().map(send, texts)
    return list(zip(messages, outcomes, strict=True))


@functools.cache
def _senders() -> ThreadPoolExecutor:
    """The process's sending threads, kept between jobs (made in the process that sends: a
    forking worker makes its own in each job's child)."""
    return ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="sms-send")


def _mark_sent(
    sent: list[tuple[SmsMessage, Accepted | TimedOut]],
    sent_at: datetime,
    provinces: dict[str, Province],
) -> None:
    """Sent, by which gateway and with its id (none after a timeout): one statement."""
    if not sent:
        return
    table = SmsMessage.__table__
    db.session.execute(
        table.update()
        .where(table.c.id == sa.bindparam("message_id"))
        .values(
            status=MessageStatus.SENT,
            sent_at=sent_at,
            next_attempt_at=None,
            gateway=sa.bindparam("sent_via"),
            gateway_message_id=sa.bindparam("sent_as"),
            reroute_at=sa.bindparam("unconfirmed_until", type_=table.c.reroute_at.type),
        ),
        [
            {
                "message_id": message.id,
                "sent_via": outcome.gateway,
                "sent_as": outcome.gateway_id if isinstance(outcome, Accepted) else None,
                "unconfirmed_until": reroute.unless_confirmed_by(outcome, sent_at),
            }
            for message, outcome in sent
        ],
    )
    monitoring.SMS_SENT.inc(len(sent))
    deadlines.start([message.verification for message, _outcome in sent], sent_at, provinces)


def _fail(message: SmsMessage, error: Exception, now: datetime) -> bool:
    """Record a failed attempt as `deliver_sms` does; true when another is left."""
    message.last_error = f"{type(error).__name__}: {error}"[:500]
    retry = _schedule_retry(message, SMS_RETRY_DELAYS, now)
    if not retry:
        message.status = MessageStatus.FAILED
        deadlines.give_up(message)
    (monitoring.SMS_RETRIED if retry else monitoring.SMS_FAILED).inc()
    log.warning(
        "text %s not sent (attempt %d, %s): %s",
        message.id, message.attempts, "retried later" if retry else "given up", message.last_error,
    )  # fmt: skip
    return retry


def _retry_later(queue_name: str, func: Callable, row, delays: tuple[int, ...]) -> None:
    """Queue the row's next attempt as a job of its own, with RQ retries for the ones after."""
    queue = queues.rq_queue(queue_name)
    if queue is None:
        return  # in-process: the relay queues it again when it is due
    left = delays[row.attempts :]
    delay = delays[row.attempts - 1]
    retry = Retry(max=len(left), interval=list(left)) if left else None
    try:
        if delay:
            queue.enqueue_in(timedelta(seconds=delay), func, row.id, retry=retry)
        else:  # as RQ retries with an interval of 0: queued again at once
            queue.enqueue(func, row.id, retry=retry)
    except RedisError:
        log.warning("could not queue a retry of %s(%r); the relay will", func.__name__, row.id)


@in_app_context
def deliver_event(event_id: str) -> None:
    if (event := _attempt_event(event_id)) is not None:
        # RQ runs the job again after its next delay.
        raise webhooks.DeliveryFailed(f"event {event_id}: attempt {event.attempts} failed")


@in_app_context
def deliver_event_batch(event_ids: list[str]) -> None:
    """`deliver_event` for each; an event that fails is handed to a job of its own for its
    retry."""
    for event_id in event_ids:
        if (event := _attempt_event(event_id)) is not None:
            _retry_later(queues.WEBHOOKS, deliver_event, event, WEBHOOK_RETRY_DELAYS)


def _attempt_event(event_id: str) -> Event | None:
    """One attempt at the event (unless done, held by another job, or its provider has its
    cap of posts in flight: then it is queued again shortly); the event when it failed and has
    an attempt left."""
    queue = queues.rq_queue(queues.WEBHOOKS)
    if queue is None:
        return _post_event(event_id)
    provider_id = db.session.scalar(sa.select(Event.provider_id).where(Event.id == event_id))
    if provider_id is None:
        return None
    try:
        with webhooks.posting_slot(queue.connection, provider_id):
            return _post_event(event_id)
    except webhooks.ProviderBusy:
        db.session.rollback()
        retry = Retry(max=len(WEBHOOK_RETRY_DELAYS), interval=list(WEBHOOK_RETRY_DELAYS))
        later = timedelta(seconds=webhooks.BUSY_RETRY_SECONDS)
        queue.enqueue_in(later, deliver_event, event_id, retry=retry)
        return None


def _post_event(event_id: str) -> Event | None:
    now = utcnow()
    event = _claim(Event, event_id, lambda e: e.delivered_at is None, now)
    if event is None:
        return None
    try:
        delivered = webhooks.post(event, utcnow())
    except webhooks.DeliveryFailed:
        retry = _schedule_retry(event, WEBHOOK_RETRY_DELAYS, utcnow())
        db.session.commit()
        return event if retry else None
    event.delivered_at = utcnow() if delivered else None
    event.next_attempt_at = None
    db.session.commit()
    return None


@in_app_context
def refill_captchas() -> int:
    """Top up the pool of ready-made captcha images (queued by a page that finds it low)."""
    from portal import captchas

    return captchas.refill_pool()


@in_app_context
def sweep() -> dict[str, int]:
    """The periodic job: expiry, the noon resend, and the relay of anything undelivered."""
    from portal import sweeps  # sweeps queue jobs themselves

    return sweeps.run_due(utcnow())


def relay(now: datetime) -> int:
    """Queue again every SMS and event no job has delivered by its due time.

    Each row taken is pushed one claim period on, so the next relay (or one running
    at the same time) does not queue it again while its job waits for a worker.
    """
    grace = timedelta(0) if queues.rq_queue(queues.SMS) is None else RQ_GRACE
    message_ids = _take_due(SmsMessage, SmsMessage.status == MessageStatus.QUEUED, now, grace)
    event_ids = _take_due(Event, Event.delivered_at.is_(None), now, grace)
    db.session.commit()
    if message_ids:
        enqueue_sms_batches(message_ids)
    _enqueue_events(event_ids)
    return len(message_ids) + len(event_ids)


def _take_due(model, undelivered, now: datetime, grace: timedelta) -> list:
    due = sa.and_(undelivered, model.next_attempt_at <= now - grace)
    batch = sa.select(model.id).where(due).order_by(model.next_attempt_at).limit(RELAY_BATCH)
    return list(
        db.session.scalars(
            sa.update(model)
            .where(model.id.in_(batch), due)
            .values(next_attempt_at=now + CLAIM)
            .returning(model.id)
            .execution_options(synchronize_session=False)
        )
    )
