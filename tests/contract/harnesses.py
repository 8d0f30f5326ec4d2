"""Every `LockBoard` implementation, with a way to play the person at the door."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import pytest
from gpiozero.pins.mock import MockFactory

from locker_node.boards import build_board
from locker_node.config import SerialBoardConfig
from locker_node.hardware.board import LockBoard
from locker_node.hardware.gpio import GpioLockBoard, GpioLockPins
from locker_node.hardware.simulated import SimulatedLockBoard
from tests.locker_node.support import pty_board


class Harness(Protocol):
    board: LockBoard
    # False on real hardware: nobody stands at the door to close it, and relay pulses are unseen.
    plays_person: bool

    def fired(self, lock: int) -> int: ...

    def force_open(self, lock: int) -> None: ...

    def close_door(self, lock: int) -> None: ...


class Simulation(Protocol):
    def fired(self, lock: int) -> int: ...

    def force_open(self, lock: int) -> None: ...

    def close_door(self, lock: int) -> None: ...


class SimulatorHarness:
    """A serial driver on a pty, or the in-process board: the simulator plays door and person."""

    plays_person = True

    def __init__(self, board: LockBoard, simulation: Simulation) -> None:
        self.board = board
        self._simulation = simulation

    def fired(self, lock: int) -> int:
        return self._simulation.fired(lock)

    def force_open(self, lock: int) -> None:
        self._simulation.force_open(lock)

    def close_door(self, lock: int) -> None:
        self._simulation.close_door(lock)


GPIO_PINS = [
    GpioLockPins(relay=relay, sensor=sensor)
    for relay, sensor in [(5, 17), (6, 27), (13, 22), (19, 23)]
]


class GpioHarness:
    """gpiozero's MockFactory; the door springs open while its relay is energised."""

    plays_person = True

    def __init__(self, *, relay_active_high: bool, door_closed_when_active: bool) -> None:
        self.factory = MockFactory()
        self._relay_active_high = relay_active_high
        self._door_closed_when_active = door_closed_when_active
        self._fired = [0] * len(GPIO_PINS)
        self.board: LockBoard = GpioLockBoard(
            GPIO_PINS,
            pin_factory=self.factory,
            name="gpio",
            relay_active_high=relay_active_high,
            door_closed_when_active=door_closed_when_active,
            pulse_s=0.0,
            sleep=self._during_pulse,
        )
        for lock in range(1, len(GPIO_PINS) + 1):
            self.close_door(lock)

    def _during_pulse(self, seconds: float) -> None:
        for index, pins in enumerate(GPIO_PINS):
            if self.factory.pin(pins.relay).state == self._relay_active_high:
                self._fired[index] += 1
                self.force_open(index + 1)

    def fired(self, lock: int) -> int:
        return self._fired[lock - 1]

    def _sensor_active(self, lock: int, active: bool) -> None:
        # A pulled-up input is active when driven low.
        pin = self.factory.pin(GPIO_PINS[lock - 1].sensor)
        if active:
            pin.drive_low()
        else:
            pin.drive_high()

    def force_open(self, lock: int) -> None:
        self._sensor_active(lock, not self._door_closed_when_active)

    def close_door(self, lock: int) -> None:
        self._sensor_active(lock, self._door_closed_when_active)


class HardwareHarness:
    """A real board on LOCKER_TEST_BOARD_PORT; doors are expected closed when the suite starts."""

    plays_person = False

    def __init__(self, board: LockBoard) -> None:
        self.board = board

    def fired(self, lock: int) -> int:
        raise NotImplementedError

    def force_open(self, lock: int) -> None:
        raise NotImplementedError

    def close_door(self, lock: int) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class SerialCase:
    protocol: str
    lock_closed_bit: int = 1
    reply_header: int = 0x8A


SERIAL_CASES = {
    "kerong-cu16": SerialCase("kerong-cu16"),
    "kerong-cu16-bit0-closed": SerialCase("kerong-cu16", lock_closed_bit=0),
    "kerong-cu48": SerialCase("kerong-cu48"),
    "kerong-cu48-bit0-closed": SerialCase("kerong-cu48", lock_closed_bit=0),
    "xor-8a": SerialCase("xor"),
    "xor-80-bit0-closed": SerialCase("xor", lock_closed_bit=0, reply_header=0x80),
}
GPIO_CASES: dict[str, dict[str, bool]] = {
    "gpio": {"relay_active_high": False, "door_closed_when_active": True},
    "gpio-active-high-inverted": {"relay_active_high": True, "door_closed_when_active": False},
}
CASES = [
    *SERIAL_CASES,
    *GPIO_CASES,
    "simulated",
    pytest.param("hardware", marks=pytest.mark.hardware),
]


@contextmanager
def open_harness(case: str) -> Iterator[Harness]:
    if case in SERIAL_CASES:
        spec = SERIAL_CASES[case]
        with pty_board(
            spec.protocol, lock_closed_bit=spec.lock_closed_bit, reply_header=spec.reply_header
        ) as (simulator, serial_board):
            yield SimulatorHarness(serial_board, simulator)
    elif case in GPIO_CASES:
        gpio = GpioHarness(**GPIO_CASES[case])
        try:
            yield gpio
        finally:
            gpio.board.close()
            gpio.factory.close()
    elif case == "simulated":
        board = SimulatedLockBoard(lock_count=8, door_delay_s=0.01)
        try:
            yield SimulatorHarness(board, board)
        finally:
            board.close()
    elif case == "hardware":
        with _hardware_harness() as hardware:
            yield hardware
    else:
        raise ValueError(case)


@contextmanager
def _hardware_harness() -> Iterator[Harness]:
    port = os.environ.get("LOCKER_TEST_BOARD_PORT")
    if not port:
        pytest.skip("set LOCKER_TEST_BOARD_PORT (and LOCKER_TEST_BOARD_PROTOCOL, _ADDRESS)")
    settings: dict[str, object] = {
        "name": "hardware",
        "protocol": os.environ.get("LOCKER_TEST_BOARD_PROTOCOL", "kerong-cu16"),
        "port": port,
    }
    for key in ("address", "locks", "lock_closed_bit", "baudrate"):
        value = os.environ.get(f"LOCKER_TEST_BOARD_{key.upper()}")
        if value is not None:
            settings[key] = int(value)
    board = build_board(SerialBoardConfig.model_validate(settings))
    try:
        yield HardwareHarness(board)
    finally:
        board.close()
