"""A mass open from central ("open all", approved by a second admin): every door, each audited
with the approval, within the node's own limit of mass opens a day, and never run twice."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from locker_node.app import flow_policy
from locker_node.config import parse_config
from locker_node.hardware.simulator import Fault
from locker_node.store.database import transaction
from locker_node.store.outbox import AuditEntry, append_audit, audit_entries
from locker_wire.schemas import Command, CommandAck
from tests.locker_node.kiosk.rig import LAYOUT, Rig, node_config_data

APPROVAL = "opr_test-approval"
ALL = [label for label, _, _ in LAYOUT]


def accept(command: Command, now: datetime) -> None:
    """The sync service checks the signature; these tests are about what follows."""


def mass_open(rig: Rig, labels: list[str] | None = None, **changes: Any) -> Command:
    payload = {
        "labels": labels or ALL,
        "approval_id": APPROVAL,
        "requested_by": "first@ops.test",
        "approved_by": "second@ops.test",
        "reason": "flood warning",
    } | changes
    now = int(rig.clock().timestamp())
    return Command(
        id=str(uuid.uuid4()),
        node_id="node-1",
        bank_id=rig.config.bank_id,
        type="open_compartments",
        payload=payload,
        issued_at=now,
        expires_at=now + 900,
        signature="unchecked",
    )


def run(rig: Rig, command: Command) -> CommandAck:
    return rig.node.flows.handle_command(command, verify=accept)


def summary(ack: CommandAck) -> dict[str, Any]:
    assert ack.detail is not None
    result: dict[str, Any] = json.loads(ack.detail)
    return result


def audit(rig: Rig, action: str) -> list[AuditEntry]:
    with transaction(rig.engine) as conn:
        return [entry for entry in audit_entries(conn) if entry.action == action]


def close_all(rig: Rig) -> None:
    for label in ALL:
        rig.close_door(label)


def test_every_door_opens_out_of_service_ones_too_each_audited_with_the_approval(
    rig: Rig,
) -> None:
    rig.node.doors.mark_out_of_service("B02", "hinge squeaks")
    command = mass_open(rig)

    ack = run(rig, command)

    assert ack.outcome == "ok"
    assert summary(ack) == {"approval_id": APPROVAL, "opened": ALL, "failed": {}}
    assert all(rig.door_is_open(label) for label in ALL)
    doors = audit(rig, "mass_open_door")
    assert [d.compartment for d in doors] == ALL
    assert {d.command_id for d in doors} == {command.id}
    for door in doors:
        assert door.detail is not None
        detail = json.loads(door.detail)
        assert detail["approval_id"] == APPROVAL and detail["outcome"] == "opened"
        assert detail["requested_by"] == "first@ops.test"
        assert detail["approved_by"] == "second@ops.test"
    [counted] = audit(rig, "mass_open")
    assert (counted.command_id, counted.reason) == (command.id, "flood warning")


def test_a_door_that_fails_is_listed_and_the_others_still_open(rig: Rig) -> None:
    rig.board.set_fault(Fault.JAM, lock=rig.lock_of("A02"))

    ack = run(rig, mass_open(rig, ["A01", "A02", "Z99", "C01"]))

    assert ack.outcome == "ok"
    assert summary(ack) == {
        "approval_id": APPROVAL,
        "opened": ["A01", "C01"],
        "failed": {"A02": "DoorJammed", "Z99": "UnknownCompartment"},
    }
    assert rig.door_is_open("A01") and rig.door_is_open("C01") and not rig.door_is_open("A02")


def test_no_door_opened_is_a_failed_command(rig: Rig) -> None:
    ack = run(rig, mass_open(rig, ["Y01", "Z99"]))

    assert ack.outcome == "failed"
    assert summary(ack)["opened"] == []


def test_a_command_without_two_different_admins_opens_nothing(rig: Rig) -> None:
    same = run(rig, mass_open(rig, approved_by=" First@ops.test "))
    blank = run(rig, mass_open(rig, approval_id="  "))

    for ack in (same, blank):
        assert ack.outcome == "failed"
        assert ack.detail is not None and ack.detail.startswith("refused:")
    assert not any(rig.door_is_open(label) for label in ALL)
    assert audit(rig, "mass_open") == [] and audit(rig, "mass_open_door") == []


def test_the_node_allows_two_mass_opens_a_day_whatever_central_says(rig: Rig) -> None:
    for _ in range(2):
        assert run(rig, mass_open(rig)).outcome == "ok"
        close_all(rig)
        rig.clock.advance(hours=1)

    third = run(rig, mass_open(rig))

    assert third.outcome == "failed"
    assert third.detail == "rate limited: 2 mass opens in the last 86400 s"
    assert not any(rig.door_is_open(label) for label in ALL)
    # Single remote opens keep their own limit: the mass opens did not use it up.
    single = rig.node.flows.handle_command(
        mass_open(rig).model_copy(
            update={"type": "open_compartment", "payload": {"compartment": "A01"}}
        ),
        verify=accept,
    )
    assert single.outcome == "ok"
    rig.close_door("A01")
    rig.clock.advance(hours=22, seconds=1)  # the first one leaves the day's window
    assert run(rig, mass_open(rig)).outcome == "ok"


def test_a_command_is_carried_out_once(rig: Rig) -> None:
    command = mass_open(rig, ["A01", "A02"])
    first = run(rig, command)
    close_all(rig)

    again = run(rig, command)

    assert again == first
    assert not rig.door_is_open("A01")
    assert len(audit(rig, "mass_open_door")) == 2


def test_a_mass_open_cut_short_by_a_crash_is_not_run_again(rig: Rig) -> None:
    command = mass_open(rig, ["A01", "A02"])
    with transaction(rig.engine) as conn:  # counted, then the node died before answering
        append_audit(
            conn, at=rig.clock(), actor="central", action="mass_open", command_id=command.id
        )

    ack = run(rig, command)

    assert ack.outcome == "failed"
    assert ack.detail is not None and ack.detail.startswith("interrupted")
    assert not rig.door_is_open("A01")


def test_the_limit_comes_from_the_nodes_configuration(
    make_rig: Callable[..., Rig], tmp_path: Any
) -> None:
    data = node_config_data(tmp_path, sync={"mass_open_limit": 1, "mass_open_window_s": 3600})
    policy = flow_policy(parse_config(data))
    assert (policy.mass_open_limit, policy.mass_open_window) == (1, timedelta(hours=1))
    defaults = flow_policy(parse_config(node_config_data(tmp_path)))
    assert (defaults.mass_open_limit, defaults.mass_open_window) == (2, timedelta(hours=24))

    rig = make_rig(sync={"mass_open_limit": 1, "mass_open_window_s": 3600})
    assert run(rig, mass_open(rig)).outcome == "ok"
    close_all(rig)
    assert run(rig, mass_open(rig)).outcome == "failed"
