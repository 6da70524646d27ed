"""What every gateway does: `send(text) -> Accepted`, or raise `Refused` or `TimedOut`.

Gateways that push delivery receipts also describe their format (`ReceiptFormat`).

`Refused`: the gateway did not take the text (an error answer, a 5xx, no connection), so
it may go to another gateway at once. `TimedOut`: the request went out and no answer
came; the gateway may have taken the text, so it must not go elsewhere straight away.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import requests
import urllib3

from portal.clock import SHANGHAI
from portal.delivery.texts import Text
from portal.settings import SettingsError

# How long a gateway may take to answer before the text counts as timed out.
TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Accepted:
    gateway: str
    # The gateway's id for the text (Aliyun's BizId, Tencent's SerialNo): receipts name it.
    gateway_id: str | None


class Refused(Exception):
    pass


class RefusedForThePhone(Refused):
    """The gateway answered and would not send to this phone now (its per-phone limits, a
    number it cannot reach): the gateway is working, so this never counts toward skipping it.
    The text still goes to the next gateway, whose limits are its own."""


class TimedOut(Exception):
    def __init__(self, gateway: str, detail: str):
        super().__init__(f"{gateway}: no answer in time ({detail})")
        self.gateway = gateway


class Gateway(Protocol):
    name: str

    def send(self, text: Text) -> Accepted: ...


# An HTTP client's message may quote the request's URL, whose query holds the phone and the
# code (Aliyun's SendSms is all query): the message is kept without it.
_QUERY = re.compile(r"\?\S*")


def settings_of(config: dict, gateway: str, settings: dict[str, str]) -> dict[str, str]:
    """The gateway's arguments, read from its settings (argument → setting); a missing one is
    named, with every other missing, before anything is sent."""
    missing = [name for name in settings.values() if not config.get(name)]
    if missing:
        raise SettingsError(f"SMS_BACKEND={gateway} needs {', '.join(missing)}")
    return {argument: config[name] for argument, name in settings.items()}


def failure(gateway: str, error: BaseException) -> Refused | TimedOut:
    """What an SDK's or client's exception means: sent and unanswered, or not taken."""
    described = _QUERY.sub("?…", f"{type(error).__name__}: {error}")
    if _read_timed_out(error):
        return TimedOut(gateway, described[:200])
    return Refused(f"{gateway}: {described}"[:500])


def _read_timed_out(error: BaseException | None) -> bool:
    """A read timeout anywhere in the exception's chain (the SDKs wrap the HTTP client's)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, requests.exceptions.ReadTimeout | urllib3.exceptions.ReadTimeoutError):
            return True
        error = error.__cause__ or error.__context__ or getattr(error, "inner_exception", None)
        seen += 1
    return False


@dataclass(frozen=True)
class Receipt:
    """A gateway's word on one text: delivered to the phone or not."""

    gateway_id: str
    # Our message id, when the gateway carries it back (Aliyun's `out_id`).
    message_id: int | None
    delivered: bool
    # The carrier's status code: DELIVERED / DELIVRD, or the error.
    code: str
    at: datetime | None


@dataclass(frozen=True)
class ReceiptFormat:
    """How a gateway pushes receipts: the body parsed (ValueError when it is not that
    format), and the answers it expects."""

    parse: Callable[[bytes], list[Receipt]]
    accepted: dict
    refused: Callable[[str], dict]


def our_message_id(value: str | None) -> int | None:
    """The row id in `sms-<id>`, as we give it to the gateways; None for anything else."""
    if value and value.startswith("sms-") and value[4:].isdigit():
        return int(value[4:])
    return None


def shanghai_time(value: str | None) -> datetime | None:
    """The gateways' `YYYY-MM-DD hh:mm:ss`, Beijing time; ValueError when it is not that."""
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI).astimezone(UTC)
