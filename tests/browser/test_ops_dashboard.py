"""The operator dashboard in a real headless Chromium, against a real central server and a real
`locker-node run` process on a simulated board.

The tests share one network and run in file order: the viewer's test looks at the parcel and
the alert the admin's tests made. Screenshots of the main pages go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect
from sqlalchemy import select

from central.models import Alert, Notice, Reservation
from central.ops.pages import safe_next
from locker_node.store import outbox as node_outbox
from tests.browser.support import (
    WAIT_MS,
    Allowed,
    Network,
    audit,
    open_page,
    screenshot,
    sign_in,
    source,
)
from tests.browser.support import network as start_network
from tests.e2e.harness import BANK, deposit, eventually, reserve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ADMIN = ("admin@ops.test", "admin-password-0123")
VIEWER = ("viewer@ops.test", "viewer-password-0123")


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """Central (with an admin and a viewer) and the bank's enrolled node, shared by the module."""
    operators = {ADMIN: "admin", VIEWER: "viewer"}
    with start_network(tmp_path_factory.mktemp("ops"), operators) as network:
        yield network


def refused_sign_in(message: ConsoleMessage) -> bool:
    """The browser logs the 401 of a refused sign-in; the form showing it is tested."""
    return "status of 401" in message.text and source(message).endswith("/ops/api/session")


@pytest.fixture
def expected_console_errors() -> Allowed:
    return refused_sign_in


def node_audited(network: Network, action: str, command_id: str) -> bool:
    with network.node_database() as conn:
        return node_outbox.audit_for_command(conn, action, command_id) is not None


def test_admin_sees_a_deposit_change_occupancy_without_reloading(
    network: Network, page: Page
) -> None:
    page.goto(f"{network.base}/ops/login")
    expect(page.locator("#login-form")).to_be_visible()
    screenshot(page, "login")
    page.locator("#email").fill(ADMIN[0])
    page.locator("#password").fill("not-the-password")
    page.locator("#login-submit").click()
    expect(page.locator("#login-error")).to_have_text("Wrong email or password.")
    sign_in(page, network.base, ADMIN)
    expect(page.locator("#operator-role")).to_have_text("admin")
    small = page.locator(f'tr[data-bank="{BANK}"] td[data-class="S"]')
    expect(small).to_have_attribute("data-occupied", "0")
    page.evaluate("window.__notReloaded = true")

    reserve(network.world, "ACME-OPS-1")
    expect(small).to_have_attribute("data-reserved", "1", timeout=WAIT_MS)
    deposit(network.node, network.kiosk, network.world, "ACME-OPS-1")

    expect(small).to_have_attribute("data-occupied", "1", timeout=WAIT_MS)
    expect(small).to_have_attribute("data-reserved", "0")
    assert page.evaluate("window.__notReloaded") is True
    expect(page.locator('[data-total="occupied"]')).to_have_text("1")
    screenshot(page, "overview")

    page.locator(f'tr[data-bank="{BANK}"] th a').click()
    expect(page).to_have_url(f"{network.base}/ops/banks/{BANK}")
    expect(page.locator('#compartment-grid [data-state="occupied"]')).to_have_count(1)
    expect(page.locator("#bank-parcels tr[data-reservation]")).to_have_count(1)
    expect(page.locator("#bank-parcels")).to_contain_text("ACME-OPS-1")
    screenshot(page, "bank")

    page.goto(f"{network.base}/ops/parcels?tracking_number=ACME-OPS-1")
    history = page.locator(".parcel table.history tbody tr")
    expect(history.last).to_contain_text("deposited")
    screenshot(page, "parcels")


