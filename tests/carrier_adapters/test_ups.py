"""UPS adapter against UPS's documented shapes, played by httpx.MockTransport."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from carrier_adapters.base import (
    Capability,
    CarrierRateLimited,
    CarrierRequestError,
    CarrierTimeout,
    CarrierUnavailable,
    MalformedCarrierResponse,
    SubscriptionResult,
    TrackingNotFound,
    TrackingStatus,
    WebhookPayloadError,
)
from carrier_adapters.settings import UpsSettings
from carrier_adapters.ups import UpsAdapter
from carrier_adapters.ups.codes import ACTIVITY_TYPES, STATUS_CODES, status_for
from tests.carrier_adapters.helpers import (
    FIXTURES,
    START,
    FakeCarrier,
    fixture_bytes,
    fixture_reply,
    form_of,
    json_of,
    load_fixture,
    reply,
    timeout,
)
from tests.clock import FakeClock

HOST = "https://wwwcie.ups.com"
TOKEN = "/security/v1/oauth/token"
NUMBER = "1Z204W4R0308071865"
TRACK = f"/api/track/v1/details/{NUMBER}"
SUBSCRIBE = "/api/track/v2/subscription/standard/package"
CREDENTIAL = "ups-track-alert-credential"
EDT = timezone(timedelta(hours=-4))


def _transaction_ids() -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"trans{n:04d}"


def _adapter(client: httpx.AsyncClient, clock: FakeClock, **overrides: Any) -> UpsAdapter:
    values: dict[str, Any] = {
        "client_id": SecretStr("ups-client-id"),
        "client_secret": SecretStr("ups-client-secret"),
        "environment": "test",
        "transaction_src": "locker-network-test",
        "webhook_credential": SecretStr(CREDENTIAL),
        **overrides,
    }
    ids = _transaction_ids()
    return UpsAdapter(
        UpsSettings(**values),
        client,
        clock=clock,
        sleep=clock.async_sleep,
        transaction_ids=lambda: next(ids),
    )


@pytest.fixture
def ups(carrier: FakeCarrier) -> FakeCarrier:
    return carrier.on("POST", TOKEN, fixture_reply("ups", "token.json"))


@pytest.mark.anyio
class TestRequests:
    async def test_token_and_tracking_requests_are_exactly_as_documented(
        self, ups: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        ups.on("GET", TRACK, fixture_reply("ups", "track_reply_access_point.json"))
        await _adapter(http_client, clock, merchant_id="123456").track(NUMBER.lower())

        token_request, track_request = ups.requests
        assert str(token_request.url) == HOST + TOKEN
        basic = base64.b64encode(b"ups-client-id:ups-client-secret").decode()
        assert token_request.headers["Authorization"] == f"Basic {basic}"
        assert token_request.headers["x-merchant-id"] == "123456"
        assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert form_of(token_request) == {"grant_type": "client_credentials"}

        assert str(track_request.url) == (
            f"{HOST}{TRACK}?locale=en_US&returnSignature=false"
            "&returnMilestones=false&returnPOD=false"
        )
        assert track_request.headers["Authorization"] == "Bearer ups-access-token-1"
        assert track_request.headers["transId"] == "trans0001"
        assert track_request.headers["transactionSrc"] == "locker-network-test"

    async def test_every_request_gets_a_fresh_transaction_id(
        self, ups: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        ups.on("GET", TRACK, fixture_reply("ups", "track_reply_access_point.json"))
        adapter = _adapter(http_client, clock)
        await adapter.track(NUMBER)
        await adapter.track(NUMBER)
        assert [r.headers["transId"] for r in ups.to(TRACK)] == ["trans0001", "trans0002"]

    def test_default_transaction_ids_fit_the_32_character_limit(self) -> None:
        from carrier_adapters.ups.client import _new_transaction_id

        first, second = _new_transaction_id(), _new_transaction_id()
        assert first != second
        assert re.fullmatch(r"[0-9a-f]{32}", first)


@pytest.mark.anyio
class TestParsing:
    async def test_delivered_to_access_point(
        self, ups: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        ups.on("GET", TRACK, fixture_reply("ups", "track_reply_access_point.json"))
        details = await _adapter(http_client, clock).track(NUMBER)
        assert details.carrier == "ups"
        assert details.tracking_number == NUMBER
        assert details.status is TrackingStatus.DELIVERED_TO_LOCKER
        assert details.carrier_status_code == "161"
        assert details.carrier_status_text == "Delivered to UPS Access Point\u2122"
        assert details.delivered_at == datetime(2024, 4, 23, 9, 42, 10, tzinfo=EDT)
        assert details.service == "UPS Ground"
        assert details.estimated_delivery is None
        assert details.location is not None
        assert details.location.city == "CHARLOTTE"
        assert details.location.description == "UPS Access Point\u2122"
        assert [e.status for e in details.events] == [
            TrackingStatus.DELIVERED_TO_LOCKER,
            TrackingStatus.IN_TRANSIT,
            TrackingStatus.IN_TRANSIT,
            TrackingStatus.IN_TRANSIT,
            TrackingStatus.PRE_TRANSIT,
        ]
        # gmtDate of the departure scan is the next day: the GMT fields are used.
        departed = details.events[2]
        assert departed.occurred_at == datetime(2024, 4, 23, 2, 30, tzinfo=UTC)
        assert departed.occurred_at.utcoffset() == timedelta(hours=-4)

    async def test_ready_for_customer_pickup(
        self, ups: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        ups.on("GET", TRACK, fixture_reply("ups", "track_reply_ready_for_pickup.json"))
        details = await _adapter(http_client, clock).track(NUMBER)
        assert details.status is TrackingStatus.READY_FOR_PICKUP
        assert details.carrier_status_code == "040"
        assert details.delivered_at is None
        assert details.estimated_delivery == datetime(2024, 4, 23, 23, 59, tzinfo=EDT)

    async def test_spec_example_reply(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        example = "1Z023E2X0214323462"
        carrier.on("POST", TOKEN, fixture_reply("ups", "token.json"))
        carrier.on(
            "GET",
            f"/api/track/v1/details/{example}",
            fixture_reply("ups", "track_reply_spec_example.json"),
        )
        details = await _adapter(http_client, clock).track(example)
        # The example's statusCode 003 is "Shipment Ready for UPS".
        assert details.status is TrackingStatus.PRE_TRANSIT
        assert details.tracking_number == example
        (event,) = details.events
        # gmtTime "74700" drops its leading zero; gmtOffset is -05:00.
        assert event.occurred_at == datetime(2021, 2, 10, 7, 47, tzinfo=UTC)
        assert event.occurred_at.utcoffset() == timedelta(hours=-5)
        assert event.location is not None
        assert (event.location.city, event.location.postal_code) == ("Wayne", "07470")

    async def test_warning_only_reply_is_not_found(
        self, ups: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        ups.on("GET", TRACK, fixture_reply("ups", "track_reply_not_found.json"))
        with pytest.raises(TrackingNotFound, match="Tracking Information Not Found"):
            await _adapter(http_client, clock).track(NUMBER)


@pytest.mark.anyio
class TestErrors:
    async def test_404(
        self, ups: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        ups.on("GET", TRACK, fixture_reply("ups", "error_404.json", 404))
        with pytest.raises(TrackingNotFound):
            await _adapter(http_client, clock).track(NUMBER)

    async def test_400(
        self, ups: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        ups.on("GET", TRACK, fixture_reply("ups", "subscription_error_400.json", 400))
        with pytest.raises(CarrierRequestError) as caught:
            await _adapter(http_client, clock).track(NUMBER)
        assert caught.value.carrier_code == "VSS300"

    async def test_429_with_retry_after(
        self, ups: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        ups.on(
            "GET",
            TRACK,
            reply(429, headers={"Retry-After": "3"}),
            fixture_reply("ups", "track_reply_access_point.json"),
        )
        await _adapter(http_client, clock).track(NUMBER)
        assert clock.sleeps == [3.0]

    async def test_rate_budget_spaces_calls(
        self, ups: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        ups.on("GET", TRACK, fixture_reply("ups", "track_reply_access_point.json"))
        adapter = _adapter(http_client, clock)
        for _ in range(6):
            await adapter.track(NUMBER)
        # The conservative default allows five calls per second.
        assert clock.sleeps == [1.0]

    async def test_persistent_429(
        self, ups: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        ups.on("GET", TRACK, reply(429))
        with pytest.raises(CarrierRateLimited) as caught:
            await _adapter(http_client, clock).track(NUMBER)
        assert caught.value.retry_after is None
        assert clock.sleeps == [0.5, 1.0]

    async def test_500(
        self, ups: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        ups.on("GET", TRACK, fixture_reply("ups", "error_500.json", 500))
        with pytest.raises(CarrierUnavailable):
            await _adapter(http_client, clock).track(NUMBER)

    async def test_timeout(
        self, ups: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        ups.on("GET", TRACK, timeout())
        with pytest.raises(CarrierTimeout):
            await _adapter(http_client, clock).track(NUMBER)

    @pytest.mark.parametrize(
        "body",
        [
            {"trackResponse": {}},
            {"trackResponse": {"shipment": [{"package": [{"activity": [{"status": {}}]}]}]}},
            {
                "trackResponse": {
                    "shipment": [{"package": [{"activity": [{"date": "2024-04-23"}]}]}]
                }
            },
            "trackResponse",
        ],
        ids=["no-shipment", "activity-without-date", "bad-date", "string"],
    )
    async def test_malformed_reply(
        self,
        ups: FakeCarrier,
        http_client: httpx.AsyncClient,
        clock: FakeClock,
        body: object,
    ) -> None:
        ups.on("GET", TRACK, reply(200, body))
        with pytest.raises(MalformedCarrierResponse, match="ups"):
            await _adapter(http_client, clock).track(NUMBER)


@pytest.mark.anyio
class TestSubscriptions:
    async def test_subscription_request_matches_the_documented_example(
        self, ups: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        ups.on("POST", SUBSCRIBE, fixture_reply("ups", "subscription_partial.json"))
        example = load_fixture("ups", "subscription_request.json")
        result = await _adapter(http_client, clock).subscribe(example["trackingNumberList"])
        (request,) = ups.to(SUBSCRIBE)
        assert str(request.url) == HOST + SUBSCRIBE
        assert json_of(request) == example
        assert request.headers["transId"] == "trans0001"
        assert request.headers["transactionSrc"] == "locker-network-test"
        assert request.headers["Authorization"] == "Bearer ups-access-token-1"
        assert result == SubscriptionResult(
            accepted=("1Z1234567891234556",), rejected=("1Z1234567$8",)
        )

    async def test_more_than_100_numbers_are_split(
        self, ups: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        ups.on("POST", SUBSCRIBE, reply(200, {"validTrackingNumbers": ["1Z"]}))
        numbers = [f"1Z{n:016d}" for n in range(150)]
        result = await _adapter(http_client, clock).subscribe(numbers)
        assert [len(json_of(r)["trackingNumberList"]) for r in ups.to(SUBSCRIBE)] == [100, 50]
        assert result.accepted == ("1Z", "1Z")

    async def test_rejected_request(
        self, ups: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        ups.on("POST", SUBSCRIBE, fixture_reply("ups", "subscription_error_400.json", 400))
        with pytest.raises(CarrierRequestError, match="Locale is required"):
            await _adapter(http_client, clock).subscribe([NUMBER])


class TestWebhooks:
    def _adapter(self, **overrides: Any) -> UpsAdapter:
        client = httpx.AsyncClient(transport=FakeCarrier().transport())
        return _adapter(client, FakeClock(start=START), **overrides)

    def test_bearer_credential(self) -> None:
        adapter = self._adapter()
        body = fixture_bytes("ups", "trackalert_delivered.json")
        assert adapter.verify_webhook({"Authorization": f"Bearer {CREDENTIAL}"}, body)
        assert adapter.verify_webhook({"authorization": f"Bearer {CREDENTIAL}"}, body)
        assert not adapter.verify_webhook({"Authorization": "Bearer something-else"}, body)
        assert not adapter.verify_webhook({"x-api-key": "ups-client-id"}, body)

    def test_capability_follows_configuration(self) -> None:
        assert Capability.WEBHOOK_VERIFY in self._adapter().capabilities
        without = self._adapter(webhook_credential=None)
        assert without.capabilities == frozenset({Capability.TRACKING, Capability.PUSH_SUBSCRIBE})

    def test_out_for_delivery_push(self) -> None:
        (details,) = self._adapter().parse_webhook(
            fixture_bytes("ups", "trackalert_out_for_delivery.json")
        )
        assert details.tracking_number == NUMBER
        assert details.status is TrackingStatus.OUT_FOR_DELIVERY
        (event,) = details.events
        # No gmtOffset in the message: local 09:15:19 against GMT 13:15:19 gives -04:00.
        assert event.occurred_at == datetime(2024, 4, 23, 9, 15, 19, tzinfo=EDT)
        assert event.occurred_at.utcoffset() == timedelta(hours=-4)
        assert event.code == "021"
        assert event.location is not None and event.location.city == "Charlotte"
        assert details.estimated_delivery is not None
        assert details.estimated_delivery.date() == date(2024, 4, 23)

    def test_delivered_push(self) -> None:
        (details,) = self._adapter().parse_webhook(
            fixture_bytes("ups", "trackalert_delivered.json")
        )
        assert details.status is TrackingStatus.DELIVERED
        assert details.delivered_at == datetime(2024, 4, 23, 9, 50, 4, tzinfo=EDT)
        assert details.estimated_delivery is None

    def test_access_point_push(self) -> None:
        body = load_fixture("ups", "trackalert_delivered.json")
        body["activityStatus"].update(descriptionCode="161", code="2W")
        body["gmtOffset"] = "-04.00"
        (details,) = self._adapter().parse_webhook(json.dumps(body).encode())
        assert details.status is TrackingStatus.DELIVERED_TO_LOCKER

    @pytest.mark.parametrize(
        "body",
        [
            b"{}",
            b'{"trackingNumber": "1Z204W4R0308071865"}',
            b'{"trackingNumber": "1Z", "activityStatus": {}, "gmtActivityDate": "2024"}',
            b"not json",
        ],
    )
    def test_malformed_push(self, body: bytes) -> None:
        with pytest.raises(WebhookPayloadError):
            self._adapter().parse_webhook(body)


class TestCodes:
    def _published(self, name: str) -> dict[str, str]:
        html = (FIXTURES / "ups" / name).read_text(encoding="utf-8")
        rows = re.findall(r"<tr>\s*<td>(.*?)</td>\s*<td>(.*?)</td>\s*</tr>", html, re.S)
        return {code.strip(): " ".join(text.split()) for code, text in rows}

    def test_every_published_status_code_is_mapped(self) -> None:
        published = self._published("status_codes.html")
        assert len(published) > 150
        assert set(published) == set(STATUS_CODES)

    def test_every_activity_type_is_mapped(self) -> None:
        assert set(self._published("activity_types.html")) == set(ACTIVITY_TYPES)

    @pytest.mark.parametrize(
        ("code", "activity_type", "expected"),
        [
            ("161", "D", TrackingStatus.DELIVERED_TO_LOCKER),
            ("40", "X", TrackingStatus.READY_FOR_PICKUP),
            ("040", None, TrackingStatus.READY_FOR_PICKUP),
            ("17", None, TrackingStatus.READY_FOR_PICKUP),
            ("144", None, TrackingStatus.READY_FOR_PICKUP),
            ("011", "D", TrackingStatus.DELIVERED),
            ("021", "I", TrackingStatus.OUT_FOR_DELIVERY),
            ("34", None, TrackingStatus.RETURN_TO_SENDER),
            ("118", None, TrackingStatus.RETURN_TO_SENDER),
            ("13", "X", TrackingStatus.EXCEPTION),
            ("60", None, TrackingStatus.EXCEPTION),
            ("7", None, TrackingStatus.CANCELLED),
            ("3", "M", TrackingStatus.PRE_TRANSIT),
            # Informational codes fall back to the activity type.
            ("155", "D", TrackingStatus.DELIVERED),
            ("154", "U", TrackingStatus.UNKNOWN),
            ("999", "I", TrackingStatus.IN_TRANSIT),
            (None, "MV", TrackingStatus.CANCELLED),
            (21, None, TrackingStatus.OUT_FOR_DELIVERY),
        ],
    )
    def test_locker_relevant_codes(
        self, code: str | int | None, activity_type: str | None, expected: TrackingStatus
    ) -> None:
        assert status_for(code, activity_type) is expected
