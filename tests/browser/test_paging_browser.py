"""The paging page in a real headless Chromium against a real central process: an admin adds a
webhook target (a real receiver on 127.0.0.1) and tests it, subscribes with the checkboxes,
and sees the page the job sent in the outbox; the page passes axe-core."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from playwright.sync_api import Page, expect

from central.paging.senders import WebhookSender
from central.paging.tasks import PageDispatcher, PagingChannels, run_paging
from tests.browser.support import audit, central, sign_in
from tests.central.paging.support import raise_alert
from tests.central.paging.test_acceptance import HookServer
from tests.e2e.harness import BANK, World

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ADMIN = ("pager@ops.test", "pager-password-0123")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with central(tmp_path_factory.mktemp("paging"), {ADMIN: "admin"}) as world:
        yield world


@pytest.fixture(scope="module")
def hooks() -> Iterator[HookServer]:
    server = HookServer()
    server.start()
    yield server
    server.stop()


def test_an_admin_sets_up_paging_and_sees_the_page_go(
    world: World, hooks: HookServer, page: Page
) -> None:
    sign_in(page, world.base, ADMIN, "/ops/paging")
    expect(page.locator("h1")).to_have_text("Paging")

    page.get_by_label("Name").fill("ops-chat")
    page.get_by_label("URL").fill(hooks.url)
    page.locator("#target-submit").click()
    row = page.locator("#targets tr[data-target]")
    expect(row).to_contain_text(f"http://127.0.0.1:{hooks.port}")
    expect(page.locator("#targets")).not_to_contain_text("secretTOKEN")
    row.get_by_role("button", name="Send a test").click()
    expect(page.locator("#status")).to_contain_text("Test page delivered")
    assert hooks.received[-1][1]["text"].startswith("*Test page*")

    page.get_by_label("Door faulty").check()
    expect(page.locator("#kinds-chosen")).to_be_checked()
    page.locator("#bank-select").select_option(BANK)
    page.get_by_label("Webhook target", exact=True).select_option(
        label=f"ops-chat (http://127.0.0.1:{hooks.port})"
    )
    page.locator("#subscription-submit").click()
    mine = page.locator("#my-subscriptions tr[data-subscription]")
    expect(mine).to_have_count(1)
    expect(mine).to_contain_text("Door faulty")
    expect(mine).to_contain_text("Webhook: ops-chat")
    expect(page.locator("#all-subscriptions")).to_contain_text(ADMIN[0])
    audit(page, "ops-paging")

    with world.sessions.begin() as session:
        raise_alert(
            session, datetime.now(UTC), bank_id=BANK, alert_type="door_fault", subject="A01"
        )
    with httpx.Client(timeout=5) as http:
        channels = PagingChannels(sender="paging@ops.test", webhooks=WebhookSender(http))
        paging = PageDispatcher(
            world.sessions, world.keys, lambda: datetime.now(UTC), channels, public_url=world.base
        )
        assert run_paging(paging) == 1
        paging.close()
    assert "Door A01 is faulty" in hooks.received[-1][1]["text"]
    sent = page.locator('#outbox tr[data-page-status="sent"]')
    expect(sent).to_have_count(1, timeout=15_000)
    expect(sent).to_contain_text("Door faulty")
