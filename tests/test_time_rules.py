"""The time rules of SPEC §4: deadlines, the noon resend, manual resends, the expiry sweep."""

from datetime import datetime

import pytest
import sqlalchemy as sa

from portal import sweeps
from portal.clock import SHANGHAI
from portal.extensions import db
from portal.filings import send_codes
from portal.messages import Outcome
from portal.models import Event, Filing, MessageKind, Province, SmsMessage, Verification
from portal.resend import resend
from tests.factories import CAPTCHA, form_fields


def shanghai(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=SHANGHAI)


@pytest.fixture
def submitted_at(clock, submit_filing):
    """Submits the standard two-phone filing at a given Shanghai time; returns it from the DB."""

    def submit(moment: datetime) -> Filing:
        clock.now = moment
        filing_id = submit_filing()["id"]
        return db.session.get(Filing, filing_id)

    return submit


def tianjin() -> Province:
    return db.session.get(Province, "tianjin")


def texts_sent(kind: MessageKind) -> int:
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(SmsMessage).where(SmsMessage.kind == kind)
    )


def test_deadline_is_first_sending_plus_the_province_validity(submitted_at):
    filing = submitted_at(shanghai(2, 14))
    assert filing.deadline == shanghai(3, 14)


def test_province_validity_setting_sets_the_deadline(submitted_at):
    tianjin().code_validity_hours = 48
    db.session.commit()
    filing = submitted_at(shanghai(2, 14))
    assert filing.deadline == shanghai(4, 14)


def test_afternoon_submission_gets_the_noon_resend_once(submitted_at, sent_codes, env):
    filing = submitted_at(shanghai(2, 14))
    first_codes = sent_codes()

    assert sweeps.noon_resend(shanghai(3, 11, 59, 59)) == []
    resent = sweeps.noon_resend(shanghai(3, 12))
    db.session.commit()
    assert len(resent) == 2
    assert sweeps.noon_resend(shanghai(3, 12, 30)) == []
    db.session.commit()

    assert texts_sent(MessageKind.NOON_RESEND) == 2
    assert sent_codes() == first_codes, "the noon resend sends the same codes"
    assert all(v.resend_count == 0 for v in filing.verifications), "not a manual resend"
    assert db.session.get(Filing, filing.id).deadline == shanghai(3, 14)


def test_morning_submission_gets_no_noon_resend(submitted_at):
    """Submitted at 10:00, its deadline (10:00 next day) falls before the next noon."""
    submitted_at(shanghai(2, 10))
    assert sweeps.noon_resend(shanghai(3, 12)) == []
    assert texts_sent(MessageKind.NOON_RESEND) == 0


def test_noon_resend_skips_verified_phones(submitted_at, sent_codes):
    from portal.verification import verify

    submitted_at(shanghai(2, 14))
    code = sent_codes()["13900000001"]
    verify("tianjin", "13900000001", code, "011239", shanghai(2, 15))
    db.session.commit()
    assert len(sweeps.noon_resend(shanghai(3, 12))) == 1


def test_two_manual_resends_then_the_limit(submitted_at, sent_codes):
    submitted_at(shanghai(2, 14))
    code = sent_codes()["13900000001"]
    outcomes = []
    for minute in range(3):
        outcomes.append(resend(tianjin(), "13900000001", "011239", shanghai(2, 15, minute)))
        db.session.commit()
    assert outcomes == [
        Outcome.RESEND_SENT,
        Outcome.RESEND_SENT,
        Outcome.RESEND_LIMIT_REACHED,
    ]
    assert texts_sent(MessageKind.RESEND) == 2
    assert sent_codes()["13900000001"] == code, "a resend sends the same code"


def test_resend_limit_is_a_province_setting(submitted_at):
    tianjin().resend_limit = 3
    db.session.commit()
    submitted_at(shanghai(2, 14))
    outcomes = [resend(tianjin(), "13900000001", "011239", shanghai(2, 15)) for _ in range(4)]
    assert outcomes.count(Outcome.RESEND_SENT) == 3
    assert outcomes[-1] == Outcome.RESEND_LIMIT_REACHED


def test_resend_does_not_move_the_deadline(submitted_at):
    filing = submitted_at(shanghai(2, 14))
    resend(tianjin(), "13900000001", "011239", shanghai(3, 13))
    db.session.commit()
    assert db.session.get(Filing, filing.id).deadline == shanghai(3, 14)


def test_resend_after_the_deadline_is_refused(submitted_at):
    submitted_at(shanghai(2, 14))
    outcome = resend(tianjin(), "13900000001", "011239", shanghai(3, 14, 0, 1))
    assert outcome == Outcome.RESEND_NOTHING_PENDING


def test_resend_with_a_wrong_id_finds_nothing_and_counts_nothing(submitted_at):
    filing = submitted_at(shanghai(2, 14))
    outcome = resend(tianjin(), "13900000001", "000000", shanghai(2, 15))
    assert outcome == Outcome.RESEND_NOTHING_PENDING
    assert all(v.resend_count == 0 and v.wrong_id_count == 0 for v in filing.verifications)


def test_resend_of_another_province_finds_nothing(submitted_at):
    submitted_at(shanghai(2, 14))
    gansu = db.session.get(Province, "gansu")
    assert resend(gansu, "13900000001", "011239", shanghai(2, 15)) == (
        Outcome.RESEND_NOTHING_PENDING
    )


