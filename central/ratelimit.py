"""Per-client request limits kept in process: token buckets, the client's address, the 429."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic

from starlette.requests import Request

from central.errors import ApiError

DEFAULT_MAX_CLIENTS = 10_000
# Browsers may read only the CORS-safelisted response headers unless told otherwise; a page
# called across origins needs to read `Retry-After` to back off.
EXPOSE_RETRY_AFTER = {"Access-Control-Expose-Headers": "Retry-After"}


def client_address(request: Request) -> str:
    """The address a per-client limit counts against: the peer as uvicorn reports it.

    The same rule as `central.ops.auth.client_address` (the sign-in throttle's), kept here for
    areas that must not import `ops`. uvicorn rewrites the peer from `X-Forwarded-For` only for
    the proxies in `LOCKER_TRUSTED_PROXIES` (`central.serving.forwarded_options`), so a client
    cannot pick the address it is counted as; the app itself never reads the header.
    """
    return request.client.host if request.client else "unknown"


class RateLimited(ApiError):
    """429 `rate_limited`: this client is over its limit; `Retry-After` says when to come back."""

    def __init__(self, retry_after_s: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(
            429,
            "rate_limited",
            f"too many requests from this client; try again in {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s), **EXPOSE_RETRY_AFTER, **(headers or {})},
            retry_after_s=retry_after_s,
        )


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # clock reading when `tokens` was last brought up to date


class TokenBuckets:
    """A token bucket per key (a client address): `burst` requests at once, then `rate_per_s`.

    In process and in memory: with several central processes each keeps its own buckets, so a
    client spread over N processes gets up to N times the limit. Memory stays bounded: a bucket
    that has refilled is the same as no bucket and is dropped as soon as it is the least recently
    used one, and past `max_clients` the least recently used bucket goes even if it has not
    refilled (that client starts afresh with a full burst). Safe to call from several threads.

    `clock` gives seconds; it may be a wall clock: a reading that goes back counts as no time.
    """

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate_per_s must be > 0, burst and max_clients at least 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        # Least recently used first: the front is where idle buckets are found.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float | None:
        """Take a token for `key`: None when one was there, else the seconds until one will be."""
        now = self._clock()
        with self._lock:
            self._drop_idle(now)
            bucket = self._buckets.get(key)
            if bucket is None:
                while len(self._buckets) >= self._max_clients:
                    self._buckets.popitem(last=False)
                bucket = self._buckets[key] = _Bucket(self._burst, now)
            else:
                self._buckets.move_to_end(key)
                self._refill(bucket, now)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / self._rate

    def check(self, key: str) -> None:
        """Take a token for `key`, or raise `RateLimited` with a whole number of seconds (≥ 1)."""
        wait_s = self.take(key)
        if wait_s is not None:
            raise RateLimited(max(1, math.ceil(wait_s)))

    def _refill(self, bucket: _Bucket, now: float) -> None:
        elapsed = max(0.0, now - bucket.at)
        bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
        bucket.at = max(bucket.at, now)

    def _drop_idle(self, now: float) -> None:
        """Drop refilled buckets from the least recently used end (amortised O(1) a call)."""
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            if now - oldest.at < (self._burst - oldest.tokens) / self._rate:
                return
            del self._buckets[key]
