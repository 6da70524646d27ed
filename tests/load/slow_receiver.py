"""Acceptance → gateway at 50 filings/s for 30 s while a webhook receiver takes 9 s to answer
each event, beside the same with a receiver that answers at once, in the same run (issue 11).

    .venv/bin/python -m tests.load.slow_receiver [--rate 50] [--seconds 30] [--events 2]

The stack is tests/stack.py's (gunicorn, a worker on `sms` and one on all three queues, the
cron, a private Redis, the local gateway and receiver), on a PostgreSQL of its own
(tests/load/postgres.py); then, for comparison, the slow receiver again with both workers on
all three queues. The events: `--events` filings a second, submitted beforehand, are
verified during each run; each moves to review and its status change is posted to the
receiver. The texts' times are bench.py's: from the intake's clock to the gateway's arrival.
Writes its section of docs/performance.md.
"""

import argparse
import os
import threading
import time
from pathlib import Path

from tests.load import postgres
from tests.load.bench import accepted_since, latency, submit_at_rate
from tests.load.data import filing_body
from tests.stack import ROOT, Stack, production_stack

DATABASE = "portal_bench_receiver"
BEGIN, END = "<!-- slow-receiver:begin -->", "<!-- slow-receiver:end -->"
TEXTS_SECONDS = 60
ALL_QUEUES = {"worker-1": ["worker"], "worker-2": ["worker"], "cron": ["cron"]}


def verify_paced(stack: Stack, bodies: list[dict], per_second: float) -> None:
    """Enter both codes of each filing, `per_second` filings a second."""
    codes = stack.codes()
    began = time.time()
    for index, body in enumerate(bodies):
        time.sleep(max(0.0, began + index / per_second - time.time()))
        for person in (body["entity"]["principal"], body["websites"][0]["principal"]):
            stack.verify(body["province"], person["phone"], codes[person["phone"]])


def to_verify(stack: Stack, count: int) -> list[dict]:
    """Filings whose texts have reached the gateway, ready to be verified."""
    bodies = [filing_body("new_filing") for _ in range(count)]
    filing_ids = [stack.submit(body)["id"] for body in bodies]
    stack.wait_for_texts(stack.message_ids(filing_ids), TEXTS_SECONDS)
    return bodies


def measure(stack: Stack, args, receiver_seconds: float) -> dict:
    verified = to_verify(stack, int(args.events * args.seconds))
    stack.receiver.delay = receiver_seconds
    posts_before = len(stack.receiver.requests)
    verifying = threading.Thread(target=verify_paced, args=(stack, verified, args.events))
    verifying.start()
    submitted = submit_at_rate(stack.base_url, stack.api_key, args.rate, args.seconds)
    verifying.join()
    accepted = accepted_since(stack.env["DATABASE_URL"], submitted["began"])
    arrived = stack.wait_for_texts(set(accepted), TEXTS_SECONDS)
    posts = len(stack.receiver.requests) - posts_before
    stack.receiver.delay = 0
    first = {key: times[0] for key, times in arrived.items()}
    copies = sum(len(times) - 1 for times in arrived.values())
    return {**submitted, **latency(accepted, first), "posts": posts, "copies": copies}


def measured(stack: Stack, args, label: str, receiver_seconds: float) -> dict:
    print(f"receiver {label}: {args.rate} filings/s for {args.seconds} s", flush=True)
    result = measure(stack, args, receiver_seconds)
    print(result, flush=True)
    return result


def run(args, database_url: str) -> None:
    work = Path(os.environ.get("BENCH_WORKDIR") or ROOT / "instance" / "bench-slow-receiver")
    slow = f"{args.receiver_seconds:g} s"
    args.load_before = os.getloadavg()[0]
    results = {}
    with production_stack(work / "deploy", database_url) as stack:
        for label, seconds in (("answers at once", 0.0), (slow, args.receiver_seconds)):
            results[label] = measured(stack, args, label, seconds)
    # What the worker on `sms` alone is for: the same slow receiver, both workers on all queues.
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    other_database = postgres.fresh_database(admin_url, f"{DATABASE}_all")
    with production_stack(work / "all-queues", other_database, ALL_QUEUES) as stack:
        label = f"{slow}, both workers on all queues"
        results[label] = measured(stack, args, label, args.receiver_seconds)
    write_report(Path(args.out), args, results)
    print(f"wrote {args.out}")


def write_report(out: Path, args, results: dict[str, dict]) -> None:
    baseline, slow, _ = results.values()
    ratio = slow["p99"] / baseline["p99"] if baseline["p99"] else 0
    lines = [
        BEGIN,
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores"
        f" (load average before the run {args.load_before:.1f}), by `.venv/bin/python -m"
        f" tests.load.slow_receiver --rate {args.rate} --seconds {args.seconds} --events"
        f" {args.events:g}`: {args.events:g} filings verified a second during each run (their"
        " status changes posted to the receiver); a worker on `sms` and one on all three queues,"
        " as docs/deploy.md advises, and for comparison two workers on all three.",
        "",
        "| receiver | submissions/s | accepted | refused | texts | reached the gateway |"
        " p50 ms | p99 ms | max ms | posts to the receiver |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, row in results.items():
        lines.append(
            f"| {label} | {row['offered']:.1f} | {row['accepted']} | {row['refused']}"
            f" | {row['texts']} | {row['arrived']} | {row['p50'] * 1000:.0f}"
            f" | {row['p99'] * 1000:.0f} | {row['max'] * 1000:.0f} | {row['posts']} |"
        )
    met = "met" if slow["p99"] < 1 else "**not met**"
    copies = sum(row["copies"] for row in results.values())
    lines += [
        "",
        f"p99 with the slow receiver (docs/deploy.md's workers): {ratio:.2f}× the baseline's;"
        f" target p99 < 1 s: {met}. Texts that reached the gateway twice: {copies}.",
        END,
    ]
    text = out.read_text()
    if BEGIN in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
    else:
        head, tail = text.rstrip("\n") + "\n\n", "\n"
    out.write_text(head + "\n".join(lines) + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50, help="filings a second")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--events", type=float, default=2, help="filings verified a second")
    parser.add_argument("--receiver-seconds", type=float, default=9)
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    postgres.add_option(parser)
    args = parser.parse_args()
    postgres.on_fresh_database(args, DATABASE, run)


if __name__ == "__main__":
    main()
