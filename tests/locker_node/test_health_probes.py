"""Health probes: UPS lines through gpiozero's MockFactory, temperatures, disk, uptime."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from gpiozero.pins.mock import MockFactory

from locker_node.config import (
    ConfigError,
    EnclosureSensorConfig,
    HealthConfig,
    UpsConfig,
    parse_config,
)
from locker_node.health.probes import (
    HealthProbeError,
    HealthProbes,
    build_health_probes,
    parse_temperature,
)

W1_SLAVE = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
W1_SLAVE_BAD_CRC = "72 01 4b 46 7f ff 0e 10 57 : crc=57 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    made = MockFactory()
    yield made
    made.close()


@pytest.fixture
def cpu_file(tmp_path: Path) -> Path:
    path = tmp_path / "thermal_zone0_temp"
    path.write_text("47312\n")
    return path


def probes(
    tmp_path: Path, *, pin_factory: Any = None, clock: list[float] | None = None, **health: Any
) -> HealthProbes:
    ticks = clock if clock is not None else [100.0]
    uptime = tmp_path / "uptime"
    if not uptime.exists():
        uptime.write_text("12345.67 40000.00\n")
    return HealthProbes(
        HealthConfig(**health),
        data_dir=tmp_path,
        pin_factory=pin_factory,
        monotonic=lambda: ticks[0],
        proc_uptime=uptime,
    )


def test_ups_lines_active_high_read_mains_then_battery_then_low(
    tmp_path: Path, factory: MockFactory, cpu_file: Path
) -> None:
    ups = UpsConfig(on_battery_pin="GPIO6", battery_low_pin="GPIO5")
    health = probes(tmp_path, pin_factory=factory, ups=ups, cpu_temperature_file=cpu_file)
    try:
        report = health.read()
        assert (report.power, report.battery_low) == ("mains", False)
        factory.pin("GPIO6").drive_high()
        assert (health.read().power, health.read().battery_low) == ("battery", False)
        factory.pin("GPIO5").drive_high()
        assert (health.read().power, health.read().battery_low) == ("battery", True)
        factory.pin("GPIO6").drive_low()
        factory.pin("GPIO5").drive_low()
        assert (health.read().power, health.read().battery_low) == ("mains", False)
    finally:
        health.close()


@pytest.mark.parametrize("pull", ["up", "none"])
def test_ups_lines_asserted_low_with_pull_up_or_floating(
    tmp_path: Path, factory: MockFactory, pull: Literal["up", "none"]
) -> None:
    # A relay contact of a DIN-rail UPS closing to ground (pull-up on), or a HAT that drives
    # its line low when on battery (no resistor).
    ups = UpsConfig(on_battery_pin=17, active_high=False, pull=pull)
    health = probes(tmp_path, pin_factory=factory, ups=ups)
    pin = factory.pin(17)
    try:
        pin.drive_high()
        assert (health.read().power, health.read().battery_low) == ("mains", None)
        pin.drive_low()
        assert health.read().power == "battery"
    finally:
        health.close()


def test_ups_pins_are_released_on_close(tmp_path: Path, factory: MockFactory) -> None:
    ups = UpsConfig(on_battery_pin="GPIO6", battery_low_pin="GPIO5")
    probes(tmp_path, pin_factory=factory, ups=ups).close()
    again = probes(tmp_path, pin_factory=factory, ups=ups)  # claims them again
    again.close()


def test_a_ups_needs_the_nodes_pin_factory_and_free_pins(
    tmp_path: Path, factory: MockFactory
) -> None:
    ups = UpsConfig(on_battery_pin="GPIO6")
    with pytest.raises(HealthProbeError, match="no GPIO pin factory"):
        build_health_probes(HealthConfig(ups=ups), data_dir=tmp_path)
    from gpiozero import OutputDevice

    relay = OutputDevice("GPIO6", pin_factory=factory)  # a lock relay wired on the same pin
    try:
        with pytest.raises(HealthProbeError, match="cannot claim GPIO inputs"):
            build_health_probes(HealthConfig(ups=ups), data_dir=tmp_path, pin_factory=factory)
    finally:
        relay.close()


def test_without_a_ups_power_is_unknown(tmp_path: Path) -> None:
    health = probes(tmp_path)
    try:
        report = health.read()
        assert (report.power, report.battery_low) == ("unknown", None)
    finally:
        health.close()


def test_cpu_temperature_through_gpiozero(tmp_path: Path, cpu_file: Path) -> None:
    health = probes(tmp_path, cpu_temperature_file=cpu_file)
    try:
        assert health.read().cpu_temp_c == 47.3
        cpu_file.write_text("81250\n")
        assert health.read().cpu_temp_c == 81.2  # rounded to a tenth
    finally:
        health.close()


GPIOZERO_CHECK = """
import sys
from pathlib import Path
from locker_node.config import HealthConfig
from locker_node.health.probes import HealthProbes
sensor = Path(sys.argv[1])
health = HealthProbes(HealthConfig(cpu_temperature_file=sensor), data_dir=sensor.parent)
print(health.read().cpu_temp_c, "gpiozero" in sys.modules)
sensor.write_text("47312")
print(health.read().cpu_temp_c, "gpiozero" in sys.modules)
health.close()
"""


def test_gpiozero_is_loaded_only_for_a_sensor_that_exists(tmp_path: Path) -> None:
    """A computer without a CPU temperature file (a PC, a container) and without a UPS keeps
    gpiozero out of the node's memory; the file appearing loads it and is read."""
    done = subprocess.run(
        [sys.executable, "-c", GPIOZERO_CHECK, str(tmp_path / "thermal_zone0_temp")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "False", "47.3", "True"]


def test_a_missing_temperature_file_reads_none_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no-such-zone"
    health = probes(
        tmp_path,
        cpu_temperature_file=missing,
        enclosure=EnclosureSensorConfig(sensor_file=tmp_path / "no-such-w1"),
    )
    try:
        with caplog.at_level(logging.WARNING, logger="locker_node.health.probes"):
            for _ in range(3):
                report = health.read()
                assert (report.cpu_temp_c, report.enclosure_temp_c) == (None, None)
        warned = [r.getMessage() for r in caplog.records]
        assert len(warned) == 2, warned
        assert any("cpu temperature" in m for m in warned)
        missing.write_text("50000\n")  # the sensor appears (a module loaded late): read again
        assert health.read().cpu_temp_c == 50.0
    finally:
        health.close()


@pytest.mark.parametrize(
    ("text", "celsius"),
    [
        ("23125\n", 23.125),  # DS18B20 `temperature`: millidegrees
        ("-1062\n", -1.062),
        (W1_SLAVE, 23.125),  # DS18B20 `w1_slave`: the CRC line, then t=millidegrees
        (W1_SLAVE_BAD_CRC, None),
        ("85000\n", None),  # a DS18B20's power-on reset value, not a reading
        ("24.5\n", 24.5),  # degrees, from a sensor that writes them so
        ("", None),
        ("garbage", None),
    ],
)
def test_parse_temperature(text: str, celsius: float | None) -> None:
    assert parse_temperature(text) == celsius


def test_enclosure_sensor_file(tmp_path: Path) -> None:
    sensor = tmp_path / "w1_slave"
    sensor.write_text(W1_SLAVE)
    health = probes(tmp_path, enclosure=EnclosureSensorConfig(sensor_file=sensor))
    try:
        assert health.read().enclosure_temp_c == 23.1
        sensor.write_text("250000\n")  # 250 °C: no enclosure is; the wire would refuse it
        assert health.read().enclosure_temp_c is None
    finally:
        health.close()


def test_uptime_and_disk(tmp_path: Path) -> None:
    clock = [100.0]
    health = probes(tmp_path, clock=clock)
    try:
        clock[0] = 3700.9
        report = health.read()
        assert report.uptime_s == 3600 and report.host_uptime_s == 12345
        assert report.disk_total_bytes and report.disk_free_bytes is not None
        assert 0 <= report.disk_free_bytes <= report.disk_total_bytes
        (tmp_path / "uptime").write_text("")
        assert health.read().host_uptime_s is None
    finally:
        health.close()
    gone = probes(tmp_path, disk_path=tmp_path / "not-mounted")
    try:
        report = gone.read()
        assert (report.disk_free_bytes, report.disk_total_bytes) == (None, None)
    finally:
        gone.close()


def test_health_config_in_the_node_toml(tmp_path: Path) -> None:
    base: dict[str, Any] = {
        "bank_id": "NYC-1",
        "data_dir": str(tmp_path),
        "boards": [
            {
                "name": "gpio",
                "protocol": "gpio",
                "pin_factory": "rpigpio",
                "locks": [{"relay": "GPIO17", "sensor": "GPIO27"}],
            }
        ],
    }
    assert parse_config(base).health == HealthConfig()
    ups = {"on_battery_pin": "GPIO6", "battery_low_pin": "GPIO5", "pin_factory": "rpigpio"}
    config = parse_config(base | {"health": {"ups": ups, "enclosure": {"sensor_file": "/sys/w1"}}})
    assert config.health.ups is not None and config.health.ups.battery_low_pin == "GPIO5"
    with pytest.raises(ConfigError, match="share one header and one factory"):
        parse_config(base | {"health": {"ups": {"on_battery_pin": "GPIO6"}}})
    with pytest.raises(ConfigError, match="must be different pins"):
        parse_config(base | {"health": {"ups": ups | {"battery_low_pin": "GPIO6"}}})
    with pytest.raises(ConfigError, match="on_batery_pin"):
        parse_config(base | {"health": {"ups": {"on_batery_pin": "GPIO6"}}})


def _gpio_node_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "bank_id": "NYC-1",
        "central_url": "http://central",
        "data_dir": str(tmp_path),
        "boards": [
            {
                "name": "gpio",
                "protocol": "gpio",
                "pulse_ms": 0,
                "locks": [{"relay": "GPIO17", "sensor": "GPIO27"}],
            }
        ],
        "health": {"ups": {"on_battery_pin": "GPIO6"}},
    }


def test_gpio_lock_boards_and_the_ups_share_one_pin_factory(
    tmp_path: Path, factory: MockFactory
) -> None:
    from locker_node.app import build_hardware

    config = parse_config(_gpio_node_config(tmp_path))
    boards, health, opened = build_hardware(config, None, factory)
    try:
        assert opened is None  # the caller's factory: the caller closes it
        assert health is not None
        factory.pin("GPIO27").drive_high()  # the reed switch (pull-up) open: the door open
        factory.pin("GPIO6").drive_high()
        assert str(boards["gpio"].read_doors()[1]) == "open"
        assert health.read().power == "battery"
    finally:
        for board in boards.values():
            board.close()
        if health is not None:
            health.close()


def test_a_ups_whose_gpio_library_is_missing_stops_the_node(tmp_path: Path) -> None:
    # No silent fallback to another factory: the lgpio library is not installed here.
    from locker_node.app import build_hardware
    from locker_node.hardware.board import BoardUnavailable

    config = parse_config(_gpio_node_config(tmp_path))
    with pytest.raises(BoardUnavailable, match="lgpio"):
        build_hardware(config, None, None)
