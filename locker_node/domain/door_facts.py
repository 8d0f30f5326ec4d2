"""What the door controller works with and reports: its clock, the journal of unlock commands,
and the door events it emits."""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class CommandOutcome(enum.StrEnum):
    OPENED = "opened"
    JAMMED = "jammed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class UnlockIntent:
    """An unlock the controller is about to fire, written down before it fires."""

    command_id: str
    label: str
    board: str
    lock: int
    requested_at: datetime
    reason: str = ""


class CommandJournal(Protocol):
    """Durable record of unlock commands, so that one in flight at a crash is never re-run."""

    def record_intent(self, intent: UnlockIntent) -> None: ...

    def record_outcome(self, command_id: str, outcome: CommandOutcome) -> None: ...

    def unfinished(self) -> list[UnlockIntent]:
        """Intents with no outcome yet, oldest first."""
        ...


class InMemoryCommandJournal:
    """A `CommandJournal` in memory, for tests and for nodes without a store yet."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self.intents: dict[str, UnlockIntent] = {}
        self.outcomes: dict[str, CommandOutcome] = {}

    def record_intent(self, intent: UnlockIntent) -> None:
        with self._mutex:
            self.intents[intent.command_id] = intent

    def record_outcome(self, command_id: str, outcome: CommandOutcome) -> None:
        with self._mutex:
            self.outcomes[command_id] = outcome

    def unfinished(self) -> list[UnlockIntent]:
        with self._mutex:
            return [i for c, i in self.intents.items() if c not in self.outcomes]


@dataclass(frozen=True, kw_only=True)
class DoorEvent:
    at: datetime


@dataclass(frozen=True, kw_only=True)
class DoorOpened(DoorEvent):
    """The sensor confirmed the door open after its lock fired."""

    label: str
    command_id: str
    attempts: int
    confirmed_after_s: float
    was_open: bool = False  # the sensor already read open before firing: suspect the sensor


@dataclass(frozen=True, kw_only=True)
class DoorJammed(DoorEvent):
    """The lock fired on every attempt and the door never read open."""

    label: str
    command_id: str
    attempts: int


@dataclass(frozen=True, kw_only=True)
class CommandOutcomeUnknown(DoorEvent):
    """Nobody can tell whether the door opened: it is finished as unknown, never re-run."""

    label: str
    command_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class BoardDidNotAnswer(CommandOutcomeUnknown):
    """The board answered nothing while the door was to be confirmed: a fault of the board,
    not of the door. It may have fired the lock all the same, so the command is not re-run."""

    board: str


@dataclass(frozen=True, kw_only=True)
class DoorClosed(DoorEvent):
    label: str
    open_for_s: float


@dataclass(frozen=True, kw_only=True)
class DoorLeftOpen(DoorEvent):
    label: str
    open_for_s: float


@dataclass(frozen=True, kw_only=True)
class UncommandedOpen(DoorEvent):
    """A door opened with no command behind it: possible forced entry."""

    label: str


@dataclass(frozen=True, kw_only=True)
class MarkedOutOfService(DoorEvent):
    label: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class ReturnedToService(DoorEvent):
    label: str


@dataclass(frozen=True, kw_only=True)
class BoardUnreachable(DoorEvent):
    board: str
    detail: str


@dataclass(frozen=True, kw_only=True)
class BoardRecovered(DoorEvent):
    board: str


UnlockOutcome = DoorOpened | DoorJammed | CommandOutcomeUnknown
E = TypeVar("E", bound=DoorEvent)


class DoorEventSink(Protocol):
    """Where door events go: the audit log and the compartment state the store keeps."""

    def emit(self, event: DoorEvent) -> None: ...


class InMemoryEventSink:
    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._events: list[DoorEvent] = []

    def emit(self, event: DoorEvent) -> None:
        with self._mutex:
            self._events.append(event)

    @property
    def events(self) -> list[DoorEvent]:
        with self._mutex:
            return list(self._events)

    def of_type(self, kind: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, kind)]
