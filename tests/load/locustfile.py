"""Users who behave like the portal's real ones (issue 6).

- Applicants (most of the traffic): open a verify page and its captcha image, get a code
  wrong now and then, enter the right one from the text they received, sometimes ask for
  a resend.
- Access providers: submit filings of every type through the API and poll their status.
- Province admins: sign in once, look at the dashboard, search, open a filing.

Run against a server with rate limits off and a fixed captcha answer (tests/load/bench.py
starts one). Configuration comes from the environment:

- BENCH_API_KEY: a provider's API key;
- BENCH_ADMINS: `username:password:province:totp_secret,...` (province admins; each admin user signs in to one of its own, since a TOTP code is good once);
- BENCH_REDIS_URL: the Redis holding the fake gateway's inbox (tests/load/gateway.py);
- BENCH_CAPTCHA: the server's CAPTCHA_TEST_ANSWER (default TEST).
"""

import itertools
import os
import random
import re

import pyotp
from locust import HttpUser, between, task
from redis import Redis

from tests.load.data import (
    FILING_TYPES,
    PROVINCES,
    filing_body,
    hidden_fields,
    id_number_for,
    new_phone,
)
from tests.load.gateway import INBOX

_ADMIN_COUNTER = itertools.count()


def _config(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _inbox() -> Redis:
    return Redis.from_url(_config("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))


class Applicant(HttpUser):
    """Someone who received a code by text and opens the verify page of their province."""

    weight = 14
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.inbox = _inbox()
        self.captcha = _config("BENCH_CAPTCHA", "TEST")

    def _open(self, province: str, page: str) -> dict[str, str]:
        with self.client.get(
            f"/{province}/{page}", name=f"applicant: {page} page", catch_response=True
        ) as response:
            fields = hidden_fields(response.text)
            if "captcha_id" not in fields:
                response.failure(f"no form on the page (status {response.status_code})")
                return {}
        self.client.get(
            f"/{province}/captcha/{fields['captcha_id']}.png", name="applicant: captcha image"
        )
        return fields

    def _post(self, province: str, page: str, fields: dict, name: str, **values) -> None:
        data = {**fields, "captcha": self.captcha, **values}
        with self.client.post(
            f"/{province}/{page}", data=data, name=name, catch_response=True
        ) as response:
            if response.status_code == 200:
                response.success()
            else:
                response.failure(f"status {response.status_code}")

    def _verify(self, province: str, fields: dict, phone: str, code: str, kind: str) -> None:
        self._post(
            province,
            "verify",
            fields,
            f"applicant: verify ({kind} code)",
            phone=phone,
            code=code,
            id_last6=id_number_for(phone)[-6:],
        )

    def _received(self) -> tuple[str, str, str] | None:
        entry = self.inbox.rpop(INBOX)
        return tuple(entry.decode().split(":")) if entry else None

    @task(6)
    def verify_with_the_code_received(self) -> None:
        received = self._received()
        if received is None:
            self.mistype_a_code()
            return
        phone, code, province = received
        fields = self._open(province, "verify")
        if fields and random.random() < 0.2:  # a typo first, then the right code
            self._verify(province, fields, phone, f"{(int(code) + 1) % 10**6:06d}", "wrong")
            fields = self._open(province, "verify")
        if fields:
            self._verify(province, fields, phone, code, "right")

    @task(2)
    def mistype_a_code(self) -> None:
        province = random.choice(PROVINCES)
        phone = new_phone()
        fields = self._open(province, "verify")
        if fields:
            self._verify(province, fields, phone, f"{random.randrange(10**6):06d}", "wrong")

    @task(1)
    def ask_for_a_resend(self) -> None:
        received = self._received()
        if received is None:
            return
        phone, code, province = received
        fields = self._open(province, "resend")
        if fields:
            self._post(
                province,
                "resend",
                fields,
                "applicant: resend",
                phone=phone,
                id_last6=id_number_for(phone)[-6:],
            )
        # Back in the inbox: the code is still good, another applicant task can use it.
        self.inbox.lpush(INBOX, f"{phone}:{code}:{province}")


class AccessProvider(HttpUser):
    """A provider's system: submits filings of every type and polls the ones it is waiting on."""

    weight = 4
    wait_time = between(0.5, 2)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {_config('BENCH_API_KEY')}"
        self.waiting: list[str] = []

    @task(3)
    def submit_a_filing(self) -> None:
        types, weights = zip(*FILING_TYPES, strict=True)
        filing_type = random.choices(types, weights)[0]
        with self.client.post(
            "/api/v1/filings",
            json=filing_body(filing_type),
            name=f"provider: submit {filing_type}",
            catch_response=True,
        ) as response:
            if response.status_code != 201:
                response.failure(f"status {response.status_code}: {response.text[:200]}")
                return
            self.waiting = [*self.waiting[-19:], response.json()["id"]]

    @task(4)
    def poll_a_filing(self) -> None:
        if not self.waiting:
            return
        filing_id = random.choice(self.waiting)
        self.client.get(f"/api/v1/filings/{filing_id}", name="provider: poll filing")

    @task(1)
    def read_its_events(self) -> None:
        if self.waiting:
            filing_id = random.choice(self.waiting)
            self.client.get(f"/api/v1/filings/{filing_id}/events", name="provider: events")


class ProvinceAdmin(HttpUser):
    """A province administration's officer at the console."""

    weight = 1
    wait_time = between(2, 5)

    def on_start(self) -> None:
        admins = [entry.split(":") for entry in _config("BENCH_ADMINS").split(",") if entry]
        username, password, _, totp_secret = admins[next(_ADMIN_COUNTER) % len(admins)]
        page = self.client.get("/admin/login", name="admin: sign-in page").text
        otp = pyotp.TOTP(totp_secret).now()  # each code is good once: one account per user
        with self.client.post(
            "/admin/login",
            data={
                **hidden_fields(page),
                "username": username,
                "password": password,
                "otp": otp,
            },
            name="admin: sign in",
            catch_response=True,
        ) as response:
            if "/admin/login" in response.url:
                response.failure(f"not signed in: status {response.status_code}")

    @task(1)
    def dashboard(self) -> None:
        self.client.get("/admin/", name="admin: dashboard")

    @task(3)
    def search_and_open(self) -> None:
        query = random.choice(
            ({"status": "pending_verification"}, {"status": "under_review"}, {"phone": "139"}, {})
        )
        response = self.client.get("/admin/filings", params=query, name="admin: search")
        ids = re.findall(r'href="/admin/filings/([0-9a-zA-Z-]+)"', response.text)
        if ids:
            self.client.get(f"/admin/filings/{random.choice(ids)}", name="admin: filing details")
