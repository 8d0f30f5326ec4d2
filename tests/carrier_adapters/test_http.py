"""The shared HTTP machinery: Retry-After, backoff, rate budgets, error translation."""

from __future__ import annotations

import logging
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest

from carrier_adapters.base import (
    CarrierAuthError,
    CarrierError,
    CarrierRateLimited,
    CarrierTimeout,
    CarrierUnavailable,
    MalformedCarrierResponse,
)
from carrier_adapters.http import (
    CarrierHttp,
    CarrierRequest,
    RateBudget,
    RateWindow,
    RetryPolicy,
    decode_json,
    parse_retry_after,
)
from tests.carrier_adapters.helpers import (
    FakeCarrier,
    connection_refused,
    reply,
    timeout,
)
from tests.clock import FakeClock

URL = "https://carrier.test/track"
REQUEST = CarrierRequest(method="GET", url=URL)


def _http(
    client: httpx.AsyncClient,
    clock: FakeClock,
    *,
    budget: RateBudget | None = None,
    max_attempts: int = 3,
) -> CarrierHttp:
    return CarrierHttp(
        carrier="acme",
        client=client,
        clock=clock,
        sleep=clock.async_sleep,
        retry=RetryPolicy(max_attempts=max_attempts),
        budget=budget,
        timeout_s=5.0,
    )


class TestRetryAfter:
    def test_delay_seconds(self, clock: FakeClock) -> None:
        assert parse_retry_after("120", clock()) == 120.0

    def test_http_date(self, clock: FakeClock) -> None:
        when = format_datetime(clock() + timedelta(seconds=45), usegmt=True)
        assert parse_retry_after(when, clock()) == 45.0

    def test_http_date_in_the_past_means_now(self, clock: FakeClock) -> None:
        when = format_datetime(clock() - timedelta(minutes=5), usegmt=True)
        assert parse_retry_after(when, clock()) == 0.0

    @pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5e3"])
    def test_unreadable_values_are_ignored(self, clock: FakeClock, value: str | None) -> None:
        assert parse_retry_after(value, clock()) is None


@pytest.mark.anyio
class TestRateBudget:
    async def test_waits_for_a_slot_within_the_allowed_wait(self, clock: FakeClock) -> None:
        budget = RateBudget(
            [RateWindow(2, 10.0)],
            clock=clock,
            sleep=clock.async_sleep,
            max_wait_s=30,
            carrier="acme",
        )
        for _ in range(3):
            await budget.acquire()
        assert clock.sleeps == [10.0]

    async def test_refuses_when_the_wait_is_too_long(self, clock: FakeClock) -> None:
        budget = RateBudget(
            [RateWindow(1, 1.0), RateWindow(3, 86_400.0)],
            clock=clock,
            sleep=clock.async_sleep,
            max_wait_s=5,
            carrier="acme",
        )
        await budget.acquire()
        await budget.acquire()
        await budget.acquire()
        assert clock.sleeps == [1.0, 1.0]
        with pytest.raises(CarrierRateLimited) as caught:
            await budget.acquire()
        assert caught.value.retry_after == 86_400 - 2
        assert clock.sleeps == [1.0, 1.0]

    async def test_slots_free_up_as_the_window_slides(self, clock: FakeClock) -> None:
        budget = RateBudget(
            [RateWindow(60, 3600.0)],
            clock=clock,
            sleep=clock.async_sleep,
            max_wait_s=0,
            carrier="usps",
        )
        for _ in range(60):
            await budget.acquire()
        with pytest.raises(CarrierRateLimited):
            await budget.acquire()
        clock.advance(3600)
        await budget.acquire()
        assert clock.sleeps == []


