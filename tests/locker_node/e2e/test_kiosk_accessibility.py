"""Every kiosk screen under axe-core, in English, Spanish and accessibility mode; a pickup done
with the keyboard alone; the door map on portrait and landscape displays.

axe-core comes from npm (`central/ops/frontend`, a devDependency that `make assets` installs and
that never ships); its reports go to test-artifacts/axe/<screen>-<lang>[-a11y].json.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from locker_node.hardware.simulator import Fault
from tests.locker_node.bank_settings import send_settings
from tests.locker_node.dropoffs import CODE as DROPOFF_CODE
from tests.locker_node.dropoffs import add_dropoff
from tests.locker_node.e2e.test_kiosk_browser import (  # noqa: F401 (fixtures)
    Kiosk,
    assert_fits,
    browser,
    open_kiosk,
    pick_up_through_the_keypad,
    template,
)
from tests.locker_node.flows.test_overflow import FakeLink
from tests.locker_node.kiosk.rig import COURIER_CODE, LAYOUT, open_sealed

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
AXE = ROOT / "central" / "ops" / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
REPORTS = ROOT / "test-artifacts" / "axe"
PORTRAIT = {"width": 1080, "height": 1920}

RUN_AXE = """async () => {
  const results = await axe.run(document, {resultTypes: ['violations']});
  return {url: results.url, testEngine: results.testEngine, violations: results.violations};
}"""

# What the screen shows of its controls, for the accessibility mode's "low on the screen".
CONTROL_TOPS = """() => [...document.querySelectorAll(
    '.screen:not([hidden]) button, .screen:not([hidden]) input, header button')]
  .filter((element) => element.getClientRects().length > 0)
  .map((element) => [element.id || element.textContent.trim(),
                     element.getBoundingClientRect().top / window.innerHeight])"""


class Auditor:
    def __init__(self, kiosk: Kiosk, suffix: str, *, a11y: bool) -> None:
        self.kiosk = kiosk
        self.suffix = suffix
        self.a11y = a11y
        self.seen: list[str] = []

    def __call__(self, screen: str, *, primary: bool = True) -> None:
        page = self.kiosk.page
        expect(self.kiosk.screen(screen)).to_be_visible()
        expect(page.locator("#busy")).to_be_hidden()
        if page.evaluate("typeof axe") == "undefined":
            page.evaluate(AXE.read_text(encoding="utf-8"))
        report: dict[str, Any] = page.evaluate(RUN_AXE)
        REPORTS.mkdir(parents=True, exist_ok=True)
        (REPORTS / f"{screen}-{self.suffix}.json").write_text(json.dumps(report, indent=2))
        bad = [
            (v["id"], v["impact"], [node["target"] for node in v["nodes"]])
            for v in report["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert bad == [], f"{screen} ({self.suffix}): {bad}"
        if self.a11y:
            assert_fits(self.kiosk, screen, primary=primary)
            high = [(name, top) for name, top in page.evaluate(CONTROL_TOPS) if top < 0.38]
            assert high == [], f"{screen}: controls in the top 40% of the display: {high}"
        self.seen.append(screen)


MODES = {"en": ("en", False), "es": ("es", False), "en-a11y": ("en", True)}


@pytest.mark.parametrize("mode", MODES.keys())
def test_every_screen_passes_axe(open_kiosk: Callable[..., Kiosk], mode: str) -> None:  # noqa: F811
    language, a11y = MODES[mode]
    kiosk = open_kiosk(kiosk={"language": language})
    rig, page = kiosk.rig, kiosk.page
    if a11y:
        page.set_viewport_size(PORTRAIT)
        page.locator("#a11y-toggle").click()
        expect(page.locator("#a11y-toggle")).to_have_attribute("aria-pressed", "true")
    audit = Auditor(kiosk, mode, a11y=a11y)
    rig.add_reservation("1Z0009")
    expired = rig.deposit("1Z0009", rig.login())
    rig.clock.advance(hours=73)
    rig.add_courier()
    rig.add_reservation("1Z0001", size="S")
    rig.add_reservation("1Z0002", size="S")
    jammed = rig.deposit("1Z0002", rig.login())
    audit("home")

    page.locator("#go-pickup").click()
    kiosk.tap_keys("pickup", "1234")
    audit("pickup")
    page.locator("#screen-pickup [data-goto='home']").click()
    page.locator("#go-qr").click()
    audit("qr", primary=False)
    page.locator("#screen-qr [data-goto='home']").click()

    page.locator("#go-courier").click()
    expect(page.locator('#carrier-list [data-carrier="ups"]')).to_have_attribute(
        "aria-checked", "true"
    )
    page.locator("#login-submit").click()
    expect(page.locator("#login-message")).not_to_be_empty()
    audit("courier-login")
    kiosk.tap_keys("login", COURIER_CODE)
    page.locator("#login-submit").click()
    kiosk.scan("NOT-RESERVED")
    expect(page.locator("#scan-message")).not_to_be_empty()
    audit("courier-scan")

    kiosk.scan("1Z0001")
    expect(kiosk.screen("deposit")).to_be_visible()
    label = page.locator("#deposit-label").inner_text()
    audit("deposit")
    rig.close_door(label)
    page.locator("#deposit-confirm").click()
    audit("deposit-done")

    page.locator("#screen-deposit-done [data-goto='courier-scan']").click()
    page.locator("#go-returns").click()
    row = page.locator(f'#returns-list li[data-parcel="{expired["parcel_id"]}"]')
    row.locator("button").click()
    expect(row).to_contain_text(expired["compartment"])
    audit("returns", primary=False)
    page.locator("#screen-returns [data-goto='courier-scan']").click()
    page.locator("#courier-logout").click()

    code = open_sealed(rig.keys, rig.events("parcel.deposited")[-1].data)["pickup_code"]
    page.locator("#go-pickup").click()
    kiosk.enter_code(code)
    expect(page.locator("#door-map .map-door.open")).to_have_attribute("data-door", label)
    audit("door-open")
    page.locator("#screen-door-open [data-goto='home']").click()

    rig.board.set_fault(Fault.JAM, lock=rig.lock_of(jammed["compartment"]))
    page.locator("#go-pickup").click()
    kiosk.enter_code(rig.secrets_for(jammed["parcel_id"])["pickup_code"])
    audit("door-problem")
    page.locator("#screen-door-problem [data-goto='home']").click()

    page.evaluate(
        """async () => {
          for (let i = 0; i < 5; i++) {
            await fetch('/api/pickup', {method: 'POST',
              headers: {'Content-Type': 'application/json'},
              body: JSON.stringify({code: '0000000000'})});
          }
        }"""
    )
    page.locator("#go-pickup").click()
    audit("locked")
    assert len(audit.seen) == 11
    if a11y:  # the mode lasted through every screen change
        expect(page.locator("html")).to_have_class("a11y")
        kiosk.screenshot("a11y-locked-portrait")


@pytest.mark.parametrize("mode", MODES.keys())
def test_every_drop_off_and_overflow_screen_passes_axe(
    open_kiosk: Callable[..., Kiosk],  # noqa: F811
    mode: str,
) -> None:
    """The screens of drop-offs (the sender's and the courier's) and of overflow, audited as
    the others are, in the same three modes."""
    language, a11y = MODES[mode]
    kiosk = open_kiosk(kiosk={"language": language})
    rig, page = kiosk.rig, kiosk.page
    if a11y:
        page.set_viewport_size(PORTRAIT)
        page.locator("#a11y-toggle").click()
    audit = Auditor(kiosk, mode, a11y=a11y)
    link = FakeLink()
    rig.node.flows.ports.central = link
    add_dropoff(rig.node.flows, "1ZDROP1")
    add_dropoff(rig.node.flows, "1ZDROP2", code="2" * 10, qr="dropoff-qr-token-0000000002")
    collected = rig.node.flows.start_dropoff("2" * 10)
    rig.close_door(collected.compartment)
    rig.node.flows.confirm_dropoff(collected.dropoff_id)

    page.locator("#go-dropoff").click()
    kiosk.tap_keys("dropoff", "0000000001")
    page.locator("#dropoff-submit").click()
    expect(page.locator("#dropoff-message")).not_to_be_empty()
    audit("dropoff")
    page.locator("#dropoff-go-qr").click()
    audit("dropoff-qr", primary=False)
    page.locator("#screen-dropoff-qr [data-goto='dropoff']").click()
    page.locator("#screen-dropoff [data-goto='home']").click()
    page.locator("#go-dropoff").click()  # the keypad starts empty again
    kiosk.tap_keys("dropoff", DROPOFF_CODE)
    page.locator("#dropoff-submit").click()
    audit("dropoff-door")
    label = page.locator("#dropoff-door-label").inner_text()
    rig.close_door(label)
    expect(kiosk.screen("dropoff-done")).to_be_visible()
    audit("dropoff-done")
    page.locator("#screen-dropoff-done [data-goto='home']").click()

    kiosk.courier_login()
    page.locator("#go-dropoffs").click()
    expect(page.locator("#collect-list li")).to_have_count(2)
    audit("collect", primary=False)
    page.locator("#screen-collect [data-goto='courier-scan']").click()

    rig.add_reservation("1ZFULL1", size="XL")
    rig.add_reservation("1ZFULL2", size="XL")
    rig.deposit("1ZFULL1", rig.login())  # the bank's one XL door is taken
    kiosk.scan("1ZFULL2")
    page.locator("[data-overflow-offer]:visible").click()
    expect(page.locator("#overflow-list button")).to_have_count(1)
    audit("overflow", primary=False)
    page.locator("#overflow-list button").click()
    audit("overflow-done")
    assert audit.seen == [
        "dropoff",
        "dropoff-qr",
        "dropoff-door",
        "dropoff-done",
        "collect",
        "overflow",
        "overflow-done",
    ]


@pytest.mark.parametrize("mode", MODES.keys())
def test_the_maintenance_screen_passes_axe_and_keeps_pickups(
    open_kiosk: Callable[..., Kiosk],  # noqa: F811
    mode: str,
) -> None:
    """While central has the bank in maintenance the kiosk's home says why, until when (in the
    bank's time) and where to go instead, and still leads to a pickup."""
    language, a11y = MODES[mode]
    kiosk = open_kiosk(kiosk={"language": language})
    rig, page = kiosk.rig, kiosk.page
    if a11y:
        page.set_viewport_size(PORTRAIT)
        page.locator("#a11y-toggle").click()
    audit = Auditor(kiosk, mode, a11y=a11y)
    until = datetime(2026, 3, 3, 17, 30, tzinfo=UTC)  # 18:30 in Madrid
    send_settings(
        rig.node.flows, 1, maintenance="Door repairs", until=until, timezone="Europe/Madrid"
    )
    page.reload()  # read at once, rather than at the kiosk's next look
    if a11y:
        page.locator("#a11y-toggle").click()

    expect(kiosk.screen("maintenance")).to_be_visible()
    expect(page.locator("#maintenance-reason")).to_contain_text("Door repairs")
    # In the kiosk's language: 06:30 PM in English, 18:30 in Spanish.
    expect(page.locator("#maintenance-until")).to_contain_text(re.compile(r"\b(18|06):30"))
    expect(page.locator("#maintenance-nearby li")).to_have_count(2)
    expect(page.locator("#maintenance-nearby li").first).to_contain_text("Station")
    audit("maintenance")
    if not a11y:
        assert_fits(kiosk, "maintenance")
        kiosk.screenshot(f"maintenance-{language}")

    page.locator("#maintenance-pickup").click()
    expect(kiosk.screen("pickup")).to_be_visible()
    page.locator("#screen-pickup [data-goto='home']").click()
    expect(kiosk.screen("maintenance")).to_be_visible()  # home is the maintenance screen
    assert audit.seen == ["maintenance"]
    if mode == "en":  # central ends it: the kiosk sees so by itself, no reload
        send_settings(rig.node.flows, 2)
        expect(kiosk.screen("home")).to_be_visible()
        expect(page.locator("#go-dropoff")).to_be_visible()
    if a11y:
        kiosk.screenshot("a11y-maintenance-portrait")


