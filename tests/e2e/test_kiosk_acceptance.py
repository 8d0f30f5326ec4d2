"""What people bring to a locker, through real processes: central under uvicorn, two nodes
(`locker-node run`) on simulated boards whose doors close by themselves, and their kiosks in
Chromium. A drop-off made by a carrier, put in by its sender and collected by a courier; three
parcels for one recipient opened with one code; a parcel whose bank has no usable door moved to
the nearest bank and picked up there; a request for an accessible compartment served by one.

The tests share one network (module scope) and run in the order written; each uses its own
tracking numbers. Screenshots go to test-artifacts/acceptance/.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from sqlalchemy import Engine, text

from locker_node.store.database import database_path, transaction
from locker_node.store.database import make_engine as make_node_engine
from tests.central.conftest import TEST_SECRET
from tests.e2e.harness import (
    BANK,
    World,
    create_world,
    deposit,
    e2e_bank,
    eventually,
    provision_node,
    wait_for_courier_codes,
)
from tests.e2e.test_node_central import status_of, subscribe
from tests.locker_node.e2e.nodes import NodeProcess, spawn
from tests.locker_node.e2e.test_kiosk_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SMALL = "E2E-2"  # one small door, a kilometre away from BANK
ACCESSIBLE_DOOR = "A03"
OPERATOR = "ops@example.com"
OPERATOR_PASSWORD = "correct horse battery staple"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "acceptance"


@dataclass
class Bank:
    node: NodeProcess
    engine: Engine

    def holds(self, sql: str, **params: Any) -> bool | None:
        """True once the node's store answers `sql` with a row: what the feed brought."""
        with transaction(self.engine) as conn:
            return conn.execute(text(sql), params).first() is not None or None


@dataclass
class Network:
    world: World
    main: Bank
    small: Bank
    browser: Browser
    kiosk: httpx.Client

    def page(self, bank: Bank) -> Page:
        page = self.browser.new_page(viewport={"width": 1080, "height": 1920})
        page.goto(bank.node.base_url)
        return page

    def courier_code(self, bank_id: str) -> str:
        today = datetime.now(ZoneInfo("America/New_York")).date()
        return self.world.keys.courier_code("acme", bank_id, today)

    def webhooks(self, prefix: str) -> list[dict[str, Any]]:
        self.world.dispatch()
        return [b for b in self.world.carrier.received if str(b["type"]).startswith(prefix)]

    def carrier(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method, f"{self.world.base}{path}", headers=self.world.carrier.headers, **kwargs
        )


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png")


def start_bank(world: World, bank_id: str) -> Bank:
    config, port = provision_node(world, bank_id)
    node = spawn(config, port=port)
    return Bank(node, make_node_engine(database_path(config.parent / "data")))


