"""The node API under /v1/node: enrollment, then signed events, feed, command acks, heartbeats."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from central.context import Ctx
from central.errors import ApiError, error_responses
from central.keys import ServiceKeys
from central.limits import declared_length
from central.models import Node, SizeClass
from central.nodes import auth, commands, enrollment, events, feed, health, overflow
from central.nodes import courier_codes as courier_code_hashes
from locker_wire.schemas import (
    CommandAck,
    CommandAckResult,
    EnrollmentRequest,
    EnrollmentResponse,
    EventBatch,
    EventBatchResult,
    FeedResponse,
    Heartbeat,
    HeartbeatResult,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
router = APIRouter(prefix="/v1/node", tags=["nodes"])


def parse_body(model: type[M], body: bytes) -> M:
    """Parse the exact bytes that were signed, with the API's error shape."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors()
        if any(err.get("type") == "json_invalid" for err in errors):
            raise ApiError(400, "invalid_json", "request body is not valid JSON") from exc
        readable = [
            {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err["type"]}
            for err in errors
        ]
        fields = ", ".join(".".join(str(p) for p in err["loc"]) for err in readable)
        raise ApiError(
            422, "validation_error", f"invalid input: {fields}", errors=readable
        ) from exc


class NodeWork:
    """A node request's database work: verify the signature, then do the work, in one thread hop.

    As with the carriers' unit of work, the whole of it runs in a single worker-thread hop so a
    request never holds a connection (or SQLite's write lock) while waiting for a thread. It is
    one transaction, so one commit (one WAL flush) per request: the work runs in a savepoint
    after the signature check, and when it fails only the savepoint is rolled back, so the
    nonce is still committed and a request refused by the work cannot be replayed.
    """

    def __init__(self, request: Request) -> None:
        self._request = request
        self._sessions: sessionmaker[Session] = request.app.state.sessions
        self._keys = request.app.state.keys
        self._clock = request.app.state.clock
        self._banks = request.app.state.bank_directory
        self._seen_keys: auth.SeenKeys | None = getattr(request.app.state, "seen_node_keys", None)
        self._engine: Engine = request.app.state.engine
        self._autocommits = self._engine.dialect.name == "postgresql"
        # A few threads at the database at a time (`central.app`, NODE_SYNC_THREADS): node
        # requests are short and spend most of their time in Python, so more threads would only
        # take turns at the GIL, each turn a context switch; they wait on the loop instead.
        self.limiter: CapacityLimiter = request.app.state.node_limiter

    def _signed_path(self) -> str:
        scope = self._request.scope
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        return f"{path}?{query}" if query else path

    async def run(
        self,
        work: Callable[[Ctx, Node, bytes], T],
        *,
        savepoint: bool = True,
        autocommit: bool = False,
    ) -> T:
        """Authenticate, then `work` in the same transaction, in one worker-thread hop.

        `savepoint=False` is for work that writes nothing before it may refuse: it runs without
        the savepoint's two round trips, and when it fails the transaction is rolled back and
        the nonce recorded again on its own. `autocommit` is for work that needs no
        transaction (the feed reads; a heartbeat's writes are each atomic, idempotent and
        ordered so that any of them done alone is made good by the next heartbeat): on
        PostgreSQL each statement then commits on its own, the nonce at once as a refused
        request needs anyway, and BEGIN's and COMMIT's round trips are saved. On SQLite, whose
        transactions cost no round trip, it runs as `savepoint=False` work.
        """
        # The signature covers the body, so the body is read before it is checked; what can be
        # checked without it comes first: the signature headers, and for a body that may be
        # large, that its node is enrolled. The body read is bounded (central.limits.BodyLimit).
        claim = auth.read_claim(self._request.headers)
        if not _small_body(self._request):
            await anyio.to_thread.run_sync(self._check_node, claim.node_id, limiter=self.limiter)
        body = await self._request.body()
        if autocommit and self._autocommits:
            return await anyio.to_thread.run_sync(
                self._run_autocommit, body, work, limiter=self.limiter
            )
        return await anyio.to_thread.run_sync(
            self._run, body, work, savepoint and not autocommit, None, limiter=self.limiter
        )

    def _run_autocommit(self, body: bytes, work: Callable[[Ctx, Node, bytes], T]) -> T:
        with self._engine.connect() as connection:
            each = connection.execution_options(isolation_level="AUTOCOMMIT")
            return self._run(body, work, False, self._sessions(bind=each), autocommit=True)

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self._sessions

    @property
    def keys(self) -> ServiceKeys:
        keys: ServiceKeys = self._keys
        return keys

    def now(self) -> datetime:
        now: datetime = self._clock()
        return now

    def _check_node(self, node_id: str) -> None:
        with self._sessions() as session:
            auth.claimed_node(session, node_id)

    def _run(
        self,
        body: bytes,
        work: Callable[[Ctx, Node, bytes], T],
        savepoint: bool,
        session: Session | None,
        *,
        autocommit: bool = False,
    ) -> T:
        request = self._request
        with session if session is not None else self._sessions() as session:
            session.begin()
            try:
                node = auth.authenticate(
                    session,
                    request.method,
                    self._signed_path(),
                    request.headers,
                    body,
                    self._clock(),
                    self._seen_keys,
                )
                ctx = Ctx(session=session, keys=self._keys, now=self._clock(), banks=self._banks)
            except BaseException:
                session.rollback()
                raise
            if not savepoint:
                try:
                    result = work(ctx, node, body)
                except BaseException:
                    session.rollback()
                    if not autocommit:  # else the nonce is in already
                        _remember_nonce(session, node.id, request.headers, ctx.now)
                    raise
                session.commit()
                return result
            try:
                with session.begin_nested():
                    result = work(ctx, node, body)
            except BaseException:
                session.commit()  # the nonce, without the work
                raise
            session.commit()
            return result


