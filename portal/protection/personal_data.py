"""ID numbers and phones: checking, masking and matching them without keeping them."""

import re

from portal.protection import sealing

PHONE_PATTERN = r"^1[3-9][0-9]{9}$"
# Digits and letters (SPEC §5): a passport's or a permit's last six may hold letters; a
# resident ID's (digits or X, checked at intake) simply matches nothing with other letters.
ID_LAST6_PATTERN = r"^[0-9A-Za-z]{6}$"

_RESIDENT_ID = re.compile(r"^\d{17}[\dX]$")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"


def resident_id_is_valid(number: str) -> bool:
    """GB 11643-1999: 17 digits and a check character (ISO 7064 MOD 11-2)."""
    number = number.upper()
    if not _RESIDENT_ID.match(number):
        return False
    total = sum(int(digit) * weight for digit, weight in zip(number[:17], _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11] == number[17]


def normalise_id(number: str) -> str:
    return number.strip().upper()


def id_last6_digest(id_last6: str) -> str:
    return sealing.digest("id_last6", id_last6.upper())


def id_last6_digests(id_last6: str) -> list[str]:
    """Its digest under every data key, for lookups that must survive a key rotation."""
    return sealing.digests("id_last6", id_last6.upper())


def id_last6_matches(stored_digest: str, id_last6: str) -> bool:
    return sealing.matches(stored_digest, "id_last6", id_last6.upper())


def mask_phone(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}"


def mask_id(number: str) -> str:
    return number[:3] + "*" * max(len(number) - 7, 0) + number[-4:]


def mask_address(address: str) -> str:
    """Enough of a client address to tell attempts apart, not to find the person."""
    if "." in address:
        return ".".join(address.split(".")[:3] + ["*"])
    if ":" in address:
        return ":".join(address.split(":")[:3]) + ":*"
    return "*"
