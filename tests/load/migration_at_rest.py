"""How long migration `crypto` takes to convert an existing database (docs/performance.md).

    .venv/bin/python -m tests.load.migration_at_rest [--filings 100000] [--backend sqlite|postgresql]
        [--suite standard|sm]

Loads a fresh database at revision 0003 as the portal wrote it before the suites: per
filing two verifications (phones in clear, Fernet-sealed codes) and the principals'
names and phones in its content; half the filings approved, each with a record and an
event. Then times `flask db upgrade` to the new head, and `data reseal` to the other suite
(what a suite switch costs afterwards), and prints the rows converted.
"""

import argparse
import base64
import hashlib
import hmac
import json
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask_migrate import upgrade

from portal import create_app
from portal.extensions import db
from portal.protection import resealing
from tests.conftest import pg_database

CHUNK = 5_000
NOW = datetime.now(UTC).replace(tzinfo=None)
KEY = "bench-data-key"


def fernet() -> Fernet:
    return Fernet(
        base64.urlsafe_b64encode(hmac.new(KEY.encode(), b"seal", hashlib.sha256).digest())
    )


def principal(name: str, phone: str) -> dict:
    return {
        "name": name,
        "phone": phone,
        "id_type": "resident_id",
        "id_masked": "110***********002X",
    }


def old_rows(index: int, sealer: Fernet) -> dict[str, list[dict]]:
    filing_id = uuid.uuid4().hex
    approved = index % 2 == 0
    phones = (f"139{index:08d}", f"138{index:08d}")
    domain = f"site{index}.example.cn"
    content = {
        "entity": {"name": "压测科技有限公司", "principal": principal("张三", phones[0])},
        "websites": [
            {"domain": domain, "name": "压测网", "principal": principal("李四", phones[1])}
        ],
    }
    rows = {
        "filings": [{
            "id": filing_id, "provider_id": 1, "reference": f"M-{index}", "province_slug": "tianjin",
            "type": "new_filing", "status": "approved" if approved else "pending_verification",
            "content": json.dumps(content), "created_at": NOW - timedelta(days=2), "deadline": NOW,
        }],
        "verifications": [{
            "filing_id": filing_id, "province_slug": "tianjin", "phone": phone,
            "roles": json.dumps([role]), "code_digest": uuid.uuid4().hex,
            # Live codes are unique per province: one a verification, as in a real database.
            "code_sealed": sealer.encrypt(f"{2 * index + number:06d}".encode()).decode(),
            "id_digest": "d" * 64, "id_masked": "110***********002X",
            "status": "verified" if approved else "pending", "wrong_id_count": 0, "resend_count": 0,
            "noon_resend_at": NOW, "noon_resent": False,
        } for number, (phone, role) in enumerate(zip(phones, ("entity", f"website:{domain}"), strict=True))],
        "records": [],
        "events": [],
    }  # fmt: skip
    if approved:
        rows["records"].append(
            {
                "domain": domain,
                "principal_phone": phones[1],
                "filing_id": filing_id,
                "recorded_at": NOW,
            }
        )
        rows["events"].append({
            "id": uuid.uuid4().hex, "filing_id": filing_id, "provider_id": 1,
            "type": "filing.status_changed", "occurred_at": NOW - timedelta(days=1),
            "payload": "{}", "attempts": 0,
        })  # fmt: skip
    return rows


def load(count: int) -> None:
    with db.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO providers (id, name, api_key_digest, webhook_secret, active, created_at)"
                " VALUES (1, 'bench', :digest, :secret, true, :now)"
            ),
            {"digest": "k" * 64, "secret": "old-secret", "now": NOW},
        )
    sealer = fernet()
    for start in range(0, count, CHUNK):
        batch: dict[str, list[dict]] = {
            "filings": [],
            "verifications": [],
            "records": [],
            "events": [],
        }
        for index in range(start, min(start + CHUNK, count)):
            for table, rows in old_rows(index, sealer).items():
                batch[table] += rows
        with db.engine.begin() as connection:
            for table, rows in batch.items():
                if rows:
                    names = ", ".join(rows[0])
                    values = ", ".join(f":{name}" for name in rows[0])
                    connection.execute(
                        sa.text(f"INSERT INTO {table} ({names}) VALUES ({values})"), rows
                    )


@contextmanager
def scratch(backend: str):
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/migration.sqlite3"
        return
    with pg_database("portal_migration_bench") as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--filings", type=int, default=100_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--suite", choices=["standard", "sm"], default="standard")
    args = parser.parse_args()
    with scratch(args.backend) as url:
        app = create_app(
            {
                "DATABASE_URL": url,
                "SECRET_KEY": "bench",
                "DATA_KEY": KEY,
                "CRYPTO_SUITE": args.suite,
            }
        )
        with app.app_context():
            upgrade(revision="0003")
            started = time.perf_counter()
            load(args.filings)
            loaded = time.perf_counter() - started
            started = time.perf_counter()
            upgrade()
            migrated = time.perf_counter() - started
            app.config["CRYPTO_SUITE"] = "sm" if args.suite == "standard" else "standard"
            started = time.perf_counter()
            resealed = resealing.reseal(1000)
            reseal_time = time.perf_counter() - started
            counts = {
                table: db.session.scalar(sa.text(f"SELECT count(*) FROM {table}"))
                for table in ("filings", "verifications", "records")
            }
            db.session.remove()
            db.engine.dispose()
    print(json.dumps({
        "backend": args.backend, "suite": args.suite, "rows": counts,
        "load_s": round(loaded, 1), "migration_s": round(migrated, 1),
        "migration_s_per_100k_filings": round(migrated * 100_000 / args.filings, 1),
        "reseal_to_the_other_suite_s": round(reseal_time, 1), "resealed": resealed,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
