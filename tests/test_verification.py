"""The verify rules of SPEC §4–§5, called directly with an explicit `now`."""

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal import deadlines, filings, verification
from portal.api.schemas import FilingIn
from portal.clock import utcnow
from portal.extensions import db
from portal.messages import Outcome
from portal.models import (
    Event,
    Filing,
    FilingStatus,
    Province,
    ReturnReason,
    SmsMessage,
    Verification,
    VerificationStatus,
)
from portal.protection.personal_data import phone_digest
from portal.verification import verify
from tests.factories import new_filing_body

PHONE_A, ID_A_LAST6 = "13900000001", "011239"
PHONE_B, ID_B_LAST6 = "13900000002", "31002X"
WRONG_ID = "123456"


@pytest.fixture
def filing(submit_filing, sent_codes) -> dict:
    """A tianjin filing with two phones (A, B), its SMS sent: its id and the codes."""
    submitted = submit_filing()
    codes = sent_codes()
    assert set(codes) == {PHONE_A, PHONE_B}
    return {"id": submitted["id"], "codes": codes}


def fresh_filing(filing_id: str) -> Filing:
    db.session.expire_all()
    return db.session.get(Filing, filing_id)


def verification_of(phone: str) -> Verification:
    db.session.expire_all()
    return db.session.scalars(
        sa.select(Verification).where(Verification.phone_digest == phone_digest(phone))
    ).one()


def events_of(filing_id: str) -> list[Event]:
    return db.session.scalars(sa.select(Event).where(Event.filing_id == filing_id)).all()


def attempt(filing: dict, phone: str, id_last6: str, now=None, code=None):
    """One verify call in tianjin, committed as the page would."""
    code = filing["codes"][phone] if code is None else code
    result = verify("tianjin", phone, code, id_last6, now or utcnow())
    db.session.commit()
    return result


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


@pytest.mark.parametrize(
    ("outcome", "spec_text"),
    [
        (Outcome.CAPTCHA_WRONG, "图形验证码错误"),
        (Outcome.VERIFIED_OTHERS_PENDING, "您的短信核验完成,请等待其他核验人进行短信核验。"),
        (Outcome.ALL_VERIFIED, "您的短信核验已全部完成,该请求将提交管局审核。"),
        (Outcome.ALREADY_VERIFIED, "您的短信核验已完成，无需重复提交。"),
        (Outcome.NOT_FOUND, "该条验证库里找不到记录或已完成验证。"),
        (Outcome.FAILED, "您的短信核验失败,请联系接入商查询核验结果。"),
    ],
)
def test_verify_messages_are_the_spec_text(outcome, spec_text):
    """A typo in the message table is caught against SPEC §5, word for word."""
    assert outcome.message == spec_text


def test_first_of_two_phones_verified_lists_the_other_masked(filing):
    now = utcnow()
    result = attempt(filing, PHONE_A, ID_A_LAST6, now)
    assert result.outcome is Outcome.VERIFIED_OTHERS_PENDING
    assert result.pending_phones == ("139****0002",)
    verified = verification_of(PHONE_A)
    assert verified.status == VerificationStatus.VERIFIED
    assert verified.verified_at == now
    assert verification_of(PHONE_B).status == VerificationStatus.PENDING
    assert fresh_filing(filing["id"]).status == FilingStatus.PENDING_VERIFICATION
    assert events_of(filing["id"]) == []


def test_last_phone_verified_sends_the_filing_to_review(filing):
    attempt(filing, PHONE_A, ID_A_LAST6)
    result = attempt(filing, PHONE_B, ID_B_LAST6)
    assert result.outcome is Outcome.ALL_VERIFIED
    assert result.pending_phones == ()
    record = fresh_filing(filing["id"])
    assert record.status == FilingStatus.UNDER_REVIEW
    assert record.return_reason is None
    [event] = events_of(filing["id"])
    assert event.type == "filing.status_changed"
    assert event.status == "under_review"


