"""An in-process simulated lock board for development and tests: no serial port, same faults."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from locker_node.hardware.board import (
    BoardProtocolError,
    BoardTimeout,
    BoardUnavailable,
    DoorState,
    check_lock,
)
from locker_node.hardware.simulator import Fault, SimulatedBoardModel


class SimulatedLockBoard:
    """A `LockBoard` over a `SimulatedBoardModel`, driven directly instead of through a pty.

    Doors open `door_delay_s` after an unlock and stay open until `close_door()` (the simulated
    person). Reply faults map onto the errors a serial driver would raise for them.
    """

    def __init__(
        self,
        *,
        name: str = "simulated",
        lock_count: int = 16,
        door_delay_s: float = 0.05,
        auto_close_after_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        model: SimulatedBoardModel | None = None,
    ) -> None:
        self._name = name
        self.model = model or SimulatedBoardModel(
            lock_count,
            door_delay_s=door_delay_s,
            auto_close_after_s=auto_close_after_s,
            clock=clock,
        )
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def lock_count(self) -> int:
        return self.model.lock_count

    def unlock(self, lock: int) -> None:
        check_lock(self._name, lock, self.lock_count)
        self._ensure_open()
        # Like a Kerong board: the command gets no answer, so a reset just loses it.
        if self.model.accept_command():
            self.model.fire(lock)

    def read_doors(self) -> Mapping[int, DoorState]:
        self._ensure_open()
        if not self.model.accept_command():
            raise BoardTimeout(f"board {self._name!r} did not answer (rebooting)")
        faults = self.model.take_reply_faults()
        if Fault.NO_REPLY in faults:
            raise BoardTimeout(f"board {self._name!r} did not answer")
        if Fault.BAD_CHECKSUM in faults:
            raise BoardProtocolError(f"board {self._name!r}: checksum mismatch")
        if Fault.WRONG_ADDRESS in faults:
            raise BoardProtocolError(f"board {self._name!r}: reply for another address")
        return self.model.door_states()

    def release_all(self) -> None:
        self._ensure_open()

    def close(self) -> None:
        self._closed = True

    # The simulated person and fault controls

    def close_door(self, lock: int) -> None:
        self.model.close_door(lock)

    def force_open(self, lock: int) -> None:
        self.model.force_open(lock)

    def set_fault(self, fault: Fault, *, lock: int | None = None, times: int | None = None) -> None:
        self.model.set_fault(fault, lock=lock, times=times)

    def clear_faults(self, *, lock: int | None = None) -> None:
        self.model.clear_faults(lock=lock)

    def fired(self, lock: int) -> int:
        return self.model.fired(lock)

    def _ensure_open(self) -> None:
        if self._closed:
            raise BoardUnavailable(f"board {self._name!r} is closed")

    def __repr__(self) -> str:
        return f"SimulatedLockBoard(name={self._name!r}, locks={self.lock_count})"
