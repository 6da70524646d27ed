"""A copy of the database reveals no phone, name, code or ID beyond the masked forms (SPEC §10).

Each test runs a whole journey on a database of its own (a new SQLite file, a new
PostgreSQL database), under each suite, then reads the copy an attacker would get: the
SQLite files' bytes (with the WAL) or `pg_dump`'s output.
"""

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from portal import jobs
from portal.clock import utcnow
from portal.messages import Outcome
from portal.protection.sealing import SUITES
from tests.admins import csrf, sign_in
from tests.conftest import pg_database
from tests.factories import CAPTCHA, form_fields
from tests.servers import Endpoint
from tests.test_admin import admins  # noqa: F401  (a fixture)

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id(first17: str) -> str:
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return first17 + "10X98765432"[total % 11]


# Distinctive values, so that nothing else in a database file holds them by chance.
ENTITY = {"name": "欧阳明月", "phone": "13812345678", "id": resident_id("11010519850307481")}
SITE = {"name": "司马长风", "phone": "15987654321", "id": resident_id("44030419790623957")}
OTHER = {"name": "慕容秋水", "phone": "18611223344", "id": resident_id("62010219911111263")}
PEOPLE = (ENTITY, SITE, OTHER)


# A database of this test's own, on either backend: the copy holds this journey only.
@pytest.fixture
def sqlite_database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'copy.sqlite3'}"


@pytest.fixture
def postgresql_database_url(tmp_path):
    with pg_database(f"portal_at_rest_{tmp_path.name[-12:].replace('-', '_')}") as url:
        yield url


@pytest.fixture
def migrated() -> dict:
    return {}


@pytest.fixture(params=SUITES)
def env(request, env):
    env["CRYPTO_SUITE"] = request.param
    return env


def principal(person: dict) -> dict:
    return {
        "name": person["name"],
        "phone": person["phone"],
        "id_type": "resident_id",
        "id_number": person["id"],
    }


def body(reference: str, entity: dict, site: dict, domain: str) -> dict:
    return {
        "province": "tianjin",
        "type": "new_filing",
        "reference": reference,
        "entity": {"name": "示例科技有限公司", "principal": principal(entity)},
        "websites": [{"domain": domain, "name": "示例网", "principal": principal(site)}],
    }


def post_form(client, page: str, values: dict):
    fields = form_fields(client.get(f"/tianjin/{page}").get_data(as_text=True))
    response = client.post(f"/tianjin/{page}", data={**fields, "captcha": CAPTCHA, **values})
    return response.get_data(as_text=True)


def journey(client, provider, sent_codes, clock) -> list[str]:
    """Intake, texts, both phones verified, a wrong ID, approval, a new_access refused
    against the record, a resend, webhooks delivered; returns the codes sent."""
    _, headers = provider
    first = client.post(
        "/api/v1/filings", json=body("AT-REST-1", ENTITY, SITE, "a.example.cn"), headers=headers
    )
    assert first.status_code == 201
    codes = sent_codes()
    wrong = {"code": codes[SITE["phone"]], "phone": SITE["phone"], "id_last6": "000000"}
    assert Outcome.NOT_FOUND.message in post_form(client, "verify", wrong)
    for person, outcome in (
        (ENTITY, Outcome.VERIFIED_OTHERS_PENDING),
        (SITE, Outcome.ALL_VERIFIED),
    ):
        values = {
            "code": codes[person["phone"]],
            "phone": person["phone"],
            "id_last6": person["id"][-6:],
        }
        assert outcome.message in post_form(client, "verify", values)

    sign_in(client, "tj-admin")
    filing_id = first.get_json()["id"]
    page = client.get(f"/admin/filings/{filing_id}").get_data(as_text=True)
    assert ENTITY["name"] in page and SITE["name"] in page, "the console shows the names"
    approved = client.post(
        f"/admin/filings/{filing_id}/approve",
        data={"reason": "材料齐全", "csrf_token": csrf(client)},
    )
    assert approved.status_code == 302

    access = body("AT-REST-2", OTHER, OTHER, "a.example.cn")
    access["type"] = "new_access"
    refused = client.post("/api/v1/filings", json=access, headers=headers)
    assert json.loads(refused.get_data())["code"] == "phone_differs_from_record"

    second = client.post(
        "/api/v1/filings", json=body("AT-REST-3", OTHER, OTHER, "b.example.cn"), headers=headers
    )
    assert second.status_code == 201
    resend = {"phone": OTHER["phone"], "id_last6": OTHER["id"][-6:]}
    assert Outcome.RESEND_SENT.message in post_form(client, "resend", resend)
    clock.now += timedelta(minutes=1)
    jobs.sweep()
    return sorted(set(codes.values()) | set(sent_codes().values()))


def forbidden(codes: list[str]) -> dict[str, list[bytes]]:
    """What the copy must not hold, in every form it could be written in."""
    found: dict[str, list[bytes]] = {}
    for person in PEOPLE:
        phone, name, number = person["phone"], person["name"], person["id"]
        found[phone] = [f.encode() for f in (phone, phone[:7], phone[3:])]
        escaped = json.dumps(name).strip('"')  # the JSON columns' \\u escapes
        found[name] = [name.encode(), escaped.encode(), escaped.upper().encode()]
        found[number] = [number.encode(), number[-6:].encode(), number[:-6].encode()]
    for code in codes:
        found[code] = [code.encode()]
    return found


def database_copy(app, backend: str, url: str) -> bytes:
    if backend == "sqlite":
        from portal.extensions import db

        db.session.remove()
        db.engine.dispose()
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))
    dumped = subprocess.run(["pg_dump", "--no-owner", url], capture_output=True, check=True)
    return dumped.stdout


@pytest.mark.usefixtures("allow_local_callbacks", "admins")
def test_a_copy_of_the_database_holds_no_personal_data(
    app,
    backend,
    env,
    client,
    provider,
    sent_codes,
    clock,
):
    clock.now = utcnow().replace(microsecond=0)
    with Endpoint() as receiver:
        provider[0].callback_url = receiver.url
        from portal.extensions import db

        db.session.commit()
        codes = journey(client, provider, sent_codes, clock)
        assert len(receiver.requests) >= 2, "the status changes reached the provider"
    assert len(codes) == 3

    copy = database_copy(app, backend, env["DATABASE_URL"])

    assert b"138****5678" in copy, "the masked forms are there: the copy is the right one"
    leaks = {
        what: [f.decode() for f in forms if f in copy] for what, forms in forbidden(codes).items()
    }
    assert {what: forms for what, forms in leaks.items() if forms} == {}
