"""Carrier tracking in central: the poll job, inbound carrier webhooks, their effect on parcels."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from carrier_adapters.base import CarrierAdapter
from carrier_adapters.registry import build_adapters
from carrier_adapters.settings import (
    CarrierSettings,
    DhlSettings,
    FedexSettings,
    RateLimit,
    UpsSettings,
    UspsSettings,
)
from carrier_adapters.webhooks import fedex_signature
from central.app import create_app
from central.config import CentralSettings
from central.context import Ctx
from central.keys import ServiceKeys
from central.models import (
    Actor,
    BankCapacity,
    Reservation,
    ReservationStatus,
    TrackingEventRecord,
    WebhookDelivery,
)
from central.reservations.transitions import transition
from central.scheduler import INTERVALS, Jobs, start_scheduler
from central.tracking import repository
from central.tracking.tasks import EventLoopThread, TrackingPoller
from tests.carrier_adapters.helpers import START as CARRIER_START
from tests.carrier_adapters.helpers import (
    FakeCarrier,
    Reply,
    fixture_bytes,
    fixture_reply,
    json_of,
    load_fixture,
    reply,
)
from tests.central.conftest import TEST_SECRET, World
from tests.clock import FakeClock

USPS_NUMBER = "9400111206206406260787"
FEDEX_NUMBER = "128667043726"
UPS_NUMBER = "1Z204W4R0308071865"
DHL_NUMBER = "7777777770"  # DHL's own example shipment

FEDEX_SECRET = "fedex-webhook-security-code"
UPS_CREDENTIAL = "ups-track-alert-credential"
DHL_TOKEN = "dhl-push-token-0123456789"

USPS_TRACK = "/tracking/v3/tracking/{}"
USPS_SIZES = ["S", "S", "M"]  # a bank of the test world holds two S units
FEDEX_TRACK = "/track/v1/trackingnumbers"
UPS_TRACK = "/api/track/v1/details/{}"
DHL_TRACK = "/track/shipments"
HOSTS = {
    "usps": "apis-tem.usps.com",
    "fedex": "apis-sandbox.fedex.com",
    "ups": "wwwcie.ups.com",
    "dhl": "api-test.dhl.com",
}


# --- carriers played by httpx.MockTransport ---------------------------------------------------


def carrier_settings(
    *,
    usps: dict[str, Any] | None = None,
    fedex: dict[str, Any] | None = None,
    ups: dict[str, Any] | None = None,
    dhl: dict[str, Any] | None = None,
) -> CarrierSettings:
    """All four carriers in their test environments, webhooks configured where they exist."""
    oauth: dict[str, Any] = {
        "client_id": SecretStr("client-id"),
        "client_secret": SecretStr("client-secret"),
    }
    return CarrierSettings(
        usps=UspsSettings(environment="test", **oauth, **(usps or {})),
        fedex=FedexSettings(
            environment="test", webhook_secret=SecretStr(FEDEX_SECRET), **oauth, **(fedex or {})
        ),
        ups=UpsSettings(
            environment="test",
            webhook_credential=SecretStr(UPS_CREDENTIAL),
            **oauth,
            **(ups or {}),
        ),
        dhl=DhlSettings(
            environment="test",
            api_key=SecretStr("dhl-api-key"),
            webhook_token=SecretStr(DHL_TOKEN),
            **(dhl or {}),
        ),
    )


def make_adapters(
    carrier: FakeCarrier, clock: FakeClock, settings: CarrierSettings | None = None
) -> dict[str, CarrierAdapter]:
    client = httpx.AsyncClient(transport=carrier.transport())
    return build_adapters(
        settings or carrier_settings(), client, clock=clock, sleep=clock.async_sleep
    )


def fedex_reply(name: str, *, status_code: str | None = None) -> Reply:
    """The fixture's result for every number asked for, optionally with another status code."""

    def build(request: httpx.Request) -> httpx.Response:
        body = load_fixture("fedex", name)
        template = body["output"]["completeTrackResults"][0]
        if status_code is not None:
            result = template["trackResults"][0]
            result["latestStatusDetail"].update(code=status_code, derivedCode=status_code)
            result["scanEvents"][0].update(eventType=status_code, derivedStatusCode=status_code)
        results = []
        for info in json_of(request)["trackingInfo"]:
            number = info["trackingNumberInfo"]["trackingNumber"]
            item = copy.deepcopy(template)
            item["trackingNumber"] = number
            item["trackResults"][0]["trackingNumberInfo"]["trackingNumber"] = number
            results.append(item)
        body["output"]["completeTrackResults"] = results
        return httpx.Response(200, json=body)

    return build


