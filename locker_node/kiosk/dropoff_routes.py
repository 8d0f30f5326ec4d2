"""Drop-offs at the kiosk: a sender's code opens a door; a courier collects."""

from __future__ import annotations

from fastapi import FastAPI

from locker_node.flows.dropoff import DropoffView
from locker_node.flows.facade import LockerFlows
from locker_node.kiosk import dropoff_schemas as schemas
from locker_node.kiosk.deps import CourierDep


def add_routes(app: FastAPI, flows: LockerFlows) -> None:
    """Adds this module's routes to the kiosk app."""
    _add_sender_routes(app, flows)
    _add_collection_routes(app, flows)


def _add_sender_routes(app: FastAPI, flows: LockerFlows) -> None:
    @app.post("/api/dropoff", responses={401: {}, 409: {}, 422: {}, 429: {}, 503: {}})
    def dropoff(body: schemas.DropoffCodeIn) -> schemas.DropoffOut:
        return _dropoff_out(flows.start_dropoff(body.code))

    @app.post("/api/dropoff/qr", responses={401: {}, 409: {}, 422: {}, 503: {}})
    def dropoff_qr(body: schemas.DropoffQrIn) -> schemas.DropoffOut:
        return _dropoff_out(flows.start_dropoff_qr(body.token))

    @app.post("/api/dropoff/{dropoff_id}/confirm", responses={404: {}, 409: {}, 422: {}, 503: {}})
    def confirm(dropoff_id: str) -> schemas.DropoffConfirmOut:
        result = flows.confirm_dropoff(dropoff_id)
        return schemas.DropoffConfirmOut(
            dropoff_id=result.dropoff_id, status="deposited", compartment=result.compartment
        )

    @app.post("/api/dropoff/{dropoff_id}/cancel", responses={404: {}, 409: {}, 422: {}, 503: {}})
    def cancel(dropoff_id: str) -> schemas.DropoffCancelOut:
        result = flows.cancel_dropoff(dropoff_id)
        return schemas.DropoffCancelOut(
            dropoff_id=result.dropoff_id,
            status=str(result.status),
            compartment=result.compartment,
            door=result.door,
        )


def _add_collection_routes(app: FastAPI, flows: LockerFlows) -> None:
    @app.get("/api/courier/dropoffs", responses={401: {}})
    def dropoffs(who: CourierDep) -> schemas.CollectListOut:
        return schemas.CollectListOut(
            dropoffs=[
                schemas.CollectItemOut(
                    parcel_id=item.parcel_id,
                    tracking_number=item.tracking_number,
                    compartment=item.compartment,
                    deposited_at=item.deposited_at,
                )
                for item in flows.list_dropoffs(who)
            ]
        )

    @app.post(
        "/api/courier/dropoffs/{parcel_id}/open",
        responses={401: {}, 404: {}, 409: {}, 422: {}, 503: {}},
    )
    def open_collection(parcel_id: str, who: CourierDep) -> schemas.CollectDoorOut:
        result = flows.open_collection(who, parcel_id)
        return schemas.CollectDoorOut(
            parcel_id=parcel_id,
            compartment=result.compartment,
            door="open",
            status="awaiting_collection",
        )

    @app.post(
        "/api/courier/dropoffs/{parcel_id}/confirm",
        responses={401: {}, 404: {}, 409: {}, 422: {}, 503: {}},
    )
    def confirm_collection(parcel_id: str, who: CourierDep) -> schemas.CollectDoorOut:
        result = flows.confirm_collection(who, parcel_id)
        return schemas.CollectDoorOut(
            parcel_id=parcel_id, compartment=result.compartment, door="closed", status="collected"
        )


def _dropoff_out(view: DropoffView) -> schemas.DropoffOut:
    return schemas.DropoffOut(
        dropoff_id=view.dropoff_id,
        compartment=view.compartment,
        door=view.door,
        moved_from=list(view.moved_from),
    )
