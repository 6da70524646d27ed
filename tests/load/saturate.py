"""One route as fast as the users can ask (no waiting), for capacity numbers: the bare
"hello" yardstick, and single portal routes, measured the same way (tests/load/bench.py).

BENCH_TARGET:
- `hello` (GET /), `healthz`, `verify_page` (GET /tianjin/verify, a new challenge each time);
- `captcha`: the image request. Each user opens the page once, then asks for its image again
  and again (a ready-made PNG kept in Redis for a minute): what the request itself costs;
- `verify_post`: the verify form posted the way htmx posts it, each time with the new
  challenge the previous answer carried, a wrong code for a random phone (the full
  not-found path: captcha, lookup, recorded attempt, the form rendered again);
- `intake`: `POST /api/v1/filings`, a new two-phone filing each time;
- `poll`: GET one filing by API.
"""

import os
import random

from locust import FastHttpUser, constant, task

from tests.load.data import filing_body, hidden_fields

TARGET = os.environ.get("BENCH_TARGET", "hello")
PATHS = {"hello": "/", "healthz": "/healthz", "verify_page": "/tianjin/verify"}


class Saturate(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.headers: dict[str, str] = {}
        self.path = PATHS.get(TARGET, "/")
        if TARGET in ("poll", "intake"):
            self.headers = {"Authorization": f"Bearer {os.environ['BENCH_API_KEY']}"}
        if TARGET == "poll":
            self.path = f"/api/v1/filings/{os.environ['BENCH_FILING_ID']}"
        if TARGET in ("captcha", "verify_post"):
            page = self.client.get("/tianjin/verify", name="page (once per user)").text
            self.fields = hidden_fields(page)
            self.path = f"/tianjin/captcha/{self.fields['captcha_id']}.png"

    @task
    def ask(self) -> None:
        if TARGET == "verify_post":
            self.post_wrong_code()
        elif TARGET == "intake":
            body = filing_body("new_filing")
            self.client.post("/api/v1/filings", json=body, headers=self.headers, name=TARGET)
        else:
            self.client.get(self.path, name=TARGET, headers=self.headers)

    def post_wrong_code(self) -> None:
        values = {"code": "000000", "phone": f"139{random.randrange(10**8):08d}",
                  "id_last6": "000000", "captcha": os.environ.get("BENCH_CAPTCHA", "TEST")}  # fmt: skip
        with self.client.post(
            "/tianjin/verify",
            data={**self.fields, **values},
            headers={"HX-Request": "true"},
            name=TARGET,
            catch_response=True,
        ) as response:
            fields = hidden_fields(response.text or "")
            if response.status_code != 200 or "captcha_id" not in fields:
                response.failure(f"status {response.status_code}, no new challenge")
                return
            self.fields.update(fields)
