"""Pacing per phone (SPEC §9), with a moved clock: a text over a phone's limits waits and goes
when they allow it, never lost and never twice; a resend over the daily limit is refused."""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from rq.registry import ScheduledJobRegistry

from portal.clock import utcnow
from portal.delivery import pacing, relay
from portal.delivery.pacing import Limits, next_slot
from portal.extensions import db
from portal.messages import LABELS, Outcome
from portal.models import MessageStatus, SmsMessage, Verification
from portal.resend import resend_verification
from portal.verification import verify
from tests.admins import csrf, make_admin, sign_in
from tests.factories import ID_A, new_filing_body, principal, run_worker, sent_texts

PHONE = "13900000001"
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
LIMITS = Limits(min_interval=MINUTE, hourly=5, daily=10)


@pytest.fixture
def env(env):
    """The carriers' limits as the portal ships them (the suite's other tests lift them)."""
    for name in ("SMS_PHONE_MIN_INTERVAL_SECONDS", "SMS_PHONE_HOURLY", "SMS_PHONE_DAILY"):
        env.pop(name, None)
    return env


def one_phone(reference: str) -> dict:
    return new_filing_body(
        reference=reference,
        websites=[{"domain": "a.example.cn", "name": "甲网", "principal": principal(PHONE, ID_A)}],
    )


def texts() -> list[SmsMessage]:
    db.session.remove()
    return db.session.scalars(sa.select(SmsMessage).order_by(SmsMessage.id)).all()


def resend(filing_id: str, now) -> Outcome:
    verification = db.session.scalar(
        sa.select(Verification).where(Verification.filing_id == filing_id)
    )
    outcome = resend_verification(verification, verification.filing.province, now)
    db.session.commit()
    return outcome


def relay_until_nothing_waits(clock) -> None:
    """Move the clock to each waiting text's time and run the relay there (bounded)."""
    for _ in range(100):
        due = db.session.scalar(
            sa.select(sa.func.min(SmsMessage.next_attempt_at)).where(
                SmsMessage.status == MessageStatus.QUEUED
            )
        )
        if due is None:
            return
        clock.now = max(clock.now, due)
        relay.relay(clock.now)
    raise AssertionError("texts still waiting after 100 relays")


def test_a_phone_s_next_slot_keeps_the_interval_the_hour_and_the_day():
    t0 = utcnow()
    assert next_slot([], t0, LIMITS) == t0
    assert next_slot([t0], t0 + 10 * timedelta(seconds=1), LIMITS) == t0 + MINUTE
    five = [t0 + i * MINUTE for i in range(5)]
    assert next_slot(five, t0 + 5 * MINUTE, LIMITS) == t0 + HOUR
    ten = five + [t0 + HOUR + i * MINUTE for i in range(5)]
    assert next_slot(ten, t0 + 2 * HOUR, LIMITS) == t0 + DAY
    assert next_slot(ten, t0 + 2 * DAY, LIMITS) == t0 + 2 * DAY


def test_a_resend_within_a_minute_waits_and_goes_at_sixty_seconds(
    app, clock, submit_filing, env, client
):
    t0 = clock.now
    filing = submit_filing(one_phone("REF-1"))
    clock.now = t0 + timedelta(seconds=10)

    assert resend(filing["id"], clock.now) == Outcome.RESEND_SENT

    first, again = texts()
    assert (first.status, again.status) == (MessageStatus.SENT, MessageStatus.QUEUED)
    assert again.paced_until == again.next_attempt_at == t0 + MINUTE
    assert again.attempts == 0
    assert len(sent_texts(env["SMS_FILE_PATH"])) == 1

    clock.now = t0 + MINUTE - timedelta(seconds=1)
    relay.relay(clock.now)
    assert len(sent_texts(env["SMS_FILE_PATH"])) == 1

    clock.now = t0 + MINUTE
    relay.relay(clock.now)
    first, again = texts()
    assert (again.status, again.sent_at, again.attempts) == (MessageStatus.SENT, t0 + MINUTE, 1)
    assert len(sent_texts(env["SMS_FILE_PATH"])) == 2


def test_a_waiting_text_is_shown_waiting_and_its_delivery_stays_queued(
    app, clock, submit_filing, provider, client
):
    filing = submit_filing(one_phone("REF-1"))
    resend(filing["id"], clock.now)
    db.session.add(make_admin("national", None, clock.now))
    db.session.commit()
    sign_in(client, "national")

    page = client.get(f"/admin/filings/{filing['id']}").get_data(as_text=True)
    assert LABELS["paced"] in page
    _, headers = provider
    status = client.get(f"/api/v1/filings/{filing['id']}", headers=headers).get_json()
    assert [v["delivery"] for v in status["verifications"]] == ["queued"]


@pytest.mark.parametrize(
    ("id_last6", "entries", "filing_status"),
    [(ID_A[-6:], 1, "under_review"), ("000000", 5, "returned")],
    ids=["code entered", "five wrong IDs"],
)
def test_a_waiting_text_whose_code_ended_meanwhile_is_withdrawn_not_sent(
    app, clock, submit_filing, env, sent_codes, provider, client, id_last6, entries, filing_status
):
    t0 = clock.now
    filing = submit_filing(one_phone("REF-1"))
    clock.now = t0 + timedelta(seconds=10)
    assert resend(filing["id"], clock.now) == Outcome.RESEND_SENT
    for _ in range(entries):
        verify("tianjin", PHONE, sent_codes()[PHONE], id_last6, clock.now)
        db.session.commit()

    clock.now = t0 + MINUTE
    relay.relay(clock.now)

    first, waited = texts()
    assert (first.status, waited.status) == (MessageStatus.SENT, MessageStatus.WITHDRAWN)
    assert (waited.sent_at, waited.attempts, waited.next_attempt_at) == (None, 0, None)
    assert len(sent_texts(env["SMS_FILE_PATH"])) == 1
    clock.now += DAY
    relay.relay(clock.now)
    assert len(sent_texts(env["SMS_FILE_PATH"])) == 1, "a withdrawn text is never taken again"

    _, headers = provider
    status = client.get(f"/api/v1/filings/{filing['id']}", headers=headers).get_json()
    assert status["status"] == filing_status
    assert [v["delivery"] for v in status["verifications"]] == ["sent"]
    db.session.add(make_admin("national", None, clock.now))
    db.session.commit()
    sign_in(client, "national")
    page = client.get(f"/admin/filings/{filing['id']}").get_data(as_text=True)
    assert LABELS["withdrawn"] in page


