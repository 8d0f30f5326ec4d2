"""The node API under /v1/node: enrollment, then signed events, feed, command acks, heartbeats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from sqlalchemy.orm import Session, sessionmaker

from central.context import Ctx
from central.errors import ApiError, error_responses
from central.limits import declared_length
from central.models import Node, SizeClass
from central.nodes import auth, commands, enrollment, events, feed, health, overflow
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

    def _signed_path(self) -> str:
        scope = self._request.scope
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        return f"{path}?{query}" if query else path

    async def run(self, work: Callable[[Ctx, Node, bytes], T]) -> T:
        # The signature covers the body, so the body is read before it is checked; what can be
        # checked without it comes first: the signature headers, and for a body that may be
        # large, that its node is enrolled. The body read is bounded (central.limits.BodyLimit).
        claim = auth.read_claim(self._request.headers)
        if not _small_body(self._request):
            await anyio.to_thread.run_sync(self._check_node, claim.node_id)
        body = await self._request.body()
        return await anyio.to_thread.run_sync(self._run, body, work)

    def _check_node(self, node_id: str) -> None:
        with self._sessions() as session:
            auth.claimed_node(session, node_id)

    def _run(self, body: bytes, work: Callable[[Ctx, Node, bytes], T]) -> T:
        request = self._request
        with self._sessions() as session:
            session.begin()
            try:
                node = auth.authenticate(
                    session,
                    request.method,
                    self._signed_path(),
                    request.headers,
                    body,
                    self._clock(),
                )
                ctx = Ctx(session=session, keys=self._keys, now=self._clock(), banks=self._banks)
            except BaseException:
                session.rollback()
                raise
            try:
                with session.begin_nested():
                    result = work(ctx, node, body)
            except BaseException:
                session.commit()  # the nonce, without the work
                raise
            session.commit()
            return result


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


@router.get("/feed", response_model=FeedResponse, responses=_SIGNED_ERRORS)
async def get_feed(
    work: NodeWorkDep,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
    courier_codes: Annotated[bool, Query(description="include courier code hashes")] = True,
    settings_version: Annotated[
        int | None,
        Query(ge=0, description="the bank settings version the node has; `bank` when it differs"),
    ] = None,
) -> FeedResponse:
    """Reservations changed since the cursor, pending signed commands, courier code hashes,
    and the bank's settings when they differ from the node's `settings_version`."""
    response, due, bank_id = await work.run(
        lambda ctx, node, _body: (
            *feed.feed(
                ctx,
                node,
                cursor,
                limit,
                courier_codes=courier_codes,
                settings_version=settings_version,
            ),
            node.bank_id,
        )
    )
    # Hashed after the transaction is over, in a hop of its own that holds no connection.
    if due:
        response.courier_codes = await anyio.to_thread.run_sync(
            feed.hash_courier_codes, bank_id, due
        )
    return response


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
async def heartbeat(request: Request, work: NodeWorkDep) -> HeartbeatResult:
    """The node is alive: doors, boards and outbox depth."""
    limits = health.HealthLimits.from_settings(request.app.state.settings)
    return await work.run(
        lambda ctx, node, body: health.record_heartbeat(
            ctx.session, node, parse_body(Heartbeat, body), ctx.now, limits
        )
    )


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
