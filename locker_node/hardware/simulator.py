"""A lock-board simulator that speaks the real serial protocols over a pseudo-terminal."""

from __future__ import annotations

import enum
import os
import select
import threading
import time
import tty
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from locker_node.hardware import kerong, xor
from locker_node.hardware.board import DoorState, check_lock

PROTOCOLS = ("kerong-cu16", "kerong-cu48", "xor")
DEFAULT_LOCKS = {"kerong-cu16": 16, "kerong-cu48": 48, "xor": 24}
MAX_LOCKS = {"kerong-cu16": 16, "kerong-cu48": 48, "xor": 50}


class Fault(enum.StrEnum):
    """Faults the simulator can play. Lock faults need a lock; the others affect replies."""

    NO_REPLY = "no-reply"  # acts on commands but answers nothing
    BAD_CHECKSUM = "bad-checksum"  # answers with a corrupted checksum
    WRONG_ADDRESS = "wrong-address"  # answers as another board on the bus
    SPLIT = "split"  # answers one byte at a time
    GARBAGE = "garbage"  # line noise before each answer
    RESET = "reset"  # reboots on the next command: drops it, answers nothing, releases relays
    JAM = "jam"  # per lock: the relay fires (and an unlock is acknowledged), the door stays shut
    LEFT_OPEN = "left-open"  # per lock: the simulated person never closes this door


LOCK_FAULTS = frozenset((Fault.JAM, Fault.LEFT_OPEN))
GARBAGE_BYTES = bytes((0x00, 0xFF, 0x02, 0x8A, 0x55))


@dataclass
class _Door:
    is_open: bool = False
    opens_at: float | None = None
    opened_at: float | None = None
    fired: int = 0


@dataclass
class _ReplyFault:
    remaining: int | None  # None: until cleared


