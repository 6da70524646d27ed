"""The verify page `/<slug>/verify` through the test client: outcomes, captcha, forms, tenants."""

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal.clock import shanghai_date, utcnow
from portal.extensions import db
from portal.messages import FIELD_ERRORS, PAGE_NOT_FOUND, PROVINCE_NOT_OPEN, Outcome
from portal.models import (
    CaptchaChallenge,
    Filing,
    Province,
    Verification,
)
from portal.protection.personal_data import phone_digest
from tests.factories import CAPTCHA, domain_state, form_fields

PHONE_A, ID_A_LAST6 = "13900000001", "011239"
PHONE_B, ID_B_LAST6 = "13900000002", "31002X"
WRONG_ID = "123456"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def env(env):
    """These tests send many attempts from one client; throttling is tested elsewhere."""
    return {**env, "RATELIMIT_ENABLED": "false"}


@pytest.fixture
def codes(submit_filing, sent_codes) -> dict[str, str]:
    """A tianjin filing with phones A and B is submitted; the codes they were sent."""
    submit_filing()
    return sent_codes()


def text(response) -> str:
    return response.get_data(as_text=True)


def post_verify(client, values: dict, *, slug="tianjin", fields=None, headers=None):
    """POST the verify form; the hidden fields come from a fresh GET unless given."""
    if fields is None:
        fields = form_fields(text(client.get(f"/{slug}/verify")))
    data = {**fields, "captcha": CAPTCHA, **values}
    return client.post(f"/{slug}/verify", data=data, headers=headers or {})


def values_for(codes: dict, phone: str, id_last6: str) -> dict:
    return {"code": codes[phone], "phone": phone, "id_last6": id_last6}


def status_of(phone: str) -> tuple[str, int]:
    db.session.expire_all()
    row = db.session.execute(
        sa.select(Verification.status, Verification.wrong_id_count).where(
            Verification.phone_digest == phone_digest(phone),
            Verification.province_slug == "tianjin",
        )
    ).one()
    return tuple(row)


def filing_status() -> tuple[str, str | None]:
    db.session.expire_all()
    return tuple(db.session.execute(sa.select(Filing.status, Filing.return_reason)).one())


def input_tag(page: str, name: str) -> str:
    return re.search(rf'<input[^>]*\bname="{name}"[^>]*>', page).group(0)


def set_live_from(slug: str, live_from) -> None:
    db.session.execute(sa.update(Province).where(Province.slug == slug).values(live_from=live_from))
    db.session.commit()


# The page


def test_get_renders_the_verify_form(client):
    response = client.get("/tianjin/verify")
    assert response.status_code == 200
    assert "HX-Request" in response.vary
    page = text(response)
    code = input_tag(page, "code")
    assert 'inputmode="numeric"' in code
    assert 'autocomplete="one-time-code"' in code
    for name in ("phone", "id_last6", "captcha", "csrf_token", "captcha_id"):
        assert input_tag(page, name)
    assert "<html" in page


@pytest.mark.parametrize(
    ("slug", "authority"), [("tianjin", "天津市通信管理局"), ("gansu", "甘肃省通信管理局")]
)
def test_page_shows_the_province_authority(client, slug, authority):
    response = client.get(f"/{slug}/verify")
    assert response.status_code == 200
    assert authority in text(response)


def test_post_without_js_returns_the_full_page(client, codes):
    response = post_verify(client, values_for(codes, PHONE_A, ID_A_LAST6))
    assert response.status_code == 200
    assert "HX-Request" in response.vary
    assert "<html" in text(response)
    assert Outcome.VERIFIED_OTHERS_PENDING.message in text(response)


def test_htmx_post_returns_only_the_fragment(client, codes):
    response = post_verify(client, values_for(codes, PHONE_A, ID_A_LAST6), headers=HTMX)
    assert response.status_code == 200
    assert "HX-Request" in response.vary
    page = text(response)
    assert "<html" not in page
    assert "<body" not in page
    assert "<form" in page
    assert Outcome.VERIFIED_OTHERS_PENDING.message in page
    assert form_fields(page)["captcha_id"]


def test_htmx_history_restore_gets_the_full_page(client):
    response = client.get("/tianjin/verify", headers={**HTMX, "HX-History-Restore-Request": "true"})
    assert "<html" in text(response)
    assert "HX-Request" in response.vary


# Outcomes (SPEC §5)


def test_first_phone_verified_lists_the_remaining_phone_masked(client, codes):
    response = post_verify(client, values_for(codes, PHONE_A, ID_A_LAST6))
    page = text(response)
    assert "您的短信核验完成,请等待其他核验人进行短信核验。" in page
    assert "139****0002" in page
    assert PHONE_B not in page
    assert status_of(PHONE_A) == ("verified", 0)
    assert filing_status() == ("pending_verification", None)


def test_last_phone_verified_sends_the_filing_to_review(client, codes):
    post_verify(client, values_for(codes, PHONE_A, ID_A_LAST6))
    response = post_verify(client, values_for(codes, PHONE_B, ID_B_LAST6))
    assert response.status_code == 200
    assert "您的短信核验已全部完成,该请求将提交管局审核。" in text(response)
    assert filing_status() == ("under_review", None)


