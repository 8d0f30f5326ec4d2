"""`locker-node supervise`: runs the node from `<root>/current` and rolls a bad update back.

The supervisor is the service's main process and runs from the venv the service names (the
one install.sh made), never from an updated one, so a broken new version cannot break its own
rollback. It starts `<root>/current/bin/locker-node run` (its own venv's when there is no
`current` yet) as a child, forwards SIGTERM/SIGINT to it, and relays the child's systemd
notifications (READY, WATCHDOG, STATUS) so the unit keeps `NotifyAccess=main`.

After a switch (the child exits with `EXIT_SWITCHED`, or the state file holds a pending
switch) it starts the new version and waits up to `verify_timeout_s` for it to write `healthy`.
If the new child exits first, or the time runs out, it stops the child, points `current` back
at the previous venv, records `rolled_back` with the reason, and starts the previous version.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from locker_node.config import UpdateConfig
from locker_node.systemd import notify
from locker_node.update.state import (
    EXIT_SWITCHED,
    SUPERVISED_ENV,
    UpdateState,
    current_venv,
    load_state,
    node_executable,
    point_current,
    save_state,
)

logger = logging.getLogger(__name__)

POLL_S = 0.25
STOP_TIMEOUT_S = 30.0


class NotifyRelay:
    """A datagram socket the child sends its sd_notify messages to; passed on to systemd.

    READY=1 goes on once (a restarted child is not a new service). While a new version starts
    after a switch, the supervisor pings the watchdog itself (`grace`), up to the verify
    deadline: a version that hangs there is rolled back by the supervisor, not by systemd.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.bind(str(self.path))
        self._sock.settimeout(0.5)
        self._ready_sent = False
        self._stopping = threading.Event()
        self.grace_until = 0.0
        self._thread = threading.Thread(target=self._run, name="notify-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(2)
        self._sock.close()

    def _run(self) -> None:
        last_grace_ping = 0.0
        while not self._stopping.is_set():
            try:
                message = self._sock.recv(4096).decode(errors="replace")
            except TimeoutError:
                message = ""
            except OSError:
                return
            now = time.monotonic()
            if now < self.grace_until and now - last_grace_ping >= 5:
                notify("WATCHDOG=1")
                last_grace_ping = now
            if message:
                self._forward(message)

    def _forward(self, message: str) -> None:
        lines = [line for line in message.split("\n") if line and not line.startswith("STOPPING")]
        if "READY=1" in lines:
            if self._ready_sent:
                lines.remove("READY=1")
            self._ready_sent = True
        if lines:
            notify("\n".join(lines))


@dataclass
class Child:
    process: subprocess.Popen[bytes]
    venv: Path
    version: str | None  # the version being verified, None for a plain start


class Supervisor:
    def __init__(
        self,
        config: UpdateConfig,
        node_args: Sequence[str],
        *,
        own_venv: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.root = config.root
        self.node_args = list(node_args)
        self.own_venv = own_venv if own_venv is not None else Path(sys.prefix)
        self._clock = clock
        self._stopping = threading.Event()
        self._child: Child | None = None
        self._relay: NotifyRelay | None = None

    # Children --------------------------------------------------------------------------------

    def _start(self, version: str | None) -> Child:
        venv = current_venv(self.root) or self.own_venv
        env = dict(os.environ)
        env[SUPERVISED_ENV] = "1"
        env.pop("WATCHDOG_PID", None)  # the child's pings go through the relay, as its own
        if self._relay is not None:
            env["NOTIFY_SOCKET"] = str(self._relay.path)
        argv = [str(node_executable(venv)), *self.node_args]
        logger.info("starting %s", " ".join(argv))
        process = subprocess.Popen(argv, env=env)  # noqa: S603  (our own venvs' node)
        self._child = Child(process, venv, version)
        return self._child

    def _stop_child(self, child: Child) -> int:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
            try:
                child.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.process.kill()
        return child.process.wait()

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self._stopping.set()
        child = self._child
        if child is not None and child.process.poll() is None:
            child.process.send_signal(signum)

    # Verification ----------------------------------------------------------------------------

    def _verify(self, child: Child, deadline: float) -> str | None:
        """Wait for the new version to say healthy; None when it did, else why not."""
        while True:
            code = child.process.poll()
            state = load_state(self.root)
            if state.pending is None and state.state == "healthy":
                return None
            if code is not None:
                return f"version {child.version} exited with code {code} before it was healthy"
            if self._stopping.is_set():
                return None
            if time.monotonic() >= deadline:
                return (
                    f"version {child.version} did not report healthy within "
                    f"{self.config.verify_timeout_s:.0f} s"
                )
            time.sleep(POLL_S)

    def _roll_back(self, child: Child | None, reason: str) -> None:
        if child is not None:
            self._stop_child(child)
        state = load_state(self.root)
        pending = state.pending
        if pending is None:
            return
        logger.error("rolling back to %s: %s", pending.from_version, reason)
        point_current(self.root, Path(pending.from_path))
        state.remember_failure(pending.to_version, pending.rollout)
        state.moved(
            "rolled_back",
            self._clock(),
            running=pending.from_version,
            wanted=pending.to_version,
            previous=pending.to_version,
            rollout=pending.rollout,
            detail=reason,
            pending=None,
        )
        save_state(self.root, state)

    def _pending_version(self) -> tuple[str, float] | None:
        state: UpdateState = load_state(self.root)
        if state.pending is None:
            return None
        # A supervisor started again mid-verification keeps the deadline the switch set.
        left = state.pending.deadline - time.time()
        return state.pending.to_version, min(left, self.config.verify_timeout_s)

    # The loop --------------------------------------------------------------------------------

    def run(self) -> int:
        """Run the node until SIGTERM/SIGINT; the child's exit code when it stops on its own."""
        signals = (signal.SIGTERM, signal.SIGINT)
        previous = {signum: signal.signal(signum, self._forward) for signum in signals}
        with tempfile.TemporaryDirectory(prefix="locker-supervise-") as directory:
            if os.environ.get("NOTIFY_SOCKET"):
                self._relay = NotifyRelay(Path(directory))
                self._relay.start()
            try:
                return self._loop()
            finally:
                if self._relay is not None:
                    self._relay.stop()
                for signum, handler in previous.items():
                    signal.signal(signum, handler)

    def _loop(self) -> int:
        while True:
            pending = self._pending_version()
            if pending is not None:
                version, left = pending
                if left <= 0:
                    self._roll_back(None, f"version {version} was not healthy in time")
                    continue
                if self._relay is not None:
                    self._relay.grace_until = time.monotonic() + left
                child = self._start(version)
                reason = self._verify(child, time.monotonic() + left)
                if reason is not None:
                    self._roll_back(child, reason)
                    continue
            else:
                child = self._start(None)
            code = child.process.wait()
            if self._stopping.is_set():
                return 0
            if code == EXIT_SWITCHED or self._pending_version() is not None:
                continue
            logger.error("node exited with code %s", code)
            return code
