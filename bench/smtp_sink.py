"""A local SMTP receiver for the benchmarks that stamps each message's arrival, in its own process.

    python bench/smtp_sink.py --port 2525 --out stamps.tsv

aiosmtpd on 127.0.0.1, accepting every message. For each one it appends a line to `--out`: the
arrival time (`time.monotonic()`, taken when the message's DATA is complete), the first envelope
recipient and the Message-ID, tab-separated, flushed at once so a reader sees it while the sink
runs. A bench starts it with `running_sink`, as a process of its own so that receiving does not
share a GIL with the sender it measures, and reads the stamps with `RunningSink.arrivals`.
SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import TextIO

from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"
# Any of the machine's processes reads the same CLOCK_MONOTONIC on Linux (and macOS), so these
# stamps compare with the bench's own time.monotonic().
clock = time.monotonic


class StampingHandler:
    """aiosmtpd's DATA hook: stamp, note who the message is for and its Message-ID, accept."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._headers = BytesHeaderParser(policy=policy.compat32)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        arrived = clock()
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content or "").encode()
        message_id = str(self._headers.parsebytes(raw).get("Message-ID", "")).strip()
        recipient = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        self._out.write(f"{arrived:.6f}\t{recipient}\t{message_id}\n")
        self._out.flush()
        return "250 2.0.0 accepted"


async def serve(port: int, out: TextIO) -> None:
    loop = asyncio.get_running_loop()
    handler = StampingHandler(out)
    server = await loop.create_server(
        # A fixed host name: the default looks up the machine's FQDN, which can wait on DNS.
        lambda: SMTP(handler, hostname="bench-sink", loop=loop),
        HOST,
        port,
    )
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    async with server:
        await stopped.wait()


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # clock() when the message's DATA was complete
    recipient: str
    message_id: str


@dataclass(frozen=True, slots=True)
class RunningSink:
    """The receiver's process, its port and the file it stamps arrivals in."""

    process: subprocess.Popen[bytes]
    port: int
    stamps: Path

    def arrivals(self) -> list[Arrival]:
        """Every message received so far, in the order they arrived."""
        written = self.stamps.read_text(encoding="utf-8")
        complete = written[: written.rfind("\n") + 1]  # a line being written is read next time
        rows = (line.split("\t") for line in complete.splitlines())
        return [Arrival(float(at), recipient, mid) for at, recipient, mid in rows]

    def cpu_s(self) -> float:
        """User + system CPU seconds the receiver used so far (Linux /proc; NaN elsewhere)."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return float("nan")
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def running_sink(work: Path) -> Iterator[RunningSink]:
    """This module as a process of its own on a free port, stamping into `work`; stopped (and
    killed if need be) on the way out."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    stamps = work / "arrivals.tsv"
    stamps.touch()
    command = [sys.executable, __file__, "--port", str(port), "--out", str(stamps)]
    process = subprocess.Popen(command)
    try:
        deadline = clock() + 15
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or clock() > deadline:
                    raise SystemExit("benchmark stopped: the SMTP receiver did not start") from None
                time.sleep(0.05)
        yield RunningSink(process, port, stamps)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="file the stamps are appended to")
    args = parser.parse_args()
    with args.out.open("a", encoding="utf-8") as out:
        asyncio.run(serve(args.port, out))


if __name__ == "__main__":
    main()