def test_verified_phone_submitted_again_is_already_verified(filing):
    attempt(filing, PHONE_A, ID_A_LAST6)
    result = attempt(filing, PHONE_A, ID_A_LAST6)
    assert result.outcome is Outcome.ALREADY_VERIFIED
    assert verification_of(PHONE_A).status == VerificationStatus.VERIFIED
    assert fresh_filing(filing["id"]).status == FilingStatus.PENDING_VERIFICATION


@pytest.mark.parametrize("miss", ["wrong_code", "other_phone_of_filing", "unknown_phone"])
def test_wrong_code_or_phone_is_not_found_and_never_counted(filing, miss):
    """Ten misses with a wrong ID count nothing: nobody can fail a filing without its SMS."""
    code = filing["codes"][PHONE_A]
    phone = PHONE_A
    if miss == "wrong_code":
        code = other_code(code)
    elif miss == "other_phone_of_filing":
        phone = PHONE_B
        code = code if code != filing["codes"][PHONE_B] else other_code(code)
    else:
        phone = "13800000009"
    for _ in range(10):
        assert attempt(filing, phone, WRONG_ID, code=code).outcome is Outcome.NOT_FOUND
    for own_phone in (PHONE_A, PHONE_B):
        record = verification_of(own_phone)
        assert (record.status, record.wrong_id_count) == (VerificationStatus.PENDING, 0)
    assert fresh_filing(filing["id"]).status == FilingStatus.PENDING_VERIFICATION
    assert attempt(filing, PHONE_A, ID_A_LAST6).outcome is Outcome.VERIFIED_OTHERS_PENDING


def test_wrong_id_one_to_four_times_is_not_found_and_counted(filing):
    for expected_count in range(1, 5):
        assert attempt(filing, PHONE_A, WRONG_ID).outcome is Outcome.NOT_FOUND
        record = verification_of(PHONE_A)
        assert (record.status, record.wrong_id_count) == ("pending", expected_count)
    assert fresh_filing(filing["id"]).status == FilingStatus.PENDING_VERIFICATION
    assert events_of(filing["id"]) == []


def test_right_id_after_four_wrong_ones_still_verifies(filing):
    for _ in range(4):
        attempt(filing, PHONE_A, WRONG_ID)
    assert attempt(filing, PHONE_A, ID_A_LAST6).outcome is Outcome.VERIFIED_OTHERS_PENDING


def test_fifth_wrong_id_returns_the_filing(filing):
    for _ in range(4):
        attempt(filing, PHONE_A, WRONG_ID)
    now = utcnow()
    result = attempt(filing, PHONE_A, WRONG_ID, now)
    assert result.outcome is Outcome.FAILED
    record = verification_of(PHONE_A)
    assert (record.status, record.wrong_id_count) == (VerificationStatus.FAILED, 5)
    returned = fresh_filing(filing["id"])
    assert returned.status == FilingStatus.RETURNED
    assert returned.return_reason == ReturnReason.VERIFICATION_FAILED
    [event] = events_of(filing["id"])
    assert event.type == "filing.status_changed"
    assert event.occurred_at == now
    assert event.status == "returned"
    assert event.return_reason == "verification_failed"


def test_right_id_after_the_fifth_wrong_one_is_not_found(filing):
    for _ in range(5):
        attempt(filing, PHONE_A, WRONG_ID)
    assert attempt(filing, PHONE_A, ID_A_LAST6).outcome is Outcome.NOT_FOUND
    assert attempt(filing, PHONE_B, ID_B_LAST6).outcome is Outcome.NOT_FOUND
    assert verification_of(PHONE_A).status == VerificationStatus.FAILED
    assert fresh_filing(filing["id"]).status == FilingStatus.RETURNED
    assert len(events_of(filing["id"])) == 1


def test_another_provinces_verification_is_not_found(filing):
    now = utcnow()
    code = filing["codes"][PHONE_A]
    assert verify("gansu", PHONE_A, code, ID_A_LAST6, now).outcome is Outcome.NOT_FOUND
    assert verify("gansu", PHONE_A, code, WRONG_ID, now).outcome is Outcome.NOT_FOUND
    db.session.commit()
    record = verification_of(PHONE_A)
    assert (record.status, record.wrong_id_count) == (VerificationStatus.PENDING, 0)


