"""Robust framing, timeouts, error translation and bus sharing of the serial drivers."""

from __future__ import annotations

import threading
from functools import partial

import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st

from locker_node.hardware import kerong, xor
from locker_node.hardware.board import (
    BoardProtocolError,
    BoardTimeout,
    BoardUnavailable,
    DoorState,
)
from locker_node.hardware.kerong import KerongCu16Board
from locker_node.hardware.serial_bus import SerialBus
from locker_node.hardware.simulator import BoardSimulator, PtyBoardServer
from locker_node.hardware.xor import XorBoard
from tests.locker_node.hardware.fakes import ScriptedPort
from tests.locker_node.support import wait_until

# Board 0, lock 1 open (bit clear), locks 2-16 closed.
CU16_REPLY = bytes.fromhex("02 00 35 FE FF 00 00 03 37")
CU16_OTHER_BOARD = bytes.fromhex("02 10 35 00 00 00 00 03 4A")


def cu16(chunks: list[bytes], *, retries: int = 0, stale: bytes = b"") -> KerongCu16Board:
    port = ScriptedPort(lambda command: chunks, stale=stale)
    return KerongCu16Board(port, reply_timeout_s=0.05, read_retries=retries)


def assert_lock1_open(board: KerongCu16Board) -> None:
    states = board.read_doors()
    board.close()
    assert states[1] is DoorState.OPEN
    assert states[2] is DoorState.CLOSED


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([CU16_REPLY[:1], CU16_REPLY[1:4], CU16_REPLY[4:]], id="split"),
        pytest.param([bytes([b]) for b in CU16_REPLY], id="byte-by-byte"),
        pytest.param([b"\xff\x00\x02\x99" + CU16_REPLY], id="garbage-before-stx"),
        pytest.param([CU16_OTHER_BOARD + CU16_REPLY], id="other-address-merged"),
        pytest.param([CU16_REPLY[:-1] + b"\x00", CU16_REPLY], id="bad-checksum-then-good"),
        pytest.param([b"\x02\x00\x35", CU16_REPLY], id="truncated-then-good"),
    ],
)
def test_cu16_reply_framing_is_robust(chunks: list[bytes]) -> None:
    assert_lock1_open(cu16(chunks))


def test_a_stale_reply_from_before_the_command_is_dropped() -> None:
    board = cu16([CU16_REPLY], stale=bytes.fromhex("02 00 35 FF FF 00 00 03 38"))

    assert_lock1_open(board)


def test_wrong_checksum_only_is_a_protocol_error() -> None:
    board = cu16([CU16_REPLY[:-1] + b"\x00"])

    with pytest.raises(BoardProtocolError, match="checksum mismatch"):
        board.read_doors()
    board.close()


def test_reply_for_another_address_only_is_a_protocol_error() -> None:
    board = cu16([CU16_OTHER_BOARD])

    with pytest.raises(BoardProtocolError, match="reply for address 10, expected 00"):
        board.read_doors()
    board.close()


def test_no_reply_times_out() -> None:
    board = cu16([])

    with pytest.raises(BoardTimeout, match="no reply") as raised:
        board.read_doors()
    assert isinstance(raised.value, TimeoutError)
    board.close()


def test_an_incomplete_reply_times_out() -> None:
    board = cu16([CU16_REPLY[:6]])

    with pytest.raises(BoardTimeout, match="incomplete reply"):
        board.read_doors()
    board.close()


def test_status_reads_are_retried_once() -> None:
    replies = iter([[], [CU16_REPLY]])
    port = ScriptedPort(lambda command: next(replies))
    board = KerongCu16Board(port, reply_timeout_s=0.05, read_retries=1)

    assert_lock1_open(board)
    assert len(port.written) == 2


def test_a_negative_retry_count_reads_nothing_and_says_so() -> None:
    port = ScriptedPort(lambda command: [CU16_REPLY])
    board = KerongCu16Board(port, reply_timeout_s=0.05, read_retries=-1)

    with pytest.raises(ValueError, match="read_retries must be 0 or more, not -1"):
        board.read_doors()
    assert port.written == []


def test_xor_unlock_is_never_resent_when_its_reply_is_lost() -> None:
    port = ScriptedPort()
    board = XorBoard(port, unlock_timeout_s=0.05, read_retries=3)

    with pytest.raises(BoardTimeout):
        board.unlock(3)

    assert port.written == [xor.build_xor_unlock(1, 3)]
    board.close()


