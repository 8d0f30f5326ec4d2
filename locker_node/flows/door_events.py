"""What the door controller reports, kept: audit rows, compartment service state, and events.

The controller emits plain door facts; this sink decides what each means for the bank: a jam
is only audited, a compartment out of service is stored and reported, an open that no command
explains is reported as a possible forced entry.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from locker_node.domain.doors import (
    BoardDidNotAnswer,
    BoardRecovered,
    BoardUnreachable,
    CommandOutcomeUnknown,
    DoorClosed,
    DoorEvent,
    DoorJammed,
    DoorLeftOpen,
    DoorOpened,
    MarkedOutOfService,
    ReturnedToService,
    UncommandedOpen,
)
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from locker_node.store.outbox import append_audit, record
from locker_wire import events

ACTOR = "system:door-controller"


class DoorEventRecorder:
    """The door controller's `EventSink`: one store transaction per door event."""

    def __init__(self, engine: Engine, *, bank_id: str) -> None:
        self._engine = engine
        self._bank_id = bank_id

    def emit(self, event: DoorEvent) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is None:
            return
        with transaction(self._engine) as conn:
            handler(self, conn, event)

    def _audit(self, conn: Connection, at: datetime, action: str, **fields: Any) -> None:
        append_audit(conn, at=at, actor=ACTOR, action=action, **fields)

    def _record(
        self, conn: Connection, event: events.NodeEventModel, at: datetime, **audit: Any
    ) -> None:
        record(conn, event, at=at, bank_id=self._bank_id, actor=ACTOR, **audit)

    def _opened(self, conn: Connection, event: DoorOpened) -> None:
        detail = {
            "attempts": event.attempts,
            "confirmed_after_s": round(event.confirmed_after_s, 3),
            "was_open": event.was_open,
        }
        self._audit(
            conn,
            event.at,
            "door_opened",
            compartment=event.label,
            command_id=event.command_id,
            detail=detail,
        )

    def _jammed(self, conn: Connection, event: DoorJammed) -> None:
        self._audit(
            conn,
            event.at,
            "door_jammed",
            compartment=event.label,
            command_id=event.command_id,
            detail={"attempts": event.attempts},
        )

    def _unknown(self, conn: Connection, event: CommandOutcomeUnknown) -> None:
        self._audit(
            conn,
            event.at,
            "door_outcome_unknown",
            compartment=event.label,
            command_id=event.command_id,
            reason=event.reason,
            detail={"board": event.board} if isinstance(event, BoardDidNotAnswer) else None,
        )

    def _closed(self, conn: Connection, event: DoorClosed) -> None:
        detail = {"open_for_s": round(event.open_for_s, 1)}
        self._audit(conn, event.at, "door_closed", compartment=event.label, detail=detail)

    def _out_of_service(self, conn: Connection, event: MarkedOutOfService) -> None:
        if repo.set_service(conn, event.label, False, event.reason, event.at):
            typed = events.CompartmentOutOfService(compartment=event.label, reason=event.reason)
            self._record(conn, typed, event.at, reason=event.reason)

    def _in_service(self, conn: Connection, event: ReturnedToService) -> None:
        if repo.set_service(conn, event.label, True, "", event.at):
            self._record(conn, events.CompartmentInService(compartment=event.label), event.at)

    def _uncommanded(self, conn: Connection, event: UncommandedOpen) -> None:
        self._record(conn, events.DoorForcedOpen(compartment=event.label), event.at)

    def _left_open(self, conn: Connection, event: DoorLeftOpen) -> None:
        typed = events.DoorLeftOpen(compartment=event.label, open_for_s=round(event.open_for_s, 1))
        self._record(conn, typed, event.at)

    def _board_unreachable(self, conn: Connection, event: BoardUnreachable) -> None:
        typed = events.BoardUnreachable(board=event.board, detail=event.detail)
        self._record(conn, typed, event.at, reason=event.detail, detail={"board": event.board})

    def _board_recovered(self, conn: Connection, event: BoardRecovered) -> None:
        self._audit(conn, event.at, "board_recovered", detail={"board": event.board})


_HANDLERS: dict[type[DoorEvent], Callable[[DoorEventRecorder, Connection, Any], None]] = {
    DoorOpened: DoorEventRecorder._opened,
    DoorJammed: DoorEventRecorder._jammed,
    CommandOutcomeUnknown: DoorEventRecorder._unknown,
    BoardDidNotAnswer: DoorEventRecorder._unknown,
    DoorClosed: DoorEventRecorder._closed,
    MarkedOutOfService: DoorEventRecorder._out_of_service,
    ReturnedToService: DoorEventRecorder._in_service,
    UncommandedOpen: DoorEventRecorder._uncommanded,
    DoorLeftOpen: DoorEventRecorder._left_open,
    BoardUnreachable: DoorEventRecorder._board_unreachable,
    BoardRecovered: DoorEventRecorder._board_recovered,
}
