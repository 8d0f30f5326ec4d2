"""The door controller's command journal and event sink, kept in the node's SQLite store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, Engine, insert, select, update

from locker_node.domain.crashpoints import NO_CRASHES, CrashPoints
from locker_node.domain.doors import (
    BoardRecovered,
    BoardUnreachable,
    CommandOutcome,
    CommandOutcomeUnknown,
    DoorClosed,
    DoorEvent,
    DoorJammed,
    DoorLeftOpen,
    DoorOpened,
    MarkedOutOfService,
    ReturnedToService,
    UncommandedOpen,
    UnlockIntent,
)
from locker_node.domain.lifecycle import EventType
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from locker_node.store.schema import unlock_commands

SYSTEM = "system:door-controller"


class SqliteCommandJournal:
    """A durable `CommandJournal`: every intent is committed before its lock fires."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime],
        crash: CrashPoints = NO_CRASHES,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._crash = crash

    def record_intent(self, intent: UnlockIntent) -> None:
        with transaction(self._engine) as conn:
            conn.execute(
                insert(unlock_commands).values(
                    command_id=intent.command_id,
                    label=intent.label,
                    board=intent.board,
                    lock=intent.lock,
                    reason=intent.reason[:200],
                    requested_at=intent.requested_at,
                )
            )
        self._crash.reach("unlock.intent_recorded", intent.reason)

    def record_outcome(self, command_id: str, outcome: CommandOutcome) -> None:
        with transaction(self._engine) as conn:
            conn.execute(
                update(unlock_commands)
                .where(
                    unlock_commands.c.command_id == command_id,
                    unlock_commands.c.outcome.is_(None),
                )
                .values(outcome=str(outcome), finished_at=self._clock())
            )
        if self._crash.armed:
            self._crash.reach("unlock.outcome_recorded", self._reason(command_id))

    def _reason(self, command_id: str) -> str:
        with transaction(self._engine) as conn:
            reason = conn.execute(
                select(unlock_commands.c.reason).where(unlock_commands.c.command_id == command_id)
            ).scalar_one_or_none()
        return reason or ""

    def unfinished(self) -> list[UnlockIntent]:
        with transaction(self._engine) as conn:
            rows = conn.execute(
                select(unlock_commands)
                .where(unlock_commands.c.outcome.is_(None))
                .order_by(unlock_commands.c.requested_at)
            ).all()
        return [
            UnlockIntent(
                command_id=row.command_id,
                label=row.label,
                board=row.board,
                lock=row.lock,
                requested_at=row.requested_at,
                reason=row.reason,
            )
            for row in rows
        ]

    def outcome(self, command_id: str) -> CommandOutcome | None:
        """The recorded outcome; None if the command never got as far as its intent, or has
        no outcome yet."""
        with transaction(self._engine) as conn:
            row = conn.execute(
                select(unlock_commands.c.outcome).where(unlock_commands.c.command_id == command_id)
            ).first()
        if row is None or row.outcome is None:
            return None
        return CommandOutcome(row.outcome)


class StoreDoorEventSink:
    """Writes door events to the audit log, compartment service state and the outbox."""

    def __init__(self, engine: Engine, *, bank_id: str) -> None:
        self._engine = engine
        self._bank_id = bank_id

    def emit(self, event: DoorEvent) -> None:
        with transaction(self._engine) as conn:
            self._record(conn, event)

    def _record(self, conn: Connection, event: DoorEvent) -> None:
        at = event.at
        if isinstance(event, DoorOpened):
            repo.append_audit(
                conn,
                at=at,
                actor=SYSTEM,
                action="door_opened",
                compartment=event.label,
                command_id=event.command_id,
                detail={
                    "attempts": event.attempts,
                    "confirmed_after_s": round(event.confirmed_after_s, 3),
                    "was_open": event.was_open,
                },
            )
        elif isinstance(event, DoorJammed):
            repo.append_audit(
                conn,
                at=at,
                actor=SYSTEM,
                action="door_jammed",
                compartment=event.label,
                command_id=event.command_id,
                detail={"attempts": event.attempts},
            )
        elif isinstance(event, CommandOutcomeUnknown):
            repo.append_audit(
                conn,
                at=at,
                actor=SYSTEM,
                action="door_outcome_unknown",
                compartment=event.label,
                command_id=event.command_id,
                reason=event.reason,
            )
        elif isinstance(event, DoorClosed):
            repo.append_audit(
                conn,
                at=at,
                actor=SYSTEM,
                action="door_closed",
                compartment=event.label,
                detail={"open_for_s": round(event.open_for_s, 1)},
            )
        elif isinstance(event, MarkedOutOfService):
            if repo.set_service(conn, event.label, False, event.reason, at):
                repo.append_audit(
                    conn,
                    at=at,
                    actor=SYSTEM,
                    action="out_of_service",
                    compartment=event.label,
                    reason=event.reason,
                )
                repo.append_event(
                    conn,
                    EventType.COMPARTMENT_OUT_OF_SERVICE,
                    {"compartment": event.label, "reason": event.reason},
                    bank_id=self._bank_id,
                    now=at,
                )
        elif isinstance(event, ReturnedToService):
            if repo.set_service(conn, event.label, True, "", at):
                repo.append_audit(
                    conn, at=at, actor=SYSTEM, action="in_service", compartment=event.label
                )
                repo.append_event(
                    conn,
                    EventType.COMPARTMENT_IN_SERVICE,
                    {"compartment": event.label},
                    bank_id=self._bank_id,
                    now=at,
                )
        elif isinstance(event, UncommandedOpen | DoorLeftOpen):
            uncommanded = isinstance(event, UncommandedOpen)
            action = "uncommanded_open" if uncommanded else "door_left_open"
            data: dict[str, object] = {"compartment": event.label}
            if isinstance(event, DoorLeftOpen):
                data["open_for_s"] = round(event.open_for_s, 1)
            repo.append_audit(conn, at=at, actor=SYSTEM, action=action, compartment=event.label)
            repo.append_event(
                conn,
                EventType.DOOR_FORCED_OPEN if uncommanded else EventType.DOOR_LEFT_OPEN,
                data,
                bank_id=self._bank_id,
                now=at,
            )
        elif isinstance(event, BoardUnreachable):
            repo.append_audit(
                conn,
                at=at,
                actor=SYSTEM,
                action="board_unreachable",
                reason=event.detail,
                detail={"board": event.board},
            )
            repo.append_event(
                conn,
                EventType.BOARD_UNREACHABLE,
                {"board": event.board, "detail": event.detail},
                bank_id=self._bank_id,
                now=at,
            )
        elif isinstance(event, BoardRecovered):
            repo.append_audit(
                conn, at=at, actor=SYSTEM, action="board_recovered", detail={"board": event.board}
            )
