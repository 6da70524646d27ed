"""axe-core (vendored, tests/browser/vendor/) on every applicant page and outcome: no serious
or critical violation."""

from pathlib import Path

from playwright.sync_api import Page

from portal.extensions import db
from portal.messages import FORM_ERRORS_LABEL, Outcome
from portal.models import Province
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

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
RUN_AXE = """async (scope) => {
  const found = await axe.run(scope || document, {resultTypes: ["violations"]});
  return found.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(" ")),
  }));
}"""


def serious_violations(page: Page, state: str, swapped: bool = False) -> list[str]:
    """The serious and critical violations on the page, or only in what htmx swapped in."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=AXE)
    scope = {"include": [["form"], ["#result"]]} if swapped else None
    return [
        f"{state}: {v['id']} ({v['impact']}) {v['help']} at {v['targets']}"
        for v in page.evaluate(RUN_AXE, scope)
        if v["impact"] in ("serious", "critical")
    ]


def test_applicant_pages_and_outcomes_pass_axe(axe_page, portal):
    """Landing, the verify page and each of its outcomes, the resend page and its answers."""
    page = axe_page
    found = []
    page.goto("/tianjin/")
    found += serious_violations(page, "landing")

    portal.submit_filing("REF-FAIL")
    codes = portal.codes()
    page.goto("/tianjin/verify")
    found += serious_violations(page, "verify")
    verify(page, "12", PHONE_A, ID_A_LAST6)
    found += serious_violations(page, "field errors", swapped=True)
    assert verify(page, codes[PHONE_A], PHONE_A, ID_A_LAST6, captcha="NOPE") == (
        Outcome.CAPTCHA_WRONG.message
    )
    found += serious_violations(page, "captcha wrong", swapped=True)
    for _ in range(4):
        assert verify(page, codes[PHONE_A], PHONE_A, WRONG_ID) == Outcome.NOT_FOUND.message
    found += serious_violations(page, "not found", swapped=True)
    assert verify(page, codes[PHONE_A], PHONE_A, WRONG_ID) == Outcome.FAILED.message
    found += serious_violations(page, "failed", swapped=True)

    portal.submit_filing("REF-PASS")
    codes = portal.codes()
    assert Outcome.VERIFIED_OTHERS_PENDING.message in verify(
        page, codes[PHONE_A], PHONE_A, ID_A_LAST6
    )
    found += serious_violations(page, "others pending", swapped=True)
    assert verify(page, codes[PHONE_B], PHONE_B, ID_B_LAST6) == Outcome.ALL_VERIFIED.message
    found += serious_violations(page, "all verified", swapped=True)
    assert verify(page, codes[PHONE_B], PHONE_B, ID_B_LAST6) == Outcome.ALREADY_VERIFIED.message
    found += serious_violations(page, "already verified", swapped=True)

    portal.submit_filing("REF-RESEND")
    page.goto("/tianjin/resend")
    found += serious_violations(page, "resend")
    assert resend(page, PHONE_A, WRONG_ID) == Outcome.RESEND_NOTHING_PENDING.message
    found += serious_violations(page, "resend: nothing pending", swapped=True)
    assert resend(page, PHONE_A, ID_A_LAST6) == Outcome.RESEND_SENT.message
    found += serious_violations(page, "resend: sent", swapped=True)
    resend(page, PHONE_A, ID_A_LAST6)
    assert resend(page, PHONE_A, ID_A_LAST6) == Outcome.RESEND_LIMIT_REACHED.message
    found += serious_violations(page, "resend: limit", swapped=True)

    portal.submit_filing("REF-LINK")
    link = portal.links()[PHONE_A]
    page.goto(link)
    found += serious_violations(page, "link")
    assert submit(page, "link", {"id_last6": "1"}) == FORM_ERRORS_LABEL
    found += serious_violations(page, "link: field errors", swapped=True)
    assert Outcome.VERIFIED_OTHERS_PENDING.message in submit(page, "link", {"id_last6": ID_A_LAST6})
    found += serious_violations(page, "link: others pending", swapped=True)
    page.goto(link)
    found += serious_violations(page, "link: used")

    assert found == []


def test_province_not_open_page_passes_axe(axe_page, portal):
    """What a visitor of a province whose check is not live sees."""
    with portal.app.app_context():
        db.session.get(Province, "beijing").live_from = None
        db.session.commit()
    assert axe_page.goto("/beijing/verify").status == 404
    assert serious_violations(axe_page, "not open") == []


def test_the_home_page_and_the_sms_inbox_pass_axe(axe_page, portal):
    """What a newcomer opens first: `/` and, once a filing is in, `/dev/sms`."""
    page = axe_page
    page.goto("/")
    found = serious_violations(page, "home")
    page.get_by_role("link", name="天津").click()
    page.wait_for_url("**/tianjin/")
    portal.submit_filing("REF-INBOX")
    page.goto("/dev/sms")
    assert page.get_by_role("cell", name="REF-INBOX").count() == 2
    found += serious_violations(page, "sms inbox")
    assert found == []
