"""The demo network's child processes: started in their own process groups, stopped once."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

STOP_TIMEOUT_S = 15.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class DemoNetworkError(Exception):
    """The demo network could not start; the message says what to look at."""


class Stop(Exception):
    """SIGINT, SIGTERM or SIGHUP: stop the network."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


@dataclass
class Processes:
    """The long-running children, each in its own process group: a Ctrl-C on the terminal
    reaches only this process, which then stops each child exactly once and waits for it."""

    children: list[Child] = field(default_factory=list)
    # What runs inside this process (the webhook and mail receivers): closed after the children
    # stop, so that central's last notices still find the SMTP receiver.
    closers: list[Callable[[], None]] = field(default_factory=list)

    def start(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Child:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 - our own commands, no shell
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=None if env is None else {**os.environ, **env},
                process_group=0,
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def check(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise DemoNetworkError(
                    f"{child.name} exited (status {code}); the end of {child.log_path}:\n"
                    f"{child.log_tail()}"
                )

    def stop(self) -> None:
        """SIGTERM to each, newest first (nodes before central), then wait; SIGKILL a laggard."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in reversed(self.children):
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        for close in self.closers:
            close()


@dataclass
class Stopping:
    """Set once stopping has begun: a second Ctrl-C must not cut it short and orphan a child."""

    begun: bool = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.begun:
            self.begun = True
            raise Stop
