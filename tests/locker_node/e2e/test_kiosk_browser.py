"""The kiosk in a real headless Chromium, against a node on a simulated board.

Screenshots of the main screens go to test-artifacts/kiosk/.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect

from locker_node.hardware.simulator import Fault
from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, launch_chromium
from tests.locker_node.e2e.nodes import free_port
from tests.locker_node.kiosk.rig import (
    COURIER_CODE,
    Rig,
    build_rig,
    make_schema_template,
    open_sealed,
)

pytestmark = pytest.mark.browser

__all__ = ["CHROMIUM", "CHROMIUM_ARGS"]  # where other modules import them from; see support
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "kiosk"


class Kiosk:
    """A node served by uvicorn in a thread, and a kiosk-sized page looking at it."""

    def __init__(self, rig: Rig, page: Page, url: str) -> None:
        self.rig = rig
        self.page = page
        self.url = url

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=ARTIFACTS / f"{name}.png")

    def screen(self, name: str) -> Any:
        return self.page.locator(f"#screen-{name}")

    def tap_keys(self, keypad: str, digits: str) -> None:
        for digit in digits:
            self.page.locator(f'[data-keypad="{keypad}"] [data-key="{digit}"]').click()

    def courier_login(self) -> None:
        self.page.locator("#go-courier").click()
        expect(self.page.locator('#carrier-list [data-carrier="ups"]')).to_have_attribute(
            "aria-checked", "true"
        )
        self.tap_keys("login", COURIER_CODE)
        self.page.locator("#login-submit").click()
        expect(self.screen("courier-scan")).to_be_visible()

    def scan(self, tracking: str) -> None:
        self.page.locator("#scan-input").fill(tracking)
        self.page.locator("#scan-input").press("Enter")

    def enter_code(self, code: str) -> None:
        self.tap_keys("pickup", code)
        self.page.locator("#pickup-submit").click()


def serve(rig: Rig) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            rig.node.app,
            host="127.0.0.1",
            port=port,
            loop="asyncio",
            http="h11",
            ws="none",
            lifespan="off",
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, name="kiosk-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the kiosk server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_schema_template(tmp_path_factory.mktemp("kiosk-schema"))


@pytest.fixture
def open_kiosk(browser: Browser, tmp_path: Path, template: Path) -> Iterator[Callable[..., Kiosk]]:
    cleanups: list[Callable[[], None]] = []

    def open_(**sections: Any) -> Kiosk:
        rig = build_rig(tmp_path / f"node{len(cleanups)}", template, **sections)
        rig.add_courier()
        server = serve(rig)
        url = next(server)
        context = browser.new_context(viewport={"width": 1280, "height": 1024})
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(url)
        expect(page.locator("#screen-home")).to_be_visible()

        def cleanup() -> None:
            context.close()
            next(server, None)
            rig.close()

        cleanups.append(cleanup)
        return Kiosk(rig, page, url)

    yield open_
    for cleanup in cleanups:
        cleanup()


def test_a_courier_deposits_and_the_recipient_picks_up(open_kiosk: Callable[..., Kiosk]) -> None:
    kiosk = open_kiosk()
    rig, page = kiosk.rig, kiosk.page
    rig.add_reservation("1Z0001", size="M")
    kiosk.screenshot("home")

    page.locator("#go-courier").click()
    expect(page.locator('#carrier-list [data-carrier="ups"]')).to_be_visible()
    kiosk.screenshot("courier-login")
    kiosk.tap_keys("login", COURIER_CODE)
    page.locator("#login-submit").click()
    expect(kiosk.screen("courier-scan")).to_be_visible()
    kiosk.screenshot("scan")

    kiosk.scan("1Z0001")
    expect(kiosk.screen("deposit")).to_be_visible()
    expect(page.locator("#deposit-label")).to_have_text("B01")
    expect(page.locator("#deposit-title")).to_have_text("Door B01 is open")
    assert rig.door_is_open("B01")
    kiosk.screenshot("deposit")

    page.locator("#deposit-confirm").click()
    expect(page.locator("#deposit-message")).to_have_text("Close door B01 first.")
    rig.close_door("B01")
    page.locator("#deposit-confirm").click()
    expect(kiosk.screen("deposit-done")).to_be_visible()
    expect(page.locator("#done-title")).to_have_text("Parcel stored in door B01")
    kiosk.screenshot("deposit-done")
    page.locator("#done-logout").click()
    expect(kiosk.screen("home")).to_be_visible()

    [event] = rig.events("parcel.deposited")
    code = open_sealed(rig.keys, event.data)["pickup_code"]
    page.locator("#go-pickup").click()
    expect(kiosk.screen("pickup")).to_be_visible()
    kiosk.tap_keys("pickup", code[:4])
    kiosk.screenshot("pickup-keypad")
    kiosk.tap_keys("pickup", code[4:])
    page.locator("#pickup-submit").click()

    expect(kiosk.screen("door-open")).to_be_visible()
    expect(page.locator("#door-open-label")).to_have_text("B01")
    expect(page.locator("#door-open-title")).to_have_text("Door B01 is open")
    assert rig.door_is_open("B01")
    assert rig.parcel(event.data["parcel_id"]).status == "picked_up"
    kiosk.screenshot("door-open")


def test_a_wrong_code_shows_attempts_left_then_a_lockout_countdown(
    open_kiosk: Callable[..., Kiosk],
) -> None:
    kiosk = open_kiosk()
    rig, page = kiosk.rig, kiosk.page
    rig.add_reservation("1Z0001")
    confirmed = rig.deposit("1Z0001", rig.login())
    secrets = rig.secrets_for(confirmed["parcel_id"])
    code = secrets["pickup_code"]
    wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"

    page.locator("#go-pickup").click()
    kiosk.enter_code(wrong)
    expect(page.locator("#pickup-message")).to_have_text("That code is not right. Attempts left: 4")
    kiosk.screenshot("wrong-code")
    for _ in range(4):
        kiosk.enter_code(wrong)

    expect(kiosk.screen("locked")).to_be_visible()
    countdown = page.locator("#locked-countdown")
    expect(countdown).to_have_text(re.compile(r"^0:(30|29|28)$"))
    shown = countdown.inner_text()
    expect(countdown).not_to_have_text(shown, timeout=3000)  # it counts down
    expect(countdown).to_have_text(re.compile(r"^0:2\d$"))
    kiosk.screenshot("locked-out")

    # A lockout never blocks a QR code.
    page.locator("#screen-locked [data-goto='qr']").click()
    page.locator("#qr-input").fill(secrets["qr_payload"])
    page.locator("#qr-input").press("Enter")
    expect(kiosk.screen("door-open")).to_be_visible()
    expect(page.locator("#door-open-label")).to_have_text(confirmed["compartment"])


def test_too_small_reopens_a_larger_door(open_kiosk: Callable[..., Kiosk]) -> None:
    kiosk = open_kiosk()
    rig, page = kiosk.rig, kiosk.page
    rig.add_reservation("1Z0001", size="S")
    kiosk.courier_login()
    kiosk.scan("1Z0001")
    expect(page.locator("#deposit-label")).to_have_text("A01")

    page.locator("#deposit-too-small").click()

    expect(page.locator("#deposit-label")).to_have_text("B01")
    expect(page.locator("#deposit-title")).to_have_text("Larger door B01 is open")
    expect(page.locator("#deposit-notice")).to_have_text(
        "Door A01 is free again. Put the parcel in door B01."
    )
    assert rig.door_is_open("B01")
    assert rig.compartment("A01").occupancy == "free"
    kiosk.screenshot("too-small")


def test_jammed_doors_move_a_deposit_and_stop_a_pickup_clearly(
    open_kiosk: Callable[..., Kiosk],
) -> None:
    kiosk = open_kiosk()
    rig, page = kiosk.rig, kiosk.page
    rig.add_reservation("1Z0001")
    rig.add_reservation("1Z0002")
    rig.board.set_fault(Fault.JAM, lock=rig.lock_of("A01"))
    kiosk.courier_login()

    kiosk.scan("1Z0001")

    expect(page.locator("#deposit-label")).to_have_text("A02")
    expect(page.locator("#deposit-notice")).to_have_text(
        "Door A01 did not open. Use door A02 instead."
    )
    kiosk.screenshot("deposit-door-moved")

    rig.close_door("A02")
    page.locator("#deposit-confirm").click()
    expect(kiosk.screen("deposit-done")).to_be_visible()
    page.locator("#done-logout").click()
    [event] = rig.events("parcel.deposited")
    code = open_sealed(rig.keys, event.data)["pickup_code"]
    rig.board.set_fault(Fault.JAM, lock=rig.lock_of("A02"))

    page.locator("#go-pickup").click()
    kiosk.enter_code(code)

    expect(kiosk.screen("door-problem")).to_be_visible()
    expect(page.locator("#door-problem-detail")).to_have_text(
        "Door A02 did not open. Your code still works."
    )
    kiosk.screenshot("door-problem")
    rig.board.clear_faults()
    page.locator("#door-problem-retry").click()
    expect(kiosk.screen("door-open")).to_be_visible()
    expect(page.locator("#door-open-label")).to_have_text("A02")


def test_returns_are_listed_opened_and_collected(open_kiosk: Callable[..., Kiosk]) -> None:
    kiosk = open_kiosk()
    rig, page = kiosk.rig, kiosk.page
    rig.add_reservation("1Z0001")
    confirmed = rig.deposit("1Z0001", rig.login())
    rig.clock.advance(hours=73)
    rig.add_courier()
    kiosk.courier_login()

    page.locator("#go-returns").click()
    row = page.locator(f'#returns-list li[data-parcel="{confirmed["parcel_id"]}"]')
    expect(row).to_contain_text("1Z0001")
    row.locator("button").click()
    expect(row).to_contain_text(f"Door {confirmed['compartment']} is open.")
    kiosk.screenshot("returns")
    rig.close_door(confirmed["compartment"])
    row.locator("button").click()

    expect(row).to_contain_text("Recorded as returned.")
    assert rig.parcel(confirmed["parcel_id"]).status == "returned"


def test_spanish_and_back_home_after_inactivity(open_kiosk: Callable[..., Kiosk]) -> None:
    kiosk = open_kiosk(kiosk={"idle_timeout_s": 5})
    page = kiosk.page

    page.locator("#lang-toggle").click()
    expect(page.locator("#go-pickup")).to_have_text("Recoger un paquete")
    expect(page.locator("html")).to_have_attribute("lang", "es")
    kiosk.screenshot("home-es")
    kiosk.courier_login()
    expect(page.locator("#scan-submit")).to_have_text("Abrir una puerta")

    # Nobody touches the screen: home, in the default language, the courier logged out.
    expect(kiosk.screen("home")).to_be_visible(timeout=12_000)
    expect(page.locator("#go-pickup")).to_have_text("Pick up a parcel")
    status = page.evaluate("fetch('/api/courier/session').then(r => r.status)")
    assert status == 401


def test_a_courier_login_without_a_code_says_what_is_wrong(
    open_kiosk: Callable[..., Kiosk],
) -> None:
    kiosk = open_kiosk()
    page = kiosk.page
    page.locator("#go-courier").click()
    expect(page.locator('#carrier-list [data-carrier="ups"]')).to_have_attribute(
        "aria-checked", "true"
    )

    page.locator("#login-submit").click()

    expect(page.locator("#login-message")).to_have_text("The courier code has 4 to 12 digits.")
    page.locator("#lang-toggle").click()
    expect(page.locator("#login-message")).to_have_text(
        "El código de repartidor tiene de 4 a 12 dígitos."
    )


def test_a_locked_out_courier_is_not_sent_to_the_recipients_qr_code(
    open_kiosk: Callable[..., Kiosk],
) -> None:
    kiosk = open_kiosk()
    page = kiosk.page
    statuses = page.evaluate(
        """async () => {
          const statuses = [];
          for (let i = 0; i < 5; i++) {
            const answer = await fetch('/api/courier/login', {
              method: 'POST', headers: {'Content-Type': 'application/json'},
              body: JSON.stringify({carrier: 'ups', pin: '11112222'})});
            statuses.push(answer.status);
          }
          return statuses;
        }"""
    )
    assert statuses[-1] in (401, 429)

    page.locator("#go-courier").click()
    expect(page.locator('#carrier-list [data-carrier="ups"]')).to_have_attribute(
        "aria-checked", "true"
    )
    kiosk.tap_keys("login", COURIER_CODE)
    page.locator("#login-submit").click()

    expect(kiosk.screen("locked")).to_be_visible()
    expect(page.locator("#locked-hint")).to_have_text("Courier login is locked. Try again in")
    expect(page.locator("#screen-locked [data-goto='qr']")).to_be_hidden()
    expect(page.locator("#screen-locked [data-goto='home']")).to_be_visible()
    kiosk.screenshot("courier-locked-out")


VIEWPORTS = {
    "portrait-1080x1920": {"width": 1080, "height": 1920},
    "landscape-1280x800": {"width": 1280, "height": 800},
    "landscape-1024x768": {"width": 1024, "height": 768},
}

FITS = """() => {
  const doc = document.scrollingElement;
  const screen = document.querySelector('.screen:not([hidden])');
  const outside = [...screen.querySelectorAll('button, input, .primary')]
    .filter((element) => element.getClientRects().length > 0)
    .filter((element) => {
      const box = element.getBoundingClientRect();
      return box.top < 0 || box.left < 0 || box.bottom > window.innerHeight
        || box.right > window.innerWidth;
    })
    .map((element) => element.id || element.textContent.trim());
  const primary = [...screen.querySelectorAll('.primary')]
    .filter((element) => element.getClientRects().length > 0).length;
  return {
    screen: screen.dataset.name,
    scrollHeight: doc.scrollHeight, innerHeight: window.innerHeight,
    scrollWidth: doc.scrollWidth, innerWidth: window.innerWidth,
    outside: outside, primary: primary,
  };
}"""


def assert_fits(kiosk: Kiosk, screen: str, *, primary: bool = True) -> None:
    expect(kiosk.screen(screen)).to_be_visible()
    expect(kiosk.page.locator("#busy")).to_be_hidden()
    found = kiosk.page.evaluate(FITS)
    assert found["screen"] == screen
    assert found["scrollHeight"] <= found["innerHeight"], found
    assert found["scrollWidth"] <= found["innerWidth"], found
    assert found["outside"] == [], found
    if primary:
        assert found["primary"] >= 1, found


@pytest.mark.parametrize("viewport", VIEWPORTS.values(), ids=VIEWPORTS.keys())
def test_every_screen_fits_the_display_without_scrolling(
    open_kiosk: Callable[..., Kiosk], viewport: dict[str, int]
) -> None:
    kiosk = open_kiosk()
    rig, page = kiosk.rig, kiosk.page
    page.set_viewport_size(viewport)
    rig.add_reservation("1Z0009")
    expired = rig.deposit("1Z0009", rig.login())
    rig.clock.advance(hours=73)
    rig.add_courier()
    rig.add_reservation("1Z0001", size="S")
    assert_fits(kiosk, "home")

    page.locator("#go-pickup").click()
    kiosk.tap_keys("pickup", "1234")
    assert_fits(kiosk, "pickup")
    page.locator("#screen-pickup [data-goto='home']").click()

    page.locator("#go-courier").click()
    expect(page.locator('#carrier-list [data-carrier="ups"]')).to_have_attribute(
        "aria-checked", "true"
    )
    page.locator("#login-submit").click()
    expect(page.locator("#login-message")).not_to_be_empty()
    assert_fits(kiosk, "courier-login")
    kiosk.tap_keys("login", COURIER_CODE)
    page.locator("#login-submit").click()

    kiosk.scan("NOT-RESERVED")
    expect(page.locator("#scan-message")).not_to_be_empty()
    assert_fits(kiosk, "courier-scan")

    kiosk.scan("1Z0001")
    expect(page.locator("#deposit-label")).to_have_text("A02")  # A01 holds the expired one
    page.locator("#deposit-confirm").click()
    expect(page.locator("#deposit-message")).to_have_text("Close door A02 first.")
    assert_fits(kiosk, "deposit")
    page.locator("#deposit-too-small").click()
    expect(page.locator("#deposit-notice")).to_be_visible()
    assert_fits(kiosk, "deposit")
    rig.close_door("B01")
    page.locator("#deposit-confirm").click()
    assert_fits(kiosk, "deposit-done")

    page.locator("#screen-deposit-done [data-goto='courier-scan']").click()
    page.locator("#go-returns").click()
    row = page.locator(f'#returns-list li[data-parcel="{expired["parcel_id"]}"]')
    row.locator("button").click()
    expect(row).to_contain_text("is open")
    assert_fits(kiosk, "returns", primary=False)
    page.locator("#screen-returns [data-goto='courier-scan']").click()
    page.locator("#courier-logout").click()

    deposited = rig.events("parcel.deposited")[-1]
    code = open_sealed(rig.keys, deposited.data)["pickup_code"]
    page.locator("#go-pickup").click()
    kiosk.enter_code(code)
    assert_fits(kiosk, "door-open")
    page.locator("#screen-door-open [data-goto='home']").click()

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
    assert_fits(kiosk, "locked")
    name = "x".join(str(size) for size in viewport.values())
    kiosk.screenshot(f"locked-{name}")


def pick_up_through_the_keypad(kiosk: Kiosk) -> str:
    rig = kiosk.rig
    rig.add_reservation("1Z0001")
    confirmed = rig.deposit("1Z0001", rig.login())
    code = rig.secrets_for(confirmed["parcel_id"])["pickup_code"]
    kiosk.page.locator("#go-pickup").click()
    kiosk.enter_code(code)
    expect(kiosk.screen("door-open")).to_be_visible()
    label: str = confirmed["compartment"]
    assert kiosk.rig.door_is_open(label)
    return label


def test_the_open_door_screen_goes_home_once_the_door_is_closed(
    open_kiosk: Callable[..., Kiosk],
) -> None:
    kiosk = open_kiosk()
    label = pick_up_through_the_keypad(kiosk)
    expect(kiosk.screen("door-open")).to_be_visible()

    kiosk.rig.close_door(label)

    expect(kiosk.screen("home")).to_be_visible(timeout=5_000)


def test_the_open_door_screen_goes_home_after_20_s_even_with_the_door_open(
    open_kiosk: Callable[..., Kiosk],
) -> None:
    kiosk = open_kiosk()
    page = kiosk.page
    page.clock.install()
    page.reload()
    expect(kiosk.screen("home")).to_be_visible()
    pick_up_through_the_keypad(kiosk)

    page.clock.run_for(15_000)
    expect(kiosk.screen("door-open")).to_be_visible()
    page.clock.run_for(6_000)

    expect(kiosk.screen("home")).to_be_visible()


def test_an_empty_returns_list_is_information_not_an_error(
    open_kiosk: Callable[..., Kiosk],
) -> None:
    kiosk = open_kiosk()
    page = kiosk.page
    kiosk.courier_login()

    page.locator("#go-returns").click()

    empty = page.get_by_text("There is nothing to take back.")
    expect(empty).to_be_visible()
    expect(empty).not_to_have_attribute("role", "alert")
    expect(empty).not_to_have_css("color", "rgb(255, 92, 92)")
    expect(page.locator("#returns-message")).to_be_empty()


def test_carriers_are_shown_by_their_names(open_kiosk: Callable[..., Kiosk]) -> None:
    kiosk = open_kiosk()
    for carrier in ("usps", "fedex", "dhl", "acme-post"):
        kiosk.rig.add_courier(carrier)
    page = kiosk.page

    page.locator("#go-courier").click()

    carriers = page.locator("#carrier-list [data-carrier]")
    expect(carriers).to_have_count(5)
    names = dict(
        zip(
            carriers.evaluate_all("buttons => buttons.map(b => b.dataset.carrier)"),
            carriers.all_inner_texts(),
            strict=True,
        )
    )
    assert names == {
        "acme-post": "acme-post",
        "dhl": "DHL",
        "fedex": "FedEx",
        "ups": "UPS",
        "usps": "USPS",
    }