def add_operator(world: World) -> None:
    env = os.environ | {
        "LOCKER_DATABASE_URL": world.url,
        "LOCKER_SECRET_KEY": TEST_SECRET,
        "LOCKER_DATA_DIR": str(world.tmp / "central"),
        "LOCKER_OPERATOR_PASSWORD": OPERATOR_PASSWORD,
    }
    done = subprocess.run(
        [sys.executable, "-m", "central.cli", "operator", "add", OPERATOR, "--role", "admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    tmp = tmp_path_factory.mktemp("acceptance")
    banks = [
        e2e_bank(BANK, "S:6,M:3", accessible=frozenset({ACCESSIBLE_DOOR})),
        e2e_bank(SMALL, "S:1", name="E2E corner", address="9 Corner Sq", lat=40.759),
    ]
    with (
        create_world(tmp, banks) as world,
        world.server(),
        httpx.Client(timeout=10) as kiosk,
        sync_playwright() as playwright,
    ):
        subscribe(world)
        add_operator(world)
        main, small = start_bank(world, BANK), start_bank(world, SMALL)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for bank in (main, small):
                bank.node.wait_ready(kiosk)
            wait_for_courier_codes(main.node)
            yield Network(world, main, small, browser, kiosk)
        finally:
            browser.close()
            for bank in (main, small):
                bank.node.stop()
                bank.engine.dispose()


def courier_login(page: Page, code: str) -> None:
    page.locator("#go-courier").click()
    expect(page.locator('#carrier-list [data-carrier="acme"]')).to_have_attribute(
        "aria-checked", "true"
    )
    for digit in code:
        page.locator(f'[data-keypad="login"] [data-key="{digit}"]').click()
    page.locator("#login-submit").click()
    expect(page.locator("#screen-courier-scan")).to_be_visible()


def press_once_shut(button: Locator, outcome: Locator, *, gone: bool = False) -> None:
    """Press a button that needs the door shut (the simulated door shuts itself a moment after
    it opens): pressed early, the kiosk says to close the door first, so press again."""

    def pressed() -> bool | None:
        button.click()
        try:
            if gone:
                expect(outcome).to_have_count(0, timeout=1000)
            else:
                expect(outcome).to_be_visible(timeout=1000)
        except AssertionError:
            return None
        return True

    eventually(pressed, "the door to shut")


def test_a_drop_off_made_by_a_carrier_put_in_by_its_sender_and_collected(
    network: Network,
) -> None:
    made = network.carrier(
        "POST",
        "/v1/dropoffs",
        json={"tracking_number": "ACME-DROP-1", "bank_id": BANK, "size": "S"},
    )
    assert made.status_code == 201, made.text
    dropoff = made.json()
    assert dropoff["status"] == "reserved" and len(dropoff["dropoff_code"]) == 10
    eventually(
        lambda: network.main.holds(
            "SELECT 1 FROM dropoff_codes WHERE reservation_id = :id", id=dropoff["id"]
        ),
        "the drop-off's code on the node",
    )

    page = network.page(network.main)
    page.locator("#go-dropoff").click()
    for digit in dropoff["dropoff_code"]:
        page.locator(f'[data-keypad="dropoff"] [data-key="{digit}"]').click()
    page.locator("#dropoff-submit").click()
    expect(page.locator("#screen-dropoff-door")).to_be_visible()
    door = page.locator("#dropoff-door-label").inner_text()
    expect(page.locator("#dropoff-door-map .map-door.open")).to_have_attribute("data-door", door)
    screenshot(page, "dropoff-door")
    # The simulated door closes by itself; the kiosk sees it shut and confirms on its own.
    expect(page.locator("#dropoff-done-title")).to_have_text(f"Your parcel is in door {door}")
    page.locator("#screen-dropoff-done [data-goto='home']").click()
    eventually(
        lambda: status_of_dropoff(network, dropoff["id"]) == "deposited" or None,
        "central to hear of the drop-off",
    )

    courier_login(page, network.courier_code(BANK))
    page.locator("#go-dropoffs").click()
    row = page.locator("#collect-list li", has_text=door)
    expect(row).to_contain_text("ACMEDROP1")  # as the node writes tracking numbers
    row.locator("button").click()  # opens the door
    expect(row.locator("button")).to_have_attribute("data-step", "opened")
    press_once_shut(row.locator("button"), row.locator("button"), gone=True)  # taken
    screenshot(page, "dropoff-collected")

    def told() -> list[str] | None:
        types = [b["type"] for b in network.webhooks("dropoff.")]
        return types if len(types) >= 3 else None

    assert eventually(told, "the drop-off's webhooks") == [
        "dropoff.created",
        "dropoff.deposited",
        "dropoff.collected",
    ]
    assert status_of_dropoff(network, dropoff["id"]) == "collected"
    page.close()


def status_of_dropoff(network: Network, dropoff_id: str) -> str:
    answer = network.carrier("GET", f"/v1/dropoffs/{dropoff_id}")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["status"])


def reserve(network: Network, tracking: str, bank_id: str, **recipient: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"tracking_number": tracking, "bank_id": bank_id, "size": "S"}
    if recipient:
        body["recipient"] = recipient
    answer = network.carrier("POST", "/v1/reservations", json=body)
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


def test_three_parcels_for_one_recipient_open_with_one_code(network: Network) -> None:
    made = [
        reserve(network, f"ACME-GROUP-{n}", BANK, name="Ana", email="ana@example.com")
        for n in range(1, 4)
    ]
    ids = sorted(m["id"] for m in made)
    group = status_of(network.world, made[0]["id"])["group"]
    assert sorted(group["reservations"]) == ids
    for reservation in made:
        deposit(network.main.node, network.kiosk, network.world, reservation["tracking_number"])

    def deposited() -> list[dict[str, Any]] | None:
        found = [b["data"] for b in network.webhooks("parcel.deposited") if b["data"]["id"] in ids]
        return found if len(found) == 3 else None

    bodies = eventually(deposited, "the three deposits at central")
    codes = {body["pickup_code"] for body in bodies}
    assert len(codes) == 1, "one code for the three parcels"
    doors = sorted(body["compartment"] for body in bodies)

    page = network.page(network.main)
    page.locator("#go-pickup").click()
    for digit in codes.pop():
        page.locator(f'[data-keypad="pickup"] [data-key="{digit}"]').click()
    page.locator("#pickup-submit").click()
    expect(page.locator("#screen-door-open")).to_be_visible()
    opened = page.locator("#door-map .map-door.open")
    expect(opened).to_have_count(len(set(doors)))
    assert sorted(opened.evaluate_all("(cells) => cells.map((c) => c.dataset.door)")) == sorted(
        set(doors)
    )
    screenshot(page, "three-parcels-one-code")

    def all_picked_up() -> bool | None:
        return all(status_of(network.world, rid)["status"] == "picked_up" for rid in ids) or None

    eventually(all_picked_up, "the three parcels picked up at central")
    page.close()


def disable_door(network: Network, bank_id: str, label: str) -> None:
    """The operator takes a door out of service from the dashboard's API."""
    with httpx.Client(base_url=network.world.base, timeout=10) as ops:
        signed_in = ops.post(
            "/ops/api/session", json={"email": OPERATOR, "password": OPERATOR_PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        answer = ops.post(
            f"/ops/api/banks/{bank_id}/compartments/{label}/disable",
            json={"reason": "door sensor replaced"},
            headers={"X-CSRF-Token": signed_in.json()["csrf_token"]},
        )
        assert answer.status_code == 202, answer.text


def test_a_parcel_with_no_door_at_its_bank_moves_to_a_nearby_one_and_is_picked_up_there(
    network: Network,
) -> None:
    made = reserve(network, "ACME-MOVE-1", SMALL, name="Bo", email="bo@example.com")
    eventually(
        lambda: network.small.holds("SELECT 1 FROM reservations WHERE id = :id", id=made["id"]),
        "the reservation on the small bank's node",
    )
    disable_door(network, SMALL, "A01")  # its only door: the bank has no usable door now
    eventually(
        lambda: network.small.holds(
            "SELECT 1 FROM compartments WHERE label = 'A01' AND NOT in_service"
        ),
        "the door out of service on the node",
    )
    wait_for_courier_codes(network.small.node)

    page = network.page(network.small)
    courier_login(page, network.courier_code(SMALL))
    page.locator("#scan-input").fill("ACME-MOVE-1")
    page.locator("#scan-input").press("Enter")
    offer = page.locator("#screen-courier-scan [data-overflow-offer]")
    expect(offer).to_be_visible()
    offer.click()
    expect(page.locator("#screen-overflow")).to_be_visible()
    choice = page.locator(f'#overflow-list [data-bank="{BANK}"]')
    expect(choice).to_contain_text("1 Test St")
    screenshot(page, "overflow-nearby")
    choice.click()
    expect(page.locator("#screen-overflow-done")).to_be_visible()
    expect(page.locator("#overflow-done-address")).to_contain_text("1 Test St")
    page.close()

    moved = status_of(network.world, made["id"])
    assert moved["bank"]["id"] == BANK and moved["status"] == "reserved"
    assert any(b["data"]["id"] == made["id"] for b in network.webhooks("reservation.redirected"))

    deposit(network.main.node, network.kiosk, network.world, "ACME-MOVE-1")

    def code() -> str | None:
        for body in network.webhooks("parcel.deposited"):
            if body["data"]["id"] == made["id"]:
                return str(body["data"]["pickup_code"])
        return None

    page = network.page(network.main)  # the recipient, at the bank the parcel moved to
    page.locator("#go-pickup").click()
    for digit in eventually(code, "the moved parcel's code"):
        page.locator(f'[data-keypad="pickup"] [data-key="{digit}"]').click()
    page.locator("#pickup-submit").click()
    expect(page.locator("#screen-door-open")).to_be_visible()
    page.close()
    eventually(
        lambda: status_of(network.world, made["id"])["status"] == "picked_up" or None,
        "the moved parcel picked up at its new bank",
    )


def test_a_request_for_an_accessible_compartment_is_served_by_one(network: Network) -> None:
    made = reserve(network, "ACME-ADA-1", BANK, name="Cy", email="cy@example.com", accessible=True)
    assert made["accessible"] is True
    eventually(
        lambda: network.main.holds(
            "SELECT 1 FROM reservations WHERE id = :id AND accessible", id=made["id"]
        ),
        "the reservation on the node",
    )

    page = network.page(network.main)
    courier_login(page, network.courier_code(BANK))
    page.locator("#scan-input").fill("ACME-ADA-1")
    page.locator("#scan-input").press("Enter")
    expect(page.locator("#screen-deposit")).to_be_visible()
    expect(page.locator("#deposit-label")).to_have_text(ACCESSIBLE_DOOR)
    screenshot(page, "accessible-deposit")
    press_once_shut(page.locator("#deposit-confirm"), page.locator("#screen-deposit-done"))
    page.close()
    eventually(
        lambda: status_of(network.world, made["id"])["compartment"] == ACCESSIBLE_DOOR or None,
        "central to hear of the deposit in the accessible door",
    )