def test_deadline_is_set_when_the_first_sms_is_sent(provider):
    """The code is valid for the province's hours from its first sending, not from submission."""
    submitted_at = utcnow() - timedelta(hours=1)
    record, _ = filings.submit(
        provider[0], FilingIn.model_validate(new_filing_body()), submitted_at
    )
    db.session.flush()
    assert record.deadline is None
    db.session.commit()
    first_sent = db.session.scalar(
        sa.select(sa.func.min(SmsMessage.sent_at))
        .join(Verification)
        .where(Verification.filing_id == record.id)
    )
    assert first_sent is not None and first_sent > submitted_at
    assert db.session.get(Province, "tianjin").code_validity_hours == 24
    assert fresh_filing(record.id).deadline == first_sent + timedelta(hours=24)


def test_verify_one_second_before_the_deadline_succeeds(filing):
    deadline = fresh_filing(filing["id"]).deadline
    result = attempt(filing, PHONE_A, ID_A_LAST6, deadline - timedelta(seconds=1))
    assert result.outcome is Outcome.VERIFIED_OTHERS_PENDING


@pytest.mark.parametrize("past", [timedelta(0), timedelta(seconds=1)], ids=["at", "after"])
def test_verify_at_or_after_the_deadline_is_not_found(filing, past):
    """Enforced at verify time, whatever the sweep has done; a late wrong ID is not counted."""
    deadline = fresh_filing(filing["id"]).deadline
    assert attempt(filing, PHONE_A, ID_A_LAST6, deadline + past).outcome is Outcome.NOT_FOUND
    assert attempt(filing, PHONE_A, WRONG_ID, deadline + past).outcome is Outcome.NOT_FOUND
    record = verification_of(PHONE_A)
    assert (record.status, record.wrong_id_count) == (VerificationStatus.PENDING, 0)
    assert fresh_filing(filing["id"]).status == FilingStatus.PENDING_VERIFICATION


def test_id_last6_is_case_insensitive(filing):
    assert ID_B_LAST6 == "31002X"
    assert attempt(filing, PHONE_B, "31002x").outcome is Outcome.VERIFIED_OTHERS_PENDING
    assert verification_of(PHONE_B).status == VerificationStatus.VERIFIED


def run_in_threads(app, calls: list[tuple]) -> list:
    """Each call to `verify` in its own thread and app context, all released at once."""
    db.session.commit()
    barrier = threading.Barrier(len(calls), timeout=30)
    results: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, args: tuple) -> None:
        with app.app_context():
            try:
                barrier.wait()
                results[index] = verify(*args)
                db.session.commit()
            except BaseException as error:  # reported below, whatever it is
                db.session.rollback()
                errors.append(error)

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    return [result.outcome for result in results]


@pytest.mark.parametrize("threads", [2, 8])
def test_parallel_right_codes_give_exactly_one_success(app, filing, threads):
    call = ("tianjin", PHONE_A, filing["codes"][PHONE_A], ID_A_LAST6, utcnow())
    outcomes = run_in_threads(app, [call] * threads)
    assert outcomes.count(Outcome.VERIFIED_OTHERS_PENDING) == 1
    assert outcomes.count(Outcome.ALREADY_VERIFIED) == threads - 1
    assert verification_of(PHONE_A).status == VerificationStatus.VERIFIED
    assert fresh_filing(filing["id"]).status == FilingStatus.PENDING_VERIFICATION


def test_parallel_wrong_ids_fail_the_filing_exactly_once(app, filing):
    call = ("tianjin", PHONE_A, filing["codes"][PHONE_A], WRONG_ID, utcnow())
    outcomes = run_in_threads(app, [call] * 8)
    assert outcomes.count(Outcome.FAILED) == 1
    assert outcomes.count(Outcome.NOT_FOUND) == 7
    record = verification_of(PHONE_A)
    assert (record.status, record.wrong_id_count) == (VerificationStatus.FAILED, 5)
    returned = fresh_filing(filing["id"])
    assert (returned.status, returned.return_reason) == ("returned", "verification_failed")
    assert len(events_of(filing["id"])) == 1


