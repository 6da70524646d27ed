"""One route as fast as the users can ask (no waiting), for capacity numbers: the bare
"hello" yardstick, and single portal routes, measured the same way (tests/load/bench.py).

BENCH_TARGET: `hello` (GET /), `healthz`, `verify_page` (GET /tianjin/verify), `captcha`
(the page once, then its captcha image again and again), `poll` (GET one filing by API).
"""

import os
import re

from locust import FastHttpUser, constant, task

TARGET = os.environ.get("BENCH_TARGET", "hello")


class Saturate(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.headers: dict[str, str] = {}
        self.path = {"hello": "/", "healthz": "/healthz", "verify_page": "/tianjin/verify"}.get(
            TARGET, "/"
        )
        if TARGET == "poll":
            self.headers = {"Authorization": f"Bearer {os.environ['BENCH_API_KEY']}"}
            self.path = f"/api/v1/filings/{os.environ['BENCH_FILING_ID']}"

    @task
    def ask(self) -> None:
        if TARGET == "captcha":
            self.page_and_image()
            return
        self.client.get(self.path, name=TARGET, headers=self.headers)

    def page_and_image(self) -> None:
        """What a browser does: the page (a new challenge), then its image."""
        page = self.client.get("/tianjin/verify", name="captcha: page").text
        captcha_id = re.search(r'name="captcha_id"[^>]*value="([^"]*)"', page).group(1)
        self.client.get(f"/tianjin/captcha/{captcha_id}.png", name="captcha")
