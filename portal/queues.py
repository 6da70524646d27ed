"""The RQ queues (SPEC §9): texts, webhooks and maintenance (sweeps, captcha images) apart.

`QUEUE_NAMES` is the order in which a worker on all of them takes jobs: texts first, so a
slow webhook receiver or a long sweep never delays a text.
"""

from flask import Flask, current_app
from redis import Redis
from rq import Queue

SMS = "sms"
WEBHOOKS = "webhooks"
MAINTENANCE = "maintenance"
QUEUE_NAMES = (SMS, WEBHOOKS, MAINTENANCE)


def init_app(app: Flask, redis: Redis) -> None:
    app.extensions["rq_queues"] = {name: Queue(name, connection=redis) for name in QUEUE_NAMES}


def rq_queue(name: str) -> Queue | None:
    """The RQ queue of that name; None without Redis (jobs then run in-process)."""
    queues = current_app.extensions.get("rq_queues")
    return queues[name] if queues else None
