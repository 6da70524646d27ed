"""The load runs' data: filings of every type, principals whose ID numbers their phones
give away (so an applicant user knows its last six), and reading the applicant forms.

Kept apart from the locustfiles: importing locust patches the standard library (gevent).
"""

import random
import re
import uuid

PROVINCES = ("tianjin", "gansu", "hainan", "zhejiang", "sichuan")
FILING_TYPES = (
    # Roughly how often each type is submitted: new filings and websites dominate.
    ("new_filing", 40),
    ("new_website", 25),
    ("change_filing", 10),
    ("new_access", 10),
    ("cancel_website", 7),
    ("cancel_access", 5),
    ("cancel_filing", 3),
)
_WEIGHTS = [2 ** (17 - i) % 11 for i in range(17)]
_CHECK = "10X98765432"


def id_number_for(phone: str) -> str:
    """A valid resident ID number derived from the phone, so an applicant knows its last six."""
    digits = "1101011990" + phone[-7:]
    return digits + _CHECK[sum(int(d) * w for d, w in zip(digits, _WEIGHTS, strict=True)) % 11]


def new_phone() -> str:
    return f"1{random.choice('3456789')}{random.randrange(10**9):09d}"


def hidden_fields(page: str) -> dict[str, str]:
    fields = {}
    for name in ("csrf_token", "captcha_id"):
        found = re.search(rf'name="{name}"[^>]*value="([^"]*)"', page)
        if found:
            fields[name] = found.group(1)
    return fields


def principal(phone: str, name: str = "张三") -> dict:
    return {
        "name": name,
        "phone": phone,
        "id_type": "resident_id",
        "id_number": id_number_for(phone),
    }


def filing_body(filing_type: str) -> dict:
    body = {
        "province": random.choice(PROVINCES),
        "type": filing_type,
        "reference": f"LOAD-{uuid.uuid4().hex[:16]}",
        "entity": {"name": "压测科技有限公司", "principal": principal(new_phone())},
        "websites": [
            {
                "domain": f"{uuid.uuid4().hex[:12]}.example.cn",
                "name": "压测网",
                "principal": principal(new_phone(), "李四"),
            }
        ],
    }
    if filing_type == "change_filing":
        body["change_scope"] = random.choice(("entity", "website", "both"))
    return body
