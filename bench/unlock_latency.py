"""Unlock latency over a pty to the board simulator: frame written, then door confirmed open."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from locker_node.boards import build_board
from locker_node.config import SerialBoardConfig
from locker_node.domain.doors import (
    CompartmentWiring,
    DoorController,
    DoorOpened,
    InMemoryCommandJournal,
    InMemoryEventSink,
)
from locker_node.hardware.board import DoorState
from locker_node.hardware.serial_bus import SerialBus, SerialPort, open_serial_port
from locker_node.hardware.simulator import wire_time_s

LOCKS = 8
# Bytes on the critical path, per protocol: the unlock frame (and the XOR board's answer to
# it), then the status request and reply that finally see the door open.
UNLOCK_FRAME_BYTES = {"kerong-cu16": 5, "kerong-cu48": 6, "xor": 5}
UNLOCK_REPLY_BYTES = {"kerong-cu16": 0, "kerong-cu48": 0, "xor": 5}
STATUS_BYTES = {"kerong-cu16": 5 + 9, "kerong-cu48": 6 + 18, "xor": 5 + 4 + (LOCKS + 7) // 8}


class TimedPort:
    """A pyserial port that notes when each write was flushed: the frame's last byte is out."""

    def __init__(self, inner: SerialPort) -> None:
        self.inner = inner
        self.flushed_at: list[float] = []

    @property
    def timeout(self) -> float | None:
        return self.inner.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self.inner.timeout = value

    @property
    def in_waiting(self) -> int:
        return self.inner.in_waiting

    def read(self, size: int = 1, /) -> bytes:
        return self.inner.read(size)

    def write(self, data: bytes, /) -> int | None:
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()
        self.flushed_at.append(time.perf_counter())

    def reset_input_buffer(self) -> None:
        self.inner.reset_input_buffer()

    def close(self) -> None:
        self.inner.close()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--protocol", default="kerong-cu16", choices=sorted(UNLOCK_FRAME_BYTES))
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--baudrate", type=int, default=None, help="default: the protocol's")
    parser.add_argument("--door-delay-ms", type=float, default=50.0)
    parser.add_argument(
        "--confirm-poll-ms",
        type=float,
        default=2.0,
        help="poll interval while awaiting confirmation (the idle monitor polls every 500 ms)",
    )
    args = parser.parse_args()
    protocol: str = args.protocol
    baudrate: int = args.baudrate or (9600 if protocol == "xor" else 19200)
    door_delay_s = args.door_delay_ms / 1000

    simulator = [
        sys.executable, "-m", "locker_node.cli", "simulate-board",
        "--protocol", protocol, "--pty", "--locks", str(LOCKS),
        "--door-delay-ms", str(round(args.door_delay_ms)),
        "--pace-baudrate", str(baudrate),
    ]  # fmt: skip
    with subprocess.Popen(
        simulator, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
    ) as process:
        if process.stdin is None or process.stdout is None:
            raise SystemExit("benchmark stopped: the simulator has no pipes")
        try:
            path = process.stdout.readline().strip()
            config = SerialBoardConfig(
                name="bench", protocol=protocol, port=path, baudrate=baudrate, locks=LOCKS
            )
            port = TimedPort(open_serial_port(path, baudrate=baudrate))
            bus = SerialBus(port, owns_port=True, close_when_unused=True, label=path)
            board = build_board(config, bus=bus)
            controller = DoorController(
                {"bench": board},
                [CompartmentWiring("B1", "bench", 1)],
                journal=InMemoryCommandJournal(),
                events=InMemoryEventSink(),
                confirm_window_s=2.0,
                confirm_poll_s=args.confirm_poll_ms / 1000,
            )
            controller.start()
            written: list[float] = []
            opened: list[float] = []
            try:
                for _ in range(args.iterations):
                    started = time.perf_counter()
                    outcome = controller.open_door("B1")
                    finished = time.perf_counter()
                    if not isinstance(outcome, DoorOpened) or outcome.attempts != 1:
                        raise SystemExit(f"unexpected outcome {outcome!r}")
                    first_flush = next(t for t in port.flushed_at if t >= started)
                    written.append(first_flush - started)
                    opened.append(finished - started)
                    process.stdin.write("close 1\n")
                    if process.stdout.readline().strip() != "ok":
                        raise SystemExit("simulator refused to close the door")
                    while controller.status("B1").door is not DoorState.CLOSED:
                        controller.poll()
            finally:
                board.close()
        finally:
            process.terminate()
            process.wait(timeout=10)

    wire_frame = wire_time_s(UNLOCK_FRAME_BYTES[protocol], baudrate)
    wire_confirm = wire_time_s(
        UNLOCK_FRAME_BYTES[protocol] + UNLOCK_REPLY_BYTES[protocol] + STATUS_BYTES[protocol],
        baudrate,
    )
    ms = 1000.0
    print(
        f"{protocol} at {baudrate} baud over a pty, {args.iterations} unlocks, "
        f"door delay {args.door_delay_ms:.0f} ms, confirm poll {args.confirm_poll_ms:g} ms"
    )
    print(
        f"  unlock frame written : p50 {percentile(written, 0.5) * ms:7.2f} ms   "
        f"p99 {percentile(written, 0.99) * ms:7.2f} ms   "
        f"(frame on the wire: {wire_frame * ms:.2f} ms, not paced by a pty)"
    )
    print(
        f"  door opened confirmed: p50 {percentile(opened, 0.5) * ms:7.2f} ms   "
        f"p99 {percentile(opened, 0.99) * ms:7.2f} ms   "
        f"(wire on the path: {wire_confirm * ms:.2f} ms, door delay {door_delay_s * ms:.0f} ms)"
    )
    share = percentile(opened, 0.99) - wire_confirm - door_delay_s
    verdict = "within" if share < 0.020 else "OVER"
    print(f"  software share at p99: {share * ms:7.2f} ms ({verdict} the 20 ms target)")
    return 0 if share < 0.020 else 1


if __name__ == "__main__":
    sys.exit(main())
