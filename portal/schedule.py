"""What runs periodically, and the in-process scheduler of the embedded default.

In production, one process per deployment enqueues these with RQ's own cron:
`flask --app wsgi cron` (`rq cron portal/schedule.py` too, but it exits on the first Redis
error: `run_cron` starts it again), and workers started with
`flask --app wsgi worker` run them. Without Redis, `start_in_process` runs the
same job functions from a daemon thread.
"""

import logging
import threading
import time

from flask import Flask
from redis import Redis
from redis.exceptions import RedisError
from rq import cron
from rq.exceptions import StopRequested
from sqlalchemy.exc import SQLAlchemyError

from portal import jobs, queues

log = logging.getLogger(__name__)

SWEEP_EVERY_SECONDS = 30
# After an outage, `flask cron` tries again after 1 s, then twice as long each time, up to 30 s.
RESTART_FIRST_SECONDS = 1
RESTART_MAX_SECONDS = 30

cron.register(jobs.sweep, queue_name=queues.MAINTENANCE, interval=SWEEP_EVERY_SECONDS)


def start_in_process(app: Flask) -> None:
    def loop() -> None:
        while True:
            time.sleep(SWEEP_EVERY_SECONDS)
            try:
                with app.app_context():
                    jobs.sweep()
            except Exception:
                log.exception(
                    "in-process sweep failed; the next one runs in %ss", SWEEP_EVERY_SECONDS
                )

    threading.Thread(target=loop, name="portal-sweeps", daemon=True).start()


def run_cron(connection: Redis) -> None:
    """RQ's cron loop, started again after a Redis or database error until a signal stops it:
    RQ's own loop exits on the first one, and expiry, the resend and the relay would stop."""
    scheduler = cron.CronScheduler(connection=connection)
    scheduler.load_config_from_file("portal.schedule")
    wait = RESTART_FIRST_SECONDS
    while True:
        started = time.monotonic()
        try:
            scheduler.start()
            return  # stopped by SIGINT or SIGTERM
        except (RedisError, SQLAlchemyError) as error:
            if time.monotonic() - started > RESTART_MAX_SECONDS:
                wait = RESTART_FIRST_SECONDS  # it ran a while: a new outage
            log.warning(
                "cron stopped by %s: %s; starting again in %ss", type(error).__name__, error, wait
            )
        try:
            time.sleep(wait)
        except StopRequested:  # the signal handlers RQ installed
            return
        wait = min(wait * 2, RESTART_MAX_SECONDS)
