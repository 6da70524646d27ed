"""A running portal for the browser tests and the screenshot script.

The app is built on SQLite with a fixed captcha answer, texts written to a file and no
rate limits, and served by werkzeug in a thread on 127.0.0.1 and a free port. Chromium
is Debian's (`/usr/bin/chromium`); Playwright only drives it.
"""

import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade
from playwright.sync_api import Browser, Playwright
from werkzeug.serving import WSGIRequestHandler, make_server

from portal import create_app, providers
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Filing
from tests.admins import make_admin
from tests.factories import CAPTCHA, new_filing_body

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch_chromium(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@dataclass
class LivePortal:
    app: Flask
    url: str
    sms_path: Path
    seed: dict[sa.Table, list[dict]]

    def codes(self) -> dict[str, str]:
        """The last code sent to each phone."""
        return {text["to"]: _code_in(text) for text in self._texts()}

    def links(self) -> dict[str, str]:
        """The personal link of the last text to each phone, as a path: `/tianjin/v/<token>`."""
        return {text["to"]: _link_in(text) for text in self._texts()}

    def _texts(self) -> list[dict]:
        if not self.sms_path.exists():
            return []
        return [json.loads(line) for line in self.sms_path.read_text("utf-8").splitlines()]

    def sent_codes_to(self, phone: str) -> list[str]:
        """Every code texted to `phone`, in order."""
        return [_code_in(text) for text in self._texts() if text["to"] == phone]

    def texts_to(self, phone: str) -> int:
        return len(self.sent_codes_to(phone))

    def filing_status(self, filing_id: str) -> tuple[str, str | None]:
        with self.app.app_context():
            filing = db.session.get(Filing, filing_id)
            return filing.status, filing.return_reason

    def reset(self) -> None:
        """Back to a freshly migrated database (the rollout table only) and no texts sent."""
        with self.app.app_context(), db.engine.begin() as connection:
            for table in reversed(db.metadata.sorted_tables):
                connection.execute(table.delete())
            for table, rows in self.seed.items():
                if rows:
                    connection.execute(table.insert(), rows)
        self.sms_path.write_text("", encoding="utf-8")

    def submit_filing(self, reference: str = "REF-1", **overrides) -> dict:
        """A filing through the provider API, as an access provider submits it."""
        with self.app.app_context():
            _, api_key = providers.create(f"接入商-{secrets.token_hex(3)}", None, utcnow())
            db.session.commit()
            response = self.app.test_client().post(
                "/api/v1/filings",
                json=new_filing_body(reference, **overrides),
                headers={"Authorization": f"Bearer {api_key}"},
            )
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def add_admin(self, username: str, province: str | None, enrolled: bool = True) -> None:
        """An account with tests.admins' password and, once enrolled, its TOTP secret."""
        with self.app.app_context():
            admin = make_admin(username, province, utcnow())
            if not enrolled:
                admin.totp_secret = admin.totp_enrolled_at = None
            db.session.add(admin)
            db.session.commit()


class _QuietHandler(WSGIRequestHandler):
    """No access log: a test's output shows its own failures, not every image fetched."""

    def log_request(self, *args, **kwargs) -> None:
        pass


def _code_in(text: dict) -> str:
    return re.search(r"核验码为(\d{6})", text["text"]).group(1)


def _link_in(text: dict) -> str:
    return re.search(r" https?://[^/ ]+(/[a-z]+/v/[A-Za-z0-9_-]{16}) ", text["text"]).group(1)


def portal_env(workdir: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{workdir / 'portal.sqlite3'}",
        "SECRET_KEY": "browser-test-secret",
        "SMS_BACKEND": "file",
        "SMS_FILE_PATH": str(workdir / "sms.jsonl"),
        "CAPTCHA_TEST_ANSWER": CAPTCHA,
        "REDIS_URL": "",
        "PORTAL_ENV": "development",
        "RATELIMIT_ENABLED": "false",
        # Tests send one phone several texts at once; tests/test_pacing.py keeps the limits.
        "SMS_PHONE_MIN_INTERVAL_SECONDS": "0",
        "SMS_PHONE_HOURLY": "1000",
        "SMS_PHONE_DAILY": "1000",
    }


@contextmanager
def live_portal(workdir: Path) -> Iterator[LivePortal]:
    """The portal served on 127.0.0.1 while the block runs."""
    env = portal_env(workdir)
    app = create_app(env)
    with app.app_context():
        upgrade()
        with db.engine.connect() as connection:
            seed = {
                table: [dict(row._mapping) for row in connection.execute(sa.select(table))]
                for table in db.metadata.sorted_tables
            }
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LivePortal(
            app=app,
            url=f"http://127.0.0.1:{server.server_port}",
            sms_path=Path(env["SMS_FILE_PATH"]),
            seed=seed,
        )
    finally:
        server.shutdown()
        thread.join(timeout=5)
        with app.app_context():
            db.engine.dispose()
