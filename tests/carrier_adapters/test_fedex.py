"""FedEx adapter against FedEx's documented shapes, played by httpx.MockTransport."""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from carrier_adapters.base import (
    Capability,
    CarrierAuthError,
    CarrierRateLimited,
    CarrierRequestError,
    CarrierTimeout,
    CarrierUnavailable,
    InvalidTrackingNumber,
    MalformedCarrierResponse,
    TrackingDetails,
    TrackingNotFound,
    TrackingStatus,
    UnsupportedCapability,
    WebhookPayloadError,
)
from carrier_adapters.fedex import FedexAdapter
from carrier_adapters.fedex.codes import STATUS_CODES, status_for
from carrier_adapters.fedex.mapping import split_batches
from carrier_adapters.settings import FedexSettings
from carrier_adapters.webhooks import fedex_signature
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

HOST = "https://apis-sandbox.fedex.com"
TOKEN = "/oauth/token"
TRACK = "/track/v1/trackingnumbers"
NUMBER = "128667043726"
SECRET = "fedex-webhook-secret"
PST = timezone(timedelta(hours=-8))


def _adapter(client: httpx.AsyncClient, clock: FakeClock, **overrides: Any) -> FedexAdapter:
    values: dict[str, Any] = {
        "client_id": SecretStr("fedex-client-id"),
        "client_secret": SecretStr("fedex-client-secret"),
        "environment": "test",
        "webhook_secret": SecretStr(SECRET),
        **overrides,
    }
    return FedexAdapter(FedexSettings(**values), client, clock=clock, sleep=clock.async_sleep)


def _echo_results(request: httpx.Request) -> httpx.Response:
    """A reply with the ready-for-pickup result for every number asked for."""
    template = load_fixture("fedex", "track_reply_ready_for_pickup.json")
    item = template["output"]["completeTrackResults"][0]
    results = []
    for info in json_of(request)["trackingInfo"]:
        number = info["trackingNumberInfo"]["trackingNumber"]
        clone = copy.deepcopy(item)
        clone["trackingNumber"] = number
        clone["trackResults"][0]["trackingNumberInfo"]["trackingNumber"] = number
        results.append(clone)
    template["output"]["completeTrackResults"] = results
    return httpx.Response(200, json=template)


@pytest.fixture
def fedex(carrier: FakeCarrier) -> FakeCarrier:
    return carrier.on("POST", TOKEN, fixture_reply("fedex", "token.json"))


