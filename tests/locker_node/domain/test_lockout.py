"""The keypad lockout policy, and the guessing bound it has to keep at a full bank."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locker_node.config import ConfigError, NodeConfig, parse_config
from locker_node.domain.lockout import (
    DAY_S,
    MAX_GUESS_CHANCE_PER_DAY,
    LockoutPolicy,
    judge_failure,
)

LARGEST_BANK = 250  # compartments; large parcel-locker walls have 100-200


def bank(compartments: int, **pickup: object) -> dict[str, object]:
    return {
        "bank_id": "B1",
        "data_dir": "unused",
        "boards": [{"name": "main", "protocol": "simulated", "locks": 256}],
        "compartments": [
            {"label": f"C{n:03d}", "size": "S", "board": "main", "lock": n}
            for n in range(1, compartments + 1)
        ],
        "pickup": pickup,
    }


def attack(policy: LockoutPolicy, seconds: int) -> int:
    """Guess as fast as the keypad allows for `seconds`, through the same decisions the kiosk
    makes; how many guesses were checked."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    failures: list[datetime] = []
    locked_until = start
    now = start
    while now < start + timedelta(seconds=seconds):
        window_start = now - timedelta(seconds=policy.window_s)
        recent = sum(1 for at in failures if at > window_start) + 1
        verdict = judge_failure(policy, recent, now)
        failures.append(now)
        if verdict.locked_until is not None:
            locked_until = verdict.locked_until
        now = max(now + timedelta(seconds=1), locked_until)
    return len(failures)


def test_the_lockout_schedule_grows_and_is_capped() -> None:
    policy = LockoutPolicy(free_attempts=5, first_lockout_s=30, max_lockout_s=3600)

    assert [policy.lockout_after(n) for n in range(1, 14)] == [
        0, 0, 0, 0, 30, 60, 120, 240, 480, 960, 1920, 3600, 3600,
    ]  # fmt: skip
    assert [policy.attempts_left(n) for n in range(0, 7)] == [5, 4, 3, 2, 1, 0, 0]
    assert policy.lockout_after(10_000) == 3600


def test_the_default_pace_allows_2884_guesses_a_day() -> None:
    # Four free guesses, then one per 30 s: the n-th guess comes 30 * (n - 5) s after the
    # first, which is under 86 400 s up to n = 2884. At 10 digits and a full bank of 250
    # that is 2884 * 250 / 10^10 = 7.2e-5 a day.
    assert LockoutPolicy().max_attempts_per_day() == 2884
    assert [LockoutPolicy().lockout_after(n) for n in range(1, 9)] == [0, 0, 0, 0, 30, 30, 30, 30]


def test_the_configured_policy_keeps_a_full_bank_below_the_bound() -> None:
    config = NodeConfig.model_validate(bank(LARGEST_BANK))
    policy = config.pickup.keypad.policy()
    code_space = 10**config.pickup.code_digits

    attempts = policy.max_attempts_per_day()
    chance = attempts * LARGEST_BANK / code_space

    assert chance == policy.guess_chance_per_day(LARGEST_BANK, code_space)
    assert chance < MAX_GUESS_CHANCE_PER_DAY
    assert attempts * len(config.compartments) / code_space < MAX_GUESS_CHANCE_PER_DAY


def test_an_attacker_at_full_speed_gets_no_more_guesses_than_the_bound() -> None:
    policy = LockoutPolicy()

    assert attack(policy, DAY_S) == policy.max_attempts_per_day()
    # Over a week the bound holds for every day, not only the first.
    assert attack(policy, 7 * DAY_S) <= 7 * policy.max_attempts_per_day()


@settings(max_examples=40, deadline=None)
@given(
    free=st.integers(1, 10),
    first=st.integers(1, 600),
    cap=st.integers(600, 7200),
    window=st.sampled_from([3600 * 8, DAY_S, 2 * DAY_S]),
)
def test_the_bound_holds_for_any_policy(free: int, first: int, cap: int, window: int) -> None:
    policy = LockoutPolicy(
        free_attempts=free, first_lockout_s=first, max_lockout_s=cap, window_s=window
    )

    assert attack(policy, DAY_S) <= policy.max_attempts_per_day()


def test_a_config_whose_policy_breaks_the_bound_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"pickup.keypad: .* not below 1e-04"):
        parse_config(bank(200, keypad={"first_lockout_s": 5, "max_lockout_s": 5}))
    with pytest.raises(ConfigError, match="not below"):
        parse_config(bank(200, code_digits=6))
    parse_config(bank(200))


def test_a_wrong_attempt_that_locks_reports_when_to_retry() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    policy = LockoutPolicy()

    assert judge_failure(policy, 4, now).locked_until is None
    verdict = judge_failure(policy, 5, now)
    assert verdict.attempts_left == 0
    assert verdict.retry_after_s(now) == 30
    assert verdict.retry_after_s(now + timedelta(seconds=29.5)) == 1
    assert verdict.retry_after_s(now + timedelta(seconds=30)) == 0


@pytest.mark.parametrize(
    "values",
    [
        {"free_attempts": 0},
        {"first_lockout_s": 0},
        {"first_lockout_s": 100, "max_lockout_s": 50},
        {"max_lockout_s": 7200, "window_s": 3600},
    ],
)
def test_nonsense_policies_are_refused(values: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        LockoutPolicy(**values)