def _remember_nonce(
    session: Session, node_id: str, headers: Mapping[str, str], now: datetime
) -> None:
    """The nonce of a request whose work failed, so that it cannot be replayed; a failure here
    is logged, and the work's own error is the one the node gets."""
    try:
        with session.begin():
            auth.remember_nonce(session, node_id, headers, now)
    except SQLAlchemyError:
        log.warning(
            "the nonce of a failed request from %s was not recorded", node_id, exc_info=True
        )


SMALL_BODY = 64 * 1024
"""A node's body up to this size is read without a query first: reading it costs less than the
query, and a heartbeat or an ordinary batch is smaller."""


def _small_body(request: Request) -> bool:
    declared = declared_length(request.scope)
    if declared is None:
        return "transfer-encoding" not in request.headers  # none at all: an empty body
    return declared <= SMALL_BODY


async def _node_work(request: Request) -> NodeWork:
    return NodeWork(request)


NodeWorkDep = Annotated[NodeWork, Depends(_node_work)]
_SIGNED_ERRORS = error_responses(400, 401, 404, 422)


# The bodies are read as bytes (they are what was signed), so FastAPI never sees their models
# and OpenAPI is told their shape here: schemas that refer to each other through the document's
# components, where add_body_schemas puts them (a model's own `$defs` would leave its `$ref`s
# pointing at `#/$defs/...` of the document, which is nowhere).
_BODY_REFS, _BODY_SCHEMAS = models_json_schema(
    [
        (model, "validation")
        for model in (EnrollmentRequest, EventBatch, CommandAck, Heartbeat, overflow.NodeRedirect)
    ],
    ref_template="#/components/schemas/{model}",
)


def add_body_schemas(document: dict[str, Any]) -> None:
    """Put the schemas of the bodies read as bytes among an OpenAPI document's components."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in _BODY_SCHEMAS.get("$defs", {}).items():
        if schemas.setdefault(name, schema) != schema:
            raise RuntimeError(f"two different schemas are named {name} in the OpenAPI document")


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    schema = _BODY_REFS[(model, "validation")]
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "/enroll",
    response_model=EnrollmentResponse,
    responses=error_responses(400, 401, 403, 422),
    openapi_extra=_json_body(EnrollmentRequest),
)
async def enroll(request: Request) -> EnrollmentResponse:
    """Register a node for its one-time token's bank (not signed: the token is the proof)."""
    body = parse_body(EnrollmentRequest, await request.body())
    sessions: sessionmaker[Session] = request.app.state.sessions
    keys = request.app.state.keys
    clock = request.app.state.clock

    def work() -> EnrollmentResponse:
        with sessions() as session, session.begin():
            return enrollment.enroll(session, keys, body, clock())

    return await anyio.to_thread.run_sync(work)


@router.post(
    "/events",
    response_model=EventBatchResult,
    responses=_SIGNED_ERRORS,
    openapi_extra=_json_body(EventBatch),
)
async def post_events(work: NodeWorkDep) -> EventBatchResult:
    """Apply a batch of node events, each at most once, in order; answers per event."""
    return await work.run(
        lambda ctx, node, body: events.apply_events(ctx, node, parse_body(EventBatch, body))
    )


_FEED_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_SIGNED_ERRORS,
    304: {
        "description": "Nothing changed since the answer whose tag the node sent as `known` "
        "(with the same cursor): it has it already. No body; the ETag header repeats the tag."
    },
}


