"""Sending texts: a job claims the texts it was given (`outbox.claim`), lets pacing hold back
those whose phone may not get one yet, sends the rest in parallel, and marks each sent (by
which gateway, with its id) or failed, in one commit.

Every attempt at a text carries the same message id (`OutId`, `SessionContext`,
`Idempotency-Key`: the `SmsMessage` id), so a gateway that dedupes drops a repeat.
"""

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from rq import Retry
from sqlalchemy.orm import joinedload

from portal import deadlines, monitoring, rules_cache
from portal.clock import utcnow
from portal.delivery import outbox, pacing, reroute
from portal.delivery.gateways import Accepted, TimedOut
from portal.delivery.texts import text_for
from portal.extensions import db
from portal.models import MessageStatus, SmsMessage, VerificationStatus
from portal.rules_cache import ProvinceSettings

log = logging.getLogger(__name__)

# A batch's texts are sent over keep-alive connections, `SEND_THREADS` at a time (a real
# gateway answers in tens of milliseconds: sending one by one would wait on it).
SEND_THREADS = 16


def send_texts(message_ids: list[int]) -> list[tuple[int, int]]:
    """One claim, the sends in parallel, one commit; returns (id, attempts) of each text that
    failed and has an attempt left.

    A text already sent or held by another job (a duplicate job, a relay) is not claimed. A text
    whose code can no longer be entered (`_withdraw`) is not sent. A text over its phone's
    pacing limits waits (`_wait`). A code's first text sent starts its validity;
    a code none of whose texts could be sent runs from acceptance (portal/deadlines.py). A text whose gateway did not answer in time counts as sent (it may have arrived):
    `reroute` decides whether it goes elsewhere. The provinces' settings (the text's authority,
    the validity) come from the process's copy of the rollout (portal/rules_cache.py).
    """
    claimed = _load(outbox.claim(SmsMessage, message_ids, utcnow()))
    if not claimed:
        return []
    _withdraw([m for m in claimed if m.verification.status != VerificationStatus.PENDING])
    wanted = [m for m in claimed if m.verification.status == VerificationStatus.PENDING]
    ready, waiting = pacing.plan(wanted, utcnow())
    for message, slot in waiting:
        _wait(message, slot)
    slugs = {message.verification.province_slug for message in ready}
    provinces = {slug: rules_cache.province(slug) for slug in slugs}
    outcomes = _send_all(ready, provinces) if ready else []
    sent = [(message, outcome) for message, outcome in outcomes if _handed_over(outcome)]
    _mark_sent(sent, utcnow())
    retries = [
        (message.id, message.attempts)
        for message, outcome in outcomes
        if not _handed_over(outcome) and _fail(message, outcome, utcnow())
    ]
    db.session.commit()
    _queue_when_due(waiting)
    return retries


def queue_retry(message_id: int, attempts: int) -> None:
    """The text's next attempt as a job of its own, with RQ retries for the ones after."""
    left = outbox.SMS_RETRY_DELAYS[attempts:]
    delay = outbox.SMS_RETRY_DELAYS[attempts - 1]
    retry = Retry(max=len(left), interval=list(left)) if left else None
    # A delay of 0 (as RQ retries with an interval of 0): queued again at once.
    when = utcnow() + timedelta(seconds=delay) if delay else None
    outbox.queue_at(when, "deliver_sms", SmsMessage, message_id, retry)


def _load(message_ids: list[int]) -> list[SmsMessage]:
    if not message_ids:
        return []
    return list(db.session.scalars(_LOAD, {"message_ids": message_ids}).unique())


# Built once: making a statement costs a job about as much CPU as compiling it from the cache.
_LOAD = (
    sa.select(SmsMessage)
    .where(SmsMessage.id.in_(sa.bindparam("message_ids", expanding=True)))
    .options(joinedload(SmsMessage.verification))
    .execution_options(populate_existing=True)
)


def _withdraw(messages: list[SmsMessage]) -> None:
    """Texts whose code was entered, or whose filing went on or was returned, while they waited
    for pacing or a retry: sending them would tell a person to enter a code that no longer
    works, and use up a text of the phone's daily limit that a code still pending may need."""
    for message in messages:
        message.attempts -= 1
        message.status = MessageStatus.WITHDRAWN
        message.held_until = None
        message.next_attempt_at = None
    if messages:
        log.info("texts %s withdrawn: their codes are no longer pending", [m.id for m in messages])


def _wait(message: SmsMessage, slot: datetime) -> None:
    """Leave the text queued until pacing lets it go; the wait is not an attempt."""
    message.attempts -= 1
    message.held_until = None
    message.next_attempt_at = slot
    message.paced_until = slot


def _queue_when_due(waiting: list[tuple[SmsMessage, datetime]]) -> None:
    """Texts that wait, as RQ jobs delayed until each may go; in-process, the relay sends them
    when due (nothing sleeps)."""
    by_slot: dict[datetime, list[int]] = {}
    for message, slot in waiting:
        by_slot.setdefault(slot, []).append(message.id)
    for slot, message_ids in by_slot.items():
        outbox.queue_at(slot, "deliver_sms_batch", SmsMessage, message_ids, outbox.batch_retry())


def _handed_over(outcome: Accepted | Exception) -> bool:
    return isinstance(outcome, Accepted | TimedOut)


def _send_all(
    messages: list[SmsMessage], provinces: dict[str, ProvinceSettings]
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


def _mark_sent(sent: list[tuple[SmsMessage, Accepted | TimedOut]], sent_at: datetime) -> None:
    """Sent, by which gateway and with its id (none after a timeout): one statement."""
    if not sent:
        return
    db.session.execute(
        _MARK_SENT,
        [
            {
                "message_id": message.id,
                "sent_via": outcome.gateway,
                "sent_as": outcome.gateway_id if isinstance(outcome, Accepted) else None,
                "unconfirmed_until": reroute.unless_confirmed_by(outcome, sent_at),
                "sent_at": sent_at,
            }
            for message, outcome in sent
        ],
    )
    monitoring.SMS_SENT.inc(len(sent))
    deadlines.start([message.verification for message, _outcome in sent], sent_at)


_texts = SmsMessage.__table__
_MARK_SENT = (
    _texts.update()
    .where(_texts.c.id == sa.bindparam("message_id"))
    .values(
        status=MessageStatus.SENT,
        sent_at=sa.bindparam("sent_at", type_=_texts.c.sent_at.type),
        next_attempt_at=None,
        held_until=None,
        gateway=sa.bindparam("sent_via"),
        gateway_message_id=sa.bindparam("sent_as"),
        reroute_at=sa.bindparam("unconfirmed_until", type_=_texts.c.reroute_at.type),
    )
)


def _fail(message: SmsMessage, error: Exception, now: datetime) -> bool:
    """Record a failed attempt; true when another is left."""
    message.last_error = f"{type(error).__name__}: {error}"[:500]
    retry = outbox.schedule_retry(message, outbox.SMS_RETRY_DELAYS, now)
    if not retry:
        message.status = MessageStatus.FAILED
        deadlines.give_up(message)
    (monitoring.SMS_RETRIED if retry else monitoring.SMS_FAILED).inc()
    log.warning(
        "text %s not sent (attempt %d, %s): %s",
        message.id, message.attempts, "retried later" if retry else "given up", message.last_error,
    )  # fmt: skip
    return retry
