"""The door controller's logic, on a simulated board and a clock that moves only when told to."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime

import pytest

from locker_node.domain.doors import (
    BoardRecovered,
    BoardUnreachable,
    CommandOutcome,
    CommandOutcomeUnknown,
    CompartmentUnavailable,
    CompartmentWiring,
    ControllerNotStarted,
    DoorClosed,
    DoorController,
    DoorEvent,
    DoorJammed,
    DoorLeftOpen,
    DoorMonitor,
    DoorOpened,
    InMemoryCommandJournal,
    InMemoryEventSink,
    MarkedOutOfService,
    ReturnedToService,
    UncommandedOpen,
    UnknownCompartment,
    UnlockIntent,
)
from locker_node.hardware.board import DoorState, LockBoard
from locker_node.hardware.simulated import SimulatedLockBoard
from locker_node.hardware.simulator import Fault
from tests.locker_node.support import node_clock, wait_until

WIRING = [CompartmentWiring(f"A0{n}", "main", n) for n in (1, 2, 3)]


class Rig:
    def __init__(self, *, door_delay_s: float = 0.3, board: LockBoard | None = None) -> None:
        self.clock = node_clock()
        self.sim = SimulatedLockBoard(
            name="main", lock_count=4, door_delay_s=door_delay_s, clock=self.clock.monotonic
        )
        self.journal = InMemoryCommandJournal()
        self.events = InMemoryEventSink()
        self.controller = DoorController(
            {"main": board or self.sim},
            WIRING,
            journal=self.journal,
            events=self.events,
            clock=self.clock,
            confirm_window_s=2.0,
            confirm_poll_s=0.05,
            left_open_after_s=60.0,
        )


@pytest.fixture
def rig() -> Rig:
    rig = Rig()
    rig.controller.start()
    return rig


def test_opening_fires_once_and_confirms_from_the_sensor(rig: Rig) -> None:
    outcome = rig.controller.open_door("A02", reason="pickup")

    assert isinstance(outcome, DoorOpened)
    assert (outcome.label, outcome.attempts, outcome.was_open) == ("A02", 1, False)
    assert outcome.confirmed_after_s == pytest.approx(0.3, abs=0.05)
    assert rig.sim.fired(2) == 1
    assert rig.journal.outcomes == {outcome.command_id: CommandOutcome.OPENED}
    assert rig.journal.intents[outcome.command_id].reason == "pickup"
    assert rig.controller.status("A02").door is DoorState.OPEN
    assert rig.events.events[-1] == outcome


def test_a_jammed_door_is_fired_twice_then_taken_out_of_service(rig: Rig) -> None:
    rig.sim.set_fault(Fault.JAM, lock=1)

    outcome = rig.controller.open_door("A01")

    assert isinstance(outcome, DoorJammed)
    assert outcome.attempts == 2
    assert rig.sim.fired(1) == 2
    assert rig.journal.outcomes[outcome.command_id] is CommandOutcome.JAMMED
    assert not rig.controller.status("A01").in_service
    (marked,) = rig.events.of_type(MarkedOutOfService)
    assert (marked.label, marked.reason) == ("A01", "jammed: door did not open")
    with pytest.raises(CompartmentUnavailable):
        rig.controller.open_door("A01")
    assert rig.sim.fired(1) == 2


def test_an_out_of_service_compartment_opens_only_when_asked_explicitly(rig: Rig) -> None:
    rig.controller.mark_out_of_service("A03", "cleaning")

    outcome = rig.controller.open_door("A03", allow_out_of_service=True)
    rig.controller.return_to_service("A03")

    assert isinstance(outcome, DoorOpened)
    assert rig.controller.status("A03").in_service
    assert len(rig.events.of_type(ReturnedToService)) == 1


def test_a_reset_board_loses_the_first_pulse_and_the_retry_opens(rig: Rig) -> None:
    rig.sim.set_fault(Fault.RESET)

    outcome = rig.controller.open_door("A01")

    assert isinstance(outcome, DoorOpened)
    assert outcome.attempts == 2
    assert rig.sim.fired(1) == 1


def test_an_unreadable_board_ends_the_command_as_unknown_without_refiring(rig: Rig) -> None:
    rig.sim.set_fault(Fault.NO_REPLY)

    outcome = rig.controller.open_door("A02")

    assert isinstance(outcome, CommandOutcomeUnknown)
    assert "did not answer" in outcome.reason
    assert rig.sim.fired(2) == 1
    assert rig.journal.outcomes[outcome.command_id] is CommandOutcome.UNKNOWN
    assert rig.controller.status("A02").in_service  # the board failed, not the compartment
    assert len(rig.events.of_type(BoardUnreachable)) == 1

    rig.sim.clear_faults()
    rig.controller.poll()
    assert len(rig.events.of_type(BoardRecovered)) == 1
    assert rig.controller.status("A02").door is DoorState.OPEN


def test_the_relay_fires_even_when_the_sensor_already_reads_open(rig: Rig) -> None:
    rig.sim.force_open(3)
    rig.controller.poll()

    outcome = rig.controller.open_door("A03")

    assert isinstance(outcome, DoorOpened)
    assert outcome.was_open
    assert rig.sim.fired(3) == 1


def test_an_open_no_command_explains_is_an_alert(rig: Rig) -> None:
    rig.sim.force_open(2)

    rig.controller.poll()
    rig.controller.poll()

    (alert,) = rig.events.of_type(UncommandedOpen)
    assert alert.label == "A02"
    assert rig.sim.fired(2) == 0


def test_a_commanded_open_is_not_an_alert_and_closing_is_recorded(rig: Rig) -> None:
    rig.controller.open_door("A01")
    rig.clock.advance(5)
    rig.sim.close_door(1)

    rig.controller.poll()

    assert rig.events.of_type(UncommandedOpen) == []
    (closed,) = rig.events.of_type(DoorClosed)
    assert closed.label == "A01"
    assert closed.open_for_s == pytest.approx(5, abs=0.1)


def test_a_door_left_open_is_reported_once_per_opening(rig: Rig) -> None:
    rig.controller.open_door("A01")
    rig.clock.advance(59)
    rig.controller.poll()
    assert rig.events.of_type(DoorLeftOpen) == []

    rig.clock.advance(1)
    rig.controller.poll()
    rig.clock.advance(30)
    rig.controller.poll()

    (alert,) = rig.events.of_type(DoorLeftOpen)
    assert alert.label == "A01"
    assert alert.open_for_s == pytest.approx(60, abs=0.1)


def test_start_finishes_a_command_left_in_flight_as_unknown_and_never_reruns_it() -> None:
    rig = Rig()
    rig.journal.record_intent(
        UnlockIntent(
            command_id="c-1",
            label="A02",
            board="main",
            lock=2,
            requested_at=datetime(2025, 1, 1),
        )
    )

    rig.controller.start()

    (unknown,) = rig.events.of_type(CommandOutcomeUnknown)
    assert (unknown.label, unknown.command_id) == ("A02", "c-1")
    assert rig.journal.outcomes == {"c-1": CommandOutcome.UNKNOWN}
    assert rig.sim.fired(2) == 0


class CrashingBoard:
    """A board whose process dies while the relay is firing."""

    def __init__(self, inner: SimulatedLockBoard) -> None:
        self.inner = inner
        self.name = inner.name
        self.lock_count = inner.lock_count

    def unlock(self, lock: int) -> None:
        self.inner.unlock(lock)
        raise SystemExit("power cut")

    def read_doors(self) -> Mapping[int, DoorState]:
        return self.inner.read_doors()

    def release_all(self) -> None:
        self.inner.release_all()

    def close(self) -> None:
        self.inner.close()


def test_a_crash_mid_command_leaves_the_intent_to_be_closed_as_unknown() -> None:
    first = Rig()
    crashing = DoorController(
        {"main": CrashingBoard(first.sim)},
        WIRING,
        journal=first.journal,
        events=first.events,
        clock=first.clock,
    )
    crashing.start()
    with pytest.raises(SystemExit):
        crashing.open_door("A01")

    restarted = DoorController(
        {"main": first.sim}, WIRING, journal=first.journal, events=first.events, clock=first.clock
    )
    restarted.start()

    assert list(first.journal.outcomes.values()) == [CommandOutcome.UNKNOWN]
    assert len(first.events.of_type(CommandOutcomeUnknown)) == 1
    assert first.sim.fired(1) == 1


def test_start_reads_every_door_and_an_open_one_is_watched_without_blame() -> None:
    rig = Rig()
    rig.sim.force_open(3)

    states = rig.controller.start()

    assert states == {"A01": DoorState.CLOSED, "A02": DoorState.CLOSED, "A03": DoorState.OPEN}
    assert rig.events.of_type(UncommandedOpen) == []
    rig.clock.advance(60)
    rig.controller.poll()
    assert [e.label for e in rig.events.of_type(DoorLeftOpen)] == ["A03"]


def test_nothing_opens_before_start_and_unknown_labels_are_lookup_errors() -> None:
    rig = Rig()

    with pytest.raises(ControllerNotStarted):
        rig.controller.open_door("A01")
    rig.controller.start()
    with pytest.raises(UnknownCompartment) as raised:
        rig.controller.open_door("Z99")
    assert isinstance(raised.value, LookupError)


def test_wiring_must_match_the_boards() -> None:
    board = SimulatedLockBoard(name="main", lock_count=2)
    journal, events = InMemoryCommandJournal(), InMemoryEventSink()

    with pytest.raises(ValueError, match="no lock 3"):
        DoorController(
            {"main": board}, [CompartmentWiring("A", "main", 3)], journal=journal, events=events
        )
    with pytest.raises(ValueError, match="no board 'side'"):
        DoorController(
            {"main": board}, [CompartmentWiring("A", "side", 1)], journal=journal, events=events
        )


def test_the_monitor_polls_in_the_background_until_stopped() -> None:
    board = SimulatedLockBoard(name="main", lock_count=4)
    events = InMemoryEventSink()
    controller = DoorController(
        {"main": board}, WIRING, journal=InMemoryCommandJournal(), events=events
    )
    controller.start()

    with DoorMonitor(controller, interval_s=0.01) as monitor:
        assert monitor.running
        board.force_open(1)
        wait_until(lambda: bool(events.of_type(UncommandedOpen)), what="uncommanded-open alert")

    assert not monitor.running
    board.close()


class _SlowStore(InMemoryEventSink):
    """An event sink whose writes wait, as a store write waits for SQLite's lock."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()
        self.release = threading.Event()

    def emit(self, event: DoorEvent) -> None:
        self.writing.set()
        self.release.wait(10)
        super().emit(event)


def test_which_boards_are_silent_is_answered_while_the_monitor_writes_an_event() -> None:
    """A flow asks for the silent boards' doors inside a store transaction, while the monitor
    may be holding the controller to write what it saw to the store: the answer must not wait
    for the monitor, or the two would wait on each other until SQLite's busy timeout."""
    clock = node_clock()
    board = SimulatedLockBoard(name="main", lock_count=4, door_delay_s=0.0, clock=clock.monotonic)
    store = _SlowStore()
    controller = DoorController(
        {"main": board}, WIRING, journal=InMemoryCommandJournal(), events=store, clock=clock
    )
    store.release.set()
    controller.start()
    store.release.clear()
    store.writing.clear()
    board.set_fault(Fault.NO_REPLY)
    monitor = threading.Thread(target=controller.poll)  # finds the board silent, writes it
    monitor.start()
    try:
        assert store.writing.wait(5)
        answered: list[frozenset[str]] = []
        asking = threading.Thread(target=lambda: answered.append(controller.silent_labels()))
        asking.start()
        asking.join(2)
        assert answered == [frozenset({"A01", "A02", "A03"})]
    finally:
        store.release.set()
        monitor.join(10)
