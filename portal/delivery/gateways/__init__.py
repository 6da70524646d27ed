"""The gateways by name, as `SMS_BACKEND` names them, and the formats of the receipts
they push. A new gateway is a module with a `from_config(config) -> Gateway` (and a
`RECEIPT_FORMAT` if it pushes receipts) and a line here."""

from collections.abc import Callable

from portal.delivery.gateways import aliyun, console, file, http, tencent
from portal.delivery.gateways.interface import (
    Accepted,
    Gateway,
    Receipt,
    ReceiptFormat,
    Refused,
    RefusedForThePhone,
    TimedOut,
)

GATEWAYS: dict[str, Callable[[dict], Gateway]] = {
    "console": console.from_config,
    "file": file.from_config,
    "http": http.from_config,
    "aliyun": aliyun.from_config,
    "tencent": tencent.from_config,
}

RECEIPT_FORMATS: dict[str, ReceiptFormat] = {
    "aliyun": aliyun.RECEIPT_FORMAT,
    "tencent": tencent.RECEIPT_FORMAT,
}

__all__ = [
    "GATEWAYS",
    "RECEIPT_FORMATS",
    "Accepted",
    "Gateway",
    "Receipt",
    "ReceiptFormat",
    "Refused",
    "RefusedForThePhone",
    "TimedOut",
]
