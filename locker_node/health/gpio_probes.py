"""The health probes that read through gpiozero: a UPS's status lines and the CPU temperature.

Imported only by a node that has one of them (a UPS configured, or a CPU temperature file that
exists): gpiozero and the package metadata it loads cost a node about 2 MB it otherwise never uses.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gpiozero import CPUTemperature, DigitalInputDevice, GPIOZeroError
from gpiozero.pins import Factory

from locker_node.config import UpsConfig
from locker_node.health.probes import HealthProbeError
from locker_wire.schemas import PowerSource


class UpsReadError(HealthProbeError):
    """The UPS's inputs could not be read this time (the probe reports "unknown")."""


class ClockFactory(Factory):  # type: ignore[misc]  # gpiozero is untyped
    """A pin factory that has no pins, only the clock gpiozero's internal devices ask of it.

    `CPUTemperature` needs a factory for its timestamps only; a node without GPIO devices gets
    this one rather than gpiozero's default, which would claim a GPIO library or fall back to
    another one without a word.
    """

    def ticks(self) -> float:
        return time.monotonic()

    def ticks_diff(self, later: float, earlier: float) -> float:
        return later - earlier


class CpuTemperatureSensor:
    """gpiozero's `CPUTemperature` on `sensor_file`, with a clock-only factory of its own unless
    the node's GPIO factory is given. Raises OSError or ValueError when the file cannot be read."""

    def __init__(self, sensor_file: Path, pin_factory: Any = None) -> None:
        self._clock = ClockFactory() if pin_factory is None else None
        try:
            self._device = CPUTemperature(
                sensor_file=str(sensor_file), pin_factory=pin_factory or self._clock
            )
        except GPIOZeroError as exc:
            self.close()
            raise ValueError(str(exc)) from exc
        except BaseException:
            self.close()
            raise

    def read(self) -> float:
        try:
            return float(self._device.temperature)
        except GPIOZeroError as exc:
            raise ValueError(str(exc)) from exc

    def close(self) -> None:
        device = getattr(self, "_device", None)
        if device is not None:
            device.close()
            self._device = None
        if self._clock is not None:
            self._clock.close()
            self._clock = None


class UpsInputs:
    """A UPS's "on battery" line and optional "battery low" line, on GPIO inputs."""

    def __init__(self, config: UpsConfig, *, pin_factory: Any) -> None:
        if pin_factory is None:
            raise ValueError("UpsInputs needs an explicit pin_factory")
        self._config = config
        self._devices: list[Any] = []
        try:
            self._on_battery = self._input(config.on_battery_pin, pin_factory)
            self._battery_low = (
                None
                if config.battery_low_pin is None
                else self._input(config.battery_low_pin, pin_factory)
            )
        except GPIOZeroError as exc:
            self.close()
            raise HealthProbeError(f"health.ups: cannot claim GPIO inputs: {exc}") from exc

    def _input(self, pin: int | str, pin_factory: Any) -> Any:
        config = self._config
        if config.pull_up is None:
            device = DigitalInputDevice(
                pin, pull_up=None, active_state=config.active_high, pin_factory=pin_factory
            )
        else:
            device = DigitalInputDevice(pin, pull_up=config.pull_up, pin_factory=pin_factory)
        self._devices.append(device)
        return device

    def _asserted(self, device: Any) -> bool:
        active = bool(device.is_active)
        config = self._config
        if config.pull_up is None:
            return active
        # With a resistor gpiozero takes "active" to be the level away from it (high with a
        # pull-down); a UPS may assert its line the other way.
        return active if (not config.pull_up) == config.active_high else not active

    def read(self) -> tuple[PowerSource, bool | None]:
        """Mains or battery, and whether the battery is low (None without that line)."""
        try:
            power: PowerSource = "battery" if self._asserted(self._on_battery) else "mains"
            low = None if self._battery_low is None else self._asserted(self._battery_low)
        except GPIOZeroError as exc:
            raise UpsReadError(str(exc)) from exc
        return power, low

    def close(self) -> None:
        for device in self._devices:
            device.close()
        self._devices.clear()
