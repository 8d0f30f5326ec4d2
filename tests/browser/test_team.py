"""Operator accounts in a real headless Chromium against a real central server: an admin invites
an operator, who opens the one-time link in a browser of their own (its token in the fragment,
which never leaves the browser but in a POST body), chooses a password and signs in; the admin
disables them and their session ends. axe-core audits the team and account pages
(reports in test-artifacts/axe/ops-team.json and ops-account.json); screenshots of both go to
test-artifacts/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect

from tests.browser.support import (
    add_operators,
    audit,
    open_page,
    screenshot,
    serving,
    sign_in,
    source,
)
from tests.e2e.harness import World, create_world

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ADMIN = ("admin@ops.test", "admin-password-0123")
INVITEE = ("new.operator@ops.test", "the invitee's own passphrase")
VIEWPORT = {"width": 1280, "height": 900}
CLIPBOARD = ("clipboard-read", "clipboard-write")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Central with one admin; its links name the address it really listens on."""
    with create_world(tmp_path_factory.mktemp("team")) as world:
        add_operators(world, {ADMIN: "admin"})
        env = {
            "LOCKER_PUBLIC_URL": world.base,
            "LOCKER_OPS_ARGON2_TIME_COST": "1",
            "LOCKER_OPS_ARGON2_MEMORY_KIB": "1024",
            "LOCKER_OPS_ARGON2_PARALLELISM": "1",
        }
        with serving(world, env):
            yield world


def refused_link(message: ConsoleMessage) -> bool:
    """The browser logs the refusal of an unusable link; the page showing it is tested."""
    return "status of 4" in message.text and source(message).endswith("/ops/api/account/link")


def open_team_page(browser: Browser) -> AbstractContextManager[Page]:
    """A fresh browser profile, with clipboard access."""
    return open_page(browser, viewport=VIEWPORT, permissions=CLIPBOARD, allow=refused_link)


def test_an_invited_operator_signs_in_and_loses_the_session_when_disabled(
    world: World, browser: Browser
) -> None:
    base = world.base
    with open_team_page(browser) as admin, open_team_page(browser) as invitee:
        sign_in(admin, base, ADMIN, "/ops/team")
        admin.locator("#invite-email").fill(INVITEE[0])
        admin.locator("#invite-role").select_option("viewer")
        admin.locator("#invite-submit").click()
        expect(admin.locator("#link-panel")).to_be_visible()
        expect(admin.locator("#link-mail")).to_contain_text("Email is not configured")
        link = admin.locator("#link-url").input_value()
        assert link.startswith(f"{base}/ops/account#")
        token = link.partition("#")[2]
        admin.locator("#link-copy").click()
        expect(admin.locator("#link-copied")).to_have_text("Link copied.")
        assert admin.evaluate("navigator.clipboard.readText()") == link
        row = admin.locator(f'#team-rows tr[data-operator="{INVITEE[0]}"]')
        expect(row).to_have_attribute("data-state", "invited")
        audit(admin, "ops-team")
        screenshot(admin, "team")

        # The invitee, in a browser of their own, with nothing but the link.
        sent: list[Request] = []
        invitee.on("request", lambda request: sent.append(request))
        invitee.goto(link)
        expect(invitee.locator("#account-email")).to_have_value(INVITEE[0])
        expect(invitee.locator("#account-title")).to_have_text("Welcome")
        # Gone from the address bar (and so from history) as soon as the page read it.
        assert invitee.url == f"{base}/ops/account"
        invitee.locator("#account-password").fill("short")
        expect(invitee.locator("#password-hint")).to_contain_text("more characters needed")
        audit(invitee, "ops-account")
        screenshot(invitee, "account")
        invitee.locator("#account-password").fill(INVITEE[1])
        expect(invitee.locator("#password-hint")).to_have_text("Strong.")
        invitee.locator("#account-repeat").fill(INVITEE[1])
        invitee.locator("#account-submit").click()
        expect(invitee.locator("#account-done")).to_be_visible()
        invitee.locator("#account-sign-in").click()
        expect(invitee).to_have_url(f"{base}/ops/login")
        invitee.locator("#email").fill(INVITEE[0])
        invitee.locator("#password").fill(INVITEE[1])
        invitee.locator("#login-submit").click()
        expect(invitee.locator("#operator-email")).to_have_text(INVITEE[0])
        expect(invitee.locator("#operator-role")).to_have_text("viewer")
        invitee.goto(f"{base}/ops/team")
        expect(invitee.locator("#team-admins-only")).to_be_visible()

        # The admin sees them active, and disables them: their session ends at once.
        expect(row).to_have_attribute("data-state", "active")
        row.get_by_role("button", name="Disable").click()
        expect(admin.locator("#team-dialog")).to_be_visible()
        admin.locator("#team-confirm-submit").click()
        expect(row).to_have_attribute("data-state", "disabled")
        expect(admin.locator("#status")).to_have_text(f"{INVITEE[0]} is disabled.")

        invitee.reload()
        expect(invitee).to_have_url(re.compile(r"/ops/login\?next=/ops/team"))
        # The used link does not work twice.
        invitee.goto(link)
        expect(invitee.locator("#account-refused")).to_have_attribute("data-code", "link_used")
        expect(invitee.locator("#account-title")).to_have_text("This link cannot be used")
        assert invitee.url == f"{base}/ops/account"
        audit(invitee, "ops-account-refused")
        screenshot(invitee, "account-refused")
        # Another link pasted into the same page: only the fragment changes, the page checks it.
        invitee.goto(f"{base}/ops/account#{'x' * 43}")
        expect(invitee.locator("#account-refused")).to_have_attribute("data-code", "link_unknown")
        assert invitee.url == f"{base}/ops/account"
        # A reload forgets the link: nothing in the address holds it any more.
        invitee.reload()
        expect(invitee.locator("#account-refused")).to_have_attribute("data-code", "link_missing")

    # Central never saw the token in an address or a Referer: only in the bodies of the two
    # calls that take it.
    assert [r.url for r in sent if r.url.startswith(base) and "/ops/account" in r.url]
    assert [
        r.url for r in sent if token in r.url or token in (r.headers.get("referer") or "")
    ] == []
    carried = {r.url.removeprefix(base) for r in sent if token in (r.post_data or "")}
    assert carried == {"/ops/api/account/link", "/ops/api/account/password"}