def test_verified_phone_submitted_again_is_already_verified(client, codes):
    post_verify(client, values_for(codes, PHONE_A, ID_A_LAST6))
    response = post_verify(client, values_for(codes, PHONE_A, ID_A_LAST6))
    assert "您的短信核验已完成，无需重复提交。" in text(response)
    assert Outcome.ALREADY_VERIFIED.message in text(response)


def test_wrong_code_is_not_found_and_not_counted(client, codes):
    wrong_code = f"{(int(codes[PHONE_A]) + 1) % 1_000_000:06d}"
    response = post_verify(client, {"code": wrong_code, "phone": PHONE_A, "id_last6": WRONG_ID})
    assert response.status_code == 200
    assert "该条验证库里找不到记录或已完成验证。" in text(response)
    assert status_of(PHONE_A) == ("pending", 0)


def test_fifth_wrong_id_returns_the_filing(client, codes):
    wrong = {**values_for(codes, PHONE_A, ID_A_LAST6), "id_last6": WRONG_ID}
    for count in range(1, 5):
        assert Outcome.NOT_FOUND.message in text(post_verify(client, wrong))
        assert status_of(PHONE_A) == ("pending", count)
    response = post_verify(client, wrong)
    assert "您的短信核验失败,请联系接入商查询核验结果。" in text(response)
    assert status_of(PHONE_A) == ("failed", 5)
    assert filing_status() == ("returned", "verification_failed")
    response = post_verify(client, values_for(codes, PHONE_A, ID_A_LAST6))
    assert Outcome.NOT_FOUND.message in text(response)


def test_lower_case_x_in_id_last6_verifies(client, codes):
    response = post_verify(client, values_for(codes, PHONE_B, "31002x"))
    assert Outcome.VERIFIED_OTHERS_PENDING.message in text(response)
    assert status_of(PHONE_B) == ("verified", 0)


def test_other_provinces_page_does_not_find_the_verification(client, codes):
    for id_last6 in (ID_A_LAST6, WRONG_ID):
        response = post_verify(client, values_for(codes, PHONE_A, id_last6), slug="gansu")
        assert Outcome.NOT_FOUND.message in text(response)
    assert status_of(PHONE_A) == ("pending", 0)


# The captcha


def test_wrong_captcha_is_refused(client, codes):
    response = post_verify(client, {**values_for(codes, PHONE_A, ID_A_LAST6), "captcha": "NOPE"})
    assert response.status_code == 422
    assert "图形验证码错误" in text(response)
    assert status_of(PHONE_A) == ("pending", 0)


def test_captcha_cannot_be_used_twice(client, codes):
    fields = form_fields(text(client.get("/tianjin/verify")))
    first = post_verify(client, values_for(codes, PHONE_A, ID_A_LAST6), fields=fields)
    assert Outcome.VERIFIED_OTHERS_PENDING.message in text(first)
    second = post_verify(client, values_for(codes, PHONE_B, ID_B_LAST6), fields=fields)
    assert second.status_code == 422
    assert Outcome.CAPTCHA_WRONG.message in text(second)
    assert status_of(PHONE_B) == ("pending", 0)


def test_captcha_cannot_be_used_twice_with_a_replayed_session(client, codes):
    """The session cookie is client side: single use is enforced by the server's row."""
    fields = form_fields(text(client.get("/tianjin/verify")))
    old_session = client.get_cookie("session").value
    post_verify(client, values_for(codes, PHONE_A, ID_A_LAST6), fields=fields)
    client.set_cookie("session", old_session)
    second = post_verify(client, values_for(codes, PHONE_B, ID_B_LAST6), fields=fields)
    assert Outcome.CAPTCHA_WRONG.message in text(second)
    assert status_of(PHONE_B) == ("pending", 0)


def test_captcha_from_another_session_is_refused(app, client, codes):
    own = form_fields(text(client.get("/tianjin/verify")))
    with app.app_context():  # a request context of its own, as in production: no shared `g`
        others = form_fields(text(app.test_client().get("/tianjin/verify")))
    fields = {"csrf_token": own["csrf_token"], "captcha_id": others["captcha_id"]}
    response = post_verify(client, values_for(codes, PHONE_A, ID_A_LAST6), fields=fields)
    assert response.status_code == 422
    assert Outcome.CAPTCHA_WRONG.message in text(response)
    assert status_of(PHONE_A) == ("pending", 0)


def _age_captcha(fields: dict, age: timedelta) -> None:
    db.session.execute(
        sa.update(CaptchaChallenge)
        .where(CaptchaChallenge.id == fields["captcha_id"])
        .values(created_at=utcnow() - age)
    )
    db.session.commit()


