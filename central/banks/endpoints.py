"""Carrier API v1: banks, their capacity and the daily courier access code."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from central.banks import repository, service
from central.banks.schemas import BankList, BankOut, CourierCode
from central.context import Ctx
from central.deps import CarrierWorkDep
from central.errors import ApiError, error_responses
from central.models import SizeClass

router = APIRouter(prefix="/v1/banks", tags=["banks"])
BankId = Annotated[str, Path(min_length=1, max_length=64)]


def _parse_near(near: str) -> tuple[float, float]:
    try:
        lat_text, lon_text = near.split(",")
        lat, lon = float(lat_text), float(lon_text)
    except ValueError as exc:
        raise ApiError(422, "invalid_near", "near must be '<lat>,<lon>' in degrees") from exc
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ApiError(422, "invalid_near", "latitude must be within ±90, longitude within ±180")
    return lat, lon


@router.get("", response_model=BankList, responses=error_responses(401, 422))
async def list_banks(
    work: CarrierWorkDep,
    near: Annotated[str | None, Query(max_length=64, examples=["40.7506,-73.9935"])] = None,
    radius_km: Annotated[float, Query(gt=0, le=100)] = 5.0,
    size: SizeClass | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> BankList:
    """Banks in range with free capacity per size class, nearest first.

    With `size`, only banks with a free unit of that class are listed. Without `near`, every
    active bank is listed by id.
    """

    def load(ctx: Ctx) -> list[BankOut]:
        if near is None:
            rows = repository.list_banks(ctx.session, limit=limit)
            capacity = repository.capacity_of(ctx.session, [b.id for b in rows])
            return [service.describe(bank, capacity[bank.id], None) for bank in rows]
        lat, lon = _parse_near(near)
        found = service.banks_near(ctx.session, lat, lon, radius_km)
        return [service.describe(bank, cap, distance) for bank, distance, cap in found]

    items = await work.run(lambda ctx, _carrier: load(ctx))
    if size is not None:
        items = [b for b in items if size in b.capacity and b.capacity[size].free > 0]
    return BankList(items=items[:limit])


@router.get("/{bank_id}", response_model=BankOut, responses=error_responses(401, 404))
async def get_bank(work: CarrierWorkDep, bank_id: BankId) -> BankOut:
    """One bank: address, location, opening hours, policy and capacity per class."""

    def load(ctx: Ctx) -> BankOut:
        bank = service.require_bank(ctx.session, bank_id)
        capacity = repository.capacity_of(ctx.session, [bank.id])[bank.id]
        return service.describe(bank, capacity, None)

    return await work.run(lambda ctx, _carrier: load(ctx))


@router.get(
    "/{bank_id}/courier-code", response_model=CourierCode, responses=error_responses(401, 404)
)
async def courier_code(work: CarrierWorkDep, bank_id: BankId) -> CourierCode:
    """The caller's courier access code for this bank today (the bank's local day).

    Codes are per carrier and bank and change daily; hand them to your couriers. The node knows
    them only as hashes.
    """
    return await work.run(
        lambda ctx, carrier: service.courier_code(
            ctx.keys, carrier.carrier_id, service.require_bank(ctx.session, bank_id), ctx.now
        )
    )
