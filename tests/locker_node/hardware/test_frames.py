"""The drivers write exactly the documented frames and read the documented replies."""

from __future__ import annotations

import pytest

from locker_node.hardware import kerong, xor
from locker_node.hardware.board import DoorState
from locker_node.hardware.kerong import KerongCu16Board, KerongCu48Board
from locker_node.hardware.xor import XorBoard
from tests.locker_node.hardware.fakes import ScriptedPort

OPEN, CLOSED = DoorState.OPEN, DoorState.CLOSED


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# Pure builders against the protocol note's examples


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (kerong.build_cu16_unlock(0, 0), "02 00 31 03 36"),
        (kerong.build_cu16_unlock(1, 5), "02 15 31 03 4B"),
        (kerong.build_cu16_status_request(0), "02 00 30 03 35"),
        (kerong.build_cu48_status_request(0), "02 00 00 60 03 65"),
        (kerong.build_cu48_unlock(0, 0), "02 00 00 61 03 66"),
        (kerong.build_cu48_unlock(0, 4), "02 00 04 61 03 6A"),
        (xor.build_xor_unlock(1, 1), "8A 01 01 11 9B"),
        (xor.build_xor_read_channel(1, 1), "80 01 01 33 B3"),
        (xor.build_xor_read_all(1), "80 01 00 33 B2"),
    ],
)
def test_builders_match_the_documented_frames(frame: bytes, expected: str) -> None:
    assert frame == h(expected)


@pytest.mark.parametrize(
    ("reply", "state"),
    [("80 01 01 11 91", 0x11), ("80 01 01 00 80", 0x00), ("8A 01 01 11 9B", 0x11)],
)
def test_xor_channel_replies_parse_with_either_header(reply: str, state: int) -> None:
    scan = xor.scan_xor_channel_reply(1, 1)(h(reply))

    assert scan.value == state
    assert scan.consumed == 5


# Drivers: what goes on the wire


def test_cu16_driver_addresses_board_and_lock() -> None:
    port = ScriptedPort()
    board = KerongCu16Board(port, address=1)

    board.unlock(6)

    assert port.written == [h("02 15 31 03 4B")]
    board.close()


def test_cu16_driver_board_0_lock_1_and_status() -> None:
    port = ScriptedPort(lambda command: [h("02 00 35 00 00 00 00 03 3A")])
    board = KerongCu16Board(port)
    board.settle_after_unlock_s = 0

    board.unlock(1)
    board.read_doors()

    assert port.written == [h("02 00 31 03 36"), h("02 00 30 03 35")]
    board.close()


def test_cu48_driver_frames() -> None:
    port = ScriptedPort(lambda command: [h("02 00 00 75" + " 00" * 12 + " 03 7A")])
    board = KerongCu48Board(port)
    board.settle_after_unlock_s = 0

    board.unlock(1)
    board.unlock(5)
    board.read_doors()

    assert port.written == [
        h("02 00 00 61 03 66"),
        h("02 00 04 61 03 6A"),
        h("02 00 00 60 03 65"),
    ]
    board.close()


@pytest.mark.parametrize("reply", ["8A 01 01 11 9B", "80 01 01 11 91"])
def test_xor_driver_unlock_waits_for_either_reply_header(reply: str) -> None:
    port = ScriptedPort(lambda command: [h(reply)])
    board = XorBoard(port, address=1)

    board.unlock(1)

    assert port.written == [h("8A 01 01 11 9B")]
    board.close()


# Drivers: documented replies in both polarity settings


def test_cu16_status_reply_in_both_polarities() -> None:
    # Lock bits: lock 1 clear, locks 2-16 set.
    reply = h("02 00 35 FE FF 00 00 03 37")
    for closed_bit, lock1, others in [(1, OPEN, CLOSED), (0, CLOSED, OPEN)]:
        board = KerongCu16Board(ScriptedPort(lambda c: [reply]), lock_closed_bit=closed_bit)
        states = board.read_doors()
        board.close()
        assert states[1] is lock1
        assert {states[n] for n in range(2, 17)} == {others}


def test_cu12_reads_only_its_twelve_locks() -> None:
    board = KerongCu16Board(
        ScriptedPort(lambda c: [h("02 00 35 FE FF 00 00 03 37")]), lock_count=12
    )

    assert sorted(board.read_doors()) == list(range(1, 13))
    board.close()


def test_cu48_status_reply_in_both_polarities() -> None:
    reply = h("02 00 00 75 FE FF FF FF FF FF 00 00 00 00 00 00 03 73")
    for closed_bit, lock1, others in [(1, OPEN, CLOSED), (0, CLOSED, OPEN)]:
        board = KerongCu48Board(ScriptedPort(lambda c: [reply]), lock_closed_bit=closed_bit)
        states = board.read_doors()
        board.close()
        assert len(states) == 48
        assert states[1] is lock1
        assert {states[n] for n in range(2, 49)} == {others}


def test_xor_read_all_capture_highest_group_first_in_both_polarities() -> None:
    # A 24-channel capture: groups 17-24, 9-16, 1-8; bit 0 of each set (locks 1, 9 and 17).
    reply = h("80 01 01 01 01 33 B3")
    for closed_bit in (1, 0):
        board = XorBoard(ScriptedPort(lambda c: [reply]), lock_closed_bit=closed_bit)
        states = board.read_doors()
        board.close()
        set_bit = CLOSED if closed_bit else OPEN
        clear_bit = OPEN if closed_bit else CLOSED
        assert [n for n, s in states.items() if s is set_bit] == [1, 9, 17]
        assert sum(1 for s in states.values() if s is clear_bit) == 21


def test_xor_read_all_takes_the_group_count_from_the_frame() -> None:
    # A 50-channel board (7 groups) wired with 24 locks: only the low 24 bits matter.
    reply = h("80 01 FF FF FF FF FF FF FE 33") + bytes((0x80 ^ 0x01 ^ 0xFE ^ 0x33,))
    board = XorBoard(ScriptedPort(lambda c: [reply]), lock_count=24)

    states = board.read_doors()

    assert states[1] is OPEN
    assert {states[n] for n in range(2, 25)} == {CLOSED}
    board.close()


def test_xor_read_all_is_not_cut_short_by_a_frame_lookalike_in_the_status() -> None:
    # The status bytes 00 33 B2 make "80 01 00 33 B2" look like a complete one-group reply;
    # a 24-lock board needs three groups, so the scanner reads on to the real end.
    reply = h("80 01 00 33 B2 33") + bytes((0x80 ^ 0x01 ^ 0x00 ^ 0x33 ^ 0xB2 ^ 0x33,))
    board = XorBoard(ScriptedPort(lambda c: [reply]), lock_count=24)

    states = board.read_doors()

    assert [n for n, s in states.items() if s is CLOSED] == [2, 5, 6, 8, 9, 10, 13, 14]
    board.close()
