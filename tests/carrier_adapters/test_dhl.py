"""DHL adapter against DHL's documented shapes, played by httpx.MockTransport."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from carrier_adapters.base import (
    Capability,
    CarrierRateLimited,
    CarrierTimeout,
    MalformedCarrierResponse,
    TrackingNotFound,
    TrackingStatus,
    UnsupportedCapability,
    WebhookPayloadError,
)
from carrier_adapters.dhl import DhlAdapter
from carrier_adapters.dhl.codes import STATUS_CODES, status_for
from carrier_adapters.settings import DhlSettings
from tests.carrier_adapters.helpers import (
    START,
    FakeCarrier,
    fixture_bytes,
    fixture_reply,
    load_fixture,
    reply,
    timeout,
)
from tests.clock import FakeClock

HOST = "https://api-test.dhl.com"
PATH = "/track/shipments"
NUMBER = "00340434292135100186"
EXAMPLE = "7777777770"
CEST = timezone(timedelta(hours=2))
TOKEN = "dhl-push-token"


def _adapter(client: httpx.AsyncClient, clock: FakeClock, **overrides: Any) -> DhlAdapter:
    values: dict[str, Any] = {
        "api_key": SecretStr("dhl-api-key"),
        "environment": "test",
        "webhook_token": SecretStr(TOKEN),
        **overrides,
    }
    return DhlAdapter(DhlSettings(**values), client, clock=clock, sleep=clock.async_sleep)


@pytest.mark.anyio
class TestRequests:
    async def test_tracking_request_is_exactly_as_documented(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", PATH, fixture_reply("dhl", "track_reply_spec_example.json"))
        await _adapter(http_client, clock).track(EXAMPLE)
        (request,) = carrier.requests
        assert str(request.url) == f"{HOST}{PATH}?trackingNumber={EXAMPLE}"
        assert request.headers["DHL-API-Key"] == "dhl-api-key"
        assert request.headers["Accept"] == "application/json"
        assert "Authorization" not in request.headers

    async def test_service_and_language_filters(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        documented = load_fixture("dhl", "track_request_spec_example.json")
        assert {"trackingNumber", "service", "language"} <= set(documented)
        carrier.on("GET", PATH, fixture_reply("dhl", "track_reply_packstation.json"))
        await _adapter(http_client, clock, service="parcel-de", language="de").track(NUMBER)
        (request,) = carrier.requests
        assert dict(request.url.params) == {
            "trackingNumber": NUMBER,
            "service": "parcel-de",
            "language": "de",
        }


@pytest.mark.anyio
class TestParsing:
    async def test_spec_example_reply(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", PATH, fixture_reply("dhl", "track_reply_spec_example.json"))
        details = await _adapter(http_client, clock).track(EXAMPLE)
        assert details.carrier == "dhl"
        # DHL's example sends the id as a JSON number.
        assert details.tracking_number == EXAMPLE
        assert details.status is TrackingStatus.PRE_TRANSIT
        assert details.carrier_status_code == "pre-transit"
        assert details.service == "express"
        assert details.estimated_delivery == datetime(2018, 8, 3, tzinfo=UTC)
        (event,) = details.events
        # The event timestamp has no offset; the same instant carries "Z" in the status.
        assert event.occurred_at == datetime(2018, 3, 2, 7, 53, 47, tzinfo=UTC)
        assert event.location is not None
        assert event.location.postal_code == "1043 AG"
        assert event.location.description == "Oderweg 2, AMSTERDAM"

    async def test_packstation_delivery(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", PATH, fixture_reply("dhl", "track_reply_packstation.json"))
        details = await _adapter(http_client, clock).track(NUMBER)
        assert details.status is TrackingStatus.DELIVERED_TO_LOCKER
        assert details.delivered_at == datetime(2024, 4, 23, 10, 32, tzinfo=CEST)
        assert details.service == "parcel-de"
        assert [e.status for e in details.events] == [
            TrackingStatus.DELIVERED_TO_LOCKER,
            TrackingStatus.OUT_FOR_DELIVERY,
            TrackingStatus.IN_TRANSIT,
            TrackingStatus.PRE_TRANSIT,
        ]
        assert details.location is not None
        assert details.location.description == "Bonn"

    async def test_the_requested_shipment_is_picked_among_several(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        body = load_fixture("dhl", "track_reply_packstation.json")
        other = json.loads(json.dumps(body["shipments"][0]))
        other["id"] = "JJD000390007823521"
        body["shipments"].insert(0, other)
        carrier.on("GET", PATH, reply(200, body))
        details = await _adapter(http_client, clock).track(NUMBER)
        assert details.tracking_number == NUMBER


@pytest.mark.anyio
class TestErrors:
    async def test_not_found_problem(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", PATH, fixture_reply("dhl", "error_404.json", 404))
        with pytest.raises(TrackingNotFound, match="No shipment with given tracking number"):
            await _adapter(http_client, clock).track(NUMBER)

    async def test_empty_shipment_list_is_not_found(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", PATH, reply(200, {"shipments": []}))
        with pytest.raises(TrackingNotFound):
            await _adapter(http_client, clock).track(NUMBER)

    async def test_429_with_retry_after(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on(
            "GET",
            PATH,
            fixture_reply("dhl", "error_429.json", 429, headers={"Retry-After": "4"}),
            fixture_reply("dhl", "track_reply_packstation.json"),
        )
        await _adapter(http_client, clock).track(NUMBER)
        assert clock.sleeps == [4.0]

    async def test_one_call_per_second(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", PATH, fixture_reply("dhl", "track_reply_packstation.json"))
        adapter = _adapter(http_client, clock)
        for _ in range(3):
            await adapter.track(NUMBER)
        assert clock.sleeps == [1.0, 1.0]

    async def test_daily_quota_is_refused_locally(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", PATH, fixture_reply("dhl", "track_reply_packstation.json"))
        adapter = _adapter(http_client, clock)
        for _ in range(250):
            await adapter.track(NUMBER)
        with pytest.raises(CarrierRateLimited) as caught:
            await adapter.track(NUMBER)
        assert len(carrier.requests) == 250
        assert caught.value.retry_after is not None
        assert 86_000 < caught.value.retry_after <= 86_400

    async def test_timeout(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", PATH, timeout())
        with pytest.raises(CarrierTimeout):
            await _adapter(http_client, clock).track(NUMBER)

    @pytest.mark.parametrize(
        "body",
        [
            {"shipments": [{"status": {"statusCode": "transit"}}]},
            {"shipments": [{"id": NUMBER, "events": [{"statusCode": "transit"}]}]},
            {"shipments": [{"id": NUMBER, "events": [{"timestamp": "yesterday"}]}]},
            {"shipments": {"id": NUMBER}},
        ],
        ids=["no-id", "event-without-time", "bad-time", "not-a-list"],
    )
    async def test_malformed_reply(
        self,
        carrier: FakeCarrier,
        http_client: httpx.AsyncClient,
        clock: FakeClock,
        body: object,
    ) -> None:
        carrier.on("GET", PATH, reply(200, body))
        with pytest.raises(MalformedCarrierResponse, match="dhl"):
            await _adapter(http_client, clock).track(NUMBER)


class TestWebhooks:
    body = json.dumps(load_fixture("dhl", "track_reply_packstation.json")["shipments"][0]).encode()

    def _adapter(self, **overrides: Any) -> DhlAdapter:
        client = httpx.AsyncClient(transport=FakeCarrier().transport())
        return _adapter(client, FakeClock(start=START), **overrides)

    def test_token_in_the_configured_header(self) -> None:
        adapter = self._adapter(webhook_header="X-Locker-Push")
        assert adapter.verify_webhook({"x-locker-push": TOKEN}, self.body)
        assert not adapter.verify_webhook({"x-locker-push": "guess"}, self.body)
        assert not adapter.verify_webhook({"DHL-Webhook-Token": TOKEN}, self.body)

    def test_default_header(self) -> None:
        assert self._adapter().verify_webhook({"DHL-Webhook-Token": TOKEN}, self.body)

    def test_without_a_token_there_is_no_webhook_capability(self) -> None:
        adapter = self._adapter(webhook_token=None)
        assert adapter.capabilities == frozenset({Capability.TRACKING})
        with pytest.raises(UnsupportedCapability):
            adapter.parse_webhook(self.body)

    def test_push_with_one_shipment(self) -> None:
        (details,) = self._adapter().parse_webhook(self.body)
        assert details.status is TrackingStatus.DELIVERED_TO_LOCKER

    def test_push_with_a_shipment_list(self) -> None:
        body = fixture_bytes("dhl", "track_reply_spec_example.json")
        (details,) = self._adapter().parse_webhook(body)
        assert details.tracking_number == EXAMPLE

    @pytest.mark.parametrize("body", [b"{}", b"[]", b'{"shipments": 1}', b"nope"])
    def test_malformed_push(self, body: bytes) -> None:
        with pytest.raises(WebhookPayloadError):
            self._adapter().parse_webhook(body)


class TestCodes:
    def test_every_documented_status_code_is_mapped(self) -> None:
        assert set(STATUS_CODES) == {"pre-transit", "transit", "delivered", "failure", "unknown"}

    @pytest.mark.parametrize(
        ("code", "texts", "expected"),
        [
            ("delivered", ("The shipment has been delivered.",), TrackingStatus.DELIVERED),
            (
                "delivered",
                ("The shipment has been delivered to the PACKSTATION 152.",),
                TrackingStatus.DELIVERED_TO_LOCKER,
            ),
            (
                "transit",
                ("The shipment is on its way to the Packstation.",),
                TrackingStatus.IN_TRANSIT,
            ),
            (
                "transit",
                ("The shipment is ready for pick-up at the PACKSTATION.",),
                TrackingStatus.DELIVERED_TO_LOCKER,
            ),
            (
                "transit",
                ("The shipment is ready for pick-up at the retail outlet.",),
                TrackingStatus.READY_FOR_PICKUP,
            ),
            ("transit", ("WITH DELIVERY COURIER",), TrackingStatus.OUT_FOR_DELIVERY),
            ("failure", ("Delivery failed",), TrackingStatus.EXCEPTION),
            (
                "failure",
                ("The shipment is being returned to the sender.",),
                TrackingStatus.RETURN_TO_SENDER,
            ),
            (
                "transit",
                ("The shipment has been returned to sender.",),
                TrackingStatus.RETURN_TO_SENDER,
            ),
            ("pre-transit", ("Shipment cancelled by sender",), TrackingStatus.CANCELLED),
            ("pre-transit", (), TrackingStatus.PRE_TRANSIT),
            ("unknown", (None,), TrackingStatus.UNKNOWN),
            (None, ("anything",), TrackingStatus.UNKNOWN),
        ],
    )
    def test_status_code_refined_by_text(
        self, code: str | None, texts: tuple[str | None, ...], expected: TrackingStatus
    ) -> None:
        assert status_for(code, *texts) is expected
