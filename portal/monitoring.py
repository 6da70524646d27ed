"""Operations endpoints: `/healthz` (the process answers), `/readyz` (the database and Redis
answer) and `/metrics` (Prometheus).

Counters and the latency histogram live in `prometheus_client`'s default registry; under
gunicorn (several processes) they are written to `PROMETHEUS_MULTIPROC_DIR`, which must be
set before this module is imported (gunicorn.conf.py sets it), and `/metrics` merges every
process's files. Backlogs are gauges read at scrape time, from Redis and the database.
"""

import os
import time

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from redis import Redis

from portal.extensions import csrf, db
from portal.messages import Outcome
from portal.models import Event, MessageStatus, SmsMessage

bp = Blueprint("operations", __name__)

REQUEST_SECONDS = Histogram(
    "portal_request_seconds",
    "Time to answer a request, by endpoint.",
    ["endpoint", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
VERIFY_OUTCOMES = Counter(
    "portal_verify_outcomes", "Verify attempts on the applicant pages, by outcome.", ["outcome"]
)
SMS_SENT = Counter("portal_sms_sent", "Texts the gateway accepted.")
SMS_FAILED = Counter("portal_sms_failed", "Texts given up on after their last attempt.")
SMS_RETRIED = Counter("portal_sms_retried", "Failed attempts at a text that will be retried.")
SMS_GATEWAY_SENDS = Counter(
    "portal_sms_gateway_sends",
    "Texts handed to each gateway, by outcome: accepted, refused, timed_out, skipped.",
    ["gateway", "outcome"],
)
SMS_RECEIPTS = Counter(
    "portal_sms_receipts",
    "Delivery receipts taken, by gateway and outcome: delivered, undelivered, repeated, unknown.",
    ["gateway", "outcome"],
)

_UNTIMED = {"operations.metrics", "operations.healthz", "operations.readyz"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    csrf.exempt(bp)
    app.before_request(_start_timer)
    app.after_request(_observe)


def count_verify(outcome: Outcome) -> None:
    VERIFY_OUTCOMES.labels(outcome.name).inc()


def _start_timer() -> None:
    g.request_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.get("request_started")
    endpoint = request.endpoint or "unmatched"
    if started is not None and endpoint not in _UNTIMED:
        REQUEST_SECONDS.labels(endpoint, request.method).observe(time.perf_counter() - started)
    return response


@bp.get("/healthz")
def healthz() -> Response:
    return Response("ok", mimetype="text/plain")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when the database and Redis (if configured) answer; 503 naming what did not."""
    checks = {"database": _database_answers(), "redis": _redis_answers()}
    failed = [name for name, state in checks.items() if state == "down"]
    return jsonify(ready=not failed, checks=checks, failed=failed), 503 if failed else 200


def _database_answers() -> str:
    try:
        db.session.execute(sa.text("SELECT 1"))
    except Exception:
        db.session.rollback()
        return "down"
    return "up"


def _redis_answers() -> str:
    url = current_app.config["REDIS_URL"]
    if not url:
        return "not used"
    try:
        _probe_redis(url).ping()
    except Exception:
        return "down"
    return "up"


def _probe_redis(url: str) -> Redis:
    """A client with short timeouts of its own: a stuck Redis fails the probe, not hangs it."""
    probe = current_app.extensions.get("readiness_redis")
    if probe is None:
        probe = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        current_app.extensions["readiness_redis"] = probe
    return probe


@bp.get("/metrics")
def metrics() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    backlogs = CollectorRegistry()
    backlogs.register(_Backlogs(_backlog_values()))
    body = generate_latest(registry) + generate_latest(backlogs)
    return Response(body, mimetype=CONTENT_TYPE_LATEST.split(";")[0])


def _backlog_values() -> dict[str, float]:
    queue = current_app.extensions.get("rq_queue")
    depth = 0.0
    if queue is not None:
        try:
            depth = float(queue.count)
        except Exception:
            depth = float("nan")
    undelivered_events = sa.and_(Event.delivered_at.is_(None), Event.next_attempt_at.is_not(None))
    webhooks = db.session.scalar(sa.select(sa.func.count()).where(undelivered_events))
    texts = db.session.scalar(
        sa.select(sa.func.count()).where(SmsMessage.status == MessageStatus.QUEUED)
    )
    db.session.rollback()
    return {"queue": depth, "webhooks": float(webhooks), "texts": float(texts)}


class _Backlogs:
    def __init__(self, values: dict[str, float]):
        self.values = values

    def collect(self):
        yield GaugeMetricFamily(
            "portal_queue_depth", "Jobs waiting in the RQ queue.", value=self.values["queue"]
        )
        yield GaugeMetricFamily(
            "portal_webhook_backlog",
            "Webhook events not yet delivered and still to be tried.",
            value=self.values["webhooks"],
        )
        yield GaugeMetricFamily(
            "portal_sms_backlog", "Texts queued and not yet sent.", value=self.values["texts"]
        )
