"""Operations (issues 6 and 13): health and readiness, Prometheus metrics, JSON logs with a
request id, and a portal that keeps answering while Redis is down or frozen."""

import json
import logging
import os
import signal
import time

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from portal import create_app, monitoring
from portal.extensions import db
from portal.messages import Outcome
from portal.models import VerifyAttempt
from portal.protection.redacted_logs import JsonFormatter
from tests.factories import CAPTCHA, ID_A, ID_C, form_fields, new_filing_body, principal
from tests.servers import RedisServer

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/15"


def _sample(name: str, labels: dict | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "ok"


def test_readyz_is_ready_when_the_database_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"database": "up", "redis": "not used"}
    assert response.get_json()["degraded"] == []


def test_readyz_is_ready_with_redis(on_rq, client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"database": "up", "redis": "up"}


@pytest.fixture
def redis_down(env) -> None:
    """Redis configured but refusing connections (set before `app`)."""
    env["REDIS_URL"] = CLOSED_PORT_REDIS


@pytest.mark.parametrize("backend", ["sqlite"])
def test_readyz_stays_ready_and_says_degraded_while_redis_is_down(redis_down, client):
    """The portal works without Redis: a load balancer must not drop every node for it."""
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "ready": True,
        "degraded": ["redis"],
        "failed": [],
        "checks": {"database": "up", "redis": "down"},
    }


@pytest.mark.parametrize("backend", ["sqlite"])
def test_metrics_say_degraded_while_redis_is_down(redis_down, client):
    body = client.get("/metrics").get_data(as_text=True)
    assert "portal_degraded 1.0" in body
    assert 'portal_queue_depth{queue="sms"} NaN' in body


def test_metrics_say_not_degraded_with_redis(on_rq, client):
    body = client.get("/metrics").get_data(as_text=True)
    assert "portal_degraded 0.0" in body
    for name in ("sms", "webhooks", "maintenance"):
        assert f'portal_queue_depth{{queue="{name}"}} 0.0' in body


