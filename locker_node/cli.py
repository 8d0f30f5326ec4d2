"""Command line of a locker node: `locker-node`."""

from __future__ import annotations

import enum
import signal
import sys
import threading
from types import FrameType
from typing import Annotated

import typer

from locker_node.hardware.simulator import (
    DEFAULT_LOCKS,
    BoardSimulator,
    PtyBoardServer,
    run_control_command,
)
from locker_node.hardware.xor import READ_HEADER, UNLOCK_HEADER

app = typer.Typer(no_args_is_help=True, help="Locker bank node: kiosk, door controller and sync.")


@app.callback()
def _root() -> None:
    """Locker bank node."""


class SimulatedProtocol(enum.StrEnum):
    KERONG_CU16 = "kerong-cu16"
    KERONG_CU48 = "kerong-cu48"
    XOR = "xor"


class ReplyHeader(enum.StrEnum):
    H8A = "8a"
    H80 = "80"


@app.command("simulate-board")
def simulate_board(
    protocol: Annotated[SimulatedProtocol, typer.Option(help="protocol the board speaks")],
    pty: Annotated[
        bool, typer.Option("--pty", help="serve on a new pseudo-terminal (required)")
    ] = False,
    address: Annotated[
        int | None, typer.Option(help="board address on the bus (default 0; xor 1)", min=0)
    ] = None,
    locks: Annotated[
        int | None, typer.Option(help="number of locks (default 16, 48 or 24)", min=1)
    ] = None,
    door_delay_ms: Annotated[
        int, typer.Option(help="time from a relay pulse to the door reading open", min=0)
    ] = 50,
    lock_closed_bit: Annotated[
        int,
        typer.Option(help="what a lock feedback bit of 1 means: 1 closed, 0 open", min=0, max=1),
    ] = 1,
    auto_close_ms: Annotated[
        int | None,
        typer.Option(help="the simulated person closes a door this long after it opens", min=1),
    ] = None,
    reply_header: Annotated[
        ReplyHeader, typer.Option(help="xor: header of unlock replies (boards differ)")
    ] = ReplyHeader.H8A,
    unlock_reply_delay_ms: Annotated[
        int, typer.Option(help="xor: delay before the unlock reply (real boards: 500-1000)", min=0)
    ] = 0,
    pace_baudrate: Annotated[
        int | None,
        typer.Option(help="act on commands and answer only after their time on a line this fast"),
    ] = None,
) -> None:
    """Play a lock board on a pseudo-terminal until killed.

    Prints the pty slave path (e.g. /dev/pts/7) as the first line on stdout: a board's port.

    Doors open --door-delay-ms after an unlock and stay open until closed.

    \b
    Control channel: one command per line on stdin, answered on stdout
    (the answer's last line is "ok" or "error: ..."):
      close N|all           the simulated person closes door N (or every door)
      force-open N          door N opens with no command (forced entry)
      fault jam N           lock N fires but its door never opens
      fault left-open N     nobody closes door N, even with --auto-close-ms
      fault no-reply [K]    answer nothing (for K commands; default until cleared)
      fault bad-checksum [K]  answer with a corrupted checksum
      fault wrong-address [K] answer as another board
      fault split [K]       answer one byte at a time
      fault garbage [K]     send line noise before each answer
      fault reset           reboot on the next command: drop it, release relays
      clear [N]             clear all faults (or lock N's)
      status                door states, relay pulses and active faults
    """
    if not pty:
        raise typer.BadParameter("only --pty is supported", param_hint="--pty")
    name = protocol.value
    count = locks if locks is not None else DEFAULT_LOCKS[name]
    try:
        simulator = BoardSimulator(
            name,
            address=address if address is not None else (1 if name == "xor" else 0),
            lock_count=count,
            door_delay_s=door_delay_ms / 1000,
            lock_closed_bit=lock_closed_bit,
            auto_close_after_s=None if auto_close_ms is None else auto_close_ms / 1000,
            unlock_reply_delay_s=unlock_reply_delay_ms / 1000,
            reply_header=UNLOCK_HEADER if reply_header is ReplyHeader.H8A else READ_HEADER,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with PtyBoardServer([simulator], pace_baudrate=pace_baudrate) as server:
        print(server.path, flush=True)
        try:
            for line in sys.stdin:
                for answer in run_control_command(simulator, line):
                    print(answer, flush=True)
            # stdin closed (e.g. started in the background): keep serving until killed.
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
