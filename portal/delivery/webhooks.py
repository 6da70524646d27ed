"""Webhooks to access providers (SPEC §6): signed POSTs of status-change events.

The body is signed with the provider's webhook secret: `X-Signature: sha256=<hex
HMAC-SHA256 of the raw body>`. Every attempt is recorded; `event_id` lets the
provider drop the duplicates that at-least-once delivery brings. The callback URL is checked
and connected to as portal/protection/callback_urls.py says.

An attempt claims its event (`outbox.claim`), so two jobs never post one event at once, and
takes one of its provider's posting slots; a failed attempt is tried again after the next of
`outbox.WEBHOOK_RETRY_DELAYS`.
"""

import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import sqlalchemy as sa
import urllib3
from redis import Redis

from portal import providers, queues
from portal.api import description
from portal.clock import iso_shanghai, utcnow
from portal.delivery import outbox
from portal.extensions import db
from portal.models import Event, Provider, WebhookDelivery
from portal.protection import callback_urls

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5
# Posts to one provider's receiver at the same time, across all workers (with Redis); a job
# over the cap is queued again after BUSY_RETRY_SECONDS rather than wait for a slot.
POSTS_PER_PROVIDER = 4
BUSY_RETRY_SECONDS = 5
# A slot whose worker died before giving it back is free again after this.
SLOT_SECONDS = 6 * TIMEOUT_SECONDS
# The certificate authorities a receiver's certificate is checked against: None, the system's.
CA_CERTS: str | None = None


def attempt(event_id: str) -> Event | None:
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
        with posting_slot(queue.connection, provider_id):
            return _post_event(event_id)
    except ProviderBusy:
        db.session.rollback()
        later = utcnow() + timedelta(seconds=BUSY_RETRY_SECONDS)
        outbox.queue_at(later, "deliver_event", Event, event_id, outbox.webhook_retry())
        return None


def queue_retry(event: Event) -> None:
    """The event's next attempt as a job of its own, with RQ retries for the ones after."""
    delay = outbox.WEBHOOK_RETRY_DELAYS[event.attempts - 1]
    when = utcnow() + timedelta(seconds=delay) if delay else None
    retry = outbox.webhook_retry(outbox.WEBHOOK_RETRY_DELAYS[event.attempts :])
    outbox.queue_at(when, "deliver_event", Event, event.id, retry)


def _post_event(event_id: str) -> Event | None:
    if not outbox.claim(Event, [event_id], utcnow()):
        return None
    event = db.session.get(Event, event_id, populate_existing=True)
    try:
        delivered = post(event, utcnow())
    except DeliveryFailed:
        retry = outbox.schedule_retry(event, outbox.WEBHOOK_RETRY_DELAYS, utcnow())
        db.session.commit()
        return event if retry else None
    event.delivered_at = utcnow() if delivered else None
    event.next_attempt_at = None
    event.held_until = None
    db.session.commit()
    return None


class DeliveryFailed(Exception):
    pass


class ProviderBusy(Exception):
    """The provider already has POSTS_PER_PROVIDER posts in flight."""


@contextlib.contextmanager
def posting_slot(redis: Redis, provider_id: int) -> Iterator[None]:
    """One of the provider's POSTS_PER_PROVIDER slots for the time of a post, or ProviderBusy.

    The slots are a sorted set per provider, each member scored with the time it was taken:
    members older than SLOT_SECONDS (a worker killed mid-post) no longer count.
    """
    key = f"webhooks:posting:{provider_id}"
    slot = secrets.token_hex(8)
    now = time.time()
    with redis.pipeline() as pipe:
        pipe.zremrangebyscore(key, 0, now - SLOT_SECONDS).zadd(key, {slot: now})
        taken = pipe.zcard(key).expire(key, SLOT_SECONDS).execute()[2]
    try:
        if taken > POSTS_PER_PROVIDER:
            raise ProviderBusy(f"provider {provider_id}: {POSTS_PER_PROVIDER} posts in flight")
        yield
    finally:
        redis.zrem(key, slot)


def body(event: Event) -> bytes:
    document = {
        "event_id": event.id,
        "type": event.type,
        "occurred_at": iso_shanghai(event.occurred_at),
        "filing": description.as_changed(event, description.describe(event.filing)),
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, raw_body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


def post(event: Event, now: datetime) -> bool:
    """One attempt, recorded; false when the provider has no callback URL to post to.

    Raises DeliveryFailed unless the provider answered 2xx. The attempt records a generic
    reason, never the error text of the host that answered (the provider reads it).
    """
    provider = db.session.get(Provider, event.provider_id)
    if not provider.callback_url:
        return False
    raw = body(event)
    attempt = WebhookDelivery(event_id=event.id, attempted_at=now)
    db.session.add(attempt)
    headers = {
        "Content-Type": "application/json",
        "X-Signature": signature(providers.webhook_secret(provider), raw),
        "X-Event-Id": event.id,
    }
    try:
        attempt.status_code = _send(provider.callback_url, raw, headers)
    except DeliveryFailed as failed:
        attempt.error = str(failed)
        raise
    if not 200 <= attempt.status_code < 300:
        attempt.error = f"HTTP {attempt.status_code}"
        raise DeliveryFailed(attempt.error)
    return True


def _send(url: str, raw: bytes, headers: dict[str, str]) -> int:
    """POST to the address the URL's host was checked to have now; the answer's status."""
    try:
        target = callback_urls.check(url)
    except callback_urls.Refused as refused:
        raise DeliveryFailed(refused.refusal.value) from refused
    try:
        with _pool(target) as pool:
            response = pool.urlopen(
                "POST",
                target.path,
                body=raw,
                headers={**headers, "Host": target.host_header},
                redirect=False,
                retries=False,
                preload_content=False,  # only the status counts: the body is never read
            )
            return response.status
    except urllib3.exceptions.HTTPError as error:
        log.warning("webhook to %s (%s) failed: %r", target.host, target.address, error)
        raise DeliveryFailed(_reason(error)) from error


def _pool(target: callback_urls.Target) -> urllib3.HTTPConnectionPool:
    timeout = urllib3.Timeout(total=TIMEOUT_SECONDS)
    if target.scheme == "http":
        return urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout)
    return urllib3.HTTPSConnectionPool(
        target.address,
        target.port,
        timeout=timeout,
        server_hostname=target.host,
        assert_hostname=target.host,
        ca_certs=CA_CERTS,
    )


def _reason(error: urllib3.exceptions.HTTPError) -> str:
    if isinstance(error, urllib3.exceptions.NewConnectionError):  # a TimeoutError in urllib3 2
        return "connection failed"
    if isinstance(error, urllib3.exceptions.TimeoutError):
        return "timeout"
    if isinstance(error, urllib3.exceptions.SSLError):
        return "TLS failed"
    return "connection failed"
