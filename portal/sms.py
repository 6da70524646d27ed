"""SMS backends and the text of the code message.

`console` logs (redacted, like every log line: it shows that a text went out, not its
code), `file` appends JSON lines (what `/dev/sms` reads), `http` POSTs
JSON to a gateway. A backend raises when the text was not accepted, so the job
fails and is retried; the message id travels as an idempotency key.
"""

import fcntl
import json
import logging
from typing import Protocol

import urllib3

from portal.messages import SMS_TEXT
from portal.models import Province

log = logging.getLogger(__name__)


class SmsBackend(Protocol):
    def send(self, to: str, text: str, message_id: str) -> None: ...


class ConsoleBackend:
    def send(self, to: str, text: str, message_id: str) -> None:
        log.info("SMS %s to %s: %s", message_id, to, text)


class FileBackend:
    def __init__(self, path: str):
        self.path = path

    def send(self, to: str, text: str, message_id: str) -> None:
        line = json.dumps({"to": to, "text": text, "message_id": message_id}, ensure_ascii=False)
        with open(self.path, "a", encoding="utf-8") as sink:
            fcntl.flock(sink, fcntl.LOCK_EX)
            sink.write(line + "\n")


class GatewayRefused(Exception):
    pass


class HttpBackend:
    """POSTs over keep-alive connections, one per sending thread of a batch job.

    urllib3 rather than requests: requests looks up proxies and ~/.netrc on every call,
    a quarter of a sending thread's time at hundreds of texts a second.
    """

    def __init__(self, url: str, timeout: float = 5.0):
        self.url = url
        self.http = urllib3.PoolManager(
            maxsize=32, timeout=urllib3.Timeout(total=timeout), retries=False
        )

    def send(self, to: str, text: str, message_id: str) -> None:
        body = json.dumps({"to": to, "text": text, "message_id": message_id}, ensure_ascii=False)
        response = self.http.request(
            "POST",
            self.url,
            body=body.encode(),
            headers={"Content-Type": "application/json", "Idempotency-Key": message_id},
        )
        if not 200 <= response.status < 300:
            raise GatewayRefused(f"HTTP {response.status}")


def backend_from_config(config: dict) -> SmsBackend:
    name = config["SMS_BACKEND"]
    if name == "console":
        return ConsoleBackend()
    if name == "file":
        return FileBackend(config["SMS_FILE_PATH"])
    if name == "http":
        if not config["SMS_HTTP_URL"]:
            raise ValueError("SMS_BACKEND=http needs SMS_HTTP_URL")
        return HttpBackend(config["SMS_HTTP_URL"])
    raise ValueError(f"unknown SMS_BACKEND {name!r}: console, file or http")


def code_text(province: Province, code: str, link: str) -> str:
    """The text of a code, with the person's link (`portal.personal_links`)."""
    return SMS_TEXT.format(
        authority=province.authority, code=code, hours=province.code_validity_hours, link=link
    )
