"""Test doubles for the carrier adapters: a fake carrier on httpx.MockTransport, a clock view."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

FIXTURES = Path(__file__).parent / "fixtures"
# Wall time of the carrier tests (with the shared clock's monotonic 10 000 s): the day of the
# UPS and DHL example replies.
START = datetime(2024, 4, 23, 12, 0, tzinfo=UTC)

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
