"""The public locker finder: banks near a point for shops' checkout pages, no key needed.

Checkout pages call it from shoppers' browsers, so it is open to anyone and built to be cheap:

- Answers are cached in process for `CACHE_TTL_S` per rounded query (`FinderQuery`), and one
  database read fills an entry however many requests wait for it; browsers and shared caches
  may keep an answer for `BROWSER_MAX_AGE_S` (`Cache-Control: public`).
- Each client address has a token bucket (`central.ratelimit.TokenBuckets`); over it, 429
  `rate_limited` with `Retry-After`. Buckets and cache are per process: with several central
  processes each keeps its own, so a client may get up to that many times the limit and an
  answer may come from any process's cache.
- Every answer of these routes, errors included, carries `Access-Control-Allow-Origin: *` and
  no credentials are involved. The finder is a GET without custom headers, a CORS "simple
  request": browsers send no preflight for it, so no OPTIONS route is needed.
- Free capacity is shown as a yes/no per size class, never as counts: counts would tell
  competitors and thieves how busy a bank is.
- It reads the read standby when there is one (`central.db.LaggingReads`, the primary when
  there is none or it is down): its answers are cached for half a minute anyway, a few seconds
  of replication lag change nothing, and its traffic, the public's, stays off the primary.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from central.banks import service
from central.banks.endpoints import _parse_near
from central.banks.schemas import Location, PublicBank, PublicBankList
from central.clock import Clock
from central.db import LaggingReads
from central.errors import ApiError, error_responses
from central.models import Bank, BankCapacity, SizeClass
from central.ratelimit import TokenBuckets, client_address

CACHE_TTL_S = 30.0
CACHE_MAX_ENTRIES = 1024
BROWSER_MAX_AGE_S = 60
REQUESTS_PER_MINUTE = 60
BURST = 30
MAX_CLIENTS = 10_000
# 4 decimals of a degree: about 11 m of latitude, less of longitude away from the equator.
COORDINATE_DECIMALS = 4
CACHE_CONTROL = f"public, max-age={BROWSER_MAX_AGE_S}"
CORS_HEADERS = {"Access-Control-Allow-Origin": "*"}


@dataclass(frozen=True, slots=True)
class FinderQuery:
    """A finder question with its point rounded: the cache key, and what is asked of the
    database (so that an answer depends on its key alone; distances are measured from the
    rounded point, a few metres from the one asked about)."""

    lat: float
    lon: float
    radius_m: int
    limit: int

    @classmethod
    def rounded(cls, lat: float, lon: float, radius_m: int, limit: int) -> FinderQuery:
        # `+ 0.0` turns -0.0 into 0.0, so the same point never has two keys.
        return cls(
            round(lat, COORDINATE_DECIMALS) + 0.0,
            round(lon, COORDINATE_DECIMALS) + 0.0,
            radius_m,
            limit,
        )


@dataclass(eq=False, slots=True)
class _Flight:
    """A load in progress that other requests for the same key wait for."""

    done: anyio.Event = field(default_factory=anyio.Event)
    answer: bytes | None = None


class AnswerCache:
    """Rendered answers by key for `ttl_s` of `clock`, the `max_entries` most recently used.

    One load fills an entry: requests that miss while the key is being loaded wait for that
    load rather than run their own. Used from the event loop only (not thread-safe).
    """

    def __init__(
        self, clock: Clock, *, ttl_s: float = CACHE_TTL_S, max_entries: int = CACHE_MAX_ENTRIES
    ) -> None:
        if ttl_s <= 0 or max_entries < 1:
            raise ValueError("ttl_s must be > 0 and max_entries at least 1")
        self._clock = clock
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[datetime, bytes]] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: Hashable, load: Callable[[], Awaitable[bytes]]) -> bytes:
        """The fresh answer for `key`, loading it when there is none."""
        cached = self._fresh(key)
        if cached is not None:
            return cached
        flight = self._flights.get(key)
        if flight is not None:
            await flight.done.wait()
            if flight.answer is not None:
                return flight.answer
            return await self._load(key, load)  # the shared load failed: try on our own
        flight = self._flights[key] = _Flight()
        try:
            flight.answer = await self._load(key, load)
            return flight.answer
        finally:
            del self._flights[key]
            flight.done.set()

    async def _load(self, key: Hashable, load: Callable[[], Awaitable[bytes]]) -> bytes:
        # Aged from before the read, so an entry is never kept past `ttl_s` after its data.
        started = self._clock()
        answer = await load()
        self._entries[key] = (started, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return answer

    def _fresh(self, key: Hashable) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, answer = entry
        age_s = (self._clock() - stored_at).total_seconds()
        if not 0 <= age_s < self._ttl_s:  # a clock set back does not keep an entry forever
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return answer


@dataclass(frozen=True, slots=True)
class PublicFinder:
    """The finder's per-process state: its answer cache and the clients' token buckets."""

    cache: AnswerCache
    buckets: TokenBuckets

    @classmethod
    def build(
        cls,
        clock: Clock,
        *,
        requests_per_minute: float = REQUESTS_PER_MINUTE,
        burst: int = BURST,
        max_clients: int = MAX_CLIENTS,
        ttl_s: float = CACHE_TTL_S,
        max_entries: int = CACHE_MAX_ENTRIES,
    ) -> PublicFinder:
        return cls(
            cache=AnswerCache(clock, ttl_s=ttl_s, max_entries=max_entries),
            buckets=TokenBuckets(
                rate_per_s=requests_per_minute / 60,
                burst=burst,
                max_clients=max_clients,
                clock=lambda: clock().timestamp(),
            ),
        )


def finder_of(app: FastAPI) -> PublicFinder:
    """The app's finder, made on first use with the defaults and the app's clock (a test may
    put one of its own on `app.state.public_finder` first)."""
    finder: PublicFinder | None = getattr(app.state, "public_finder", None)
    if finder is None:
        finder = PublicFinder.build(app.state.clock)
        app.state.public_finder = finder
    return finder


class PublicRoute(APIRoute):
    """A public route: the client's token taken before anything else, and the CORS header on
    every answer. Errors are rendered here by the app's own handlers (same shape as anywhere)
    so that a page on another origin can read them too."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                finder_of(request.app).buckets.check(client_address(request))
                response = await handler(request)
            except (ApiError, RequestValidationError, HTTPException) as exc:
                response = await _rendered(request, exc)
            response.headers.update(CORS_HEADERS)
            return response

        return handle


