"""Carrier API for drop-offs under /v1/dropoffs."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Path, Request, Response, status

from central.carriers.service import AuthenticatedCarrier
from central.context import Ctx
from central.deps import CarrierRoute, CarrierWorkDep
from central.dropoffs import service
from central.dropoffs.codes import DropoffSecret, draw_secret
from central.dropoffs.schemas import DropoffCreate, DropoffList, DropoffOut
from central.errors import error_responses
from central.keys import ServiceKeys
from central.reservations.paging import SearchQueryDep

router = APIRouter(prefix="/v1/dropoffs", tags=["drop-offs"], route_class=CarrierRoute)
DropoffId = Annotated[str, Path(min_length=1, max_length=64)]


@router.post(
    "",
    response_model=DropoffOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": DropoffOut, "description": "an active drop-off for this number"},
        **error_responses(400, 401, 404, 409, 422),
    },
)
async def create_dropoff(
    request: Request, response: Response, work: CarrierWorkDep, body: DropoffCreate
) -> DropoffOut:
    """Keep a compartment at a bank for a parcel your customer drops off.

    The answer carries `dropoff_code` (10 digits the sender types at the kiosk under "Drop off
    a parcel") and `qr_payload` (what the kiosk's scanner reads instead). With `sender.email` or
    `sender.phone`, and unless you tell your customers yourself, the network sends them the code.
    Give `size` or `parcel` dimensions (the smallest class the parcel fits is used). Repeating
    the tracking number while its drop-off is active answers that drop-off with 200, same code;
    a number of an active delivery is 409 `tracking_number_in_use`. 409 `no_capacity` lists
    `alternatives` nearby.
    """
    keys: ServiceKeys = request.app.state.keys
    # The key is checked first, so that a caller without a good one costs no hashing; then the
    # code is hashed (scrypt takes tens of milliseconds) on a worker thread, outside any
    # transaction, and the drop-off made in the request's unit of work.
    await work.run(lambda ctx, carrier: None)
    secret = await anyio.to_thread.run_sync(draw_secret, keys, body.bank_id)

    def redraw() -> DropoffSecret:
        return draw_secret(keys, body.bank_id)

    def make(ctx: Ctx, carrier: AuthenticatedCarrier) -> service.Made:
        return service.create(ctx, carrier.carrier_id, body, secret, redraw)

    out, made = await work.run(make)
    if not made:
        response.status_code = status.HTTP_200_OK
    return out


@router.get("", response_model=DropoffList, responses=error_responses(400, 401, 422))
async def search_dropoffs(
    work: CarrierWorkDep,
    query: SearchQueryDep,
) -> DropoffList:
    """Your own drop-offs, newest first; pass `next_cursor` back as `cursor` for more."""
    return await work.run(lambda ctx, carrier: service.search(ctx, carrier.carrier_id, query))


@router.get("/{dropoff_id}", response_model=DropoffOut, responses=error_responses(401, 404))
async def get_dropoff(work: CarrierWorkDep, dropoff_id: DropoffId) -> DropoffOut:
    """The drop-off with its full history (and its code until it ends)."""
    return await work.run(lambda ctx, carrier: service.get(ctx, carrier.carrier_id, dropoff_id))


@router.delete("/{dropoff_id}", response_model=DropoffOut, responses=error_responses(401, 404, 409))
async def cancel_dropoff(work: CarrierWorkDep, dropoff_id: DropoffId) -> DropoffOut:
    """Cancel before the parcel is in (the compartment is freed, the code stops working); once
    the sender has dropped it off, 409 `not_cancellable`."""
    return await work.run(lambda ctx, carrier: service.cancel(ctx, carrier.carrier_id, dropoff_id))
