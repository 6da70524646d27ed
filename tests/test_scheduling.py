"""What runs periodically (SPEC §4, §8): the `sweep` command, RQ's cron and workers, the
in-process scheduler of the embedded default, sweeps running at once, and the relay that
sends what was accepted while Redis was down."""

import json
import threading
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from rq.cron import CronScheduler

from portal import schedule, sweeps
from portal.clock import SHANGHAI, utcnow
from portal.delivery import relay, webhooks
from portal.extensions import db
from portal.messages import Outcome
from portal.models import Event, Filing, MessageStatus, SmsMessage, Verification
from portal.verification import verify
from tests.factories import ID_A, new_filing_body, queues_on, run_worker, sent_texts

PHONES = ["13900000001", "13900000002"]
CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"


def shanghai(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=SHANGHAI)


def filing_state(filing_id: str) -> tuple[str, str | None, list[str], list[Event]]:
    """Status, return reason, verification statuses and events, as committed."""
    db.session.rollback()
    filing = db.session.get(Filing, filing_id)
    events = db.session.scalars(sa.select(Event).where(Event.filing_id == filing_id)).all()
    return (
        filing.status,
        filing.return_reason,
        [v.status for v in filing.verifications],
        events,
    )


def deadline_of(filing_id: str) -> datetime:
    db.session.rollback()
    return db.session.get(Filing, filing_id).deadline


@pytest.fixture
def redis_down(env) -> None:
    """REDIS_URL pointed at a port nothing listens on (set before `app`)."""
    env["REDIS_URL"] = CLOSED_PORT_REDIS


# The `sweep` command


def test_sweep_command_expires_a_past_deadline_filing_and_prints_the_counts(
    app, clock, submit_filing
):
    clock.now = shanghai(2, 14)
    filing = submit_filing()
    clock.now = deadline_of(filing["id"])

    result = app.test_cli_runner().invoke(args=["sweep"])

    assert result.exit_code == 0, result.output
    counts = json.loads(result.output.strip().splitlines()[-1])
    assert counts == {
        "expired": 1,
        "noon_resent": 0,
        "personal_data_erased": 0,
        "rerouted": 0,
        "relayed": 0,
        "pruned": 0,
        "audit_pruned": 0,
    }
    status, reason, verifications, events = filing_state(filing["id"])
    assert (status, reason, verifications) == ("returned", "expired", ["expired", "expired"])
    assert len(events) == 1


def test_sweep_command_sends_the_noon_resend(app, clock, submit_filing, sent_codes, env):
    clock.now = shanghai(2, 14)
    submit_filing()
    codes = sent_codes()
    clock.now = shanghai(3, 12)

    result = app.test_cli_runner().invoke(args=["sweep"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1]) == {
        "expired": 0,
        "noon_resent": 2,
        "personal_data_erased": 0,
        "rerouted": 0,
        "relayed": 0,
        "pruned": 0,
        "audit_pruned": 0,
    }
    assert sorted(line["to"] for line in sent_texts(env["SMS_FILE_PATH"])) == sorted(PHONES * 2)
    assert sent_codes() == codes


@pytest.mark.parametrize("command", ["worker", "cron"])
def test_worker_and_cron_commands_refuse_to_start_without_redis(app, command):
    result = app.test_cli_runner().invoke(args=[command])

    assert result.exit_code != 0
    assert "REDIS_URL" in result.output


def test_worker_command_runs_the_queued_jobs(queue, app, submit_filing, sent_codes):
    submit_filing()
    assert (queue.count, sent_codes()) == (1, {})

    result = app.test_cli_runner().invoke(args=["worker", "--burst"])

    assert result.exit_code == 0, result.output
    assert sorted(sent_codes()) == PHONES
    assert queue.count == 0


# RQ's cron


def test_cron_config_registers_the_sweep_on_the_maintenance_queue(redis_connection):
    scheduler = CronScheduler(connection=redis_connection)

    scheduler.load_config_from_file("portal.schedule")

    registered = [(job.func_name, job.queue_name, job.interval) for job in scheduler.get_jobs()]
    assert registered == [("portal.jobs.sweep", "maintenance", schedule.SWEEP_EVERY_SECONDS)]
    assert 0 < schedule.SWEEP_EVERY_SECONDS <= 60