@dataclass
class SimulatedBoardModel:
    """Door and relay state of one simulated board, shared by its protocol front ends.

    A fired lock opens its door `door_delay_s` later (unless jammed); the door then stays open
    until the simulated person closes it (`close_door`), or `auto_close_after_s` after opening
    when that is set. State is computed lazily from `clock`, so no timer thread is needed and a
    test can drive the model with a fake clock.
    """

    lock_count: int
    door_delay_s: float = 0.05
    auto_close_after_s: float | None = None
    reboot_s: float = 0.1
    clock: Callable[[], float] = time.monotonic
    _doors: list[_Door] = field(init=False)
    _lock_faults: dict[int, set[Fault]] = field(init=False, default_factory=dict)
    _reply_faults: dict[Fault, _ReplyFault] = field(init=False, default_factory=dict)
    _deaf_until: float = field(init=False, default=0.0)
    _mutex: threading.RLock = field(init=False, default_factory=threading.RLock)

    def __post_init__(self) -> None:
        if self.lock_count < 1:
            raise ValueError("a board has at least one lock")
        self._doors = [_Door() for _ in range(self.lock_count)]

    # The simulated board

    def fire(self, lock: int) -> None:
        """The board pulses a lock's relay."""
        door = self._door(lock)
        with self._mutex:
            now = self.clock()
            self._settle(now)
            door.fired += 1
            if Fault.JAM in self._lock_faults.get(lock, ()) or door.is_open:
                return
            if door.opens_at is None:
                door.opens_at = now + self.door_delay_s

    def door_states(self) -> dict[int, DoorState]:
        with self._mutex:
            self._settle(self.clock())
            return {
                index + 1: DoorState.OPEN if door.is_open else DoorState.CLOSED
                for index, door in enumerate(self._doors)
            }

    def release_relays(self) -> None:
        """A reboot: every relay drops, so a pulse in progress never opens its door."""
        with self._mutex:
            self._settle(self.clock())
            for door in self._doors:
                door.opens_at = None

    def accept_command(self) -> bool:
        """Account for one received command: False if the board drops it (it resets on this
        command, or is still rebooting)."""
        with self._mutex:
            now = self.clock()
            if now < self._deaf_until:
                return False
            if self._consume(Fault.RESET):
                self._deaf_until = now + self.reboot_s
                self.release_relays()
                return False
            return True

    def take_reply_faults(self) -> set[Fault]:
        """The faults to play on the answer about to be sent (counted per answer)."""
        with self._mutex:
            return {fault for fault in list(self._reply_faults) if self._consume(fault)}

    # The simulated person and the test's controls

    def close_door(self, lock: int) -> None:
        door = self._door(lock)
        with self._mutex:
            self._settle(self.clock())
            door.is_open = False
            door.opens_at = None
            door.opened_at = None

    def force_open(self, lock: int) -> None:
        """Open a door with no command behind it (a forced door, or a failed lock)."""
        door = self._door(lock)
        with self._mutex:
            now = self.clock()
            self._settle(now)
            if not door.is_open:
                door.is_open = True
                door.opened_at = now
            door.opens_at = None

    def set_fault(self, fault: Fault, *, lock: int | None = None, times: int | None = None) -> None:
        """Play `fault`; reply faults last for `times` commands (None: until cleared)."""
        with self._mutex:
            if fault in LOCK_FAULTS:
                if lock is None:
                    raise ValueError(f"fault {fault} needs a lock")
                self._door(lock)
                self._lock_faults.setdefault(lock, set()).add(fault)
            else:
                if times is None and fault is Fault.RESET:
                    times = 1
                self._reply_faults[fault] = _ReplyFault(times)

    def clear_faults(self, *, lock: int | None = None) -> None:
        with self._mutex:
            if lock is None:
                self._lock_faults.clear()
                self._reply_faults.clear()
            else:
                self._lock_faults.pop(lock, None)

    def fired(self, lock: int) -> int:
        """How many times the board pulsed this lock's relay."""
        with self._mutex:
            return self._door(lock).fired

    def status_lines(self) -> list[str]:
        with self._mutex:
            self._settle(self.clock())
            lines = []
            for index, door in enumerate(self._doors):
                lock = index + 1
                state = "open" if door.is_open else "closed"
                if door.opens_at is not None:
                    state += " (opening)"
                faults = sorted(self._lock_faults.get(lock, ()))
                extra = f" faults={','.join(faults)}" if faults else ""
                lines.append(f"lock {lock}: {state} fired={door.fired}{extra}")
            if self._reply_faults:
                active = ", ".join(
                    f"{fault}" + ("" if f.remaining is None else f" x{f.remaining}")
                    for fault, f in sorted(self._reply_faults.items())
                )
                lines.append(f"reply faults: {active}")
            return lines

    def _door(self, lock: int) -> _Door:
        return self._doors[check_lock("simulated", lock, self.lock_count)]

    def _consume(self, fault: Fault) -> bool:
        active = self._reply_faults.get(fault)
        if active is None:
            return False
        if active.remaining is not None:
            active.remaining -= 1
            if active.remaining <= 0:
                del self._reply_faults[fault]
        return True

    def _settle(self, now: float) -> None:
        for index, door in enumerate(self._doors):
            if door.opens_at is not None and now >= door.opens_at:
                door.is_open = True
                door.opened_at = door.opens_at
                door.opens_at = None
            if (
                door.is_open
                and self.auto_close_after_s is not None
                and door.opened_at is not None
                and now >= door.opened_at + self.auto_close_after_s
                and Fault.LEFT_OPEN not in self._lock_faults.get(index + 1, ())
            ):
                door.is_open = False
                door.opened_at = None


@dataclass(frozen=True)
class Reply:
    """Bytes the simulated board sends back, and how."""

    data: bytes
    delay_s: float = 0.0
    split: bool = False


