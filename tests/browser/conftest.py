"""Browser fixtures: one portal (SQLite only) and one Chromium for the whole session, a fresh
database and a fresh browser context for each test.

`make test` installs Debian's Chromium (.ci/services); Playwright only drives it.
"""

import os

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.browser.live import CHROMIUM, LivePortal, launch_chromium, live_portal

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}


@pytest.fixture(scope="session")
def running_portal(tmp_path_factory) -> LivePortal:
    with live_portal(tmp_path_factory.mktemp("browser")) as running:
        yield running


@pytest.fixture(scope="session")
def browser() -> Browser:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `bash .ci/services` (or `make test`) installs it")
    with sync_playwright() as playwright:
        launched = launch_chromium(playwright)
        yield launched
        launched.close()


@pytest.fixture
def portal(running_portal) -> LivePortal:
    """The running portal, its database as freshly migrated and no texts sent."""
    running_portal.reset()
    return running_portal


def _context(browser: Browser, portal: LivePortal, **options) -> BrowserContext:
    context = browser.new_context(base_url=portal.url, locale="zh-CN", **options)
    context.set_default_timeout(5_000)
    return context


@pytest.fixture(params=["htmx", "no-js"])
def mode(request) -> str:
    """Each applicant flow runs twice: with htmx swapping, and as plain pages without JS."""
    return request.param


@pytest.fixture
def page(browser, portal, mode) -> Page:
    context = _context(browser, portal, viewport=DESKTOP, java_script_enabled=mode == "htmx")
    yield context.new_page()
    context.close()


@pytest.fixture
def js_page(browser, portal) -> Page:
    """A page with JavaScript, for what only a script can measure or do."""
    context = _context(browser, portal, viewport=DESKTOP)
    yield context.new_page()
    context.close()


@pytest.fixture
def phone_page(browser, portal) -> Page:
    context = _context(browser, portal, viewport=PHONE, is_mobile=True, has_touch=True)
    yield context.new_page()
    context.close()


@pytest.fixture
def axe_page(browser, portal) -> Page:
    """The page axe runs in: its script is injected inline, which the CSP rightly forbids."""
    context = _context(browser, portal, viewport=DESKTOP, bypass_csp=True)
    yield context.new_page()
    context.close()
