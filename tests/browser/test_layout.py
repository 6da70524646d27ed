"""Layout: nothing moves when a result comes in, and the pages fit a 360 px phone."""

import pytest
from playwright.sync_api import Page

from portal.messages import Outcome
from tests.browser.actions import ID_A_LAST6, ID_B_LAST6, PHONE_A, PHONE_B, resend, verify
from tests.browser.conftest import DESKTOP, PHONE

# Every layout shift since the page started, through the Layout Instability API. Shifts
# right after an input are counted too (CLS leaves those out): the result comes in then.
OBSERVE_SHIFTS = """() => {
  window.__shift = 0;
  window.__shifts = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.__shift += entry.value;
  });
  window.__shifts.observe({type: "layout-shift", buffered: true});
}"""
# Once the new captcha image has loaded and two frames were painted.
SHIFT_SO_FAR = """() => new Promise((done) => {
  const image = document.querySelector("#captcha-box img");
  const read = () => requestAnimationFrame(() => requestAnimationFrame(() => {
    for (const entry of window.__shifts.takeRecords()) window.__shift += entry.value;
    done(window.__shift);
  }));
  image.complete ? read() : image.addEventListener("load", read);
})"""
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}


def shift_after(page: Page, act) -> float:
    page.evaluate(OBSERVE_SHIFTS)
    act()
    return page.evaluate(SHIFT_SO_FAR)


@pytest.fixture(params=VIEWPORTS)
def sized_page(request, browser, portal) -> Page:
    context = browser.new_context(base_url=portal.url, viewport=VIEWPORTS[request.param])
    yield context.new_page()
    context.close()


def test_verify_results_appear_without_layout_shift(sized_page, portal, record_property):
    portal.submit_filing()
    codes = portal.codes()
    sized_page.goto("/tianjin/verify")

    def both_phones():
        pending = verify(sized_page, codes[PHONE_A], PHONE_A, ID_A_LAST6)
        assert Outcome.VERIFIED_OTHERS_PENDING.message in pending and "139****0002" in pending
        assert Outcome.ALL_VERIFIED.message in verify(
            sized_page, codes[PHONE_B], PHONE_B, ID_B_LAST6
        )

    shift = shift_after(sized_page, both_phones)
    record_property("layout_shift", shift)
    assert shift < 0.01


def test_the_longest_resend_answer_appears_without_layout_shift(sized_page, portal):
    portal.submit_filing()
    sized_page.goto("/tianjin/resend")

    def up_to_the_limit():
        for _ in range(2):
            resend(sized_page, PHONE_A, ID_A_LAST6)
        assert resend(sized_page, PHONE_A, ID_A_LAST6) == Outcome.RESEND_LIMIT_REACHED.message

    assert shift_after(sized_page, up_to_the_limit) < 0.01


@pytest.mark.parametrize("path", ["/tianjin/", "/tianjin/verify", "/tianjin/resend"])
def test_pages_fit_a_360_px_phone(phone_page, path):
    phone_page.goto(path)
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for box in phone_page.locator("input:visible, button, .tabs a").all():
        bounds = box.bounding_box()
        assert bounds["x"] >= 0 and bounds["x"] + bounds["width"] <= PHONE["width"], box
        assert bounds["height"] >= 40, f"{box} is too small a target"
    if path != "/tianjin/":
        field = phone_page.locator("#captcha").bounding_box()
        image = phone_page.locator("#captcha-box img").bounding_box()
        assert abs(field["y"] + field["height"] / 2 - (image["y"] + image["height"] / 2)) < 10
