"""`/api/docs`: the vendored Swagger UI draws the OpenAPI document inside the CSP."""

from playwright.sync_api import Page

from portal.models import FilingType

RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def test_the_api_reference_draws_every_operation_and_example_without_a_csp_violation(
    js_page: Page,
):
    errors: list[str] = []
    js_page.on("pageerror", lambda error: errors.append(str(error)))
    js_page.add_init_script(RECORD_VIOLATIONS)
    js_page.goto("/api/docs")

    operations = js_page.locator(".opblock-summary-path")
    operations.first.wait_for()
    paths = operations.all_inner_texts()
    assert [path.replace("\u200b", "") for path in paths] == [
        "/filings",
        "/filings/{filing_id}/events",
        "/filings/{filing_id}",
    ]

    js_page.locator("#operations-filings-createFiling").click()
    examples = js_page.locator(".examples-select select option")
    examples.first.wait_for(state="attached")
    assert examples.count() == len(FilingType)
    responses = js_page.locator("#operations-filings-createFiling .response .response-col_status")
    assert {"409", "413", "429"} <= set(responses.all_inner_texts())

    assert js_page.evaluate("window.__violations") == []
    assert errors == []
