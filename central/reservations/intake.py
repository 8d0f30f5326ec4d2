"""Create-reservation requests that arrive together are made together (group commit).

Each web worker queues the create requests it receives and makes everything queued so far as
one batch: one statement for the reservations themselves on PostgreSQL
(`repository.reserve_units`), which also checks the keys this process recalled and reads the
carriers' webhook endpoints, instead of one of each per request. At low load a batch is a single
request: nothing waits for others to arrive. On PostgreSQL the batch runs on the worker's event
loop (an asyncio connection in autocommit, kept from one batch to the next while requests
keep coming); on SQLite, in a database thread, in one transaction.

The requests in a batch stay independent:

- Every write of a request (its unit, its reservation and first event, its webhook deliveries)
  is made by one statement, atomic on its own, or not at all; on PostgreSQL no transaction
  spans the batch, so no BEGIN or COMMIT round trip either. A refused request (an `ApiError`:
  bad tracking number, no capacity, unknown bank, revoked key, ...) has written nothing.
- Anything else (a bug, a deadlock the database broke) fails the batch, and each of its
  requests is made again on its own, so one request's failure is never another's.
  On SQLite the batch's transaction is rolled back first; on PostgreSQL a request made before
  the failure stays made and its retry answers with it, as any repeated request is answered.
  A lost connection makes the whole batch again, on a new one.
- Capacity rows are taken in (bank, class) order, so concurrent batches do not deadlock each
  other (a `near` request whose first choice is full tries others afterwards, out of that
  order; should the database break a deadlock, the case above applies).
- An answer is given only once its reservation is committed.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio.to_thread
from anyio import CapacityLimiter
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import Session, sessionmaker

from central.banks.service import BankDirectory
from central.carriers.service import (
    AuthenticatedCarrier,
    VerifiedKeys,
    authenticate,
    record_use,
)
from central.clock import Clock
from central.context import Ctx
from central.errors import ApiError
from central.keys import ServiceKeys
from central.reservations import service
from central.reservations.schemas import ReservationCreate, ReservationOut
from central.webhooks.service import Subscriptions

log = logging.getLogger(__name__)

Created = tuple[ReservationOut, bool]
Outcome = Created | BaseException

# Batches in flight per worker, each holding one connection while it runs. One: the requests
# that arrive while a batch is in the database make the next, and under load a batch's fixed
# cost (a transaction, a round trip, a statement) is shared by more requests. With two the CPU
# went to twice as many smaller transactions, for fewer reservations a second.
BATCHES_IN_FLIGHT = 1
# Enough to carry every request a worker holds under heavy load in one or two transactions,
# small enough that a batch holds its capacity rows only for a few milliseconds.
MAX_BATCH = 64


@dataclass(slots=True)
class _Request:
    authorization: str | None
    body: ReservationCreate
    future: asyncio.Future[Created]


@dataclass(slots=True)
class _Lane:
    """The queue of one event loop (one per worker; tests may run several)."""

    queue: list[_Request] = field(default_factory=list)
    running: int = 0  # batches being made for this loop now
    engine: AsyncEngine | None = None  # PostgreSQL: this loop's asyncio connections
    # PostgreSQL: the connection this loop's batches run on, kept from one batch to the next
    # while there are requests queued.
    connection: AsyncConnection | None = None


class ReservationIntake:
    """Queues create requests and makes them a batch per transaction; see the module docstring."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keys: ServiceKeys,
        clock: Clock,
        banks: BankDirectory,
        limiter: CapacityLimiter,
        *,
        async_engines: Callable[[], AsyncEngine] | None = None,
        concurrency: int = BATCHES_IN_FLIGHT,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._sessions = sessions
        self._keys = keys
        self._clock = clock
        self._banks = banks
        self._limiter = limiter
        # PostgreSQL: batches run on the event loop itself (SQLAlchemy's asyncio sessions run
        # the same service code in a greenlet), so a worker has no thread to hand each batch to
        # and back, and its requests do not contend with a database thread for the GIL.
        self._async_engines = async_engines
        self._concurrency = concurrency
        self._max_batch = max_batch
        self._lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lane] = (
            weakref.WeakKeyDictionary()
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._verified = VerifiedKeys()
        self._endpoints: dict[str, list[tuple[str, list[str]]]] = {}

    async def create(self, authorization: str | None, body: ReservationCreate) -> Created:
        """The reservation for `body` and whether it was made now, once it is committed."""
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            lane = self._lanes[loop] = _Lane()
        future: asyncio.Future[Created] = loop.create_future()
        lane.queue.append(_Request(authorization, body, future))
        if lane.running < self._concurrency:
            lane.running += 1
            task = loop.create_task(self._drain(lane))
            self._tasks.add(task)  # a running task must be referenced, or it may be collected
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self, lane: _Lane) -> None:
        try:
            while lane.queue:
                # Let the requests already read from the sockets reach the queue first: they
                # join this batch instead of waiting for the next (a loop turn, not a delay).
                for _ in range(2):
                    await asyncio.sleep(0)
                batch = lane.queue[: self._max_batch]
                del lane.queue[: self._max_batch]
                try:
                    outcomes = await self._make(lane, batch)
                except BaseException as exc:  # the loop is going away: nobody is left waiting
                    _settle(batch, [exc] * len(batch))
                    raise
                _settle(batch, outcomes)
        finally:
            lane.running -= 1
            if lane.running == 0:
                # Nothing left to make: the connection goes back to the pool until the next
                # request, so that none is left checked out by a loop that ends meanwhile.
                await _release(lane)

    async def aclose(self) -> None:
        """Close this event loop's database connections (on application shutdown)."""
        lane = self._lanes.pop(asyncio.get_running_loop(), None)
        if lane is not None:
            await _release(lane)
            if lane.engine is not None:
                await lane.engine.dispose()

    async def _make(
        self, lane: _Lane, batch: list[_Request], *, reconnected: bool = False
    ) -> list[Outcome]:
        """The whole batch (PostgreSQL: in autocommit; SQLite: in one transaction) or, should
        that fail, each request alone."""
        try:
            if self._async_engines is not None:
                # Autocommit: each of the batch's writes is one statement, atomic on its own
                # (see `repository.reserve_unit`); no BEGIN or COMMIT round trips.
                connection = await self._connection(lane)
                return await connection.run_sync(self._make_on, batch)
            return await anyio.to_thread.run_sync(
                self._make_in_thread, batch, limiter=self._limiter
            )
        except BaseException as exc:
            # Whatever failed, the next batch starts on a connection from the pool: one that
            # was lost is not given out again, and one that was not is the same connection.
            await _release(lane)
            if not isinstance(exc, Exception):  # cancelled: the loop is going away
                raise
            if isinstance(exc, DBAPIError) and exc.connection_invalidated and not reconnected:
                # The connection was lost (a database restart, an idle timeout) and the pool
                # has let it go. Connections are not pinged before each batch, which would cost
                # a round trip a batch; the batch is made again instead. Should a lost statement
                # have landed, each request finds its reservation as a twin and answers with it.
                log.warning("a reservation batch lost its database connection; making it again")
                return await self._make(lane, batch, reconnected=True)
            if len(batch) == 1:
                return [exc]
            log.warning(
                "a batch of %d reservations failed (%s: %s); making each on its own",
                len(batch),
                type(exc).__name__,
                exc,
            )
            return [(await self._make(lane, [request], reconnected=True))[0] for request in batch]

    async def _connection(self, lane: _Lane) -> AsyncConnection:
        """The lane's connection: taken from the pool for a batch and kept for the next ones
        while requests keep coming (`_drain` gives it back once the queue is empty).

        Checked out and given back for every batch (a session of its own each time), it cost
        the web worker about 90 µs a batch here: the pool's checkout and return, its reset,
        the asyncio session around the sync one.
        """
        if lane.connection is None:
            if lane.engine is None and self._async_engines is not None:
                lane.engine = self._async_engines()
            if lane.engine is None:
                raise RuntimeError("batches on an event loop need an asyncio engine")
            lane.connection = await lane.engine.connect()
        return lane.connection

    def _make_on(self, connection: Connection, batch: list[_Request]) -> list[Outcome]:
        with Session(bind=connection, autoflush=False, expire_on_commit=False) as session:
            return self._make_in(session, batch)

    def _make_in_thread(self, batch: list[_Request]) -> list[Outcome]:
        with self._sessions() as session, session.begin():
            return self._make_in(session, batch)

    def _make_in(self, session: Session, batch: list[_Request]) -> list[Outcome]:
        """The batch's work inside its transaction; the caller commits."""
        outcomes: list[Outcome | None] = [None] * len(batch)
        # The carriers' endpoints as the last batches saw them: they only decide whether a new
        # reservation's notice is sealed beforehand, and the statement checks them again.
        subscriptions = Subscriptions()
        subscriptions.know(self._endpoints)
        ctx = Ctx(
            session=session,
            keys=self._keys,
            now=self._clock(),
            banks=self._banks,
            subscriptions=subscriptions,
        )
        # Keys first and in order, then capacity in (bank, class) order: the same lock order
        # in every batch (a key's last use is written once a minute).
        carriers = self._authenticate_all(ctx, batch)
        admitted: list[tuple[int, service.CreateRequest]] = []
        for index, request in enumerate(batch):
            carrier = carriers[request.authorization]
            if isinstance(carrier, ApiError):  # each request raises its own exception
                outcomes[index] = ApiError(
                    carrier.status,
                    carrier.code,
                    carrier.detail,
                    headers=carrier.headers,
                    **carrier.extra,
                )
            else:
                authenticated, checked = carrier
                unchecked = None if checked else authenticated.key_id
                admitted.append(
                    (
                        index,
                        service.CreateRequest(authenticated.carrier_id, request.body, unchecked),
                    )
                )
        made = service.create_many(ctx, [create for _, create in admitted])
        self._endpoints.update(subscriptions.known())
        for (index, create), outcome in zip(admitted, made, strict=True):
            outcomes[index] = outcome
            revoked = isinstance(outcome, ApiError) and outcome.code == "api_key_revoked"
            if revoked and create.unchecked_key is not None:
                self._verified.forget([create.unchecked_key])
        return service.all_answered(outcomes)

    def _authenticate_all(
        self, ctx: Ctx, batch: list[_Request]
    ) -> dict[str | None, tuple[AuthenticatedCarrier, bool] | ApiError]:
        """Each header's carrier, and whether its key has been checked in this transaction.

        A key this process has verified before is recalled without a query; whether it has
        been revoked since is checked with the batch's reservations (`service.create_many`).
        """
        carriers: dict[str | None, tuple[AuthenticatedCarrier, bool] | ApiError] = {}
        for header in sorted({r.authorization for r in batch}, key=lambda h: h or ""):
            known = self._verified.recall(header)
            if known is not None:
                record_use(ctx.session, known, ctx.now)
                carriers[header] = (known, False)
                continue
            try:
                carrier = authenticate(ctx.session, header, ctx.now)
            except ApiError as refused:
                carriers[header] = refused
            else:
                self._verified.remember(header, carrier)
                carriers[header] = (carrier, True)
        return carriers


async def _release(lane: _Lane) -> None:
    """Give the lane's connection back to the pool (the pool drops one that was lost)."""
    connection, lane.connection = lane.connection, None
    if connection is None:
        return
    try:
        await connection.close()
    except Exception as exc:  # a connection that cannot close is let go all the same
        log.warning("a reservation batch connection did not close cleanly: %s", exc)


def _settle(batch: list[_Request], outcomes: list[Outcome]) -> None:
    for request, outcome in zip(batch, outcomes, strict=True):
        if request.future.done():  # the client went away; its reservation stands
            continue
        if isinstance(outcome, BaseException):
            request.future.set_exception(outcome)
        else:
            request.future.set_result(outcome)
