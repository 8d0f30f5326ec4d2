"""Polling the carriers for reserved parcels, within each carrier's rate budget."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import anyio.to_thread
from sqlalchemy.orm import Session, sessionmaker

from carrier_adapters.base import (
    Capability,
    CarrierAdapter,
    CarrierAuthError,
    CarrierError,
    CarrierRateLimited,
    CarrierUnavailable,
    TrackingDetails,
)
from carrier_adapters.tracking_numbers import normalize_tracking_number
from central.clock import Clock
from central.context import Ctx
from central.errors import ApiError
from central.keys import ServiceKeys
from central.tracking import repository, service

log = logging.getLogger(__name__)
T = TypeVar("T")

PER_CARRIER_LIMIT = 200
"""Reservations asked about per carrier and run; the rest wait for the next run, oldest first."""
RECHECK_AFTER = timedelta(minutes=15)
"""Parcels rarely move faster than this, and budgets such as DHL's 250 calls a day are small."""


class EventLoopThread:
    """One event loop in a daemon thread, where all of this process's carrier I/O runs.

    The adapters keep one httpx.AsyncClient, token caches and rate budgets for the life of the
    process, and an AsyncClient's pooled connections belong to the loop they were opened in: a
    fresh `asyncio.run` per job would hand the next run connections of a closed loop
    (encode/httpx#2473). Scheduler threads submit work here and wait for the result.
    """

    def __init__(self, name: str = "carrier-io") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, work: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await work()

        return asyncio.run_coroutine_threadsafe(call(), self._started()).result()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                # A daemon, so that a process that never calls close() still exits.
                thread = threading.Thread(
                    target=self._serve, args=(loop,), name=self._name, daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def close(self, timeout: float = 30.0) -> None:
        """Cancel what is running (its callers get CancelledError) and stop the loop."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def cancel_others() -> None:
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_others(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)


@dataclass(slots=True)
class CarrierPoll:
    """What one run did for one carrier."""

    checked: int = 0
    """Reservations the carrier answered for (tracking details or "not found")."""
    new_events: int = 0
    cancelled: int = 0
    stopped: str | None = None
    """Why the run stopped early for this carrier: rate_limited, paused, auth, unavailable."""


@dataclass(frozen=True, slots=True)
class _Due:
    reservation_id: str
    tracking_number: str


class TrackingPoller:
    """Asks each carrier about its reserved parcels; records what it says.

    Carriers are polled side by side, each through its own batches in turn. Database work runs
    in short transactions in worker threads, never around an HTTP call. A carrier that says
    "too many requests", or whose rate budget is spent, is left alone for the rest of the run
    and until its retry-after has passed; the run itself never fails for a carrier's error.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keys: ServiceKeys,
        clock: Clock,
        adapters: Mapping[str, CarrierAdapter],
        *,
        per_carrier_limit: int = PER_CARRIER_LIMIT,
        recheck_after: timedelta = RECHECK_AFTER,
    ) -> None:
        self._sessions = sessions
        self._keys = keys
        self._clock = clock
        self._adapters = {
            carrier_id: adapter
            for carrier_id, adapter in adapters.items()
            if Capability.TRACKING in adapter.capabilities
        }
        self._per_carrier_limit = per_carrier_limit
        self._recheck_after = recheck_after
        self._paused_until: dict[str, datetime] = {}

    async def poll(self) -> dict[str, CarrierPoll]:
        """One run over every carrier with an adapter; returns what happened per carrier."""
        report = {carrier_id: CarrierPoll() for carrier_id in self._adapters}
        now = self._clock()
        for carrier_id, until in list(self._paused_until.items()):
            if now >= until:
                del self._paused_until[carrier_id]
            else:
                report[carrier_id].stopped = "paused"
        active = [c for c in self._adapters if c not in self._paused_until]
        due = await anyio.to_thread.run_sync(self._due, active)
        async with anyio.create_task_group() as group:
            for carrier_id in active:
                if due[carrier_id]:
                    group.start_soon(self._poll_carrier, carrier_id, due[carrier_id], report)
        return report

    def _due(self, carrier_ids: Sequence[str]) -> dict[str, list[_Due]]:
        now = self._clock()
        with self._sessions() as session, session.begin():
            return {
                carrier_id: [
                    _Due(rid, number)
                    for rid, number in repository.due_for_poll(
                        session,
                        carrier_id,
                        checked_before=now - self._recheck_after,
                        limit=self._per_carrier_limit,
                    )
                ]
                for carrier_id in carrier_ids
            }

    async def _poll_carrier(
        self, carrier_id: str, due: list[_Due], report: dict[str, CarrierPoll]
    ) -> None:
        adapter = self._adapters[carrier_id]
        outcome = report[carrier_id]
        # Without BATCH_TRACKING, track_many makes one call per number and a rate limit halfway
        # through would lose the answers already paid for: ask one number at a time instead.
        size = (
            max(1, adapter.max_batch_size)
            if Capability.BATCH_TRACKING in adapter.capabilities
            else 1
        )
        for start in range(0, len(due), size):
            chunk = due[start : start + size]
            try:
                results = await adapter.track_many([d.tracking_number for d in chunk])
            except CarrierRateLimited as exc:
                if exc.retry_after:
                    self._paused_until[carrier_id] = self._clock() + timedelta(
                        seconds=exc.retry_after
                    )
                log.warning(
                    "tracking poll of %s stopped: rate limited, retry after %s s (%d left)",
                    carrier_id,
                    exc.retry_after,
                    len(due) - start,
                )
                outcome.stopped = "rate_limited"
                return
            except (CarrierAuthError, CarrierUnavailable) as exc:
                log.warning("tracking poll of %s stopped: %s", carrier_id, exc)
                outcome.stopped = "auth" if isinstance(exc, CarrierAuthError) else "unavailable"
                return
            except CarrierError as exc:
                # Something about these numbers: count them as checked, so that they go to the
                # back of the queue instead of blocking every later run.
                log.warning("tracking poll of %s: a batch failed: %s", carrier_id, exc)
                await anyio.to_thread.run_sync(self._mark_checked, chunk)
                continue
            await anyio.to_thread.run_sync(self._record, chunk, results, outcome)

    def _mark_checked(self, chunk: Sequence[_Due]) -> None:
        with self._sessions() as session, session.begin():
            repository.mark_checked(session, [d.reservation_id for d in chunk], self._clock())

    def _record(
        self,
        chunk: Sequence[_Due],
        results: Mapping[str, TrackingDetails | CarrierError],
        outcome: CarrierPoll,
    ) -> None:
        unanswered: list[_Due] = []
        for item in chunk:
            result = results.get(normalize_tracking_number(item.tracking_number))
            if not isinstance(result, TrackingDetails):
                unanswered.append(item)  # not found (yet) or refused: asked all the same
                continue
            # One transaction per reservation: a cancellation that loses a race with a deposit
            # must not take the other parcels' events with it.
            try:
                with self._sessions() as session, session.begin():
                    ctx = Ctx(session=session, keys=self._keys, now=self._clock())
                    applied = service.record_poll(ctx, item.reservation_id, result)
            except ApiError as exc:
                log.warning("tracking of %s not applied: %s", item.reservation_id, exc.detail)
                continue
            outcome.checked += 1
            if applied is not None:
                outcome.new_events += applied.new_events
                outcome.cancelled += int(applied.cancelled)
        if unanswered:
            self._mark_checked(unanswered)
            outcome.checked += len(unanswered)
