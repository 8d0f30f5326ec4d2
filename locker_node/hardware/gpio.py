"""Locks wired to GPIO: one relay per lock and one reed switch per door, through gpiozero."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpiozero import DigitalInputDevice, GPIOZeroError, OutputDevice

from locker_node.hardware.board import (
    BoardUnavailable,
    DoorState,
    check_lock,
)


@dataclass(frozen=True)
class GpioLockPins:
    """The relay pin firing one lock and the sensor pin of its door (any gpiozero pin name)."""

    relay: int | str
    sensor: int | str


class GpioLockBoard:
    """Relays and reed switches on the node's own GPIO header.

    The pin factory is always passed in (a real one on the Pi, `MockFactory` in tests), so a
    missing GPIO library is a loud error rather than gpiozero's silent fallback. Relays start
    released, are pulsed for `pulse_s` and released in a `finally`, so no relay stays energised
    after an error. Most relay modules are active low (`relay_active_high=False`). A reed switch
    to ground with the pull-up on reads active when the magnet is near, hence
    `door_closed_when_active=True` by default.
    """

    def __init__(
        self,
        locks: Sequence[GpioLockPins],
        *,
        pin_factory: Any,
        name: str = "gpio",
        relay_active_high: bool = False,
        sensor_pull_up: bool = True,
        door_closed_when_active: bool = True,
        pulse_s: float = 0.5,
        bounce_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        owns_pin_factory: bool = False,
    ) -> None:
        if pin_factory is None:
            raise ValueError("GpioLockBoard needs an explicit pin_factory")
        if not locks:
            raise ValueError("a GPIO board needs at least one lock")
        self._name = name
        self._pulse_s = pulse_s
        self._sleep = sleep
        self._pin_factory = pin_factory
        self._owns_pin_factory = owns_pin_factory
        self._door_closed_when_active = door_closed_when_active
        self._pulse_lock = threading.Lock()
        self._closed = False
        self._relays: list[Any] = []
        self._sensors: list[Any] = []
        try:
            for pins in locks:
                self._relays.append(
                    OutputDevice(
                        pins.relay,
                        active_high=relay_active_high,
                        initial_value=False,
                        pin_factory=pin_factory,
                    )
                )
                self._sensors.append(
                    DigitalInputDevice(
                        pins.sensor,
                        pull_up=sensor_pull_up,
                        bounce_time=bounce_s,
                        pin_factory=pin_factory,
                    )
                )
        except GPIOZeroError as exc:
            self._close_devices()
            raise BoardUnavailable(f"board {name!r}: cannot claim GPIO pins: {exc}") from exc

    @property
    def name(self) -> str:
        return self._name

    @property
    def lock_count(self) -> int:
        return len(self._relays)

    def unlock(self, lock: int) -> None:
        relay = self._relays[check_lock(self._name, lock, self.lock_count)]
        self._ensure_open()
        with self._pulse_lock:
            try:
                relay.on()
                try:
                    self._sleep(self._pulse_s)
                finally:
                    relay.off()
            except GPIOZeroError as exc:
                raise BoardUnavailable(f"board {self._name!r}: relay {lock}: {exc}") from exc

    def read_doors(self) -> Mapping[int, DoorState]:
        self._ensure_open()
        try:
            active = [bool(sensor.is_active) for sensor in self._sensors]
        except GPIOZeroError as exc:
            raise BoardUnavailable(f"board {self._name!r}: reading sensors: {exc}") from exc
        return {
            index + 1: (
                DoorState.CLOSED if is_active == self._door_closed_when_active else DoorState.OPEN
            )
            for index, is_active in enumerate(active)
        }

    def release_all(self) -> None:
        self._ensure_open()
        try:
            for relay in self._relays:
                relay.off()
        except GPIOZeroError as exc:
            raise BoardUnavailable(f"board {self._name!r}: releasing relays: {exc}") from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_devices()
        if self._owns_pin_factory:
            self._pin_factory.close()

    def _close_devices(self) -> None:
        for relay in self._relays:
            # Closing anyway: a relay that cannot be switched off is released with its pin.
            with contextlib.suppress(GPIOZeroError):
                relay.off()
            relay.close()
        for sensor in self._sensors:
            sensor.close()

    def _ensure_open(self) -> None:
        if self._closed:
            raise BoardUnavailable(f"board {self._name!r} is closed")

    def __repr__(self) -> str:
        return f"GpioLockBoard(name={self._name!r}, locks={self.lock_count})"
