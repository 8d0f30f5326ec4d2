"""The node's TOML configuration file as validated pydantic models."""

from __future__ import annotations

import ssl
import tomllib
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from locker_node.domain.dropoffs import DROPOFF_CODE_DIGITS
from locker_node.domain.lockout import MAX_GUESS_CHANCE_PER_DAY, LockoutPolicy

# Every table forbids unknown keys: a misspelt `lock_closed_bit` or `central_url` would otherwise
# fall back to its default without a word, and at a locker that means doors read backwards or a
# bank silently running offline. Later features add their own table as one more field with a
# default (e.g. `sync: SyncConfig = SyncConfig()`), so older files keep loading.
_STRICT = ConfigDict(extra="forbid", frozen=True)

SERIAL_PROTOCOLS = ("kerong-cu16", "kerong-cu48", "xor")
SerialProtocol = Literal["kerong-cu16", "kerong-cu48", "xor"]
SizeClass = Literal["S", "M", "L", "XL"]

# Per protocol: (highest lock count, default lock count, highest address, default address,
# default baud rate). The protocol note gives board ids 0-9 on a Kerong CU16 bus.
_SERIAL_LIMITS: dict[str, tuple[int, int, int, int, int]] = {
    "kerong-cu16": (16, 16, 9, 0, 19200),
    "kerong-cu48": (48, 48, 0xFF, 0, 19200),
    "xor": (50, 24, 0xFF, 1, 9600),
}


class ConfigError(ValueError):
    """The node config file is missing, is not TOML, or does not validate."""


class KioskConfig(BaseModel):
    model_config = _STRICT

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    kiosk_id: str = Field(
        default="kiosk", min_length=1, max_length=32, description="keypad lockouts are per kiosk"
    )
    idle_timeout_s: int = Field(
        default=60, ge=5, le=600, description="every screen returns home after this long idle"
    )
    language: Literal["en", "es"] = "en"


class LockoutConfig(BaseModel):
    """Waits after wrong codes (see `LockoutPolicy`): by default a steady 30 s pace after five
    free attempts; `max_lockout_s` above `first_lockout_s` makes the waits double up to it."""

    model_config = _STRICT

    free_attempts: int = Field(default=5, ge=1, le=20)
    first_lockout_s: int = Field(default=30, ge=1)
    max_lockout_s: int = Field(default=30, ge=1)
    window_s: int = Field(default=86_400, ge=60, description="wrong attempts count this long")

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        if self.max_lockout_s < self.first_lockout_s:
            raise ValueError("max_lockout_s must be at least first_lockout_s")
        if self.window_s < self.max_lockout_s:
            raise ValueError("window_s must be at least max_lockout_s")
        return self

    def policy(self) -> LockoutPolicy:
        return LockoutPolicy(
            free_attempts=self.free_attempts,
            first_lockout_s=self.first_lockout_s,
            max_lockout_s=self.max_lockout_s,
            window_s=self.window_s,
        )


class PickupConfig(BaseModel):
    model_config = _STRICT

    # Ten digits: with a 30 s pace an attacker gets about 2,900 guesses a day (README).
    code_digits: int = Field(default=10, ge=6, le=12)
    hold_hours: int = Field(default=72, ge=1, description="from deposit to the pickup deadline")
    keypad: LockoutConfig = LockoutConfig()


class CourierConfig(BaseModel):
    model_config = _STRICT

    session_idle_s: int = Field(default=300, ge=30, le=3600)
    # Courier codes come from central with 8 digits: a 60 s pace keeps the bound (README).
    login: LockoutConfig = LockoutConfig(first_lockout_s=60, max_lockout_s=60)


class DepositConfig(BaseModel):
    model_config = _STRICT

    allow_upsize: bool = Field(
        default=True, description="a parcel may take a larger class when its own is full"
    )
    allow_walk_up: bool = Field(
        default=False, description="accept parcels with no reservation when there is room"
    )
    confirm_timeout_s: int = Field(
        default=900, ge=60, description="an unconfirmed deposit is abandoned after this long"
    )