@pytest.mark.anyio
class TestRequests:
    async def test_token_and_tracking_requests_are_exactly_as_documented(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        fedex.on("POST", TRACK, fixture_reply("fedex", "track_reply_spec_example.json"))
        await _adapter(http_client, clock).track(NUMBER)

        token_request, track_request = fedex.requests
        assert str(token_request.url) == HOST + TOKEN
        assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert form_of(token_request) == {
            "grant_type": "client_credentials",
            "client_id": "fedex-client-id",
            "client_secret": "fedex-client-secret",
        }
        assert str(track_request.url) == HOST + TRACK
        assert track_request.headers["Authorization"] == "Bearer fdx-access-token-1"
        assert track_request.headers["Content-Type"] == "application/json"
        assert track_request.headers["X-locale"] == "en_US"
        assert json_of(track_request) == {
            "includeDetailedScans": True,
            "trackingInfo": [{"trackingNumberInfo": {"trackingNumber": NUMBER}}],
        }

    async def test_more_than_30_numbers_are_split_into_batches(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        fedex.on("POST", TRACK, _echo_results)
        numbers = [f"{n:012d}" for n in range(1, 62)]
        results = await _adapter(http_client, clock).track_many(numbers)
        sizes = [len(json_of(r)["trackingInfo"]) for r in fedex.to(TRACK)]
        assert sizes == [30, 30, 1]
        assert list(results) == numbers
        assert all(isinstance(r, TrackingDetails) for r in results.values())
        assert len(fedex.to(TOKEN)) == 1

    def test_split_batches(self) -> None:
        assert split_batches([str(n) for n in range(31)]) == [
            [str(n) for n in range(30)],
            ["30"],
        ]
        assert split_batches([]) == []


@pytest.mark.anyio
class TestParsing:
    async def test_spec_example_reply(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        fedex.on("POST", TRACK, fixture_reply("fedex", "track_reply_spec_example.json"))
        details = await _adapter(http_client, clock).track(NUMBER)
        assert details.carrier == "fedex"
        assert details.tracking_number == NUMBER
        assert details.status is TrackingStatus.IN_TRANSIT
        assert details.carrier_status_code == "PU"
        assert details.carrier_status_text == "Picked up"
        assert details.service == "FedEx Freight Economy."
        (event,) = details.events
        assert event.occurred_at == datetime(
            2018, 2, 2, 12, 1, tzinfo=timezone(timedelta(hours=-7))
        )
        assert event.code == "PU"
        assert event.description == "Picked Up: Package available for clearance"
        assert event.location is not None
        assert (event.location.city, event.location.state, event.location.postal_code) == (
            "SEATTLE",
            "WA",
            "98101",
        )
        # The documented window end carries its own offset.
        assert details.estimated_delivery == datetime(
            2021, 10, 15, tzinfo=timezone(timedelta(hours=-6))
        )

    async def test_hold_at_location_ready_for_pickup(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        fedex.on("POST", TRACK, fixture_reply("fedex", "track_reply_ready_for_pickup.json"))
        details = await _adapter(http_client, clock).track(NUMBER)
        assert details.status is TrackingStatus.READY_FOR_PICKUP
        assert [e.code for e in details.events] == ["HP", "HL", "AR", "PU"]
        assert [e.status for e in details.events[:2]] == [TrackingStatus.READY_FOR_PICKUP] * 2
        assert details.location is not None
        assert details.location.description == "SEA"
        assert details.location.city == "SEATTLE"
        assert details.estimated_delivery == datetime(2018, 2, 6, tzinfo=PST)
        assert details.delivered_at is None

    async def test_delivered(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        fedex.on("POST", TRACK, fixture_reply("fedex", "track_reply_delivered.json"))
        details = await _adapter(http_client, clock).track(NUMBER)
        assert details.status is TrackingStatus.DELIVERED
        assert details.delivered_at == datetime(2018, 2, 6, 10, 30, tzinfo=PST)
        assert details.estimated_delivery is None
        assert details.location is not None
        assert details.location.description == "Receptionist/Front Desk"

    async def test_return_to_shipper_after_delivery_exception(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        fedex.on("POST", TRACK, fixture_reply("fedex", "track_reply_return_to_shipper.json"))
        details = await _adapter(http_client, clock).track(NUMBER)
        assert details.status is TrackingStatus.RETURN_TO_SENDER
        exception = details.events[1]
        assert exception.status is TrackingStatus.EXCEPTION
        assert exception.description == (
            "Delivery exception: Customer not available or business closed"
        )

    async def test_batch_with_an_unknown_number(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        fedex.on("POST", TRACK, fixture_reply("fedex", "track_reply_batch_with_not_found.json"))
        results = await _adapter(http_client, clock).track_many([NUMBER, "1234 5678 9012"])
        assert isinstance(results[NUMBER], TrackingDetails)
        missing = results["123456789012"]
        assert isinstance(missing, TrackingNotFound)
        assert "cannot be found" in str(missing)
        assert len(fedex.to(TRACK)) == 1

    async def test_single_unknown_number_raises_not_found(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        fedex.on("POST", TRACK, fixture_reply("fedex", "track_reply_batch_with_not_found.json"))
        with pytest.raises(TrackingNotFound):
            await _adapter(http_client, clock).track("123456789012")

    async def test_number_missing_from_the_reply_is_not_found(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        fedex.on("POST", TRACK, fixture_reply("fedex", "track_reply_spec_example.json"))
        results = await _adapter(http_client, clock).track_many([NUMBER, "999999999999"])
        assert isinstance(results["999999999999"], TrackingNotFound)


@pytest.mark.anyio
class TestErrors:
    async def test_empty_tracking_number_error(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        fedex.on("POST", TRACK, fixture_reply("fedex", "error_400.json", 400))
        with pytest.raises(InvalidTrackingNumber, match="Please provide tracking number"):
            await _adapter(http_client, clock).track(NUMBER)

    async def test_not_found_endpoint_is_a_request_error(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        fedex.on("POST", TRACK, fixture_reply("fedex", "error_404.json", 404))
        with pytest.raises(CarrierRequestError) as caught:
            await _adapter(http_client, clock).track(NUMBER)
        assert caught.value.carrier_code == "NOT.FOUND.ERROR"

    async def test_forbidden(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        fedex.on("POST", TRACK, fixture_reply("fedex", "error_403.json", 403))
        with pytest.raises(CarrierAuthError):
            await _adapter(http_client, clock).track(NUMBER)

    async def test_429_with_http_date_retry_after(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        later = format_datetime(clock() + timedelta(seconds=10), usegmt=True)
        fedex.on(
            "POST",
            TRACK,
            reply(429, headers={"Retry-After": later}),
            fixture_reply("fedex", "track_reply_delivered.json"),
        )
        await _adapter(http_client, clock).track(NUMBER)
        assert clock.sleeps == [10.0]

    async def test_persistent_429(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        fedex.on("POST", TRACK, reply(429, headers={"Retry-After": "5"}))
        with pytest.raises(CarrierRateLimited) as caught:
            await _adapter(http_client, clock).track(NUMBER)
        assert caught.value.retry_after == 5.0
        assert clock.sleeps == [5.0, 5.0]

    @pytest.mark.parametrize("name", ["error_500.json", "error_503.json"])
    async def test_server_errors(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock, name: str
    ) -> None:
        status = int(name[6:9])
        fedex.on("POST", TRACK, fixture_reply("fedex", name, status))
        with pytest.raises(CarrierUnavailable):
            await _adapter(http_client, clock).track(NUMBER)
        assert len(fedex.to(TRACK)) == 3

    async def test_timeout(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        fedex.on("POST", TRACK, timeout())
        with pytest.raises(CarrierTimeout):
            await _adapter(http_client, clock).track(NUMBER)

    @pytest.mark.parametrize(
        "body",
        [
            {"transactionId": "x"},
            {"output": {"completeTrackResults": "none"}},
            {
                "output": {
                    "completeTrackResults": [
                        {"trackingNumber": NUMBER, "trackResults": [{"scanEvents": [{}]}]}
                    ]
                }
            },
            {
                "output": {
                    "completeTrackResults": [
                        {
                            "trackingNumber": NUMBER,
                            "trackResults": [{"scanEvents": [{"date": "02/02/2018"}]}],
                        }
                    ]
                }
            },
        ],
        ids=["no-output", "results-not-a-list", "event-without-date", "bad-date"],
    )
    async def test_malformed_reply(
        self,
        fedex: FakeCarrier,
        http_client: httpx.AsyncClient,
        clock: FakeClock,
        body: object,
    ) -> None:
        fedex.on("POST", TRACK, reply(200, body))
        with pytest.raises(MalformedCarrierResponse, match="fedex"):
            await _adapter(http_client, clock).track(NUMBER)

    async def test_non_json_reply(
        self, fedex: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        fedex.on("POST", TRACK, reply(200, content=b"\x00\xff not json"))
        with pytest.raises(MalformedCarrierResponse):
            await _adapter(http_client, clock).track(NUMBER)


class TestWebhooks:
    body = fixture_bytes("fedex", "track_reply_delivered.json")

    def _adapter(self, **overrides: Any) -> FedexAdapter:
        client = httpx.AsyncClient(transport=FakeCarrier().transport())
        return _adapter(client, FakeClock(start=START), **overrides)

    def test_capability_follows_configuration(self) -> None:
        assert Capability.WEBHOOK_VERIFY in self._adapter().capabilities
        without = self._adapter(webhook_secret=None)
        assert Capability.WEBHOOK_VERIFY not in without.capabilities
        assert Capability.BATCH_TRACKING in without.capabilities
        assert without.max_batch_size == 30
        with pytest.raises(UnsupportedCapability):
            without.verify_webhook({}, self.body)

    def test_valid_signature_is_accepted_whatever_the_header_case(self) -> None:
        signature = fedex_signature(self.body, SECRET)
        adapter = self._adapter()
        assert adapter.verify_webhook({"fdx-signature": signature}, self.body)
        assert adapter.verify_webhook({"FDX-Signature": signature}, self.body)

    def test_altered_body_or_wrong_secret_is_refused(self) -> None:
        adapter = self._adapter()
        signature = fedex_signature(self.body, SECRET)
        assert not adapter.verify_webhook({"fdx-signature": signature}, self.body + b" ")
        wrong = fedex_signature(self.body, "not-the-secret")
        assert not adapter.verify_webhook({"fdx-signature": wrong}, self.body)
        assert not adapter.verify_webhook({}, self.body)

    @pytest.mark.parametrize("level", ["reply", "output", "complete", "result"])
    def test_push_in_the_track_reply_shape(self, level: str) -> None:
        reply_body = json.loads(self.body)
        complete = reply_body["output"]["completeTrackResults"][0]
        shapes = {
            "reply": reply_body,
            "output": reply_body["output"],
            "complete": complete,
            "result": complete["trackResults"][0],
        }
        (details,) = self._adapter().parse_webhook(json.dumps(shapes[level]).encode())
        assert details.tracking_number == NUMBER
        assert details.status is TrackingStatus.DELIVERED

    @pytest.mark.parametrize("body", [b"", b"[]", b'{"hello": 1}', b'{"output": 3}', b"\xff"])
    def test_malformed_push(self, body: bytes) -> None:
        with pytest.raises(WebhookPayloadError):
            self._adapter().parse_webhook(body)


class TestCodes:
    def _published_codes(self) -> set[str]:
        """Movement and regulatory codes of the published table (possession codes say who
        holds the parcel and are never a status)."""
        html = (FIXTURES / "fedex" / "status_codes.html").read_text(encoding="utf-8")
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", html)]
        codes: set[str] = set()
        # Two code/definition column pairs; the right one switches section on a title cell.
        right_section = "Movement"
        for left, _, right, right_definition in zip(*[iter(cells)] * 4, strict=True):
            if left and left != "Movement":
                codes.add(left.upper())
            if right in ("Regulatory", "Possession") and not right_definition:
                right_section = right
            elif right and right_section != "Possession":
                codes.add(right.upper())
        return codes

    def test_every_published_status_code_is_mapped(self) -> None:
        published = self._published_codes()
        assert len(published) == 53
        assert {"HL", "HP", "RS", "DE", "DL", "OD", "CC", "CD"} <= published
        assert published <= set(STATUS_CODES)

    @pytest.mark.parametrize(
        ("code", "expected"),
        [
            ("HL", TrackingStatus.READY_FOR_PICKUP),
            ("HP", TrackingStatus.READY_FOR_PICKUP),
            ("RS", TrackingStatus.RETURN_TO_SENDER),
            ("DE", TrackingStatus.EXCEPTION),
            ("SE", TrackingStatus.EXCEPTION),
            ("DL", TrackingStatus.DELIVERED),
            ("OD", TrackingStatus.OUT_FOR_DELIVERY),
            ("CA", TrackingStatus.CANCELLED),
            ("OC", TrackingStatus.PRE_TRANSIT),
            ("Ow", TrackingStatus.IN_TRANSIT),
            ("??", TrackingStatus.UNKNOWN),
        ],
    )
    def test_locker_relevant_codes(self, code: str, expected: TrackingStatus) -> None:
        assert status_for(code) is expected

    def test_derived_code_is_the_fallback(self) -> None:
        assert status_for("XX", "DL") is TrackingStatus.DELIVERED
