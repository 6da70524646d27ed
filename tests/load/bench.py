"""The benchmark of issue 6: starts the production stack, loads it with locust, writes
docs/performance.md and docs/performance.png, and stops everything it started.

    .venv/bin/python -m tests.load.bench [--duration 60] [--users 100]

The stack: a fresh PostgreSQL database, Redis db 14, `flask db upgrade`, gunicorn with
gunicorn.conf.py (production settings, rate limits off, a fixed captcha answer: see
tests/load/bench_app.py), RQ workers, the fake SMS gateway. In the same run a bare Flask
"hello" (tests/load/hello.py) on the same gunicorn settings is measured as the yardstick,
and every number is given as a ratio to it.
"""

import argparse
import csv
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import psycopg
import requests
from redis import Redis
from rq import Queue
from rq.registry import StartedJobRegistry

from portal import captchas
from tests.load import postgres
from tests.load.cpu_meter import Meter
from tests.load.data import filing_body
from tests.load.gateway import ARRIVALS
from tests.stack import answers, gunicorn, started, wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATABASE = "portal_bench"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
# BENCH_PORT_BASE moves the three ports, so two benches can run on one machine.
_PORT_BASE = int(os.environ.get("BENCH_PORT_BASE", "8100"))
PORTAL_PORT, HELLO_PORT, GATEWAY_PORT = _PORT_BASE + 1, _PORT_BASE + 2, _PORT_BASE + 3
PROVINCES = ("tianjin", "gansu", "hainan", "zhejiang", "sichuan")
# A TOTP code is good once, so each admin user of the mixed run signs in to an account of its
# own: enough for 20 admin users (a nineteenth of the users: 380 users).
ADMINS_PER_PROVINCE = 4
ADMIN_PASSWORD = "Bench-password-" + secrets.token_hex(4)
# Single routes measured at saturation, beside the yardstick.
CAPACITY_TARGETS = ("healthz", "verify_page", "captcha", "verify_post", "intake", "poll")
# Issue 14's targets: req/s at saturation as a share of the yardstick's.
RATIO_TARGETS = {"verify_page": 0.30, "verify_post": 0.15, "intake": 0.10, "captcha": 0.50}
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
HELLO_AFTER = "hello (after the routes)"


def stack_env(database_url: str, metrics_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PORTAL_ENV": "production",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{PORTAL_PORT}",
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "SMS_BACKEND": "http",
        "SMS_HTTP_URL": f"http://127.0.0.1:{GATEWAY_PORT}/sms",
        "RATELIMIT_ENABLED": "false",
        "BENCH_CAPTCHA": "TEST",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "LOG_FORMAT": "json",
    }


def seed(env: dict[str, str]) -> dict[str, str]:
    """A provider and `ADMINS_PER_PROVINCE` admins per province, in the benchmark's database."""
    code = (
        "import json\n"
        "from portal import accounts, create_app, providers\n"
        "from portal.clock import utcnow\n"
        "from portal.extensions import db\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    _, key = providers.create('压测接入商', None, utcnow())\n"
        "    secrets = {}\n"
        f"    for slug in {PROVINCES!r}:\n"
        f"        for n in range({ADMINS_PER_PROVINCE}):\n"
        f"            name = f'bench-{{slug}}-{{n}}'\n"
        f"            admin = accounts.create(name, {ADMIN_PASSWORD!r}, slug, utcnow())\n"
        "            secrets[name] = (slug, accounts.enrol_two_factor(admin, utcnow()).secret)\n"
        "    db.session.commit()\n"
        "print(json.dumps([key, secrets]))\n"
    )
    seeded = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    )
    key, totp_secrets = json.loads(seeded.stdout.strip().splitlines()[-1])
    admins = ",".join(
        f"{name}:{ADMIN_PASSWORD}:{slug}:{secret}" for name, (slug, secret) in totp_secrets.items()
    )
    return {"BENCH_API_KEY": key, "BENCH_ADMINS": admins, "BENCH_REDIS_URL": REDIS_URL}


