"""ID numbers, phones and names: checking, masking, matching and sealing them (SPEC §10).

A phone is kept sealed, with a keyed digest to find it and a masked form to show; an ID
number only masked, with a keyed digest of its last six.
"""

import json
import re

from portal.models import Filing, Record, Verification
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


def phone_digest(phone: str) -> str:
    return sealing.digest("phone", phone)


def phone_digests(phone: str) -> list[str]:
    return sealing.digests("phone", phone)


def phone_matches(stored_digest: str, phone: str) -> bool:
    return sealing.matches(stored_digest, "phone", phone)


def mask_phone(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}"


def mask_id(number: str) -> str:
    """Never shows any of the last six, which the check asks for; at most the first three."""
    shown = min(max(len(number) - 6, 0), 3)
    return number[:shown] + "*" * (len(number) - shown)


def mask_address(address: str) -> str:
    """Enough of a client address to tell attempts apart, not to find the person."""
    if "." in address:
        return ".".join(address.split(".")[:3] + ["*"])
    if ":" in address:
        return ":".join(address.split(":")[:3]) + ":*"
    return "*"


def sealed_phone(filing_id: str, phone: str) -> dict[str, str]:
    """A verification's phone columns."""
    return {
        "phone_sealed": sealing.seal(phone, sealing.place(Verification.phone_sealed, filing_id)),
        "phone_digest": phone_digest(phone),
        "phone_masked": mask_phone(phone),
    }


def verification_phone(verification: Verification) -> str:
    place = sealing.place(Verification.phone_sealed, verification.filing_id)
    return sealing.unseal(verification.phone_sealed, place)


def seal_code(filing_id: str, code: str) -> str:
    return sealing.seal(code, sealing.place(Verification.code_sealed, filing_id))


def verification_code(verification: Verification) -> str:
    place = sealing.place(Verification.code_sealed, verification.filing_id)
    return sealing.unseal(verification.code_sealed, place)


def seal_principals(filing_id: str, principals: dict) -> str:
    """The names and phones of a filing's principals, as one sealed JSON document."""
    place = sealing.place(Filing.personal_data_sealed, filing_id)
    return sealing.seal(json.dumps(principals, ensure_ascii=False), place)


def filing_principals(filing: Filing) -> dict | None:
    """Its principals' names and phones; None once erased under the retention period."""
    if filing.personal_data_sealed is None:
        return None
    place = sealing.place(Filing.personal_data_sealed, filing.id)
    return json.loads(sealing.unseal(filing.personal_data_sealed, place))


def sealed_record_phone(domain: str, phone: str) -> dict[str, str]:
    """A record's phone columns."""
    return {
        "principal_phone_sealed": sealing.seal(
            phone, sealing.place(Record.principal_phone_sealed, domain)
        ),
        "principal_phone_digest": phone_digest(phone),
    }