def test_parallel_different_phones_send_the_filing_to_review(app, filing):
    """No lost transition: whichever finishes last sees the other verified."""
    now = utcnow()
    outcomes = run_in_threads(
        app,
        [
            ("tianjin", PHONE_A, filing["codes"][PHONE_A], ID_A_LAST6, now),
            ("tianjin", PHONE_B, filing["codes"][PHONE_B], ID_B_LAST6, now),
        ],
    )
    assert sorted(outcome.name for outcome in outcomes) == [
        "ALL_VERIFIED",
        "VERIFIED_OTHERS_PENDING",
    ]
    assert fresh_filing(filing["id"]).status == FilingStatus.UNDER_REVIEW
    [event] = events_of(filing["id"])
    assert event.status == "under_review"


def test_right_code_losing_the_race_with_the_fifth_wrong_id_is_not_told_already_verified(
    app, filing, backend, monkeypatch
):
    """A's right code has read the filing when B's fifth wrong ID returns it.

    PostgreSQL's row lock makes B wait for A; SQLite's read takes no lock, so B
    returns the filing (closing A's verification) before A writes. Either way A's
    message must match what happened to A.
    """
    for _ in range(4):
        attempt(filing, PHONE_B, WRONG_ID)
    has_read, go_on = threading.Event(), threading.Event()
    lock_filing = verification.lock

    def pausing_lock_filing(filing_id):
        locked = lock_filing(filing_id)
        if threading.current_thread().name == "right-code":
            has_read.set()
            assert go_on.wait(timeout=30)
        return locked

    monkeypatch.setattr(verification, "lock", pausing_lock_filing)
    outcomes: dict[str, Outcome] = {}
    errors: list[BaseException] = []

    def run(name: str, phone: str, id_last6: str) -> None:
        with app.app_context():
            try:
                code = filing["codes"][phone]
                outcomes[name] = verify("tianjin", phone, code, id_last6, utcnow()).outcome
                db.session.commit()
            except BaseException as error:  # reported below, whatever it is
                errors.append(error)
                go_on.set()

    right = threading.Thread(target=run, name="right-code", args=("right", PHONE_A, ID_A_LAST6))
    wrong = threading.Thread(target=run, name="fifth-wrong", args=("wrong", PHONE_B, WRONG_ID))
    run_second_while_first_pauses(right, wrong, has_read, go_on, backend)
    assert errors == []
    assert outcomes["wrong"] is Outcome.FAILED
    a_status = verification_of(PHONE_A).status
    expected = {
        VerificationStatus.VERIFIED: Outcome.VERIFIED_OTHERS_PENDING,
        VerificationStatus.FAILED: Outcome.NOT_FOUND,
    }[a_status]
    assert outcomes["right"] is expected
    assert fresh_filing(filing["id"]).status == FilingStatus.RETURNED
    assert len(events_of(filing["id"])) == 1


