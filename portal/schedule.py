"""What runs periodically, and the in-process scheduler of the embedded default.

In production, one process per deployment enqueues these with RQ's own cron:
`flask --app wsgi cron` (or `rq cron portal/schedule.py`), and workers started with
`flask --app wsgi worker` run them. Without Redis, `start_in_process` runs the
same job functions from a daemon thread.
"""

import logging
import threading
import time

from flask import Flask
from rq import cron

from portal import jobs

log = logging.getLogger(__name__)

SWEEP_EVERY_SECONDS = 30

cron.register(jobs.sweep, queue_name=jobs.QUEUE_NAME, interval=SWEEP_EVERY_SECONDS)


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
