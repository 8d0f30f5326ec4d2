"""The shared wire shapes refuse what neither side should accept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from locker_wire.schemas import (
    CodeReissuedData,
    Command,
    DepositedData,
    EventBatch,
    Heartbeat,
    NodeEvent,
)


def test_event_batches_are_capped_at_500() -> None:
    event = {"id": str(uuid.uuid4()), "type": "door.fault", "occurred_at": "2026-03-02T15:00:00Z"}
    assert len(EventBatch.model_validate({"events": [event] * 500}).events) == 500
    with pytest.raises(ValidationError):
        EventBatch.model_validate({"events": [event] * 501})


def test_events_need_a_uuid_and_an_aware_time() -> None:
    with pytest.raises(ValidationError):
        NodeEvent.model_validate({"id": "1", "type": "x", "occurred_at": "2026-03-02T15:00:00Z"})
    with pytest.raises(ValidationError):
        NodeEvent.model_validate(
            {"id": str(uuid.uuid4()), "type": "x", "occurred_at": "2026-03-02T15:00:00"}
        )


def test_heartbeat_board_states_are_ok_or_error() -> None:
    Heartbeat.model_validate({"boards": {"main": "ok"}, "outbox_depth": 0, "version": "1"})
    with pytest.raises(ValidationError):
        Heartbeat.model_validate({"boards": {"main": "meh"}, "outbox_depth": 0, "version": "1"})


def test_a_command_gives_back_its_signed_fields() -> None:
    command = Command(
        id="c",
        node_id="n",
        bank_id="b",
        type="open_compartment",
        payload={},
        issued_at=int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()),
        expires_at=1,
        signature="s",
    )
    assert set(command.signed_fields()) == {
        "id",
        "node_id",
        "bank_id",
        "type",
        "payload",
        "issued_at",
        "expires_at",
    }


# A deposit as nodes sent it before walk-ups reached central.
OLD_DEPOSIT = {
    "reservation_id": "rsv_0123456789abcdef0123",
    "compartment": "A01",
    "sealed_pickup_code": "sealed-code",
    "sealed_qr_payload": "sealed-qr",
}
WALK_UP = {
    **OLD_DEPOSIT,
    "reservation_id": "walkup-0123456789abcdef01234567",
    "walk_up": True,
    "carrier_id": "acme",
    "tracking_number": "ACME123",
    "reserved_size": "M",
}


@pytest.mark.parametrize("model", [DepositedData, CodeReissuedData])
def test_a_deposit_of_the_earlier_shape_still_validates(model: type[DepositedData]) -> None:
    data = model.model_validate(OLD_DEPOSIT)

    assert not data.walk_up
    assert (data.carrier_id, data.tracking_number, data.reserved_size) == (None, None, None)
    assert data.model_dump(mode="json") == OLD_DEPOSIT | (
        {"command_id": None} if model is CodeReissuedData else {}
    )


def test_a_walk_up_deposit_validates_with_its_carrier_number_and_size() -> None:
    data = DepositedData.model_validate(WALK_UP)

    assert (data.walk_up, data.carrier_id, data.tracking_number, data.reserved_size) == (
        True,
        "acme",
        "ACME123",
        "M",
    )
    assert data.model_dump(mode="json") == WALK_UP


@pytest.mark.parametrize(
    "change",
    [
        {"carrier_id": None},
        {"tracking_number": None},
        {"reserved_size": None},
        {"reserved_size": "XXL"},
        {"carrier_id": "c" * 33},
        {"tracking_number": "1" * 65},
        {"tracking_number": ""},
        {"walk_up": "perhaps"},
        {"surprise": 1},
    ],
)
def test_a_walk_up_without_what_central_needs_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DepositedData.model_validate(WALK_UP | change)
