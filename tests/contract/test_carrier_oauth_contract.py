"""One contract for carrier credentials: OAuth2 tokens cached, refreshed once, refused loudly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr

from carrier_adapters.base import (
    CarrierAdapter,
    CarrierAuthError,
    MalformedCarrierResponse,
    TrackingDetails,
    TrackingStatus,
)
from carrier_adapters.dhl import DhlAdapter
from carrier_adapters.fedex import FedexAdapter
from carrier_adapters.settings import DhlSettings, FedexSettings, UpsSettings, UspsSettings
from carrier_adapters.ups import UpsAdapter
from carrier_adapters.usps import UspsAdapter
from tests.carrier_adapters.helpers import (
    START,
    FakeCarrier,
    Reply,
    fixture_reply,
    load_fixture,
    reply,
)
from tests.clock import FakeClock

USPS_NUMBER = "9400111206206406260787"
UPS_NUMBER = "1Z204W4R0308071865"


@dataclass(frozen=True)
class Credentials:
    """How one carrier authenticates, and the tracking call that spends the credential."""

    carrier_id: str
    build: Callable[[httpx.AsyncClient, FakeClock], CarrierAdapter]
    number: str
    tracking: tuple[str, str]
    """Method and path of the tracking call for `number`."""
    delivered: str
    """Fixture of the carrier's documented reply for `number`, which normalises to `status`."""
    status: TrackingStatus
    token_path: str | None
    """The OAuth2 token endpoint; None for an API key, which is never fetched or refreshed."""
    token_lifetime_s: float = 0.0
    """`expires_in` of the carrier's documented token reply (UPS sends it as a string)."""

    def __str__(self) -> str:
        return self.carrier_id


CASES = [
    Credentials(
        carrier_id="usps",
        build=lambda client, clock: UspsAdapter(
            UspsSettings(client_id=SecretStr("usps-id"), client_secret=SecretStr("usps-secret")),
            client,
            clock=clock,
            sleep=clock.async_sleep,
        ),
        number=USPS_NUMBER,
        tracking=("GET", f"/tracking/v3/tracking/{USPS_NUMBER}"),
        delivered="tracking_delivered_front_door.json",
        status=TrackingStatus.DELIVERED,
        token_path="/oauth2/v3/token",
        token_lifetime_s=28799,
    ),
    Credentials(
        carrier_id="fedex",
        build=lambda client, clock: FedexAdapter(
            FedexSettings(client_id=SecretStr("fedex-id"), client_secret=SecretStr("fedex-secret")),
            client,
            clock=clock,
            sleep=clock.async_sleep,
        ),
        number="128667043726",
        tracking=("POST", "/track/v1/trackingnumbers"),
        delivered="track_reply_delivered.json",
        status=TrackingStatus.DELIVERED,
        token_path="/oauth/token",
        token_lifetime_s=3599,
    ),
    Credentials(
        carrier_id="ups",
        build=lambda client, clock: UpsAdapter(
            UpsSettings(client_id=SecretStr("ups-id"), client_secret=SecretStr("ups-secret")),
            client,
            clock=clock,
            sleep=clock.async_sleep,
        ),
        number=UPS_NUMBER,
        tracking=("GET", f"/api/track/v1/details/{UPS_NUMBER}"),
        delivered="track_reply_access_point.json",
        status=TrackingStatus.DELIVERED_TO_LOCKER,
        token_path="/security/v1/oauth/token",
        token_lifetime_s=14399,
    ),
    Credentials(
        carrier_id="dhl",
        build=lambda client, clock: DhlAdapter(
            DhlSettings(api_key=SecretStr("dhl-api-key")),
            client,
            clock=clock,
            sleep=clock.async_sleep,
        ),
        number="00340434292135100186",
        tracking=("GET", "/track/shipments"),
        delivered="track_reply_packstation.json",
        status=TrackingStatus.DELIVERED_TO_LOCKER,
        token_path=None,
    ),
]
# DHL sends a static API key: there is no token to cache, refresh, refuse or misread, so it
# takes part only where a 401 on the tracking call is concerned.
OAUTH = [case for case in CASES if case.token_path is not None]


