"""Test doubles for the carrier adapters: a fake carrier on httpx.MockTransport, a fake clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

FIXTURES = Path(__file__).parent / "fixtures"

Reply = Callable[[httpx.Request], httpx.Response]


def load_fixture(carrier: str, name: str) -> Any:
    return json.loads((FIXTURES / carrier / name).read_text(encoding="utf-8"))


def fixture_bytes(carrier: str, name: str) -> bytes:
    return (FIXTURES / carrier / name).read_bytes()


def reply(
    status: int = 200,
    body: object = None,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """A response built afresh for every request that reaches it."""

    def build(request: httpx.Request) -> httpx.Response:
        if content is not None:
            return httpx.Response(status, content=content, headers=headers)
        if body is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return build


def fixture_reply(carrier: str, name: str, status: int = 200, **kwargs: Any) -> Reply:
    return reply(status, load_fixture(carrier, name), **kwargs)


def timeout() -> Reply:
    def build(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    return build


def connection_refused() -> Reply:
    def build(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    return build


class FakeCarrier:
    """Routes (method, path) to queued replies; the last reply of a queue repeats."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *replies: Reply) -> FakeCarrier:
        self.routes[(method, path)] = list(replies)
        return self

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.routes.get((request.method, request.url.path))
        if not queue:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        handler = queue.pop(0) if len(queue) > 1 else queue[0]
        return handler(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def to(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]


def form_of(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.content.decode("ascii"), strict_parsing=True))


def json_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


class FakeClock:
    """Monotonic and wall time that only move when told to, or when something sleeps."""

    def __init__(self, start: datetime = datetime(2024, 4, 23, 12, 0, tzinfo=UTC)) -> None:
        self._monotonic = 10_000.0
        self._wall = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._monotonic

    def now(self) -> datetime:
        return self._wall

    def advance(self, seconds: float) -> None:
        self._monotonic += seconds
        self._wall += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