async def _rendered(request: Request, exc: Exception) -> Response:
    """`exc` as the app's exception handler for it answers it."""
    handlers = request.app.exception_handlers
    for kind in type(exc).__mro__:
        if kind in handlers:
            response = handlers[kind](request, exc)
            if inspect.isawaitable(response):
                response = await response
            if isinstance(response, Response):
                return response
            break
    raise exc


router = APIRouter(prefix="/v1/public", tags=["public"], route_class=PublicRoute)

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "Cache-Control": {
                "description": f"`{CACHE_CONTROL}`",
                "schema": {"type": "string"},
            },
            "Access-Control-Allow-Origin": {"description": "`*`", "schema": {"type": "string"}},
        }
    },
    **error_responses(422),
    429: {
        **error_responses(429)[429],
        "headers": {
            "Retry-After": {
                "description": "seconds to wait before the next request",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    },
}


@router.get("/banks", response_model=PublicBankList, responses=_RESPONSES)
async def find_banks(
    request: Request,
    near: Annotated[
        str,
        Query(
            max_length=64,
            description="the point to search around: `<lat>,<lon>` in degrees",
            examples=["40.7506,-73.9935"],
        ),
    ],
    radius_m: Annotated[int, Query(ge=1, le=50_000, description="search radius in metres")] = 2000,
    limit: Annotated[int, Query(ge=1, le=50, description="at most this many banks")] = 20,
) -> Response:
    """Active locker banks near a point, nearest first, with a yes/no per size class.

    No API key: for shops' checkout pages, called from the shopper's browser (any origin).
    `sizes` has each size class the bank has, `true` when at least one unit of it is free;
    free capacity changes all the time, so a reservation may still find a class full.

    Answers are cached: one may be up to 30 s old when it leaves the server, and browsers and
    shared caches may keep it for 60 s more. The point is rounded to 4 decimals (about 11 m)
    and distances are measured from the rounded point. Each client address may make 60
    requests a minute, 30 at once; past that, 429 `rate_limited` with `Retry-After`.
    """
    lat, lon = _parse_near(near)
    query = FinderQuery.rounded(lat, lon, radius_m, limit)
    state = request.app.state

    async def load() -> bytes:
        return await anyio.to_thread.run_sync(
            read_answer, state.lagging_reads, query, limiter=state.read_limiter
        )

    body = await finder_of(request.app).cache.get(query, load)
    return Response(body, media_type="application/json", headers={"Cache-Control": CACHE_CONTROL})


def read_answer(reads: LaggingReads, query: FinderQuery) -> bytes:
    """The answer to `query`, rendered, read in one transaction (the request owns it)."""
    with reads.transaction() as session:
        found = service.banks_near(session, query.lat, query.lon, query.radius_m / 1000)
        items = [describe_public(bank, capacity, km) for bank, km, capacity in found[: query.limit]]
    return PublicBankList(items=items).model_dump_json().encode()


def describe_public(bank: Bank, capacity: Sequence[BankCapacity], distance_km: float) -> PublicBank:
    """The bank as the public sees it: whether each class it has is free, never how much."""
    return PublicBank(
        id=bank.id,
        name=bank.name,
        address=bank.address,
        location=Location(lat=bank.lat, lon=bank.lon),
        timezone=bank.timezone,
        opening_hours=bank.opening_hours,
        distance_m=round(distance_km * 1000),
        sizes={
            SizeClass(row.size): row.available > 0
            for row in sorted(capacity, key=lambda r: SizeClass(r.size).rank)
            if row.total > 0
        },
    )
