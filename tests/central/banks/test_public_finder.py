"""The public locker finder: banks near a point for checkout pages, with no key, cached and
rate-limited per client, callable from any origin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, update
from sqlalchemy.orm import Session, sessionmaker

from central.banks.geo import haversine_km
from central.banks.public import AnswerCache, FinderQuery, PublicFinder
from central.banks.service import NewBank, add_bank
from central.models import Bank, BankCapacity, SizeClass
from central.ratelimit import RateLimited, TokenBuckets
from tests.central.conftest import World, make_bank
from tests.clock import FakeClock

URL = "/v1/public/banks"
NYC_1 = (40.7506, -73.9935)
NEAR_NYC_1 = f"{NYC_1[0]},{NYC_1[1]}"
HOURS = {"mon": [["08:00", "20:00"]], "sat": [["10:00", "14:00"], ["15:00", "18:00"]]}


def find(client: TestClient, near: str = NEAR_NYC_1, **params: Any) -> Any:
    return client.get(URL, params={"near": near, **params})


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [bank["id"] for bank in response.json()["items"]]


def set_free(sessions: sessionmaker[Session], bank_id: str, size: str, available: int) -> None:
    with sessions.begin() as session:
        session.execute(
            update(BankCapacity)
            .where(BankCapacity.bank_id == bank_id, BankCapacity.size == size)
            .values(available=available)
        )


@pytest.fixture
def town(world: World, sessions: sessionmaker[Session], clock: FakeClock) -> World:
    """The world's banks (NYC-1, NYC-2 1.6 km south, BOS-1 far away) and a few more."""
    with sessions.begin() as session:
        make_bank(session, bank_id="NYC-FAR", now=clock(), lat=40.7790, lon=-73.9900)
        make_bank(session, bank_id="NYC-SHUT", now=clock(), lat=40.7510, lon=-73.9930)
        session.get_one(Bank, "NYC-SHUT").status = "closed"
        add_bank(
            session,
            NewBank(
                bank_id="NYC-HOURS",
                name="Hours Bank",
                address="1 Hours Street",
                lat=40.7450,
                lon=-73.9935,
                compartments={SizeClass.M: 1, SizeClass.XL: 2},
                timezone="America/New_York",
                opening_hours=HOURS,
            ),
            clock(),
        )
    return world


