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

import requests

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


class HttpBackend:
    def __init__(self, url: str, timeout: float = 5.0):
        self.url = url
        self.timeout = timeout
        self.http = requests.Session()
        # Batch jobs send on several threads over this one session: a connection each.
        self.http.mount(self.url, requests.adapters.HTTPAdapter(pool_maxsize=32))

    def send(self, to: str, text: str, message_id: str) -> None:
        response = self.http.post(
            self.url,
            json={"to": to, "text": text, "message_id": message_id},
            headers={"Idempotency-Key": message_id},
            timeout=self.timeout,
        )
        response.raise_for_status()


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


def code_text(province: Province, code: str, base_url: str) -> str:
    return SMS_TEXT.format(
        authority=province.authority,
        code=code,
        hours=province.code_validity_hours,
        url=f"{base_url}/{province.slug}/verify",
    )