def seed_filings(base: str, api_key: str, count: int) -> str:
    """Filings through the API (their texts reach the gateway's inbox); returns one id."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {api_key}"
    filing_id = ""
    for index in range(count):
        body = filing_body("new_filing" if index % 3 else "new_website")
        response = session.post(f"{base}/api/v1/filings", json=body, timeout=10)
        response.raise_for_status()
        filing_id = response.json()["id"]
    return filing_id


def fill_captcha_pool(base: str, size: int, seconds: float = 30) -> None:
    """Open one page (it asks the workers for images), then wait for the pool to fill."""
    if not size:
        return
    requests.get(f"{base}/tianjin/verify", timeout=10)
    redis = Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + seconds
    while redis.llen("captcha:pool:test") < size - 10 and time.monotonic() < deadline:
        time.sleep(0.5)
        if not redis.exists(captchas.REFILL_LOCK):
            requests.get(f"{base}/tianjin/verify", timeout=10)


def settle(seconds: float = 180) -> None:
    """Waits until the workers have nothing left to do (the seeded filings' texts, the captcha
    pool's refill, the texts of the run before), for up to `seconds`: a run measured beside
    that work would carry the cost of what came before it."""
    redis = Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        queues = Queue.all(connection=redis)
        busy = sum(queue.count + StartedJobRegistry(queue=queue).count for queue in queues)
        if not busy and not redis.exists(captchas.REFILL_LOCK):
            return
        time.sleep(0.5)
    print(f"the workers were still busy after {seconds:.0f} s", flush=True)


def submit_at_rate(base: str, api_key: str, rate: int, seconds: int) -> dict:
    """Filings through the API at `rate` a second for `seconds`: when it began (epoch), the
    rate offered, how many were accepted (201) and refused."""
    local = threading.local()
    began = time.time()

    def submit(index: int) -> int:
        time.sleep(max(0.0, began + index / rate - time.time()))
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["Authorization"] = f"Bearer {api_key}"
        body = filing_body("new_filing")
        return local.session.post(f"{base}/api/v1/filings", json=body, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(submit, range(rate * seconds)))
    return {
        "began": began,
        "rate": rate,
        "seconds": seconds,
        "offered": len(statuses) / (time.time() - began),
        "accepted": statuses.count(201),
        "refused": len(statuses) - statuses.count(201),
    }


def accepted_since(database_url: str, began: float) -> dict[str, float]:
    """message id → when the intake accepted it (its clock), for the first texts since `began`."""
    with psycopg.connect(database_url) as connection:
        return dict(
            connection.execute(
                "SELECT 'sms-' || id, extract(epoch FROM created_at) FROM sms_messages"
                " WHERE kind = 'initial' AND created_at >= to_timestamp(%s) AT TIME ZONE 'UTC'",
                (began,),
            ).fetchall()
        )


def latency(accepted: dict[str, float], arrived: dict[str, float]) -> dict:
    """From acceptance to the gateway, over the texts that arrived."""
    times = sorted(arrived[key] - float(accepted[key]) for key in accepted if key in arrived)
    return {
        "texts": len(accepted),
        "arrived": len(times),
        "p50": statistics.median(times) if times else 0,
        "p99": times[int(len(times) * 0.99)] if times else 0,
        "max": times[-1] if times else 0,
    }


def sms_latency(base: str, api_key: str, database_url: str, rate: int, seconds: int) -> dict:
    """Filings through the API at `rate` a second for `seconds`; for each of their texts, the
    time from its acceptance (the intake's clock, a few ms before the 201) to the gateway."""
    redis = Redis.from_url(REDIS_URL)
    redis.delete(ARRIVALS)
    submitted = submit_at_rate(base, api_key, rate, seconds)
    accepted = accepted_since(database_url, submitted["began"])
    arrived: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while len(arrived) < len(accepted) and time.monotonic() < deadline:
        time.sleep(0.5)
        for entry in redis.lrange(ARRIVALS, 0, -1):
            message_id, at = entry.decode().split()
            arrived.setdefault(message_id, float(at))
    return {**submitted, **latency(accepted, arrived)}


def locust(
    locustfile: str, host: str, users: int, seconds: int, prefix: Path, env: dict[str, str]
) -> list[dict]:
    command = [
        *(str(BIN / "locust"), "-f", str(ROOT / locustfile), "--headless", "--only-summary"),
        *("--users", str(users), "--spawn-rate", str(max(users // 5, 1))),
        *("--run-time", f"{seconds}s", "--host", host, "--csv", str(prefix)),
        *("--loglevel", "WARNING", "--stop-timeout", "5"),
    ]
    subprocess.run(command, env=env, cwd=ROOT, check=False, capture_output=True)
    with open(f"{prefix}_stats.csv", newline="") as stats:
        return list(csv.DictReader(stats))


def row_numbers(row: dict) -> dict[str, float]:
    return {
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "rps": float(row["Requests/s"]),
        "p50": float(row["50%"] or 0),
        "p95": float(row["95%"] or 0),
        "p99": float(row["99%"] or 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds of the mixed run")
    parser.add_argument("--users", type=int, default=100, help="users of the mixed run")
    parser.add_argument("--capacity-seconds", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    parser.add_argument(
        "--portal-env", action="append", default=[], metavar="NAME=VALUE",
        help="extra environment of the portal (e.g. CAPTCHA_POOL_SIZE=0 for a before run)",
    )  # fmt: skip
    parser.add_argument("--worker-class", default="", help="gunicorn worker class to compare")
    parser.add_argument("--targets", default=",".join(CAPACITY_TARGETS))
    parser.add_argument("--skip-mixed", action="store_true")
    parser.add_argument(
        "--latency-seconds", type=int, default=30,
        help="seconds of 50 submissions/s for the text latency (0: skip)",
    )  # fmt: skip
    postgres.add_option(parser)
    args = parser.parse_args()
    postgres.on_fresh_database(args, DATABASE, run)


def run(args, database_url: str) -> None:

    work = Path(os.environ.get("BENCH_WORKDIR") or ROOT / "instance" / "bench")
    work.mkdir(parents=True, exist_ok=True)
    metrics_dir = work / "metrics"
    metrics_dir.mkdir(exist_ok=True)
    Redis.from_url(REDIS_URL).flushdb()
    env = stack_env(database_url, metrics_dir)
    env.update(setting.split("=", 1) for setting in args.portal_env)
    if args.worker_class:
        env["GUNICORN_WORKER_CLASS"] = args.worker_class
    flask = [str(BIN / "flask"), "--app", "wsgi"]
    subprocess.run([*flask, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
    bench_env = {**env, **seed(env)}
    portal = f"http://127.0.0.1:{PORTAL_PORT}"
    hello = f"http://127.0.0.1:{HELLO_PORT}"
    results: dict[str, dict] = {}
    with ExitStack() as stack:
        gateway = [sys.executable, "-m", "tests.load.gateway", "--port", str(GATEWAY_PORT)]
        fake_gateway = stack.enter_context(
            started([*gateway, "--redis", REDIS_URL], env, work / "gateway.log")
        )
        workers = [
            stack.enter_context(started([*flask, "worker"], env, work / f"worker-{number}.log"))
            for number in range(2)
        ]
        portal_env, hello_env = dict(env), dict(env)
        portal_server = stack.enter_context(
            started(gunicorn("tests.load.bench_app:app", PORTAL_PORT, portal_env), portal_env,
                    work / "gunicorn.log")
        )  # fmt: skip
        hello_server = stack.enter_context(
            started(gunicorn("tests.load.hello:app", HELLO_PORT, hello_env), hello_env,
                    work / "hello.log")
        )  # fmt: skip
        meter = Meter({
            "portal": [portal_server.pid], "yardstick": [hello_server.pid],
            "RQ workers": [worker.pid for worker in workers], "gateway": [fake_gateway.pid],
        })  # fmt: skip
        wait_for(lambda: answers(f"{portal}/readyz"), "the portal", work / "gunicorn.log")
        wait_for(lambda: answers(f"{hello}/"), "the yardstick", work / "hello.log")
        bench_env["BENCH_FILING_ID"] = seed_filings(portal, bench_env["BENCH_API_KEY"], 200)
        fill_captcha_pool(portal, int(env.get("CAPTCHA_POOL_SIZE") or 2000))

        capacity_users = 32

        def yardstick(name: str) -> None:
            settle()
            print(f"yardstick: {name}", flush=True)
            meter.start()
            rows = locust("tests/load/saturate.py", hello, capacity_users, args.capacity_seconds,
                          work / name, {**bench_env, "BENCH_TARGET": "hello"})  # fmt: skip
            results[name] = {**row_numbers(rows[-1]), "cpu": meter.spent()}

        yardstick("hello")
        for target in filter(None, args.targets.split(",")):
            settle()
            print(f"capacity: {target}", flush=True)
            meter.start()
            rows = locust("tests/load/saturate.py", portal, capacity_users, args.capacity_seconds,
                          work / target, {**bench_env, "BENCH_TARGET": target})  # fmt: skip
            spent = meter.spent()
            for row in rows:
                if row["Name"] == target:
                    results[target] = {**row_numbers(row), "cpu": spent}
        yardstick(HELLO_AFTER)
        latency = None
        if args.latency_seconds:
            print(f"texts: 50 submissions/s for {args.latency_seconds} s", flush=True)
            latency = sms_latency(portal, bench_env["BENCH_API_KEY"], database_url, 50,
                                  args.latency_seconds)  # fmt: skip
        mixed = []
        if not args.skip_mixed:
            print(f"mixed: {args.users} users for {args.duration} s", flush=True)
            mixed = locust("tests/load/locustfile.py", portal, args.users, args.duration,
                           work / "mixed", bench_env)  # fmt: skip
        sms_received = int(Redis.from_url(REDIS_URL).get("bench:received") or 0)
    write_report(Path(args.out), args, results, latency, mixed, sms_received)
    print(f"wrote {args.out}")


def _options(args) -> str:
    """The options that shaped the report, as the command line gives them."""
    if args.skip_mixed:
        return f"--capacity-seconds {args.capacity_seconds} --skip-mixed"
    return f"--duration {args.duration} --users {args.users}"


def _ratio(value: float, yardstick: float) -> str:
    return f"{value / yardstick:.2f}×" if yardstick else "–"


def write_report(
    out: Path, args, capacity: dict, latency: dict | None, mixed: list[dict], sms: int
) -> None:
    # The faster of the two yardstick runs, before and after the routes: the stricter ratio.
    hello = max(
        capacity["hello"], capacity.get(HELLO_AFTER, capacity["hello"]), key=lambda row: row["rps"]
    )
    lines = [
        BEGIN,
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores"
        f" (gunicorn, load generator and services on the same machine), by"
        f" `.venv/bin/python -m tests.load.bench {_options(args)}`"
        f" (gunicorn {args.worker_class or 'as gunicorn.conf.py sets it'};"
        f" portal environment extra: {', '.join(args.portal_env) or 'none'}).",
        "",
        f"### Capacity: one route at a time, 32 users, no wait, {args.capacity_seconds} s each",
        "",
        "Hello is run before and after the routes; every run starts once the workers are idle"
        " (a route's worker CPU is what they did during its run); × hello is against the faster"
        " of the two hellos.",
        "",
        "| route | req/s | × hello | p50 ms | p95 ms | p99 ms | p50 × hello | failures |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in capacity.items():
        lines.append(
            f"| {name} | {row['rps']:.0f} | {_ratio(row['rps'], hello['rps'])} | {row['p50']:.0f}"
            f" | {row['p95']:.0f} | {row['p99']:.0f} | {_ratio(row['p50'], hello['p50'])}"
            f" | {row['failures']} |"
        )
    lines += cpu_lines(capacity)
    lines += ["", "| target | req/s × hello | wanted | met? |", "|---|---:|---:|---|"]
    for name, wanted in RATIO_TARGETS.items():
        if name in capacity:
            ratio = capacity[name]["rps"] / hello["rps"]
            met = "yes" if ratio >= wanted else "**no**"
            lines.append(f"| {name} | {ratio:.2f}× | ≥ {wanted:.2f}× | {met} |")
    if latency:
        lines += [
            "",
            f"### Texts: {latency['rate']} submissions/s through the API for {latency['seconds']} s,"
            " two `flask worker`s",
            "",
            f"Offered {latency['offered']:.1f} submissions/s: {latency['accepted']} accepted,"
            f" {latency['refused']} refused. Of their {latency['texts']} texts, {latency['arrived']}"
            " reached the gateway; from acceptance to the gateway call:"
            f" p50 {latency['p50'] * 1000:.0f} ms, p99 {latency['p99'] * 1000:.0f} ms,"
            f" max {latency['max'] * 1000:.0f} ms.",
        ]
    if mixed:
        lines += [
            "",
            f"### Mixed run: {args.users} users (applicants 14 : providers 4 : admins 1),"
            f" {args.duration} s",
            "",
            "| endpoint | requests | req/s | × hello req/s | p50 ms | p95 ms | p99 ms |"
            " p95 × hello p95 | failures |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    for raw in mixed:
        row = row_numbers(raw)
        name = raw["Name"] if raw["Name"] != "Aggregated" else "**all**"
        lines.append(
            f"| {name} | {row['requests']} | {row['rps']:.1f} | {_ratio(row['rps'], hello['rps'])}"
            f" | {row['p50']:.0f} | {row['p95']:.0f} | {row['p99']:.0f}"
            f" | {_ratio(row['p95'], hello['p95'])} | {row['failures']} |"
        )
    lines += ["", f"Texts the fake gateway received during the run: {sms}.", "",
              "![latency by endpoint](performance.png)", END]  # fmt: skip
    text = out.read_text() if out.exists() else "# Performance\n\n" + BEGIN + "\n" + END + "\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    out.write_text(head + "\n".join(lines) + tail)
    plot(out.with_suffix(".png"), capacity, mixed)


def cpu_lines(capacity: dict) -> list[str]:
    """Where each capacity run's CPU went, per request answered (tests/load/cpu_meter.py)."""
    parts = list(next(iter(capacity.values()))["cpu"].parts)
    lines = [
        "",
        "CPU per request of each run, in ms, by every part of the stack (locust's requests"
        " include those it made once per user); cores busy: the share of the machine's"
        f" {os.cpu_count()} cores all of them used during the run.",
        "",
        f"| route | {' | '.join(parts)} | all | cores busy |",
        "|---|" + "---:|" * (len(parts) + 2),
    ]
    for name, row in capacity.items():
        spent, requests = row["cpu"], max(row["requests"], 1)
        per_request = spent.per_request_ms(requests)
        cells = " | ".join(f"{per_request[part]:.2f}" for part in parts)
        total = sum(per_request.values())
        lines.append(f"| {name} | {cells} | {total:.2f} | {spent.busy():.0%} |")
    return lines


def plot(path: Path, capacity: dict, mixed: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (left, right) = pyplot.subplots(1, 2, figsize=(14, 6))
    names = list(capacity)
    left.bar(names, [capacity[name]["rps"] for name in names], color="tab:blue")
    left.set_title("Capacity, one route at a time (req/s)")
    left.tick_params(axis="x", rotation=30)
    rows = [row for row in mixed if row["Name"] != "Aggregated"]
    labels = [row["Name"].split(": ", 1)[-1] for row in rows]
    positions = range(len(rows))
    for offset, key in ((-0.25, "50%"), (0, "95%"), (0.25, "99%")):
        right.barh([p + offset for p in positions], [float(r[key] or 0) for r in rows],
                   height=0.25, label=f"p{key[:-1]}")  # fmt: skip
    right.set_yticks(list(positions), labels, fontsize=7)
    right.set_xscale("log")
    right.set_xlabel("ms")
    right.set_title("Mixed run latency by endpoint")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
