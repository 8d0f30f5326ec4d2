"""Shared HTTP machinery: retries with backoff, Retry-After, rate budgets, error translation."""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import anyio
import httpx

from carrier_adapters.base import (
    CarrierAuthError,
    CarrierError,
    CarrierRateLimited,
    CarrierTimeout,
    CarrierUnavailable,
    MalformedCarrierResponse,
)

__all__ = [
    "CarrierHttp",
    "CarrierRequest",
    "Clock",
    "RateBudget",
    "RateWindow",
    "RetryPolicy",
    "Sleep",
    "SystemClock",
    "TokenSource",
    "decode_json",
    "parse_retry_after",
    "try_decode_json",
]

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class Clock(Protocol):
    """Time as the adapters see it; tests pass a fake that never waits."""

    def monotonic(self) -> float: ...

    def now(self) -> datetime:
        """Timezone-aware wall-clock time (for HTTP dates in Retry-After)."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class TokenSource(Protocol):
    """Bearer tokens for a carrier (see carrier_adapters.auth.TokenCache)."""

    async def get(self) -> str: ...

    def invalidate(self, token: str) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    """Attempts per call for 429, 5xx and transport failures (the 401 refresh is extra)."""
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 30.0
    """A longer Retry-After is not slept through: the caller gets CarrierRateLimited at once."""

    def backoff(self, attempt: int) -> float:
        return min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (attempt - 1))


@dataclass(frozen=True, slots=True)
class RateWindow:
    calls: int
    period_s: float


class RateBudget:
    """Sliding-window call budget shared by every request of one adapter.

    A call that would need to wait longer than `max_wait_s` for a free slot is refused with
    CarrierRateLimited (retry_after set), so a poll job is rescheduled instead of blocking.
    """

    def __init__(
        self,
        windows: Sequence[RateWindow],
        *,
        clock: Clock,
        sleep: Sleep,
        max_wait_s: float,
        carrier: str,
    ) -> None:
        self._windows = tuple(windows)
        self._history: tuple[deque[float], ...] = tuple(deque() for _ in self._windows)
        self._clock = clock
        self._sleep = sleep
        self._max_wait_s = max_wait_s
        self._carrier = carrier
        self._lock = anyio.Lock()

    def _wait_needed(self, now: float) -> float:
        wait = 0.0
        for window, history in zip(self._windows, self._history, strict=True):
            while history and history[0] <= now - window.period_s:
                history.popleft()
            if len(history) >= window.calls:
                wait = max(wait, history[len(history) - window.calls] + window.period_s - now)
        return wait

    async def acquire(self) -> None:
        async with self._lock:
            wait = self._wait_needed(self._clock.monotonic())
            if wait > self._max_wait_s:
                raise CarrierRateLimited(
                    f"{self._carrier}: call budget spent, next slot in {wait:.0f} s",
                    carrier=self._carrier,
                    retry_after=math.ceil(wait),
                )
            if wait > 0:
                await self._sleep(wait)
            now = self._clock.monotonic()
            self._wait_needed(now)
            for history in self._history:
                history.append(now)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header holding either delay-seconds or an HTTP date."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def decode_json(response: httpx.Response, carrier: str) -> Any:
    """The JSON body of a carrier response, or MalformedCarrierResponse."""
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedCarrierResponse(
            f"{carrier}: HTTP {response.status_code} body is not JSON", carrier=carrier
        ) from exc


def try_decode_json(response: httpx.Response) -> Any:
    """The JSON body of an error response, or None: gateways answer errors in HTML too."""
    try:
        return json.loads(response.content) if response.content else None
    except (ValueError, UnicodeDecodeError):
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class CarrierRequest:
    """A request as the pure builders in each carrier's mapping module describe it."""

    method: str
    url: str
    # Headers and bodies can hold credentials (Basic auth, client secrets): kept out of repr.
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    params: Mapping[str, str] = field(default_factory=dict)
    json_body: object | None = field(default=None, repr=False)
    form: Mapping[str, str] | None = field(default=None, repr=False)


@dataclass(slots=True)
class CarrierHttp:
    """Sends a carrier's requests through the injected httpx client.

    The one place where httpx exceptions become this package's errors. Adds the bearer token when
    a token source is given, refreshes it once on a 401, retries 429/5xx/transport failures with
    exponential backoff or the carrier's Retry-After, and spends the rate budget per attempt.
    """

    carrier: str
    client: httpx.AsyncClient
    clock: Clock
    sleep: Sleep
    retry: RetryPolicy
    budget: RateBudget | None
    timeout_s: float
    tokens: TokenSource | None = None

    async def send(
        self,
        request: CarrierRequest,
        *,
        authenticated: bool = True,
        budgeted: bool = True,
    ) -> httpx.Response:
        """Send with retries; returns any response below 500 except 401, 403 and 429."""
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            if budgeted and self.budget is not None:
                await self.budget.acquire()
            request_headers = dict(request.headers)
            token: str | None = None
            if authenticated and self.tokens is not None:
                token = await self.tokens.get()
                request_headers["Authorization"] = f"Bearer {token}"
            try:
                response = await self.client.request(
                    request.method,
                    request.url,
                    headers=request_headers,
                    params=request.params or None,
                    json=request.json_body,
                    data=request.form,
                    timeout=self.timeout_s,
                )
            except httpx.TimeoutException as exc:
                if attempt < self.retry.max_attempts:
                    await self._back_off(attempt, None, f"timeout ({type(exc).__name__})")
                    continue
                raise CarrierTimeout(
                    f"{self.carrier}: no answer within {self.timeout_s:g} s "
                    f"after {attempt} attempts",
                    carrier=self.carrier,
                ) from exc
            except httpx.HTTPError as exc:
                if attempt < self.retry.max_attempts:
                    await self._back_off(attempt, None, type(exc).__name__)
                    continue
                raise CarrierUnavailable(
                    f"{self.carrier}: unreachable ({type(exc).__name__})", carrier=self.carrier
                ) from exc

            status = response.status_code
            logger.debug("%s %s %s -> %s", self.carrier, request.method, request.url, status)
            if status == 401 and token is not None and self.tokens is not None and not refreshed:
                # The token may have expired early or been revoked: one fresh token, one retry.
                self.tokens.invalidate(token)
                refreshed = True
                attempt -= 1
                continue
            if status in (401, 403):
                raise CarrierAuthError(
                    f"{self.carrier}: HTTP {status}, credentials or access refused",
                    carrier=self.carrier,
                )
            if status == 429 or status >= 500:
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), self.clock.now()
                )
                too_long = retry_after is not None and retry_after > self.retry.max_retry_after_s
                if attempt >= self.retry.max_attempts or too_long:
                    raise self._exhausted(status, retry_after)
                await self._back_off(attempt, retry_after, f"HTTP {status}")
                continue
            return response

    def _exhausted(self, status: int, retry_after: float | None) -> CarrierError:
        if status == 429:
            return CarrierRateLimited(
                f"{self.carrier}: HTTP 429 Too Many Requests",
                carrier=self.carrier,
                retry_after=retry_after,
            )
        return CarrierUnavailable(f"{self.carrier}: HTTP {status}", carrier=self.carrier)

    async def _back_off(self, attempt: int, retry_after: float | None, reason: str) -> None:
        delay = retry_after if retry_after is not None else self.retry.backoff(attempt)
        logger.info(
            "%s: %s, attempt %d of %d, retrying in %.1f s",
            self.carrier,
            reason,
            attempt,
            self.retry.max_attempts,
            delay,
        )
        await self.sleep(delay)
