"""The recipient's parcel page in a real headless Chromium, against a real central server.

The parcel is reserved through the carrier API and its deposit written to central's database
as a node's `parcel.deposited` event leaves it; the page's token is signed with the server's
own service key. Screenshots go to test-artifacts/screenshots/parcel-page-*.png.

Central limits these pages to 20 requests at once per client address (then one a second), and
every request here comes from 127.0.0.1: the tests load few pages between them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect
from sqlalchemy import select

from central.models import Notice, Reservation, ReservationStatus
from central.nodes.enrollment import issue_enrollment_token
from central.notices.pickup import seal_pickup
from central.notices.tokens import make_page_token
from locker_wire import signing
from tests.browser import support
from tests.browser.support import central
from tests.e2e.harness import BANK, World

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CODE = "4815162342"
QR_PAYLOAD = "LKR1:browser-test-qr"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@dataclass
class Parcels:
    world: World
    english: str  # page tokens
    spanish: str

    @property
    def base(self) -> str:
        return self.world.base


def enroll_node(world: World) -> None:
    """A node for the bank (what an extension's command goes to); no process needed."""
    with world.sessions.begin() as session:
        token = issue_enrollment_token(session, BANK, datetime.now(UTC))
    key = signing.generate_private_key()
    answer = httpx.post(
        f"{world.base}/v1/node/enroll",
        json={
            "token": token,
            "public_key": signing.public_key_text(key),
            "node_version": "1.0.0",
            "compartments": [
                {"label": "A01", "size": "S"},
                {"label": "A02", "size": "S"},
                {"label": "A03", "size": "M"},
                {"label": "A04", "size": "M"},
            ],
        },
    )
    assert answer.status_code == 200, answer.text


def ready_parcel(world: World, tracking: str, recipient: dict[str, Any]) -> str:
    """Reserve through the carrier API, then deposit; returns the page's token."""
    answer = httpx.post(
        f"{world.base}/v1/reservations",
        json={"tracking_number": tracking, "bank_id": BANK, "size": "S", "recipient": recipient},
        headers=world.carrier.headers,
    )
    assert answer.status_code == 201, answer.text
    rid = str(answer.json()["id"])
    now = datetime.now(UTC)
    with world.sessions.begin() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        reservation.status = ReservationStatus.DEPOSITED
        reservation.deposited_at = now
        reservation.pickup_deadline = now + timedelta(hours=72)
        reservation.compartment_label = "A01"
        reservation.pickup_secret_sealed = seal_pickup(world.keys, CODE, QR_PAYLOAD)
        reservation.updated_at = now
    return make_page_token(world.keys, rid, now)


@pytest.fixture(scope="module")
def parcels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parcels]:
    with central(tmp_path_factory.mktemp("parcel-page"), {}) as world:
        enroll_node(world)
        english = ready_parcel(world, "ACME-PAGE-EN", {"email": "ann@example.com"})
        spanish = ready_parcel(
            world, "ACME-PAGE-ES", {"email": "eva@example.com", "language": "es"}
        )
        yield Parcels(world, english, spanish)


def error_page(message: ConsoleMessage) -> bool:
    """The status of the error pages themselves, which is what they are for."""
    return "status of 404" in message.text or "status of 410" in message.text


def open_page(
    browser: Browser, viewport: dict[str, int] | None = None
) -> AbstractContextManager[Page]:
    """A fresh profile; a console error (a CSP refusal, a failed load) fails the test, but for
    the status of the error pages."""
    return support.open_page(browser, viewport=viewport or DESKTOP, allow=error_page)


def screenshot(page: Page, name: str) -> None:
    support.screenshot(page, f"parcel-page-{name}")


def expect_qr_loaded(page: Page) -> None:
    qr = page.locator("#qr")
    expect(qr).to_be_visible()
    page.wait_for_function(
        "() => { const img = document.querySelector('#qr');"
        " return img.complete && img.naturalWidth > 100; }"
    )


