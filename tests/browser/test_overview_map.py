"""The overview's map (Leaflet) in a real headless Chromium against a real central server.

Banks with coordinates, occupancies and states are seeded in central's database; the tile server
(OpenStreetMap's, the default setting) is played by Playwright: it serves a tiny PNG, or refuses
every tile, so no test reaches the internet. Screenshots go to
test-artifacts/screenshots/overview-map*.png, the axe report to
test-artifacts/axe/ops-overview.json.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from central.config import CentralSettings
from central.context import Ctx
from central.models import Actor, Compartment, ReservationStatus
from central.nodes.enrollment import enroll, issue_enrollment_token
from central.ops.alerts import raise_alert
from central.reservations import repository as reservations_repository
from central.reservations.schemas import ReservationCreate
from central.reservations.service import create
from central.reservations.transitions import transition
from locker_wire import signing
from locker_wire.schemas import EnrollmentRequest
from tests.browser.support import (
    add_operators,
    audit,
    open_page,
    screenshot,
    serving,
    sign_in,
    source,
)
from tests.e2e.harness import World, create_world, e2e_bank

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VIEWER = ("map-viewer@ops.test", "viewer-password-0123")
TILES = "https://tile.openstreetmap.org/"
# A 1x1 PNG: what the played tile server answers for every tile.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

# id -> (name, compartments, occupied S compartments, has an online node, open alerts)
BANKS: dict[str, tuple[str, str, int, bool, int]] = {
    "MAP-LOW": ("Low bank", "S:2,M:2", 0, True, 0),
    "MAP-MID": ("Middle bank", "S:2", 1, True, 1),
    "MAP-HIGH": ("Full bank", "S:1", 1, True, 0),
    "MAP-OFF": ("Dark bank", "S:2", 0, False, 0),
    "MAP-MAINT": ("Closed bank", "S:2", 0, True, 0),
}
# The overview's bank JSON may carry a `maintenance` flag (bank maintenance, another feature):
# the page plays it into the API's answer, so the map's handling is tested whatever the API says.
MAINTENANCE = {"reason": "Door panel replacement", "until": "2030-01-01T12:00:00+00:00"}


def seed(session: Session, world: World, now: datetime) -> None:
    """Nodes for the online banks, deposited parcels for the occupancy, an open alert."""
    for index, (bank_id, (_, _, occupied, online, alerts)) in enumerate(BANKS.items()):
        if online:
            token = issue_enrollment_token(session, bank_id, now)
            key = signing.public_key_text(signing.generate_private_key())
            enroll(session, world.keys, EnrollmentRequest(token=token, public_key=key), now)
        labels = session.scalars(
            select(Compartment.label)
            .where(Compartment.bank_id == bank_id, Compartment.size == "S")
            .order_by(Compartment.label)
        ).all()
        for n in range(occupied):
            ctx = Ctx(session=session, keys=world.keys, now=now)
            body = {"tracking_number": f"MAP-{index}-{n}", "bank_id": bank_id, "size": "S"}
            out, _ = create(ctx, "acme", ReservationCreate.model_validate(body))
            reservation = reservations_repository.get(session, out.id)
            assert reservation is not None
            transition(
                ctx,
                reservation,
                ReservationStatus.DEPOSITED,
                actor=Actor.COURIER,
                changes={
                    "compartment_label": labels[n],
                    "deposited_at": now,
                    "pickup_deadline": now + timedelta(hours=72),
                },
            )
        for n in range(alerts):
            raise_alert(
                session,
                bank_id=bank_id,
                alert_type="manual",
                subject=f"map-{n}",
                detail={"note": "seeded"},
                now=now,
            )


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    banks = [
        e2e_bank(
            bank_id,
            spec,
            name=name,
            address=f"{10 + i} Map Street",
            lat=40.70 + 0.02 * i,
            lon=-74.00 + 0.015 * i,
        )
        for i, (bank_id, (name, spec, *_)) in enumerate(BANKS.items())
    ]
    with create_world(tmp_path_factory.mktemp("map"), banks) as world:
        add_operators(world, {VIEWER: "viewer"})
        with world.sessions.begin() as session:
            seed(session, world, datetime.now(UTC))
        # The harness turns tiles off for every other test; here they are on, with the default
        # (OpenStreetMap's) URL, which Playwright plays.
        default = CentralSettings.model_fields["map_tile_url"].default
        assert default.startswith(TILES)
        with serving(world, {"LOCKER_MAP_TILE_URL": default}):
            yield world.base


def with_maintenance(route: Route) -> None:
    response = route.fetch()
    data: dict[str, Any] = response.json()
    for region in data["regions"]:
        for bank in region["banks"]:
            bank["maintenance"] = MAINTENANCE if bank["id"] == "MAP-MAINT" else None
    route.fulfill(response=response, json=data)


def failed_tile(message: ConsoleMessage) -> bool:
    """A tile the played tile server refused (the map is tested without them)."""
    return source(message).startswith(TILES) and message.text.startswith("Failed to load resource")


@contextmanager
def open_overview(
    browser: Browser, base: str, tiles: Callable[[Route], None]
) -> Iterator[tuple[Page, list[str]]]:
    """The signed-in overview with the tile server played by `tiles`. Any console error fails
    the test except a failed load of a tile; the tile URLs asked for are listed."""
    asked: list[str] = []

    def tile(route: Route) -> None:
        asked.append(route.request.url)
        tiles(route)

    with open_page(browser, allow=failed_tile) as page:
        page.route(f"{TILES}**", tile)
        page.route(re.compile(r".*/ops/api/overview\?.*"), with_maintenance)
        sign_in(page, base, VIEWER)
        expect(page.locator("#bank-map path.bank-marker")).to_have_count(len(BANKS))
        yield page, asked


POPUP_IN_VIEW = """() => {
  const popup = document.querySelector('#bank-map .leaflet-popup');
  if (!popup) return false;
  const map = document.getElementById('bank-map').getBoundingClientRect();
  const zoom = document.querySelector('#bank-map .leaflet-control-zoom').getBoundingClientRect();
  const r = popup.getBoundingClientRect();
  return r.top >= map.top && r.bottom <= map.bottom && r.left >= zoom.right && r.right <= map.right;
}"""


# The popup in view and the map no longer panning (Leaflet marks its pane while it pans).
POPUP_SETTLED = (
    f"() => !document.querySelector('#bank-map .leaflet-pan-anim') && ({POPUP_IN_VIEW})()"
)


def marker(page: Page, bank_id: str) -> Any:
    return page.locator(f'#bank-map path.bank-marker[data-bank="{bank_id}"]')


def served(route: Route) -> None:
    route.fulfill(status=200, content_type="image/png", body=PNG)


def test_banks_on_the_map_by_occupancy_and_state_with_a_popup_each(
    base: str, browser: Browser
) -> None:
    with open_overview(browser, base, served) as (page, asked):
        expect(page.locator("#bank-map img.leaflet-tile-loaded").first).to_be_attached()
        assert all(re.fullmatch(rf"{TILES}\d+/\d+/\d+\.png", url) for url in asked), asked
        expect(page.locator("#bank-map .leaflet-control-attribution")).to_contain_text(
            "OpenStreetMap contributors"
        )
        expect(marker(page, "MAP-LOW")).to_have_class(re.compile(r"\bocc-low\b"))
        expect(marker(page, "MAP-MID")).to_have_class(re.compile(r"\bocc-mid\b"))
        expect(marker(page, "MAP-HIGH")).to_have_class(re.compile(r"\bocc-high\b"))
        expect(marker(page, "MAP-OFF")).to_have_class(re.compile(r"\bocc-offline\b"))
        expect(marker(page, "MAP-OFF")).to_have_attribute("data-state", "offline")
        expect(marker(page, "MAP-MAINT")).to_have_class(re.compile(r"\bis-maintenance\b"))
        expect(marker(page, "MAP-MAINT")).to_have_attribute("data-state", "maintenance")
        expect(marker(page, "MAP-LOW")).to_have_attribute("data-state", "online")
        # Every bank is in view: the map was fitted to them.
        inside = page.evaluate(
            """() => {
              const box = document.getElementById('bank-map').getBoundingClientRect();
              return [...document.querySelectorAll('#bank-map path.bank-marker')].every((p) => {
                const r = p.getBoundingClientRect();
                return r.left >= box.left && r.right <= box.right
                  && r.top >= box.top && r.bottom <= box.bottom;
              });
            }"""
        )
        assert inside is True
        expect(page.locator("#map-legend")).to_contain_text("in maintenance")
        row = page.locator('tr[data-bank="MAP-MAINT"] .pill.maintenance')
        expect(row).to_have_text("maintenance")

        # A bank near the bottom first: its popup's pan keeps the top one (MAP-MAINT) in view.
        marker(page, "MAP-MID").click()
        popup = page.locator("#bank-map .leaflet-popup .bank-popup")
        expect(popup).to_have_attribute("data-bank", "MAP-MID")
        expect(popup).to_contain_text("Middle bank")
        expect(popup).to_contain_text("11 Map Street")
        expect(popup.locator(".pill.ok")).to_have_text("online")
        small = popup.locator('tr[data-class="S"] td')
        expect(small).to_have_text(["1", "0", "1", "2"])  # occupied, reserved, free, total
        expect(popup.locator("[data-occupancy]")).to_have_text("50 % occupied")
        alerts = popup.locator("[data-alerts] a")
        expect(alerts).to_have_text("1 open alert")
        expect(alerts).to_have_attribute("href", "/ops/alerts?bank_id=MAP-MID")
        # The popup pans the map until all of it is in view, clear of the zoom buttons.
        page.wait_for_function(POPUP_IN_VIEW)
        screenshot(page, "overview-map", full_page=False, animations="disabled")
        audit(page, "ops-overview")

        page.locator("#bank-map .leaflet-popup-close-button").click()
        expect(popup).to_have_count(0)
        marker(page, "MAP-MAINT").click()
        expect(popup).to_have_attribute("data-bank", "MAP-MAINT")
        expect(popup.locator("[data-maintenance]")).to_contain_text("Door panel replacement")
        expect(popup.locator(".pill.ok")).to_have_text("online")

        # Clicked once the popup's pan has ended: a click during the pan can miss the link.
        page.wait_for_function(POPUP_SETTLED)
        popup.locator("[data-bank-link]").click()
        expect(page).to_have_url(f"{base}/ops/banks/MAP-MAINT")


def test_the_map_works_from_the_keyboard(base: str, browser: Browser) -> None:
    with open_overview(browser, base, served) as (page, _):
        high = marker(page, "MAP-HIGH")
        expect(high).to_have_attribute("tabindex", "0")
        expect(high).to_have_attribute("role", "button")
        expect(high).to_have_attribute("aria-label", re.compile(r"^Full bank \(MAP-HIGH\): 100 %"))
        high.focus()
        page.keyboard.press("Enter")
        link = page.locator("#bank-map .leaflet-popup [data-bank-link]")
        expect(link).to_be_focused()
        expect(link).to_have_text("Full bank")
        page.keyboard.press("Escape")
        expect(page.locator("#bank-map .leaflet-popup")).to_have_count(0)
        expect(high).to_be_focused()
        # Not a trap: Tab moves on through the circles and out of the map.
        for _ in range(len(BANKS) + 8):
            page.keyboard.press("Tab")
        assert (
            page.evaluate("document.getElementById('bank-map').contains(document.activeElement)")
            is False
        )


def test_with_the_tile_server_unreachable_the_banks_still_show(base: str, browser: Browser) -> None:
    with open_overview(browser, base, lambda route: route.abort()) as (page, asked):
        expect(page.locator("#map-status")).to_contain_text("could not be loaded")
        assert asked
        expect(page.locator("#bank-map img.leaflet-tile-loaded")).to_have_count(0)
        expect(marker(page, "MAP-HIGH")).to_have_class(re.compile(r"\bocc-high\b"))
        screenshot(page, "overview-map-no-tiles")
        marker(page, "MAP-LOW").click()
        popup = page.locator("#bank-map .leaflet-popup .bank-popup")
        expect(popup).to_have_attribute("data-bank", "MAP-LOW")
        expect(popup.locator('a[href="/ops/banks/MAP-LOW"]').first).to_be_visible()
        expect(page.locator("#map-legend")).to_be_visible()
