"""SPEC §4: codes are 6 digits, random, never reused across live verifications."""

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from portal import filings
from portal.extensions import db
from portal.models import Verification
from portal.protection import sealing
from portal.protection.personal_data import sealed_phone
from tests.factories import new_filing_body


def live_codes() -> list[str]:
    return db.session.scalars(
        sa.select(Verification.code_digest).where(Verification.status == "pending")
    ).all()


def test_a_new_code_skips_one_a_live_verification_holds(submit_filing, sent_codes, monkeypatch):
    submit_filing(new_filing_body("FIRST"))
    taken = int(sent_codes()["13900000001"])
    drawn = iter([taken, taken, 123456, 654321, 111111])
    monkeypatch.setattr(filings.secrets, "randbelow", lambda _: next(drawn))

    submit_filing(new_filing_body("SECOND"))

    digests = live_codes()
    assert len(digests) == 4 and len(set(digests)) == 4
    assert sealing.digest("code", f"{taken:06d}") in digests


def test_the_database_refuses_two_live_verifications_with_one_code(submit_filing):
    submit_filing()
    first = db.session.scalars(sa.select(Verification)).first()
    twin = Verification(
        filing_id=first.filing_id,
        province_slug=first.province_slug,
        **sealed_phone(first.filing_id, "13700000000"),
        roles=["entity"],
        code_digest=first.code_digest,
        code_sealed=first.code_sealed,
        id_digest=first.id_digest,
        id_masked=first.id_masked,
        noon_resend_at=first.noon_resend_at,
    )
    db.session.add(twin)
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_codes_are_six_digits(submit_filing, sent_codes):
    submit_filing()
    assert all(len(code) == 6 and code.isdigit() for code in sent_codes().values())