def tracked_numbers(carrier: FakeCarrier, carrier_id: str) -> list[str]:
    """The numbers asked about, request by request, excluding token requests."""
    asked: list[str] = []
    for request in carrier.requests:
        if request.url.host != HOSTS[carrier_id] or "token" in request.url.path:
            continue
        if carrier_id == "fedex":
            info = json_of(request)["trackingInfo"]
            asked.append(",".join(i["trackingNumberInfo"]["trackingNumber"] for i in info))
        elif carrier_id == "dhl":
            asked.append(request.url.params["trackingNumber"])
        else:
            asked.append(request.url.path.rsplit("/", 1)[-1])
    return asked


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_carrier_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Carrier settings read LOCKER_CARRIER_* variables; a developer's own must not leak in.
    for name in list(os.environ):
        if name.startswith("LOCKER_CARRIER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def carrier() -> FakeCarrier:
    fake = FakeCarrier()
    fake.on("POST", "/oauth2/v3/token", fixture_reply("usps", "token.json"))
    fake.on("POST", "/oauth/token", fixture_reply("fedex", "token.json"))
    fake.on("POST", "/security/v1/oauth/token", fixture_reply("ups", "token.json"))
    return fake


@pytest.fixture
def adapter_clock() -> FakeClock:
    """The carriers' time, apart from central's `clock`: the day of their example replies."""
    return FakeClock(CARRIER_START)


@pytest.fixture
def adapters(carrier: FakeCarrier, adapter_clock: FakeClock) -> dict[str, CarrierAdapter]:
    return make_adapters(carrier, adapter_clock)


@pytest.fixture
def app(
    settings: CentralSettings, clock: FakeClock, adapters: dict[str, CarrierAdapter]
) -> Iterator[FastAPI]:
    app = create_app(settings, clock=clock, carrier_adapters=adapters)
    yield app
    app.state.engine.dispose()


def make_jobs(app: FastAPI, clock: FakeClock, adapters: dict[str, CarrierAdapter] | None) -> Jobs:
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    settings: CentralSettings = app.state.settings
    return Jobs(
        app.state.sessions, app.state.keys, clock, http, settings, carrier_adapters=adapters
    )


@pytest.fixture
def jobs(app: FastAPI, clock: FakeClock, adapters: dict[str, CarrierAdapter]) -> Iterator[Jobs]:
    made = make_jobs(app, clock, adapters)
    yield made
    made.close()


# --- helpers --------------------------------------------------------------------------------------


def reserve(
    client: TestClient,
    world: World,
    carrier_id: str,
    number: str,
    *,
    bank: str = "NYC-1",
    size: str = "S",
) -> str:
    response = client.post(
        "/v1/reservations",
        json={"tracking_number": number, "bank_id": bank, "size": size},
        headers=world.auth(carrier_id),
    )
    assert response.status_code == 201, response.text
    rid: str = response.json()["id"]
    return rid


def deposit(sessions: sessionmaker[Session], clock: FakeClock, rid: str) -> None:
    """What the node's deposit event does: the service-level transition."""
    with sessions.begin() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        ctx = Ctx(session=session, keys=ServiceKeys(TEST_SECRET.encode()), now=clock())
        transition(
            ctx,
            reservation,
            ReservationStatus.DEPOSITED,
            actor=Actor.COURIER,
            changes={
                "compartment_label": "A01",
                "deposited_at": clock(),
                "pickup_deadline": clock() + timedelta(hours=72),
            },
        )


def events_of(sessions: sessionmaker[Session], rid: str) -> list[TrackingEventRecord]:
    with sessions() as session:
        return list(repository.events_of(session, rid))


def reservation_row(sessions: sessionmaker[Session], rid: str) -> Reservation:
    with sessions() as session:
        row = session.get(Reservation, rid)
        assert row is not None
        return row


def free_units(sessions: sessionmaker[Session], bank_id: str = "NYC-1", size: str = "S") -> int:
    with sessions() as session:
        row = session.get(BankCapacity, (bank_id, size))
        assert row is not None
        return row.available


def deliveries(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(select(WebhookDelivery.event_type).order_by(WebhookDelivery.id))
        )


def subscribe(client: TestClient, world: World, carrier_id: str) -> None:
    response = client.post(
        "/v1/webhooks",
        json={"url": f"http://{carrier_id}.test/hooks", "secret": "whsec-0123456789abcdef"},
        headers=world.auth(carrier_id),
    )
    assert response.status_code == 201, response.text


def push(client: TestClient, carrier_id: str, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(
        f"/v1/carrier-webhooks/{carrier_id}",
        content=body,
        headers={"Content-Type": "application/json", **headers},
    )


def fedex_push(body: bytes, secret: str = FEDEX_SECRET) -> dict[str, str]:
    return {"fdx-signature": fedex_signature(body, secret)}


# --- the poll job ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("carrier_id", "number", "route", "status", "count", "newest"),
    [
        pytest.param(
            "usps",
            USPS_NUMBER,
            ("GET", USPS_TRACK.format(USPS_NUMBER), "tracking_available_for_pickup.json"),
            "ready_for_pickup",
            4,
            ("16", "ready_for_pickup", datetime(2022, 6, 17, 13, 5), "FAIRFAX, VA 22031, US"),
            id="usps",
        ),
        pytest.param(
            "fedex",
            FEDEX_NUMBER,
            ("POST", FEDEX_TRACK, "track_reply_ready_for_pickup.json"),
            "ready_for_pickup",
            4,
            (
                "HP",
                "ready_for_pickup",
                datetime(2018, 2, 5, 17, 14),
                "1043 North Easy Street, Suite 999, SEATTLE, WA 98101, US",
            ),
            id="fedex",
        ),
        pytest.param(
            "ups",
            UPS_NUMBER,
            ("GET", UPS_TRACK.format(UPS_NUMBER), "track_reply_ready_for_pickup.json"),
            "ready_for_pickup",
            5,
            (
                "040",
                "ready_for_pickup",
                datetime(2024, 4, 23, 13, 42, 10),
                "CHARLOTTE, NC 28209, US",
            ),
            id="ups",
        ),
        pytest.param(
            "dhl",
            DHL_NUMBER,
            ("GET", DHL_TRACK, "track_reply_spec_example.json"),
            "pre_transit",
            1,
            (
                "pre-transit",
                "pre_transit",
                datetime(2018, 3, 2, 7, 53, 47),
                "Oderweg 2, AMSTERDAM, 1043 AG, NL",
            ),
            id="dhl",
        ),
    ],
)
def test_poll_records_the_carriers_documented_events(
    client: TestClient,
    world: World,
    jobs: Jobs,
    carrier: FakeCarrier,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    carrier_id: str,
    number: str,
    route: tuple[str, str, str],
    status: str,
    count: int,
    newest: tuple[str, str, datetime, str],
) -> None:
    method, path, fixture = route
    carrier.on(method, path, fixture_reply(carrier_id, fixture))
    rid = reserve(client, world, carrier_id, number)
    clock.advance(minutes=5)

    report = jobs.poll_tracking()

    assert report[carrier_id].checked == 1
    assert report[carrier_id].new_events == count
    assert report[carrier_id].stopped is None
    assert tracked_numbers(carrier, carrier_id) == [number]
    events = events_of(sessions, rid)
    assert len(events) == count
    code, event_status, occurred, location = newest
    first = events[0]
    assert (first.carrier_code, first.status, first.location) == (code, event_status, location)
    assert first.occurred_at == occurred.replace(tzinfo=UTC)
    assert {(e.source, e.received_at) for e in events} == {("poll", clock())}
    row = reservation_row(sessions, rid)
    assert (row.tracking_status, row.tracking_checked_at) == (status, clock())
    assert row.status == "reserved"
    assert row.updated_at == clock() - timedelta(minutes=5)  # tracking is not a lifecycle change
    seen_by_carrier = client.get(f"/v1/reservations/{rid}", headers=world.auth(carrier_id))
    assert seen_by_carrier.json()["tracking_status"] == status


def test_batching_follows_what_each_adapter_declares(
    client: TestClient, world: World, jobs: Jobs, carrier: FakeCarrier
) -> None:
    fedex = [FEDEX_NUMBER, "128667043704", "128667043715"]
    ups = [UPS_NUMBER, "1Z204W4R0308071874"]
    carrier.on("POST", FEDEX_TRACK, fedex_reply("track_reply_ready_for_pickup.json"))
    carrier.on("GET", UPS_TRACK.format(ups[0]), fixture_reply("ups", "track_reply_not_found.json"))
    carrier.on(
        "GET", UPS_TRACK.format(ups[1]), fixture_reply("ups", "track_reply_spec_example.json")
    )
    banks = ["NYC-1", "NYC-1", "NYC-2"]
    for number, bank in zip(fedex, banks, strict=True):
        reserve(client, world, "fedex", number, bank=bank)
    for number in ups:
        reserve(client, world, "ups", number, bank="BOS-1")

    report = jobs.poll_tracking()

    # FedEx takes up to 30 numbers per request; UPS one per request.
    assert [sorted(r.split(",")) for r in tracked_numbers(carrier, "fedex")] == [sorted(fedex)]
    assert sorted(tracked_numbers(carrier, "ups")) == sorted(ups)
    assert (report["fedex"].checked, report["fedex"].new_events) == (3, 12)
    assert (report["ups"].checked, report["ups"].new_events) == (2, 1)  # one not found


def test_poll_asks_about_the_least_recently_checked_parcels_first(
    client: TestClient,
    world: World,
    app: FastAPI,
    adapters: dict[str, CarrierAdapter],
    carrier: FakeCarrier,
    clock: FakeClock,
) -> None:
    numbers = ["9400111206206406260008", "9400111206206406260015", "9400111206206406260022"]
    for number, size in zip(numbers, USPS_SIZES, strict=True):
        found = fixture_reply("usps", "tracking_available_for_pickup.json")
        carrier.on("GET", USPS_TRACK.format(number), found)
        reserve(client, world, "usps", number, bank="NYC-2", size=size)
        clock.advance(minutes=1)
    poller = TrackingPoller(
        app.state.sessions, app.state.keys, clock, adapters, per_carrier_limit=2
    )
    loop = EventLoopThread()
    try:
        loop.run(poller.poll)
        assert tracked_numbers(carrier, "usps") == numbers[:2]
        loop.run(poller.poll)  # the two just asked about are not due again so soon
        assert tracked_numbers(carrier, "usps") == numbers
        assert loop.run(poller.poll)["usps"].checked == 0
        clock.advance(minutes=16)
        loop.run(poller.poll)
        assert tracked_numbers(carrier, "usps") == [*numbers, *numbers[:2]]
    finally:
        loop.close()


@pytest.mark.parametrize(("code", "status"), [("RS", "return_to_sender"), ("CA", "cancelled")])
def test_parcel_sent_back_before_deposit_frees_its_reservation(
    client: TestClient,
    world: World,
    jobs: Jobs,
    carrier: FakeCarrier,
    sessions: sessionmaker[Session],
    code: str,
    status: str,
) -> None:
    subscribe(client, world, "fedex")
    carrier.on(
        "POST", FEDEX_TRACK, fedex_reply("track_reply_return_to_shipper.json", status_code=code)
    )
    rid = reserve(client, world, "fedex", FEDEX_NUMBER)
    assert free_units(sessions) == 1

    report = jobs.poll_tracking()

    assert report["fedex"].cancelled == 1
    got = client.get(f"/v1/reservations/{rid}", headers=world.auth("fedex")).json()
    assert got["status"] == "cancelled"
    last = got["history"][-1]
    assert (last["type"], last["from_status"], last["actor"]) == ("cancelled", "reserved", "system")
    assert last["reason"] == f"carrier reported {status}"
    assert free_units(sessions) == 2
    assert deliveries(sessions) == ["reservation.created", "reservation.cancelled"]
    assert reservation_row(sessions, rid).tracking_status == status
    assert reserve(client, world, "fedex", FEDEX_NUMBER) != rid  # the number is free again


def test_deposited_parcel_is_never_changed_by_tracking(
    client: TestClient,
    world: World,
    jobs: Jobs,
    carrier: FakeCarrier,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    subscribe(client, world, "fedex")
    rid = reserve(client, world, "fedex", FEDEX_NUMBER)
    deposit(sessions, clock, rid)
    clock.advance(hours=1)
    before = client.get(f"/v1/reservations/{rid}", headers=world.auth("fedex")).json()
    sent = deliveries(sessions)
    units = free_units(sessions)

    assert jobs.poll_tracking()["fedex"].checked == 0
    assert tracked_numbers(carrier, "fedex") == []  # only parcels still to be deposited are polled
    body = fixture_bytes("fedex", "track_reply_return_to_shipper.json")
    response = push(client, "fedex", body, fedex_push(body))

    assert response.status_code == 202, response.text
    assert response.json() == {"received": 1, "matched": 1, "new_events": 4}
    after = client.get(f"/v1/reservations/{rid}", headers=world.auth("fedex")).json()
    # What the carrier says is summarised; the lifecycle, history and deadlines stay as they were.
    assert after.pop("tracking_status") == "return_to_sender"
    before.pop("tracking_status")
    assert after == before
    assert deliveries(sessions) == sent
    assert free_units(sessions) == units
    assert len(events_of(sessions, rid)) == 4  # what the carrier said is still on record


def test_rate_limit_stops_polling_that_carrier_without_failing_the_job(
    client: TestClient,
    world: World,
    jobs: Jobs,
    carrier: FakeCarrier,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    ups = [UPS_NUMBER, "1Z204W4R0308071874"]
    limited = reply(429, {"response": {"errors": []}}, headers={"Retry-After": "120"})
    for number in ups:
        carrier.on("GET", UPS_TRACK.format(number), limited)
    carrier.on("POST", FEDEX_TRACK, fedex_reply("track_reply_ready_for_pickup.json"))
    ups_ids = []
    for number in ups:  # one after the other, so that they are polled in this order
        ups_ids.append(reserve(client, world, "ups", number, bank="NYC-2"))
        clock.advance(seconds=1)
    fedex_id = reserve(client, world, "fedex", FEDEX_NUMBER)

    report = jobs.poll_tracking()

    assert report["ups"].stopped == "rate_limited"
    assert report["ups"].checked == 0
    assert tracked_numbers(carrier, "ups") == ups[:1]  # the second number was not even tried
    assert report["fedex"].checked == 1  # other carriers carry on
    assert len(events_of(sessions, fedex_id)) == 4
    assert all(reservation_row(sessions, r).tracking_checked_at is None for r in ups_ids)

    clock.advance(seconds=60)
    assert jobs.poll_tracking()["ups"].stopped == "paused"  # Retry-After is respected
    assert tracked_numbers(carrier, "ups") == ups[:1]

    for number in ups:
        carrier.on(
            "GET",
            UPS_TRACK.format(number),
            fixture_reply("ups", "track_reply_ready_for_pickup.json"),
        )
    clock.advance(seconds=61)
    resumed = jobs.poll_tracking()["ups"]
    assert (resumed.stopped, resumed.checked) == (None, 2)
    assert tracked_numbers(carrier, "ups") == [ups[0], *ups]


def test_spent_rate_budget_stops_that_carrier_before_any_request(
    client: TestClient,
    world: World,
    app: FastAPI,
    carrier: FakeCarrier,
    adapter_clock: FakeClock,
    clock: FakeClock,
) -> None:
    numbers = ["9400111206206406260008", "9400111206206406260015", "9400111206206406260022"]
    for number, size in zip(numbers, USPS_SIZES, strict=True):
        carrier.on(
            "GET",
            USPS_TRACK.format(number),
            fixture_reply("usps", "tracking_available_for_pickup.json"),
        )
        reserve(client, world, "usps", number, bank="NYC-2", size=size)
        clock.advance(minutes=1)
    budget = {"rate_limits": (RateLimit(calls=2, period_s=3600),)}
    adapters = make_adapters(carrier, adapter_clock, carrier_settings(usps=budget))
    jobs = make_jobs(app, clock, adapters)
    try:
        report = jobs.poll_tracking()["usps"]
    finally:
        jobs.close()

    assert (report.stopped, report.checked) == ("rate_limited", 2)
    assert tracked_numbers(carrier, "usps") == numbers[:2]
    assert adapter_clock.sleeps == []  # refused at once rather than waiting an hour


def test_jobs_without_carrier_adapters_poll_nothing(app: FastAPI, clock: FakeClock) -> None:
    jobs = make_jobs(app, clock, None)
    assert jobs.tracking is None
    assert jobs.poll_tracking() == {}
    assert "poll_tracking" in jobs.all()
    assert INTERVALS["poll_tracking"] == 300


def test_scheduler_shutdown_cancels_a_poll_in_flight(
    client: TestClient, world: World, jobs: Jobs, carrier: FakeCarrier
) -> None:
    entered = threading.Event()

    async def never_answers(request: httpx.Request) -> httpx.Response:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    carrier.on("POST", FEDEX_TRACK, never_answers)  # type: ignore[arg-type]
    reserve(client, world, "fedex", FEDEX_NUMBER)
    scheduler = start_scheduler(jobs)
    assert jobs.is_leader()  # the scheduler fences its jobs' writes: this one holds the lease
    outcome: list[object] = []
    poller = threading.Thread(target=lambda: outcome.append(jobs.poll_tracking()))
    poller.start()
    assert entered.wait(timeout=10)

    scheduler.shutdown()

    poller.join(timeout=10)
    assert not poller.is_alive()
    assert outcome == [{}]


# --- inbound carrier webhooks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("carrier_id", "number", "body", "headers", "count", "status"),
    [
        pytest.param(
            "fedex",
            FEDEX_NUMBER,
            fixture_bytes("fedex", "track_reply_ready_for_pickup.json"),
            fedex_push(fixture_bytes("fedex", "track_reply_ready_for_pickup.json")),
            4,
            "ready_for_pickup",
            id="fedex-hmac",
        ),
        pytest.param(
            "ups",
            UPS_NUMBER,
            fixture_bytes("ups", "trackalert_out_for_delivery.json"),
            {"Authorization": f"Bearer {UPS_CREDENTIAL}"},
            1,
            "out_for_delivery",
            id="ups-bearer",
        ),
        pytest.param(
            "dhl",
            DHL_NUMBER,
            fixture_bytes("dhl", "track_reply_spec_example.json"),
            {"DHL-Webhook-Token": DHL_TOKEN},
            1,
            "pre_transit",
            id="dhl-token",
        ),
    ],
)
def test_signed_push_is_recorded(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    carrier_id: str,
    number: str,
    body: bytes,
    headers: dict[str, str],
    count: int,
    status: str,
) -> None:
    rid = reserve(client, world, carrier_id, number)
    response = push(client, carrier_id, body, headers)
    assert response.status_code == 202, response.text
    assert response.json() == {"received": 1, "matched": 1, "new_events": count}
    events = events_of(sessions, rid)
    assert len(events) == count
    assert {e.source for e in events} == {"push"}
    row = reservation_row(sessions, rid)
    assert (row.tracking_status, row.tracking_checked_at, row.status) == (
        status,
        clock(),
        "reserved",
    )


FEDEX_BODY = fixture_bytes("fedex", "track_reply_return_to_shipper.json")


@pytest.mark.parametrize(
    ("carrier_id", "body", "headers"),
    [
        pytest.param(
            "fedex", FEDEX_BODY.replace(b'"RS"', b'"DL"'), fedex_push(FEDEX_BODY), id="altered"
        ),
        pytest.param("fedex", FEDEX_BODY, fedex_push(FEDEX_BODY, "not-the-secret"), id="secret"),
        pytest.param("fedex", FEDEX_BODY, {}, id="unsigned"),
        pytest.param(
            "ups",
            fixture_bytes("ups", "trackalert_delivered.json"),
            {"Authorization": "Bearer guessed-credential"},
            id="ups-credential",
        ),
        pytest.param(
            "dhl",
            fixture_bytes("dhl", "track_reply_spec_example.json"),
            {"DHL-Webhook-Token": "guessed-token"},
            id="dhl-token",
        ),
    ],
)
def test_unverifiable_push_is_refused_and_logged(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
    carrier_id: str,
    body: bytes,
    headers: dict[str, str],
) -> None:
    subscribe(client, world, "fedex")
    rid = reserve(client, world, "fedex", FEDEX_NUMBER)
    with caplog.at_level(logging.INFO, logger="central.tracking"):
        response = push(client, carrier_id, body, headers)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"
    assert events_of(sessions, rid) == []
    assert reservation_row(sessions, rid).status == "reserved"
    assert deliveries(sessions) == ["reservation.created"]
    (record,) = [r for r in caplog.records if r.name.startswith("central.tracking")]
    assert record.levelno == logging.WARNING
    assert f"carrier={carrier_id}" in record.getMessage()
    assert "signature" in record.getMessage()
    for secret_or_content in (FEDEX_NUMBER, UPS_NUMBER, DHL_NUMBER, "SEATTLE", "guessed"):
        assert secret_or_content not in caplog.text


@pytest.mark.parametrize("carrier_id", ["acme", "usps", "nobody"])
def test_carrier_without_webhooks_is_not_found(
    client: TestClient, world: World, carrier_id: str
) -> None:
    # acme has an account but no adapter; USPS offers no webhooks; nobody is nobody.
    response = push(client, carrier_id, FEDEX_BODY, fedex_push(FEDEX_BODY))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    ("carrier_id", "body", "headers"),
    [
        ("fedex", b'{"hello": 1}', fedex_push(b'{"hello": 1}')),
        ("fedex", b"\xff not json", fedex_push(b"\xff not json")),
        ("ups", b"[]", {"Authorization": f"Bearer {UPS_CREDENTIAL}"}),
        ("dhl", b'{"shipments": 1}', {"DHL-Webhook-Token": DHL_TOKEN}),
    ],
)
def test_malformed_payload_after_a_valid_signature_is_400(
    client: TestClient, carrier_id: str, body: bytes, headers: dict[str, str]
) -> None:
    response = push(client, carrier_id, body, headers)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_payload"


def test_push_for_an_unknown_number_is_accepted_and_ignored(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = reserve(client, world, "fedex", "128667043704")
    body = fixture_bytes("fedex", "track_reply_delivered.json")
    with caplog.at_level(logging.INFO, logger="central.tracking"):
        response = push(client, "fedex", body, fedex_push(body))
    assert response.status_code == 202
    assert response.json() == {"received": 1, "matched": 0, "new_events": 0}
    assert events_of(sessions, other) == []
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(TrackingEventRecord)) == 0
    assert "1 ignored" in caplog.text
    assert FEDEX_NUMBER not in caplog.text


def test_oversized_push_is_refused_before_verification(client: TestClient) -> None:
    body = b"{" + b" " * (1 << 20) + b"}"
    response = push(client, "fedex", body, fedex_push(body))
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


# --- recording ------------------------------------------------------------------------------------


def test_the_same_event_is_stored_once_by_poll_and_push(
    client: TestClient,
    world: World,
    jobs: Jobs,
    carrier: FakeCarrier,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    carrier.on("POST", FEDEX_TRACK, fedex_reply("track_reply_ready_for_pickup.json"))
    rid = reserve(client, world, "fedex", FEDEX_NUMBER)
    assert jobs.poll_tracking()["fedex"].new_events == 4

    body = fixture_bytes("fedex", "track_reply_ready_for_pickup.json")
    for _ in range(2):
        response = push(client, "fedex", body, fedex_push(body))
        assert response.json()["new_events"] == 0
    clock.advance(minutes=16)
    assert jobs.poll_tracking()["fedex"].new_events == 0

    # A later report adds only what is new.
    delivered = fixture_bytes("fedex", "track_reply_delivered.json")
    assert push(client, "fedex", delivered, fedex_push(delivered)).json()["new_events"] == 1
    events = events_of(sessions, rid)
    assert [(e.carrier_code, e.source) for e in events] == [
        ("DL", "push"),
        ("HP", "poll"),
        ("HL", "poll"),
        ("AR", "poll"),
        ("PU", "poll"),
    ]

    # The database itself refuses a second copy, whoever gets there at the same moment.
    again = events[1]
    with sessions.begin() as session:
        added = repository.add_event(
            session,
            {
                "reservation_id": rid,
                "carrier_code": again.carrier_code,
                "status": again.status,
                "description": "reported again",
                "location": None,
                "occurred_at": again.occurred_at,
                "source": "push",
                "received_at": clock(),
            },
        )
    assert added is False
    assert len(events_of(sessions, rid)) == 5


def test_an_older_push_does_not_roll_the_tracking_status_back(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    rid = reserve(client, world, "ups", UPS_NUMBER)
    auth = {"Authorization": f"Bearer {UPS_CREDENTIAL}"}
    # Track Alert delivers the 09:50 "Delivered" before the 09:15 "Out for Delivery".
    for name in ("trackalert_delivered.json", "trackalert_out_for_delivery.json"):
        assert push(client, "ups", fixture_bytes("ups", name), auth).status_code == 202
    assert [e.status for e in events_of(sessions, rid)] == ["delivered", "out_for_delivery"]
    assert reservation_row(sessions, rid).tracking_status == "delivered"


# --- wiring ---------------------------------------------------------------------------------------


def test_the_app_builds_adapters_for_configured_carriers_only(
    settings: CentralSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = create_app(settings)
    assert plain.state.carrier_adapters == {}
    plain.state.engine.dispose()

    monkeypatch.setenv("LOCKER_CARRIER_FEDEX_CLIENT_ID", "fedex-client")
    monkeypatch.setenv("LOCKER_CARRIER_FEDEX_CLIENT_SECRET", "fedex-secret")
    monkeypatch.setenv("LOCKER_CARRIER_FEDEX_WEBHOOK_SECRET", FEDEX_SECRET)
    configured = create_app(settings)
    try:
        assert set(configured.state.carrier_adapters) == {"fedex"}
        with TestClient(configured) as client:
            body = b'{"hello": 1}'
            assert push(client, "fedex", body, fedex_push(body)).status_code == 400
            assert push(client, "ups", body, {}).status_code == 404
    finally:
        configured.state.engine.dispose()
