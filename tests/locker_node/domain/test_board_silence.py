"""A board that stops answering is a board fault, not a row of jammed doors."""

from __future__ import annotations

import pytest

from locker_node.domain.doors import (
    BoardDidNotAnswer,
    BoardNotAnswering,
    BoardRecovered,
    BoardUnreachable,
    CommandOutcome,
    CompartmentWiring,
    DoorController,
    DoorJammed,
    DoorOpened,
    InMemoryCommandJournal,
    InMemoryEventSink,
    MarkedOutOfService,
    UncommandedOpen,
)
from locker_node.hardware.simulated import SimulatedLockBoard
from locker_node.hardware.simulator import Fault
from tests.locker_node.support import node_clock

WIRING = [CompartmentWiring(f"L{n}", "left", n) for n in (1, 2)] + [
    CompartmentWiring(f"R{n}", "right", n) for n in (1, 2)
]


class Rig:
    def __init__(self) -> None:
        self.clock = node_clock()
        self.left = SimulatedLockBoard(
            name="left", lock_count=2, door_delay_s=0.1, clock=self.clock.monotonic
        )
        self.right = SimulatedLockBoard(
            name="right", lock_count=2, door_delay_s=0.1, clock=self.clock.monotonic
        )
        self.journal = InMemoryCommandJournal()
        self.events = InMemoryEventSink()
        self.controller = DoorController(
            {"left": self.left, "right": self.right},
            WIRING,
            journal=self.journal,
            events=self.events,
            clock=self.clock,
            confirm_window_s=1.0,
            confirm_poll_s=0.05,
        )
        self.controller.start()


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_a_board_that_does_not_answer_is_a_board_fault_not_a_jam(rig: Rig) -> None:
    rig.left.set_fault(Fault.NO_REPLY)

    outcome = rig.controller.open_door("L1")

    assert isinstance(outcome, BoardDidNotAnswer) and outcome.board == "left"
    assert rig.journal.outcomes[outcome.command_id] is CommandOutcome.UNKNOWN
    assert rig.left.fired(1) == 1  # it may have acted on the command: never fired again blindly
    left = rig.controller.status("L1")
    assert left.in_service and not left.board_answering
    assert rig.controller.status("R1").board_answering
    assert rig.events.of_type(MarkedOutOfService) == []
    assert len(rig.events.of_type(BoardUnreachable)) == 1


def test_the_doors_of_a_silent_board_are_not_fired_while_it_is_silent(rig: Rig) -> None:
    rig.left.set_fault(Fault.NO_REPLY)
    rig.controller.poll()
    rig.controller.poll()

    with pytest.raises(BoardNotAnswering):
        rig.controller.open_door("L2")
    with pytest.raises(BoardNotAnswering):
        rig.controller.open_door("L2", allow_out_of_service=True)

    assert rig.left.fired(2) == 0
    assert rig.journal.intents == {}
    assert len(rig.events.of_type(BoardUnreachable)) == 1  # one alert for the board
    assert isinstance(rig.controller.open_door("R1"), DoorOpened)  # the other board serves


def test_a_board_that_answers_again_serves_again_by_itself(rig: Rig) -> None:
    rig.left.set_fault(Fault.NO_REPLY)
    # The board acts on the unlock without answering: the door opens behind its back.
    rig.controller.open_door("L1")

    rig.left.clear_faults()
    rig.controller.poll()

    assert len(rig.events.of_type(BoardRecovered)) == 1
    assert rig.controller.status("L1").board_answering
    # The door the lost command opened is not reported as forced.
    assert rig.events.of_type(UncommandedOpen) == []
    assert isinstance(rig.controller.open_door("L2"), DoorOpened)


def test_a_board_that_answers_again_on_the_next_command_is_not_refused(rig: Rig) -> None:
    rig.left.set_fault(Fault.NO_REPLY)
    rig.controller.poll()
    rig.left.clear_faults()

    # No monitor pass in between: the command asks the board itself before refusing.
    assert isinstance(rig.controller.open_door("L2"), DoorOpened)
    assert len(rig.events.of_type(BoardRecovered)) == 1


def test_a_door_whose_board_answers_and_that_stays_shut_is_jammed(rig: Rig) -> None:
    rig.right.set_fault(Fault.JAM, lock=1)

    outcome = rig.controller.open_door("R1")

    assert isinstance(outcome, DoorJammed)
    assert not rig.controller.status("R1").in_service
    assert rig.controller.status("R1").board_answering
    assert rig.events.of_type(BoardUnreachable) == []