def test_cron_enqueues_the_sweep_and_a_worker_running_it_expires_the_filing(
    queue, clock, submit_filing
):
    filing = submit_filing()
    run_worker(queue)  # the code texts: their first sending starts the clock
    clock.now = deadline_of(filing["id"])
    scheduler = CronScheduler(connection=queue.connection)
    scheduler.load_config_from_file("portal.schedule")

    scheduler.enqueue_jobs()
    assert queue.get_jobs() == []
    (job,) = queues_on(queue.connection)["maintenance"].get_jobs()
    assert (job.origin, job.func_name) == ("maintenance", "portal.jobs.sweep")
    run_worker(queue)

    status, reason, verifications, events = filing_state(filing["id"])
    assert (status, reason, verifications) == ("returned", "expired", ["expired", "expired"])
    assert len(events) == 1
    assert job.return_value(refresh=True)["expired"] == 1


def test_embedded_default_sweeps_from_a_background_thread(app, clock, submit_filing, monkeypatch):
    """Without Redis the same sweep job runs every SWEEP_EVERY_SECONDS from a daemon thread."""
    filing = submit_filing()
    clock.now = deadline_of(filing["id"])
    swept = threading.Event()
    slept = []

    class OneTick:
        """Lets the loop sleep once, then parks its thread for good."""

        @staticmethod
        def sleep(seconds: float) -> None:
            slept.append(seconds)
            if len(slept) > 1:
                swept.set()
                threading.Event().wait()

    monkeypatch.setattr(schedule, "time", OneTick)

    schedule.start_in_process(app)

    assert swept.wait(timeout=10)
    assert slept == [schedule.SWEEP_EVERY_SECONDS] * 2
    status, reason, _, _ = filing_state(filing["id"])
    assert (status, reason) == ("returned", "expired")


# Sweeps running at once


def test_two_sweeps_at_once_return_an_expired_filing_once(app, clock, submit_filing, sent_codes):
    filing = submit_filing()
    code = sent_codes()[PHONES[0]]
    assert verify("tianjin", PHONES[0], code, ID_A[-6:], clock.now).outcome == (
        Outcome.VERIFIED_OTHERS_PENDING
    )
    db.session.commit()
    deadline = deadline_of(filing["id"])
    db.session.commit()
    barrier = threading.Barrier(2)
    returned, errors = [], []

    def sweep() -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=10)
                returned.append(sweeps.expire(deadline))
                db.session.commit()
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(returned, key=len) == [[], [filing["id"]]]
    status, reason, verifications, events = filing_state(filing["id"])
    assert (status, reason, verifications) == ("returned", "expired", ["verified", "expired"])
    (event,) = events
    assert (event.status, event.return_reason) == ("returned", "expired")
    sent = json.loads(webhooks.body(event))["filing"]
    assert [v["status"] for v in sent["verifications"]] == ["verified", "expired"]


# Redis down


def test_texts_accepted_while_redis_was_down_are_sent_once_after_the_relay(
    redis_down, app, client, provider, env, redis_connection, monkeypatch
):
    response = client.post("/api/v1/filings", json=new_filing_body(), headers=provider[1])

    assert response.status_code == 201
    filing_id = response.get_json()["id"]
    db.session.rollback()
    messages = db.session.scalars(
        sa.select(SmsMessage).join(Verification).where(Verification.filing_id == filing_id)
    ).all()
    assert [m.status for m in messages] == [MessageStatus.QUEUED] * 2
    assert sent_texts(env["SMS_FILE_PATH"]) == []

    monkeypatch.setitem(app.extensions, "rq_queues", queues_on(redis_connection))
    queue = app.extensions["rq_queues"]["sms"]
    later = utcnow() + timedelta(minutes=6)
    assert relay.relay(later) == 2
    assert relay.relay(later) == 0, "a second relay does not queue them again while they wait"
    run_worker(queue)

    assert sorted(line["to"] for line in sent_texts(env["SMS_FILE_PATH"])) == PHONES
    db.session.rollback()
    assert [db.session.get(SmsMessage, m.id).status for m in messages] == [MessageStatus.SENT] * 2
    assert relay.relay(later + timedelta(hours=1)) == 0