def test_captcha_older_than_five_minutes_is_refused(client, codes):
    fields = form_fields(text(client.get("/tianjin/verify")))
    _age_captcha(fields, timedelta(minutes=5, seconds=1))
    response = post_verify(client, values_for(codes, PHONE_A, ID_A_LAST6), fields=fields)
    assert response.status_code == 422
    assert Outcome.CAPTCHA_WRONG.message in text(response)
    assert status_of(PHONE_A) == ("pending", 0)


def test_captcha_younger_than_five_minutes_is_accepted(client, codes):
    fields = form_fields(text(client.get("/tianjin/verify")))
    _age_captcha(fields, timedelta(minutes=4, seconds=50))
    response = post_verify(client, values_for(codes, PHONE_A, ID_A_LAST6), fields=fields)
    assert Outcome.VERIFIED_OTHERS_PENDING.message in text(response)


def test_every_response_carries_a_fresh_captcha(client, codes):
    responses = [
        client.get("/tianjin/verify"),
        post_verify(client, values_for(codes, PHONE_A, ID_A_LAST6)),
        post_verify(client, {**values_for(codes, PHONE_B, ID_B_LAST6), "captcha": "NOPE"}),
        post_verify(client, {**values_for(codes, PHONE_B, ID_B_LAST6), "code": "12345"}),
        post_verify(client, values_for(codes, PHONE_B, WRONG_ID), headers=HTMX),
    ]
    ids = [form_fields(text(response))["captcha_id"] for response in responses]
    assert all(ids)
    assert len(set(ids)) == len(ids)
    stored = set(db.session.scalars(sa.select(CaptchaChallenge.id)))
    assert ids[-1] in stored


# Form validation and CSRF


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("phone", "12900000001", "phone_format"),
        ("phone", "1390000000", "phone_format"),
        ("code", "12345", "code_format"),
        ("code", "12345a", "code_format"),
        ("id_last6", "31002-", "id_last6_format"),
        ("id_last6", "1234567", "id_last6_format"),
        ("captcha", "", "captcha_required"),
    ],
)
@pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "htmx"])
def test_field_errors_are_422_and_change_nothing(client, codes, field, value, error, headers):
    before = domain_state()
    values = {**values_for(codes, PHONE_A, ID_A_LAST6), field: value}
    response = post_verify(client, values, headers=headers)
    assert response.status_code == 422
    assert FIELD_ERRORS[error] in text(response)
    assert ("<html" in text(response)) is not bool(headers)
    assert "HX-Request" in response.vary
    assert domain_state() == before


def test_post_without_csrf_token_is_refused(client, codes):
    fields = form_fields(text(client.get("/tianjin/verify")))
    before = domain_state()
    challenges = set(db.session.scalars(sa.select(CaptchaChallenge.id)))
    response = post_verify(
        client,
        values_for(codes, PHONE_A, ID_A_LAST6),
        fields={"captcha_id": fields["captcha_id"]},
    )
    assert response.status_code == 400
    assert domain_state() == before
    assert set(db.session.scalars(sa.select(CaptchaChallenge.id))) == challenges


# Provinces


def test_unknown_province_is_not_found(client):
    response = client.get("/atlantis/verify")
    assert response.status_code == 404
    assert PAGE_NOT_FOUND in text(response)


@pytest.mark.parametrize("live_from", ["tomorrow", None])
def test_province_not_live_serves_the_not_open_page(client, live_from):
    """Changing the rollout table takes effect on the next request, without a restart."""
    today = shanghai_date(utcnow())
    set_live_from("tianjin", today + timedelta(days=1) if live_from else None)
    for response in (client.get("/tianjin/verify"), client.post("/tianjin/verify")):
        assert response.status_code == 404
        assert PROVINCE_NOT_OPEN in text(response)
        assert 'name="code"' not in text(response)
    set_live_from("tianjin", today - timedelta(days=1))
    assert client.get("/tianjin/verify").status_code == 200


def test_province_live_from_today_is_served(client):
    set_live_from("tianjin", shanghai_date(utcnow()))
    assert client.get("/tianjin/verify").status_code == 200


FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


def test_full_width_digits_are_read_as_digits(client, codes):
    """What a Chinese IME in full-width mode types (０–９, Ｘ) is the same code, phone and ID."""
    values = values_for(codes, PHONE_B, ID_B_LAST6)
    response = post_verify(
        client, {name: value.translate(FULL_WIDTH) for name, value in values.items()}
    )
    assert Outcome.VERIFIED_OTHERS_PENDING.message in text(response)
    assert status_of(PHONE_B) == ("verified", 0)


@pytest.mark.parametrize(
    ("field", "error"),
    [("code", "code_format"), ("phone", "phone_format"), ("id_last6", "id_last6_format")],
)
def test_other_scripts_digits_are_a_field_error(client, codes, field, error):
    """`\\d` in the SPEC's patterns means 0–9, not any Unicode digit (here Arabic-Indic)."""
    arabic = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    values = values_for(codes, PHONE_A, ID_A_LAST6)
    before = domain_state()
    response = post_verify(client, {**values, field: values[field].translate(arabic)})
    assert response.status_code == 422
    assert FIELD_ERRORS[error] in text(response)
    assert domain_state() == before
