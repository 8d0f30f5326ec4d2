"""Boards built from config entries: loud when they will not open, buses shared per port."""

from __future__ import annotations

import os

import pytest
from gpiozero.pins.mock import MockFactory

from locker_node import boards as boards_module
from locker_node.boards import build_board, build_boards
from locker_node.config import GpioBoardConfig, SerialBoardConfig, SimulatedBoardConfig
from locker_node.hardware.board import BoardUnavailable, DoorState
from locker_node.hardware.gpio import GpioLockBoard
from locker_node.hardware.kerong import KerongCu16Board
from locker_node.hardware.simulated import SimulatedLockBoard
from locker_node.hardware.simulator import BoardSimulator, PtyBoardServer
from locker_node.hardware.xor import XorBoard
from tests.locker_node.support import wait_until


def serial_config(name: str, port: str, **options: object) -> SerialBoardConfig:
    return SerialBoardConfig.model_validate(
        {"name": name, "protocol": "kerong-cu16", "port": port, **options}
    )


GPIO = GpioBoardConfig.model_validate(
    {"name": "side", "protocol": "gpio", "locks": [{"relay": 5, "sensor": 17}]}
)


def test_a_serial_board_that_will_not_open_raises() -> None:
    with pytest.raises(BoardUnavailable, match="/dev/ttyUSB-not-here"):
        build_board(serial_config("main", "/dev/ttyUSB-not-here"))


def test_gpio_without_its_library_raises_instead_of_falling_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(boards_module._PIN_FACTORIES, "lgpio", ("no_such_gpio_lib", "F"))

    with pytest.raises(BoardUnavailable, match="cannot open the lgpio GPIO pin factory"):
        build_board(GPIO)


def test_gpio_with_an_injected_pin_factory() -> None:
    pins = MockFactory()
    board = build_board(GPIO, pin_factory=pins)
    try:
        assert isinstance(board, GpioLockBoard)
        assert pins.pin(5).state is True  # active-low relay, released
    finally:
        board.close()
        pins.close()


def test_simulated_board() -> None:
    board = build_board(
        SimulatedBoardConfig(name="dev", protocol="simulated", locks=3, door_delay_ms=0)
    )

    assert isinstance(board, SimulatedLockBoard)
    board.unlock(2)
    assert board.read_doors()[2] is DoorState.OPEN
    board.close()


def test_boards_on_one_port_share_one_bus() -> None:
    simulators = [
        BoardSimulator("kerong-cu16", address=0, door_delay_s=0.0),
        BoardSimulator("kerong-cu16", address=1, door_delay_s=0.0),
        BoardSimulator("xor", address=1, door_delay_s=0.0),
    ]
    with PtyBoardServer(simulators[:2]) as bus_a, PtyBoardServer(simulators[2:]) as bus_b:
        configs = [
            serial_config("a0", bus_a.path, address=0),
            serial_config("a1", bus_a.path, address=1),
            SerialBoardConfig(name="b", protocol="xor", port=bus_b.path),
        ]
        boards = build_boards(configs)
        try:
            assert isinstance(boards["a0"], KerongCu16Board)
            assert isinstance(boards["a1"], KerongCu16Board)
            assert isinstance(boards["b"], XorBoard)
            assert boards["a0"].bus is boards["a1"].bus
            assert boards["b"].bus is not boards["a0"].bus

            boards["a1"].unlock(3)
            boards["b"].unlock(2)

            # A CU16 unlock has no reply: the call returns once the frame is written, before
            # the board on the other end of the pty has necessarily acted on it.
            wait_until(lambda: simulators[1].fired(3) == 1, what="lock 3 on board a1 to fire")
            assert simulators[0].fired(3) == 0
            assert simulators[2].fired(2) == 1
        finally:
            for board in boards.values():
                board.close()
        assert boards["a0"].bus.closed


def test_build_boards_is_all_or_nothing() -> None:
    with PtyBoardServer([BoardSimulator("kerong-cu16")]) as server:
        configs = [serial_config("ok", server.path), serial_config("bad", "/dev/ttyUSB-not-here")]
        before = set(os.listdir("/proc/self/fd"))

        with pytest.raises(BoardUnavailable):
            build_boards(configs)

        assert set(os.listdir("/proc/self/fd")) <= before  # the first port was closed again
