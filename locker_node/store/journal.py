"""The door controller's command journal, kept in the node's SQLite store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, insert, select, update

from locker_node.domain.crashpoints import NO_CRASHES, CrashPoints
from locker_node.domain.doors import (
    CommandOutcome,
    UnlockIntent,
)
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
