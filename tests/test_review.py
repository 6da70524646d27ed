"""SPEC §7: approval puts websites on record, which `new_access` trusts, so only with a phone
the filing checked by SMS."""

import pytest
import sqlalchemy as sa

from portal import review
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Filing, Province, Record
from portal.protection import sealing
from portal.protection.personal_data import sealed_record_phone
from portal.verification import verify
from tests.factories import ID_A, ID_B, ID_C, new_filing_body, principal

ENTITY_PHONE, SITE_PHONE, OTHER_SITE_PHONE = "13900000001", "13900000002", "13900000003"
LAST6 = {ENTITY_PHONE: ID_A[-6:], SITE_PHONE: ID_B[-6:], OTHER_SITE_PHONE: ID_C[-6:]}
RECORDED_PHONE = "13700000000"


def on_record() -> dict[str, str]:
    db.session.expire_all()
    records = db.session.scalars(sa.select(Record))
    return {
        record.domain: sealing.unseal(
            record.principal_phone_sealed,
            sealing.place(Record.principal_phone_sealed, record.domain),
        )
        for record in records
    }


def put_on_record(domain: str, phone: str) -> None:
    db.session.add(
        Record(domain=domain, **sealed_record_phone(domain, phone), recorded_at=utcnow())
    )
    db.session.commit()


@pytest.fixture
def approved(submit_filing, sent_codes):
    """Submits a body, verifies every code it sent, approves it; returns its type."""

    def approve(body: dict) -> None:
        filing = submit_filing(body)
        for phone, code in sent_codes().items():
            verify("tianjin", phone, code, LAST6[phone], utcnow())
        db.session.commit()
        stored = db.session.get(Filing, filing["id"])
        assert stored.status == "under_review"
        review.approve(stored, "材料齐全", utcnow())
        db.session.commit()

    return approve


def site(domain: str, phone: str, id_number: str) -> dict:
    return {"domain": domain, "name": "示例网", "principal": principal(phone, id_number)}


def test_a_verified_website_phone_goes_on_record(approved):
    approved(new_filing_body())
    assert on_record() == {"a.example.cn": SITE_PHONE}


def test_a_change_of_the_entity_puts_no_unchecked_website_phone_on_record(approved):
    """change_scope=entity checks the entity's phone only: the websites' phones stay unchecked,
    and the record of a website keeps the phone that was checked before."""
    put_on_record("a.example.cn", RECORDED_PHONE)
    approved(
        new_filing_body(
            type="change_filing",
            change_scope="entity",
            websites=[
                site("a.example.cn", SITE_PHONE, ID_B),
                site("b.example.cn", OTHER_SITE_PHONE, ID_C),
            ],
        )
    )
    assert on_record() == {"a.example.cn": RECORDED_PHONE}


def test_a_change_of_a_website_records_its_newly_verified_phone(approved):
    put_on_record("a.example.cn", RECORDED_PHONE)
    approved(new_filing_body(type="change_filing", change_scope="website"))
    assert on_record() == {"a.example.cn": SITE_PHONE}


@pytest.mark.parametrize("filing_type", ["cancel_access", "new_website"])
def test_a_filing_whose_check_was_skipped_records_no_phone(approved, filing_type):
    """cancel_access is not checked (a rule in data); new_website is, but not in a province
    whose check is not live yet. Neither puts its unchecked phone on record."""
    put_on_record("a.example.cn", RECORDED_PHONE)
    if filing_type == "new_website":
        db.session.get(Province, "tianjin").live_from = None
        db.session.commit()
    approved(
        new_filing_body(
            type=filing_type,
            websites=[
                site("a.example.cn", SITE_PHONE, ID_B),
                site("b.example.cn", OTHER_SITE_PHONE, ID_C),
            ],
        )
    )
    assert on_record() == {"a.example.cn": RECORDED_PHONE}


def test_new_access_trusts_no_phone_a_skipped_check_would_have_recorded(approved, client, provider):
    """The issue's path: a cancel_access approved with an unchecked phone, then new_access
    with that phone was accepted; the phone checked first still decides."""
    put_on_record("a.example.cn", RECORDED_PHONE)
    approved(new_filing_body("CANCEL", type="cancel_access"))
    response = client.post(
        "/api/v1/filings", json=new_filing_body("ACCESS", type="new_access"), headers=provider[1]
    )
    assert response.status_code == 422
    assert response.get_json()["code"] == "phone_differs_from_record"


def test_cancelling_a_website_takes_it_off_the_record(approved):
    put_on_record("a.example.cn", RECORDED_PHONE)
    approved(new_filing_body(type="cancel_website"))
    assert on_record() == {}
