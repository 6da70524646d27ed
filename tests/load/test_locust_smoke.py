"""The locustfile's users run for a few seconds against the app without a single failure.

The app is served by werkzeug in a thread of this process (jobs in-process, texts to the
fake gateway in another thread); locust runs in a subprocess, since it patches the
standard library with gevent. This checks behaviour, not speed: tests/load/bench.py
measures.
"""

import csv
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from portal import accounts, providers
from portal.clock import utcnow
from portal.extensions import db
from tests.conftest import REDIS_TEST_URL
from tests.load import gateway

ROOT = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "load-test-password-1"
USERS = 19  # by the weights 14 : 4 : 1, every user type gets at least one


@pytest.fixture
def texts_to_gateway(env, redis_connection):
    server = gateway.serve_in_thread(0, REDIS_TEST_URL)
    env["SMS_BACKEND"] = "http"
    env["SMS_HTTP_URL"] = f"http://127.0.0.1:{server.server_port}/sms"
    yield
    server.shutdown()


@pytest.fixture
def served(texts_to_gateway, app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _seed() -> dict[str, str]:
    _, api_key = providers.create("压测接入商", None, utcnow())
    admin = accounts.create("load-tianjin", ADMIN_PASSWORD, "tianjin", utcnow())
    secret = accounts.enrol_two_factor(admin, utcnow()).secret
    db.session.commit()
    return {
        "BENCH_API_KEY": api_key,
        "BENCH_ADMINS": f"load-tianjin:{ADMIN_PASSWORD}:tianjin:{secret}",
        "BENCH_REDIS_URL": REDIS_TEST_URL,
        "BENCH_CAPTCHA": "TEST",
    }


def _locust(locustfile: str, host: str, tmp_path: Path, users: int, seconds: int, **extra):
    """Runs a locustfile headless against `host`; its stats rows by name, and the process."""
    env = {**os.environ, **_seed(), **extra, "PYTHONPATH": str(ROOT)}
    command = [
        *(sys.executable, "-m", "locust", "-f", str(ROOT / locustfile), "--headless"),
        *("--users", str(users), "--spawn-rate", str(users), "--run-time", f"{seconds}s"),
        *("--host", host, "--csv", str(tmp_path / "smoke"), "--only-summary"),
        # Requests still in flight at the end are finished and counted: on a loaded machine a
        # few seconds may hold no complete intake otherwise.
        *("--stop-timeout", "20"),
        *("--loglevel", "WARNING"),
    ]
    finished = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    with open(tmp_path / "smoke_stats.csv", newline="") as stats:
        return {row["Name"]: row for row in csv.DictReader(stats)}, finished


@pytest.mark.parametrize("backend", ["postgresql"])
def test_every_user_type_runs_without_failures(served, tmp_path):
    rows, finished = _locust("tests/load/locustfile.py", served, tmp_path, USERS, 8)

    assert rows["Aggregated"]["Failure Count"] == "0", finished.stderr[-3000:]
    assert finished.returncode == 0, finished.stderr[-3000:]
    for user in ("applicant:", "provider:", "admin:"):
        made = sum(int(row["Request Count"]) for name, row in rows.items() if name.startswith(user))
        assert made > 0, f"no {user} requests"


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize("target", ["captcha", "verify_post", "intake"])
def test_the_capacity_targets_run_without_failures(served, tmp_path, target):
    rows, finished = _locust("tests/load/saturate.py", served, tmp_path, 4, 3, BENCH_TARGET=target)

    assert rows["Aggregated"]["Failure Count"] == "0", finished.stderr[-3000:]
    assert int(rows[target]["Request Count"]) > 0, finished.stderr[-3000:]
