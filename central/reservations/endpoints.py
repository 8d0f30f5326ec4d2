"""Carrier API v1: reservations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from central.deps import CarrierWorkDep
from central.errors import error_responses
from central.models import Actor, ReservationStatus
from central.reservations import service
from central.reservations.schemas import (
    ExtendRequest,
    ReservationCreate,
    ReservationList,
    ReservationOut,
)

router = APIRouter(prefix="/v1/reservations", tags=["reservations"])
ReservationId = Annotated[str, Path(min_length=1, max_length=64)]


@router.post(
    "",
    response_model=ReservationOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": ReservationOut, "description": "an active reservation for this number"},
        **error_responses(400, 401, 404, 409, 422),
    },
)
async def create_reservation(work: CarrierWorkDep, body: ReservationCreate) -> Response:
    """Reserve one unit of capacity for a parcel.

    Give `bank_id` or `near`, and `size` or `parcel` dimensions (the smallest class the parcel fits
    in any orientation is used). Repeating the same tracking number while its reservation is active
    returns that reservation with 200. 409 `no_capacity` lists `alternatives` nearby.
    """
    out, created = await work.create_reservation(body)
    # Already a validated model: send its JSON as is rather than have it validated again.
    return Response(
        content=out.model_dump_json(),
        status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        media_type="application/json",
    )


@router.get("", response_model=ReservationList, responses=error_responses(400, 401, 422))
async def search_reservations(
    work: CarrierWorkDep,
    tracking_number: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    status: ReservationStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ReservationList:
    """Your own reservations, newest first; pass `next_cursor` back as `cursor` for more."""
    return await work.run(
        lambda ctx, carrier: service.search(
            ctx,
            carrier.carrier_id,
            tracking_number=tracking_number,
            status=status,
            cursor=cursor,
            limit=limit,
        )
    )


@router.get("/{reservation_id}", response_model=ReservationOut, responses=error_responses(401, 404))
async def get_reservation(work: CarrierWorkDep, reservation_id: ReservationId) -> ReservationOut:
    """The reservation with its full history."""
    return await work.run(lambda ctx, carrier: service.get(ctx, carrier.carrier_id, reservation_id))


@router.delete(
    "/{reservation_id}", response_model=ReservationOut, responses=error_responses(401, 404, 409)
)
async def cancel_reservation(work: CarrierWorkDep, reservation_id: ReservationId) -> ReservationOut:
    """Cancel before deposit (the unit is freed); after deposit the answer is 409."""
    return await work.run(
        lambda ctx, carrier: service.cancel(ctx, carrier.carrier_id, reservation_id, None)
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
        lambda ctx, carrier: service.extend(
            ctx,
            service.require_own(ctx.session, carrier.carrier_id, reservation_id),
            body.hours,
            actor=Actor.CARRIER,
            actor_id=carrier.carrier_id,
            reason=body.reason,
        )
    )
