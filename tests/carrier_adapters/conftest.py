"""Fixtures shared by the carrier adapter tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.carrier_adapters.helpers import START, FakeCarrier
from tests.clock import FakeClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_carrier_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings read LOCKER_CARRIER_* variables; a developer's own must not leak into tests.
    for name in list(os.environ):
        if name.startswith("LOCKER_CARRIER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def carrier() -> FakeCarrier:
    return FakeCarrier()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=START)


@pytest.fixture
async def http_client(carrier: FakeCarrier) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=carrier.transport()) as client:
        yield client
