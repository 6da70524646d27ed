"""The due lists kept off `filings` (portal/models.py `PendingFiling`, `ErasureDue`): each
filing's entries follow its status and deadline on every path that changes them, and the
readers (the expiry, the erasure, the console) read them."""

from datetime import timedelta

import sqlalchemy as sa

from portal import review, sweeps
from portal.clock import utcnow
from portal.extensions import db
from portal.models import ErasureDue, Filing, PendingFiling
from portal.verification import verify
from tests.factories import ID_A, ID_B, new_filing_body
from tests.test_admin import admins, sign_in  # noqa: F401  (admins is a fixture)

PHONE_A, PHONE_B = "13900000001", "13900000002"


def pending() -> dict[str, object]:
    db.session.expire_all()
    return dict(
        db.session.execute(sa.select(PendingFiling.filing_id, PendingFiling.deadline)).all()
    )


def erasure_due() -> dict[str, object]:
    return dict(db.session.execute(sa.select(ErasureDue.filing_id, ErasureDue.final_at)).all())


def test_a_filing_is_listed_pending_with_its_deadline_until_verified_then_due_for_erasure_once_decided(
    submit_filing, sent_codes
):
    filing_id = submit_filing(new_filing_body("R-1"))["id"]
    codes = sent_codes()
    deadline = db.session.get(Filing, filing_id).deadline
    assert deadline is not None
    assert pending() == {filing_id: deadline}

    for phone, number in ((PHONE_A, ID_A), (PHONE_B, ID_B)):
        verify("tianjin", phone, codes[phone], number[-6:], utcnow())
        db.session.commit()
    assert pending() == {}
    assert erasure_due() == {}

    decided_at = utcnow()
    review.approve(db.session.get(Filing, filing_id), "好", decided_at)
    db.session.commit()
    assert erasure_due() == {filing_id: decided_at}


def test_a_filing_returned_for_wrong_ids_leaves_the_pending_list_and_is_due_for_erasure(
    submit_filing, sent_codes
):
    filing_id = submit_filing(new_filing_body("R-1"))["id"]
    codes = sent_codes()
    returned_at = utcnow()
    for _ in range(5):
        verify("tianjin", PHONE_A, codes[PHONE_A], "000000", returned_at)
        db.session.commit()
    assert db.session.get(Filing, filing_id).status == "returned"

    assert pending() == {}
    assert erasure_due() == {filing_id: returned_at}


def test_a_filing_taken_in_without_a_check_is_never_listed_pending(submit_filing):
    submit_filing(new_filing_body("R-1", type="cancel_filing"))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Filing)) == 1
    assert pending() == {}


def test_the_expiry_moves_the_returned_filings_from_the_pending_list_to_the_erasures(
    submit_filing,
):
    due = submit_filing(new_filing_body("DUE"))["id"]
    later = submit_filing(new_filing_body("LATER"))["id"]
    now = utcnow()
    db.session.execute(
        sa.update(Filing).where(Filing.id == due).values(deadline=now - timedelta(minutes=1))
    )
    db.session.execute(
        sa.update(Filing).where(Filing.id == later).values(deadline=now + timedelta(hours=1))
    )
    db.session.commit()
    assert pending() == {due: now - timedelta(minutes=1), later: now + timedelta(hours=1)}

    assert sweeps.expire(now) == [due]
    db.session.commit()

    assert pending() == {later: now + timedelta(hours=1)}
    assert erasure_due() == {due: now}


def test_the_erasure_drops_its_entries_and_one_whose_filing_was_erased_blocks_nothing(
    submit_filing, monkeypatch
):
    monkeypatch.setattr(sweeps, "ERASE_CHUNK", 1)
    # Taken in without a check: straight to review.
    first = submit_filing(new_filing_body("FIRST", type="cancel_filing"))["id"]
    second = submit_filing(new_filing_body("SECOND", type="cancel_filing"))["id"]
    decided_at = utcnow() - timedelta(days=400)
    for filing_id in (first, second):
        review.reject(db.session.get(Filing, filing_id), "不符", decided_at)
    db.session.commit()
    # An entry left behind: its filing's data erased already (say, by an import).
    db.session.execute(
        sa.update(Filing)
        .where(Filing.id == first)
        .values(personal_data_sealed=None, personal_data_erased_at=decided_at)
    )
    db.session.commit()

    assert sweeps.erase_personal_data(utcnow()) == 1
    db.session.commit()

    assert erasure_due() == {}
    assert db.session.get(Filing, second).personal_data_erased_at is not None
    assert db.session.get(Filing, first).personal_data_erased_at == decided_at


def test_the_dashboard_lists_the_pending_filings_close_to_their_deadline(
    app, client, admins, submit_filing
):
    now = utcnow()
    for reference, province, hours in (
        ("SOON", "tianjin", 1),
        ("LATER", "tianjin", 3),
        ("PAST", "tianjin", -1),
        ("ELSEWHERE", "gansu", 1),
    ):
        filing_id = submit_filing(new_filing_body(reference, province=province))["id"]
        db.session.execute(
            sa.update(Filing)
            .where(Filing.id == filing_id)
            .values(deadline=now + timedelta(hours=hours))
        )
        db.session.commit()
    sign_in(client, "tj-admin")
    national = app.test_client()
    sign_in(national, "boss")

    closing = _closing(client)
    assert ">SOON<" in closing
    assert ">LATER<" not in closing and ">PAST<" not in closing
    assert ">ELSEWHERE<" not in closing  # another province's
    assert ">ELSEWHERE<" in _closing(national) and ">SOON<" in _closing(national)


def _closing(client) -> str:
    text = client.get("/admin/").get_data(as_text=True)
    return text.split("即将超时的待核验备案")[1].split("</table>")[0]


def test_the_search_for_pending_filings_reads_their_status_as_well_as_the_list(
    client, admins, submit_filing
):
    still = submit_filing(new_filing_body("STILL"))["id"]
    moved = submit_filing(new_filing_body("MOVED"))["id"]
    # A status changed without `filings.change_status` (an older node during a rolling
    # upgrade) leaves the filing's entry behind.
    db.session.execute(sa.update(Filing).where(Filing.id == moved).values(status="under_review"))
    db.session.commit()
    assert set(pending()) == {still, moved}
    sign_in(client, "tj-admin")

    text = client.get("/admin/filings?status=pending_verification").get_data(as_text=True)

    assert ">STILL<" in text and ">MOVED<" not in text