class DoorsConfig(BaseModel):
    model_config = _STRICT

    confirm_window_ms: int = Field(default=2000, ge=50, description="wait for the sensor")
    confirm_poll_ms: int = Field(default=50, ge=5)
    attempts: int = Field(default=2, ge=1, le=5, description="fire this often before a jam")
    left_open_alert_s: int = Field(default=60, ge=5)
    monitor_interval_ms: int = Field(default=500, ge=50, le=5000)


class SyncConfig(BaseModel):
    """How often the node talks to central (used only when `central_url` is set)."""

    model_config = _STRICT

    # How often the node looks at its outbox and sends what is queued: a local read, no request
    # to central while nothing is.
    interval_s: float = Field(
        default=2.0, ge=0.05, le=300, description="look at the outbox this often, send what waits"
    )
    # The feed is pulled at once when a heartbeat's answer says a pull would bring news (a
    # reservation changed, a command waits), when the courier codes are due and when the kiosk
    # meets a parcel it does not know; and besides, at least this often, as a safety net (at
    # the defaults the courier codes' pull every 600 s is that pull). A pull that finds nothing
    # new costs central a 304. Before it existed `interval_s` paced the feed too: a node.toml
    # that sets `interval_s` and not this keeps its feed at that pace.
    feed_interval_s: float = Field(
        default=600.0, ge=0.05, le=3600, description="pull the feed at least this often"
    )
    heartbeat_s: float = Field(default=30.0, ge=1, le=600)
    courier_codes_s: float = Field(
        default=600.0, ge=1, description="fetch courier code hashes this often (scrypt is slow)"
    )
    batch_size: int = Field(default=500, ge=1, le=500, description="events per request")
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    remote_open_limit: int = Field(
        default=3, ge=0, le=100, description="remote opens allowed per window; more are refused"
    )
    remote_open_window_s: int = Field(default=600, ge=1)
    # Guarded opens: central's approved "open all" commands allowed per window; more are refused.
    mass_open_limit: int = Field(
        default=2, ge=0, le=100, description="mass opens (several doors) allowed per window"
    )
    mass_open_window_s: int = Field(default=86_400, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _feed_at_the_old_interval(cls, data: Any) -> Any:
        """An earlier node.toml's `interval_s` paced both the outbox and the feed: without a
        `feed_interval_s` of its own, its feed keeps that pace."""
        if isinstance(data, dict) and "interval_s" in data and "feed_interval_s" not in data:
            return {**data, "feed_interval_s": data["interval_s"]}
        return data


GpioPinFactory = Literal["lgpio", "rpigpio", "pigpio", "native"]


# Fleet health ([health]): what the heartbeat reports about the node's computer -----------------


class UpsConfig(BaseModel):
    """A UPS's status lines on GPIO inputs (read through gpiozero)::

        [health.ups]
        on_battery_pin = "GPIO6"   # asserted while the UPS runs on its battery
        battery_low_pin = "GPIO5"  # optional: asserted when the battery runs low
        active_high = true         # asserted means high (false: asserted means low)
        pull = "down"              # internal resistor: "up", "down" or "none"

    A node with GPIO lock boards shares one pin factory with them (the same `pin_factory`).
    """

    model_config = _STRICT

    on_battery_pin: int | str
    battery_low_pin: int | str | None = None
    active_high: bool = True
    # "none": no internal resistor, for a UPS that drives the line both ways.
    pull: Literal["up", "down", "none"] = "down"
    pin_factory: GpioPinFactory = "lgpio"

    @property
    def pull_up(self) -> bool | None:
        """gpiozero's `pull_up`: True, False, or None for no resistor."""
        return {"up": True, "down": False, "none": None}[self.pull]

    @model_validator(mode="after")
    def _check_pins(self) -> Self:
        if self.battery_low_pin is not None and str(self.battery_low_pin) == str(
            self.on_battery_pin
        ):
            raise ValueError("on_battery_pin and battery_low_pin must be different pins")
        return self


class EnclosureSensorConfig(BaseModel):
    """A temperature sensor inside the enclosure, read from a file (a DS18B20 on 1-Wire:
    `/sys/bus/w1/devices/28-.../temperature`, or its `w1_slave`)."""

    model_config = _STRICT

    sensor_file: Path


class HealthConfig(BaseModel):
    """What the heartbeat reports about the node's computer (`locker_node.health`)."""

    model_config = _STRICT

    disk_path: Path | None = Field(default=None, description="absent: the data directory")
    cpu_temperature_file: Path = Path("/sys/class/thermal/thermal_zone0/temp")
    ups: UpsConfig | None = None
    enclosure: EnclosureSensorConfig | None = None


# Node updates ([update]) ------------------------------------------------------------------------


class UpdateConfig(BaseModel):
    """Node updates (`[update]`): install the version central wants from the operator's own
    package index into a fresh venv, switch to it, and go back by itself when it is not healthy
    in time. Off by default; it needs `locker-node supervise` as the service's command."""

    model_config = _STRICT

    enabled: bool = False
    index_url: str | None = Field(default=None, description="PEP 503 simple index of the operator")
    find_links: str | None = Field(default=None, description="a page or folder of wheels")
    trusted_host: str | None = Field(default=None, description="an index served over plain http")
    root: Path = Field(
        default=Path("/var/lib/locker-node/updates"),
        description="holds venvs/<version>/, the `current` link and update-state.json",
    )
    verify_timeout_s: float = Field(default=300.0, ge=5, le=3600)
    install_timeout_s: float = Field(default=900.0, ge=10, le=7200)
    python: Path | None = Field(default=None, description="interpreter for new venvs")
    package: str = Field(default="locker-network", min_length=1, max_length=100)
    compile: bool = Field(default=True, description="byte-compile the new venv (slow SD cards)")

    @model_validator(mode="after")
    def _check_source(self) -> Self:
        if self.enabled and not (self.index_url or self.find_links):
            raise ValueError("update.enabled needs index_url or find_links")
        if not self.root.is_absolute():
            raise ValueError("update.root must be an absolute path")
        for url in (self.index_url, self.find_links):
            if url is not None and not url.startswith(("https://", "http://", "file:", "/")):
                raise ValueError(f"update: {url!r} is not an http(s) URL or a path")
        return self


class SerialBoardConfig(BaseModel):
    """An RS485 board. Boards that share a `port` share one bus (and must agree on baud rate)."""

    model_config = _STRICT

    name: str = Field(min_length=1)
    protocol: SerialProtocol
    port: str = Field(min_length=1, description="device path or pyserial URL")
    baudrate: int | None = Field(default=None, gt=0)
    address: int | None = Field(default=None, ge=0)
    lock_closed_bit: Literal[0, 1] = Field(
        default=1, description="what a lock feedback bit of 1 means: 1 closed, 0 open"
    )
    locks: int | None = Field(default=None, ge=1, description="locks wired on this board")
    reply_timeout_ms: int = Field(default=500, gt=0)
    unlock_timeout_ms: int = Field(default=2000, gt=0, description="xor boards answer unlocks")

    @model_validator(mode="after")
    def _check_limits(self) -> Self:
        max_locks, _, max_address, _, _ = _SERIAL_LIMITS[self.protocol]
        if self.locks is not None and self.locks > max_locks:
            raise ValueError(
                f"board {self.name!r}: {self.protocol} boards have at most {max_locks} locks"
            )
        if self.address is not None and self.address > max_address:
            raise ValueError(
                f"board {self.name!r}: {self.protocol} addresses are 0..{max_address}, "
                f"not {self.address}"
            )
        return self

    @property
    def lock_count(self) -> int:
        return self.locks if self.locks is not None else _SERIAL_LIMITS[self.protocol][1]

    @property
    def bus_address(self) -> int:
        return self.address if self.address is not None else _SERIAL_LIMITS[self.protocol][3]

    @property
    def line_baudrate(self) -> int:
        return self.baudrate if self.baudrate is not None else _SERIAL_LIMITS[self.protocol][4]


class GpioLockConfig(BaseModel):
    model_config = _STRICT

    relay: int | str
    sensor: int | str


class GpioBoardConfig(BaseModel):
    """Relays and reed switches on the node's GPIO header, one `{relay, sensor}` pair per lock."""

    model_config = _STRICT

    name: str = Field(min_length=1)
    protocol: Literal["gpio"]
    pin_factory: Literal["lgpio", "rpigpio", "pigpio", "native"] = "lgpio"
    relay_active_high: bool = False
    sensor_pull_up: bool = True
    door_closed_when_active: bool = True
    pulse_ms: int = Field(default=500, ge=0)
    bounce_ms: int | None = Field(default=None, ge=0)
    locks: list[GpioLockConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_pins(self) -> Self:
        pins = [str(p) for lock in self.locks for p in (lock.relay, lock.sensor)]
        reused = sorted(pin for pin, count in Counter(pins).items() if count > 1)
        if reused:
            raise ValueError(f"board {self.name!r}: pins used twice: {', '.join(reused)}")
        return self

    @property
    def lock_count(self) -> int:
        return len(self.locks)


class SimulatedBoardConfig(BaseModel):
    """An in-process simulated board, for development without hardware."""

    model_config = _STRICT

    name: str = Field(min_length=1)
    protocol: Literal["simulated"]
    locks: int = Field(default=16, ge=1, le=256)
    door_delay_ms: int = Field(default=50, ge=0)
    auto_close_ms: int | None = Field(default=None, gt=0)

    @property
    def lock_count(self) -> int:
        return self.locks


BoardConfig = Annotated[
    SerialBoardConfig | GpioBoardConfig | SimulatedBoardConfig, Field(discriminator="protocol")
]


class CompartmentConfig(BaseModel):
    """One door of the bank::

        [[compartments]]
        label = "A01"
        size = "S"
        board = "main"
        lock = 1
        accessible = true   # optional: within reach from a wheelchair (ADA height)

    An accessible compartment is kept for parcels whose recipient asked for one; other parcels
    get it only when no other compartment fits. `locker-node provision` writes the flag as
    central knows it, and the node reports it back when it enrolls again.
    """

    model_config = _STRICT

    label: str = Field(min_length=1)
    size: SizeClass
    board: str
    lock: int = Field(ge=1, description="1-based, as printed on the board")
    # Strict: TOML has real booleans; a quoted "yes" is a mistake to report, not one to guess at.
    accessible: StrictBool = Field(
        default=False, description="within reach from a wheelchair (ADA height)"
    )


class NodeConfig(BaseModel):
    """The whole node config file (see DESIGN.md for an example; `CompartmentConfig` for the
    optional `accessible = true` of a door within reach from a wheelchair)."""

    model_config = _STRICT

    bank_id: str = Field(min_length=1)
    central_url: str | None = Field(default=None, description="absent: the node runs on its own")
    ca_bundle: Path | None = Field(
        default=None,
        description="PEM CA certificates central's must chain to; absent: the system's CA store",
    )
    data_dir: Path
    kiosk: KioskConfig = KioskConfig()
    pickup: PickupConfig = PickupConfig()
    courier: CourierConfig = CourierConfig()
    deposit: DepositConfig = DepositConfig()
    doors: DoorsConfig = DoorsConfig()
    sync: SyncConfig = SyncConfig()
    update: UpdateConfig = UpdateConfig()
    health: HealthConfig = HealthConfig()
    boards: list[BoardConfig] = Field(min_length=1)
    compartments: list[CompartmentConfig] = Field(default_factory=list)

    @field_validator("central_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("central_url must be an http(s) URL")
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _check_ca_bundle(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        base_dir = info.context.get("base_dir") if isinstance(info.context, dict) else None
        if isinstance(base_dir, Path) and not value.is_absolute():
            value = base_dir / value
        return check_ca_bundle(value)

    @model_validator(mode="after")
    def _check_references(self) -> Self:
        if self.ca_bundle is not None and not (self.central_url or "").startswith("https://"):
            # Refused rather than ignored: whoever set it expects TLS to central.
            raise ValueError("ca_bundle is set but central_url is not an https:// URL")
        boards = {board.name: board for board in self.boards}
        duplicates = _duplicates(board.name for board in self.boards)
        if duplicates:
            raise ValueError(f"board names used twice: {', '.join(duplicates)}")
        _check_shared_buses([b for b in self.boards if isinstance(b, SerialBoardConfig)])
        duplicates = _duplicates(c.label for c in self.compartments)
        if duplicates:
            raise ValueError(f"compartment labels used twice: {', '.join(duplicates)}")
        wired: dict[tuple[str, int], str] = {}
        for compartment in self.compartments:
            board = boards.get(compartment.board)
            if board is None:
                raise ValueError(
                    f"compartment {compartment.label!r} refers to board {compartment.board!r}, "
                    f"which is not configured (boards: {', '.join(sorted(boards))})"
                )
            if compartment.lock > board.lock_count:
                raise ValueError(
                    f"compartment {compartment.label!r}: board {board.name!r} "
                    f"({board.protocol}) has locks 1..{board.lock_count}, not {compartment.lock}"
                )
            other = wired.setdefault((board.name, compartment.lock), compartment.label)
            if other != compartment.label:
                raise ValueError(
                    f"compartments {other!r} and {compartment.label!r} share lock "
                    f"{compartment.lock} on board {board.name!r}"
                )
        self._check_guessing_bound()
        return self

    @model_validator(mode="after")
    def _check_health_pins(self) -> Self:
        """The UPS and GPIO lock boards share the header, so they share one pin factory."""
        ups = self.health.ups
        if ups is not None:
            others = sorted(
                {b.pin_factory for b in self.boards if isinstance(b, GpioBoardConfig)}
                - {ups.pin_factory}
            )
            if others:
                raise ValueError(
                    f"health.ups: pin_factory {ups.pin_factory!r} differs from the GPIO "
                    f"boards' ({', '.join(others)}); they share one header and one factory"
                )
        return self

    def _check_guessing_bound(self) -> None:
        """Refuse a keypad policy under which guessing could open a full bank too easily."""
        policy = self.pickup.keypad.policy()
        live_codes = max(1, len(self.compartments))
        # Drop-off codes (10 digits, from central) are typed on the same keypad with the same
        # budget: the shorter of the two sets how many codes there are to guess among.
        digits = min(self.pickup.code_digits, DROPOFF_CODE_DIGITS)
        chance = policy.guess_chance_per_day(live_codes, 10**digits)
        if chance >= MAX_GUESS_CHANCE_PER_DAY:
            raise ValueError(
                f"pickup.keypad: {policy.max_attempts_per_day()} guesses a day at a full bank of "
                f"{live_codes} compartments open one with probability {chance:.1e}, not below "
                f"{MAX_GUESS_CHANCE_PER_DAY:.0e}; lengthen the lockouts or the codes"
            )

    def board(self, name: str) -> BoardConfig:
        for board in self.boards:
            if board.name == name:
                return board
        raise KeyError(name)


def check_ca_bundle(path: Path) -> Path:
    """`path` if it is a readable PEM file of CA certificates, else a ValueError saying why.

    Checked when the config loads, so that a wrong path stops the node at start instead of
    failing every sync with a TLS error."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError(f"{path}: holds no PEM certificate")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"{path}: not a usable PEM CA bundle: {exc}") from exc
    return path


def _duplicates(names: Any) -> list[str]:
    return sorted(name for name, count in Counter(names).items() if count > 1)


def _check_shared_buses(boards: list[SerialBoardConfig]) -> None:
    by_port: dict[str, list[SerialBoardConfig]] = {}
    for board in boards:
        by_port.setdefault(board.port, []).append(board)
    for port, sharing in by_port.items():
        rates = {board.line_baudrate for board in sharing}
        if len(rates) > 1:
            raise ValueError(f"boards on {port} disagree on the baud rate: {sorted(rates)}")
        for protocol in {board.protocol for board in sharing}:
            same = [b for b in sharing if b.protocol == protocol]
            taken = _duplicates(str(b.bus_address) for b in same)
            if taken:
                raise ValueError(f"{protocol} boards on {port} share address {', '.join(taken)}")


def parse_config(
    data: dict[str, Any], *, base_dir: Path | None = None, source: str = "node config"
) -> NodeConfig:
    """Validate an already-parsed config; a relative `data_dir` or `ca_bundle` is taken from
    `base_dir`."""
    try:
        config = NodeConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(_describe(source, exc)) from exc
    if base_dir is not None and not config.data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": base_dir / config.data_dir})
    return config


def load_config(path: str | Path) -> NodeConfig:
    """Read and validate the node's TOML config file; `data_dir` is relative to the file."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the node config: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(data, base_dir=path.parent, source=str(path))


def _describe(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: invalid node config:"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(file)"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)
