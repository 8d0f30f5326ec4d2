"""Door controller: fire a lock, confirm the door opened, and watch every door for faults."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from locker_node.domain.door_facts import (
    BoardDidNotAnswer,
    BoardRecovered,
    BoardUnreachable,
    Clock,
    CommandJournal,
    CommandOutcome,
    CommandOutcomeUnknown,
    DoorClosed,
    DoorEvent,
    DoorEventSink,
    DoorJammed,
    DoorLeftOpen,
    DoorOpened,
    InMemoryCommandJournal,
    InMemoryEventSink,
    MarkedOutOfService,
    ReturnedToService,
    SystemClock,
    UncommandedOpen,
    UnlockIntent,
    UnlockOutcome,
)
from locker_node.hardware.board import DoorState, LockBoard, LockBoardError

# The controller's facts live in `door_facts`; callers import them from here, with it.
__all__ = [
    "BoardDidNotAnswer",
    "BoardNotAnswering",
    "BoardRecovered",
    "BoardUnreachable",
    "Clock",
    "CommandJournal",
    "CommandOutcome",
    "CommandOutcomeUnknown",
    "CompartmentStatus",
    "CompartmentUnavailable",
    "CompartmentWiring",
    "ControllerNotStarted",
    "DoorClosed",
    "DoorController",
    "DoorControllerError",
    "DoorEvent",
    "DoorEventSink",
    "DoorJammed",
    "DoorLeftOpen",
    "DoorMonitor",
    "DoorOpened",
    "InMemoryCommandJournal",
    "InMemoryEventSink",
    "MarkedOutOfService",
    "ReturnedToService",
    "SystemClock",
    "UncommandedOpen",
    "UnknownCompartment",
    "UnlockIntent",
    "UnlockOutcome",
]

logger = logging.getLogger(__name__)


# Errors


class DoorControllerError(Exception):
    """Base of the door controller's errors."""


class UnknownCompartment(DoorControllerError, LookupError):
    """A compartment label the bank does not have."""


class CompartmentUnavailable(DoorControllerError):
    """The compartment is out of service; it is not opened for customers."""


class BoardNotAnswering(CompartmentUnavailable):
    """The compartment's board does not answer: its doors wait for it, in service."""


class ControllerNotStarted(DoorControllerError, RuntimeError):
    """Doors are served only after `start()` has read every door."""


# The controller


@dataclass(frozen=True)
class CompartmentWiring:
    """Which lock on which board opens a compartment."""

    label: str
    board: str
    lock: int


@dataclass(frozen=True)
class CompartmentStatus:
    label: str
    door: DoorState | None  # None: not read yet
    in_service: bool
    open_for_s: float | None
    board_answering: bool = True  # False: its board is silent, the door waits for it


@dataclass
class _Compartment:
    wiring: CompartmentWiring
    door: DoorState | None = None
    in_service: bool = True
    open_since: float | None = None
    command_in_flight: bool = False
    left_open_reported: bool = False
    fired_unseen: bool = False  # its lock was fired while the board was silent


@dataclass
class _Attempt:
    opened: bool = False
    read_any: bool = False
    errors: list[str] = field(default_factory=list)