class BoardSimulator:
    """One board on a bus: parses the host's command frames and answers as the real board would.

    Frames addressed to another board are ignored, so several simulators can share one bus.
    """

    def __init__(
        self,
        protocol: str,
        *,
        address: int = 0,
        lock_count: int | None = None,
        door_delay_s: float = 0.05,
        lock_closed_bit: int = 1,
        auto_close_after_s: float | None = None,
        unlock_reply_delay_s: float = 0.0,
        reply_header: int = xor.UNLOCK_HEADER,
        clock: Callable[[], float] = time.monotonic,
        model: SimulatedBoardModel | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
        count = DEFAULT_LOCKS[protocol] if lock_count is None else lock_count
        if not 1 <= count <= MAX_LOCKS[protocol]:
            raise ValueError(f"{protocol} boards have 1..{MAX_LOCKS[protocol]} locks")
        if reply_header not in xor.REPLY_HEADERS:
            raise ValueError("reply_header must be 0x8A or 0x80")
        self.protocol = protocol
        self.address = address
        self.lock_closed_bit = lock_closed_bit
        self.unlock_reply_delay_s = unlock_reply_delay_s
        self.reply_header = reply_header
        self.model = model or SimulatedBoardModel(
            count,
            door_delay_s=door_delay_s,
            auto_close_after_s=auto_close_after_s,
            clock=clock,
        )
        self._buffer = bytearray()
        self._frame_length = {
            "kerong-cu16": kerong.CU16_FRAME_LENGTH,
            "kerong-cu48": kerong.CU48_FRAME_LENGTH,
            "xor": xor.CHANNEL_FRAME_LENGTH,
        }[protocol]

    @property
    def lock_count(self) -> int:
        return self.model.lock_count

    # Control API, for tests and the CLI

    def close_door(self, lock: int) -> None:
        self.model.close_door(lock)

    def force_open(self, lock: int) -> None:
        self.model.force_open(lock)

    def set_fault(self, fault: Fault, *, lock: int | None = None, times: int | None = None) -> None:
        self.model.set_fault(fault, lock=lock, times=times)

    def clear_faults(self, *, lock: int | None = None) -> None:
        self.model.clear_faults(lock=lock)

    def fired(self, lock: int) -> int:
        return self.model.fired(lock)

    def door_states(self) -> dict[int, DoorState]:
        return self.model.door_states()

    # The wire

    def feed(self, data: bytes) -> list[Reply]:
        """Take bytes from the bus; return the replies to send, in order."""
        self._buffer += data
        replies: list[Reply] = []
        while True:
            frame = self._next_frame()
            if frame is None:
                return replies
            if not self._addressed_to_me(frame):
                continue
            if not self.model.accept_command():
                continue
            reply = self._handle(frame)
            if reply is None:
                continue
            faults = self.model.take_reply_faults()
            if Fault.NO_REPLY not in faults:
                replies.append(self._with_faults(reply, faults))

    def _next_frame(self) -> bytes | None:
        length = self._frame_length
        while len(self._buffer) >= length:
            frame = bytes(self._buffer[:length])
            if self._valid(frame):
                del self._buffer[:length]
                return frame
            # Resynchronise one byte later: the host's frame may follow noise.
            del self._buffer[0]
        return None

    def _valid(self, frame: bytes) -> bool:
        if self.protocol == "xor":
            return frame[0] in xor.REPLY_HEADERS and xor.xor_checksum(frame) == 0
        return (
            frame[0] == kerong.STX
            and frame[-2] == kerong.ETX
            and frame[-1] == kerong.kerong_checksum(frame[:-1])
        )

    def _addressed_to_me(self, frame: bytes) -> bool:
        if self.protocol == "kerong-cu16":
            return frame[1] >> 4 == self.address
        return frame[1] == self.address

    def _handle(self, frame: bytes) -> Reply | None:
        if self.protocol == "kerong-cu16":
            return self._handle_cu16(frame)
        if self.protocol == "kerong-cu48":
            return self._handle_cu48(frame)
        return self._handle_xor(frame)

    def _handle_cu16(self, frame: bytes) -> Reply | None:
        command = frame[2]
        index = frame[1] & 0x0F
        if command == kerong.CU16_UNLOCK:
            if index < self.lock_count:
                self.model.fire(index + 1)
            return None
        if command == kerong.CU16_STATUS:
            bits = self._lock_bits()
            header = bytes((kerong.STX, self.address << 4, kerong.CU16_STATUS_REPLY))
            body = header + bits.to_bytes(2, "little") + bytes((0, 0, kerong.ETX))
            return Reply(body + bytes((kerong.kerong_checksum(body),)))
        return None

    def _handle_cu48(self, frame: bytes) -> Reply | None:
        index, command = frame[2], frame[3]
        if command == kerong.CU48_UNLOCK:
            locks = range(self.lock_count) if index == 0x30 else (index,)
            for each in locks:
                if each < self.lock_count:
                    self.model.fire(each + 1)
            return None
        if command == kerong.CU48_STATUS:
            bits = self._lock_bits()
            header = bytes((kerong.STX, self.address, 0x00, kerong.CU48_SUCCESS))
            body = header + bits.to_bytes(6, "little") + bytes(6) + bytes((kerong.ETX,))
            return Reply(body + bytes((kerong.kerong_checksum(body),)))
        return None

    def _handle_xor(self, frame: bytes) -> Reply | None:
        header, channel, command = frame[0], frame[2], frame[3]
        if header == xor.UNLOCK_HEADER and command == xor.UNLOCK:
            if not 1 <= channel <= self.lock_count:
                return None
            self.model.fire(channel)
            body = bytes((self.reply_header, self.address, channel, self._xor_state(channel)))
            return Reply(body + bytes((xor.xor_checksum(body),)), self.unlock_reply_delay_s)
        if header == xor.READ_HEADER and command == xor.READ:
            if channel == xor.ALL_CHANNELS:
                groups = (self.lock_count + 7) // 8
                bits = self._lock_bits().to_bytes(groups, "big")
                body = bytes((xor.READ_HEADER, self.address)) + bits + bytes((xor.READ,))
            elif 1 <= channel <= self.lock_count:
                body = bytes((xor.READ_HEADER, self.address, channel, self._xor_state(channel)))
            else:
                return None
            return Reply(body + bytes((xor.xor_checksum(body),)))
        return None

    def _lock_bits(self) -> int:
        bits = 0
        for lock, state in self.model.door_states().items():
            closed = state is DoorState.CLOSED
            if closed == bool(self.lock_closed_bit):
                bits |= 1 << (lock - 1)
        return bits

    def _xor_state(self, channel: int) -> int:
        return xor.UNLOCK if (self._lock_bits() >> (channel - 1)) & 1 else 0x00

    def _with_faults(self, reply: Reply, faults: set[Fault]) -> Reply:
        data = reply.data
        if Fault.WRONG_ADDRESS in faults:
            data = self._readdressed(data)
        if Fault.BAD_CHECKSUM in faults:
            data = data[:-1] + bytes(((data[-1] + 1) & 0xFF,))
        if Fault.GARBAGE in faults:
            data = GARBAGE_BYTES + data
        return Reply(data, reply.delay_s, split=Fault.SPLIT in faults)

    def _readdressed(self, data: bytes) -> bytes:
        frame = bytearray(data)
        if self.protocol == "kerong-cu16":
            frame[1] = (((self.address + 1) % 10) << 4) | (frame[1] & 0x0F)
        else:
            frame[1] = (self.address + 1) & 0xFF
        body = bytes(frame[:-1])
        check = xor.xor_checksum(body) if self.protocol == "xor" else kerong.kerong_checksum(body)
        return body + bytes((check,))


def wire_time_s(byte_count: int, baudrate: int) -> float:
    """Time `byte_count` bytes take on an 8N1 line: 10 bits each, start and stop included."""
    return 10 * byte_count / baudrate


class PtyBoardServer:
    """Serves one or more simulated boards on a pseudo-terminal, from a background thread.

    Connect a driver to `path` (the pty slave) with real pyserial. The slave stays open here
    too, so a driver can close and reopen the path. With `pace_baudrate`, commands are acted
    on and replies sent only after the time their bytes would take on a real line.
    """

    def __init__(
        self,
        simulators: Iterable[BoardSimulator],
        *,
        pace_baudrate: int | None = None,
        split_gap_s: float = 0.002,
    ) -> None:
        self.simulators = list(simulators)
        if not self.simulators:
            raise ValueError("a bus needs at least one simulated board")
        self.pace_baudrate = pace_baudrate
        self.split_gap_s = split_gap_s
        self._master = -1
        self._slave = -1
        self._wake_read = -1
        self._wake_write = -1
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.path = ""

    def __enter__(self) -> PtyBoardServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> str:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._master, self._slave = os.openpty()
        # Raw mode before any driver opens the slave: no echo, no signals on 0x03, no CR/LF mapping.
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="pty-board-sim", daemon=True)
        self._thread.start()
        return self.path

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        os.write(self._wake_write, b"x")
        self._thread.join()
        self._thread = None
        for fd in (self._master, self._slave, self._wake_read, self._wake_write):
            os.close(fd)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            ready, _, _ = select.select([self._master, self._wake_read], [], [])
            if self._wake_read in ready:
                return
            try:
                data = os.read(self._master, 4096)
            except OSError:
                return
            if self.pace_baudrate:
                time.sleep(wire_time_s(len(data), self.pace_baudrate))
            for simulator in self.simulators:
                for reply in simulator.feed(data):
                    self._send(reply)

    def _send(self, reply: Reply) -> None:
        delay = reply.delay_s
        if self.pace_baudrate:
            delay += wire_time_s(len(reply.data), self.pace_baudrate)
        if delay > 0 and self._stopping.wait(delay):
            return
        if reply.split:
            for index in range(len(reply.data)):
                self._write(reply.data[index : index + 1])
                if self._stopping.wait(self.split_gap_s):
                    return
        else:
            self._write(reply.data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._master, view)
            view = view[written:]


