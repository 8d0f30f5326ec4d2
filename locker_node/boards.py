"""Build lock boards from the node config: a board that will not open is an error, no fallback."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from locker_node.config import (
    BoardConfig,
    GpioBoardConfig,
    SerialBoardConfig,
    SimulatedBoardConfig,
)
from locker_node.hardware.board import BoardUnavailable, LockBoard
from locker_node.hardware.kerong import KerongCu16Board, KerongCu48Board
from locker_node.hardware.serial_bus import SerialBus, SerialLockBoard
from locker_node.hardware.simulated import SimulatedLockBoard
from locker_node.hardware.xor import XorBoard

_SERIAL_BOARDS: dict[str, type[SerialLockBoard]] = {
    "kerong-cu16": KerongCu16Board,
    "kerong-cu48": KerongCu48Board,
}

_PIN_FACTORIES = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"),
    "native": ("gpiozero.pins.native", "NativeFactory"),
}


def build_board(
    config: BoardConfig, *, pin_factory: Any = None, bus: SerialBus | None = None
) -> LockBoard:
    """Build and open one board. `pin_factory` overrides the configured GPIO factory (tests pass
    gpiozero's `MockFactory`); `bus` lets several serial boards share one port."""
    if isinstance(config, SerialBoardConfig):
        return _build_serial(config, bus)
    if isinstance(config, GpioBoardConfig):
        # Imported here: gpiozero costs a serial-board node memory it never uses.
        from locker_node.hardware.gpio import GpioLockBoard, GpioLockPins

        owns_factory = pin_factory is None
        factory = open_pin_factory(config.pin_factory) if owns_factory else pin_factory
        try:
            return GpioLockBoard(
                [GpioLockPins(relay=lock.relay, sensor=lock.sensor) for lock in config.locks],
                pin_factory=factory,
                name=config.name,
                relay_active_high=config.relay_active_high,
                sensor_pull_up=config.sensor_pull_up,
                door_closed_when_active=config.door_closed_when_active,
                pulse_s=config.pulse_ms / 1000,
                bounce_s=None if config.bounce_ms is None else config.bounce_ms / 1000,
                owns_pin_factory=owns_factory,
            )
        except BaseException:
            if owns_factory:
                factory.close()
            raise
    if isinstance(config, SimulatedBoardConfig):
        return SimulatedLockBoard(
            name=config.name,
            lock_count=config.locks,
            door_delay_s=config.door_delay_ms / 1000,
            auto_close_after_s=None
            if config.auto_close_ms is None
            else config.auto_close_ms / 1000,
        )
    raise TypeError(f"unsupported board config {config!r}")


def build_boards(
    configs: Iterable[BoardConfig], *, pin_factory: Any = None
) -> dict[str, LockBoard]:
    """Build every configured board, sharing one bus per serial port; all or nothing."""
    boards: dict[str, LockBoard] = {}
    buses: dict[str, SerialBus] = {}
    try:
        for config in configs:
            bus = None
            if isinstance(config, SerialBoardConfig):
                bus = buses.get(config.port)
                if bus is None:
                    bus = SerialBus.open(
                        config.port, baudrate=config.line_baudrate, close_when_unused=True
                    )
                    buses[config.port] = bus
            boards[config.name] = build_board(config, pin_factory=pin_factory, bus=bus)
    except BaseException:
        for board in boards.values():
            board.close()
        for bus in buses.values():
            bus.close()
        raise
    return boards


def open_pin_factory(name: str) -> Any:
    """Open the named real gpiozero pin factory, explicitly, never gpiozero's default."""
    module_name, class_name = _PIN_FACTORIES[name]
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)()
    except Exception as exc:  # each GPIO library fails in its own way; all mean "no GPIO here"
        raise BoardUnavailable(f"cannot open the {name} GPIO pin factory: {exc}") from exc


def _build_serial(config: SerialBoardConfig, bus: SerialBus | None) -> LockBoard:
    port: SerialBus | str = bus if bus is not None else config.port
    common: dict[str, Any] = {
        "name": config.name,
        "address": config.bus_address,
        "lock_count": config.lock_count,
        "lock_closed_bit": config.lock_closed_bit,
        "baudrate": config.line_baudrate,
        "reply_timeout_s": config.reply_timeout_ms / 1000,
    }
    if config.protocol == "xor":
        # XOR boards answer an unlock only once the lock has moved, so they wait longer for it.
        return XorBoard(port, unlock_timeout_s=config.unlock_timeout_ms / 1000, **common)
    return _SERIAL_BOARDS[config.protocol](port, **common)
