"""Delivering the code texts (SPEC §4, §8): on RQ with a real Redis, in-process, and through the
`file` and `http` backends, with retries, give-up and nothing lost when a part is down."""

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import sqlalchemy as sa
from rq.registry import ScheduledJobRegistry

from portal import jobs
from portal.clock import iso_shanghai
from portal.delivery import outbox, relay
from portal.extensions import db
from portal.models import Filing, MessageStatus, SmsMessage, Verification
from portal.protection import sealing
from portal.protection.personal_data import verification_phone
from tests.factories import (
    ID_A,
    ID_B,
    new_filing_body,
    principal,
    queues_on,
    run_worker,
    sent_texts,
)

PUBLIC_BASE_URL = "https://beian.example.cn"
CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"
CLOSED_PORT_GATEWAY = "http://127.0.0.1:1/sms"
CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


def two_phones_three_principals() -> dict:
    """The entity's principal also runs the second website: three principals, two phones."""
    return new_filing_body(
        websites=[
            {"domain": "a.example.cn", "name": "甲网", "principal": principal("13900000002", ID_B)},
            {"domain": "b.example.cn", "name": "乙网", "principal": principal("13900000001", ID_A)},
        ]
    )


def one_phone() -> dict:
    return new_filing_body(
        websites=[
            {"domain": "a.example.cn", "name": "甲网", "principal": principal("13900000001", ID_A)}
        ]
    )


def messages_of(filing_id: str) -> list[SmsMessage]:
    """The filing's messages as committed (the session is dropped first)."""
    db.session.remove()
    return db.session.scalars(
        sa.select(SmsMessage)
        .join(Verification)
        .where(Verification.filing_id == filing_id)
        .order_by(SmsMessage.id)
    ).all()


@pytest.fixture
def on_rq(on_rq, env) -> None:
    """On RQ, with a public base URL for the links in the texts."""
    env["PUBLIC_BASE_URL"] = PUBLIC_BASE_URL


@pytest.fixture
def immediate_retries(monkeypatch) -> None:
    """RQ retries at once (interval 0 re-enqueues the job, no scheduler needed)."""
    zeros = (0,) * len(outbox.SMS_RETRY_DELAYS)
    monkeypatch.setattr(outbox, "SMS_RETRY_DELAYS", zeros)


@dataclass
class GatewayRequest:
    headers: dict[str, str]
    body: dict
    status: int


@dataclass
class Gateway:
    """A small SMS gateway: answers 500 to its first `failures` requests, 200 after."""

    url: str = ""
    failures: float = 0
    requests: list[GatewayRequest] = field(default_factory=list)


