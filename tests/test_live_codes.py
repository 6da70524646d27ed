"""The live codes (portal/live_codes.py): a code is held while its verification is pending
and freed as it leaves pending; and so no index of verifications names `status`, the status
changes of verifications are HOT updates on PostgreSQL."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal import sweeps
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Filing, LiveCode, Verification
from portal.protection.personal_data import phone_digest
from portal.verification import verify
from tests.factories import new_filing_body

PHONE_A, ID_A_LAST6 = "13900000001", "011239"
PHONE_B = "13900000002"
WRONG_ID = "123456"


def held_by() -> dict[str, str]:
    """The holder of each live code, by the holder's phone digest: {digest: code digest}."""
    return dict(
        db.session.execute(
            sa.select(Verification.phone_digest, LiveCode.code_digest).join(
                LiveCode, LiveCode.verification_id == Verification.id
            )
        ).all()
    )


def pending_codes() -> dict[str, str]:
    return dict(
        db.session.execute(
            sa.select(Verification.phone_digest, Verification.code_digest).where(
                Verification.status == "pending"
            )
        ).all()
    )


def test_a_code_is_held_while_its_verification_is_pending_and_freed_as_it_is_verified_or_fails(
    submit_filing, sent_codes
):
    submit_filing()
    codes = sent_codes()
    assert held_by() == pending_codes() and len(held_by()) == 2

    verify("tianjin", PHONE_A, codes[PHONE_A], ID_A_LAST6, utcnow())
    db.session.commit()
    assert (
        held_by()
        == pending_codes()
        == {phone_digest(PHONE_B): pending_codes()[phone_digest(PHONE_B)]}
    )

    for _ in range(5):
        verify("tianjin", PHONE_B, codes[PHONE_B], WRONG_ID, utcnow())
        db.session.commit()
    assert held_by() == pending_codes() == {}


def test_the_codes_of_an_expired_filing_are_freed(submit_filing):
    submit_filing(new_filing_body("DUE"))
    db.session.execute(sa.update(Filing).values(deadline=utcnow() - timedelta(minutes=1)))
    db.session.commit()

    sweeps.expire(utcnow())
    db.session.commit()

    assert held_by() == pending_codes() == {}


def updates_of_verifications() -> tuple[int, int]:
    """Rows of verifications updated by this backend, and how many of those were HOT (its
    counts not yet reported: read a difference within one transaction)."""
    return tuple(
        db.session.execute(
            sa.text(
                "SELECT pg_stat_get_xact_tuples_updated('verifications'::regclass),"
                " pg_stat_get_xact_tuples_hot_updated('verifications'::regclass)"
            )
        ).one()
    )


def updates_during(operation) -> tuple[int, int]:
    """(rows updated, of them HOT) in verifications while `operation()` runs."""
    (updated, hot) = updates_of_verifications()
    operation()
    (updated_after, hot_after) = updates_of_verifications()
    return updated_after - updated, hot_after - hot


@pytest.mark.parametrize("backend", ["postgresql"])
def test_verify_and_the_expiry_change_a_status_without_writing_an_index(submit_filing, sent_codes):
    """A HOT update writes the row's new version beside the old one and no index entry: it
    needs room on the page (fillfactor) and no index naming a column it sets, `status` in a
    predicate included."""
    submit_filing(new_filing_body("VERIFIED"))
    codes = sent_codes()
    submit_filing(new_filing_body("DUE"))

    db.session.commit()

    verifying = updates_during(
        lambda: verify("tianjin", PHONE_A, codes[PHONE_A], ID_A_LAST6, utcnow())
    )
    db.session.commit()
    db.session.execute(sa.update(Filing).where(Filing.reference == "DUE").values(deadline=utcnow()))
    expiring = updates_during(lambda: sweeps.expire(utcnow()))
    db.session.commit()

    assert verifying == (1, 1)
    assert expiring == (2, 2)  # the due filing's two codes
