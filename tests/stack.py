"""The production stack, each part a process of its own, for the tests that put it under
faults (tests/test_production_faults.py) and for benchmarks.

`production_stack` runs `flask db upgrade` on the database it is given (a fresh PostgreSQL
one), a redis-server of its own, a provider made with `flask providers create` whose callback
URL is the webhook receiver, gunicorn with gunicorn.conf.py serving the portal, two `flask
worker`s (one on `sms` alone, one on all three queues, as docs/deploy.md advises) and `flask
cron`; in the caller's process, the SMS gateway (`SMS_BACKEND=http`) and the webhook receiver,
`Endpoint`s of tests/servers.py that record what arrives and when. Everything is stopped at
the end, also when the caller fails.

The portal runs with `PORTAL_ENV=development`, not production: production refuses callback
URLs on 127.0.0.1 or over http, a fixed captcha answer and session cookies over plain HTTP,
which the receiver and the tests' verify posts need. The delivery path under test (RQ, the
queues, the relay, the cron) is the same in both.
"""

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import requests
from redis import Redis
from rq import Worker

from tests.factories import CAPTCHA, form_fields
from tests.load.data import id_number_for
from tests.servers import Endpoint, RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STARTUP_SECONDS = 30
# The local gateway answers within seconds: a killed job's texts wait this + 30 s, not 210 s.
DELIVERY_JOB_SECONDS = 20
# Each pytest-xdist worker (up to five) picks ports from a part of these ranges of its own, so
# two stacks starting at once never take the same one.
_SLOT = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")) % 5
PORTAL_PORTS = range(8300 + 20 * _SLOT, 8320 + 20 * _SLOT)
REDIS_PORTS = range(6410 + 2 * _SLOT, 6412 + 2 * _SLOT)
# name → the `flask` arguments of the stack's workers and cron: docs/deploy.md's layout.
BACKGROUND = {
    "worker-sms": ["worker", "--queues", "sms"],
    "worker-all": ["worker"],
    "cron": ["cron"],
}
_CODE = re.compile(r"核验码为(\d{6})")