@pytest.mark.anyio
class TestCarrierHttp:
    async def test_server_errors_are_retried_with_exponential_backoff(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", "/track", reply(503), reply(502), reply(200, {"ok": True}))
        response = await _http(http_client, clock).send(REQUEST)
        assert response.status_code == 200
        assert clock.sleeps == [0.5, 1.0]

    async def test_retry_after_is_honoured(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", "/track", reply(429, headers={"Retry-After": "7"}), reply(200, {}))
        await _http(http_client, clock).send(REQUEST)
        assert clock.sleeps == [7.0]

    async def test_long_retry_after_is_handed_to_the_caller(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", "/track", reply(429, headers={"Retry-After": "3600"}))
        with pytest.raises(CarrierRateLimited) as caught:
            await _http(http_client, clock).send(REQUEST)
        assert caught.value.retry_after == 3600.0
        assert len(carrier.requests) == 1
        assert clock.sleeps == []

    async def test_persistent_429_ends_in_rate_limited(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", "/track", reply(429, headers={"Retry-After": "2"}))
        with pytest.raises(CarrierRateLimited) as caught:
            await _http(http_client, clock).send(REQUEST)
        assert caught.value.retry_after == 2.0
        assert caught.value.carrier == "acme"
        assert len(carrier.requests) == 3

    async def test_persistent_5xx_ends_in_unavailable(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", "/track", reply(500))
        with pytest.raises(CarrierUnavailable) as caught:
            await _http(http_client, clock, max_attempts=2).send(REQUEST)
        assert isinstance(caught.value, ConnectionError)
        assert not isinstance(caught.value, CarrierTimeout)
        assert len(carrier.requests) == 2

    async def test_timeouts_become_carrier_timeout_from_the_httpx_error(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", "/track", timeout())
        with pytest.raises(CarrierTimeout) as caught:
            await _http(http_client, clock).send(REQUEST)
        assert isinstance(caught.value, TimeoutError)
        assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
        assert len(carrier.requests) == 3

    async def test_a_timeout_then_success_is_retried(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", "/track", timeout(), reply(200, {}))
        response = await _http(http_client, clock).send(REQUEST)
        assert response.status_code == 200
        assert clock.sleeps == [0.5]

    async def test_connection_errors_become_unavailable(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", "/track", connection_refused())
        with pytest.raises(CarrierUnavailable) as caught:
            await _http(http_client, clock).send(REQUEST)
        assert isinstance(caught.value.__cause__, httpx.ConnectError)

    @pytest.mark.parametrize("status", [401, 403])
    async def test_refused_access_is_not_retried(
        self,
        carrier: FakeCarrier,
        http_client: httpx.AsyncClient,
        clock: FakeClock,
        status: int,
    ) -> None:
        carrier.on("GET", "/track", reply(status))
        with pytest.raises(CarrierAuthError) as caught:
            await _http(http_client, clock).send(REQUEST)
        assert isinstance(caught.value, PermissionError)
        assert len(carrier.requests) == 1

    async def test_client_errors_are_returned_to_the_carrier_parser(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        carrier.on("GET", "/track", reply(404, {"error": "nope"}))
        response = await _http(http_client, clock).send(REQUEST)
        assert response.status_code == 404

    async def test_every_attempt_spends_the_budget(
        self, carrier: FakeCarrier, http_client: httpx.AsyncClient, clock: FakeClock
    ) -> None:
        budget = RateBudget(
            [RateWindow(2, 60.0)],
            clock=clock,
            sleep=clock.async_sleep,
            max_wait_s=0,
            carrier="acme",
        )
        carrier.on("GET", "/track", reply(503), reply(200, {}))
        await _http(http_client, clock, budget=budget).send(REQUEST)
        with pytest.raises(CarrierRateLimited):
            await _http(http_client, clock, budget=budget).send(REQUEST)
        assert len(carrier.requests) == 2

    async def test_request_credentials_stay_out_of_logs_and_repr(
        self,
        carrier: FakeCarrier,
        http_client: httpx.AsyncClient,
        clock: FakeClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        request = CarrierRequest(
            method="POST",
            url=URL,
            headers={"Authorization": "Basic c2VjcmV0LWlkOnNlY3JldC1rZXk="},
            form={"client_secret": "secret-key"},
        )
        carrier.on("POST", "/track", reply(503), reply(200, {}))
        with caplog.at_level(logging.DEBUG, logger="carrier_adapters"):
            await _http(http_client, clock).send(request)
        assert caplog.records
        for text in (caplog.text, repr(request)):
            assert "secret-key" not in text
            assert "c2VjcmV0LWlkOnNlY3JldC1rZXk=" not in text


def test_decode_json_refuses_non_json() -> None:
    response = httpx.Response(200, content=b"<html>gateway</html>")
    with pytest.raises(MalformedCarrierResponse) as caught:
        decode_json(response, "acme")
    assert isinstance(caught.value, CarrierError)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value.__cause__, ValueError)
