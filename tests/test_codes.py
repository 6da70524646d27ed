"""SPEC §4: codes are 6 digits, random, never reused across live verifications."""

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from portal import filings
from portal.extensions import db
from portal.models import Filing, LiveCode, Verification
from portal.protection import sealing
from portal.protection.personal_data import sealed_phone
from tests.factories import ID_B, new_filing_body, principal


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


def test_two_parallel_intakes_drawing_the_same_codes_both_take_their_filing_in(
    app, provider, sent_codes, monkeypatch
):
    """Both draw the same two codes and check them before either has written (a barrier holds
    them there): the first to commit wins, the unique index refuses the other, which draws
    again and is taken in with other codes. Neither answers 500."""
    drawn = threading.local()
    monkeypatch.setattr(filings.secrets, "randbelow", lambda _: next(drawn.codes))
    checked_together = threading.Barrier(2, timeout=10)
    real_held = filings._codes_held

    def held_as_if_concurrent(province_slug, codes):
        if not drawn.checked:  # the first check of each intake: the other's rows unseen yet
            drawn.checked = True
            checked_together.wait()
            return set()
        return real_held(province_slug, codes)

    monkeypatch.setattr(filings, "_codes_held", held_as_if_concurrent)
    statuses = {}

    def intake(reference: str, phones: tuple[str, str]) -> None:
        drawn.codes, drawn.checked = iter([111111, 222222, 333333, 444444]), False
        body = new_filing_body(reference)
        body["entity"]["principal"]["phone"] = phones[0]
        body["websites"][0]["principal"]["phone"] = phones[1]
        response = app.test_client().post("/api/v1/filings", json=body, headers=provider[1])
        statuses[reference] = response.status_code

    threads = [
        threading.Thread(target=intake, args=("ONE", ("13900000001", "13900000002"))),
        threading.Thread(target=intake, args=("TWO", ("13700000001", "13700000002"))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert statuses == {"ONE": 201, "TWO": 201}
    digests = live_codes()
    assert len(digests) == 4 and len(set(digests)) == 4
    assert sorted(sent_codes().values()) == ["111111", "222222", "333333", "444444"]


def test_an_intake_that_keeps_clashing_is_a_503_problem_and_stores_nothing(
    submit_filing, client, provider, sent_codes, monkeypatch
):
    submit_filing(new_filing_body("FIRST"))
    taken = int(sent_codes()["13900000001"])
    monkeypatch.setattr(filings.secrets, "randbelow", lambda _: taken)
    monkeypatch.setattr(filings, "_codes_held", lambda province_slug, codes: set())
    body = new_filing_body("SECOND", type="new_website")  # one phone: one code to draw

    response = client.post("/api/v1/filings", json=body, headers=provider[1])

    assert response.status_code == 503
    assert response.get_json()["code"] == "try_again"
    assert len(live_codes()) == 2
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Filing)) == 1


def test_a_filing_with_many_phones_holds_a_live_code_and_sends_a_text_for_each(
    submit_filing, sent_codes
):
    """Six codes: more parameters than psycopg keeps a statement's parse for, and a statement
    compiled for that count (portal/filings.py `_codes_statement`)."""
    body = new_filing_body("MANY")
    body["websites"] = [
        {"domain": f"s{i}.example.cn", "name": "示例网", "principal": principal(f"1370000000{i}", ID_B)}
        for i in range(5)
    ]  # fmt: skip

    answer = submit_filing(body)

    assert [v["status"] for v in answer["verifications"]] == ["pending"] * 6
    verifications = db.session.scalars(sa.select(Verification)).all()
    held = db.session.execute(sa.select(LiveCode.verification_id, LiveCode.code_digest)).all()
    assert sorted(held) == sorted((v.id, v.code_digest) for v in verifications)
    assert all(v.link_digest and v.noon_resend_at and v.wrong_id_count == 0 for v in verifications)
    assert len(set(sent_codes().values())) == 6
