"""Webhooks to access providers (SPEC §6): signed status-change events, retried with growing
delays until acknowledged, in-process and on RQ with a real Redis, and listed by the API."""

import hashlib
import hmac
import time
from contextlib import ExitStack
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from redis import Redis
from rq import Queue
from rq.job import JobStatus
from rq.utils import current_timestamp

from portal import jobs, providers
from portal.clock import utcnow
from portal.delivery import outbox, relay, webhooks
from portal.extensions import db
from portal.messages import Outcome
from portal.models import Event
from portal.verification import verify
from tests.factories import ID_A, ID_B, queues_on, run_worker
from tests.servers import Endpoint

pytestmark = pytest.mark.usefixtures("allow_local_callbacks")

# The two phones of the standard filing (`new_filing_body`) and their ID numbers.
PEOPLE = {"13900000001": ID_A, "13900000002": ID_B}


def verify_every_phone(sent_codes, now: datetime) -> None:
    """Both phones verify, as the applicant pages do: the filing goes on to review."""
    codes = sent_codes()
    outcomes = []
    for phone, id_number in PEOPLE.items():
        outcomes.append(verify("tianjin", phone, codes[phone], id_number[-6:], now).outcome)
        db.session.commit()
    assert outcomes == [Outcome.VERIFIED_OTHERS_PENDING, Outcome.ALL_VERIFIED]


def the_event(filing_id: str) -> Event:
    """The filing's one event, as committed."""
    db.session.rollback()
    (event,) = db.session.scalars(sa.select(Event).where(Event.filing_id == filing_id)).all()
    return event


@pytest.fixture
def queue(rq_queues) -> Queue:
    """Here, the events' queue (`run_worker(queue)` still runs all three)."""
    return rq_queues["webhooks"]


def wait_until_due(queue: Queue, job_id: str, limit_seconds: float = 2.5) -> None:
    """Until RQ's scheduler would move the job back onto the queue (its time is whole seconds)."""
    give_up = time.monotonic() + limit_seconds
    while job_id not in queue.scheduled_job_registry.get_jobs_to_schedule(current_timestamp()):
        assert time.monotonic() < give_up, "the retry was not due in time"
        time.sleep(0.05)


@pytest.fixture
def callback(provider):
    """Points the provider's callback URL at a local endpoint answering the statuses given."""
    with ExitStack() as stack:

        def start(*statuses: int, then: int = 200) -> Endpoint:
            endpoint = stack.enter_context(Endpoint(statuses, then=then))
            provider[0].callback_url = endpoint.url
            db.session.commit()
            return endpoint

        yield start


# In-process mode (no REDIS_URL)


