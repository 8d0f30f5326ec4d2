"""Node events typed once: what the node records, and exactly what of it reaches central."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from locker_wire import events
from locker_wire.schemas import (
    CodeFailedData,
    CodeReissuedData,
    CompartmentEventData,
    DepositedData,
    ReservationEventData,
)

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
PARCEL = {
    "reservation_id": "rsv_1",
    "parcel_id": "p1",
    "carrier_id": "acme",
    "tracking_number": "ACME123",
    "compartment": "A01",
}


def test_a_pickup_tells_central_only_the_reservation() -> None:
    event = events.ParcelPickedUp(**PARCEL, picked_up_at=AT, via="qr")

    wire = event.wire_data()

    assert wire == ReservationEventData(reservation_id="rsv_1")


def deposited(**changes: object) -> events.ParcelDeposited:
    fields: dict[str, object] = {
        **PARCEL,
        "walk_up": False,
        "reserved_size": "S",
        "compartment_size": "M",
        "deposited_at": AT,
        "pickup_deadline": AT,
        "sealed_pickup_code": "sealed-code",
        "sealed_qr_payload": "sealed-qr",
    }
    return events.ParcelDeposited.model_validate(fields | changes)


def test_a_deposit_tells_central_its_compartment_and_sealed_secrets_only() -> None:
    wire = deposited().wire_data()

    assert isinstance(wire, DepositedData)
    # Exactly the shape of earlier versions: a central not yet upgraded still takes it.
    assert wire.model_dump(mode="json") == {
        "reservation_id": "rsv_1",
        "compartment": "A01",
        "sealed_pickup_code": "sealed-code",
        "sealed_qr_payload": "sealed-qr",
    }


def test_a_walk_up_deposit_tells_central_what_to_make_the_reservation_of() -> None:
    wire = deposited(reservation_id="walkup-0123456789abcdef01234567", walk_up=True).wire_data()

    assert isinstance(wire, DepositedData)
    assert wire.model_dump(mode="json") == {
        "reservation_id": "walkup-0123456789abcdef01234567",
        "compartment": "A01",
        "sealed_pickup_code": "sealed-code",
        "sealed_qr_payload": "sealed-qr",
        "walk_up": True,
        "carrier_id": "acme",
        "tracking_number": "ACME123",
        "reserved_size": "S",
    }
    # What central reads back from the JSON is the same model.
    assert DepositedData.model_validate_json(wire.model_dump_json()) == wire


def test_a_reissue_travels_as_before_for_a_walk_up_parcel_too() -> None:
    event = events.ParcelCodeReissued(
        **{**PARCEL, "reservation_id": "walkup-0123456789abcdef01234567"},
        pickup_deadline=AT,
        reissued_at=AT,
        command_id="cmd_1",
        sealed_pickup_code="sealed-code",
        sealed_qr_payload="sealed-qr",
    )

    wire = event.wire_data()

    assert isinstance(wire, CodeReissuedData) and not wire.walk_up
    assert wire.model_dump(mode="json") == {
        "reservation_id": "walkup-0123456789abcdef01234567",
        "compartment": "A01",
        "sealed_pickup_code": "sealed-code",
        "sealed_qr_payload": "sealed-qr",
        "command_id": "cmd_1",
    }


@pytest.mark.parametrize(
    ("event", "detail"),
    [
        (events.CompartmentOutOfService(compartment="B02", reason="jammed"), {"reason": "jammed"}),
        (events.CompartmentInService(compartment="B02"), None),
        (events.DoorForcedOpen(compartment="B02"), None),
        (events.DoorLeftOpen(compartment="B02", open_for_s=61.5), {"open_for_s": 61.5}),
    ],
)
def test_compartment_events_carry_what_else_they_know_as_detail(
    event: events.NodeEventModel, detail: dict[str, object] | None
) -> None:
    assert event.wire_data() == CompartmentEventData(compartment="B02", detail=detail)


@pytest.mark.parametrize(
    "event",
    [
        events.ParcelExpired(**PARCEL, expired_at=AT),
        events.BoardUnreachable(board="main", detail="no answer"),
    ],
)
def test_events_central_has_no_type_for_stay_on_the_node(event: events.NodeEventModel) -> None:
    assert event.wire_data() is None


def test_kiosk_usage_events_travel_as_recorded_in_the_model_central_checks() -> None:
    event = events.KioskCodeFailed(kind="pickup", attempts_left=3)

    assert event.wire_data() is event
    assert CodeFailedData.model_validate(event.model_dump()) == event


def test_every_type_parses_back_from_what_the_store_keeps() -> None:
    recorded = [
        events.ParcelPickedUp(**PARCEL, picked_up_at=AT, via="code"),
        events.ParcelReturned(**PARCEL, returned_at=AT),
        events.KioskSession(
            carrier_id="acme", started_at=AT, duration_s=5, deposits=1, ended_by="idle"
        ),
    ]
    for event in recorded:
        stored = event.model_dump(mode="json")
        assert events.parse_event(event.event_type, stored) == event
    assert set(events.EVENT_MODELS) >= {"parcel.deposited", "kiosk.session", "board.unreachable"}


def test_an_event_recorded_by_an_earlier_node_version_still_parses() -> None:
    # Before events were typed, timestamps were written with isoformat() and `+00:00`.
    stored = {**PARCEL, "picked_up_at": AT.isoformat(), "via": "code"}

    event = events.parse_event("parcel.picked_up", stored)

    assert isinstance(event, events.ParcelPickedUp) and event.picked_up_at == AT


def test_unknown_types_and_damaged_data_are_refused() -> None:
    with pytest.raises(KeyError):
        events.parse_event("parcel.teleported", {})
    with pytest.raises(ValidationError):
        events.parse_event("parcel.picked_up", {"reservation_id": "rsv_1"})
    with pytest.raises(ValidationError):
        events.KioskCodeFailed(kind="pickup", attempts_left=-1)
