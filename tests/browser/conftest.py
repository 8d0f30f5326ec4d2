"""The browser fixtures of the dashboard's and the parcel page's tests (helpers in support.py).

One Chromium serves every test of this package in a worker process. It is package-scoped rather
than session-scoped: Playwright's sync API refuses to start while another instance is running in
the same thread, so a browser still open after this package would break the other modules that
start their own (tests/central/test_demo_mail.py, tests/e2e/test_kiosk_acceptance.py, the kiosk's
tests). pytest closes it as soon as a worker moves on from this package's files.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.support import Allowed, launch_chromium, open_page


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with launch_chromium() as browser:
        yield browser


@pytest.fixture
def expected_console_errors() -> Allowed | None:
    """The console errors `page` lets pass: none. A module (or a test) whose page makes the
    browser log an error on purpose overrides this with a predicate naming just that error."""
    return None


@pytest.fixture
def page(browser: Browser, expected_console_errors: Allowed | None) -> Iterator[Page]:
    """A fresh desktop-sized page; any other console error fails the test (support.open_page)."""
    with open_page(browser, allow=expected_console_errors) as page:
        yield page
