"""Helpers shared by the locker node's hardware, domain and contract tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from locker_node.hardware.kerong import KerongCu16Board, KerongCu48Board
from locker_node.hardware.serial_bus import SerialLockBoard
from locker_node.hardware.simulator import BoardSimulator, PtyBoardServer
from locker_node.hardware.xor import XorBoard
from tests.clock import FakeClock

SERIAL_BOARDS: dict[str, type[SerialLockBoard]] = {
    "kerong-cu16": KerongCu16Board,
    "kerong-cu48": KerongCu48Board,
    "xor": XorBoard,
}


def wait_until(
    condition: Callable[[], bool], *, timeout_s: float = 5.0, what: str = "condition"
) -> None:
    """Wait for `condition` with a deadline; never a bare sleep standing in for an assertion."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.002)


# The node tests' time: wall clock 1000 s into 2025, monotonic clock at 1000 s.
CLOCK_START = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=1000)
MONOTONIC_START = 1000.0


def node_clock() -> FakeClock:
    return FakeClock(start=CLOCK_START, monotonic_start=MONOTONIC_START)


@contextmanager
def pty_board(
    protocol: str,
    *,
    address: int | None = None,
    lock_count: int = 8,
    lock_closed_bit: int = 1,
    door_delay_s: float = 0.02,
    reply_header: int = 0x8A,
    reply_timeout_s: float = 0.25,
    unlock_timeout_s: float = 0.4,
) -> Iterator[tuple[BoardSimulator, SerialLockBoard]]:
    """A simulator on a pty and the real driver on its slave path, through real pyserial."""
    if address is None:
        address = 1 if protocol == "xor" else 0
    simulator = BoardSimulator(
        protocol,
        address=address,
        lock_count=lock_count,
        door_delay_s=door_delay_s,
        lock_closed_bit=lock_closed_bit,
        reply_header=reply_header,
    )
    with PtyBoardServer([simulator]) as server:
        board: SerialLockBoard
        if protocol == "xor":
            board = XorBoard(
                server.path,
                name=protocol,
                address=address,
                lock_count=lock_count,
                lock_closed_bit=lock_closed_bit,
                reply_timeout_s=reply_timeout_s,
                unlock_timeout_s=unlock_timeout_s,
            )
        else:
            board = SERIAL_BOARDS[protocol](
                server.path,
                name=protocol,
                address=address,
                lock_count=lock_count,
                lock_closed_bit=lock_closed_bit,
                reply_timeout_s=reply_timeout_s,
            )
        try:
            yield simulator, board
        finally:
            board.close()