def test_admin_raises_and_acknowledges_an_alert(network: Network, page: Page) -> None:
    sign_in(page, network.base, ADMIN, "/ops/alerts")
    page.locator("#raise-bank").fill(BANK)
    page.locator("#raise-note").fill("Graffiti on the bank's front panel")
    page.locator("#raise-submit").click()
    row = page.locator('#alert-rows tr[data-alert-type="manual"]')
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-acknowledged", "no")

    row.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("#alert-dialog")).to_be_visible()
    page.locator("#alert-reason").fill("cleaning crew booked")
    page.locator("#alert-submit").click()

    expect(row).to_have_attribute("data-acknowledged", "yes")
    expect(row).to_contain_text(ADMIN[0])
    expect(row.get_by_role("button", name="Acknowledge")).to_have_count(0)
    screenshot(page, "alerts")

    page.goto(f"{network.base}/ops/audit")
    expect(page.locator("#audit-rows")).to_contain_text("cleaning crew booked")
    screenshot(page, "audit")


def test_admin_opens_a_door_remotely_and_the_node_does_it(network: Network, page: Page) -> None:
    sign_in(page, network.base, ADMIN, f"/ops/banks/{BANK}")
    page.locator('#compartment-grid [data-size="M"][data-state="free"]').first.click()
    dialog = page.locator("#compartment-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator('[data-fact="state"]')).to_have_text("free")

    page.locator("#action-open").click()  # no reason: the form refuses, nothing is sent
    expect(page.locator("#action-reason:invalid")).to_have_count(1)
    expect(page.locator("#command-status")).to_have_text("")
    page.locator("#action-reason").fill("customer locked a key inside, ticket 4711")
    page.locator("#action-open").click()

    status = page.locator("#command-status")
    expect(status).to_have_attribute("data-command-status", "acknowledged", timeout=WAIT_MS)
    expect(status).to_contain_text("acknowledged")
    command_id = status.get_attribute("data-command-id")
    assert command_id
    assert node_audited(network, "remote_open", command_id)
    screenshot(page, "bank-remote-open", full_page=False)  # the dialog's backdrop fills the view


def a_parcel_and_an_open_alert(network: Network) -> None:
    """What the viewer is shown: the tests above leave both; run alone, this makes them."""
    with httpx.Client(base_url=network.base, timeout=10) as admin:
        signed = admin.post("/ops/api/session", json={"email": ADMIN[0], "password": ADMIN[1]})
        assert signed.status_code == 200, signed.text
        bank = admin.get(f"/ops/api/banks/{BANK}").json()
        if not any(c["parcel"] for c in bank["compartments"]):
            reserve(network.world, "ACME-OPS-V")
            deposit(network.node, network.kiosk, network.world, "ACME-OPS-V")
        if not bank["alerts"]:
            raised = admin.post(
                "/ops/api/alerts",
                json={"bank_id": BANK, "type": "manual", "detail": {"note": "for the viewer"}},
                headers={"X-CSRF-Token": signed.json()["csrf_token"]},
            )
            assert raised.status_code == 201, raised.text


def test_viewer_sees_no_controls_and_cannot_act(network: Network, page: Page) -> None:
    a_parcel_and_an_open_alert(network)
    sign_in(page, network.base, VIEWER, f"/ops/banks/{BANK}")
    expect(page.locator("#operator-role")).to_have_text("viewer")
    expect(page.locator("#compartment-grid [data-label]").first).to_be_visible()
    # A parcel and an alert are there; their action buttons are not.
    expect(page.locator("#bank-parcels tr[data-reservation]")).not_to_have_count(0)
    expect(page.locator("#bank-alerts [data-alert-id]")).not_to_have_count(0)
    expect(page.locator("#bank-alerts button")).to_have_count(0)
    page.locator("#compartment-grid [data-label]").first.click()
    expect(page.locator("#compartment-facts")).to_be_visible()
    expect(page.locator("#compartment-action")).to_have_count(0)
    expect(page.locator("#bank-parcels button[data-act]")).to_have_count(0)
    page.keyboard.press("Escape")

    page.goto(f"{network.base}/ops/alerts?status=all")
    expect(page.locator("#alert-rows tr[data-alert-id]").first).to_be_visible()
    expect(page.locator("#raise-alert")).to_have_count(0)
    expect(page.locator("#alert-rows button")).to_have_count(0)

    csrf = page.request.get(f"{network.base}/ops/api/session").json()["csrf_token"]
    forged = page.request.post(
        f"{network.base}/ops/api/banks/{BANK}/compartments/A01/open",
        data={"reason": "let me in"},
        headers={"X-CSRF-Token": csrf},
    )
    assert forged.status == 403
    assert forged.json()["error"] == "forbidden"
    raised = page.request.post(
        f"{network.base}/ops/api/alerts",
        data={"bank_id": BANK, "type": "manual", "detail": {"note": "x"}},
        headers={"X-CSRF-Token": csrf},
    )
    assert raised.status == 403


def test_charts_and_reports_render(network: Network, page: Page) -> None:
    sign_in(page, network.base, ADMIN, "/ops/charts")
    for chart in ("occupancy", "dwell", "throughput", "faults"):
        expect(page.locator(f"figure:has(#{chart}-chart)")).to_have_attribute(
            "data-points", re.compile(r"^\d+$")
        )
    screenshot(page, "charts")

    today = datetime.now(UTC).date().isoformat()
    page.goto(f"{network.base}/ops/reports?date={today}")
    row = page.locator(f'#report-rows tr[data-bank="{BANK}"]')
    expect(row).to_be_visible()
    csv = page.locator("#report-csv")
    expect(csv).to_have_attribute("href", re.compile(rf"daily\.csv\?date={today}"))
    download = page.request.get(f"{network.base}{csv.get_attribute('href')}")
    assert download.status == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert BANK in download.text()
    screenshot(page, "reports")


def test_overview_fits_a_phone_screen(network: Network, page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, network.base, ADMIN)
    expect(page.locator(f'tr[data-bank="{BANK}"]')).to_be_visible()
    # The page itself never scrolls sideways; a wide table scrolls inside its own box.
    page.evaluate("window.scrollTo(1000, 0)")
    assert page.evaluate("window.scrollX") == 0
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    wrap = page.locator(".region .table-wrap").first
    assert wrap.evaluate("e => getComputedStyle(e).overflowX") == "auto"
    assert wrap.evaluate("e => e.getBoundingClientRect().right") <= 390
    screenshot(page, "overview-390")


def freeze_polling(page: Page) -> None:
    """Stops the page's regular poll (as a hidden tab does): what changes then, an action did."""
    page.evaluate(
        """() => {
            Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )


def test_compartment_dialog_shows_an_actions_outcome_at_once(network: Network, page: Page) -> None:
    sign_in(page, network.base, ADMIN, f"/ops/banks/{BANK}")
    cell = page.locator('#compartment-grid [data-state="free"]').last
    label = cell.get_attribute("data-label")
    freeze_polling(page)
    # The node acknowledges a command a sync pass before central hears of the state it caused:
    # the page reads "acknowledged" at once here, so it sees that order every time.
    page.route(
        "**/ops/api/commands/*",
        lambda route: route.fulfill(
            response=(answer := route.fetch()),
            json={**answer.json(), "status": "acknowledged"},
        ),
    )
    cell.click()
    dialog = page.locator("#compartment-dialog")
    state = dialog.locator('[data-fact="state"]')
    expect(state).to_have_text("free")

    page.locator("#action-reason").fill("sensor cleaning")
    page.locator("#action-disable").click()
    expect(state).to_have_text("out of service", timeout=WAIT_MS)
    expect(page.locator("#action-enable")).to_be_visible()
    expect(page.locator("#action-disable")).to_be_hidden()
    expect(page.locator(f'#compartment-grid [data-label="{label}"]')).to_have_attribute(
        "data-state", "out_of_service"
    )

    page.locator("#action-reason").fill("sensor clean again")
    page.locator("#action-enable").click()
    expect(state).to_have_text("free", timeout=WAIT_MS)
    expect(page.locator("#action-disable")).to_be_visible()


RAISED_AT = datetime(2026, 1, 5, 19, 2, tzinfo=UTC)  # 14:02 in New York, EST


def add_system_alerts(network: Network) -> dict[str, str]:
    """The alerts central raises by itself, with their details as their sources write them."""
    event_id = str(uuid.uuid4())
    with network.world.sessions.begin() as session:
        session.add_all(
            [
                Alert(
                    bank_id=BANK,
                    type="door_left_open",
                    subject="A03",
                    detail={
                        "compartment": "A03",
                        "node_id": "node-ops-test",
                        "node_event_id": event_id,
                        "occurred_at": RAISED_AT.isoformat(),
                        "detail": {"open_for_s": 75.0},
                    },
                    created_at=RAISED_AT,
                ),
                Alert(
                    bank_id=BANK,
                    type="bank_offline",
                    detail={"node_id": "node-ops-test", "last_seen_at": RAISED_AT.isoformat()},
                    created_at=RAISED_AT + timedelta(minutes=2),
                ),
                Alert(
                    bank_id=None,
                    type="webhook_failing",
                    subject="endpoint-ops-test",
                    detail={
                        "endpoint_id": "endpoint-ops-test",
                        "carrier": "acme",
                        "host": "hooks.acme.test",
                        "failing_since": RAISED_AT.isoformat(),
                        "last_attempt_at": (RAISED_AT + timedelta(minutes=15)).isoformat(),
                        "last_error": "HTTP 503",
                    },
                    created_at=RAISED_AT + timedelta(minutes=15),
                ),
            ]
        )
    return {"event_id": event_id}


def test_alerts_say_what_happened_in_words(network: Network, page: Page) -> None:
    raw = add_system_alerts(network)
    sign_in(page, network.base, ADMIN, "/ops/alerts?status=all")
    door = page.locator('#alert-rows tr[data-alert-type="door_left_open"]').first
    expect(door).to_contain_text("Door A03 left open for 75 s")
    offline = page.locator('#alert-rows tr[data-alert-type="bank_offline"]').first
    expect(offline).to_contain_text(re.compile(rf"Bank {BANK} offline since .*07:02\sPM UTC"))
    webhook = page.locator('#alert-rows tr[data-alert-type="webhook_failing"]').first
    expect(webhook).to_contain_text(
        re.compile(r"Webhook endpoint of acme failing since .*07:02\sPM UTC")
    )
    # Ids and raw details only behind a toggle.
    event_id = door.get_by_text(raw["event_id"])
    expect(event_id).to_be_hidden()
    door.locator("details summary").click()
    expect(event_id).to_be_visible()
    screenshot(page, "alerts-in-words")

    page.goto(f"{network.base}/ops/banks/{BANK}")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("Door A03 left open for 75 s")
    expect(timeline.get_by_text(raw["event_id"])).to_be_hidden()
    expect(page.locator("#bank-alerts")).to_contain_text("Door A03 left open for 75 s")
    expect(timeline).to_contain_text(re.compile(r"Parcel ACME-OPS-\w+ deposited in A0\d"))
    screenshot(page, "bank-in-words")


def test_times_carry_their_time_zone(network: Network, browser: Browser) -> None:
    add_system_alerts(network)
    with open_page(browser, timezone_id="America/New_York", allow=refused_sign_in) as page:
        sign_in(page, network.base, ADMIN, "/ops/alerts?status=all&type=door_left_open")
        raised = page.locator("#alert-rows tr[data-alert-type] td time").first
        expect(raised).to_have_text(re.compile(r"02:02\sPM EST$"))
        offline = page.locator('#alert-rows tr[data-alert-type="bank_offline"]')
        page.goto(f"{network.base}/ops/alerts?status=all&type=bank_offline")
        expect(offline.first).to_contain_text(re.compile(r"offline since .*02:02\sPM EST"))
        page.goto(f"{network.base}/ops/banks/{BANK}")
        times = page.locator("main time")
        expect(times.first).to_be_visible()
        for text in times.all_inner_texts():
            assert re.search(r"\b(EST|EDT)$", text), text


def test_pages_redirect_to_sign_in_and_carry_a_content_security_policy(network: Network) -> None:
    answer = httpx.get(f"{network.base}/ops/banks/{BANK}?tab=1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/ops/login?next=/ops/banks/{BANK}%3Ftab%3D1"
    login = httpx.get(f"{network.base}/ops/login")
    assert login.status_code == 200
    assert "default-src 'self'" in login.headers["content-security-policy"]
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", login.text)  # scripts come from files
    evil = httpx.get(f"{network.base}/ops/login?next=//evil.example/")
    assert 'data-next="/ops"' in evil.text


@pytest.mark.parametrize(
    ("asked", "goes_to"),
    [
        (None, "/ops"),
        ("/ops/banks/B-1?x=1", "/ops/banks/B-1?x=1"),
        ("/ops", "/ops"),
        ("//evil.example/ops", "/ops"),
        ("https://evil.example/ops", "/ops"),
        ("/\\evil.example", "/ops"),
        ("/opsevil", "/ops"),
        ("/v1/reservations", "/ops"),
        ("/ops/api/session", "/ops"),
        ("/ops/login?next=/ops", "/ops"),
        ("/ops/alerts\n", "/ops"),
    ],
)
def test_sign_in_returns_only_to_dashboard_pages(asked: str | None, goes_to: str) -> None:
    assert safe_next(asked) == goes_to


def add_notices(network: Network) -> tuple[str, str]:
    """A sent, a failed (its error quoting the full number) and a waiting notice on a parcel in
    the bank; returns its reservation id and tracking number."""
    a_parcel_and_an_open_alert(network)

    def deposited() -> tuple[str, str] | None:
        with network.world.sessions() as session:
            row = session.execute(
                select(Reservation.id, Reservation.tracking_number).where(
                    Reservation.bank_id == BANK, Reservation.status == "deposited"
                )
            ).first()
        return (row[0], row[1]) if row is not None else None

    rid, tracking = eventually(deposited, "a deposited parcel at central")
    now = datetime.now(UTC)
    with network.world.sessions.begin() as session:
        common = {"reservation_id": rid, "bank_id": BANK, "carrier_id": "acme"}
        session.add_all(
            [
                Notice(
                    **common, key=f"{rid}/ready/ui/email", kind="ready", channel="email",
                    language="en", destination_hint="a…@example.com", status="sent", attempts=1,
                    next_attempt_at=now, created_at=now, sent_at=now,
                ),
                Notice(
                    **common, key=f"{rid}/ready/ui/sms", kind="ready", channel="sms",
                    language="en", destination_hint="…67", status="failed", attempts=1,
                    next_attempt_at=now, created_at=now,
                    last_error="Twilio refused the message: number +1 555 123 4567 is invalid",
                ),
                Notice(
                    **common, key=f"{rid}/reminder/ui/email", kind="reminder",
                    channel="email", language="en", destination_hint="a…@example.com",
                    status="pending", attempts=2, created_at=now,
                    next_attempt_at=now + timedelta(hours=1),  # not due while the test runs
                    last_error="SMTP server mail.test:25 unreachable: Connection refused",
                ),
            ]
        )  # fmt: skip
    return rid, tracking


def test_a_parcels_notices_show_in_the_bank_parcel_and_overview_pages(
    network: Network, page: Page
) -> None:
    rid, tracking = add_notices(network)
    sign_in(page, network.base, VIEWER, f"/ops/banks/{BANK}")
    toggle = page.locator(f'#bank-parcels tr[data-reservation="{rid}"] .notice-toggle')
    expect(toggle).to_have_text(re.compile(r"1 sent\s*·\s*⚠ 1 failed\s*·\s*1 waiting"))
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    detail = page.locator(f'#bank-parcels tr[data-notices-for="{rid}"]')
    expect(detail.locator("tbody tr")).to_have_count(3)
    failed = detail.locator('tr[data-notice-status="failed"]')
    expect(failed).to_contain_text("SMS")
    expect(failed).to_contain_text("Twilio refused the message")
    expect(detail.locator('tr[data-notice-status="pending"]')).to_contain_text("waiting")
    expect(detail.locator('tr[data-notice-status="pending"]')).to_contain_text("next try")
    expect(detail).to_contain_text("a…@example.com")
    expect(detail).not_to_contain_text("123 4567")
    screenshot(page, "bank-notices")
    page.set_viewport_size({"width": 390, "height": 844})
    expect(detail).to_be_visible()
    # The page never scrolls sideways (the charts redraw narrower a moment after the resize).
    # (Polled from here: a function waited on in the page would be an eval, which its CSP
    # refuses.)
    expect_narrow = time.monotonic() + 10
    while page.evaluate("document.documentElement.scrollWidth") > 390:
        assert time.monotonic() < expect_narrow, "the page scrolls sideways at 390 px"
        page.wait_for_timeout(100)
    detail.scroll_into_view_if_needed()
    screenshot(page, "bank-notices-390", full_page=False)

    page.goto(f"{network.base}/ops/parcels?tracking_number={tracking}")
    card = page.locator(f'.parcel[data-reservation="{rid}"]')
    expect(card.locator(".notices-head")).to_contain_text("1 failed")
    expect(card.locator("table.notices tbody tr")).to_have_count(3)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "parcel-notices-390")

    page.goto(f"{network.base}/ops")
    expect(page.locator('[data-total="notices_failed"]')).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(page.locator('[data-total="notices_waiting"]')).to_have_text(re.compile(r"^[1-9]\d*$"))
    screenshot(page, "overview-notices-390")


def test_fleet_page_shows_the_nodes_version_and_health(network: Network, page: Page) -> None:
    # The real node process reports its computer's health with each heartbeat (fleet health).
    sign_in(page, network.base, ADMIN, "/ops/fleet")
    row = page.locator(f'#fleet-rows tr[data-bank="{BANK}"]')
    expect(row).to_be_visible(timeout=WAIT_MS)
    expect(row.locator("td").nth(0)).to_have_text("online")
    expect(row.locator("td[data-version]")).not_to_have_attribute("data-version", "")
    expect(row.locator("td").nth(2)).to_have_text(re.compile(r"\d+ (min|h|d)"))  # uptime
    expect(row.locator("td").nth(3)).to_have_text(re.compile(r"GB|MB"))  # disk free
    expect(page.locator("#fleet-versions tr[data-version]")).to_have_count(1)
    expect(page.locator("#node-updates")).to_be_visible()
    page.locator("#fleet-status").select_option("offline")
    expect(row).to_have_count(0)
    expect(page).to_have_url(re.compile(r"status=offline"))
    page.locator("#fleet-status").select_option("all")
    expect(row).to_be_visible()
    audit(page, "ops-fleet")
    screenshot(page, "fleet")

    # A rollout set from the page shows against the bank, then stops (nodes keep what they run).
    page.locator("#rollout-some").check()
    page.locator("#rollout-banks").fill(BANK)
    page.locator("#rollout-version").fill("9.9.9")
    page.locator("#rollout-submit").click()
    update_row = page.locator(f'#updates-rows tr[data-bank="{BANK}"]')
    expect(update_row.locator("td").nth(2)).to_have_text("9.9.9")
    expect(page.locator("#updates-rollouts")).to_contain_text(f"banks {BANK}")
    page.locator("#rollout-stop").click()
    expect(page.locator("#updates-rollouts")).to_contain_text("No rollout active")
    expect(update_row.locator("td").nth(2)).to_have_text("—")
