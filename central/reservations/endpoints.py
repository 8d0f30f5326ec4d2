"""Carrier API v1: reservations."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, HTTPException, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from central.carriers.service import AuthenticatedCarrier
from central.context import Ctx
from central.deps import (
    BearerCredentials,
    CarrierRoute,
    CarrierWorkDep,
    bearer_header,
    serve_carrier,
)
from central.errors import Unprocessable, error_responses
from central.models import Actor
from central.reservations import redirect, transitions, views
from central.reservations.intake import ReservationIntake
from central.reservations.paging import SearchQueryDep
from central.reservations.recipient import set_recipient
from central.reservations.schemas import (
    ExtendRequest,
    ReservationCreate,
    ReservationList,
    ReservationOut,
    ReservationPatch,
)

router = APIRouter(prefix="/v1/reservations", tags=["reservations"], route_class=CarrierRoute)
ReservationId = Annotated[str, Path(min_length=1, max_length=64)]


class _CreateRoute(APIRoute):
    """POST /v1/reservations: documented by FastAPI from `create_reservation`'s signature, served
    by a handler that reads the body and the key itself (`read_create_body`), the key's form
    first (`serve_carrier`).

    This is the busiest route, and FastAPI's per-request dependency and body solving cost about
    as much CPU as the rest of the request; the handler does the same checks and gives the same
    answers for less. A custom route class is FastAPI's own hook for this.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        async def handle(request: Request) -> Response:
            return await serve_carrier(request, _read_and_create)

        return handle


async def _read_and_create(request: Request) -> Response:
    return await _create(request, await read_create_body(request))


async def create_reservation(
    request: Request, _key: BearerCredentials, body: ReservationCreate
) -> Response:
    """Reserve one unit of capacity for a parcel.

    Give `bank_id` or `near`, and `size` or `parcel` dimensions (the smallest class the parcel fits
    in any orientation is used). Repeating the same tracking number while its reservation is active
    returns that reservation with 200. 409 `no_capacity` lists `alternatives` nearby.
    """
    return await _create(request, body)


def add_create_route(app: FastAPI) -> None:
    """POST /v1/reservations on the app's own router, to be called before any router is
    included: the first route tried, matched with one pattern.

    Routes of an included router are matched through FastAPI's included-router layers (each
    router matched, then matched again to be handled), about 5% of a reservation's
    instructions in the web worker; this route is the busiest by far. It is documented as
    before, under the `reservations` tag beside the router's routes.
    """
    app.router.add_api_route(
        "/v1/reservations",
        create_reservation,
        methods=["POST"],
        tags=["reservations"],
        route_class_override=_CreateRoute,
        response_model=ReservationOut,
        status_code=status.HTTP_201_CREATED,
        responses={
            200: {"model": ReservationOut, "description": "an active reservation for this number"},
            **error_responses(400, 401, 404, 409, 422),
        },
    )


async def _create(request: Request, body: ReservationCreate) -> Response:
    intake: ReservationIntake = request.app.state.reservation_intake
    out, created = await intake.create(bearer_header(request.headers.get("authorization")), body)
    # Already a validated model: send its JSON as is rather than have it validated again.
    return Response(
        content=out.model_dump_json(),
        status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        media_type="application/json",
    )


async def read_create_body(request: Request) -> ReservationCreate:
    """The request's `ReservationCreate`, or the same 400/422 FastAPI would give for it."""
    try:
        raw = await _body_of(request)
    except ClientDisconnect:
        raise HTTPException(400, "There was an error parsing the body") from None
    if not raw:
        errors: list[Any] = [{"type": "missing", "loc": ("body",), "msg": "Field required"}]
        raise RequestValidationError(errors)
    if not _is_json(request.headers.get("content-type")):
        errors = [
            {
                "type": "content_type",
                "loc": ("body",),
                "msg": "send the body as JSON, with Content-Type: application/json",
            }
        ]
        raise RequestValidationError(errors)
    try:
        return ReservationCreate.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None


