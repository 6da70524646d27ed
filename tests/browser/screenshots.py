"""Screenshots of the applicant and admin pages for docs/screenshots/ (shown in README.md).

    .venv/bin/python -m tests.browser.screenshots

Runs the portal as the browser tests do (tests/browser/live.py), walks through the pages
in Debian's Chromium and saves a PNG of each: desktop at 1280 px wide, the verify page
also on a 360 px phone. Each run makes new data, so the codes, times and captcha images
differ from one run to the next; nothing else should.
"""

import sys
import tempfile
from pathlib import Path

import pyotp
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.admins import PASSWORD, current_code
from tests.browser.actions import (
    ID_A_LAST6,
    ID_B_LAST6,
    PHONE_A,
    PHONE_B,
    WRONG_ID,
    resend,
    submit,
    verify,
)
from tests.browser.live import LivePortal, launch_chromium, live_portal
from tests.factories import ID_C, principal

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
PHONE_C = "13700000003"
PHONE_D = "13700000004"


def shoot(page: Page, name: str, full_page: bool = True) -> None:
    page.wait_for_load_state("load")
    page.screenshot(path=OUT / f"{name}.png", full_page=full_page, animations="disabled")
    print(f"docs/screenshots/{name}.png")


def new_page(browser: Browser, portal: LivePortal, viewport: dict, **options) -> Page:
    context = browser.new_context(base_url=portal.url, viewport=viewport, locale="zh-CN", **options)
    return context.new_page()


def filing_with_one_phone(portal: LivePortal, reference: str, phone: str) -> None:
    person = principal(phone, ID_C, "王五")
    portal.submit_filing(
        reference,
        entity={"name": "丙公司", "principal": person},
        websites=[
            {"domain": f"{reference.lower()}.example.cn", "name": "丙网", "principal": person}
        ],
    )


def verify_outcomes(browser: Browser, portal: LivePortal) -> None:
    portal.submit_filing("REF-2026-0001")
    filing_with_one_phone(portal, "REF-2026-0002", PHONE_C)
    codes = portal.codes()
    page = new_page(browser, portal, DESKTOP)
    page.goto("/")
    shoot(page, "home")
    page.goto("/dev/sms")
    shoot(page, "dev-sms")
    page.goto("/tianjin/")
    shoot(page, "landing")
    page.goto("/tianjin/verify")
    shoot(page, "verify")
    verify(page, codes[PHONE_A], PHONE_A, ID_A_LAST6, captcha="NOPE")
    shoot(page, "verify-captcha-wrong")
    verify(page, codes[PHONE_A], PHONE_A, WRONG_ID)
    shoot(page, "verify-not-found")
    verify(page, codes[PHONE_A], PHONE_A, ID_A_LAST6)
    shoot(page, "verify-others-pending")
    verify(page, codes[PHONE_B], PHONE_B, ID_B_LAST6)
    shoot(page, "verify-all-verified")
    verify(page, codes[PHONE_B], PHONE_B, ID_B_LAST6)
    shoot(page, "verify-already-verified")
    for _ in range(5):
        verify(page, codes[PHONE_C], PHONE_C, WRONG_ID)
    shoot(page, "verify-failed")
    page.context.close()


def resend_answers(browser: Browser, portal: LivePortal) -> None:
    portal.submit_filing("REF-2026-0003")
    page = new_page(browser, portal, DESKTOP)
    page.goto("/tianjin/resend")
    shoot(page, "resend")
    resend(page, PHONE_A, WRONG_ID)
    shoot(page, "resend-nothing-pending")
    resend(page, PHONE_A, ID_A_LAST6)
    shoot(page, "resend-sent")
    resend(page, PHONE_A, ID_A_LAST6)
    resend(page, PHONE_A, ID_A_LAST6)
    shoot(page, "resend-limit")
    page.context.close()