@pytest.fixture
def statements(app: FastAPI) -> Iterator[list[str]]:
    """Every SQL statement the app's engine runs from now on."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(app.state.engine, "before_cursor_execute", record)
    yield seen
    event.remove(app.state.engine, "before_cursor_execute", record)


# What it answers ---------------------------------------------------------------------------------


def test_banks_within_the_radius_nearest_first_without_a_key(
    client: TestClient, town: World
) -> None:
    response = find(client, radius_m=2000)

    assert "authorization" not in {name.lower() for name in response.request.headers}
    assert ids(response) == ["NYC-1", "NYC-HOURS", "NYC-2"]
    first = response.json()["items"][0]
    assert first == {
        "id": "NYC-1",
        "name": "Bank NYC-1",
        "address": "NYC-1 Street",
        "location": {"lat": 40.7506, "lon": -73.9935},
        "timezone": "America/New_York",
        "opening_hours": None,
        "distance_m": 0,
        "sizes": {"S": True, "M": True, "L": True},
    }
    nyc_2 = response.json()["items"][2]
    assert nyc_2["distance_m"] == round(haversine_km(*NYC_1, 40.7359, -73.9911) * 1000)
    assert 1600 < nyc_2["distance_m"] < 1700


def test_banks_outside_the_radius_and_inactive_banks_are_left_out(
    client: TestClient, town: World
) -> None:
    assert ids(find(client, radius_m=1000)) == ["NYC-1", "NYC-HOURS"]
    assert ids(find(client, radius_m=100)) == ["NYC-1"]  # NYC-SHUT is 60 m away, and closed
    assert ids(find(client, radius_m=5000)) == ["NYC-1", "NYC-HOURS", "NYC-2", "NYC-FAR"]
    assert ids(find(client, near="0,0", radius_m=50_000)) == []


def test_limit_keeps_the_nearest(client: TestClient, town: World) -> None:
    assert ids(find(client, radius_m=5000, limit=2)) == ["NYC-1", "NYC-HOURS"]


def test_opening_hours_as_stored_and_only_the_classes_the_bank_has(
    client: TestClient, town: World
) -> None:
    hours = find(client).json()["items"][1]

    assert hours["id"] == "NYC-HOURS"
    assert hours["opening_hours"] == HOURS
    assert hours["sizes"] == {"M": True, "XL": True}


def test_a_size_is_false_once_its_last_unit_is_reserved(client: TestClient, town: World) -> None:
    for number in ("ACME-0001", "ACME-0002"):
        body = {"tracking_number": number, "bank_id": "NYC-1", "size": "S"}
        reserved = client.post("/v1/reservations", json=body, headers=town.auth("acme"))
        assert reserved.status_code == 201, reserved.text

    nyc_1 = find(client).json()["items"][0]

    assert nyc_1["sizes"] == {"S": False, "M": True, "L": True}


def test_sizes_follow_capacity_and_no_count_is_shown(
    client: TestClient, town: World, sessions: sessionmaker[Session]
) -> None:
    set_free(sessions, "NYC-HOURS", "XL", 0)
    set_free(sessions, "NYC-1", "M", 1)

    body = find(client, radius_m=5000).json()

    by_id = {bank["id"]: bank["sizes"] for bank in body["items"]}
    assert by_id["NYC-HOURS"] == {"M": True, "XL": False}
    assert by_id["NYC-1"] == {"S": True, "M": True, "L": True}
    numbers = list(_numbers(body))
    assert numbers and {path.rsplit(".", 1)[-1] for path in numbers} == {"distance_m", "lat", "lon"}
    assert not {"total", "free", "available", "capacity"} & set(_keys(body))


def _numbers(node: Any, path: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _numbers(value, f"{path}.{key}")
    elif isinstance(node, list):
        for value in node:
            yield from _numbers(value, path)
    elif isinstance(node, int | float) and not isinstance(node, bool):
        yield path


def _keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keys(value)


def test_any_origin_may_call_it_and_browsers_may_cache_it(client: TestClient, town: World) -> None:
    response = client.get(URL, params={"near": NEAR_NYC_1}, headers={"Origin": "https://shop.test"})

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["cache-control"] == "public, max-age=60"
    # Only this route: the carrier API is not opened to browsers.
    carrier = client.get("/v1/banks", headers={"Origin": "https://shop.test", **town.auth()})
    assert carrier.status_code == 200
    assert "access-control-allow-origin" not in carrier.headers


# Bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "validation_error"),
        ({"near": "abc"}, "invalid_near"),
        ({"near": "1,2,3"}, "invalid_near"),
        ({"near": "91,0"}, "invalid_near"),
        ({"near": "0,181"}, "invalid_near"),
        ({"near": "nan,0"}, "invalid_near"),
        ({"near": "x" * 65}, "validation_error"),
        ({"near": NEAR_NYC_1, "radius_m": 0}, "validation_error"),
        ({"near": NEAR_NYC_1, "radius_m": 50_001}, "validation_error"),
        ({"near": NEAR_NYC_1, "radius_m": "1.5"}, "validation_error"),
        ({"near": NEAR_NYC_1, "limit": 0}, "validation_error"),
        ({"near": NEAR_NYC_1, "limit": 51}, "validation_error"),
    ],
)
def test_bad_input_is_a_422_in_the_error_shape(
    client: TestClient, town: World, params: dict[str, Any], code: str
) -> None:
    response = client.get(URL, params=params)

    assert response.status_code == 422, response.text
    assert response.json()["error"] == code
    assert isinstance(response.json()["detail"], str)
    assert response.headers["access-control-allow-origin"] == "*"  # a page can read why


def test_the_limits_of_the_parameters_are_accepted(client: TestClient, town: World) -> None:
    assert ids(find(client, radius_m=1, limit=1)) == ["NYC-1"]
    assert ids(find(client, radius_m=50_000, limit=50))[:2] == ["NYC-1", "NYC-HOURS"]


# The cache ---------------------------------------------------------------------------------------


def test_an_identical_question_is_answered_without_a_query(
    client: TestClient, town: World, statements: list[str]
) -> None:
    first = find(client)
    assert any(sql.lstrip().upper().startswith("SELECT") for sql in statements)
    statements.clear()

    again = find(client)
    # Within the rounding (4 decimals, ~11 m): the same key.
    nearby = find(client, near="40.75061,-73.99352")

    assert statements == []
    assert again.content == first.content == nearby.content
    find(client, radius_m=2001)
    assert statements  # another radius is another question


def test_a_cached_answer_lasts_30_seconds_of_the_apps_clock(
    client: TestClient, town: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    assert find(client).json()["items"][0]["sizes"]["S"] is True
    set_free(sessions, "NYC-1", "S", 0)

    clock.advance(29.9)
    assert find(client).json()["items"][0]["sizes"]["S"] is True

    clock.advance(0.1)
    assert find(client).json()["items"][0]["sizes"]["S"] is False


def test_the_cache_keeps_the_most_recently_used_answers() -> None:
    clock = FakeClock()
    cache = AnswerCache(clock, max_entries=2)
    loads: list[str] = []

    async def ask(key: str) -> bytes:
        async def load() -> bytes:
            loads.append(key)
            return key.encode()

        return await cache.get(key, load)

    async def main() -> None:
        await ask("a")
        await ask("b")
        await ask("a")  # a hit: "b" is now the least recently used
        await ask("c")
        await ask("a")
        await ask("b")

    anyio.run(main)

    assert loads == ["a", "b", "c", "b"]
    assert len(cache) == 2


def test_requests_that_miss_together_share_one_load() -> None:
    cache = AnswerCache(FakeClock())
    loads = 0

    async def main() -> list[bytes]:
        release = anyio.Event()
        answers: list[bytes] = []

        async def load() -> bytes:
            nonlocal loads
            loads += 1
            await release.wait()
            return b"answer"

        async def ask() -> None:
            answers.append(await cache.get("key", load))

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(ask)
            await anyio.wait_all_tasks_blocked()
            release.set()
        return answers

    assert anyio.run(main) == [b"answer"] * 5
    assert loads == 1


def test_a_failed_shared_load_lets_the_waiting_requests_try_their_own() -> None:
    cache = AnswerCache(FakeClock())
    attempts = 0

    async def main() -> list[bytes]:
        release = anyio.Event()
        answers: list[bytes] = []

        async def load() -> bytes:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                await release.wait()
                raise ConnectionError("database went away")
            return b"answer"

        async def first() -> None:
            with pytest.raises(ConnectionError):
                await cache.get("key", load)

        async def second() -> None:
            answers.append(await cache.get("key", load))

        async with anyio.create_task_group() as group:
            group.start_soon(first)
            await anyio.wait_all_tasks_blocked()
            group.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            release.set()
        return answers

    assert anyio.run(main) == [b"answer"]
    assert attempts == 2


def test_the_key_is_the_rounded_point() -> None:
    assert FinderQuery.rounded(40.750649, -73.993549, 2000, 20) == FinderQuery(
        40.7506, -73.9935, 2000, 20
    )
    assert FinderQuery.rounded(-0.00001, -0.00001, 1, 1) == FinderQuery(0.0, 0.0, 1, 1)
    assert str(FinderQuery.rounded(-0.00001, 0.0, 1, 1).lat) == "0.0"


# The rate limit ----------------------------------------------------------------------------------


def test_past_the_burst_a_client_gets_429_until_its_bucket_refills(
    client: TestClient, town: World, clock: FakeClock
) -> None:
    assert all(find(client).status_code == 200 for _ in range(30))

    refused = find(client)

    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert isinstance(refused.json()["detail"], str)
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["access-control-allow-origin"] == "*"
    assert "retry-after" in refused.headers["access-control-expose-headers"].lower()

    clock.advance(1)
    assert find(client).status_code == 200
    assert find(client).status_code == 429  # one a second: 60 a minute

    clock.advance(30)
    assert all(find(client).status_code == 200 for _ in range(30))
    assert find(client).status_code == 429


def test_bad_requests_count_against_the_limit_too(client: TestClient, town: World) -> None:
    assert all(find(client, near="abc").status_code == 422 for _ in range(30))

    assert find(client).status_code == 429


def test_each_client_address_has_its_own_bucket(
    app: FastAPI, client: TestClient, town: World
) -> None:
    assert all(find(client).status_code == 200 for _ in range(30))
    assert find(client).status_code == 429

    other = TestClient(app, client=("198.51.100.7", 40000))
    assert find(other).status_code == 200
    # The app believes no X-Forwarded-For itself (uvicorn rewrites the client address for
    # trusted proxies only), so a client cannot name another address to get a fresh bucket.
    spoofed = client.get(
        URL, params={"near": NEAR_NYC_1}, headers={"X-Forwarded-For": "203.0.113.9"}
    )
    assert spoofed.status_code == 429


def test_the_limit_and_cache_are_the_apps_own_and_may_be_replaced(
    app: FastAPI, client: TestClient, town: World, clock: FakeClock
) -> None:
    app.state.public_finder = PublicFinder.build(clock, requests_per_minute=6, burst=2)

    assert [find(client).status_code for _ in range(3)] == [200, 200, 429]
    assert find(client).headers["retry-after"] == "10"


def test_a_bucket_allows_the_burst_then_the_rate() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate_per_s=1.0, burst=3, clock=clock.monotonic)

    assert [buckets.take("a") for _ in range(3)] == [None, None, None]
    assert buckets.take("a") == pytest.approx(1.0)
    clock.advance(0.5)
    assert buckets.take("a") == pytest.approx(0.5)
    with pytest.raises(RateLimited) as refused:
        buckets.check("a")
    assert refused.value.status == 429 and refused.value.code == "rate_limited"
    assert refused.value.headers is not None and refused.value.headers["Retry-After"] == "1"
    clock.advance(0.5)
    assert buckets.take("a") is None
    assert buckets.take("b") is None  # another key, another bucket


def test_idle_buckets_are_forgotten_and_the_table_is_capped() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate_per_s=1.0, burst=3, max_clients=3, clock=clock.monotonic)
    for key in ("a", "b", "c"):
        buckets.take(key)
    assert len(buckets) == 3

    buckets.take("d")  # the table is full: the least recently used bucket ("a") goes
    assert len(buckets) == 3
    assert [buckets.take("a") for _ in range(3)] == [None, None, None]  # afresh: a full burst

    clock.advance(1.0)  # c and d ("b" went for "a") have refilled: as good as no bucket
    buckets.take("e")
    assert len(buckets) == 2  # a (not refilled yet) and e


def test_a_clock_that_goes_back_adds_no_tokens() -> None:
    now = [100.0]
    buckets = TokenBuckets(rate_per_s=1.0, burst=1, clock=lambda: now[0])
    assert buckets.take("a") is None

    now[0] = 50.0
    assert buckets.take("a") == pytest.approx(1.0)
    now[0] = 100.5
    assert buckets.take("a") == pytest.approx(0.5)  # time before the last reading is not counted


@pytest.mark.parametrize(
    "arguments",
    [
        {"rate_per_s": 0, "burst": 1},
        {"rate_per_s": 1, "burst": 0},
        {"rate_per_s": 1, "burst": 1, "max_clients": 0},
    ],
)
def test_a_limit_that_allows_nothing_is_refused(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TokenBuckets(**arguments)