@router.get("/feed", response_model=FeedResponse, responses=_FEED_RESPONSES)
async def get_feed(
    request: Request,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
    courier_codes: Annotated[bool, Query(description="include courier code hashes")] = True,
    settings_version: Annotated[
        int | None,
        Query(ge=0, description="the bank settings version the node has; `bank` when it differs"),
    ] = None,
    known: Annotated[
        str | None,
        Query(
            max_length=64,
            description="the ETag of the last answer for this cursor: 304 when it still holds",
        ),
    ] = None,
) -> Response:
    """Reservations changed since the cursor, pending signed commands, courier code hashes,
    and the bank's settings when they differ from the node's `settings_version`.

    Every answer that is the whole of what is new carries an ETag. Asked again with the same
    cursor and that tag as `known` (and the same `limit`, `courier_codes` and
    `settings_version`), central answers 304 with no body when nothing changed since. The
    condition is in the signed query, not in If-None-Match, so that it is signed too."""
    work = NodeWork(request)
    query = feed.FeedQuery(cursor, limit, courier_codes, settings_version, known)
    answer, bank_id = await work.run(
        lambda ctx, node, _body: (feed.feed(ctx, node, query), node.bank_id), autocommit=True
    )
    if isinstance(answer, feed.Unchanged):
        return Response(status_code=304, headers={"ETag": f'"{answer.tag}"'})
    if answer.due:
        # Hashed after the transaction is over, holding no connection; then stored.
        rows = await anyio.to_thread.run_sync(
            courier_code_hashes.hash_codes, work.keys, bank_id, answer.due, work.now()
        )
        made = await anyio.to_thread.run_sync(
            courier_code_hashes.store_codes,
            work.sessions,
            work.keys,
            bank_id,
            rows,
            limiter=work.limiter,
        )
        answer.response.courier_codes = courier_code_hashes.in_due_order(
            [*answer.response.courier_codes, *made]
        )
        answer.due = []
    tag = feed.answer_tag(answer)
    return Response(
        content=answer.response.model_dump_json(),
        media_type="application/json",
        headers={} if tag is None else {"ETag": f'"{tag}"'},
    )


@router.post(
    "/commands/{command_id}/ack",
    response_model=CommandAckResult,
    responses=_SIGNED_ERRORS,
    openapi_extra=_json_body(CommandAck),
)
async def ack_command(command_id: str, work: NodeWorkDep) -> CommandAckResult:
    """Record what the node did with a command; only the command's node may."""
    return await work.run(
        lambda ctx, node, body: commands.ack_command(
            ctx.session, node, command_id, parse_body(CommandAck, body), ctx.now
        )
    )


@router.post(
    "/heartbeat",
    response_model=HeartbeatResult,
    responses=_SIGNED_ERRORS,
    openapi_extra=_json_body(Heartbeat),
)
async def heartbeat(request: Request) -> Response:
    """The node is alive: doors, boards and outbox depth. The answer says whether its feed
    holds news for it (`feed_news`: a command waits, or the feed answer the node says it holds
    is no longer current), for the node to pull at once."""
    limits = health.HealthLimits.from_settings(request.app.state.settings)

    def beat(ctx: Ctx, node: Node, body: bytes) -> HeartbeatResult:
        sent = parse_body(Heartbeat, body)
        result = health.record_heartbeat(ctx.session, node, sent, ctx.now, limits)
        if sent.feed is not None and not result.feed_news:
            result.feed_news = not feed.held_is_current(ctx, node, sent.feed)
        return result

    result = await NodeWork(request).run(beat, autocommit=True)
    return Response(content=result.model_dump_json(), media_type="application/json")


# Overflow: a parcel with no usable door at the node's bank goes to a nearby one
# (`central.nodes.overflow`), asked while the courier waits at the kiosk.


@router.get("/nearby", response_model=overflow.NearbyBanks, responses=_SIGNED_ERRORS)
async def get_nearby(
    work: NodeWorkDep,
    size: SizeClass,
    accessible: Annotated[bool, Query(description="only accessible units count")] = False,
    limit: Annotated[int, Query(ge=1, le=20)] = 5,
) -> overflow.NearbyBanks:
    """The nearest other active banks with a free unit of `size`, within 10 km, nearest first."""
    return await work.run(
        lambda ctx, node, _body: overflow.nearby(ctx, node, size, accessible, limit)
    )


@router.post(
    "/reservations/{reservation_id}/redirect",
    response_model=overflow.NodeRedirected,
    responses=error_responses(400, 401, 404, 409, 422),
    openapi_extra=_json_body(overflow.NodeRedirect),
)
async def redirect_reservation(
    reservation_id: Annotated[str, Path(min_length=1, max_length=64)], work: NodeWorkDep
) -> overflow.NodeRedirected:
    """Move a reservation of this node's bank (404 for any other) to `bank_id`: the courier
    takes the parcel there. The node forgets it itself; asking again answers the same."""
    return await work.run(
        lambda ctx, node, body: overflow.redirect_from_node(
            ctx, node, reservation_id, parse_body(overflow.NodeRedirect, body)
        )
    )