def test_expiry_sweep_returns_the_filing_and_expires_its_verifications(submitted_at):
    filing = submitted_at(shanghai(2, 14))
    assert sweeps.expire(shanghai(3, 13, 59, 59)) == []
    assert sweeps.expire(shanghai(3, 14)) == [filing.id]
    db.session.commit()
    filing = db.session.get(Filing, filing.id, populate_existing=True)
    assert (filing.status, filing.return_reason) == ("returned", "expired")
    statuses = db.session.scalars(
        sa.select(Verification.status).where(Verification.filing_id == filing.id)
    ).all()
    assert statuses == ["expired", "expired"]
    events = db.session.scalars(sa.select(Event).where(Event.filing_id == filing.id)).all()
    assert [(e.status, e.return_reason) for e in events] == [("returned", "expired")]


def test_expiry_sweep_is_idempotent(submitted_at):
    submitted_at(shanghai(2, 14))
    assert len(sweeps.expire(shanghai(3, 15))) == 1
    db.session.commit()
    assert sweeps.expire(shanghai(3, 16)) == []
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event)) == 1


def test_a_filing_whose_texts_are_still_retried_does_not_expire(submitted_at, monkeypatch, app):
    """Its deadline starts with a text sent, or once every text has failed for good
    (tests/test_code_validity.py); while a retry is left, none."""

    class Down:
        def send(self, text):
            raise ConnectionError("gateway down")

    monkeypatch.setitem(app.extensions, "sms", Down())
    filing = submitted_at(shanghai(2, 14))
    assert filing.deadline is None
    assert sweeps.expire(shanghai(9, 14)) == []


def test_verified_filing_is_not_expired(submitted_at, sent_codes):
    from portal.verification import verify

    filing = submitted_at(shanghai(2, 14))
    codes = sent_codes()
    verify("tianjin", "13900000001", codes["13900000001"], "011239", shanghai(2, 15))
    verify("tianjin", "13900000002", codes["13900000002"], "31002X", shanghai(2, 15))
    db.session.commit()
    assert sweeps.expire(shanghai(3, 15)) == []
    assert db.session.get(Filing, filing.id, populate_existing=True).status == "under_review"


def test_api_times_are_shanghai_iso_8601(submitted_at, client, provider):
    filing = submitted_at(shanghai(2, 14))
    body = client.get(f"/api/v1/filings/{filing.id}", headers=provider[1]).get_json()
    assert body["deadline"] == "2026-11-03T14:00:00+08:00"
    assert body["created_at"] == "2026-11-02T14:00:00+08:00"


def post_resend(client, phone: str, id_last6: str, **headers):
    page = client.get("/tianjin/resend").get_data(as_text=True)
    data = {**form_fields(page), "captcha": CAPTCHA, "phone": phone, "id_last6": id_last6}
    return client.post("/tianjin/resend", data=data, headers=headers)


def test_resend_page_answers_with_the_spec_messages(submitted_at, client):
    submitted_at(shanghai(2, 14))
    texts = [post_resend(client, "13900000001", "011239").get_data(as_text=True) for _ in range(3)]
    assert "您的短信已发送成功" in texts[0]
    assert "您的短信已发送成功" in texts[1]
    assert "重发次数已到上限，若不能及时完成短信核验，您的备案申请将会被退回。" in texts[2]
    nothing = post_resend(client, "13900000009", "011239").get_data(as_text=True)
    assert "您暂无待短信核验的备案申请，无需重发短信。" in nothing


def test_resend_page_serves_a_fragment_to_htmx(submitted_at, client):
    submitted_at(shanghai(2, 14))
    response = post_resend(client, "13900000001", "011239", **{"HX-Request": "true"})
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" not in text and "您的短信已发送成功" in text
    assert "HX-Request" in response.headers["Vary"]


def test_resend_page_refuses_bad_input_with_422(client):
    response = post_resend(client, "12345", "0112")
    assert response.status_code == 422
    assert "请输入 11 位中国大陆手机号码" in response.get_data(as_text=True)


def test_resend_page_checks_the_captcha(submitted_at, client):
    submitted_at(shanghai(2, 14))
    page = client.get("/tianjin/resend").get_data(as_text=True)
    data = {**form_fields(page), "captcha": "WRONG", "phone": "13900000001", "id_last6": "011239"}
    response = client.post("/tianjin/resend", data=data)
    assert response.status_code == 422
    assert "图形验证码错误" in response.get_data(as_text=True)
    assert texts_sent(MessageKind.RESEND) == 0


def test_deadline_is_not_moved_by_a_later_text(submitted_at, clock):
    """Only a code's first text sent starts its clock; later ones leave the deadline alone."""
    filing = submitted_at(shanghai(2, 14))
    assert filing.deadline == shanghai(3, 14)
    clock.now = shanghai(2, 20)
    send_codes(filing.verifications, MessageKind.RESEND, clock.now)
    db.session.commit()  # in-process: sent now

    assert texts_sent(MessageKind.RESEND) == 2
    assert db.session.get(Filing, filing.id, populate_existing=True).deadline == shanghai(3, 14)
