"""One contract for every CarrierAdapter: what central may rely on, whichever carrier it is."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from carrier_adapters.base import (
    Capability,
    CarrierAdapter,
    CarrierError,
    CarrierRateLimited,
    CarrierTimeout,
    CarrierUnavailable,
    InvalidTrackingNumber,
    MalformedCarrierResponse,
    SubscriptionResult,
    TrackingDetails,
    TrackingNotFound,
    TrackingStatus,
    UnsupportedCapability,
)
from carrier_adapters.dhl import DhlAdapter
from carrier_adapters.fedex import FedexAdapter
from carrier_adapters.registry import build_adapters
from carrier_adapters.settings import (
    CarrierSettings,
    DhlSettings,
    FedexSettings,
    UpsSettings,
    UspsSettings,
)
from carrier_adapters.ups import UpsAdapter
from carrier_adapters.usps import UspsAdapter
from carrier_adapters.webhooks import fedex_signature
from tests.carrier_adapters.helpers import START, fixture_bytes, load_fixture
from tests.clock import FakeClock

Tracking = Callable[[httpx.Request], httpx.Response]
SECRETS = ("client-secret-value", "webhook-secret-value", "api-key-value")


def _usps_reply(request: httpx.Request, known: set[str]) -> httpx.Response:
    number = request.url.path.rsplit("/", 1)[-1]
    if number not in known:
        return httpx.Response(404, json=load_fixture("usps", "error_404.json"))
    body = load_fixture("usps", "tracking_delivered_parcel_locker.json")
    body["trackingNumber"] = number
    return httpx.Response(200, json=body)


def _ups_reply(request: httpx.Request, known: set[str]) -> httpx.Response:
    number = request.url.path.rsplit("/", 1)[-1]
    if number not in known:
        return httpx.Response(404, json=load_fixture("ups", "error_404.json"))
    body = load_fixture("ups", "track_reply_access_point.json")
    body["trackResponse"]["shipment"][0]["package"][0]["trackingNumber"] = number
    return httpx.Response(200, json=body)


def _dhl_reply(request: httpx.Request, known: set[str]) -> httpx.Response:
    number = request.url.params["trackingNumber"]
    if number not in known:
        return httpx.Response(404, json=load_fixture("dhl", "error_404.json"))
    body = load_fixture("dhl", "track_reply_packstation.json")
    body["shipments"][0]["id"] = number
    return httpx.Response(200, json=body)


def _fedex_reply(request: httpx.Request, known: set[str]) -> httpx.Response:
    body = load_fixture("fedex", "track_reply_delivered.json")
    template = body["output"]["completeTrackResults"][0]
    results = []
    for info in json.loads(request.content)["trackingInfo"]:
        number = info["trackingNumberInfo"]["trackingNumber"]
        item = copy.deepcopy(template)
        item["trackingNumber"] = number
        result = item["trackResults"][0]
        result["trackingNumberInfo"]["trackingNumber"] = number
        if number not in known:
            item["trackResults"] = [
                {
                    "trackingNumberInfo": {"trackingNumber": number},
                    "error": {
                        "code": "TRACKING.TRACKINGNUMBER.NOTFOUND",
                        "message": "Tracking number cannot be found.",
                    },
                }
            ]
        results.append(item)
    body["output"]["completeTrackResults"] = results
    return httpx.Response(200, json=body)


@dataclass(frozen=True)
class Scenario:
    carrier_id: str
    build: Callable[[httpx.AsyncClient, FakeClock], CarrierAdapter]
    number: str
    """A number the fake carrier knows."""
    other_number: str
    """A second valid number of the same carrier, unknown to the fake carrier."""
    token_path: str | None
    token_fixture: str
    answer: Callable[[httpx.Request, set[str]], httpx.Response]
    webhook: tuple[dict[str, str], bytes] | None
    exclusive_number: str
    """A number no other adapter claims (USPS IMpb numbers are shared with FedEx and UPS)."""
    signs_body: bool = False

    def __str__(self) -> str:
        return self.carrier_id


def _fedex_webhook() -> tuple[dict[str, str], bytes]:
    body = fixture_bytes("fedex", "track_reply_delivered.json")
    return {"fdx-signature": fedex_signature(body, "webhook-secret-value")}, body


SCENARIOS = [
    Scenario(
        carrier_id="usps",
        build=lambda client, clock: UspsAdapter(
            UspsSettings(
                client_id=SecretStr("usps-id"), client_secret=SecretStr("client-secret-value")
            ),
            client,
            clock=clock,
            sleep=clock.async_sleep,
        ),
        number="9400111206206406260787",
        other_number="9405803699300124287899",
        token_path="/oauth2/v3/token",
        token_fixture="usps",
        answer=_usps_reply,
        webhook=None,
        exclusive_number="RB123456785US",
    ),
    Scenario(
        carrier_id="fedex",
        build=lambda client, clock: FedexAdapter(
            FedexSettings(
                client_id=SecretStr("fedex-id"),
                client_secret=SecretStr("client-secret-value"),
                webhook_secret=SecretStr("webhook-secret-value"),
            ),
            client,
            clock=clock,
            sleep=clock.async_sleep,
        ),
        number="128667043726",
        other_number="986578788855",
        token_path="/oauth/token",
        token_fixture="fedex",
        answer=_fedex_reply,
        webhook=_fedex_webhook(),
        exclusive_number="128667043726",
        signs_body=True,
    ),
    Scenario(
        carrier_id="ups",
        build=lambda client, clock: UpsAdapter(
            UpsSettings(
                client_id=SecretStr("ups-id"),
                client_secret=SecretStr("client-secret-value"),
                webhook_credential=SecretStr("webhook-secret-value"),
            ),
            client,
            clock=clock,
            sleep=clock.async_sleep,
        ),
        number="1Z204W4R0308071865",
        other_number="1Z5R89390357567127",
        token_path="/security/v1/oauth/token",
        token_fixture="ups",
        answer=_ups_reply,
        webhook=(
            {"Authorization": "Bearer webhook-secret-value"},
            fixture_bytes("ups", "trackalert_delivered.json"),
        ),
        exclusive_number="1Z204W4R0308071865",
    ),
    Scenario(
        carrier_id="dhl",
        build=lambda client, clock: DhlAdapter(
            DhlSettings(
                api_key=SecretStr("api-key-value"),
                webhook_token=SecretStr("webhook-secret-value"),
            ),
            client,
            clock=clock,
            sleep=clock.async_sleep,
        ),
        number="3318810025",
        other_number="8487135506",
        token_path=None,
        token_fixture="dhl",
        answer=_dhl_reply,
        webhook=(
            {"DHL-Webhook-Token": "webhook-secret-value"},
            json.dumps(
                load_fixture("dhl", "track_reply_packstation.json")["shipments"][0]
            ).encode(),
        ),
        exclusive_number="3318810025",
    ),
]


class Harness:
    """Plays one carrier: tokens always work; tracking requests go to `tracking`."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.clock = FakeClock(start=START)
        self.requests: list[httpx.Request] = []
        self.tracking: Tracking = lambda request: scenario.answer(request, {scenario.number})
        self.client = httpx.AsyncClient(transport=httpx.MockTransport(self._handle))
        self.adapter = scenario.build(self.client, self.clock)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == self.scenario.token_path:
            return httpx.Response(200, json=load_fixture(self.scenario.token_fixture, "token.json"))
        return self.tracking(request)

    @property
    def tracking_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path != self.scenario.token_path]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=SCENARIOS, ids=str)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    built = Harness(request.param)
    async with built.client:
        yield built


