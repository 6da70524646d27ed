"""gunicorn's settings for `gunicorn wsgi:app` (read from the working directory).

Measured on a 2-core machine (docs/performance.md): threaded workers (gthread) answer
more than as many sync workers, because a request spends part of its time waiting on
PostgreSQL and Redis; more processes than cores gave nothing. Override with
GUNICORN_WORKER_CLASS / GUNICORN_WORKERS / GUNICORN_THREADS / PORT, and HOST (one address,
an IPv6 one in brackets: `[::1]`) to listen on one address instead of every IPv4 and IPv6 one.
"""

import multiprocessing
import os
import socket
import sys
import tempfile
from pathlib import Path


def _every_address() -> list[str]:
    """IPv6 and IPv4: `[::]` takes both where IPv6 sockets are dual-stack (Linux's default,
    IPv4 clients then show as ::ffff:a.b.c.d); both sockets where they are IPv6-only; `0.0.0.0`
    on a host without IPv6."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            v6only = probe.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    except OSError:
        return ["0.0.0.0"]
    return ["0.0.0.0", "[::]"] if v6only else ["[::]"]


_hosts = [os.environ["HOST"]] if os.environ.get("HOST") else _every_address()
bind = [f"{host}:{os.environ.get('PORT') or '8000'}" for host in _hosts]
worker_class = os.environ.get("GUNICORN_WORKER_CLASS") or "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS") or multiprocessing.cpu_count())
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
# Keep-alive connections from a load balancer are reused rather than reopened per request, and
# held longer than the balancer holds an idle one (nginx's upstream keepalive_timeout 60 s,
# Alibaba Cloud SLB 15 s): else gunicorn closes a connection just as the balancer sends a
# request down it, and the client gets a reset (the bench's admins saw it with 5 s).
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE") or 75)
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

# The settings are checked here, in the master, before any worker starts: refused, gunicorn
# stops with one line naming what is wrong, rather than start workers that fail one after
# another. (Imported only now: prometheus_client must see PROMETHEUS_MULTIPROC_DIR.)
from portal import INSTANCE_PATH, settings  # noqa: E402
from portal.delivery import gateway_from_config  # noqa: E402

try:
    gateway_from_config(settings.from_env(os.environ, str(INSTANCE_PATH)), None)
except settings.SettingsError as refused:
    sys.exit(f"portal refuses to start: {refused}")


def on_starting(server) -> None:
    """Start from an empty metrics directory: files of an earlier run would be counted again."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
