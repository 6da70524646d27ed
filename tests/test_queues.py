"""Separate queues (SPEC §9) and a `flask cron` that outlives Redis outages (issue 11).

A slow webhook receiver (a local server that sleeps before each answer) must not delay a text:
a worker on `sms` sends it while another is still posting, and one worker on all three queues
takes it before the events still waiting. The cron runs as a subprocess against a Redis of
the test's own, stopped while it runs.
"""

import pytest
import sqlalchemy as sa
from redis import Redis
from rq import Queue, SimpleWorker

from portal import queues
from portal.delivery import outbox
from portal.extensions import db
from portal.models import Event, Filing, MessageStatus, SmsMessage, Verification, WebhookDelivery
from tests.factories import ID_B, new_filing_body, principal
from tests.servers import RedisServer
from tests.stack import STARTUP_SECONDS, start_flask, stopped, wait_for
from tests.test_outbox import an_event_of

SLOW_EVENTS = 8
RECEIVER_DELAY_SECONDS = 1.0

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


def queue_slow_events(rq_queues, submit_filing) -> None:
    """A filing (its texts sent) and `SLOW_EVENTS` events of it queued, one job each."""
    filing = db.session.get(Filing, submit_filing()["id"])
    SimpleWorker([rq_queues[queues.SMS]], connection=rq_queues[queues.SMS].connection).work(
        burst=True
    )
    for _ in range(SLOW_EVENTS):
        outbox.events_after_commit([an_event_of(filing.id).id])
    db.session.commit()
    assert rq_queues[queues.WEBHOOKS].count == SLOW_EVENTS


def texts_of(filing_id: str) -> list[SmsMessage]:
    db.session.rollback()
    return db.session.scalars(
        sa.select(SmsMessage).join(Verification).where(Verification.filing_id == filing_id)
    ).all()


def a_later_filing(submit_filing) -> str:
    body = new_filing_body(
        "REF-2", entity={"name": "公司", "principal": principal("13900000009", ID_B)}
    )
    return submit_filing(body)["id"]


def test_a_text_is_sent_by_a_worker_on_sms_while_another_posts_to_a_slow_receiver(
    rq_queues, slow_receiver, submit_filing, env, tmp_path
):
    queue_slow_events(rq_queues, submit_filing)
    log_path = tmp_path / "webhooks-worker.log"
    webhooks_worker = start_flask(env, ["worker", "--queues", "webhooks", "--burst"], log_path)
    try:
        wait_for(lambda: slow_receiver.requests, "the webhooks worker posts", log_path)
        filing_id = a_later_filing(submit_filing)
        sms = rq_queues[queues.SMS]
        SimpleWorker([sms], connection=sms.connection).work(burst=True)

        assert {text.status for text in texts_of(filing_id)} == {MessageStatus.SENT}
        assert len(slow_receiver.requests) < SLOW_EVENTS, "sent while the events still go out"
        assert webhooks_worker.wait(timeout=SLOW_EVENTS * 10) == 0
    finally:
        stopped(webhooks_worker)
    db.session.rollback()
    assert len(slow_receiver.requests) == SLOW_EVENTS
    undelivered = sa.select(sa.func.count()).where(Event.delivered_at.is_(None))
    assert db.session.scalar(undelivered) == 0


def test_one_worker_on_all_queues_takes_a_text_before_the_events_still_waiting(
    rq_queues, slow_receiver, submit_filing, env, tmp_path
):
    queue_slow_events(rq_queues, submit_filing)
    log_path = tmp_path / "worker.log"
    worker = start_flask(env, ["worker", "--burst"], log_path)  # sms, webhooks, maintenance
    try:
        wait_for(lambda: slow_receiver.requests, "the worker posts", log_path)
        filing_id = a_later_filing(submit_filing)
        assert worker.wait(timeout=SLOW_EVENTS * 10) == 0
    finally:
        stopped(worker)

    texts = texts_of(filing_id)
    assert {text.status for text in texts} == {MessageStatus.SENT}
    sent_at = max(text.sent_at for text in texts)
    posted = db.session.scalars(sa.select(WebhookDelivery.attempted_at)).all()
    assert len(posted) == SLOW_EVENTS
    before_the_text = [at for at in posted if at < sent_at]
    assert len(before_the_text) <= 2, "only the posts already under way went before it"


def test_cron_outlives_a_redis_outage_and_queues_the_sweep_again(app, env, tmp_path):
    redis = RedisServer(tmp_path)
    redis.start()
    log_path = tmp_path / "cron.log"
    cron = start_flask({**env, "REDIS_URL": redis.url}, ["cron"], log_path)
    try:
        maintenance = Queue(queues.MAINTENANCE, connection=Redis(port=redis.port, socket_timeout=1))
        wait_for(lambda: maintenance.count == 1, "the cron queues the sweep", log_path)
        redis.stop()
        wait_for(
            lambda: "cron stopped by" in log_path.read_text(errors="replace"),
            "the cron notices the outage",
            log_path,
            limit=STARTUP_SECONDS + 60,
        )
        assert cron.poll() is None, log_path.read_text(errors="replace")
        redis.start()  # empty: a sweep on it was queued after the outage
        wait_for(
            lambda: maintenance.count == 1,
            "the cron queues the sweep again",
            log_path,
            limit=STARTUP_SECONDS + 60,
        )
        assert cron.poll() is None
        (job,) = maintenance.get_jobs()
        assert job.func_name == "portal.jobs.sweep"
    finally:
        stopped(cron)
        redis.stop()
    assert cron.returncode == 0, "SIGTERM stops it cleanly"