async def _body_of(request: Request) -> bytes:
    """The whole body, read from the server's messages as `Request.body()` reads it, less its
    async generator and its context manager (about 5 µs of the 7 it took here, a request)."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await request.receive()
        if message["type"] != "http.request":  # http.disconnect
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _is_json(content_type: str | None) -> bool:
    """`application/json` or `application/*+json`, with or without parameters (as FastAPI)."""
    if content_type is None:
        return False
    media_type = content_type.partition(";")[0].strip().lower()
    main, _, sub = media_type.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


@router.get("", response_model=ReservationList, responses=error_responses(400, 401, 422))
async def search_reservations(
    work: CarrierWorkDep,
    query: SearchQueryDep,
) -> ReservationList:
    """Your own reservations, newest first; pass `next_cursor` back as `cursor` for more."""
    return await work.run(lambda ctx, carrier: views.search(ctx, carrier.carrier_id, query))


@router.get("/{reservation_id}", response_model=ReservationOut, responses=error_responses(401, 404))
async def get_reservation(work: CarrierWorkDep, reservation_id: ReservationId) -> ReservationOut:
    """The reservation with its full history."""
    return await work.run(lambda ctx, carrier: views.get(ctx, carrier.carrier_id, reservation_id))


@router.delete(
    "/{reservation_id}", response_model=ReservationOut, responses=error_responses(401, 404, 409)
)
async def cancel_reservation(work: CarrierWorkDep, reservation_id: ReservationId) -> ReservationOut:
    """Cancel before deposit (the unit is freed); after deposit the answer is 409."""
    return await work.run(
        lambda ctx, carrier: transitions.cancel(ctx, carrier.carrier_id, reservation_id, None)
    )


@router.post(
    "/{reservation_id}/extend",
    response_model=ReservationOut,
    responses=error_responses(401, 404, 409, 422),
)
async def extend_reservation(
    work: CarrierWorkDep, reservation_id: ReservationId, body: ExtendRequest
) -> ReservationOut:
    """Move the pickup deadline (or, before deposit, the hold) by `hours`, within bank policy."""
    return await work.run(
        lambda ctx, carrier: transitions.extend(
            ctx,
            views.require_own(ctx.session, carrier.carrier_id, reservation_id),
            body.hours,
            actor=Actor.CARRIER,
            actor_id=carrier.carrier_id,
            reason=body.reason,
        )
    )


@router.patch(
    "/{reservation_id}",
    response_model=ReservationOut,
    responses=error_responses(401, 404, 409, 422),
)
async def patch_reservation(
    work: CarrierWorkDep, reservation_id: ReservationId, body: ReservationPatch
) -> ReservationOut:
    """Set or replace the recipient's contact details while the reservation is active.

    `recipient` replaces the details given before as a whole (one with no field removes them);
    the answer does not show them. A closed reservation's details were wiped: 409 `not_active`.
    A body that changes nothing is 422 `nothing_to_change`.
    """

    def patch(ctx: Ctx, carrier: AuthenticatedCarrier) -> ReservationOut:
        # Inside the work, after the key is checked: an unknown key hears nothing of its body.
        if body.recipient is None:
            raise Unprocessable("nothing_to_change", "give a field to change: recipient")
        return set_recipient(ctx, carrier.carrier_id, reservation_id, body.recipient)

    return await work.run(patch)


@router.post(
    "/{reservation_id}/redirect",
    response_model=ReservationOut,
    responses=error_responses(401, 404, 409, 422),
)
async def redirect_reservation(
    work: CarrierWorkDep,
    reservation_id: ReservationId,
    body: Annotated[redirect.RedirectRequest | None, Body()] = None,
) -> ReservationOut:
    """Move a reservation not yet deposited to another bank (overflow).

    Give `bank_id`, or `near` to take the nearest bank with room there; no body (or `{}`) takes
    the nearest with room within 5 km of the bank it is at. The parcel keeps its size class
    (and its dimensions must fit there); the hold becomes the new bank's if that ends later.
    The answer is the moved reservation, with a `redirected` history entry; a
    `reservation.redirected` webhook follows, the recipient is told, and the old bank forgets
    it. Moving it to the bank it is at changes nothing. 409 `not_redirectable` once deposited,
    `no_capacity` with `alternatives` when there is no free unit.
    """
    where = body or redirect.RedirectRequest()
    return await work.run(
        lambda ctx, carrier: redirect.redirect(
            ctx,
            views.require_own(ctx.session, carrier.carrier_id, reservation_id),
            where,
            redirect.Mover(Actor.CARRIER, carrier.carrier_id),
        )
    )
