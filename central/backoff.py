"""Exponential backoff for the outboxes (webhooks, notices, analytics): one rule, three users."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

MAX_RETRY_INTERVAL = timedelta(hours=1)


def backoff(
    attempts: int,
    first: timedelta,
    *,
    cap: timedelta = MAX_RETRY_INTERVAL,
    jitter: Callable[[], float] = random.random,
) -> timedelta:
    """`first` after the first failed attempt, then twice as long each time, at most `cap`,
    with up to 10 % jitter so that what failed together does not retry together."""
    base = min(first * (2 ** max(0, attempts - 1)), cap)
    return timedelta(seconds=base.total_seconds() * (1 + 0.1 * jitter()))
