"""An account made in the console enrols at its first sign-in, in the browser: the QR code
shows under the page's own CSP, the secret typed by hand works, the recovery codes are shown
once; then the code it confirmed with is refused when replayed. axe finds no serious violation on those pages."""

import re

import pyotp
from playwright.sync_api import Page, expect

from tests.admins import PASSWORD
from tests.browser.test_accessibility import serious_violations


def enter(page: Page, username: str, otp: str = "") -> None:
    page.goto("/admin/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码", exact=True).fill(PASSWORD)
    page.get_by_label("动态口令或恢复码").fill(otp)
    page.get_by_role("button", name="登录").click()


def test_a_newcomer_enrols_and_its_code_is_good_once(js_page, portal):
    page = js_page
    portal.add_admin("newcomer", "tianjin", enrolled=False)
    enter(page, "newcomer")
    expect(page).to_have_url(re.compile(r"/admin/enrol$"))
    qr = page.get_by_role("img", name="绑定验证器的二维码")
    expect(qr).to_be_visible()
    assert qr.evaluate("image => image.complete && image.naturalWidth > 100"), "the CSP let it load"
    totp = pyotp.TOTP(page.locator("p.secret code").inner_text())

    code = totp.now()
    page.get_by_label("动态口令").fill(code)
    page.get_by_role("button", name="确认绑定").click()
    expect(page.locator(".recovery-codes li")).to_have_count(10)
    page.get_by_role("link", name="我已保存，继续").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("概览")

    page.get_by_role("button", name="退出").click()
    enter(page, "newcomer", otp=code)  # the code that confirmed the enrolment is used up
    expect(page.get_by_role("alert")).to_contain_text("登录失败")


def test_the_sign_in_and_enrolment_pages_pass_axe(axe_page, portal):
    page = axe_page
    portal.add_admin("newcomer", "tianjin", enrolled=False)
    page.goto("/admin/login")
    found = serious_violations(page, "sign-in")
    enter(page, "newcomer", otp="")
    found += serious_violations(page, "enrolment")
    totp = pyotp.TOTP(page.locator("p.secret code").inner_text())
    page.get_by_label("动态口令").fill(totp.now())
    page.get_by_role("button", name="确认绑定").click()
    expect(page.locator(".recovery-codes li")).to_have_count(10)
    found += serious_violations(page, "recovery codes")
    assert found == []
