"""Operations (issue 6): health and readiness, Prometheus metrics, JSON logs with a request id."""

import json
import logging

import pytest
from prometheus_client import REGISTRY

from portal import create_app
from portal.protection.redacted_logs import JsonFormatter
from tests.factories import CAPTCHA, form_fields

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


def test_readyz_is_ready_with_redis(on_rq, client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"database": "up", "redis": "up"}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_readyz_names_redis_when_it_does_not_answer(env, client, app):
    app.config["REDIS_URL"] = CLOSED_PORT_REDIS
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["failed"] == ["redis"]


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
    assert "portal_queue_depth 0.0" in body
    assert "portal_webhook_backlog" in body


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
