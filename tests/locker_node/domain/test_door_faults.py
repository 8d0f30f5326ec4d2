"""Each simulator fault, through the real driver on a pty, and what the node makes of it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from locker_node.domain.doors import (
    BoardUnreachable,
    CommandOutcome,
    CommandOutcomeUnknown,
    CompartmentWiring,
    DoorClosed,
    DoorController,
    DoorJammed,
    DoorLeftOpen,
    DoorOpened,
    InMemoryCommandJournal,
    InMemoryEventSink,
    MarkedOutOfService,
    UncommandedOpen,
)
from locker_node.hardware.board import DoorState
from locker_node.hardware.simulator import BoardSimulator, Fault
from tests.locker_node.support import pty_board, wait_until

PROTOCOLS = ["kerong-cu16", "kerong-cu48", "xor"]


@dataclass
class Node:
    sim: BoardSimulator
    controller: DoorController
    journal: InMemoryCommandJournal
    events: InMemoryEventSink


@pytest.fixture(params=PROTOCOLS)
def node(request: pytest.FixtureRequest) -> Iterator[Node]:
    with pty_board(request.param, lock_count=4, reply_timeout_s=0.1) as (sim, board):
        journal, events = InMemoryCommandJournal(), InMemoryEventSink()
        controller = DoorController(
            {"main": board},
            [CompartmentWiring(f"A{n}", "main", n) for n in range(1, 5)],
            journal=journal,
            events=events,
            confirm_window_s=0.3,
            confirm_poll_s=0.01,
            left_open_after_s=0.2,
        )
        controller.start()
        yield Node(sim, controller, journal, events)


def test_jammed_door(node: Node) -> None:
    node.sim.set_fault(Fault.JAM, lock=2)

    outcome = node.controller.open_door("A2")

    assert isinstance(outcome, DoorJammed)
    assert node.sim.fired(2) == 2  # one retry, after reading the door still shut
    status = node.controller.status("A2")
    assert (status.door, status.in_service) == (DoorState.CLOSED, False)
    assert [e.label for e in node.events.of_type(MarkedOutOfService)] == ["A2"]
    assert node.journal.outcomes[outcome.command_id] is CommandOutcome.JAMMED


@pytest.mark.parametrize(
    ("fault", "detail"),
    [
        (Fault.NO_REPLY, "no reply"),
        (Fault.BAD_CHECKSUM, "checksum mismatch"),
        (Fault.WRONG_ADDRESS, "reply for"),
    ],
)
def test_a_board_that_never_answers_properly(node: Node, fault: Fault, detail: str) -> None:
    node.sim.set_fault(fault)

    outcome = node.controller.open_door("A1")

    assert isinstance(outcome, CommandOutcomeUnknown)
    assert detail in outcome.reason
    assert node.sim.fired(1) == 1  # the door may be open: never fired again blindly
    assert node.journal.outcomes[outcome.command_id] is CommandOutcome.UNKNOWN
    (down,) = node.events.of_type(BoardUnreachable)
    assert detail in down.detail
    status = node.controller.status("A1")
    assert (status.door, status.in_service) == (DoorState.CLOSED, True)  # last known, not guessed


@pytest.mark.parametrize("fault", [Fault.NO_REPLY, Fault.BAD_CHECKSUM, Fault.WRONG_ADDRESS])
def test_one_lost_or_mangled_answer_is_absorbed(node: Node, fault: Fault) -> None:
    node.sim.set_fault(fault, times=1)

    outcome = node.controller.open_door("A3")

    # Kerong: the status read is retried. XOR: the unlock answer is lost, the door is read
    # before anything else, and it is open: the lock is not fired a second time.
    assert isinstance(outcome, DoorOpened)
    assert outcome.attempts == 1
    assert node.sim.fired(3) == 1


@pytest.mark.parametrize("fault", [Fault.SPLIT, Fault.GARBAGE])
def test_answers_split_or_behind_noise_are_framed(node: Node, fault: Fault) -> None:
    node.sim.set_fault(fault)

    outcome = node.controller.open_door("A4")

    assert isinstance(outcome, DoorOpened)
    assert node.events.of_type(BoardUnreachable) == []


def test_a_board_reset_mid_command(node: Node) -> None:
    node.sim.set_fault(Fault.RESET)

    outcome = node.controller.open_door("A1")

    # The reset swallowed the first command; the door read shut, so the one retry is allowed.
    assert isinstance(outcome, DoorOpened)
    assert outcome.attempts == 2
    assert node.sim.fired(1) == 1
    assert node.controller.status("A1").in_service


def test_a_door_left_open(node: Node) -> None:
    node.sim.model.auto_close_after_s = 0.05  # the simulated person closes doors...
    node.sim.set_fault(Fault.LEFT_OPEN, lock=2)  # ...except this one
    assert isinstance(node.controller.open_door("A1"), DoorOpened)
    assert isinstance(node.controller.open_door("A2"), DoorOpened)

    def alerted() -> bool:
        node.controller.poll()
        return bool(node.events.of_type(DoorLeftOpen))

    wait_until(alerted, what="left-open alert")
    assert [e.label for e in node.events.of_type(DoorLeftOpen)] == ["A2"]
    assert [e.label for e in node.events.of_type(DoorClosed)] == ["A1"]
    status = node.controller.status("A2")
    assert (status.door, status.in_service) == (DoorState.OPEN, True)

    node.sim.close_door(2)
    node.controller.poll()
    assert [e.label for e in node.events.of_type(DoorClosed)] == ["A1", "A2"]


def test_a_forced_door(node: Node) -> None:
    node.sim.force_open(3)

    node.controller.poll()

    assert [e.label for e in node.events.of_type(UncommandedOpen)] == ["A3"]
    assert node.controller.status("A3").door is DoorState.OPEN
    assert node.sim.fired(3) == 0
