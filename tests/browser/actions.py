"""What an applicant does on the pages, for the browser tests and the screenshot script."""

from playwright.sync_api import Page

from tests.factories import CAPTCHA

PHONE_A, ID_A_LAST6 = "13900000001", "011239"
PHONE_B, ID_B_LAST6 = "13900000002", "31002X"
WRONG_ID = "123456"


def submit(page: Page, form: str, values: dict[str, str], captcha: str = CAPTCHA) -> str:
    """Fill `form` ("verify", "resend" or "link") as a person would (what the page kept from the last
    try is left as it is), press its button and wait for the answer: swapped in by htmx, or
    a new page without JS. Either way the form comes back with a new captcha challenge, or,
    once a link is used, not at all. Returns the result region's text."""
    shown = page.locator(f"#{form}-form").evaluate("f => Object.fromEntries(new FormData(f))")
    for name, value in {**values, "captcha": captcha}.items():
        if shown.get(name) != value:
            page.locator(f"#{form}-form [name={name}]").fill(value)
    button = page.locator(f"#{form}-submit")
    if page.evaluate("typeof window.htmx === 'undefined'"):
        with page.expect_navigation(wait_until="domcontentloaded"):
            button.click()
    else:
        with page.expect_response(lambda response: response.request.method == "POST"):
            button.click()
        page.wait_for_function(
            "([form, shown]) => document.querySelector(`#${form} [name=captcha_id]`)?.value !== shown",
            arg=[f"{form}-form", shown["captcha_id"]],
        )
    return result_text(page)


def verify(page: Page, code: str, phone: str, id_last6: str, **options) -> str:
    return submit(page, "verify", {"code": code, "phone": phone, "id_last6": id_last6}, **options)


def resend(page: Page, phone: str, id_last6: str) -> str:
    return submit(page, "resend", {"phone": phone, "id_last6": id_last6})


def result_text(page: Page) -> str:
    return " ".join(page.locator("#result").inner_text().split())