def press_until_focused(kiosk: Kiosk, selector: str, *, limit: int = 40) -> None:
    page = kiosk.page
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline != "none", f"{selector} has no visible focus"
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_a_pickup_with_the_keyboard_alone(open_kiosk: Callable[..., Kiosk]) -> None:  # noqa: F811
    kiosk = open_kiosk()
    rig, page = kiosk.rig, kiosk.page
    rig.add_reservation("1Z0001")
    confirmed = rig.deposit("1Z0001", rig.login())
    code = rig.secrets_for(confirmed["parcel_id"])["pickup_code"]

    press_until_focused(kiosk, "#a11y-toggle")
    page.keyboard.press("Space")
    expect(page.locator("#a11y-toggle")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#announce")).to_contain_text("Accessibility mode on")
    press_until_focused(kiosk, "#go-pickup")
    page.keyboard.press("Enter")
    expect(kiosk.screen("pickup")).to_be_visible()
    # The on-screen keypad, key by key, with Enter and Space ...
    for index, digit in enumerate(code[:4]):
        press_until_focused(kiosk, f'[data-keypad="pickup"] [data-key="{digit}"]')
        page.keyboard.press("Enter" if index % 2 else "Space")
    expect(page.locator("#pickup-display")).to_have_text(code[:4] + "_" * (len(code) - 4))
    # ... and the digits typed straight in.
    page.keyboard.type(code[4:])
    press_until_focused(kiosk, "#pickup-submit")
    page.keyboard.press("Enter")

    expect(kiosk.screen("door-open")).to_be_visible()
    expect(page.locator("#announce")).to_have_text(f"Door {confirmed['compartment']} is open")
    assert rig.door_is_open(confirmed["compartment"])
    press_until_focused(kiosk, "#screen-door-open [data-goto='home']")
    page.keyboard.press("Enter")
    expect(kiosk.screen("home")).to_be_visible()
    expect(page.locator("html")).to_have_class("a11y")  # only walking away switches it off


def test_accessibility_mode_ends_when_the_kiosk_goes_home_after_inactivity(
    open_kiosk: Callable[..., Kiosk],  # noqa: F811
) -> None:
    kiosk = open_kiosk(kiosk={"idle_timeout_s": 5})
    page = kiosk.page
    page.locator("#a11y-toggle").click()
    page.locator("#go-pickup").click()
    expect(page.locator("html")).to_have_class("a11y")

    expect(kiosk.screen("home")).to_be_visible(timeout=12_000)
    expect(page.locator("html")).not_to_have_class("a11y")
    expect(page.locator("#a11y-toggle")).to_have_attribute("aria-pressed", "false")


DOOR_MAP = """() => {
  const map = document.querySelector('#door-map').getBoundingClientRect();
  const doors = [...document.querySelectorAll('#door-map .map-door')].map((door) => {
    const box = door.getBoundingClientRect();
    return {label: door.dataset.door, inside: box.top >= map.top && box.bottom <= map.bottom
      && box.left >= map.left && box.right <= map.right && box.height >= 16};
  });
  return {height: map.height / window.innerHeight, width: map.width / window.innerWidth,
          doors: doors};
}"""


@pytest.mark.parametrize(
    "viewport", [{"width": 1080, "height": 1920}, {"width": 1920, "height": 1080}], ids=str
)
def test_the_door_map_shows_the_open_door_and_fits_the_display(
    open_kiosk: Callable[..., Kiosk],  # noqa: F811
    viewport: dict[str, int],
) -> None:
    kiosk = open_kiosk()
    kiosk.page.set_viewport_size(viewport)
    label = pick_up_through_the_keypad(kiosk)

    opened = kiosk.page.locator("#door-map .map-door.open")
    expect(opened).to_have_count(1)
    expect(opened).to_have_attribute("data-door", label)
    expect(opened).to_have_attribute("aria-label", f"Door {label}, open")
    expect(opened).to_contain_text("OPEN")
    assert_fits(kiosk, "door-open")
    found = kiosk.page.evaluate(DOOR_MAP)
    assert [door["label"] for door in found["doors"]] == [label for label, _, _ in LAYOUT]
    assert all(door["inside"] for door in found["doors"]), found
    assert found["height"] > 0.4, found  # the map is the screen's main picture
    kiosk.page.locator("#lang-toggle").click()
    expect(opened).to_have_attribute("aria-label", f"Puerta {label}, abierta")
    kiosk.screenshot(f"door-map-{viewport['width']}x{viewport['height']}")


def test_the_courier_sees_the_door_to_fill_on_the_map(
    open_kiosk: Callable[..., Kiosk],  # noqa: F811
) -> None:
    kiosk = open_kiosk()
    kiosk.rig.add_reservation("1Z0002")
    kiosk.courier_login()
    kiosk.scan("1Z0002")
    expect(kiosk.screen("deposit")).to_be_visible()
    label = kiosk.page.locator("#deposit-label").inner_text()

    opened = kiosk.page.locator("#deposit-map .map-door.open")
    expect(opened).to_have_count(1)
    expect(opened).to_have_attribute("data-door", label)
    assert_fits(kiosk, "deposit")


def test_the_arrow_keys_choose_a_carrier(open_kiosk: Callable[..., Kiosk]) -> None:  # noqa: F811
    kiosk = open_kiosk()
    kiosk.rig.add_courier("fedex")
    page = kiosk.page
    page.locator("#go-courier").click()
    carriers = page.locator("#carrier-list [data-carrier]")
    expect(carriers).to_have_count(2)
    first, second = (carriers.nth(i).get_attribute("data-carrier") for i in (0, 1))

    press_until_focused(kiosk, f'#carrier-list [data-carrier="{first}"]')
    page.keyboard.press("ArrowDown")
    expect(page.locator(f'#carrier-list [data-carrier="{second}"]')).to_be_focused()
    expect(page.locator(f'#carrier-list [data-carrier="{second}"]')).to_have_attribute(
        "aria-checked", "true"
    )
    page.keyboard.press("ArrowDown")  # round to the first again
    expect(page.locator(f'#carrier-list [data-carrier="{first}"]')).to_have_attribute(
        "aria-checked", "true"
    )
    expect(page.locator(f'#carrier-list [data-carrier="{second}"]')).to_have_attribute(
        "aria-checked", "false"
    )
