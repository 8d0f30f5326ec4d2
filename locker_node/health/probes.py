"""Probes of the node's computer, read once per heartbeat into the wire's `NodeHealth`.

Uptime (the node process's and the computer's, from /proc/uptime), free disk space of the data
directory, the CPU temperature through gpiozero's `CPUTemperature`, an optional enclosure
sensor read from a file (a DS18B20 on 1-Wire), and mains or battery from a UPS's status lines on
GPIO inputs through gpiozero's `DigitalInputDevice` (those two in `gpio_probes`, loaded only when
the node has the sensor or the UPS).

A probe that cannot be read reports None (power: "unknown") and is logged once, when it starts
failing: a heartbeat never fails for a sensor. A UPS whose pins cannot be claimed is an error at
start, like a lock board that will not load.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from locker_node.config import HealthConfig
from locker_wire.schemas import NodeHealth, PowerSource

if TYPE_CHECKING:
    from locker_node.health.gpio_probes import CpuTemperatureSensor, UpsInputs

logger = logging.getLogger(__name__)

PROC_UPTIME = Path("/proc/uptime")
# A DS18B20 reads exactly 85 °C after a power-on reset, before its first conversion: a reading
# that means "no reading yet", not a hot enclosure.
DS18B20_RESET_MILLIDEGREES = 85000


class HealthProbeError(RuntimeError):
    """A configured health device (the UPS's GPIO inputs) cannot be set up."""


def parse_temperature(text: str) -> float | None:
    """Degrees Celsius from a temperature file; None when it holds no valid reading.

    Whole numbers are millidegrees (the kernel's convention: thermal zones, hwmon, and the 1-Wire
    `temperature` file); numbers with a decimal point are degrees. A 1-Wire `w1_slave` file
    (`... crc=57 YES` then `... t=23125`) counts only when its CRC line says YES.
    """
    text = text.strip()
    if "t=" in text:
        lines = text.splitlines()
        if not lines or not lines[0].rstrip().endswith("YES"):
            return None
        text = text.rsplit("t=", 1)[1].strip()
    try:
        if "." in text:
            return float(text)
        millidegrees = int(text)
    except ValueError:
        return None
    if millidegrees == DS18B20_RESET_MILLIDEGREES:
        return None
    return millidegrees / 1000


class _Problems:
    """Each failing probe logged once, when it starts failing, and once when it recovers."""

    def __init__(self) -> None:
        self._failing: set[str] = set()

    def failed(self, probe: str, error: object) -> None:
        if probe not in self._failing:
            self._failing.add(probe)
            logger.warning("health probe %s cannot be read: %s", probe, error)

    def ok(self, probe: str) -> None:
        if probe in self._failing:
            self._failing.discard(probe)
            logger.info("health probe %s can be read again", probe)


class HealthProbes:
    """Everything the heartbeat says about the computer, read on demand (`read`)."""

    def __init__(
        self,
        config: HealthConfig,
        *,
        data_dir: Path,
        pin_factory: Any = None,
        monotonic: Callable[[], float] = time.monotonic,
        proc_uptime: Path = PROC_UPTIME,
    ) -> None:
        self._config = config
        self._disk_path = config.disk_path or data_dir
        self._monotonic = monotonic
        self._started = monotonic()
        self._proc_uptime = proc_uptime
        self._problems = _Problems()
        self._pin_factory = pin_factory
        self._cpu: CpuTemperatureSensor | None = None
        self.ups: UpsInputs | None = None
        if config.ups is not None:
            from locker_node.health.gpio_probes import UpsInputs

            self.ups = UpsInputs(config.ups, pin_factory=pin_factory)

    def read(self) -> NodeHealth:
        free, total = self._disk()
        power: PowerSource = "unknown"
        battery_low: bool | None = None
        if self.ups is not None:
            try:
                power, battery_low = self.ups.read()
                self._problems.ok("ups")
            except HealthProbeError as exc:
                self._problems.failed("ups", exc)
        return NodeHealth(
            uptime_s=max(0, int(self._monotonic() - self._started)),
            host_uptime_s=self._host_uptime(),
            disk_free_bytes=free,
            disk_total_bytes=total,
            cpu_temp_c=_plausible(self._cpu_temperature()),
            enclosure_temp_c=_plausible(self._enclosure_temperature()),
            power=power,
            battery_low=battery_low,
        )

    def _host_uptime(self) -> int | None:
        try:
            seconds = int(float(self._proc_uptime.read_text().split()[0]))
        except (OSError, ValueError, IndexError) as exc:
            self._problems.failed("host uptime", exc)
            return None
        self._problems.ok("host uptime")
        return max(0, seconds)

    def _disk(self) -> tuple[int | None, int | None]:
        try:
            usage = shutil.disk_usage(self._disk_path)
        except OSError as exc:
            self._problems.failed("disk", exc)
            return None, None
        self._problems.ok("disk")
        return usage.free, usage.total

    def _cpu_temperature(self) -> float | None:
        # Made on first success: CPUTemperature reads its file as it is made, and a computer
        # without one (a container, a PC) must still start, without loading gpiozero for it.
        sensor_file = self._config.cpu_temperature_file
        try:
            if self._cpu is None:
                if not sensor_file.exists():
                    raise FileNotFoundError(f"no such file: {sensor_file}")
                from locker_node.health.gpio_probes import CpuTemperatureSensor

                self._cpu = CpuTemperatureSensor(sensor_file, self._pin_factory)
            value = self._cpu.read()
        except (OSError, ValueError) as exc:
            self._problems.failed("cpu temperature", exc)
            return None
        self._problems.ok("cpu temperature")
        return value

    def _enclosure_temperature(self) -> float | None:
        sensor = self._config.enclosure
        if sensor is None:
            return None
        try:
            value = parse_temperature(sensor.sensor_file.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            self._problems.failed("enclosure temperature", exc)
            return None
        if value is None:
            self._problems.failed("enclosure temperature", "no valid reading in the file")
            return None
        self._problems.ok("enclosure temperature")
        return value

    def close(self) -> None:
        if self.ups is not None:
            self.ups.close()
        if self._cpu is not None:
            self._cpu.close()
            self._cpu = None


def _plausible(value: float | None) -> float | None:
    """A reading the wire accepts (-100..200 °C), else None: a broken sensor must not cost the
    whole heartbeat a validation error."""
    if value is None or not -100 <= value <= 200:
        return None
    return round(value, 1)


def build_health_probes(
    config: HealthConfig, *, data_dir: Path, pin_factory: Any = None
) -> HealthProbes:
    """The node's probes; `pin_factory` is the node's one GPIO factory, shared with its GPIO
    lock boards (required when a UPS is configured)."""
    if config.ups is not None and pin_factory is None:
        raise HealthProbeError("health.ups is configured but the node has no GPIO pin factory")
    return HealthProbes(config, data_dir=data_dir, pin_factory=pin_factory)
