"""One contract for every `LockBoard`: serial drivers over a pty, GPIO on MockFactory, simulated."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from locker_node.hardware.board import (
    BoardUnavailable,
    DoorState,
    LockBoard,
    LockBoardError,
    UnknownLock,
)
from tests.contract.harnesses import CASES, Harness, open_harness
from tests.locker_node.support import wait_until


@pytest.fixture(params=CASES)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    with open_harness(request.param) as harness:
        yield harness


def needs_person(harness: Harness) -> None:
    if not harness.plays_person:
        pytest.skip("needs a simulated person at the door")


def test_is_a_lock_board(harness: Harness) -> None:
    assert isinstance(harness.board, LockBoard)
    assert harness.board.lock_count >= 2


def test_reads_every_door_closed_at_rest(harness: Harness) -> None:
    board = harness.board

    states = board.read_doors()

    assert sorted(states) == list(range(1, board.lock_count + 1))
    assert set(states.values()) == {DoorState.CLOSED}


def test_unlock_fires_only_that_lock_and_its_door_reads_open(harness: Harness) -> None:
    board = harness.board
    lock = int(os.environ.get("LOCKER_TEST_BOARD_LOCK", "2"))

    board.unlock(lock)

    wait_until(lambda: board.read_doors()[lock] is DoorState.OPEN, what=f"door {lock} open")
    others = {n: s for n, s in board.read_doors().items() if n != lock}
    assert set(others.values()) == {DoorState.CLOSED}
    if harness.plays_person:
        assert harness.fired(lock) == 1
        assert all(harness.fired(n) == 0 for n in others)


def test_door_reads_closed_again_once_the_person_shuts_it(harness: Harness) -> None:
    needs_person(harness)
    board = harness.board
    board.unlock(1)
    wait_until(lambda: board.read_doors()[1] is DoorState.OPEN, what="door 1 open")

    harness.close_door(1)

    wait_until(lambda: board.read_doors()[1] is DoorState.CLOSED, what="door 1 closed")


def test_a_door_opened_without_a_command_reads_open(harness: Harness) -> None:
    needs_person(harness)
    board = harness.board

    harness.force_open(2)

    wait_until(lambda: board.read_doors()[2] is DoorState.OPEN, what="door 2 open")
    assert harness.fired(2) == 0


@pytest.mark.parametrize("lock", [0, -1, "last+1"])
def test_an_unknown_lock_is_refused_before_anything_fires(
    harness: Harness, lock: int | str
) -> None:
    board = harness.board
    number = board.lock_count + 1 if lock == "last+1" else int(lock)

    with pytest.raises(UnknownLock) as raised:
        board.unlock(number)

    assert isinstance(raised.value, LookupError)
    assert isinstance(raised.value, LockBoardError)
    if harness.plays_person:
        assert all(harness.fired(n) == 0 for n in range(1, board.lock_count + 1))


def test_release_all_fires_nothing(harness: Harness) -> None:
    board = harness.board

    board.release_all()

    assert set(board.read_doors().values()) == {DoorState.CLOSED}
    if harness.plays_person:
        assert all(harness.fired(n) == 0 for n in range(1, board.lock_count + 1))


def test_concurrent_callers_are_served_one_at_a_time(harness: Harness) -> None:
    needs_person(harness)
    board = harness.board
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(10):
                assert len(board.read_doors()) == board.lock_count
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    board.unlock(1)
    for thread in threads:
        thread.join()

    assert errors == []
    wait_until(lambda: board.read_doors()[1] is DoorState.OPEN, what="door 1 open")
    assert harness.fired(1) == 1


def test_close_is_idempotent_and_final(harness: Harness) -> None:
    board = harness.board

    board.close()
    board.close()

    with pytest.raises(BoardUnavailable):
        board.read_doors()
    with pytest.raises(BoardUnavailable):
        board.unlock(1)
