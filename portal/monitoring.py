"""Operations endpoints: `/healthz` (the process answers), `/readyz` (the database answers;
Redis down is "degraded", still ready) and `/metrics` (Prometheus, for `METRICS_ALLOW` only).

Counters and the latency histogram live in `prometheus_client`'s default registry; under
gunicorn (several processes) they are written to `PROMETHEUS_MULTIPROC_DIR`, which must be
set before this module is imported (gunicorn.conf.py sets it), and `/metrics` merges every
process's files. Backlogs are gauges read from Redis and the database, at most every
`BACKLOG_SECONDS` per process.
"""

import functools
import ipaddress
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
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from portal import queues
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
# How long a process reuses the backlog gauges it read (`backlog_values`).
BACKLOG_SECONDS = 10


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
        method = request.method if request.method in _METHODS else "other"
        _timer(endpoint, method).observe(time.perf_counter() - started)
    return response


# A client may send any method name: as a label, each new one would be a series of its own.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@functools.lru_cache(maxsize=512)
def _timer(endpoint: str, method: str):
    """The histogram's child for one route: `labels` looks it up under a lock every call."""
    return REQUEST_SECONDS.labels(endpoint, method)


@bp.get("/healthz")
def healthz() -> Response:
    return Response("ok", mimetype="text/plain")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 while the database answers; 503 naming it when it does not.

    Without Redis the portal works on (jobs run when the relay requeues them, limits count in
    memory), so Redis down is reported as degraded and still answers 200: a load balancer must
    not drop every node at once for it.
    """
    checks = {"database": _database_answers(), "redis": redis_state()}
    failed = ["database"] if checks["database"] == "down" else []
    degraded = ["redis"] if checks["redis"] == "down" else []
    body = jsonify(ready=not failed, degraded=degraded, checks=checks, failed=failed)
    return body, 503 if failed else 200


def _database_answers() -> str:
    try:
        db.session.execute(sa.text("SELECT 1"))
    except Exception:
        db.session.rollback()
        return "down"
    return "up"


def redis_state() -> str:
    """`up`, `down` or `not used`; a frozen Redis costs its time-out (REDIS_TIMEOUT_SECONDS)."""
    queue = queues.rq_queue(queues.SMS)
    if queue is None:
        return "not used"
    try:
        queue.connection.ping()
    except RedisError:
        return "down"
    return "up"


@bp.get("/metrics")
def metrics() -> Response:
    if not _may_read_metrics(request.remote_addr or ""):
        return Response("metrics are served to METRICS_ALLOW only\n", 403, mimetype="text/plain")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    backlogs = CollectorRegistry()
    backlogs.register(_Backlogs(backlog_values(time.monotonic())))
    body = generate_latest(registry) + generate_latest(backlogs)
    return Response(body, mimetype=CONTENT_TYPE_LATEST.split(";")[0])


def _may_read_metrics(address: str) -> bool:
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(client in network for network in current_app.config["METRICS_ALLOW"])


def backlog_values(now: float) -> dict[str, float]:
    """The backlogs, read at most once per BACKLOG_SECONDS per process: counting a backlog
    costs in proportion to its size, and scrapes come from every Prometheus, to every process."""
    cached = current_app.extensions.get("metrics_backlogs")
    if cached is None or now - cached[0] >= BACKLOG_SECONDS:
        cached = (now, _read_backlogs())
        current_app.extensions["metrics_backlogs"] = cached
    return cached[1]


def _read_backlogs() -> dict[str, float]:
    """Redis's state and each queue's depth, and the outbox counts; NaN for what does not
    answer."""
    state = redis_state()
    depths = dict.fromkeys(queues.QUEUE_NAMES, 0.0 if state == "not used" else float("nan"))
    if state == "up":
        try:
            depths = {name: float(queues.rq_queue(name).count) for name in queues.QUEUE_NAMES}
        except RedisError:
            state = "down"
    return {**_outbox_backlogs(), "queues": depths, "degraded": float(state == "down")}


def _outbox_backlogs() -> dict[str, float]:
    """Both counts in one statement, each on its index."""
    undelivered_events = sa.and_(Event.delivered_at.is_(None), Event.next_attempt_at.is_not(None))
    webhooks = sa.select(sa.func.count()).where(undelivered_events).scalar_subquery()
    queued = SmsMessage.status == MessageStatus.QUEUED
    texts = sa.select(sa.func.count()).where(queued).scalar_subquery()
    try:
        row = db.session.execute(sa.select(webhooks, texts)).one()
    except SQLAlchemyError:
        row = (float("nan"), float("nan"))
    db.session.rollback()
    return {"webhooks": float(row[0]), "texts": float(row[1])}


class _Backlogs:
    def __init__(self, values: dict[str, float]):
        self.values = values

    def collect(self):
        depth = GaugeMetricFamily(
            "portal_queue_depth", "Jobs waiting in each RQ queue.", labels=["queue"]
        )
        for name, value in self.values["queues"].items():
            depth.add_metric([name], value)
        yield depth
        yield GaugeMetricFamily(
            "portal_webhook_backlog",
            "Webhook events not yet delivered and still to be tried.",
            value=self.values["webhooks"],
        )
        yield GaugeMetricFamily(
            "portal_sms_backlog", "Texts queued and not yet sent.", value=self.values["texts"]
        )
        yield GaugeMetricFamily(
            "portal_degraded",
            "1 while Redis does not answer: the portal works on without it, /readyz says degraded.",
            value=self.values["degraded"],
        )
