"""The one test clock: wall and monotonic time that move only when told to, or when code sleeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

DEFAULT_START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


class FakeClock:
    """Pass the clock itself where code wants `() -> datetime`, and where it wants a clock
    object with `now()`, `monotonic()` and `sleep()` (the door controller's and the carrier
    adapters' `Clock`); `async_sleep` where it would wait on an event loop.

    `advance` and the sleeps move wall and monotonic time together. Monotonic time moves by the
    exact seconds given (a deadline loop that sleeps the time left reaches its deadline); wall
    time by the nearest microsecond, as `datetime` holds it.
    """

    def __init__(self, start: datetime | None = None, *, monotonic_start: float = 10_000.0) -> None:
        self._wall = start or DEFAULT_START
        self._monotonic = monotonic_start
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self._wall

    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def set(self, when: datetime) -> datetime:
        """Jump the wall clock to `when` (monotonic time moves by as much, never back)."""
        self._monotonic += max(0.0, (when - self._wall).total_seconds())
        self._wall = when
        return when

    def advance(self, seconds: float = 0.0, **delta: float) -> datetime:
        step = timedelta(**delta)
        self._wall += step + timedelta(seconds=seconds)
        self._monotonic += seconds + step.total_seconds()
        return self._wall

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
