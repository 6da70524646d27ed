"""gunicorn's settings for `gunicorn wsgi:app` (read from the working directory).

Measured on a 2-core machine (docs/performance.md): threaded workers (gthread) answer
more than as many sync workers, because a request spends part of its time waiting on
PostgreSQL and Redis; more processes than cores gave nothing. Override with
GUNICORN_WORKER_CLASS / GUNICORN_WORKERS / GUNICORN_THREADS / PORT.
"""

import multiprocessing
import os
import tempfile
from pathlib import Path

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
worker_class = os.environ.get("GUNICORN_WORKER_CLASS") or "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS") or multiprocessing.cpu_count())
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
# Keep-alive connections from a load balancer are reused rather than reopened per request.
keepalive = 5
timeout = 30
graceful_timeout = 20
# Per-request access lines would cost a write each; the app logs what matters, with ids.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"

# Metrics from every worker process are merged from files in this directory (prometheus_client's
# multiprocess mode). It must be set before the app (and prometheus_client) is imported in a
# worker: this file is read by the master first, and the workers inherit its environment.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="portal-metrics-")


def on_starting(server) -> None:
    """Start from an empty metrics directory: files of an earlier run would be counted again."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
