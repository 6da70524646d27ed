"""Webhooks to access providers (SPEC §6): signed POSTs of status-change events.

The body is signed with the provider's webhook secret: `X-Signature: sha256=<hex
HMAC-SHA256 of the raw body>`. Every attempt is recorded; `event_id` lets the
provider drop the duplicates that at-least-once delivery brings.
"""

import hashlib
import hmac
import json
from datetime import datetime

import requests

from portal import providers
from portal.clock import iso_shanghai
from portal.extensions import db
from portal.models import Event, Provider, WebhookDelivery

TIMEOUT_SECONDS = 10


class DeliveryFailed(Exception):
    pass


def body(event: Event) -> bytes:
    document = {
        "event_id": event.id,
        "type": event.type,
        "occurred_at": iso_shanghai(event.occurred_at),
        "filing": event.payload,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, raw_body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


def post(event: Event, now: datetime) -> bool:
    """One attempt, recorded; false when the provider has no callback URL to post to.

    Raises DeliveryFailed unless the provider answered 2xx.
    """
    provider = db.session.get(Provider, event.provider_id)
    if not provider.callback_url:
        return False
    raw = body(event)
    attempt = WebhookDelivery(event_id=event.id, attempted_at=now)
    db.session.add(attempt)
    try:
        response = requests.post(
            provider.callback_url,
            data=raw,
            headers={
                "Content-Type": "application/json",
                "X-Signature": signature(providers.webhook_secret(provider), raw),
                "X-Event-Id": event.id,
            },
            timeout=TIMEOUT_SECONDS,
            allow_redirects=False,
        )
    except requests.RequestException as error:
        attempt.error = f"{type(error).__name__}: {error}"[:500]
        raise DeliveryFailed(attempt.error) from error
    attempt.status_code = response.status_code
    if not 200 <= response.status_code < 300:
        attempt.error = f"HTTP {response.status_code}"
        raise DeliveryFailed(attempt.error)
    return True
