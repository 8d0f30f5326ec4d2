"""systemd's notify protocol and watchdog for `locker-node run` (no-ops outside systemd)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

from locker_node.domain.doors import DoorController

logger = logging.getLogger(__name__)

# The name DoorMonitor gives its thread; a test starts a real node and checks it is found.
DOOR_MONITOR_THREAD = "door-monitor"
# uvicorn calls the kiosk beat about once a second while its loop runs; ten missed is a hang.
KIOSK_STALE_AFTER_S = 10.0


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1") to `$NOTIFY_SOCKET`; False when there is none or it fails.

    A name starting with "@" is an abstract socket, as systemd writes it.
    """
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        # Unset, or a kind of address this node does not speak (vsock:...).
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        logger.warning("could not tell systemd %r: %s", state.split("\n", 1)[0], exc)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """systemd's watchdog timeout for this process in seconds (`WatchdogSec=`), or None."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        # Inherited from the parent that systemd watches; this process is not it.
        return None
    return usec / 1_000_000


class WatchdogFeeder:
    """READY=1 once `healthy()` first holds, then WATCHDOG=1 every half watchdog interval for as
    long as it keeps holding, from a thread of its own; STOPPING=1 on `stop()`.

    An unhealthy node sends nothing, so systemd kills and restarts it when `WatchdogSec=` runs
    out. A check that hangs stops the pings just the same. Without `$NOTIFY_SOCKET` it does
    nothing at all.
    """

    def __init__(
        self,
        healthy: Callable[[], bool],
        *,
        environ: Mapping[str, str] | None = None,
        status: str = "",
        poll_s: float = 0.2,
    ) -> None:
        env = dict(os.environ if environ is None else environ)
        self._environ = env
        self._healthy = healthy
        self._status = status
        self._poll_s = poll_s
        self.active = bool(env.get("NOTIFY_SOCKET"))
        self.interval_s = watchdog_interval(env)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.active or self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="systemd-watchdog", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        # A thread stuck in a hung check is a daemon; it must not hold up the shutdown.
        thread.join(timeout_s)
        notify("STOPPING=1", self._environ)

    def __enter__(self) -> WatchdogFeeder:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._check():
            if self._stopping.wait(self._poll_s):
                return
        if self._stopping.is_set():
            return
        notify("READY=1" + (f"\nSTATUS={self._status}" if self._status else ""), self._environ)
        if self.interval_s is None:
            return
        period = self.interval_s / 2
        was_healthy = True
        while not self._stopping.is_set():
            healthy = self._check()
            if self._stopping.is_set():
                # Nothing after STOPPING=1, even from a check that hung until after it.
                return
            if healthy:
                notify("WATCHDOG=1", self._environ)
            elif was_healthy:
                logger.error("node unhealthy: no watchdog pings, systemd restarts it if this lasts")
            was_healthy = healthy
            self._stopping.wait(period)

    def _check(self) -> bool:
        try:
            return self._healthy()
        except Exception:
            logger.exception("health check failed")
            return False


class NodeHealth:
    """Whether a running node's main loops turn: the check a `WatchdogFeeder` makes.

    The kiosk: uvicorn calls `kiosk_beat` from its event loop (`callback_notify`), so a recent
    beat means the loop runs. The doors: the door monitor's thread is alive, and the door
    controller can be entered; every poll runs inside it, so a poll that hangs (a board read
    that never returns) keeps the check waiting, and the pings stop.
    """

    def __init__(
        self,
        doors: DoorController,
        *,
        clock: Callable[[], float] = time.monotonic,
        stale_after_s: float = KIOSK_STALE_AFTER_S,
        monitor_thread: str = DOOR_MONITOR_THREAD,
    ) -> None:
        self._doors = doors
        self._clock = clock
        self._stale_after_s = stale_after_s
        self._monitor_thread = monitor_thread
        self._last_beat: float | None = None

    async def kiosk_beat(self) -> None:
        self._last_beat = self._clock()

    def kiosk_alive(self) -> bool:
        beat = self._last_beat
        return beat is not None and self._clock() - beat <= self._stale_after_s

    def doors_alive(self) -> bool:
        monitor = [t for t in threading.enumerate() if t.name == self._monitor_thread]
        if not any(thread.is_alive() for thread in monitor):
            return False
        # Waits while a poll or a door opening holds the controller (seconds at most), and for
        # good behind a hung one.
        self._doors.statuses()
        return True

    def __call__(self) -> bool:
        return self.kiosk_alive() and self.doors_alive()
