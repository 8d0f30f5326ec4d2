"""Bank settings in a real Chromium, against a real central server and a real `locker-node run`
process on a simulated board: an admin puts the bank into maintenance and out again, and edits
its policy; carriers are refused and told, and the node's kiosk learns both from its feed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from central.models import WebhookDelivery
from tests.browser.support import Network, audit, open_page, screenshot, sign_in
from tests.browser.support import network as start_network
from tests.e2e.harness import BANK, World, e2e_bank, eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ADMIN = ("settings-admin@ops.test", "admin-password-0123")
VIEWER = ("settings-viewer@ops.test", "viewer-password-0123")
NEIGHBOUR = "E2E-2"
REASON = "Replacing the lock board"
PAGE = f"/ops/banks/{BANK}"


def subscribe_to_webhooks(world: World) -> None:
    """The carrier's webhook endpoint: what it is told of the maintenance is queued for it."""
    hook = httpx.post(
        f"{world.base}/v1/webhooks",
        json={"url": "http://carrier.test/hooks", "secret": "whsec-0123456789abcdef"},
        headers=world.carrier.headers,
    )
    assert hook.status_code == 201, hook.text


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with start_network(
        tmp_path_factory.mktemp("bank-settings"),
        {ADMIN: "admin", VIEWER: "viewer"},
        banks=[e2e_bank(), e2e_bank(NEIGHBOUR, name="Next door", lat=40.752, lon=-73.99)],
        before_node=subscribe_to_webhooks,
    ) as network:
        yield network


def kiosk_status(network: Network) -> dict[str, Any]:
    answer = network.kiosk.get(f"{network.node.base_url}/api/status")
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json()
    return status


def reserve(network: Network, tracking: str) -> httpx.Response:
    return httpx.post(
        f"{network.base}/v1/reservations",
        json={"tracking_number": tracking, "bank_id": BANK, "size": "S"},
        headers=network.world.carrier.headers,
    )


def queued(network: Network, event_type: str) -> int:
    with network.world.sessions() as session:
        return len(
            session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.event_type == event_type)
            ).all()
        )


def test_maintenance_on_and_off_reaches_carriers_and_the_kiosk(
    network: Network, browser: Browser
) -> None:
    assert reserve(network, "ACME-BS-1").status_code == 201  # the carrier has a parcel there
    until = (datetime.now(UTC) + timedelta(hours=3)).replace(second=0, microsecond=0)
    with open_page(browser) as page:
        sign_in(page, network.base, ADMIN, PAGE)
        expect(page.locator("#maintenance-none")).to_be_visible()
        page.locator("#maintenance-reason").fill(REASON)
        page.locator("#maintenance-until").fill(until.strftime("%Y-%m-%dT%H:%M"))
        page.locator("#maintenance-start").click()

        expect(page.locator("#maintenance-banner")).to_be_visible()
        expect(page.locator("#maintenance-summary")).to_contain_text(REASON)
        expect(page.locator("#maintenance-status")).to_have_text("The bank is in maintenance.")
        refused = reserve(network, "ACME-BS-2")
        assert refused.status_code == 409
        assert refused.json()["error"] == "bank_in_maintenance"
        assert [a["bank_id"] for a in refused.json()["alternatives"]] == [NEIGHBOUR]
        assert queued(network, "bank.maintenance_started") == 1

        def kiosk_in_maintenance() -> dict[str, Any] | None:
            maintenance = kiosk_status(network).get("maintenance")
            return maintenance if maintenance and maintenance["reason"] == REASON else None

        maintenance = eventually(kiosk_in_maintenance, "the kiosk to show the maintenance")
        assert datetime.fromisoformat(maintenance["until"]) == until
        assert [n["bank_id"] for n in maintenance["nearby"]] == [NEIGHBOUR]
        screenshot(page, "bank-maintenance")
        audit(page, "ops-bank-maintenance", "#bank-maintenance")

        page.locator("#maintenance-end").click()

        expect(page.locator("#maintenance-banner")).to_be_hidden()
        expect(page.locator("#maintenance-none")).to_be_visible()
        eventually(
            lambda: kiosk_status(network).get("maintenance") is None or None,
            "the kiosk to leave maintenance",
        )
        assert reserve(network, "ACME-BS-2").status_code == 201
        assert queued(network, "bank.maintenance_ended") == 1


def test_a_policy_edit_reaches_the_node_and_a_viewer_only_reads_it(
    network: Network, browser: Browser
) -> None:
    with open_page(browser) as page:
        sign_in(page, network.base, ADMIN, PAGE)
        expect(page.locator("#policy-hold-hours")).to_have_value("72")
        page.locator("#policy-hold-hours").fill("24")
        page.locator("#policy-walk-ups").check()
        page.locator("#hours-always").uncheck()
        for day in ("mon", "tue", "wed", "thu", "fri"):
            page.locator(f"#hours-{day}").fill("08:00-12:00, 13:00-20:00")
        page.locator("#policy-save").click()

        expect(page.locator("#policy-status")).to_contain_text("Saved")

        def kiosk_settings() -> dict[str, Any] | None:
            settings = kiosk_status(network).get("settings")
            return settings if settings and settings["hold_hours"] == 24 else None

        settings = eventually(kiosk_settings, "the policy to reach the node")
        assert settings["allow_walk_up"] is True
        assert settings["opening_hours"]["mon"] == [["08:00", "12:00"], ["13:00", "20:00"]]
        assert "sat" not in settings["opening_hours"]
        screenshot(page, "bank-policy")
        audit(page, "ops-bank-policy", "#bank-policy")

    with open_page(browser) as page:
        sign_in(page, network.base, VIEWER, PAGE)
        expect(page.locator("#policy-hold-hours")).to_have_value("24")
        expect(page.locator("#policy-hold-hours")).to_be_disabled()  # its fieldset is
        expect(page.locator("#maintenance-form")).to_have_count(0)
        expect(page.locator("#policy-save")).to_have_count(0)
