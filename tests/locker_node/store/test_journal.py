"""The SQLite command journal: an unlock in flight at a crash is finished as unknown, never
re-run, and door events land in the audit log and the outbox."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from locker_node.domain.doors import (
    CommandOutcome,
    CompartmentWiring,
    DoorController,
    DoorOpened,
    UnlockIntent,
)
from locker_node.flows.door_events import DoorEventRecorder
from locker_node.hardware.simulated import SimulatedLockBoard
from locker_node.hardware.simulator import Fault
from locker_node.store import outbox
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from locker_node.store.journal import SqliteCommandJournal


def now() -> datetime:
    return datetime.now(UTC)


def controller(engine: Engine, board: SimulatedLockBoard) -> DoorController:
    with transaction(engine) as conn:
        repo.sync_compartments(
            conn,
            [
                repo.CompartmentSpec("A01", "S", "main", 1),
                repo.CompartmentSpec("A02", "S", "main", 2),
            ],
            now(),
        )
    return DoorController(
        {"main": board},
        [CompartmentWiring("A01", "main", 1), CompartmentWiring("A02", "main", 2)],
        journal=SqliteCommandJournal(engine, clock=now),
        events=DoorEventRecorder(engine, bank_id="B1"),
        confirm_window_s=0.1,
        confirm_poll_s=0.01,
    )


def test_intents_and_outcomes_are_kept(engine: Engine) -> None:
    journal = SqliteCommandJournal(engine, clock=now)
    intent = UnlockIntent("c1", "A01", "main", 1, now(), reason="pickup")

    journal.record_intent(intent)
    assert journal.unfinished() == [intent]
    assert journal.outcome("c1") is None

    journal.record_outcome("c1", CommandOutcome.OPENED)
    assert journal.unfinished() == []
    assert journal.outcome("c1") is CommandOutcome.OPENED
    assert journal.outcome("never") is None


def test_a_restarted_controller_finishes_commands_in_flight_as_unknown(engine: Engine) -> None:
    SqliteCommandJournal(engine, clock=now).record_intent(
        UnlockIntent("c1", "A01", "main", 1, now(), reason="deposit")
    )
    board = SimulatedLockBoard(name="main", lock_count=4, door_delay_s=0.0)

    restarted = controller(engine, board)
    restarted.start()

    assert board.fired(1) == 0  # never re-run blindly
    journal = SqliteCommandJournal(engine, clock=now)
    assert journal.outcome("c1") is CommandOutcome.UNKNOWN
    with transaction(engine) as conn:
        actions = [e.action for e in outbox.audit_entries(conn)]
    assert "door_outcome_unknown" in actions


def test_door_events_reach_the_audit_log_service_state_and_outbox(engine: Engine) -> None:
    board = SimulatedLockBoard(name="main", lock_count=4, door_delay_s=0.0)
    doors = controller(engine, board)
    doors.start()
    board.set_fault(Fault.JAM, lock=2)

    opened = doors.open_door("A01", reason="test", command_id="cmd-open")
    doors.open_door("A02", reason="test")
    board.close_door(1)
    doors.poll()
    board.force_open(1)
    doors.poll()

    assert isinstance(opened, DoorOpened) and opened.command_id == "cmd-open"
    with transaction(engine) as conn:
        actions = [e.action for e in outbox.audit_entries(conn)]
        a02 = repo.get_compartment(conn, "A02")
        events = [e.type for e in outbox.outbox_events(conn)]
    assert actions == [
        "door_opened",
        "door_jammed",
        "out_of_service",
        "door_closed",
        "uncommanded_open",
    ]
    assert a02 is not None and not a02.in_service and "jammed" in a02.service_note
    assert events == ["compartment.out_of_service", "door.forced_open"]
