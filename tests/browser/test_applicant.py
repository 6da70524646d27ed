"""The applicant's journeys in Chromium, each with htmx and again with JavaScript off."""

import re

import pytest
from playwright.sync_api import Page, expect

from portal.extensions import db
from portal.messages import LINK_USED_LABEL, Outcome
from portal.models import FilingTypeRule, Province
from tests.browser.actions import (
    ID_A_LAST6,
    ID_B_LAST6,
    PHONE_A,
    PHONE_B,
    WRONG_ID,
    resend,
    result_text,
    submit,
    verify,
)

KEEP = "window.__kept = document.getElementById('result')"
# True while the page is the one loaded first and its live region the same element.
KEPT = "window.__kept !== undefined && window.__kept === document.getElementById('result')"


def open_form(page: Page, mode: str, path: str = "/tianjin/verify") -> None:
    page.goto(path)
    if mode == "htmx":
        page.evaluate(KEEP)


def assert_swapped_in_place(page: Page, mode: str) -> None:
    """With htmx the page was never reloaded and the live region stayed (so it is announced);
    without JS the answer is a new page that opens on the result."""
    if mode == "htmx":
        assert page.evaluate(KEPT)
    else:
        assert page.url.endswith("/tianjin/verify#result") or page.url.endswith(
            "/tianjin/resend#result"
        )


def test_two_phones_verify_in_turn(page, mode, portal):
    filing = portal.submit_filing()
    codes = portal.codes()
    open_form(page, mode)

    first = verify(page, codes[PHONE_A], PHONE_A, ID_A_LAST6)
    assert Outcome.VERIFIED_OTHERS_PENDING.message in first
    assert "139****0002" in first
    assert PHONE_B not in first
    assert_swapped_in_place(page, mode)
    live = page.locator("#result")
    expect(live).to_have_attribute("role", "status")
    expect(live).to_have_attribute("aria-live", "polite")
    assert page.locator("form #result").count() == 0, "the live region is outside the swap"
    for field in ("code", "phone", "id_last6"):
        expect(page.locator(f"#{field}")).to_have_value("")

    last = verify(page, codes[PHONE_B], PHONE_B, ID_B_LAST6)
    assert Outcome.ALL_VERIFIED.message in last
    assert_swapped_in_place(page, mode)
    assert portal.filing_status(filing["id"]) == ("under_review", None)

    again = verify(page, codes[PHONE_B], PHONE_B, ID_B_LAST6)
    assert Outcome.ALREADY_VERIFIED.message in again


def test_the_personal_link_asks_for_the_id_last_six_alone(page, mode, portal):
    """The link from the text: no code or phone to type; once used it opens nothing."""
    portal.submit_filing()
    link = portal.links()[PHONE_A]
    open_form(page, mode, link)
    expect(page.locator("#link-form input:not([type=hidden])")).to_have_count(2)
    assert submit(page, "link", {"id_last6": WRONG_ID}) == Outcome.NOT_FOUND.message
    done = submit(page, "link", {"id_last6": ID_A_LAST6.lower()})
    assert Outcome.VERIFIED_OTHERS_PENDING.message in done
    if mode == "htmx":
        assert page.evaluate(KEPT)
    else:
        assert page.url.endswith(f"{link}#result")
    expect(page.locator("#link-form")).to_have_text(LINK_USED_LABEL)
    expect(page.locator("#id_last6, #link-lead")).to_have_count(0)
    assert page.goto(link).status == 404
    assert result_text(page) == Outcome.NOT_FOUND.message


def test_fifth_wrong_id_fails_and_returns_the_filing(page, mode, portal):
    filing = portal.submit_filing()
    code = portal.codes()[PHONE_A]
    open_form(page, mode)
    for _ in range(4):
        assert verify(page, code, PHONE_A, WRONG_ID) == Outcome.NOT_FOUND.message
    assert verify(page, code, PHONE_A, WRONG_ID) == Outcome.FAILED.message
    assert_swapped_in_place(page, mode)
    assert portal.filing_status(filing["id"]) == ("returned", "verification_failed")
    assert verify(page, code, PHONE_A, ID_A_LAST6) == Outcome.NOT_FOUND.message