class DoorController:
    """Opens compartments and keeps every door's state, one command at a time.

    Unlocking is a command and "opened" a separate fact from the sensor: the lock fires, then
    the doors are read every `confirm_poll_s` for up to `confirm_window_s`. A door that stays
    shut is fired once more (`attempts=2`) and then reported jammed and taken out of service.
    An attempt in which the board could not be read at all is not repeated, since nobody knows
    whether the first one opened the door: the command ends as unknown (`BoardDidNotAnswer`).
    That is the board's fault, not the door's: the board raises one alert, its doors stay in
    service but are refused (`BoardNotAnswering`) and reported not answering while it is
    silent, and serve again as soon as a read of the board succeeds. Every command is
    journalled before it fires so a crash leaves it unfinished, and `start()` closes such
    commands as unknown without re-running them.

    `poll()` is one monitoring pass (`DoorMonitor` calls it every 500 ms); commands and polls
    are serialised, which is also what the boards need (one command on a bus at a time).
    """

    def __init__(
        self,
        boards: Mapping[str, LockBoard],
        compartments: Iterable[CompartmentWiring],
        *,
        journal: CommandJournal,
        events: DoorEventSink,
        clock: Clock | None = None,
        confirm_window_s: float = 2.0,
        confirm_poll_s: float = 0.05,
        attempts: int = 2,
        left_open_after_s: float = 60.0,
        out_of_service: Iterable[str] = (),
    ) -> None:
        if attempts < 1:
            raise ValueError("at least one attempt")
        self._boards = dict(boards)
        self._compartments: dict[str, _Compartment] = {}
        for wiring in compartments:
            board = self._boards.get(wiring.board)
            if board is None:
                raise ValueError(f"compartment {wiring.label!r}: no board {wiring.board!r}")
            if not 1 <= wiring.lock <= board.lock_count:
                raise ValueError(f"compartment {wiring.label!r}: no lock {wiring.lock}")
            if wiring.label in self._compartments:
                raise ValueError(f"compartment {wiring.label!r} wired twice")
            self._compartments[wiring.label] = _Compartment(wiring)
        for label in out_of_service:
            self._compartment(label).in_service = False
        self._journal = journal
        self._events = events
        self._clock = clock or SystemClock()
        self.confirm_window_s = confirm_window_s
        self.confirm_poll_s = confirm_poll_s
        self.attempts = attempts
        self.left_open_after_s = left_open_after_s
        self._mutex = threading.RLock()
        self._unreachable: dict[str, str] = {}
        # The labels behind those boards, replaced whole whenever the set changes: read without
        # the mutex (`silent_labels`).
        self._silent: frozenset[str] = frozenset()
        self._started = False

    # Lifecycle

    def start(self) -> dict[str, DoorState | None]:
        """Finish commands left in flight as unknown, release relays, read every door."""
        with self._mutex:
            for intent in self._journal.unfinished():
                self._journal.record_outcome(intent.command_id, CommandOutcome.UNKNOWN)
                self._emit(
                    CommandOutcomeUnknown(
                        at=self._clock.now(),
                        label=intent.label,
                        command_id=intent.command_id,
                        reason="in flight when the node stopped; not re-run",
                    )
                )
            for name, board in self._boards.items():
                try:
                    board.release_all()
                except LockBoardError as exc:
                    self._board_failed(name, exc)
            self._poll_locked()
            self._started = True
            return {label: c.door for label, c in self._compartments.items()}

    def poll(self) -> None:
        """Read every board once and raise whatever alerts the door states call for."""
        with self._mutex:
            self._poll_locked()

    # Commands

    def open_door(
        self,
        label: str,
        *,
        reason: str = "",
        allow_out_of_service: bool = False,
        command_id: str | None = None,
    ) -> UnlockOutcome:
        """Fire a compartment's lock and confirm its door opened (see the class docstring).

        A caller may choose the `command_id` so that it can write down, before the door opens,
        which business operation the command belongs to (and settle it after a crash).
        """
        with self._mutex:
            if not self._started:
                raise ControllerNotStarted("call start() before opening doors")
            compartment = self._compartment(label)
            if not compartment.in_service and not allow_out_of_service:
                raise CompartmentUnavailable(f"compartment {label!r} is out of service")
            wiring = compartment.wiring
            # Asked afresh rather than refused on the last poll: it may just have come back.
            if wiring.board in self._unreachable and not self._read_board(wiring.board):
                raise BoardNotAnswering(
                    f"compartment {label!r}: board {wiring.board!r} does not answer"
                )
            intent = UnlockIntent(
                command_id=command_id or uuid.uuid4().hex,
                label=label,
                board=wiring.board,
                lock=wiring.lock,
                requested_at=self._clock.now(),
                reason=reason,
            )
            self._journal.record_intent(intent)
            compartment.command_in_flight = True
            try:
                outcome = self._run(compartment, intent)
            finally:
                compartment.command_in_flight = False
            self._emit(outcome)
            if isinstance(outcome, DoorOpened):
                self._journal.record_outcome(intent.command_id, CommandOutcome.OPENED)
            elif isinstance(outcome, DoorJammed):
                self._journal.record_outcome(intent.command_id, CommandOutcome.JAMMED)
                self._set_service(compartment, False, "jammed: door did not open")
            else:
                self._journal.record_outcome(intent.command_id, CommandOutcome.UNKNOWN)
                compartment.fired_unseen = True
            return outcome

    def mark_out_of_service(self, label: str, reason: str) -> None:
        with self._mutex:
            self._set_service(self._compartment(label), False, reason)

    def return_to_service(self, label: str) -> None:
        with self._mutex:
            self._set_service(self._compartment(label), True, "")

    def status(self, label: str) -> CompartmentStatus:
        with self._mutex:
            compartment = self._compartment(label)
            since = compartment.open_since
            return CompartmentStatus(
                label=label,
                door=compartment.door,
                in_service=compartment.in_service,
                open_for_s=None if since is None else self._clock.monotonic() - since,
                board_answering=compartment.wiring.board not in self._unreachable,
            )

    def silent_labels(self) -> frozenset[str]:
        """Compartments whose board does not answer: not to be offered to anyone for now.

        Takes no lock, so a flow may ask inside a store transaction: the monitor holds the
        mutex while it writes what it saw to the store, and a flow holding the store's write
        lock while waiting for the mutex would stall both until SQLite's busy timeout.
        """
        return self._silent

    def _labels_behind(self, boards: Mapping[str, str]) -> frozenset[str]:
        return frozenset(
            label
            for label, compartment in self._compartments.items()
            if compartment.wiring.board in boards
        )

    def statuses(self) -> list[CompartmentStatus]:
        with self._mutex:
            return [self.status(label) for label in self._compartments]

    # Internals

    def _run(self, compartment: _Compartment, intent: UnlockIntent) -> UnlockOutcome:
        wiring = compartment.wiring
        board = self._boards[wiring.board]
        was_open = compartment.door is DoorState.OPEN
        first_fired = self._clock.monotonic()
        errors: list[str] = []
        for attempt_number in range(1, self.attempts + 1):
            # A lost unlock reply does not say whether the relay fired: go on and read the door.
            try:
                board.unlock(wiring.lock)
            except LockBoardError as exc:
                errors.append(f"unlock: {exc}")
            attempt = self._confirm(wiring)
            errors.extend(attempt.errors)
            if attempt.opened:
                return DoorOpened(
                    at=self._clock.now(),
                    label=wiring.label,
                    command_id=intent.command_id,
                    attempts=attempt_number,
                    confirmed_after_s=self._clock.monotonic() - first_fired,
                    was_open=was_open,
                )
            if not attempt.read_any:
                return BoardDidNotAnswer(
                    at=self._clock.now(),
                    label=wiring.label,
                    command_id=intent.command_id,
                    reason="door state unreadable after firing: " + "; ".join(errors),
                    board=wiring.board,
                )
        return DoorJammed(
            at=self._clock.now(),
            label=wiring.label,
            command_id=intent.command_id,
            attempts=self.attempts,
        )

    def _confirm(self, wiring: CompartmentWiring) -> _Attempt:
        attempt = _Attempt()
        deadline = self._clock.monotonic() + self.confirm_window_s
        while True:
            states = self._read(wiring.board, attempt.errors)
            if states is not None:
                attempt.read_any = True
                self._observe(wiring.board, states)
                if states.get(wiring.lock) is DoorState.OPEN:
                    attempt.opened = True
                    return attempt
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                return attempt
            self._clock.sleep(min(self.confirm_poll_s, remaining))

    def _poll_locked(self) -> None:
        for name in self._boards:
            self._read_board(name)

    def _read_board(self, name: str) -> bool:
        """Read one board's doors and take in what they say; False if it did not answer."""
        states = self._read(name, [])
        if states is None:
            return False
        self._observe(name, states)
        return True

    def _read(self, board_name: str, errors: list[str]) -> Mapping[int, DoorState] | None:
        try:
            states = self._boards[board_name].read_doors()
        except LockBoardError as exc:
            errors.append(f"read: {exc}")
            self._board_failed(board_name, exc)
            return None
        if self._unreachable.pop(board_name, None) is not None:
            self._silent = self._labels_behind(self._unreachable)
            self._emit(BoardRecovered(at=self._clock.now(), board=board_name))
        return states

    def _board_failed(self, board_name: str, exc: LockBoardError) -> None:
        if board_name not in self._unreachable:
            self._unreachable[board_name] = str(exc)
            self._silent = self._labels_behind(self._unreachable)
            self._emit(BoardUnreachable(at=self._clock.now(), board=board_name, detail=str(exc)))

    def _observe(self, board_name: str, states: Mapping[int, DoorState]) -> None:
        now = self._clock.monotonic()
        for compartment in self._compartments.values():
            wiring = compartment.wiring
            if wiring.board != board_name or wiring.lock not in states:
                continue
            state = states[wiring.lock]
            previous = compartment.door
            compartment.door = state
            if state is DoorState.OPEN:
                if previous is not DoorState.OPEN:
                    compartment.open_since = now
                    compartment.left_open_reported = False
                    # Unknown before (first read): nobody knows why it is open, but the
                    # left-open alert below still fires if it stays that way. A lock fired
                    # while its board was silent explains an open found when it answers.
                    explained = compartment.command_in_flight or compartment.fired_unseen
                    if previous is DoorState.CLOSED and not explained:
                        self._emit(UncommandedOpen(at=self._clock.now(), label=wiring.label))
                self._check_left_open(compartment, now)
            else:
                if previous is DoorState.OPEN and compartment.open_since is not None:
                    self._emit(
                        DoorClosed(
                            at=self._clock.now(),
                            label=wiring.label,
                            open_for_s=now - compartment.open_since,
                        )
                    )
                compartment.open_since = None
                compartment.left_open_reported = False
            compartment.fired_unseen = False

    def _check_left_open(self, compartment: _Compartment, now: float) -> None:
        since = compartment.open_since
        if compartment.left_open_reported or since is None:
            return
        if now - since >= self.left_open_after_s:
            compartment.left_open_reported = True
            self._emit(
                DoorLeftOpen(
                    at=self._clock.now(), label=compartment.wiring.label, open_for_s=now - since
                )
            )

    def _set_service(self, compartment: _Compartment, in_service: bool, reason: str) -> None:
        if compartment.in_service == in_service:
            return
        compartment.in_service = in_service
        label = compartment.wiring.label
        if in_service:
            self._emit(ReturnedToService(at=self._clock.now(), label=label))
        else:
            self._emit(MarkedOutOfService(at=self._clock.now(), label=label, reason=reason))

    def _compartment(self, label: str) -> _Compartment:
        try:
            return self._compartments[label]
        except KeyError:
            raise UnknownCompartment(f"no compartment {label!r}") from None

    def _emit(self, event: DoorEvent) -> None:
        self._events.emit(event)


class DoorMonitor:
    """Calls `controller.poll()` every `interval_s` from a background thread until stopped.

    About every 500 ms: slower polling can miss a whole open-remove-close.
    """

    def __init__(self, controller: DoorController, *, interval_s: float = 0.5) -> None:
        self._controller = controller
        self.interval_s = interval_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DoorMonitor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("monitor already running")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="door-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        thread.join(timeout_s)
        if thread.is_alive():
            raise RuntimeError("door monitor did not stop")

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._controller.poll()
            except Exception:
                # Board errors are handled inside poll(); anything else is a bug, but a dead
                # monitor would stop every door alert, so log it and keep watching.
                logger.exception("door monitor poll failed")
            self._stopping.wait(self.interval_s)