def no_horizontal_scroll(page: Page, width: int) -> bool:
    return bool(page.evaluate(f"document.documentElement.scrollWidth <= {width}"))


def test_a_ready_parcel_on_a_phone_in_english(parcels: Parcels, browser: Browser) -> None:
    with open_page(browser, PHONE) as page:
        answer = page.goto(f"{parcels.base}/p/{parcels.english}")
        assert answer is not None and answer.status == 200
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator("#state-name")).to_have_text("Ready for pickup")
        expect(page.locator("#code-grouped")).to_have_text("48151 62342")
        expect(page.get_by_text(f"Pickup code: {CODE}")).to_be_attached()
        expect_qr_loaded(page)
        expect(page.locator("#location")).to_contain_text("E2E bank")
        expect(page.locator("#location")).to_contain_text("1 Test St")
        expect(page.locator("#details")).to_contain_text("ACME-PAGE-EN")
        expect(page.locator("#deadline")).to_contain_text(":")
        map_link = page.locator("#map-link")
        expect(map_link).to_have_attribute("target", "_blank")
        expect(map_link).to_have_attribute("rel", "noopener noreferrer")
        for button in ("#resend", "#extend", "#problem-submit"):
            box = page.locator(button).bounding_box()
            assert box is not None and box["height"] >= 44, button
        assert no_horizontal_scroll(page, PHONE["width"])
        screenshot(page, "ready-en-phone")


def test_a_ready_parcel_in_spanish(parcels: Parcels, browser: Browser) -> None:
    with open_page(browser) as page:
        page.goto(f"{parcels.base}/p/{parcels.spanish}")  # the recipient's language: Spanish
        expect(page.locator("html")).to_have_attribute("lang", "es")
        expect(page.locator("#state-name")).to_have_text("Listo para recoger")
        expect(page.locator("#code-grouped")).to_have_text("48151 62342")
        expect(page.locator("#extend")).to_have_text("Ampliar el plazo de recogida")
        expect_qr_loaded(page)
        screenshot(page, "ready-es")


def test_resend_extend_and_report_through_the_buttons(parcels: Parcels, browser: Browser) -> None:
    with open_page(browser, PHONE) as page:
        page.goto(f"{parcels.base}/p/{parcels.english}")
        before = page.locator("#deadline").inner_text()

        page.locator("#resend").click()
        expect(page.locator("#message")).to_have_text(
            "We have sent your code again. It may take a few minutes to arrive."
        )
        with parcels.world.sessions() as session:  # the deposit was written without notices
            assert "ready" in session.scalars(select(Notice.kind)).all()

        page.locator("#extend").click()
        expect(page.locator("#message")).to_contain_text("you have more time to collect")
        expect(page.locator("#deadline")).not_to_have_text(before)
        expect(page.locator("#extend")).to_have_count(0)
        expect(page.locator("#extend-used")).to_be_visible()
        screenshot(page, "extended")

        page.get_by_label("The door did not open").check()
        page.get_by_label("Tell us more (optional)").fill("Compartment stayed shut.")
        page.locator("#problem-submit").click()
        expect(page.locator("#message")).to_contain_text("have your report")
        assert no_horizontal_scroll(page, PHONE["width"])


def test_wrong_and_altered_tokens_show_the_error_page_without_data(
    parcels: Parcels, browser: Browser
) -> None:
    token = parcels.english
    altered = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    with open_page(browser, PHONE) as page:
        for name, bad in (("wrong", "this-is-no-token"), ("altered", altered)):
            answer = page.goto(f"{parcels.base}/p/{bad}")
            assert answer is not None and answer.status == 404
            expect(page.locator("h1")).to_have_text("This link does not work")
            expect(page.locator("main")).to_contain_text("newest message about your parcel")
            body = page.locator("body").inner_text()
            for data in ("E2E bank", "1 Test St", "ACME", "48151", CODE):
                assert data not in body
            assert no_horizontal_scroll(page, PHONE["width"])
            screenshot(page, f"{name}-token")