def start(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """A process in a session of its own (so `stopped` reaches its children), output to a log."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def start_flask(env: dict[str, str], arguments: list[str], log_path: Path) -> subprocess.Popen:
    return start([sys.executable, "-m", "flask", "--app", "wsgi", *arguments], env, log_path)


def stopped(process: subprocess.Popen) -> None:
    """SIGTERM to the process and its children; SIGKILL if they outstay 15 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def started(command: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    process = start(command, env, log_path)
    try:
        yield process
    finally:
        stopped(process)


def gunicorn(app: str, port: int, env: dict[str, str]) -> list[str]:
    """The command serving `app` with gunicorn.conf.py on 127.0.0.1:`port` (set in `env`)."""
    env["PORT"], env["HOST"] = str(port), "127.0.0.1"
    return [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), app]


def wait_for(
    condition: Callable[[], object], what: str, log_path: Path, limit: float = STARTUP_SECONDS
):
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"{what}:\n{log_path.read_text(errors='replace')}"
        time.sleep(0.05)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class Stack:
    folder: Path
    env: dict[str, str]
    base_url: str
    api_key: str
    redis: RedisServer
    gateway: Endpoint
    receiver: Endpoint
    background: dict[str, list[str]] = field(default_factory=lambda: BACKGROUND)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def start(self, name: str) -> None:
        """Start a worker or the cron (again, after it was killed: a supervisor's restart)."""
        self.processes[name] = start_flask(self.env, self.background[name], self.log(name))

    def running(self, name: str) -> bool:
        return self.processes[name].poll() is None

    def redis_client(self) -> Redis:
        return Redis(port=self.redis.port, socket_timeout=1)

    def kill(self, name: str) -> None:
        """SIGKILL to the process and its children (a worker's RQ scheduler runs in a child of
        its own, which would outlive it and keep the scheduler lock), as when its container
        dies."""
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def workers_running(self, func_name: str) -> list[str]:
        """The names of the workers running a job of that function now."""
        pids = {process.pid: name for name, process in self.processes.items()}
        found = []
        for worker in Worker.all(connection=self.redis_client()):
            job = worker.get_current_job()
            if job is not None and job.func_name == func_name and worker.pid in pids:
                found.append(pids[worker.pid])
        return found

    def submit(self, body: dict) -> dict:
        response = requests.post(
            f"{self.base_url}/api/v1/filings",
            json=body,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=30,
        )
        assert response.status_code == 201, (response.status_code, response.text)
        return response.json()

    def verify(self, province: str, phone: str, code: str) -> str:
        """Enter a code on the province's verify page, as an applicant does; the answer page."""
        session = requests.Session()
        page = session.get(f"{self.base_url}/{province}/verify", timeout=10)
        values = {"code": code, "phone": phone, "id_last6": id_number_for(phone)[-6:]}
        response = session.post(
            f"{self.base_url}/{province}/verify",
            data={**form_fields(page.text), **values, "captcha": CAPTCHA},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.text

    def texts(self, filing_ids: list[str]) -> dict[str, dict]:
        """The filings' texts by message id (`sms-<id>`, as the gateway sees it): status,
        attempts, next_attempt_at, sent_at."""
        with psycopg.connect(self.env["DATABASE_URL"]) as connection:
            cursor = connection.execute(
                "SELECT 'sms-' || m.id, m.status, m.attempts, m.next_attempt_at, m.sent_at"
                " FROM sms_messages m JOIN verifications v ON v.id = m.verification_id"
                " WHERE v.filing_id = ANY(%s)",
                (filing_ids,),
            )
            columns = [column.name for column in cursor.description][1:]
            return {row[0]: dict(zip(columns, row[1:], strict=True)) for row in cursor}

    def message_ids(self, filing_ids: list[str]) -> set[str]:
        return set(self.texts(filing_ids))

    def arrivals(self) -> dict[str, list[float]]:
        """message id → when each request carrying it reached the gateway."""
        arrived = defaultdict(list)
        for request in self.gateway.requests:
            arrived[request.json()["message_id"]].append(request.at)
        return arrived

    def codes(self) -> dict[str, str]:
        """phone → the code of the last text it was sent."""
        return {
            text["to"]: _CODE.search(text["text"]).group(1)
            for text in (request.json() for request in self.gateway.requests)
        }

    def wait_for_texts(self, message_ids: set[str], limit: float) -> dict[str, list[float]]:
        """Waits (at most `limit` s) until each of the texts has reached the gateway; the
        arrivals of those texts."""
        deadline = time.monotonic() + limit
        while not message_ids <= self.arrivals().keys() and time.monotonic() < deadline:
            time.sleep(0.1)
        return {key: times for key, times in self.arrivals().items() if key in message_ids}


def stack_env(
    database_url: str, redis: RedisServer, gateway: Endpoint, port: int, metrics: Path
) -> dict[str, str]:
    metrics.mkdir(exist_ok=True)
    return {
        "PORTAL_ENV": "development",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis.url,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "SMS_BACKEND": "http",
        "SMS_HTTP_URL": gateway.url,
        "CALLBACK_ALLOW_PRIVATE": "true",
        "CAPTCHA_TEST_ANSWER": CAPTCHA,
        "RATELIMIT_ENABLED": "false",
        "GUNICORN_WORKERS": "2",
        "DELIVERY_JOB_SECONDS": str(DELIVERY_JOB_SECONDS),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }


@contextmanager
def production_stack(
    folder: Path, database_url: str, background: dict[str, list[str]] = BACKGROUND
) -> Iterator[Stack]:
    """The stack on that (empty) database, its workers and cron as `background` says."""
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as cleanup:
        gateway = cleanup.enter_context(Endpoint(path="/sms"))
        receiver = cleanup.enter_context(Endpoint(path="/hook"))
        redis = RedisServer(folder, free_port(REDIS_PORTS))
        redis.start()
        cleanup.callback(redis.stop)
        port = free_port(PORTAL_PORTS)
        env = stack_env(database_url, redis, gateway, port, folder / "metrics")
        base_url = f"http://127.0.0.1:{port}"
        stack = Stack(folder, env, base_url, "", redis, gateway, receiver, background)
        stack.api_key = _prepare_database(env, receiver.url)
        web_env = dict(env)
        command = gunicorn("wsgi:app", port, web_env)
        stack.processes["gunicorn"] = cleanup.enter_context(
            started(command, web_env, stack.log("gunicorn"))
        )
        for name in background:
            stack.start(name)
            cleanup.callback(lambda name=name: stopped(stack.processes[name]))
        wait_for(lambda: answers(f"{stack.base_url}/readyz"), "gunicorn", stack.log("gunicorn"))
        workers = [name for name, arguments in background.items() if arguments[0] == "worker"]
        registered = lambda: len(Worker.all(connection=stack.redis_client())) == len(workers)  # noqa: E731
        wait_for(registered, "the workers", stack.log(workers[0]))
        yield stack


def _prepare_database(env: dict[str, str], callback_url: str) -> str:
    """`flask db upgrade` and `flask providers create`, as an operator runs them; the API key."""
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    run = {"cwd": ROOT, "env": {**os.environ, **env}, "capture_output": True, "text": True}
    subprocess.run([*flask, "db", "upgrade"], check=True, **run)
    created = subprocess.run(
        [*flask, "providers", "create", "故障测试接入商", "--callback-url", callback_url],
        check=True,
        **run,
    )
    return json.loads(created.stdout.strip().splitlines()[-1])["api_key"]
