"""Made-up API keys from one address (issue 13): what each costs, with the rate limits on.

    .venv/bin/python -m tests.load.api_key_flood [--requests 3000]

In-process on a fresh SQLite database, counters in memory: the answers, the SQL
statements run and the rate-limit counters left, and the time per request.
"""

import argparse
import secrets
import tempfile
import time
from collections import Counter

import sqlalchemy as sa
from flask_migrate import upgrade

from portal import create_app, providers
from portal.extensions import db


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    count = parser.parse_args().requests
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(
            {
                "DATABASE_URL": f"sqlite:///{folder}/flood.sqlite3",
                "SMS_FILE_PATH": f"{folder}/sms.jsonl",
                "SECRET_KEY": "bench",
                "REDIS_URL": "",
                "RATELIMIT_ENABLED": "true",
            }
        )
        with app.app_context():
            upgrade()
            statements: list[str] = []
            sa.event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
            client = app.test_client()
            answers: Counter[int] = Counter()
            start = time.perf_counter()
            for _ in range(count):
                key = providers.KEY_PREFIX + secrets.token_urlsafe(providers.KEY_BYTES)
                response = client.get(
                    "/api/v1/filings/x", headers={"Authorization": f"Bearer {key}"}
                )
                answers[response.status_code] += 1
            elapsed = time.perf_counter() - start
            counters = app.extensions["rate_limiter"].limiter.storage.storage
            print(
                f"{count} made-up keys: {elapsed / count * 1e6:.0f} µs a request, "
                f"answers {dict(sorted(answers.items()))}, {len(statements)} SQL statements, "
                f"{len(counters)} rate-limit counters"
            )


if __name__ == "__main__":
    main()