@pytest.fixture
def gateway(env):
    """A real HTTP gateway on 127.0.0.1, used by the `http` backend (set before `app`)."""
    state = Gateway()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = 500 if len(state.requests) < state.failures else 200
            state.requests.append(GatewayRequest(dict(self.headers), body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}/sms"
    env["SMS_BACKEND"] = "http"
    env["SMS_HTTP_URL"] = state.url
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def gateway_down(env) -> None:
    """The `http` backend pointed at a port nothing listens on (set before `app`)."""
    env["SMS_BACKEND"] = "http"
    env["SMS_HTTP_URL"] = CLOSED_PORT_GATEWAY


@pytest.fixture
def redis_down(env) -> None:
    """REDIS_URL pointed at a port nothing listens on (set before `app`)."""
    env["REDIS_URL"] = CLOSED_PORT_REDIS


# RQ on the real Redis


def test_submission_queues_one_job_with_a_text_per_distinct_phone_and_sends_nothing_yet(
    queue, submit_filing, env
):
    filing = submit_filing(two_phones_three_principals())

    messages = messages_of(filing["id"])
    assert queue.name == "sms"
    (job,) = queue.get_jobs()
    assert job.func_name == "portal.jobs.deliver_sms_batch"
    assert job.args == ([message.id for message in messages],)
    assert sent_texts(env["SMS_FILE_PATH"]) == []
    assert [message.status for message in messages] == [MessageStatus.QUEUED] * 2
    assert filing["deadline"] is None


def test_worker_sends_each_phone_its_code_with_the_province_and_link(
    queue, submit_filing, env, app
):
    filing = submit_filing(two_phones_three_principals())

    run_worker(queue)

    lines = sent_texts(env["SMS_FILE_PATH"])
    assert sorted(line["to"] for line in lines) == ["13900000001", "13900000002"]
    verifications = {verification_phone(v): v for v in db.session.scalars(sa.select(Verification))}
    for line in lines:
        text = line["text"]
        (code,) = CODE.findall(text)
        assert sealing.digest("code", code) == verifications[line["to"]].code_digest
        assert "天津市通信管理局" in text
        assert "24小时" in text
        (token,) = re.findall(rf" {PUBLIC_BASE_URL}/tianjin/v/([A-Za-z0-9_-]{{16}}) ", text)
        assert verifications[line["to"]].link_digest == sealing.digest("personal-link", token)
    assert [m.status for m in messages_of(filing["id"])] == [MessageStatus.SENT] * 2
    assert queue.count == 0
    assert queue.failed_job_registry.count == 0


def test_a_filings_job_reads_the_provinces_from_the_processs_copy_of_the_rollout(
    queue, submit_filing, env
):
    """The job that sends a filing's texts reads no province row: it loaded all of them."""
    submit_filing(two_phones_three_principals())
    tables: list[str] = []

    def statement(connection, cursor, sql, *args) -> None:
        tables.extend(re.findall(r"\bFROM (\w+)", sql))

    sa.event.listen(db.engine, "before_cursor_execute", statement)
    try:
        run_worker(queue)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", statement)
    assert len(sent_texts(env["SMS_FILE_PATH"])) == 2
    assert "provinces" not in tables


def test_code_validity_runs_from_the_first_sending(queue, submit_filing, client, provider):
    filing = submit_filing(two_phones_three_principals())

    run_worker(queue)

    messages = messages_of(filing["id"])
    first_sent = min(message.sent_at for message in messages)
    deadline = db.session.get(Filing, filing["id"]).deadline
    assert deadline == first_sent + timedelta(hours=24)
    shown = client.get(f"/api/v1/filings/{filing['id']}", headers=provider[1]).get_json()
    assert shown["deadline"] == iso_shanghai(first_sent + timedelta(hours=24))
    assert shown["deadline"].endswith("+08:00")


def test_jobs_are_queued_only_once_their_rows_are_committed(queue, submit_filing, monkeypatch, app):
    """At enqueue time another connection already sees the message row: no worker can miss it."""
    seen_at_enqueue = []
    enqueue_many = queue.enqueue_many

    def enqueue_and_look(job_datas, **options):
        for job_data in job_datas:
            (message_ids,) = job_data.args
            with db.engine.connect() as other:
                seen_at_enqueue.extend(
                    other.scalars(
                        sa.select(SmsMessage.status).where(SmsMessage.id.in_(message_ids))
                    )
                )
        return enqueue_many(job_datas, **options)

    monkeypatch.setattr(queue, "enqueue_many", enqueue_and_look)
    filing = submit_filing(two_phones_three_principals())

    assert seen_at_enqueue == [MessageStatus.QUEUED] * 2
    run_worker(queue)
    assert queue.failed_job_registry.count == 0
    assert [m.status for m in messages_of(filing["id"])] == [MessageStatus.SENT] * 2


def test_delivering_a_sent_message_again_sends_nothing(queue, submit_filing, env):
    """Jobs are idempotent: a duplicate job for a message already sent is a no-op."""
    filing = submit_filing(one_phone())
    run_worker(queue)
    (message,) = messages_of(filing["id"])

    queue.enqueue(jobs.deliver_sms, message.id)
    run_worker(queue)

    assert len(sent_texts(env["SMS_FILE_PATH"])) == 1
    (again,) = messages_of(filing["id"])
    assert (again.status, again.attempts) == (MessageStatus.SENT, 1)


# The http backend against a real gateway


def test_gateway_errors_are_retried_until_the_text_is_accepted_once(
    gateway, immediate_retries, queue, submit_filing
):
    gateway.failures = 2
    filing = submit_filing(one_phone())

    run_worker(queue)

    (message,) = messages_of(filing["id"])
    assert [request.status for request in gateway.requests] == [500, 500, 200]
    for request in gateway.requests:
        assert set(request.body) == {"to", "text", "message_id"}
        assert request.body["to"] == "13900000001"
        assert CODE.search(request.body["text"])
        assert request.headers["Idempotency-Key"] == request.body["message_id"]
    assert len({request.headers["Idempotency-Key"] for request in gateway.requests}) == 1
    assert (message.status, message.attempts) == (MessageStatus.SENT, 3)
    assert message.sent_at is not None
    assert queue.count == 0
    assert queue.failed_job_registry.count == 0


def test_a_gateway_that_always_fails_is_given_up_after_the_last_attempt(
    gateway, immediate_retries, queue, submit_filing
):
    gateway.failures = float("inf")
    filing = submit_filing(one_phone())

    run_worker(queue, max_jobs=3 * outbox.SMS_MAX_ATTEMPTS)

    (message,) = messages_of(filing["id"])
    assert len(gateway.requests) == outbox.SMS_MAX_ATTEMPTS
    assert (message.status, message.attempts) == (MessageStatus.FAILED, outbox.SMS_MAX_ATTEMPTS)
    assert "500" in message.last_error
    assert message.sent_at is None
    assert queue.count == 0
    assert ScheduledJobRegistry(queue=queue).count == 0


def test_a_failed_message_is_not_sent_again(gateway, immediate_retries, queue, submit_filing):
    gateway.failures = float("inf")
    filing = submit_filing(one_phone())
    run_worker(queue, max_jobs=3 * outbox.SMS_MAX_ATTEMPTS)
    (message,) = messages_of(filing["id"])

    queue.enqueue(jobs.deliver_sms, message.id)
    run_worker(queue)

    assert len(gateway.requests) == outbox.SMS_MAX_ATTEMPTS


# In-process mode (no REDIS_URL)


def test_without_redis_the_codes_are_sent_during_the_request(app, submit_filing, sent_codes, env):
    assert "rq_queues" not in app.extensions
    filing = submit_filing(two_phones_three_principals())

    assert set(sent_codes()) == {"13900000001", "13900000002"}
    assert [m.status for m in messages_of(filing["id"])] == [MessageStatus.SENT] * 2
    assert filing["deadline"] is not None


def test_without_redis_a_gateway_down_still_accepts_the_filing(gateway_down, client, provider):
    _, headers = provider
    response = client.post("/api/v1/filings", json=one_phone(), headers=headers)

    assert response.status_code == 201
    filing = response.get_json()
    (message,) = messages_of(filing["id"])
    assert message.status == MessageStatus.QUEUED
    assert message.attempts == 1
    assert "ConnectionError" in message.last_error
    shown = client.get(f"/api/v1/filings/{filing['id']}", headers=headers)
    assert shown.status_code == 200
    assert shown.get_json()["status"] == "pending_verification"


# Redis down


def test_redis_unreachable_at_enqueue_still_accepts_the_filing(redis_down, client, provider, env):
    _, headers = provider
    response = client.post("/api/v1/filings", json=two_phones_three_principals(), headers=headers)

    assert response.status_code == 201
    filing = response.get_json()
    messages = messages_of(filing["id"])
    assert [(m.status, m.attempts) for m in messages] == [(MessageStatus.QUEUED, 0)] * 2
    assert sent_texts(env["SMS_FILE_PATH"]) == []
    assert db.session.get(Filing, filing["id"]).status == "pending_verification"


def test_texts_accepted_while_redis_was_down_go_out_on_the_next_relay(
    redis_down, app, submit_filing, env, redis_connection, monkeypatch
):
    filing = submit_filing(two_phones_three_principals())
    monkeypatch.setitem(app.extensions, "rq_queues", queues_on(redis_connection))
    queue = app.extensions["rq_queues"]["sms"]

    later = max(m.created_at for m in messages_of(filing["id"])) + timedelta(hours=1)
    relay.relay(later)
    run_worker(queue)

    assert sorted(line["to"] for line in sent_texts(env["SMS_FILE_PATH"])) == [
        "13900000001",
        "13900000002",
    ]
    assert [m.status for m in messages_of(filing["id"])] == [MessageStatus.SENT] * 2


# Secrets at rest


def test_the_database_alone_does_not_reveal_a_live_code(submit_filing, sent_codes):
    filing = submit_filing(one_phone())
    code = sent_codes()["13900000001"]

    with db.engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT * FROM verifications WHERE filing_id = :id"), {"id": filing["id"]}
        ).all()
        messages = connection.execute(sa.text("SELECT * FROM sms_messages")).all()
    assert len(rows) == 1
    for row in [*rows, *messages]:
        for value in row:
            assert code not in str(value)
