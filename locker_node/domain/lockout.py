"""Keypad pacing after wrong codes, and the guessing bound it implies.

The default is a steady pace, not growing lockouts: after the free attempts every wrong code
makes the keypad wait `first_lockout_s` (30 s), never longer. So a recipient who holds a valid
code waits at most that long, even while someone keeps guessing at the same keypad, and the
guessing bound is kept by the length of the codes instead (10 digits; see the README).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

DAY_S = 86_400
MAX_GUESS_CHANCE_PER_DAY = 1e-4


@dataclass(frozen=True)
class LockoutPolicy:
    """Wrong attempts are counted over a sliding `window_s`.

    The first `free_attempts - 1` wrong attempts in the window cost nothing; the
    `free_attempts`-th locks the keypad for `first_lockout_s`, and every further one for twice
    the previous lockout, up to `max_lockout_s`. Attempts during a lockout are refused without
    being checked, so they tell an attacker nothing.
    """

    free_attempts: int = 5
    first_lockout_s: int = 30
    max_lockout_s: int = 30
    growth: int = 2
    window_s: int = DAY_S

    def __post_init__(self) -> None:
        if self.free_attempts < 1 or self.first_lockout_s < 1 or self.growth < 1:
            raise ValueError("free_attempts, first_lockout_s and growth must be positive")
        if self.max_lockout_s < self.first_lockout_s:
            raise ValueError("max_lockout_s must be at least first_lockout_s")
        if self.window_s < self.max_lockout_s:
            raise ValueError("window_s must be at least max_lockout_s")

    def lockout_after(self, failures: int) -> int:
        """Seconds the keypad stays locked after the `failures`-th wrong attempt in the window."""
        if failures < self.free_attempts:
            return 0
        steps = failures - self.free_attempts
        # Capped before exponentiating: an attack that runs for weeks must not overflow.
        if steps >= 64:
            return self.max_lockout_s
        return min(self.max_lockout_s, self.first_lockout_s * int(self.growth**steps))

    def attempts_left(self, failures: int) -> int:
        """Tries left before the keypad locks (a wrong one of them locks it)."""
        return max(0, self.free_attempts - failures)

    def max_attempts_per_window(self) -> int:
        """The most attempts any `window_s`-long interval can hold under this policy.

        Every attempt inside one window still counts when a later attempt of that window is
        made, so the j-th attempt of the window is followed by a lockout of at least
        `lockout_after(j)` (lockouts never shrink as failures grow). The n-th attempt of the
        window therefore comes at least sum(lockout_after(j) for j < n) after the first, and
        that must be less than `window_s`.
        """
        attempts, elapsed = 1, 0
        while elapsed + self.lockout_after(attempts) < self.window_s:
            elapsed += self.lockout_after(attempts)
            attempts += 1
        return attempts

    def max_attempts_per_day(self) -> int:
        """An upper bound on guesses per day: a day is covered by ceil(day / window) windows."""
        return math.ceil(DAY_S / self.window_s) * self.max_attempts_per_window()

    def guess_chance_per_day(self, live_codes: int, code_space: int) -> float:
        """Union bound on an attacker opening any compartment in a day: each guess hits one of
        `live_codes` valid codes with probability live_codes / code_space."""
        return self.max_attempts_per_day() * live_codes / code_space


@dataclass(frozen=True)
class KeypadVerdict:
    attempts_left: int
    locked_until: datetime | None

    def retry_after_s(self, now: datetime) -> int:
        if self.locked_until is None or self.locked_until <= now:
            return 0
        return math.ceil((self.locked_until - now).total_seconds())


def judge_failure(policy: LockoutPolicy, failures_in_window: int, now: datetime) -> KeypadVerdict:
    """The consequence of a wrong attempt, `failures_in_window` counting this one."""
    lockout = policy.lockout_after(failures_in_window)
    return KeypadVerdict(
        attempts_left=0 if lockout else policy.attempts_left(failures_in_window),
        locked_until=now + timedelta(seconds=lockout) if lockout else None,
    )
