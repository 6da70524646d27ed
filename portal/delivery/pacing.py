"""Pacing per phone (SPEC §9): the carriers block a phone that gets texts too often, so a text
goes only when it keeps `SMS_PHONE_MIN_INTERVAL_SECONDS` after the phone's last text and stays
within `SMS_PHONE_HOURLY` in any hour and `SMS_PHONE_DAILY` in any 24 hours. A text over them
waits until then; it is never dropped.

The texts already sent are counted from the database by phone digest, so the rule holds
across workers and restarts. A text another job is sending at this moment is not in the
database yet: so a text about to go first reserves its phone's interval in Redis, and a second
job's text to that phone waits for it (without Redis, jobs run in one process, one at a time).
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from redis.commands.core import Script
from redis.exceptions import RedisError

from portal import queues
from portal.extensions import db
from portal.models import MessageStatus, SmsMessage, Verification

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Holds a phone's interval for a text, unless another text holds it until later: answers the
# time (µs since the epoch) it is held until, or 0 once held for this text. The times are the
# portal's clock, so a moved clock moves them; Redis's own expiry only cleans up.
_RESERVE = Script(
    None,
    b"""
local held = redis.call('GET', KEYS[1])
if held then
  local text, held_until = string.match(held, '^(%d+)|(%d+)$')
  if text ~= ARGV[1] and tonumber(held_until) > tonumber(ARGV[2]) then
    return tonumber(held_until)
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[3], 'EX', ARGV[4])
return 0
""",
)


@dataclass(frozen=True)
class Limits:
    min_interval: timedelta
    hourly: int
    daily: int


def configured_limits() -> Limits:
    config = current_app.config
    return Limits(
        min_interval=timedelta(seconds=config["SMS_PHONE_MIN_INTERVAL_SECONDS"]),
        hourly=config["SMS_PHONE_HOURLY"],
        daily=config["SMS_PHONE_DAILY"],
    )


def next_slot(sent: list[datetime], now: datetime, limits: Limits) -> datetime:
    """The earliest time from `now` on that a phone sent texts at `sent` (oldest first) may get
    another."""
    due = [now]
    if sent:
        due.append(sent[-1] + limits.min_interval)
    if len(sent) >= limits.hourly:
        due.append(sent[-limits.hourly] + HOUR)
    if len(sent) >= limits.daily:
        due.append(sent[-limits.daily] + DAY)
    return max(due)


def plan(
    messages: list[SmsMessage], now: datetime
) -> tuple[list[SmsMessage], list[tuple[SmsMessage, datetime]]]:
    """The texts that may go now, and those that wait with when each may go. A text already
    waiting keeps its place; a new one goes after the texts sent and those waiting. Texts of the
    batch to one phone are spaced out as if each before them went at its own time."""
    limits = configured_limits()
    sent, waiting_at = _texts_of_phones(messages, now)
    ready: list[SmsMessage] = []
    waiting: list[tuple[SmsMessage, datetime]] = []
    for message in messages:
        digest = message.verification.phone_digest
        before = sent.setdefault(digest, [])
        ahead = before if message.paced_until else before + waiting_at.get(digest, [])
        slot = next_slot(sorted(ahead), now, limits)
        before.append(slot)
        if slot <= now:
            ready.append(message)
        else:
            waiting.append((message, slot))
    held = _reserve(ready, now, limits)
    waiting += [(message, held[message.id]) for message in ready if message.id in held]
    return [message for message in ready if message.id not in held], waiting


def _reserve(messages: list[SmsMessage], now: datetime, limits: Limits) -> dict[int, datetime]:
    """Hold each phone's interval for the text about to go to it, in one round trip; returns
    the texts whose phone another job's text holds, with when it lets the next go."""
    queue = queues.rq_queue(queues.SMS)
    if queue is None or not messages or not limits.min_interval:
        return {}
    pipeline = queue.connection.pipeline(transaction=False)
    for message in messages:
        _RESERVE(
            keys=[f"pacing:phone:{message.verification.phone_digest}"],
            args=[message.id, _microseconds(now), _microseconds(now + limits.min_interval),
                  int(limits.min_interval.total_seconds()) + 60],
            client=pipeline,
        )  # fmt: skip
    try:
        answers = pipeline.execute()
    except RedisError as error:
        log.warning("pacing reservations not checked (%s): the database's count alone", error)
        return {}
    return {
        message.id: EPOCH + timedelta(microseconds=held_until)
        for message, held_until in zip(messages, answers, strict=True)
        if held_until
    }


def _microseconds(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def _texts_of_phones(
    messages: list[SmsMessage], now: datetime
) -> tuple[dict[str, list[datetime]], dict[str, list[datetime]]]:
    """For the phones of the batch, in one query: when each was sent texts in the last 24 hours,
    and when its other texts that wait may go."""
    rows = db.session.execute(
        sa.select(Verification.phone_digest, SmsMessage.sent_at, SmsMessage.paced_until)
        .join(Verification, SmsMessage.verification_id == Verification.id)
        .where(
            Verification.phone_digest.in_({m.verification.phone_digest for m in messages}),
            SmsMessage.id.not_in([m.id for m in messages]),
            sa.or_(
                SmsMessage.sent_at > now - DAY,
                sa.and_(
                    SmsMessage.status == MessageStatus.QUEUED, SmsMessage.paced_until.is_not(None)
                ),
            ),
        )
    )
    sent: dict[str, list[datetime]] = {}
    waiting_at: dict[str, list[datetime]] = {}
    for digest, sent_at, paced_until in rows:
        if sent_at is not None:
            sent.setdefault(digest, []).append(sent_at)
        else:
            waiting_at.setdefault(digest, []).append(paced_until)
    return sent, waiting_at


def daily_cap_reached(phone_digest: str, now: datetime) -> bool:
    """Whether one more text to the phone would be over the daily limit, counting the texts
    sent in the last 24 hours and those still to send."""
    count = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(SmsMessage)
        .join(Verification, SmsMessage.verification_id == Verification.id)
        .where(
            Verification.phone_digest == phone_digest,
            sa.or_(SmsMessage.sent_at > now - DAY, SmsMessage.status == MessageStatus.QUEUED),
        )
    )
    return count >= configured_limits().daily
