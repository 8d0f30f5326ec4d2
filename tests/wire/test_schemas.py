"""The shared wire shapes refuse what neither side should accept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from locker_wire.schemas import Command, EventBatch, Heartbeat, NodeEvent


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