class Harness:
    """Plays one carrier on FakeCarrier; its adapter reads the shared test clock."""

    def __init__(self, case: Credentials) -> None:
        self.case = case
        self.clock = FakeClock(start=START)
        self.carrier = FakeCarrier()
        self.client = httpx.AsyncClient(transport=self.carrier.transport())
        self.adapter = case.build(self.client, self.clock)

    def token(self, serial: int) -> Reply:
        """The carrier's documented token reply, carrying token number `serial`."""
        body = load_fixture(self.case.carrier_id, "token.json")
        body["access_token"] = f"{self.case.carrier_id}-token-{serial}"
        return reply(200, body)

    def delivered(self) -> Reply:
        return fixture_reply(self.case.carrier_id, self.case.delivered)

    def expired(self) -> Reply:
        """The carrier's documented 401 for a credential it no longer accepts."""
        return fixture_reply(self.case.carrier_id, "error_401.json", 401)

    def token_endpoint_answers(self, *replies: Reply) -> None:
        assert self.case.token_path is not None
        self.carrier.on("POST", self.case.token_path, *replies)

    def tracking_answers(self, *replies: Reply) -> None:
        method, path = self.case.tracking
        self.carrier.on(method, path, *replies)

    async def track(self) -> TrackingDetails:
        return await self.adapter.track(self.case.number)

    @property
    def token_requests(self) -> list[httpx.Request]:
        return [] if self.case.token_path is None else self.carrier.to(self.case.token_path)

    @property
    def tracking_requests(self) -> list[httpx.Request]:
        return self.carrier.to(self.case.tracking[1])

    def bearers(self) -> list[str]:
        return [r.headers["Authorization"] for r in self.tracking_requests]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    built = Harness(request.param)
    async with built.client:
        yield built


# Token endpoints answer 400 for an unknown client or grant (RFC 6749) as well as 401.
REFUSALS: dict[str, Callable[[str], Reply]] = {
    "documented-401": lambda carrier_id: fixture_reply(carrier_id, "error_401.json", 401),
    "oauth-400": lambda carrier_id: reply(400, {"error": "invalid_client"}),
}

oauth_carriers = pytest.mark.parametrize("harness", OAUTH, indirect=True, ids=str)
every_carrier = pytest.mark.parametrize("harness", CASES, indirect=True, ids=str)


@pytest.mark.anyio
class TestOAuthContract:
    @oauth_carriers
    async def test_token_is_cached_until_a_minute_before_it_expires(self, harness: Harness) -> None:
        lifetime = harness.case.token_lifetime_s
        documented = load_fixture(harness.case.carrier_id, "token.json")["expires_in"]
        assert float(documented) == lifetime
        harness.token_endpoint_answers(harness.token(1), harness.token(2))
        harness.tracking_answers(harness.delivered())

        await harness.track()
        harness.clock.advance(lifetime - 61)
        await harness.track()
        harness.clock.advance(1)
        await harness.track()

        carrier_id = harness.case.carrier_id
        assert harness.bearers() == [
            f"Bearer {carrier_id}-token-1",
            f"Bearer {carrier_id}-token-1",
            f"Bearer {carrier_id}-token-2",
        ]
        assert len(harness.token_requests) == 2

    @oauth_carriers
    async def test_expired_token_is_refreshed_once_and_the_call_retried(
        self, harness: Harness
    ) -> None:
        harness.token_endpoint_answers(harness.token(1), harness.token(2))
        harness.tracking_answers(harness.expired(), harness.delivered())

        details = await harness.track()

        assert details.status is harness.case.status
        carrier_id = harness.case.carrier_id
        assert harness.bearers() == [
            f"Bearer {carrier_id}-token-1",
            f"Bearer {carrier_id}-token-2",
        ]
        assert len(harness.token_requests) == 2
        assert harness.clock.sleeps == []

    @every_carrier
    async def test_a_401_that_outlasts_a_fresh_credential_is_an_auth_error(
        self, harness: Harness
    ) -> None:
        refreshable = harness.case.token_path is not None
        if refreshable:
            harness.token_endpoint_answers(harness.token(1), harness.token(2))
        harness.tracking_answers(harness.expired())

        with pytest.raises(CarrierAuthError) as caught:
            await harness.track()

        assert caught.value.carrier == harness.case.carrier_id
        # One fresh token and one retry; a refused API key is final, there is nothing to refresh.
        assert len(harness.tracking_requests) == (2 if refreshable else 1)
        assert len(harness.token_requests) == (2 if refreshable else 0)
        assert len(harness.carrier.requests) == (4 if refreshable else 1)

    @oauth_carriers
    @pytest.mark.parametrize("refusal", REFUSALS.values(), ids=list(REFUSALS))
    async def test_refused_client_credentials_stop_before_any_tracking_call(
        self, harness: Harness, refusal: Callable[[str], Reply]
    ) -> None:
        harness.token_endpoint_answers(refusal(harness.case.carrier_id))

        with pytest.raises(CarrierAuthError) as caught:
            await harness.track()

        assert caught.value.carrier == harness.case.carrier_id
        assert harness.tracking_requests == []

    @oauth_carriers
    @pytest.mark.parametrize(
        "broken",
        [
            reply(200, {"token_type": "Bearer"}),
            reply(200, {"access_token": "", "expires_in": 3599}),
            reply(200, content=b"<html>Service temporarily unavailable</html>"),
        ],
        ids=["no-access-token", "empty-access-token", "html"],
    )
    async def test_malformed_token_reply_is_a_clear_error(
        self, harness: Harness, broken: Reply
    ) -> None:
        harness.token_endpoint_answers(broken)

        with pytest.raises(MalformedCarrierResponse) as caught:
            await harness.track()

        assert harness.case.carrier_id in str(caught.value)
        assert harness.tracking_requests == []
