"""The `LockBoard` seam every lock-control backend implements, and the hardware error hierarchy."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Protocol, runtime_checkable


class DoorState(enum.StrEnum):
    """What a door sensor (or lock feedback switch) reports."""

    OPEN = "open"
    CLOSED = "closed"


@runtime_checkable
class LockBoard(Protocol):
    """One lock-control board: fire a lock, read every door, release everything.

    Locks are numbered from 1, as printed on the board and written in the node's config.
    Firing a lock is a command; whether the door opened is a separate fact read with
    `read_doors()`. Implementations are safe to call from several threads.
    """

    @property
    def name(self) -> str:
        """The board's name in the node config."""
        ...

    @property
    def lock_count(self) -> int:
        """How many locks the board drives; valid locks are 1..lock_count."""
        ...

    def unlock(self, lock: int) -> None:
        """Fire one lock. Returns once the command has left the node (or the relay has pulsed).

        Raises `UnknownLock` for a lock outside 1..lock_count, without touching the hardware.
        """
        ...

    def read_doors(self) -> Mapping[int, DoorState]:
        """Read the state of every door on the board, keyed by lock number."""
        ...

    def release_all(self) -> None:
        """De-energise every relay the node drives itself (a no-op for boards that time
        their own pulses); called on start so that nothing stays energised after a crash."""
        ...

    def close(self) -> None:
        """Release relays and the underlying port or pins. Idempotent."""
        ...


class LockBoardError(Exception):
    """Base of every error raised by the hardware layer."""


class UnknownLock(LockBoardError, LookupError):
    """A lock number the board does not have."""

    def __init__(self, board: str, lock: int, lock_count: int) -> None:
        super().__init__(f"board {board!r} has locks 1..{lock_count}, not {lock}")
        self.board = board
        self.lock = lock


class BoardTimeout(LockBoardError, TimeoutError):
    """The board did not answer within its reply timeout."""


class BoardProtocolError(LockBoardError):
    """The board answered, but nothing it sent was a valid reply to the command."""


class BoardUnavailable(LockBoardError, ConnectionError):
    """The port, bus or pins could not be opened or used, or the board is already closed."""


def check_lock(board: str, lock: int, lock_count: int) -> int:
    """Return the 0-based index of `lock`, or raise `UnknownLock`."""
    if isinstance(lock, bool) or not isinstance(lock, int) or not 1 <= lock <= lock_count:
        raise UnknownLock(board, lock, lock_count)
    return lock - 1


def door_state(bit: int, closed_bit: int) -> DoorState:
    """Turn one feedback bit into a door state, given what a set bit means on this installation."""
    return DoorState.CLOSED if bool(bit) == bool(closed_bit) else DoorState.OPEN