CONTROL_HELP = """\
close N|all           the simulated person closes door N (or every door)
force-open N          door N opens with no command (forced entry)
fault jam N           lock N fires but its door never opens
fault left-open N     nobody closes door N, even with auto-close
fault no-reply [K]    answer nothing (K commands, default: until cleared)
fault bad-checksum [K]  answer with a corrupted checksum
fault wrong-address [K] answer as another board
fault split [K]       answer one byte at a time
fault garbage [K]     send line noise before each answer
fault reset           reboot on the next command: drop it, release relays
clear [N]             clear all faults (or lock N's)
status                door states, relay pulses and active faults
help                  this list"""


def run_control_command(simulator: BoardSimulator, line: str) -> list[str]:
    """Apply one control-channel line (see CONTROL_HELP); the last line is `ok` or `error: ...`."""
    words = line.split()
    if not words:
        return []
    try:
        return _control(simulator, words[0].lower(), words[1:])
    except (ValueError, LookupError) as exc:
        return [f"error: {exc}"]


def _control(simulator: BoardSimulator, verb: str, args: list[str]) -> list[str]:
    if verb == "help":
        return [*CONTROL_HELP.splitlines(), "ok"]
    if verb == "status":
        return [*simulator.model.status_lines(), "ok"]
    if verb == "close" and len(args) == 1:
        locks = range(1, simulator.lock_count + 1) if args[0] == "all" else [int(args[0])]
        for lock in locks:
            simulator.close_door(lock)
        return ["ok"]
    if verb == "force-open" and len(args) == 1:
        simulator.force_open(int(args[0]))
        return ["ok"]
    if verb == "clear" and len(args) <= 1:
        simulator.clear_faults(lock=int(args[0]) if args else None)
        return ["ok"]
    if verb == "fault" and args:
        fault = Fault(args[0])
        if fault in LOCK_FAULTS:
            if len(args) != 2:
                raise ValueError(f"usage: fault {fault} N")
            simulator.set_fault(fault, lock=int(args[1]))
        else:
            if len(args) > 2:
                raise ValueError(f"usage: fault {fault} [K]")
            simulator.set_fault(fault, times=int(args[1]) if len(args) == 2 else None)
        return ["ok"]
    raise ValueError(f"unknown command {' '.join([verb, *args])!r} (try: help)")