def test_wrong_captcha_and_field_errors_are_shown_beside_the_fields(page, mode, portal):
    portal.submit_filing()
    code = portal.codes()[PHONE_A]
    open_form(page, mode)
    assert verify(page, code, PHONE_A, ID_A_LAST6, captcha="NOPE") == Outcome.CAPTCHA_WRONG.message
    verify(page, "12", PHONE_A, ID_A_LAST6)
    code_field = page.locator("#code")
    expect(code_field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#code-error")).to_have_text("请输入 6 位数字验证码")
    expect(code_field).to_have_attribute("aria-describedby", "code-error")
    assert result_text(page) == "请更正标出的内容后重新提交。"
    assert_swapped_in_place(page, mode)


def test_resend_sends_the_same_code_until_the_limit(page, mode, portal):
    portal.submit_filing()
    open_form(page, mode, "/tianjin/")
    page.get_by_role("link", name="短信重发").click()
    expect(page).to_have_url(re.compile(r"/tianjin/resend$"))
    expect(page.locator(".tabs [aria-current=page]")).to_have_text("短信重发")
    if mode == "htmx":
        page.evaluate(KEEP)

    assert resend(page, PHONE_A, WRONG_ID) == Outcome.RESEND_NOTHING_PENDING.message
    assert resend(page, PHONE_A, ID_A_LAST6) == Outcome.RESEND_SENT.message
    assert resend(page, PHONE_A, ID_A_LAST6) == Outcome.RESEND_SENT.message
    assert resend(page, PHONE_A, ID_A_LAST6) == Outcome.RESEND_LIMIT_REACHED.message
    assert_swapped_in_place(page, mode)
    assert portal.texts_to(PHONE_A) == 3
    assert len(set(portal.sent_codes_to(PHONE_A))) == 1


def test_captcha_refresh_gives_a_new_challenge(page, mode, portal):
    portal.submit_filing()
    code = portal.codes()[PHONE_A]
    open_form(page, mode)
    page.locator("#code").fill(code)
    challenge = page.locator("[name=captcha_id]")
    image = page.locator("#captcha-box img")
    before = challenge.get_attribute("value")
    assert before in image.get_attribute("src")

    page.get_by_role("link", name="看不清？换一张图形验证码").click()

    expect(challenge).not_to_have_value(before)
    after = challenge.get_attribute("value")
    expect(image).to_have_attribute("src", f"/tianjin/captcha/{after}.png")
    if mode == "htmx":
        assert page.evaluate(KEPT), "the page was reloaded"
        expect(page.locator("#code")).to_have_value(code)
        expect(image).to_have_js_property("naturalWidth", 160)
    else:
        expect(page).to_have_url(re.compile(r"/tianjin/verify$"))
    assert page.request.get(f"/tianjin/captcha/{after}.png").headers["content-type"] == "image/png"
    result = verify(page, code, PHONE_A, ID_A_LAST6)
    assert Outcome.VERIFIED_OTHERS_PENDING.message in result


@pytest.mark.parametrize("mode", ["no-js"])
def test_audio_captcha_reads_the_same_challenge(page, mode, portal):
    page.goto("/tianjin/verify")
    challenge = page.locator("[name=captcha_id]").get_attribute("value")
    wav = f"/tianjin/captcha/{challenge}.wav"
    expect(page.locator("audio")).to_have_attribute("src", wav)
    # The download link is the player's fallback content, for browsers without <audio>.
    assert page.locator(f"audio a[href='{wav}']").count() == 1
    clip = page.request.get(wav)
    assert clip.status == 200
    assert clip.headers["content-type"] == "audio/wav"
    assert clip.body()[:4] == b"RIFF"


@pytest.mark.parametrize("mode", ["htmx"])
def test_keyboard_alone_fills_and_submits_the_form(page, mode, portal):
    """Tab reaches every control in reading order; Enter in a field submits the form."""
    portal.submit_filing()
    code = portal.codes()[PHONE_A]
    page.goto("/tianjin/verify")
    typed = {"code": code, "phone": PHONE_A, "id_last6": ID_A_LAST6, "captcha": "TEST"}
    visited = []
    for _ in range(20):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "(() => { const e = document.activeElement;"
            " return e.id || e.getAttribute('href') || e.tagName.toLowerCase(); })()"
        )
        visited.append(focused)
        if focused in typed:
            page.keyboard.type(typed[focused])
        if focused == "verify-submit":
            break
    fields = [name for name in visited if name in typed]
    assert fields == ["code", "phone", "id_last6", "captcha"], visited
    assert visited.index("/tianjin/resend") < visited.index("code")
    assert "/tianjin/verify" in visited[visited.index("captcha") :], "the captcha refresh link"
    assert visited[-1] == "verify-submit", visited

    page.locator("#captcha").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#result")).to_contain_text(Outcome.VERIFIED_OTHERS_PENDING.message)
    assert page.evaluate("document.activeElement.id") == "captcha", "focus kept after the swap"


@pytest.mark.parametrize("mode", ["no-js"])
def test_header_names_the_provinces_administration(page, mode, portal):
    page.goto("/gansu/verify")
    header = page.locator("header.site")
    expect(header).to_contain_text("甘肃省通信管理局")
    expect(header.locator(".abbr")).to_have_text("甘")
    header.get_by_role("link", name="甘肃省通信管理局").click()
    expect(page).to_have_url(re.compile(r"/gansu/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("备案短信核验")


@pytest.mark.parametrize("mode", ["no-js"])
def test_the_help_beside_the_form_follows_the_settings(page, mode, portal):
    """Validity, resend limit and the checked filing types come from the database."""
    with portal.app.app_context():
        tianjin = db.session.get(Province, "tianjin")
        tianjin.code_validity_hours, tianjin.resend_limit = 48, 3
        db.session.get(FilingTypeRule, "cancel_filing").verification_required = True
        db.session.commit()
    page.goto("/tianjin/verify")
    help_box = page.locator("aside.help")
    expect(help_box).to_contain_text("验证码自首次发送起 48 小时内有效")
    expect(help_box).to_contain_text("每个验证码最多 3 次")
    expect(help_box).to_contain_text("次日中午 12 点")
    rules = help_box.get_by_role("table", name="各备案类型核验的手机号码")
    expect(
        rules.get_by_role("row").filter(has=page.get_by_role("rowheader", name="注销备案"))
    ).to_contain_text("主体负责人")
    expect(
        rules.get_by_role("row").filter(has=page.get_by_role("rowheader", name="注销网站"))
    ).to_contain_text("暂不验证")
    expect(
        rules.get_by_role("row").filter(has=page.get_by_role("rowheader", name="新增备案"))
    ).to_contain_text("主体负责人和网站负责人")
