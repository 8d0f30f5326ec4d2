"""A serial bus shared by the boards on one RS485 line, and the base class of the serial drivers."""

from __future__ import annotations

import abc
import termios
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Generic, Protocol, TypeVar

import serial

from locker_node.hardware.board import (
    BoardProtocolError,
    BoardTimeout,
    BoardUnavailable,
    DoorState,
    LockBoardError,
    check_lock,
    door_state,
)

T = TypeVar("T")

# Everything pyserial (and the termios/ioctl calls under it) raises for a port that went away.
SERIAL_ERRORS: tuple[type[Exception], ...] = (serial.SerialException, OSError, termios.error)


class SerialPort(Protocol):
    """The part of a pyserial port object the bus uses (`serial.Serial` and URL handlers)."""

    timeout: float | None

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1, /) -> bytes: ...

    def write(self, data: bytes, /) -> int | None: ...

    def flush(self) -> None: ...

    def reset_input_buffer(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Scan(Generic[T]):
    """What a reply scanner made of the bytes received so far.

    `consumed` counts the bytes at the head of the buffer that are settled (noise, rejected
    frames and the reply itself); the bus drops them and keeps the rest for the next scan.
    `rejected` says why well-formed but unusable frames were thrown away.
    """

    value: T | None
    consumed: int
    rejected: tuple[str, ...] = ()


ReplyScanner = Callable[[bytes], Scan[T]]


def open_serial_port(url: str, *, baudrate: int) -> SerialPort:
    """Open a device path or any pyserial URL (`socket://host:5000` reaches a TCP gateway)."""
    try:
        port: SerialPort = serial.serial_for_url(url, baudrate=baudrate, timeout=0.02)
    except (ValueError, serial.SerialException, OSError, termios.error) as exc:
        raise BoardUnavailable(f"cannot open serial port {url!r}: {exc}") from exc
    return port


class SerialBus:
    """One serial port and the boards on it: one command on the bus at a time.

    Boards `attach()` when they start using the bus and `detach()` when closed; a bus made with
    `close_when_unused=True` closes itself (and its port, if it owns it) when the last board
    detaches, so several boards built from one config can share it without an owner object.
    The bus sets the port's read timeout to `read_slice_s`; reply deadlines are its own.
    """

    def __init__(
        self,
        port: SerialPort,
        *,
        owns_port: bool = False,
        close_when_unused: bool = False,
        label: str = "serial bus",
        read_slice_s: float = 0.02,
    ) -> None:
        self._port = port
        self._owns_port = owns_port
        self._close_when_unused = close_when_unused
        self.label = label
        self._lock = threading.Lock()
        self._users = 0
        self._closed = False
        self._not_before = 0.0
        # A short read timeout bounds how far a reply deadline can be overshot; a read still
        # returns as soon as a byte arrives, so it costs no latency.
        try:
            port.timeout = read_slice_s
        except SERIAL_ERRORS as exc:
            raise BoardUnavailable(f"{label}: cannot configure the port: {exc}") from exc

    @classmethod
    def open(cls, url: str, *, baudrate: int, close_when_unused: bool = False) -> SerialBus:
        port = open_serial_port(url, baudrate=baudrate)
        try:
            return cls(port, owns_port=True, close_when_unused=close_when_unused, label=url)
        except BoardUnavailable:
            port.close()
            raise

    @property
    def closed(self) -> bool:
        return self._closed

    def attach(self) -> None:
        with self._lock:
            self._ensure_open()
            self._users += 1

    def detach(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users <= 0 and self._close_when_unused:
                self._close_locked()

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def send(self, frame: bytes, *, quiet_after_s: float = 0.0) -> None:
        """Write a command that gets no reply; keep the bus quiet for `quiet_after_s` after it."""
        with self._lock:
            self._ensure_open()
            self._wait_quiet()
            try:
                self._port.reset_input_buffer()
                self._port.write(frame)
                self._port.flush()
            except SERIAL_ERRORS as exc:
                raise BoardUnavailable(f"{self.label}: write failed: {exc}") from exc
            self._not_before = time.monotonic() + quiet_after_s

    def transact(self, frame: bytes, scan: ReplyScanner[T], *, timeout_s: float) -> T:
        """Write a command and return the first reply `scan` accepts, within `timeout_s`."""
        with self._lock:
            self._ensure_open()
            self._wait_quiet()
            try:
                return self._transact_locked(frame, scan, timeout_s)
            except LockBoardError:
                raise  # BoardTimeout is a TimeoutError, hence an OSError: not a port failure
            except SERIAL_ERRORS as exc:
                raise BoardUnavailable(f"{self.label}: {exc}") from exc

    def _transact_locked(self, frame: bytes, scan: ReplyScanner[T], timeout_s: float) -> T:
        # A late reply to an earlier, timed-out command must not be read as this one's reply.
        self._port.reset_input_buffer()
        self._port.write(frame)
        self._port.flush()
        deadline = time.monotonic() + timeout_s
        buffer = bytearray()
        rejected: list[str] = []
        while True:
            result = scan(bytes(buffer))
            rejected.extend(r for r in result.rejected if r not in rejected)
            if result.value is not None:
                return result.value
            del buffer[: result.consumed]
            if time.monotonic() >= deadline:
                break
            waiting = self._port.in_waiting
            buffer += self._port.read(waiting if waiting > 0 else 1)
        command = frame.hex(" ")
        if rejected:
            raise BoardProtocolError(
                f"{self.label}: no valid reply to {command}: {'; '.join(rejected)}"
            )
        if buffer:
            raise BoardTimeout(
                f"{self.label}: incomplete reply to {command} after {timeout_s:.3f} s: "
                f"{bytes(buffer).hex(' ')}"
            )
        raise BoardTimeout(f"{self.label}: no reply to {command} within {timeout_s:.3f} s")

    def _wait_quiet(self) -> None:
        delay = self._not_before - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _ensure_open(self) -> None:
        if self._closed:
            raise BoardUnavailable(f"{self.label} is closed")

    def _close_locked(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_port:
            try:
                self._port.close()
            except SERIAL_ERRORS as exc:
                raise BoardUnavailable(f"{self.label}: close failed: {exc}") from exc


class SerialLockBoard(abc.ABC):
    """A board reached over a serial bus. Takes a bus, a pyserial port object, or a URL.

    A URL or device path is opened here and closed with the board; a port object stays the
    caller's to close; a `SerialBus` is shared and closed by whoever made it (or when unused).
    Status reads are retried `read_retries` times; unlocks never are, because a lost reply does
    not say whether the relay fired.
    """

    protocol: ClassVar[str]
    max_locks: ClassVar[int]
    max_address: ClassVar[int]
    default_baudrate: ClassVar[int]

    def __init__(
        self,
        port: SerialBus | SerialPort | str,
        *,
        name: str = "board",
        address: int = 0,
        lock_count: int | None = None,
        lock_closed_bit: int = 1,
        baudrate: int | None = None,
        reply_timeout_s: float = 0.5,
        read_retries: int = 1,
    ) -> None:
        if not 0 <= address <= self.max_address:
            raise ValueError(
                f"{self.protocol} address must be 0..{self.max_address}, not {address}"
            )
        count = self.max_locks if lock_count is None else lock_count
        if not 1 <= count <= self.max_locks:
            raise ValueError(f"{self.protocol} boards have 1..{self.max_locks} locks, not {count}")
        if lock_closed_bit not in (0, 1):
            raise ValueError(f"lock_closed_bit must be 0 or 1, not {lock_closed_bit}")
        self._name = name
        self.address = address
        self._lock_count = count
        self.lock_closed_bit = lock_closed_bit
        self.reply_timeout_s = reply_timeout_s
        self.read_retries = read_retries
        if isinstance(port, SerialBus):
            bus = port
        elif isinstance(port, str):
            bus = SerialBus.open(
                port, baudrate=baudrate or self.default_baudrate, close_when_unused=True
            )
        else:
            bus = SerialBus(port, close_when_unused=True, label=f"{self.protocol} port")
        bus.attach()
        self.bus = bus
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def lock_count(self) -> int:
        return self._lock_count

    def unlock(self, lock: int) -> None:
        index = check_lock(self._name, lock, self._lock_count)
        self._ensure_open()
        self._unlock(index)

    def read_doors(self) -> Mapping[int, DoorState]:
        self._ensure_open()
        last: LockBoardError | None = None
        for _ in range(1 + self.read_retries):
            try:
                bits = self._read_lock_bits()
            except (BoardTimeout, BoardProtocolError) as exc:
                last = exc
                continue
            return {
                index + 1: door_state((bits >> index) & 1, self.lock_closed_bit)
                for index in range(self._lock_count)
            }
        if last is None:
            # Only a negative read_retries gets here: not a single read was attempted.
            raise ValueError(f"read_retries must be 0 or more, not {self.read_retries}")
        raise last

    def release_all(self) -> None:
        """Nothing to do: these boards time their own relay pulses."""
        self._ensure_open()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.bus.detach()

    def _ensure_open(self) -> None:
        if self._closed:
            raise BoardUnavailable(f"board {self._name!r} is closed")

    @abc.abstractmethod
    def _unlock(self, index: int) -> None:
        """Fire the lock with this 0-based index."""

    @abc.abstractmethod
    def _read_lock_bits(self) -> int:
        """Read the lock feedback bits; bit n is lock n + 1."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, address={self.address})"
