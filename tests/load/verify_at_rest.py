"""Does sealing personal data slow the applicant down? Verify POST under `standard`, `sm`
and the code before the suites (Fernet, phones in clear), in one run (docs/performance.md).

    .venv/bin/python -m tests.load.verify_at_rest [--rounds 300] [--repeats 3]
        [--backend sqlite|postgresql] [--baseline COMMIT]

The baseline is the tree of COMMIT (default: where this branch left main), exported with
`git archive` into a temporary folder. Each variant runs in a process of its own, with that
tree first on the import path; the variants take turns, `--repeats` times, so a busy
moment of the shared machine falls on all of them. A process builds the app on a fresh
database, submits `--rounds` filings (their codes go to the `file` SMS backend), then
times the whole verify POST (CSRF, captcha, lookup, the verified phone, a new challenge,
commit, page) of each filing's first phone, after a warm-up on other filings.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PHONE, ID_LAST6 = "13900000001", "011239"
WARM_UP = 30


def measure(backend: str, rounds: int) -> dict[str, list[float]]:
    """In the child: seconds per verify POST, wall clock and this process's CPU time (the
    shared machine's load stretches the first; the second leaves out the time waited)."""
    from flask_migrate import upgrade

    from portal import create_app, providers
    from portal.clock import utcnow
    from portal.extensions import db
    from tests.bench_verify_timing import scratch_database
    from tests.factories import CAPTCHA, form_fields, new_filing_body

    with scratch_database(backend) as url, tempfile.TemporaryDirectory() as folder:
        sms_file = Path(folder) / "sms.jsonl"
        app = create_app(
            {
                "DATABASE_URL": url,
                "SECRET_KEY": "bench",
                "SMS_BACKEND": "file",
                "SMS_FILE_PATH": str(sms_file),
                "CAPTCHA_TEST_ANSWER": CAPTCHA,
                "REDIS_URL": "",
                "RATELIMIT_ENABLED": "false",
            }
        )
        with app.app_context():
            upgrade()
            _, api_key = providers.create("bench", None, utcnow())
            db.session.commit()
            client = app.test_client()
            headers = {"Authorization": f"Bearer {api_key}"}
            for number in range(rounds + WARM_UP):
                body = new_filing_body(f"BENCH-{number}")
                assert client.post("/api/v1/filings", json=body, headers=headers).status_code == 201
            texts = [json.loads(line) for line in sms_file.read_text().splitlines()]
            codes = [re.search(r"\d{6}", t["text"]).group() for t in texts if t["to"] == PHONE]
            times: dict[str, list[float]] = {"wall": [], "cpu": []}
            for code in codes:
                fields = form_fields(client.get("/tianjin/verify").get_data(as_text=True))
                data = {**fields, "captcha": CAPTCHA, "code": code, "phone": PHONE}
                data["id_last6"] = ID_LAST6
                start, cpu_start = time.perf_counter(), time.process_time()
                response = client.post("/tianjin/verify", data=data)
                times["cpu"].append(time.process_time() - cpu_start)
                times["wall"].append(time.perf_counter() - start)
                assert "您的短信核验完成" in response.get_data(as_text=True)
            crypto = time_lookup_digests(codes[0])
            db.session.remove()
            db.engine.dispose()
    return {"crypto_us": crypto} | {clock: samples[WARM_UP:] for clock, samples in times.items()}


def time_lookup_digests(code: str, count: int = 20_000) -> float:
    """µs of the keyed digests a verify POST computes (the code's, the ID's and, once phones
    are sealed, the phone's); the seals are not on its path."""
    from portal.protection import personal_data, sealing

    with_phone = hasattr(personal_data, "phone_digests")
    start = time.process_time()
    for _ in range(count):
        sealing.digests("code", code)
        personal_data.id_last6_matches("", ID_LAST6)
        if with_phone:
            personal_data.phone_digests(PHONE)
    return round((time.process_time() - start) / count * 1e6, 1)


def export(commit: str, folder: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def run_variant(tree: Path, suite: str, backend: str, rounds: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "CRYPTO_SUITE": suite}
    child = subprocess.run(
        [sys.executable, str(Path(__file__)), "--child", "--backend", backend,
         "--rounds", str(rounds)],
        cwd=tree, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert Path(report["portal"]).is_relative_to(tree), report["portal"]
    return report["times"]


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    quartiles = statistics.quantiles(ordered, n=4)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "q1_ms": round(quartiles[0] * 1000, 2),
        "q3_ms": round(quartiles[2] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--baseline", default="04de48a")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        import portal

        times = measure(args.backend, args.rounds)
        print(json.dumps({"portal": portal.__file__, "times": times}))
        return
    with tempfile.TemporaryDirectory() as folder:
        variants = {
            "before (Fernet, phones in clear)": (export(args.baseline, Path(folder)), "standard"),
            "standard": (ROOT, "standard"),
            "sm": (ROOT, "sm"),
        }
        times = {clock: {name: [] for name in variants} for clock in ("wall", "cpu")}
        crypto: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, (tree, suite) in variants.items():
                run = run_variant(tree, suite, args.backend, args.rounds)
                crypto[name].append(run.pop("crypto_us"))
                for clock, samples in run.items():
                    times[clock][name] += samples
    report: dict = {"backend": args.backend, "lookup digests, µs": crypto}
    for clock, by_variant in times.items():
        rows = {name: summary(samples) for name, samples in by_variant.items()}
        base = rows["before (Fernet, phones in clear)"]["median_ms"]
        for row in rows.values():
            row["× before"] = round(row["median_ms"] / base, 3)
        rows["sm"]["× standard"] = round(rows["sm"]["median_ms"] / rows["standard"]["median_ms"], 3)
        report[f"verify POST, {clock}"] = rows
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