@pytest.mark.parametrize("backend", ["sqlite"])
def test_readyz_names_the_database_when_it_does_not_answer(env, tmp_path, database_urls):
    env["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/nowhere"
    broken = create_app(env)
    response = broken.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["failed"] == ["database"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_operations_endpoints_are_not_rate_limited(env, app, client):
    app.config["RATELIMIT_ENABLED"] = True
    statuses = {client.get(path).status_code for path in ("/healthz", "/readyz") for _ in range(80)}
    assert statuses == {200}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_verify_attempt_counts_its_outcome(client, submit_filing):
    submit_filing()
    before = _sample("portal_verify_outcomes_total", {"outcome": "NOT_FOUND"})
    page = client.get("/tianjin/verify").get_data(as_text=True)
    client.post(
        "/tianjin/verify",
        data={
            **form_fields(page),
            "phone": "13900000001",
            "code": "000000",
            "id_last6": "011239",
            "captcha": CAPTCHA,
        },
    )
    assert _sample("portal_verify_outcomes_total", {"outcome": "NOT_FOUND"}) == before + 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_metrics_show_latency_counters_and_backlogs(client, submit_filing):
    submit_filing()
    client.get("/tianjin/verify")
    body = client.get("/metrics").get_data(as_text=True)
    assert 'portal_request_seconds_count{endpoint="province_tianjin.verify_page"' in body
    assert "portal_sms_sent_total" in body
    # The file backend sent both texts in-process; the webhook event waits for its callback.
    assert "portal_sms_backlog 0.0" in body
    assert 'portal_queue_depth{queue="sms"} 0.0' in body
    assert "portal_webhook_backlog" in body


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_made_up_request_method_adds_no_series_to_the_metrics(client):
    for method in ("BREW", "PROPFIND", "X-ANY-12345"):
        client.open("/tianjin/verify", method=method)
    body = client.get("/metrics").get_data(as_text=True)
    assert not any(method in body for method in ("BREW", "PROPFIND", "X-ANY-12345"))
    assert 'method="other"' in body


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"])
def test_metrics_are_served_to_loopback_by_default(client, address):
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": address})
    assert response.status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("address", ["203.0.113.7", "10.0.0.5", "2001:db8::1", "::ffff:10.0.0.5"])
def test_metrics_are_refused_to_other_addresses_by_default(client, address):
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": address})
    assert response.status_code == 403
    assert "portal_" not in response.get_data(as_text=True)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_ipv4_client_of_the_dual_stack_socket_is_seen_by_its_ipv4_address(client):
    """gunicorn's [::] socket gives IPv4 clients as ::ffff:a.b.c.d; the portal records a.b.c.d."""
    mapped = {"REMOTE_ADDR": "::ffff:203.0.113.7"}
    page = client.get("/tianjin/verify", environ_base=mapped).get_data(as_text=True)
    values = {"code": "000000", "phone": "13900000001", "id_last6": "011239", "captcha": CAPTCHA}
    client.post("/tianjin/verify", data={**form_fields(page), **values}, environ_base=mapped)
    assert db.session.scalar(sa.select(VerifyAttempt.client_address)) == "203.0.113.*"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_metrics_allow_names_the_scrapers(env, app):
    env["METRICS_ALLOW"] = "10.0.0.0/8, 2001:db8::7"
    client = create_app(env).test_client()
    for address, status in [("10.1.2.3", 200), ("2001:db8::7", 200), ("127.0.0.1", 403)]:
        response = client.get("/metrics", environ_base={"REMOTE_ADDR": address})
        assert response.status_code == status, address


@pytest.mark.parametrize("backend", ["sqlite"])
def test_behind_a_trusted_proxy_metrics_judge_the_forwarded_client(env, app):
    """A scrape through the load balancer is judged by who sent it, not by the proxy's address."""
    env["TRUSTED_PROXIES"] = "1"
    client = create_app(env).test_client()
    outside = {"X-Forwarded-For": "203.0.113.7"}
    response = client.get("/metrics", headers=outside, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert response.status_code == 403


def _statements(app) -> list[str]:
    seen: list[str] = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_a_scrape_reads_the_backlogs_in_one_statement_then_reuses_them(app, client):
    """Counting a backlog costs in proportion to its size: once per BACKLOG_SECONDS a process."""
    statements = _statements(app)
    client.get("/metrics")
    assert len([s for s in statements if "sms_messages" in s]) == 1
    assert len([s for s in statements if "events" in s]) == 1
    statements.clear()
    client.get("/metrics")
    assert statements == []


def test_the_backlogs_are_read_again_after_backlog_seconds(on_rq, app, submit_filing):
    first = monitoring.backlog_values(now=1000.0)
    submit_filing()  # its two texts wait in the queue: no worker runs
    assert monitoring.backlog_values(now=1000.0 + monitoring.BACKLOG_SECONDS - 1) == first
    again = monitoring.backlog_values(now=1000.0 + monitoring.BACKLOG_SECONDS)
    assert again["texts"] == first["texts"] + 2
    assert again["queues"]["sms"] == first["queues"]["sms"] + 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_metrics_still_answer_while_the_database_is_down(env):
    env["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/nowhere"
    response = create_app(env).test_client().get("/metrics")
    assert response.status_code == 200
    assert "portal_sms_backlog NaN" in response.get_data(as_text=True)
    assert "portal_webhook_backlog NaN" in response.get_data(as_text=True)


# redis-py's default time-out is 5 s a call, and a page made three calls: 15 s. With ours
# (REDIS_TIMEOUT_SECONDS, 0.5 s) each answer below takes about 1 s here.
FROZEN_BOUND_SECONDS = 4


@pytest.fixture
def frozen_redis(env, tmp_path):
    """A Redis of the test's own that accepts connections and never answers (SIGSTOP)."""
    server = RedisServer(tmp_path)
    server.start()
    env["REDIS_URL"] = server.url
    env["RATELIMIT_ENABLED"] = "true"
    yield lambda: os.kill(server.process.pid, signal.SIGSTOP)
    os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def _timed(request):
    started = time.monotonic()
    response = request()
    return response, time.monotonic() - started


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_frozen_redis_delays_pages_and_submissions_by_its_time_out_only(
    frozen_redis, client, provider
):
    _, headers = provider
    frozen_redis()
    page, page_seconds = _timed(lambda: client.get("/tianjin/verify"))
    assert page.status_code == 200
    fields = {**form_fields(page.get_data(as_text=True)), "captcha": CAPTCHA}
    values = {"code": "000000", "phone": "13900000001", "id_last6": "011239"}
    post, post_seconds = _timed(lambda: client.post("/tianjin/verify", data={**fields, **values}))
    assert Outcome.NOT_FOUND.message in post.get_data(as_text=True)
    body = new_filing_body(
        "FROZEN", entity={"name": "公司", "principal": principal("13900000009", ID_A)}
    )
    body["websites"][0]["principal"] = principal("13900000008", ID_C)
    submitted, submit_seconds = _timed(
        lambda: client.post("/api/v1/filings", json=body, headers=headers)
    )
    assert submitted.status_code == 201
    ready, ready_seconds = _timed(lambda: client.get("/readyz"))
    assert ready.status_code == 200
    assert ready.get_json()["degraded"] == ["redis"]
    for seconds in (page_seconds, post_seconds, submit_seconds, ready_seconds):
        assert seconds < FROZEN_BOUND_SECONDS


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_request_id_is_echoed_or_generated(client):
    given = client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert given.headers["X-Request-Id"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-Id": "not valid <script>"})
    assert len(made.headers["X-Request-Id"]) == 32


@pytest.mark.parametrize("backend", ["sqlite"])
def test_log_lines_are_json_with_the_request_id(app, caplog):
    caplog.set_level(logging.INFO, logger="portal")
    with app.test_request_context(headers={"X-Request-Id": "req-42"}):
        app.preprocess_request()
        logging.getLogger("portal.test").info("code 123456 sent to 13900000001")
    record = caplog.records[-1]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-42"
    assert line["message"] == "code ****** sent to 139****0001"
