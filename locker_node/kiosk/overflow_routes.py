"""Overflow: a parcel with no usable door here goes to a nearby bank, asked of central."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Query

from locker_node.flows.facade import LockerFlows
from locker_node.kiosk import overflow_schemas as schemas
from locker_node.kiosk.deps import CourierDep


def add_routes(app: FastAPI, flows: LockerFlows) -> None:
    """Adds this module's routes to the kiosk app."""

    @app.get("/api/courier/overflow", responses={401: {}, 404: {}, 409: {}, 422: {}, 503: {}})
    def nearby(
        who: CourierDep,
        tracking_number: Annotated[str, Query(max_length=64)],
        size: Annotated[str | None, Query(max_length=2)] = None,
    ) -> schemas.NearbyBanksOut:
        """Banks nearby with a free door for this parcel (503 `central_unreachable`: keep it)."""
        return schemas.NearbyBanksOut(
            banks=[
                schemas.NearbyBankOut(
                    bank_id=bank.bank_id,
                    name=bank.name,
                    address=bank.address,
                    distance_km=bank.distance_km,
                    free=bank.free,
                )
                for bank in flows.nearby_banks(who, tracking_number, size)
            ]
        )

    @app.post("/api/courier/overflow", responses={401: {}, 404: {}, 409: {}, 422: {}, 503: {}})
    def redirect(body: schemas.RedirectIn, who: CourierDep) -> schemas.RedirectedOut:
        """Move the parcel's reservation to that bank: the courier takes the parcel there."""
        moved = flows.redirect(who, body.tracking_number, body.bank_id, body.size)
        return schemas.RedirectedOut(
            bank_id=moved.bank_id, name=moved.name, address=moved.address, size=moved.size
        )
