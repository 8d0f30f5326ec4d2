"""A compartment the node reports at enrollment: the accessible flag travels only when true."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from locker_wire.schemas import EnrollmentRequest, ReportedCompartment


def test_a_door_that_is_not_accessible_travels_in_the_earlier_shape() -> None:
    plain = ReportedCompartment(label="A01", size="S")
    assert json.loads(plain.model_dump_json()) == {"label": "A01", "size": "S"}
    assert plain.model_dump() == {"label": "A01", "size": "S"}


def test_an_accessible_door_says_so() -> None:
    door = ReportedCompartment(label="A02", size="M", accessible=True)
    assert json.loads(door.model_dump_json()) == {"label": "A02", "size": "M", "accessible": True}


def test_the_request_reads_back_as_sent() -> None:
    request = EnrollmentRequest(
        token="enr_0123456789abcdef",
        public_key="A" * 43,
        compartments=[
            ReportedCompartment(label="A01", size="S"),
            ReportedCompartment(label="A02", size="M", accessible=True),
        ],
    )
    again = EnrollmentRequest.model_validate_json(request.model_dump_json(exclude_none=True))
    assert [c.accessible for c in again.compartments] == [False, True]


def test_an_earlier_central_model_accepts_a_plain_report() -> None:
    """What a central that predates the flag has: label and size, unknown fields forbidden."""

    class EarlierReported(BaseModel):
        model_config = ConfigDict(extra="forbid")
        label: str
        size: str

    plain = ReportedCompartment(label="A01", size="S").model_dump_json()
    assert EarlierReported.model_validate_json(plain).label == "A01"
    flagged = ReportedCompartment(label="A01", size="S", accessible=True).model_dump_json()
    with pytest.raises(ValidationError):
        EarlierReported.model_validate_json(flagged)
