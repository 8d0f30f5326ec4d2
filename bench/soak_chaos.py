"""Chaos on a schedule: SIGKILL (then a restart with the same command line) and SIGSTOP (then
SIGCONT a few seconds later) of central and of the nodes."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.soak_network import Managed, Network, SoakSetupError

ACTIONS = ("kill", "stop")
FIRST_AT_S = 20.0  # no chaos before the load has started flowing
LAST_BEFORE_END_S = 15.0


class ScheduleError(ValueError):
    """A --chaos-schedule entry that names no action or process."""


@dataclass(frozen=True)
class ChaosEvent:
    at_s: float
    action: str
    target: str  # a process name: "central", "node-SOAK-1"


@dataclass(frozen=True)
class ChaosDone:
    event: ChaosEvent
    began_s: float
    outage_s: float
    error: str | None = None


def target_name(token: str, network: Network) -> str:
    """`central`, a node's process name, or `node-N` for the N-th node (1-based)."""
    names = [process.name for process in network.processes]
    if token in names:
        return token
    if token.startswith("node-") and token[5:].isdigit():
        index = int(token[5:])
        if 1 <= index <= len(network.sites):
            return network.sites[index - 1].node.name
    raise ScheduleError(f"no process {token!r}: give central, node-1 .. node-{len(network.sites)}")


def parse_schedule(text: str, network: Network) -> list[ChaosEvent]:
    """`30:kill:central,75:stop:node-2`: seconds after the load starts, action, process."""
    events = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        parts = entry.split(":")
        if len(parts) != 3 or parts[1] not in ACTIONS:
            raise ScheduleError(f"{entry!r}: expected <seconds>:<kill|stop>:<process>")
        try:
            at_s = float(parts[0])
        except ValueError:
            raise ScheduleError(f"{entry!r}: {parts[0]!r} is not a number of seconds") from None
        events.append(ChaosEvent(at_s, parts[1], target_name(parts[2], network)))
    return sorted(events, key=lambda event: event.at_s)


def random_schedule(
    per_10_min: float, duration_s: float, network: Network, rng: random.Random
) -> list[ChaosEvent]:
    """`per_10_min` events per ten minutes at random times; central is the target of about
    two in five, a random node of the others."""
    count = round(per_10_min * duration_s / 600)
    last = max(FIRST_AT_S, duration_s - LAST_BEFORE_END_S)
    events = []
    for _ in range(count):
        target = network.central.name if rng.random() < 0.4 else rng.choice(network.sites).node.name
        events.append(ChaosEvent(rng.uniform(FIRST_AT_S, last), rng.choice(ACTIONS), target))
    return sorted(events, key=lambda event: event.at_s)


@dataclass
class Chaos:
    """Runs the schedule in a thread of its own, one event after the other."""

    network: Network
    schedule: list[ChaosEvent]
    restart_after_s: float
    stop_for_s: tuple[float, float]
    seed: int
    echo: Callable[[str], None]
    done: list[ChaosDone] = field(default_factory=list)
    _quit: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, origin: float) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(origin,), name="soak-chaos", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """No new events; the one under way finishes (its process is back) first."""
        self._quit.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, origin: float) -> None:
        rng = random.Random(self.seed)
        for event in self.schedule:
            if self._quit.wait(max(0.0, origin + event.at_s - time.monotonic())):
                return
            began = time.monotonic() - origin
            process = self.network.managed(event.target)
            error = None
            try:
                if event.action == "kill":
                    self._kill(process)
                else:
                    self._pause(process, rng.uniform(*self.stop_for_s))
            except SoakSetupError as exc:
                error = str(exc)
            outage = time.monotonic() - origin - began
            self.done.append(ChaosDone(event, began, outage, error))
            self.echo(
                f"  chaos at {began:6.0f} s: {event.action} {event.target}, back after "
                f"{outage:.1f} s" + (f" ERROR {error}" if error else "")
            )

    def _kill(self, process: Managed) -> None:
        process.kill()
        time.sleep(self.restart_after_s)
        with process.lock:
            process.start("restarted after SIGKILL")
        process.wait_ready()

    def _pause(self, process: Managed, seconds: float) -> None:
        if process.pause():
            time.sleep(seconds)
        process.resume()
