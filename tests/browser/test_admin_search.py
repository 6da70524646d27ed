"""A province admin signs in and finds a filing by phone: htmx filters as they type, and the
same search works as a plain form without JavaScript."""

import re

from playwright.sync_api import Page, expect

from tests.admins import PASSWORD, current_code
from tests.factories import ID_C, ID_D, principal

OTHER_PHONE = "13700000009"


def other_people_filing(portal) -> None:
    site = {"domain": "b.example.cn", "name": "乙网", "principal": principal(OTHER_PHONE, ID_D)}
    portal.submit_filing(
        "REF-OTHER",
        entity={"name": "乙公司", "principal": principal(OTHER_PHONE, ID_D)},
        websites=[site],
    )


def sign_in(page: Page, username: str) -> None:
    page.goto("/admin/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码", exact=True).fill(PASSWORD)
    page.get_by_label("动态口令或恢复码").fill(current_code())
    page.get_by_label("动态口令或恢复码").press("Enter")
    expect(page).to_have_url(re.compile(r"/admin/$"))


def test_admin_finds_a_filing_by_phone(page, mode, portal):
    portal.add_admin("tj-admin", "tianjin")
    portal.submit_filing("REF-MINE")
    other_people_filing(portal)
    portal.submit_filing(
        "REF-GANSU",
        province="gansu",
        entity={"name": "丙公司", "principal": principal(OTHER_PHONE, ID_D)},
        websites=[
            {"domain": "c.example.cn", "name": "丙网", "principal": principal("13600000006", ID_C)}
        ],
    )
    sign_in(page, "tj-admin")
    page.get_by_role("link", name="备案查询").click()
    results = page.locator("#results")
    expect(results).to_contain_text("共 2 条")
    if mode == "htmx":
        page.evaluate("window.__kept = document.getElementById('results')")

    phone = page.locator("form.search").get_by_label("手机号码")
    if mode == "htmx":
        phone.press_sequentially(OTHER_PHONE, delay=20)
    else:
        phone.fill(OTHER_PHONE)
        page.get_by_role("button", name="查询").click()

    expect(results).to_contain_text("共 1 条")
    expect(results).to_contain_text("REF-OTHER")
    expect(results).not_to_contain_text("REF-MINE")
    expect(results).not_to_contain_text("REF-GANSU")
    expect(page).to_have_url(re.compile(rf"[?&]phone={OTHER_PHONE}"))
    if mode == "htmx":
        assert page.evaluate("window.__kept === document.getElementById('results')")
    results.get_by_role("link", name="REF-OTHER").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("REF-OTHER")
