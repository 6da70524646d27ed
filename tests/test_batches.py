"""Work done in bulk for scale (issue 6): texts sent by batch jobs, captcha images from a pool."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal import captchas, jobs, sweeps
from portal.clock import utcnow
from portal.delivery import outbox
from portal.extensions import db
from portal.models import Event, Filing, FilingStatus, MessageStatus, SmsMessage
from tests.factories import CAPTCHA, ID_A, ID_B, new_filing_body, principal, run_worker, sent_texts
from tests.servers import Endpoint


def _filings_with_texts(submit_filing, count: int) -> list[int]:
    for index in range(count):
        body = new_filing_body(f"REF-{index}")
        body["entity"]["principal"] = principal(f"1390000{index:04d}", ID_A)
        body["websites"][0]["principal"] = principal(f"1380000{index:04d}", ID_B)
        submit_filing(body)
    return list(db.session.scalars(sa.select(SmsMessage.id)))


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_batch_job_sends_each_text_once_and_starts_the_clock(queue, submit_filing, env):
    message_ids = _filings_with_texts(submit_filing, 6)
    queue.empty()

    outbox.queue_texts(message_ids)
    outbox.queue_texts(message_ids)  # queued twice: the claim lets each go out once
    run_worker(queue)

    sent = sent_texts(env["SMS_FILE_PATH"])
    assert len(sent) == len(message_ids) == 12
    assert len({line["message_id"] for line in sent}) == 12
    db.session.expire_all()
    statuses = db.session.scalars(sa.select(SmsMessage.status))
    assert set(statuses) == {MessageStatus.SENT}
    assert None not in set(db.session.scalars(sa.select(Filing.deadline)))


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_commit_asking_for_many_texts_queues_batch_jobs(queue, submit_filing):
    message_ids = _filings_with_texts(submit_filing, 6)
    queue.empty()
    for message_id in message_ids:
        outbox.text_after_commit(message_id)

    db.session.commit()

    assert [job.func_name for job in queue.get_jobs()] == ["portal.jobs.deliver_sms_batch"]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_failed_text_in_a_batch_is_scheduled_for_its_own_retry(queue, submit_filing, env, app):
    message_ids = _filings_with_texts(submit_filing, 1)
    queue.empty()
    app.extensions["sms"] = _Failing()

    jobs.deliver_sms_batch(message_ids)

    db.session.expire_all()
    messages = db.session.scalars(sa.select(SmsMessage)).all()
    assert {m.status for m in messages} == {MessageStatus.QUEUED}
    assert {m.attempts for m in messages} == {1}
    assert len(queue.scheduled_job_registry.get_job_ids()) == 2


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.usefixtures("allow_local_callbacks")
def test_a_mass_expiry_posts_its_events_from_batch_jobs_and_retries_a_failure_alone(
    rq_queues, submit_filing, provider, monkeypatch
):
    queue = rq_queues["webhooks"]
    monkeypatch.setattr(outbox, "WEBHOOK_RETRY_DELAYS", (0,) * len(outbox.WEBHOOK_RETRY_DELAYS))
    count = outbox.EVENTS_ONE_BY_ONE + 2
    _filings_with_texts(submit_filing, count)
    rq_queues["sms"].empty()
    now = utcnow()
    db.session.execute(sa.update(Filing).values(deadline=now - timedelta(seconds=1)))
    db.session.commit()

    with Endpoint([503]) as receiver:
        provider[0].callback_url = receiver.url
        db.session.commit()
        returned = sweeps.expire(now)
        db.session.commit()
        assert [job.func_name for job in queue.get_jobs()] == ["portal.jobs.deliver_event_batch"]
        run_worker(queue)

    assert len(returned) == count
    posted = [request.json()["filing"] for request in receiver.requests]
    assert len(posted) == count + 1  # the first answered 503 and was posted again, alone
    assert {filing["id"] for filing in posted} == set(returned)
    assert {filing["status"] for filing in posted} == {FilingStatus.RETURNED}
    db.session.expire_all()
    events = db.session.scalars(sa.select(Event)).all()
    assert len(events) == count and all(event.delivered_at for event in events)
    assert sorted(event.attempts for event in events) == [1] * (count - 1) + [2]
    assert queue.failed_job_registry.count == 0


class _Failing:
    def send(self, text) -> None:
        raise ConnectionError("gateway down")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_captcha_images_come_from_the_pool_the_workers_fill(queue, app, client):
    made = jobs.refill_captchas()
    assert made == captchas.REFILL_BATCH

    page = client.get("/tianjin/verify")
    assert page.status_code == 200
    assert queue.connection.llen("captcha:pool:test") == made - 1
    challenge_id = page.get_data(as_text=True).split('name="captcha_id"')[1].split('value="')[1]
    challenge_id = challenge_id.split('"')[0]
    image = client.get(f"/tianjin/captcha/{challenge_id}.png")
    assert image.status_code == 200 and image.data.startswith(b"\x89PNG")
    again = client.get(f"/tianjin/captcha/{challenge_id}.png")  # a reload: read again
    assert again.data == image.data
    queue.connection.delete(f"captcha:image:{challenge_id}")  # as after IMAGE_TTL
    remade = client.get(f"/tianjin/captcha/{challenge_id}.png")
    assert remade.status_code == 200 and remade.data.startswith(b"\x89PNG")
    assert remade.data != image.data  # drawn again: the captcha package adds random noise
    assert client.get(f"/tianjin/captcha/{challenge_id}.png").data == remade.data  # and kept
    assert CAPTCHA == "TEST"


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_pooled_captcha_image_is_served_without_the_database(queue, app, client):
    jobs.refill_captchas()
    page = client.get("/tianjin/verify").get_data(as_text=True)
    challenge_id = page.split('name="captcha_id"')[1].split('value="')[1].split('"')[0]
    statements = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    image = client.get(f"/tianjin/captcha/{challenge_id}.png")

    assert image.status_code == 200 and image.data.startswith(b"\x89PNG")
    assert statements == []


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_page_finding_the_pool_low_queues_one_refill(rq_queues, client):
    client.get("/tianjin/verify")
    client.get("/tianjin/verify")

    maintenance = rq_queues["maintenance"].get_jobs()
    assert [job.func_name for job in maintenance] == ["portal.jobs.refill_captchas"]
    assert rq_queues["sms"].get_jobs() == []