def phone_views(browser: Browser, portal: LivePortal) -> None:
    """The verify page on a 360 px phone: the whole page, then where the thumb is after
    submitting (the result below the button)."""
    portal.submit_filing("REF-2026-0004")
    codes = portal.codes()
    page = new_page(browser, portal, PHONE, is_mobile=True, has_touch=True)
    page.goto("/tianjin/verify")
    shoot(page, "verify-phone-360")
    verify(page, codes[PHONE_A], PHONE_A, ID_A_LAST6)
    page.locator("#result").scroll_into_view_if_needed()
    shoot(page, "verify-phone-360-result", full_page=False)
    page.context.close()


def admin_pages(browser: Browser, portal: LivePortal) -> None:
    portal.add_admin("boss", None)
    page = new_page(browser, portal, DESKTOP)
    page.goto("/admin/login")
    page.get_by_label("用户名").fill("boss")
    page.get_by_label("密码", exact=True).fill(PASSWORD)
    page.get_by_label("动态口令或恢复码").fill(current_code())
    shoot(page, "admin-sign-in")
    page.get_by_label("动态口令或恢复码").press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("概览")
    shoot(page, "admin-dashboard")
    page.get_by_role("link", name="备案查询").click()
    page.locator("form.search").get_by_label("手机号码").press_sequentially(PHONE_A)
    expect(page.locator("#results")).to_contain_text("共 3 条")
    shoot(page, "admin-filings")
    page.locator("#results").get_by_role("link", name="REF-2026-0001").click()
    shoot(page, "admin-filing")
    page.get_by_role("link", name="开通设置").click()
    shoot(page, "admin-rollout")
    assert page.request.get("/admin/filings.csv?phone=" + PHONE_A).ok
    page.get_by_role("link", name="操作日志").click()
    page.locator("form.search").get_by_label("操作").select_option("view_filing")
    expect(page.locator("#results")).not_to_contain_text("update_rule")
    shoot(page, "admin-audit")
    page.context.close()


def api_reference(browser: Browser, portal: LivePortal) -> None:
    page = new_page(browser, portal, DESKTOP)
    page.goto("/api/docs")
    page.locator("#operations-filings-createFiling").click()
    page.locator(".examples-select").wait_for()
    shoot(page, "api-docs", full_page=False)
    page.context.close()


def enrolment_pages(browser: Browser, portal: LivePortal) -> None:
    """An account made in the console enrols at its first sign-in: QR code, then recovery codes."""
    portal.add_admin("newcomer", "tianjin", enrolled=False)
    page = new_page(browser, portal, DESKTOP)
    page.goto("/admin/login")
    page.get_by_label("用户名").fill("newcomer")
    page.get_by_label("密码", exact=True).fill(PASSWORD)
    page.get_by_label("密码", exact=True).press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("绑定验证器")
    shoot(page, "admin-enrol")
    secret = page.locator("p.secret code").inner_text()
    page.get_by_label("动态口令").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="确认绑定").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("验证器已绑定")
    shoot(page, "admin-recovery-codes")
    page.context.close()


def link_pages(browser: Browser, portal: LivePortal) -> None:
    """The personal link from a text: its form, and the same link once used."""
    filing_with_one_phone(portal, "REF-2026-0005", PHONE_D)
    link = portal.links()[PHONE_D]
    page = new_page(browser, portal, DESKTOP)
    page.goto(link)
    shoot(page, "verify-link")
    submit(page, "link", {"id_last6": ID_C[-6:]})
    page.goto(link)
    shoot(page, "verify-link-used")
    page.context.close()


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as workdir,
        live_portal(Path(workdir)) as portal,
        sync_playwright() as playwright,
    ):
        browser = launch_chromium(playwright)
        verify_outcomes(browser, portal)
        resend_answers(browser, portal)
        phone_views(browser, portal)
        admin_pages(browser, portal)
        api_reference(browser, portal)
        enrolment_pages(browser, portal)
        link_pages(browser, portal)
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