def test_a_right_code_entered_while_its_first_text_is_being_marked_sent_does_not_deadlock(
    app, filing, backend, monkeypatch
):
    """The applicant types the code the moment it arrives, while the worker that handed it
    over still has to record the sending (its validity starts, its filing's deadline follows).

    Verify locks the filing, then writes the verification; the worker must take the same
    locks in the same order, or PostgreSQL finds a deadlock and one of them fails."""
    db.session.execute(
        sa.update(Verification)
        .where(Verification.phone_digest == phone_digest(PHONE_A))
        .values(expires_at=None)
    )
    db.session.commit()
    has_locked, go_on = threading.Event(), threading.Event()
    lock_filing = verification.lock

    def pausing_lock_filing(filing_id):
        locked = lock_filing(filing_id)
        has_locked.set()
        assert go_on.wait(timeout=30)
        return locked

    monkeypatch.setattr(verification, "lock", pausing_lock_filing)
    outcomes: list[Outcome] = []
    errors: list[BaseException] = []

    def enter_the_code() -> None:
        with app.app_context():
            try:
                code = filing["codes"][PHONE_A]
                outcomes.append(verify("tianjin", PHONE_A, code, ID_A_LAST6, utcnow()).outcome)
                db.session.commit()
            except BaseException as error:  # reported below, whatever it is
                errors.append(error)

    def record_the_sending() -> None:
        with app.app_context():
            try:
                handed_over = verification_of(PHONE_A)
                deadlines.start([handed_over], utcnow())
                db.session.commit()
            except BaseException as error:  # reported below, whatever it is
                errors.append(error)
            finally:
                go_on.set()

    applicant = threading.Thread(target=enter_the_code)
    worker = threading.Thread(target=record_the_sending)
    run_second_while_first_pauses(applicant, worker, has_locked, go_on, backend)
    assert errors == []
    assert outcomes == [Outcome.VERIFIED_OTHERS_PENDING]
    record = verification_of(PHONE_A)
    assert record.status == VerificationStatus.VERIFIED
    assert record.expires_at is not None


def run_second_while_first_pauses(
    first: threading.Thread,
    second: threading.Thread,
    paused: threading.Event,
    go_on: threading.Event,
    backend: str,
) -> None:
    """`first` runs until it sets `paused`; `second` runs until it finishes or waits on a row
    lock; then `first` goes on, and both finish."""
    first.start()
    assert paused.wait(timeout=30)
    second.start()
    wait_until_finished_or_blocked(second, backend)
    go_on.set()
    for thread in (first, second):
        thread.join(timeout=30)
        assert not thread.is_alive()


def wait_until_finished_or_blocked(thread: threading.Thread, backend: str) -> None:
    """Until `thread` has finished or (PostgreSQL) waits on a row lock; polled, not slept."""
    deadline = time.monotonic() + 30
    while thread.is_alive() and not (backend == "postgresql" and _waiting_on_a_lock()):
        assert time.monotonic() < deadline
        thread.join(timeout=0.01)


def _waiting_on_a_lock() -> bool:
    with db.engine.connect() as connection:
        return bool(
            connection.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        )


@pytest.mark.parametrize(
    "deadline, expiry, status",
    [
        (None, None, FilingStatus.PENDING_VERIFICATION),
        (timedelta(hours=2), timedelta(hours=1), FilingStatus.PENDING_VERIFICATION),
        (None, timedelta(hours=1), FilingStatus.PENDING_VERIFICATION),
        (timedelta(hours=1), None, FilingStatus.PENDING_VERIFICATION),
        (timedelta(hours=1), timedelta(hours=2), FilingStatus.UNDER_REVIEW),
    ],
)
def test_a_wrong_id_counts_exactly_while_the_code_is_live(filing, deadline, expiry, status):
    """The counted update tests liveness in SQL (one statement with the filing's lock): it
    counts exactly when `deadlines.code_is_live` says, up to the microsecond."""
    base = utcnow().replace(microsecond=0) + timedelta(days=1)
    db.session.execute(
        sa.update(Filing)
        .where(Filing.id == filing["id"])
        .values(deadline=deadline and base + deadline, status=status)
    )
    db.session.execute(
        sa.update(Verification)
        .where(Verification.phone_digest == phone_digest(PHONE_A))
        .values(expires_at=expiry and base + expiry)
    )
    db.session.commit()
    ends = [base + limit for limit in (deadline, expiry) if limit is not None]
    moments = [base] + [end + timedelta(microseconds=step) for end in ends for step in (-1, 0, 1)]
    counted = 0
    for now in moments:
        live = deadlines.code_is_live(fresh_filing(filing["id"]), verification_of(PHONE_A), now)
        assert attempt(filing, PHONE_A, WRONG_ID, now).outcome is Outcome.NOT_FOUND
        counted += live
        assert verification_of(PHONE_A).wrong_id_count == counted
