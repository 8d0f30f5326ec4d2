"""CPU used by processes, from Linux /proc: a benchmark's server, and the PostgreSQL backends
serving one database (the server runs on this machine)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sqlalchemy import text

from central.db import make_engine


def process_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """The process and every process under it."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, todo = [pid], [pid]
    while todo:
        parent = todo.pop()
        children = [child for child, of in parents.items() if of == parent]
        found += children
        todo += children
    return found


class PostgresBackends:
    """The CPU of the PostgreSQL backends serving one database (found by pg_stat_activity; the
    server runs on this machine, so their CPU is in /proc). Sampled a few times a second while
    measuring: a pool's overflow connection may end within a step, and its CPU with it."""

    def __init__(self, url: str) -> None:
        self._database = url.rsplit("/", 1)[1].split("?")[0]
        self._engine = make_engine(url.rsplit("/", 1)[0] + "/postgres")
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _pids(self) -> list[int]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :name"),
                {"name": self._database},
            )
            return [int(row[0]) for row in rows]

    def _sample(self, *, first: bool) -> None:
        for pid in self._pids():
            cpu = process_cpu_s([pid])
            if first:
                self._first[pid] = cpu
            self._first.setdefault(pid, 0.0)  # came up while measuring: from its start
            self._last[pid] = max(cpu, self._last.get(pid, 0.0))

    def start(self) -> None:
        self._first, self._last = {}, {}
        self._sample(first=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self._sample(first=False)

    def stop(self) -> float:
        """CPU seconds the database's backends used since `start`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(first=False)
        return sum(self._last[pid] - self._first[pid] for pid in self._last)

    def close(self) -> None:
        self._engine.dispose()
