"""Named points at which a crash test can make the node die, to prove each step is durable."""

from __future__ import annotations

import threading
from collections.abc import Callable


class CrashPoints:
    """Calls `kill` when the armed point is reached for the armed time.

    `spec` is `name[@subject][#n]`: die the n-th time (default the first) that `name` is reached
    for a subject containing `subject` (a tracking number, say), so that a test can let other
    parcels pass the same point. Production nodes run with no spec, and `reach` is a no-op.
    """

    def __init__(self, spec: str | None = None, *, kill: Callable[[], None] | None = None) -> None:
        self._name: str | None = None
        self._subject = ""
        self._nth = 1
        if spec:
            rest, _, nth = spec.partition("#")
            name, _, subject = rest.partition("@")
            self._name = name.strip()
            self._subject = subject.strip()
            self._nth = int(nth) if nth else 1
            if not self._name or self._nth < 1:
                raise ValueError(f"not a crash point: {spec!r}")
            if kill is None:
                raise ValueError("an armed crash point needs a kill function")
        self._kill = kill
        self._seen = 0
        self._mutex = threading.Lock()

    @property
    def armed(self) -> str | None:
        return self._name

    def reach(self, name: str, subject: str = "") -> None:
        if self._name is None or name != self._name or self._subject not in subject:
            return
        with self._mutex:
            self._seen += 1
            fire = self._seen == self._nth
        if fire and self._kill is not None:
            self._kill()


NO_CRASHES = CrashPoints()
