"""The expiry sweep at scale (portal/sweeps.py): due filings read window after window by
(deadline, id) and shared out between chunks, each committed before the next, one expiry at
a time on PostgreSQL, and never waiting for a row."""

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal import filings, sweeps
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Event, Filing, LiveCode, PendingFiling, Verification
from tests.factories import new_filing_body


def _filings_due_at_once(submit_filing, count: int) -> tuple[list[str], str]:
    """`count` filings sharing one deadline, now past, and one filing not yet due."""
    ids = [submit_filing(new_filing_body(f"DUE-{n}"))["id"] for n in range(count + 1)]
    due, later = ids[:count], ids[count]
    now = utcnow()
    db.session.execute(sa.update(Filing).values(deadline=now - timedelta(minutes=1)))
    db.session.execute(
        sa.update(Filing).where(Filing.id == later).values(deadline=now + timedelta(hours=1))
    )
    db.session.commit()
    return due, later


def test_filings_due_at_the_same_moment_are_all_returned_over_several_chunks(
    submit_filing, monkeypatch
):
    monkeypatch.setattr(sweeps, "EXPIRE_CHUNK", 2)
    monkeypatch.setattr(sweeps, "EXPIRE_WINDOW", 4)
    due, later = _filings_due_at_once(submit_filing, 5)

    returned = sweeps.expire(utcnow())
    db.session.commit()

    assert sorted(returned) == sorted(due)
    statuses = dict(db.session.execute(sa.select(Filing.id, Filing.status)).all())
    assert {statuses[filing_id] for filing_id in due} == {"returned"}
    assert statuses[later] == "pending_verification"
    expired = db.session.scalars(
        sa.select(Verification.filing_id).where(Verification.status == "expired")
    ).all()
    assert sorted(set(expired)) == sorted(due)
    held = db.session.scalars(
        sa.select(Verification.filing_id).join(
            LiveCode, LiveCode.verification_id == Verification.id
        )
    ).all()
    assert set(held) == {later}  # the codes freed in parts of id_lists.SQLITE_PARAMETERS on SQLite
    assert sorted(db.session.scalars(sa.select(Event.filing_id))) == sorted(due)


def _filings_due_one_after_another(submit_filing, count: int) -> list[str]:
    """`count` filings due a minute apart, all now past, in the order given."""
    ids = [submit_filing(new_filing_body(f"DUE-{n}"))["id"] for n in range(count)]
    now = utcnow()
    for n, filing_id in enumerate(ids):
        deadline = now - timedelta(minutes=count - n)
        db.session.execute(
            sa.update(Filing).where(Filing.id == filing_id).values(deadline=deadline)
        )
    db.session.commit()
    return ids


def test_each_chunk_takes_every_nth_entry_of_a_window_in_deadline_order(submit_filing, monkeypatch):
    """Filings due together lie together: shared out, a chunk updates few rows of each page."""
    monkeypatch.setattr(sweeps, "EXPIRE_CHUNK", 2)
    monkeypatch.setattr(sweeps, "EXPIRE_WINDOW", 4)
    due = _filings_due_one_after_another(submit_filing, 5)

    chunks = list(sweeps._chunks_due(utcnow()))

    assert chunks == [[due[0], due[2]], [due[1], due[3]], [due[4]]]


def test_a_sweep_of_several_chunks_commits_each_before_the_next(submit_filing, monkeypatch):
    """What an expiry of many chunks has done stays done if it fails later: only the last
    chunk is left to the caller's commit."""
    monkeypatch.setattr(sweeps, "EXPIRE_CHUNK", 2)
    monkeypatch.setattr(sweeps, "EXPIRE_WINDOW", 4)
    due = _filings_due_one_after_another(submit_filing, 5)

    assert sorted(sweeps.expire(utcnow())) == sorted(due)
    db.session.rollback()

    statuses = dict(db.session.execute(sa.select(Filing.id, Filing.status)).all())
    assert [statuses[filing_id] for filing_id in due] == ["returned"] * 4 + ["pending_verification"]
    assert db.session.scalars(sa.select(PendingFiling.filing_id)).all() == [due[4]]
    assert sweeps.expire(utcnow()) == [due[4]]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_second_expiry_leaves_the_filings_to_the_one_under_way(app, submit_filing):
    due, _ = _filings_due_at_once(submit_filing, 3)
    assert sorted(sweeps.expire(utcnow())) == sorted(due)  # not committed: it holds its rows
    second: list = []

    def sweep_beside() -> None:
        with app.app_context():
            # Waiting for the first one's rows would be the failure: give up on them at once.
            db.session.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            try:
                second.append(sweeps.expire(utcnow()))
            except sa.exc.OperationalError as error:
                second.append(error)
            finally:
                db.session.rollback()
                db.session.remove()

    beside = threading.Thread(target=sweep_beside)
    beside.start()
    beside.join(timeout=30)
    db.session.commit()

    assert second == [[]]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event)) == len(due)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_the_expiry_leaves_a_filing_another_transaction_holds_to_the_next_sweep(app, submit_filing):
    """Waiting for it could deadlock with a transaction that locks several filings in id order
    (a worker recording its texts' sending, portal/deadlines.py), while it holds others."""
    due, _ = _filings_due_at_once(submit_filing, 3)
    held, go_on = threading.Event(), threading.Event()

    def hold_the_first() -> None:
        with app.app_context():
            filings.lock(due[0])
            held.set()
            go_on.wait(timeout=30)
            db.session.rollback()
            db.session.remove()

    holder = threading.Thread(target=hold_the_first)
    holder.start()
    assert held.wait(timeout=30)
    try:
        db.session.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
        returned = sweeps.expire(utcnow())
        db.session.commit()
    finally:
        go_on.set()
        holder.join(timeout=30)

    assert sorted(returned) == sorted(due[1:])
    assert sweeps.expire(utcnow()) == [due[0]]