def test_xor_reply_for_another_channel_is_not_taken() -> None:
    other = xor.build_xor_unlock(1, 4)  # the board's answer for channel 4
    board = XorBoard(ScriptedPort(lambda c: [other]), unlock_timeout_s=0.05)

    with pytest.raises(BoardProtocolError, match="channel 4"):
        board.unlock(3)
    board.close()


@pytest.mark.parametrize(
    ("method", "error"),
    [
        ("write", serial.SerialException("device reports readiness to read but returned no data")),
        ("read", OSError(5, "Input/output error")),
        ("in_waiting", OSError(19, "No such device")),
    ],
)
def test_port_errors_become_board_unavailable(method: str, error: Exception) -> None:
    port = ScriptedPort(lambda c: [CU16_REPLY])
    port.fail_on[method] = error
    board = KerongCu16Board(port, reply_timeout_s=0.05)

    with pytest.raises(BoardUnavailable) as raised:
        board.read_doors()

    assert raised.value.__cause__ is error
    board.close()


def test_unlock_write_errors_become_board_unavailable() -> None:
    port = ScriptedPort()
    port.fail_on["write"] = serial.SerialTimeoutException("Write timeout")
    board = KerongCu16Board(port)

    with pytest.raises(BoardUnavailable, match="write failed"):
        board.unlock(1)
    board.close()


@pytest.mark.parametrize(
    "url", ["/dev/does-not-exist-locker", "socket://127.0.0.1:1", "nonsense://x"]
)
def test_a_port_that_will_not_open_is_a_loud_error(url: str) -> None:
    with pytest.raises(BoardUnavailable, match="cannot open serial port"):
        KerongCu16Board(url)


def test_a_board_built_from_a_port_object_leaves_the_port_to_its_owner() -> None:
    port = ScriptedPort()
    board = KerongCu16Board(port)

    board.close()

    assert not port.closed


def test_boards_sharing_a_bus_close_it_with_the_last_one() -> None:
    port = ScriptedPort()
    bus = SerialBus(port, owns_port=True, close_when_unused=True)
    first = KerongCu16Board(bus, address=0)
    second = KerongCu16Board(bus, address=1)

    first.close()
    assert not port.closed
    second.close()

    assert port.closed
    assert bus.closed


def test_ten_boards_on_one_pty_bus() -> None:
    simulators = [BoardSimulator("kerong-cu16", address=n, door_delay_s=0.0) for n in range(10)]
    with PtyBoardServer(simulators) as server:
        bus = SerialBus.open(server.path, baudrate=19200)
        boards = [KerongCu16Board(bus, address=n, reply_timeout_s=0.3) for n in range(10)]
        try:
            threads = [threading.Thread(target=boards[n].unlock, args=(n + 1,)) for n in range(10)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

            def open_doors(board: KerongCu16Board) -> list[int]:
                return [k for k, s in board.read_doors().items() if s is DoorState.OPEN]

            def has_open_door(board: KerongCu16Board) -> bool:
                return bool(open_doors(board))

            for n, board in enumerate(boards):
                wait_until(partial(has_open_door, board), what=f"an open door on board {n}")
                assert open_doors(board) == [n + 1]
                assert simulators[n].fired(n + 1) == 1
        finally:
            for board in boards:
                board.close()
            bus.close()


@given(
    closed_bits=st.integers(0, 0xFFFF),
    noise=st.binary(max_size=8),
    cuts=st.lists(st.integers(1, 30), max_size=6),
)
def test_cu16_scanner_finds_the_reply_however_it_arrives(
    closed_bits: int, noise: bytes, cuts: list[int]
) -> None:
    body = bytes((2, 0x00, 0x35)) + closed_bits.to_bytes(2, "little") + bytes((0, 0, 3))
    stream = noise + body + bytes((kerong.kerong_checksum(body),))
    scan = kerong.scan_cu16_status_reply(0)
    buffer = b""
    position = 0
    found = None
    for cut in [*sorted(set(cuts)), len(stream)]:
        buffer += stream[position:cut]
        position = max(position, cut)
        result = scan(buffer)
        if result.value is not None:
            found = result.value
            break
        buffer = buffer[result.consumed :]
    assert found is not None
    assert found.locks == closed_bits
