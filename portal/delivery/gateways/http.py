"""`http`: POSTs `{"to", "text", "message_id"}` as JSON to `SMS_HTTP_URL`, the message id
also as the `Idempotency-Key` header; any 2xx is acceptance."""

import json

import urllib3

from portal.delivery.gateways.interface import (
    CONNECT_TIMEOUT_SECONDS,
    TIMEOUT_SECONDS,
    Accepted,
    Refused,
    failure,
)
from portal.delivery.texts import Text
from portal.settings import SettingsError


class HttpGateway:
    """POSTs over keep-alive connections, one per sending thread of a batch job.

    urllib3 rather than requests: requests looks up proxies and ~/.netrc on every call,
    a quarter of a sending thread's time at hundreds of texts a second.
    """

    name = "http"

    def __init__(self, url: str, timeout: float = TIMEOUT_SECONDS):
        self.url = url
        self.http = urllib3.PoolManager(
            maxsize=32,
            timeout=urllib3.Timeout(connect=min(timeout, CONNECT_TIMEOUT_SECONDS), read=timeout),
            retries=False,
        )

    def send(self, text: Text) -> Accepted:
        body = json.dumps(
            {"to": text.phone, "text": text.body, "message_id": text.message_id},
            ensure_ascii=False,
        )
        try:
            response = self.http.request(
                "POST",
                self.url,
                body=body.encode(),
                headers={"Content-Type": "application/json", "Idempotency-Key": text.message_id},
            )
        except urllib3.exceptions.HTTPError as error:
            raise failure(self.name, error) from error
        if not 200 <= response.status < 300:
            raise Refused(f"{self.name}: HTTP {response.status}")
        return Accepted(self.name, text.message_id)


def from_config(config: dict) -> HttpGateway:
    if not config["SMS_HTTP_URL"]:
        raise SettingsError("SMS_BACKEND=http needs SMS_HTTP_URL")
    return HttpGateway(config["SMS_HTTP_URL"])
