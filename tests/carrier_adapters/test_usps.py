"""USPS adapter against USPS's documented shapes, played by httpx.MockTransport."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from carrier_adapters.base import (
    Capability,
    CarrierRateLimited,
    CarrierRequestError,
    CarrierTimeout,
    InvalidTrackingNumber,
    Location,
    MalformedCarrierResponse,
    TrackingNotFound,
    TrackingStatus,
    UnsupportedCapability,
)
from carrier_adapters.settings import RateLimit, UspsSettings
from carrier_adapters.usps import UspsAdapter
from carrier_adapters.usps.codes import EVENT_CODES, category_status, event_status
from tests.carrier_adapters.helpers import (
    FakeCarrier,
    Reply,
    fixture_reply,
    form_of,
    reply,
    timeout,
)
from tests.clock import FakeClock

HOST = "https://apis-tem.usps.com"
TOKEN = "/oauth2/v3/token"
NUMBER = "9400111206206406260787"
TRACKING = f"/tracking/v3/tracking/{NUMBER}"
EDT = timezone(timedelta(hours=-4))


def _adapter(client: httpx.AsyncClient, clock: FakeClock, **overrides: Any) -> UspsAdapter:
    values: dict[str, Any] = {
        "client_id": SecretStr("usps-client-id"),
        "client_secret": SecretStr("usps-client-secret"),
        "environment": "test",
        **overrides,
    }
    settings = UspsSettings(**values)
    return UspsAdapter(settings, client, clock=clock, sleep=clock.async_sleep)


@pytest.mark.anyio
class TestRequests:
    async def test_token_then_tracking_requests_are_exactly_as_documented(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("POST", TOKEN, fixture_reply("usps", "token.json"))
        carrier.on("GET", TRACKING, fixture_reply("usps", "tracking_delivered_front_door.json"))
        await _adapter(http_client, clock).track("9400 1112 0620 6406 2607 87")

        token_request, tracking_request = carrier.requests
        assert token_request.method == "POST"
        assert str(token_request.url) == HOST + TOKEN
        assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert form_of(token_request) == {
            "grant_type": "client_credentials",
            "client_id": "usps-client-id",
            "client_secret": "usps-client-secret",
            "scope": "tracking",
        }
        assert tracking_request.method == "GET"
        assert str(tracking_request.url) == f"{HOST}{TRACKING}?expand=DETAIL"
        assert tracking_request.headers["Authorization"] == "Bearer usps-access-token-1"
        assert tracking_request.headers["Accept"] == "application/json"
        assert tracking_request.content == b""

    async def test_production_host_by_default(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("POST", TOKEN, fixture_reply("usps", "token.json"))
        carrier.on("GET", TRACKING, fixture_reply("usps", "tracking_delivered_front_door.json"))
        await _adapter(http_client, clock, environment="production").track(NUMBER)
        assert {r.url.host for r in carrier.requests} == {"apis.usps.com"}


@pytest.mark.anyio
class TestParsing:
    async def test_parcel_locker_delivery(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("POST", TOKEN, fixture_reply("usps", "token.json"))
        carrier.on("GET", TRACKING, fixture_reply("usps", "tracking_delivered_parcel_locker.json"))
        details = await _adapter(http_client, clock).track(NUMBER)

        assert details.carrier == "usps"
        assert details.tracking_number == NUMBER
        assert details.status is TrackingStatus.DELIVERED_TO_LOCKER
        assert details.carrier_status_code == "01"
        assert details.carrier_status_text == "Delivered, Parcel Locker"
        assert details.delivered_at == datetime(2022, 6, 17, 12, 1, tzinfo=EDT)
        assert details.delivered_at.utcoffset() == timedelta(hours=-4)
        assert details.location == Location(
            city="FAIRFAX", state="VA", postal_code="22032", country_code="US"
        )
        assert details.service == "PRIORITY_MAIL"
        assert [(e.code, e.status) for e in details.events] == [
            ("01", TrackingStatus.DELIVERED_TO_LOCKER),
            ("OF", TrackingStatus.OUT_FOR_DELIVERY),
            ("07", TrackingStatus.IN_TRANSIT),
            ("10", TrackingStatus.IN_TRANSIT),
            ("82", TrackingStatus.IN_TRANSIT),
        ]
        oldest = details.events[-1]
        assert oldest.occurred_at == datetime(2022, 6, 16, 6, 18, tzinfo=UTC)
        assert oldest.description == "Departed Shipping Partner Facility, USPS Awaiting Item"
        assert oldest.location is not None and oldest.location.city == "CHANTILLY"

    async def test_front_door_delivery_is_an_ordinary_delivery(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("POST", TOKEN, fixture_reply("usps", "token.json"))
        carrier.on("GET", TRACKING, fixture_reply("usps", "tracking_delivered_front_door.json"))
        details = await _adapter(http_client, clock).track(NUMBER)
        assert details.status is TrackingStatus.DELIVERED
        assert details.estimated_delivery is None

    async def test_available_for_pickup(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("POST", TOKEN, fixture_reply("usps", "token.json"))
        carrier.on("GET", TRACKING, fixture_reply("usps", "tracking_available_for_pickup.json"))
        details = await _adapter(http_client, clock).track(NUMBER)
        assert details.status is TrackingStatus.READY_FOR_PICKUP
        assert details.delivered_at is None
        assert details.location is not None and details.location.postal_code == "22031"
        assert details.estimated_delivery == datetime(2022, 6, 17, tzinfo=UTC)


@pytest.mark.anyio
class TestErrors:
    async def test_not_found(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("POST", TOKEN, fixture_reply("usps", "token.json"))
        carrier.on("GET", TRACKING, fixture_reply("usps", "error_404.json", 404))
        with pytest.raises(TrackingNotFound, match="could not be found"):
            await _adapter(http_client, clock).track(NUMBER)

    async def test_invalid_tracking_number(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("POST", TOKEN, fixture_reply("usps", "token.json"))
        carrier.on("GET", TRACKING, fixture_reply("usps", "error_400.json", 400))
        with pytest.raises(InvalidTrackingNumber, match="Invalid tracking number"):
            await _adapter(http_client, clock).track(NUMBER)

    async def test_other_client_error(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("POST", TOKEN, fixture_reply("usps", "token.json"))
        carrier.on("GET", TRACKING, reply(405, content=b"Method Not Allowed"))
        with pytest.raises(CarrierRequestError) as caught:
            await _adapter(http_client, clock).track(NUMBER)
        assert caught.value.status_code == 405

    async def test_429_with_retry_after_is_waited_out(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("POST", TOKEN, fixture_reply("usps", "token.json"))
        carrier.on(
            "GET",
            TRACKING,
            fixture_reply("usps", "error_429.json", 429, headers={"Retry-After": "30"}),
            fixture_reply("usps", "tracking_delivered_front_door.json"),
        )
        details = await _adapter(http_client, clock).track(NUMBER)
        assert details.status is TrackingStatus.DELIVERED
        assert clock.sleeps == [30.0]

    async def test_429_beyond_patience_is_reported_with_retry_after(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("POST", TOKEN, fixture_reply("usps", "token.json"))
        carrier.on(
            "GET",
            TRACKING,
            fixture_reply("usps", "error_429.json", 429, headers={"Retry-After": "1800"}),
        )
        with pytest.raises(CarrierRateLimited) as caught:
            await _adapter(http_client, clock).track(NUMBER)
        assert caught.value.retry_after == 1800.0
        assert caught.value.carrier == "usps"

    async def test_hourly_budget_refuses_the_61st_call_without_calling_usps(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("POST", TOKEN, fixture_reply("usps", "token.json"))
        carrier.on("GET", TRACKING, fixture_reply("usps", "tracking_delivered_front_door.json"))
        adapter = _adapter(http_client, clock, rate_limits=(RateLimit(calls=3, period_s=3600),))
        for _ in range(3):
            await adapter.track(NUMBER)
        with pytest.raises(CarrierRateLimited) as caught:
            await adapter.track(NUMBER)
        assert caught.value.retry_after == 3600
        assert len(carrier.to(TRACKING)) == 3

    async def test_503_is_retried(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("POST", TOKEN, fixture_reply("usps", "token.json"))
        carrier.on(
            "GET",
            TRACKING,
            fixture_reply("usps", "error_503.json", 503, headers={"Retry-After": "2"}),
            fixture_reply("usps", "tracking_delivered_front_door.json"),
        )
        await _adapter(http_client, clock).track(NUMBER)
        assert clock.sleeps == [2.0]

    async def test_timeout(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("POST", TOKEN, fixture_reply("usps", "token.json"))
        carrier.on("GET", TRACKING, timeout())
        with pytest.raises(CarrierTimeout) as caught:
            await _adapter(http_client, clock).track(NUMBER)
        assert isinstance(caught.value.__cause__, httpx.TimeoutException)
        assert clock.sleeps == [0.5, 1.0]

    @pytest.mark.parametrize(
        "broken",
        [
            reply(200, content=b"<html>Service temporarily unavailable</html>"),
            reply(200, {"trackingNumber": NUMBER, "trackingEvents": "none"}),
            reply(200, {"trackingEvents": []}),
            reply(
                200,
                {
                    "trackingNumber": NUMBER,
                    "trackingEvents": [{"eventCode": "01", "GMTTimestamp": "yesterday"}],
                },
            ),
            reply(200, [1, 2, 3]),
        ],
        ids=["html", "events-not-a-list", "no-number", "bad-timestamp", "array"],
    )
    async def test_malformed_reply_is_a_clear_error(
        self,
        carrier: FakeCarrier,
        http_client: httpx.AsyncClient,
        clock: FakeClock,
        broken: Reply,
    ) -> None:
        carrier.on("POST", TOKEN, fixture_reply("usps", "token.json"))
        carrier.on("GET", TRACKING, broken)
        with pytest.raises(MalformedCarrierResponse, match="usps"):
            await _adapter(http_client, clock).track(NUMBER)

    async def test_unsafe_number_is_refused_before_any_request(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        with pytest.raises(InvalidTrackingNumber):
            await _adapter(http_client, clock).track("../../oauth2/v3/token")
        assert carrier.requests == []

    async def test_secrets_stay_out_of_logs(
        self,
        carrier: FakeCarrier,
        http_client: httpx.AsyncClient,
        clock: FakeClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        carrier.on("POST", TOKEN, fixture_reply("usps", "token.json"))
        carrier.on(
            "GET",
            TRACKING,
            reply(503),
            fixture_reply("usps", "tracking_delivered_front_door.json"),
        )
        with caplog.at_level(logging.DEBUG):
            adapter = _adapter(http_client, clock)
            await adapter.track(NUMBER)
        for text in (caplog.text, repr(adapter)):
            assert "usps-client-secret" not in text
            assert "usps-access-token-1" not in text


def test_usps_has_no_webhooks() -> None:
    adapter = UspsAdapter(
        UspsSettings(client_id=SecretStr("a"), client_secret=SecretStr("b")),
        httpx.AsyncClient(transport=FakeCarrier().transport()),
    )
    assert adapter.capabilities == frozenset({Capability.TRACKING})
    with pytest.raises(UnsupportedCapability):
        adapter.verify_webhook({}, b"{}")


def test_adapter_needs_credentials() -> None:
    with pytest.raises(ValueError, match="not configured"):
        UspsAdapter(UspsSettings(), httpx.AsyncClient(transport=FakeCarrier().transport()))


class TestCodes:
    @pytest.mark.parametrize(
        ("code", "event_type", "expected"),
        [
            ("01", "Delivered, Parcel Locker", TrackingStatus.DELIVERED_TO_LOCKER),
            ("01", "Delivered, Front Door/Porch", TrackingStatus.DELIVERED),
            ("01", "Delivered, In/At Mailbox", TrackingStatus.DELIVERED),
            ("16", "Available for Pickup", TrackingStatus.READY_FOR_PICKUP),
            ("43", "Picked Up", TrackingStatus.DELIVERED),
            ("OF", "Out for Delivery", TrackingStatus.OUT_FOR_DELIVERY),
            ("MA", "Pre-Shipment Info Sent to USPS", TrackingStatus.PRE_TRANSIT),
            ("02", "Notice Left (No Authorized Recipient Available)", TrackingStatus.EXCEPTION),
            ("55", "No Secure Location Available", TrackingStatus.EXCEPTION),
            ("09", "Return to Sender", TrackingStatus.RETURN_TO_SENDER),
            ("31", "Return to Sender - Not Picked Up", TrackingStatus.RETURN_TO_SENDER),
            ("44", "Customer Recall", TrackingStatus.RETURN_TO_SENDER),
            ("DX", "Delivery Status Not Updated", TrackingStatus.UNKNOWN),
            (None, "Delivered, Parcel Locker", TrackingStatus.DELIVERED_TO_LOCKER),
            ("ZZ", "Something new", TrackingStatus.UNKNOWN),
        ],
    )
    def test_event_codes(self, code: str | None, event_type: str, expected: TrackingStatus) -> None:
        assert event_status(code, event_type) is expected

    def test_every_return_and_attempt_code_is_mapped(self) -> None:
        returns = {"09", "21", "22", "23", "24", "25", "26", "27", "28", "29", "31"}
        attempts = {"02", "52", "53", "54", "55", "56"}
        assert {c for c, (_, s) in EVENT_CODES.items() if s is TrackingStatus.RETURN_TO_SENDER} >= (
            returns
        )
        assert {c for c, (_, s) in EVENT_CODES.items() if s is TrackingStatus.EXCEPTION} >= (
            attempts
        )

    def test_category_fallback(self) -> None:
        assert category_status("Delivered", "Delivered, Parcel Locker") is (
            TrackingStatus.DELIVERED_TO_LOCKER
        )
        assert category_status("In Transit") is TrackingStatus.IN_TRANSIT
        assert category_status("Whatever") is TrackingStatus.UNKNOWN