def test_status_change_is_posted_once_signed_with_the_provider_secret(
    clock, callback, client, provider, submit_filing, sent_codes
):
    receiver = callback()
    filing = submit_filing()

    verify_every_phone(sent_codes, clock.now)

    (request,) = receiver.requests
    secret = providers.webhook_secret(provider[0]).encode()
    expected = "sha256=" + hmac.new(secret, request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Signature"] == expected
    assert request.headers["Content-Type"] == "application/json"
    body = request.json()
    event = the_event(filing["id"])
    assert set(body) == {"event_id", "type", "occurred_at", "filing"}
    assert body["event_id"] == event.id
    assert body["type"] == "filing.status_changed"
    assert body["occurred_at"].endswith("+08:00")
    assert datetime.fromisoformat(body["occurred_at"]) == clock.now
    assert body["filing"]["status"] == "under_review"
    assert [v["status"] for v in body["filing"]["verifications"]] == ["verified", "verified"]
    shown = client.get(f"/api/v1/filings/{filing['id']}", headers=provider[1]).get_json()
    assert body["filing"] == shown
    assert event.delivered_at == clock.now
    assert event.next_attempt_at is None
    assert [(d.status_code, d.error) for d in event.deliveries] == [(200, None)]


def test_failed_webhook_is_retried_by_the_relay_after_each_delay_until_acknowledged(
    clock, callback, submit_filing, sent_codes
):
    receiver = callback(500, 503)
    filing = submit_filing()
    first = clock.now
    verify_every_phone(sent_codes, first)
    assert [r.status for r in receiver.requests] == [500]

    for delay in outbox.WEBHOOK_RETRY_DELAYS[:2]:
        due = clock.now + timedelta(seconds=delay)
        assert the_event(filing["id"]).next_attempt_at == due
        assert relay.relay(due - timedelta(seconds=1)) == 0, "not retried before its time"
        clock.now = due
        assert relay.relay(due) == 1

    second = first + timedelta(seconds=outbox.WEBHOOK_RETRY_DELAYS[0])
    third = second + timedelta(seconds=outbox.WEBHOOK_RETRY_DELAYS[1])
    event = the_event(filing["id"])
    assert [(d.status_code, d.error, d.attempted_at) for d in event.deliveries] == [
        (500, "HTTP 500", first),
        (503, "HTTP 503", second),
        (200, None, third),
    ]
    assert (event.delivered_at, event.next_attempt_at) == (third, None)
    assert [r.status for r in receiver.requests] == [500, 503, 200]
    assert len({r.body for r in receiver.requests}) == 1, "every attempt posts the same event"
    assert receiver.requests[0].json()["event_id"] == event.id

    assert relay.relay(third + timedelta(days=3)) == 0
    assert len(receiver.requests) == 3


def test_webhook_retry_delays_grow_and_add_up_to_at_least_a_day():
    delays = outbox.WEBHOOK_RETRY_DELAYS
    assert list(delays) == sorted(delays)
    assert delays[0] > 0
    assert sum(delays) >= 24 * 3600
    assert len(delays) + 1 == outbox.WEBHOOK_MAX_ATTEMPTS


def test_unanswered_webhook_is_retried_for_at_least_a_day_then_given_up(
    clock, callback, submit_filing, sent_codes
):
    receiver = callback(then=500)
    filing = submit_filing()
    verify_every_phone(sent_codes, clock.now)

    for delay in outbox.WEBHOOK_RETRY_DELAYS:
        clock.now += timedelta(seconds=delay)
        assert relay.relay(clock.now) == 1

    event = the_event(filing["id"])
    attempts = [d.attempted_at for d in event.deliveries]
    assert len(attempts) == len(receiver.requests) == outbox.WEBHOOK_MAX_ATTEMPTS
    assert attempts[-1] - attempts[0] >= timedelta(hours=24)
    assert (event.delivered_at, event.next_attempt_at) == (None, None)
    assert relay.relay(clock.now + timedelta(days=30)) == 0
    assert len(receiver.requests) == outbox.WEBHOOK_MAX_ATTEMPTS


def test_unreachable_callback_counts_as_a_failed_attempt(
    clock, provider, submit_filing, sent_codes
):
    """The provider fixture's callback URL is a port nothing listens on."""
    filing = submit_filing()

    verify_every_phone(sent_codes, clock.now)

    event = the_event(filing["id"])
    (attempt,) = event.deliveries
    assert attempt.status_code is None
    assert attempt.error == "connection failed"
    assert event.delivered_at is None
    assert event.next_attempt_at == clock.now + timedelta(seconds=outbox.WEBHOOK_RETRY_DELAYS[0])


def test_delivering_an_acknowledged_event_again_posts_nothing(
    clock, callback, submit_filing, sent_codes
):
    """A duplicate job (the relay and a retry both queued it) finds the event done."""
    receiver = callback()
    filing = submit_filing()
    verify_every_phone(sent_codes, clock.now)
    event_id = the_event(filing["id"]).id

    jobs.deliver_event(event_id)

    assert len(receiver.requests) == 1
    assert len(the_event(filing["id"]).deliveries) == 1


def test_provider_without_callback_url_gets_nothing_posted_but_the_event_is_listed(
    clock, client, provider, submit_filing, sent_codes
):
    provider[0].callback_url = None
    db.session.commit()
    filing = submit_filing()

    verify_every_phone(sent_codes, clock.now)

    event = the_event(filing["id"])
    assert event.deliveries == []
    assert (event.delivered_at, event.next_attempt_at) == (None, None)
    assert relay.relay(clock.now + timedelta(days=3)) == 0
    listed = client.get(f"/api/v1/filings/{filing['id']}/events", headers=provider[1])
    assert listed.status_code == 200
    (shown,) = listed.get_json()["events"]
    assert shown["event_id"] == event.id
    assert shown["filing"]["status"] == "under_review"
    assert (shown["delivered_at"], shown["attempts"]) == (None, [])


# The events listing


def test_events_listing_shows_each_event_with_its_attempts(
    clock, callback, client, provider, submit_filing, sent_codes
):
    callback(500)
    filing = submit_filing()
    first = clock.now
    verify_every_phone(sent_codes, first)
    clock.now = second = first + timedelta(seconds=outbox.WEBHOOK_RETRY_DELAYS[0])
    relay.relay(second)

    response = client.get(f"/api/v1/filings/{filing['id']}/events", headers=provider[1])

    assert response.status_code == 200
    (shown,) = response.get_json()["events"]
    assert shown["event_id"] == the_event(filing["id"]).id
    assert shown["type"] == "filing.status_changed"
    assert shown["filing"]["status"] == "under_review"
    assert shown["occurred_at"].endswith("+08:00")
    assert datetime.fromisoformat(shown["occurred_at"]) == first
    assert datetime.fromisoformat(shown["delivered_at"]) == second
    attempts = [
        (a["status_code"], datetime.fromisoformat(a["attempted_at"])) for a in shown["attempts"]
    ]
    assert attempts == [(500, first), (200, second)]


def test_events_of_another_providers_filing_are_not_found(client, provider, submit_filing):
    filing = submit_filing()
    _, other_key = providers.create("另一接入商", None, utcnow())
    db.session.commit()
    url = f"/api/v1/filings/{filing['id']}/events"

    response = client.get(url, headers={"Authorization": f"Bearer {other_key}"})

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "not_found"
    assert client.get(url, headers=provider[1]).status_code == 200


# On RQ with a real Redis


def test_on_rq_a_failed_webhook_is_retried_by_rq_until_acknowledged_once(
    queue, callback, monkeypatch, submit_filing, sent_codes
):
    """RQ's own retry: the first after a delay (scheduled), the next at once (interval 0)."""
    delays = (1,) + (0,) * (len(outbox.WEBHOOK_RETRY_DELAYS) - 1)
    monkeypatch.setattr(outbox, "WEBHOOK_RETRY_DELAYS", delays)
    receiver = callback(500, 503)
    filing = submit_filing()
    run_worker(queue)  # the code texts
    verify_every_phone(sent_codes, utcnow())

    event_id = the_event(filing["id"]).id
    (job,) = queue.get_jobs()
    assert (job.func_name, job.args) == ("portal.jobs.deliver_event", (event_id,))
    assert receiver.requests == [], "nothing is posted before a worker takes the job"

    run_worker(queue)
    assert [r.status for r in receiver.requests] == [500]
    assert job.get_status(refresh=True) == JobStatus.SCHEDULED
    assert job.id in queue.scheduled_job_registry.get_job_ids()

    wait_until_due(queue, job.id)
    run_worker(queue)

    assert [r.status for r in receiver.requests] == [500, 503, 200]
    assert {r.json()["event_id"] for r in receiver.requests} == {event_id}
    event = the_event(filing["id"])
    assert event.delivered_at is not None
    assert [d.status_code for d in event.deliveries] == [500, 503, 200]
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert (queue.count, queue.scheduled_job_registry.count) == (0, 0)
    assert queue.failed_job_registry.count == 0

    queue.enqueue(jobs.deliver_event, event_id)
    run_worker(queue)
    assert len(receiver.requests) == 3


def test_over_the_cap_of_posts_per_provider_an_event_is_queued_again_without_an_attempt(
    queue, callback, monkeypatch, submit_filing, sent_codes
):
    monkeypatch.setattr(webhooks, "BUSY_RETRY_SECONDS", 1)
    receiver = callback()
    filing = submit_filing()
    run_worker(queue)  # the code texts
    verify_every_phone(sent_codes, utcnow())
    provider_id = the_event(filing["id"]).provider_id

    with ExitStack() as posts_in_flight:
        for _ in range(webhooks.POSTS_PER_PROVIDER):
            posts_in_flight.enter_context(webhooks.posting_slot(queue.connection, provider_id))
        run_worker(queue)
        assert receiver.requests == []
        assert the_event(filing["id"]).attempts == 0
        (job_id,) = queue.scheduled_job_registry.get_job_ids()

    wait_until_due(queue, job_id)
    run_worker(queue)
    assert len(receiver.requests) == 1
    event = the_event(filing["id"])
    assert (event.attempts, event.delivered_at is not None) == (1, True)
    assert queue.connection.zcard(f"webhooks:posting:{provider_id}") == 0


def test_event_written_while_redis_was_down_is_delivered_after_the_relay(
    queue, callback, app, monkeypatch, submit_filing, sent_codes
):
    receiver = callback()
    filing = submit_filing()
    run_worker(queue)  # the code texts
    down = queues_on(Redis.from_url("redis://127.0.0.1:1/0"))
    monkeypatch.setitem(app.extensions, "rq_queues", down)
    changed_at = utcnow()
    verify_every_phone(sent_codes, changed_at)
    assert the_event(filing["id"]).next_attempt_at == changed_at

    monkeypatch.setitem(app.extensions, "rq_queues", queues_on(queue.connection))
    assert relay.relay(changed_at + timedelta(minutes=6)) == 1
    run_worker(queue)

    (request,) = receiver.requests
    event = the_event(filing["id"])
    assert request.json()["event_id"] == event.id
    assert event.delivered_at is not None
    assert relay.relay(changed_at + timedelta(hours=1)) == 0