def test_a_withdrawn_text_leaves_the_phone_s_slot_to_a_code_still_pending(
    app, clock, submit_filing, env, sent_codes
):
    """Two filings naming one person: the first's waiting text is withdrawn once its code is
    entered, and the second's text, asked for then, goes at once, not a minute later."""
    t0 = clock.now
    first = submit_filing(one_phone("REF-1"))
    clock.now = t0 + timedelta(seconds=10)
    resend(first["id"], clock.now)
    verify("tianjin", PHONE, sent_codes()[PHONE], ID_A[-6:], clock.now)
    db.session.commit()
    clock.now = t0 + MINUTE
    relay.relay(clock.now)

    submit_filing(one_phone("REF-2"))

    _, withdrawn, second = texts()
    assert withdrawn.status == MessageStatus.WITHDRAWN
    assert (second.status, second.sent_at) == (MessageStatus.SENT, t0 + MINUTE)


def test_eleven_texts_at_once_go_within_the_limits_each_exactly_once(
    app, clock, submit_filing, env
):
    t0 = clock.now
    for n in range(11):
        submit_filing(one_phone(f"REF-{n}"))
    # Each text that waits is told when it goes, in the order they came.
    planned = [t.paced_until or t.sent_at for t in texts()]

    relay_until_nothing_waits(clock)

    sent = texts()
    assert [m.status for m in sent] == [MessageStatus.SENT] * 11
    assert [m.sent_at for m in sent] == planned
    minutes = [(m.sent_at - t0) / MINUTE for m in sent]
    # Five a minute apart, the 6th at the end of the first text's hour, the 11th a day on.
    assert minutes == [0, 1, 2, 3, 4, 60, 61, 62, 63, 64, 24 * 60]
    assert len(sent_texts(env["SMS_FILE_PATH"])) == 11


def test_a_resend_over_the_daily_limit_answers_the_resend_limit(app, clock, submit_filing, client):
    t0 = clock.now
    filings = [submit_filing(one_phone(f"REF-{n}")) for n in range(10)]
    relay_until_nothing_waits(clock)
    clock.now += MINUTE

    assert resend(filings[0]["id"], clock.now) == Outcome.RESEND_LIMIT_REACHED
    db.session.add(make_admin("national", None, clock.now))
    db.session.commit()
    sign_in(client, "national")
    filing_page = f"/admin/filings/{filings[0]['id']}"
    verification_id = db.session.scalar(
        sa.select(Verification.id).where(Verification.filing_id == filings[0]["id"])
    )
    answer = client.post(
        f"{filing_page}/verifications/{verification_id}/resend",
        data={"csrf_token": csrf(client, filing_page)},
        follow_redirects=True,
    )
    assert Outcome.RESEND_LIMIT_REACHED.message in answer.get_data(as_text=True)

    assert len(texts()) == 10
    resent = db.session.scalar(
        sa.select(Verification.resend_count).where(Verification.filing_id == filings[0]["id"])
    )
    assert resent == 0
    # A day after the first five texts, the last filing (still within its deadline) may resend.
    clock.now = t0 + DAY + 5 * MINUTE
    assert resend(filings[-1]["id"], clock.now) == Outcome.RESEND_SENT


def test_on_rq_a_waiting_text_is_a_job_delayed_to_its_time(queue, clock, submit_filing, env):
    t0 = clock.now
    filing = submit_filing(one_phone("REF-1"))
    run_worker(queue)
    clock.now = t0 + timedelta(seconds=10)
    resend(filing["id"], clock.now)
    run_worker(queue)

    registry = ScheduledJobRegistry(queue=queue)
    (job_id,) = registry.get_job_ids()
    assert registry.get_scheduled_time(job_id) == (t0 + MINUTE).replace(microsecond=0)
    assert len(sent_texts(env["SMS_FILE_PATH"])) == 1

    clock.now = t0 + MINUTE
    registry.requeue(job_id)
    run_worker(queue)

    assert [m.status for m in texts()] == [MessageStatus.SENT] * 2
    assert len(sent_texts(env["SMS_FILE_PATH"])) == 2
    assert registry.count == 0


def test_a_text_another_job_is_sending_makes_the_next_to_that_phone_wait(
    queue, clock, submit_filing
):
    """Two jobs at once, each with a text to the same phone (two filings naming one person):
    the second plans while the first is sending, before the database shows that text sent."""
    submit_filing(one_phone("REF-1"))
    submit_filing(one_phone("REF-2"))
    first, second = texts()

    assert pacing.plan([first], clock.now) == ([first], [])
    assert pacing.plan([second], clock.now) == ([], [(second, clock.now + MINUTE)])
    assert pacing.plan([first], clock.now) == ([first], []), "a retry is not held by itself"
    clock.now += MINUTE
    assert pacing.plan([second], clock.now) == ([second], [])