def _aware(value: datetime | None) -> bool:
    return value is None or value.utcoffset() is not None


def _raise(error: Exception) -> Tracking:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


@pytest.mark.anyio
class TestContract:
    async def test_declares_what_it_can_do(self, harness: Harness) -> None:
        adapter = harness.adapter
        assert adapter.carrier_id == harness.scenario.carrier_id
        assert Capability.TRACKING in adapter.capabilities
        assert all(isinstance(c, Capability) for c in adapter.capabilities)
        batch = Capability.BATCH_TRACKING in adapter.capabilities
        assert (adapter.max_batch_size > 1) is batch

    async def test_recognises_its_own_numbers_only(self, harness: Harness) -> None:
        adapter = harness.adapter
        assert adapter.recognizes(harness.scenario.number)
        assert adapter.recognizes(harness.scenario.other_number.lower())
        assert adapter.recognizes(harness.scenario.exclusive_number)
        for other in SCENARIOS:
            if other.carrier_id != adapter.carrier_id:
                assert not adapter.recognizes(other.exclusive_number)

    async def test_tracks_into_the_normalised_model(self, harness: Harness) -> None:
        number = harness.scenario.number
        spaced = " ".join(number[i : i + 4] for i in range(0, len(number), 4)).lower()
        details = await harness.adapter.track(spaced)
        assert isinstance(details, TrackingDetails)
        assert details.carrier == harness.adapter.carrier_id
        assert details.tracking_number == number
        assert details.status in {
            TrackingStatus.DELIVERED,
            TrackingStatus.DELIVERED_TO_LOCKER,
        }
        assert details.status.is_final
        assert details.events
        times = [e.occurred_at for e in details.events]
        assert times == sorted(times, reverse=True)
        assert all(_aware(t) for t in times)
        assert _aware(details.delivered_at) and details.delivered_at is not None
        assert _aware(details.estimated_delivery)
        assert all(isinstance(e.status, TrackingStatus) for e in details.events)
        assert (
            number
            in str(harness.tracking_requests[0].url) + harness.tracking_requests[0].content.decode()
        )

    async def test_unknown_number_is_not_found(self, harness: Harness) -> None:
        with pytest.raises(TrackingNotFound) as caught:
            await harness.adapter.track(harness.scenario.other_number)
        assert isinstance(caught.value, LookupError)
        assert caught.value.carrier == harness.adapter.carrier_id

    async def test_track_many_reports_per_number_outcomes(self, harness: Harness) -> None:
        scenario = harness.scenario
        results = await harness.adapter.track_many(
            [scenario.number, scenario.other_number.lower(), "../etc/passwd", scenario.number]
        )
        assert list(results) == [scenario.number, scenario.other_number, "../ETC/PASSWD"]
        assert isinstance(results[scenario.number], TrackingDetails)
        assert isinstance(results[scenario.other_number], TrackingNotFound)
        assert isinstance(results["../ETC/PASSWD"], InvalidTrackingNumber)

    @pytest.mark.parametrize("number", ["", "  ", "../../admin", "1Z?x=1", "A" * 80])
    async def test_unsafe_numbers_never_reach_the_carrier(
        self, harness: Harness, number: str
    ) -> None:
        with pytest.raises(InvalidTrackingNumber) as caught:
            await harness.adapter.track(number)
        assert isinstance(caught.value, ValueError)
        assert harness.requests == []

    async def test_rate_limiting_is_reported_with_retry_after(self, harness: Harness) -> None:
        harness.tracking = lambda request: httpx.Response(429, headers={"Retry-After": "3600"})
        with pytest.raises(CarrierRateLimited) as caught:
            await harness.adapter.track(harness.scenario.number)
        assert caught.value.retry_after == 3600.0

    async def test_server_failures_are_retried_then_reported(self, harness: Harness) -> None:
        harness.tracking = lambda request: httpx.Response(503)
        with pytest.raises(CarrierUnavailable):
            await harness.adapter.track(harness.scenario.number)
        assert len(harness.tracking_requests) == 3
        # Exponential backoff; DHL's one-call-per-second budget may add waits of its own.
        backoff = [s for s in harness.clock.sleeps if s in (0.5, 1.0)]
        assert backoff[0] == 0.5 and backoff[-1] == 1.0

    async def test_timeouts_are_reported(self, harness: Harness) -> None:
        harness.tracking = _raise(httpx.ConnectTimeout("slow"))
        with pytest.raises(CarrierTimeout) as caught:
            await harness.adapter.track(harness.scenario.number)
        assert isinstance(caught.value, TimeoutError)

    @pytest.mark.parametrize(
        "body", [b"", b"<html>502 Bad Gateway</html>", b"{}", b"[]", b"null", b'"text"']
    )
    async def test_malformed_answers_are_clear_errors(self, harness: Harness, body: bytes) -> None:
        harness.tracking = lambda request: httpx.Response(200, content=body)
        with pytest.raises(MalformedCarrierResponse) as caught:
            await harness.adapter.track(harness.scenario.number)
        assert isinstance(caught.value, CarrierError)
        assert harness.adapter.carrier_id in str(caught.value)

    async def test_webhooks_follow_the_capability(self, harness: Harness) -> None:
        adapter = harness.adapter
        webhook = harness.scenario.webhook
        if Capability.WEBHOOK_VERIFY not in adapter.capabilities:
            assert webhook is None
            with pytest.raises(UnsupportedCapability):
                adapter.verify_webhook({}, b"{}")
            with pytest.raises(UnsupportedCapability):
                adapter.parse_webhook(b"{}")
            return
        assert webhook is not None
        headers, body = webhook
        assert adapter.verify_webhook(headers, body)
        # Only a body signature can notice an altered body; bearer and static tokens cannot.
        assert adapter.verify_webhook(headers, body + b"\n ") is not harness.scenario.signs_body
        assert not adapter.verify_webhook({}, body)
        wrong = {k: "x" + v for k, v in headers.items()}
        assert not adapter.verify_webhook(wrong, body)
        parsed = adapter.parse_webhook(body)
        assert parsed
        assert all(d.carrier == adapter.carrier_id for d in parsed)
        assert all(_aware(e.occurred_at) for d in parsed for e in d.events)

    async def test_push_subscription_follows_the_capability(self, harness: Harness) -> None:
        adapter = harness.adapter
        if Capability.PUSH_SUBSCRIBE not in adapter.capabilities:
            with pytest.raises(UnsupportedCapability):
                await adapter.subscribe([harness.scenario.number])
            assert harness.requests == []
            return
        harness.tracking = lambda request: httpx.Response(
            200, json={"validTrackingNumbers": [harness.scenario.number]}
        )
        result = await adapter.subscribe([harness.scenario.number])
        assert result == SubscriptionResult(accepted=(harness.scenario.number,))

    async def test_no_secret_in_repr(self, harness: Harness) -> None:
        await harness.adapter.track(harness.scenario.number)
        text = repr(harness.adapter)
        for secret in SECRETS:
            assert secret not in text


@pytest.mark.anyio
async def test_registry_builds_the_configured_carriers_only() -> None:
    settings = CarrierSettings(
        usps=UspsSettings(client_id=SecretStr("a"), client_secret=SecretStr("b")),
        fedex=FedexSettings(),
        ups=UpsSettings(client_id=SecretStr("c"), client_secret=SecretStr("d")),
        dhl=DhlSettings(api_key=SecretStr("e")),
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as (
        client
    ):
        adapters = build_adapters(settings, client)
    assert sorted(adapters) == ["dhl", "ups", "usps"]
    for carrier_id, adapter in adapters.items():
        assert adapter.carrier_id == carrier_id


def test_every_adapter_is_in_the_contract() -> None:
    settings: dict[str, Any] = {
        "usps": UspsSettings(client_id=SecretStr("a"), client_secret=SecretStr("b")),
        "fedex": FedexSettings(client_id=SecretStr("a"), client_secret=SecretStr("b")),
        "ups": UpsSettings(client_id=SecretStr("a"), client_secret=SecretStr("b")),
        "dhl": DhlSettings(api_key=SecretStr("a")),
    }
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    built = build_adapters(CarrierSettings(**settings), client)
    assert sorted(built) == sorted(s.carrier_id for s in SCENARIOS)
