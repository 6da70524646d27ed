"""Starting the portal as its commands do (issue 13, item 7): the real `gunicorn wsgi:app` and
`flask --app wsgi …` processes, their refusal of bad settings and gunicorn's addresses."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REDIS_TEST_URL

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 30

PRODUCTION_WITHOUT_PUBLIC_BASE_URL = {
    "PORTAL_ENV": "production",
    "SECRET_KEY": "production-secret",
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/nowhere",
    "REDIS_URL": REDIS_TEST_URL,
}


def process_env(tmp_path: Path, settings: dict[str, str]) -> dict[str, str]:
    """Only these settings: nothing of the test run's own environment leaks in."""
    (tmp_path / "metrics").mkdir(exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        **settings,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


COMMANDS = {
    "gunicorn": [sys.executable, "-m", "gunicorn", "wsgi:app"],
    "flask": [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_production_without_public_base_url_is_refused_in_one_line(tmp_path, command):
    env = process_env(tmp_path, {**PRODUCTION_WITHOUT_PUBLIC_BASE_URL, "PORT": str(free_port())})
    finished = subprocess.run(
        COMMANDS[command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    lines = (finished.stdout + finished.stderr).splitlines()
    assert finished.returncode != 0
    assert lines == ["portal refuses to start: PORTAL_ENV=production needs PUBLIC_BASE_URL"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("setting", "value"), [("METRICS_ALLOW", "prometheus"), ("SMS_BACKEND", "pigeon")]
)
def test_a_bad_setting_is_named_in_one_line(tmp_path, command, setting, value):
    bad = {setting: value, "SECRET_KEY": "startup-test", "PORT": str(free_port())}
    env = process_env(tmp_path, bad)
    finished = subprocess.run(
        COMMANDS[command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    lines = (finished.stdout + finished.stderr).splitlines()
    assert finished.returncode != 0
    assert len(lines) == 1
    assert lines[0].startswith("portal refuses to start: ")
    assert setting in lines[0]


def test_a_gunicorn_worker_refused_stops_gunicorn_instead_of_restarting(tmp_path):
    """Without gunicorn.conf.py's check in the master, the worker's refusal still ends it."""
    (tmp_path / "empty.conf.py").write_text("")
    env = process_env(tmp_path, PRODUCTION_WITHOUT_PUBLIC_BASE_URL)
    command = [*COMMANDS["gunicorn"], "-c", str(tmp_path / "empty.conf.py")]
    finished = subprocess.run(
        [*command, "-b", f"127.0.0.1:{free_port()}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    output = finished.stdout + finished.stderr
    assert finished.returncode == 4  # gunicorn's "App failed to load"
    assert output.count("portal refuses to start: PORTAL_ENV=production needs PUBLIC_BASE_URL") == 1
    assert "Traceback" not in output


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="this host has no IPv6 loopback")
def test_gunicorn_listens_on_ipv4_and_ipv6(tmp_path):
    port = free_port()
    settings = {
        "PORT": str(port),
        "GUNICORN_WORKERS": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
        "REDIS_URL": REDIS_TEST_URL,  # no in-process sweep thread on an unmigrated database
        "SECRET_KEY": "startup-test",
        "SMS_FILE_PATH": str(tmp_path / "sms.jsonl"),
    }
    with open(tmp_path / "gunicorn.log", "w") as log:
        server = subprocess.Popen(
            COMMANDS["gunicorn"], cwd=ROOT, env=process_env(tmp_path, settings),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        urls = [f"http://127.0.0.1:{port}/healthz", f"http://[::1]:{port}/healthz"]
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _answers(urls[0]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [_answers(url) for url in urls] == [True, True], (
            tmp_path / "gunicorn.log"
        ).read_text()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_the_app_built_by_wsgi_is_out_of_the_collectors_reach(tmp_path):
    """gc.freeze() after the app is built (docs/performance.md, session 8): a full collection
    then walks only what requests leave, not the ~170,000 start-up objects."""
    settings = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
        "REDIS_URL": REDIS_TEST_URL,
    }
    finished = subprocess.run(
        [sys.executable, "-c", "import gc, wsgi; print(gc.get_freeze_count())"],
        cwd=ROOT, env=process_env(tmp_path, settings), capture_output=True, text=True,
        timeout=STARTUP_SECONDS,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert int(finished.stdout) > 100_000
