"""Commands from central, typed: each type's payload read as its own model."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from pydantic import ValidationError

from locker_wire.commands import (
    COMMAND_PAYLOADS,
    ExtendDeadline,
    InvalidateCode,
    OpenCompartment,
    parse_command,
)
from locker_wire.schemas import Command, CommandType


def command(command_type: str, payload: dict[str, Any]) -> Command:
    return Command.model_validate(
        {
            "id": "cmd-1",
            "node_id": "node-1",
            "bank_id": "NYC-1",
            "type": command_type,
            "payload": payload,
            "issued_at": 0,
            "expires_at": 60,
            "signature": "sig",
        }
    )


def test_every_command_type_has_its_payload_model() -> None:
    assert set(COMMAND_PAYLOADS) == set(get_args(CommandType))


def test_payloads_are_read_as_their_types() -> None:
    assert parse_command(command("open_compartment", {"compartment": "A01"})) == OpenCompartment(
        compartment="A01"
    )
    assert parse_command(
        command("extend_deadline", {"reservation_id": "r1", "hours": 24})
    ) == ExtendDeadline(reservation_id="r1", hours=24)
    invalidate = parse_command(command("invalidate_code", {"reservation_id": "r1"}))
    assert invalidate == InvalidateCode(reservation_id="r1", reissue=False)


def test_fields_a_newer_central_adds_are_ignored() -> None:
    parsed = parse_command(command("open_compartment", {"compartment": "A01", "note": "x"}))

    assert parsed == OpenCompartment(compartment="A01")


@pytest.mark.parametrize(
    ("command_type", "payload"),
    [
        ("open_compartment", {}),
        ("open_compartment", {"compartment": ""}),
        ("extend_deadline", {"reservation_id": "r1"}),
        ("extend_deadline", {"reservation_id": "r1", "hours": "many"}),
        ("cancel_reservation", {"compartment": "A01"}),
    ],
)
def test_a_payload_missing_or_malformed_is_refused(
    command_type: str, payload: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        parse_command(command(command_type, payload))
