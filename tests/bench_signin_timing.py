"""How long a failed console sign-in takes on each path: the figures in docs/security.md.

Not a test (a timed test would be flaky); run it by hand:

    .venv/bin/python -m tests.bench_signin_timing [--rounds 100] [--backend sqlite|postgresql]

It makes one account with the real password hash (scrypt) and an enrolled TOTP secret,
then times whole POSTs of the sign-in form, in a shuffled order, for an unknown name, a
known name with a wrong password, the right password with a wrong code, and a try from
an address that must wait. Every one answers the same message with 401. Each try but
the waiting ones comes from an address of its own, so the throttle does not interfere.
"""

import argparse
import itertools
import json
import os
import random
import tempfile
import time
from contextlib import contextmanager
from datetime import timedelta

import sqlalchemy as sa
from flask_migrate import upgrade

from portal import accounts, create_app
from portal.clock import utcnow
from portal.extensions import db
from portal.messages import CONSOLE
from portal.models import SigninThrottle
from tests.admins import PASSWORD
from tests.bench_verify_timing import summary
from tests.conftest import pg_database

USERNAME = "bench-admin"
WAITING_ADDRESS = "192.0.2.1"


@contextmanager
def scratch_database(backend: str):
    """A database of this run's own: other benchmarks may be running on the machine."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.sqlite3"
        return
    with pg_database(f"portal_bench_signin_{os.getpid()}") as url:
        yield url


def cases() -> dict[str, dict[str, str]]:
    return {
        "unknown name": {"username": "nobody-here", "password": PASSWORD, "otp": "123456"},
        "wrong password": {"username": USERNAME, "password": "Wrong password 1", "otp": "123456"},
        "wrong code": {"username": USERNAME, "password": PASSWORD, "otp": "123456"},
        "address must wait": {"username": USERNAME, "password": PASSWORD, "otp": "123456"},
    }


def time_requests(client, values: dict[str, dict[str, str]], rounds: int) -> dict[str, list]:
    addresses = (f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}" for n in itertools.count(1))
    order = [name for name in values for _ in range(rounds)]
    random.shuffle(order)
    times: dict[str, list[float]] = {name: [] for name in values}
    for name in order:
        address = WAITING_ADDRESS if name == "address must wait" else next(addresses)
        page = client.get("/admin/login").get_data(as_text=True)
        token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
        data = {"csrf_token": token, **values[name]}
        start = time.perf_counter()
        response = client.post("/admin/login", data=data, environ_base={"REMOTE_ADDR": address})
        times[name].append(time.perf_counter() - start)
        assert response.status_code == 401, name
        assert CONSOLE["sign_in_failed"] in response.get_data(as_text=True), name
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    args = parser.parse_args()
    with scratch_database(args.backend) as url:
        app = create_app(
            {"DATABASE_URL": url, "SECRET_KEY": "bench", "REDIS_URL": "", "SMS_BACKEND": "console"}
        )
        with app.app_context():
            upgrade()
            admin = accounts.create(USERNAME, PASSWORD, "tianjin", utcnow())
            accounts.enrol_two_factor(admin, utcnow())
            db.session.commit()
            client = app.test_client()
            for _ in range(3):
                accounts.sign_in(USERNAME, "wrong", "", WAITING_ADDRESS, utcnow())
            # Three failures: the waiting address is held off for the whole run.
            db.session.execute(
                sa.update(SigninThrottle).values(next_try_at=utcnow() + timedelta(hours=1))
            )
            db.session.commit()
            time_requests(client, cases(), 5)  # warm up
            report = {
                "backend": args.backend,
                "rounds": args.rounds,
                "request": summary(time_requests(client, cases(), args.rounds)),
            }
            db.session.remove()
            db.engine.dispose()
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
