"""Generic "0x8A / 0x80" XOR-checksum boards: pure frame builders and scanners, and the driver."""

from __future__ import annotations

from functools import reduce
from operator import xor

from locker_node.hardware.serial_bus import (
    ReplyScanner,
    Scan,
    SerialBus,
    SerialLockBoard,
    SerialPort,
)

UNLOCK_HEADER = 0x8A
READ_HEADER = 0x80
REPLY_HEADERS = frozenset((UNLOCK_HEADER, READ_HEADER))
UNLOCK = 0x11
READ = 0x33
ALL_CHANNELS = 0x00
CHANNEL_FRAME_LENGTH = 5
# The largest boards have 50 channels: 7 status bytes. One spare group keeps odd boards readable.
MAX_STATUS_GROUPS = 8


def xor_checksum(data: bytes) -> int:
    return reduce(xor, data, 0)


def _frame(*body: int) -> bytes:
    head = bytes(body)
    return head + bytes((xor_checksum(head),))


def build_xor_unlock(board: int, channel: int) -> bytes:
    """`8A board channel 11 BCC`, channel 1-based."""
    return _frame(UNLOCK_HEADER, board, channel, UNLOCK)


def build_xor_read_channel(board: int, channel: int) -> bytes:
    return _frame(READ_HEADER, board, channel, READ)


def build_xor_read_all(board: int) -> bytes:
    return _frame(READ_HEADER, board, ALL_CHANNELS, READ)


def scan_xor_channel_reply(board: int, channel: int) -> ReplyScanner[int]:
    """`hdr board channel state BCC`, hdr 8A or 80 (boards disagree); yields the state byte."""

    def scan(buffer: bytes) -> Scan[int]:
        rejected: list[str] = []
        start = 0
        while True:
            start = _find_header(buffer, start)
            if start < 0:
                return Scan(None, len(buffer), tuple(rejected))
            if len(buffer) - start < CHANNEL_FRAME_LENGTH:
                return Scan(None, start, tuple(rejected))
            frame = buffer[start : start + CHANNEL_FRAME_LENGTH]
            if xor_checksum(frame) != 0:
                if frame[1] == board and frame[2] == channel:
                    rejected.append(f"checksum mismatch in {frame.hex(' ')}")
                start += 1
                continue
            if frame[1] != board or frame[2] != channel:
                rejected.append(
                    f"reply for board {frame[1]} channel {frame[2]}, "
                    f"expected board {board} channel {channel}"
                )
                start += CHANNEL_FRAME_LENGTH
                continue
            return Scan(frame[3], start + CHANNEL_FRAME_LENGTH, tuple(rejected))

    return scan


def scan_xor_all_reply(board: int, channels: int) -> ReplyScanner[int]:
    """`hdr board [status bytes, highest channel group first] 33 BCC`; yields a channel bitmask.

    The frame has no length field: its end is the first `33 BCC` that checks out, with at least
    enough status bytes for `channels`; the number of status bytes is taken from where it ends.
    """
    min_groups = max(1, (channels + 7) // 8)
    max_length = 2 + MAX_STATUS_GROUPS + 2

    def scan(buffer: bytes) -> Scan[int]:
        rejected: list[str] = []
        # The earliest header that may still grow into a frame; a later header can hold a
        # complete reply already (the first one was noise), so the search goes on past it.
        keep_from: int | None = None
        start = 0
        while (start := _find_header(buffer, start)) >= 0:
            end = _find_all_reply_end(buffer, start, min_groups)
            if end is None:
                if len(buffer) - start < max_length:
                    keep_from = start if keep_from is None else keep_from
                    if buffer[start + 1 : start + 2] == bytes((board,)):
                        rejected.extend(_checksum_suspects(buffer, start, min_groups))
                start += 1
                continue
            frame = buffer[start:end]
            if frame[1] != board:
                rejected.append(f"reply for board {frame[1]}, expected board {board}")
                start = end
                continue
            groups = frame[2:-2]
            return Scan(int.from_bytes(groups, "big"), end, tuple(rejected))
        return Scan(None, len(buffer) if keep_from is None else keep_from, tuple(rejected))

    return scan


def _find_header(buffer: bytes, start: int) -> int:
    for index in range(start, len(buffer)):
        if buffer[index] in REPLY_HEADERS:
            return index
    return -1


def _checksum_suspects(buffer: bytes, start: int, min_groups: int) -> list[str]:
    """Frames from our board that end in `33` but fail the checksum: why a read may time out."""
    last = min(len(buffer) - 2, start + 2 + MAX_STATUS_GROUPS)
    for command_at in range(start + 2 + min_groups, last + 1):
        if buffer[command_at] == READ:
            return [f"checksum mismatch in {buffer[start : command_at + 2].hex(' ')}"]
    return []


def _find_all_reply_end(buffer: bytes, start: int, min_groups: int) -> int | None:
    running = xor_checksum(buffer[start : start + 2 + min_groups])
    for command_at in range(
        start + 2 + min_groups, min(len(buffer) - 1, start + 2 + MAX_STATUS_GROUPS + 1)
    ):
        running ^= buffer[command_at]
        if buffer[command_at] == READ and buffer[command_at + 1] == running:
            return command_at + 2
    return None


class XorBoard(SerialLockBoard):
    """A 0x8A/0x80 board (8 to 50 channels, DIP-switch address).

    `lock_closed_bit` is the installation's feedback setting: 1 when an active feedback signal
    means "door closed", 0 when it means "door open". The board answers an unlock only after the
    pulse (0.5-1 s), so unlocks wait up to `unlock_timeout_s`; a lost unlock reply raises
    `BoardTimeout` and is never re-sent here: the caller reads the doors first.
    """

    protocol = "xor"
    max_locks = 50
    max_address = 0xFF
    default_baudrate = 9600

    def __init__(
        self,
        port: SerialBus | SerialPort | str,
        *,
        name: str = "board",
        address: int = 1,
        lock_count: int | None = 24,
        lock_closed_bit: int = 1,
        baudrate: int | None = None,
        reply_timeout_s: float = 0.5,
        unlock_timeout_s: float = 2.0,
        read_retries: int = 1,
    ) -> None:
        super().__init__(
            port,
            name=name,
            address=address,
            lock_count=lock_count,
            lock_closed_bit=lock_closed_bit,
            baudrate=baudrate,
            reply_timeout_s=reply_timeout_s,
            read_retries=read_retries,
        )
        self.unlock_timeout_s = unlock_timeout_s

    def _unlock(self, index: int) -> None:
        channel = index + 1
        self.bus.transact(
            build_xor_unlock(self.address, channel),
            scan_xor_channel_reply(self.address, channel),
            timeout_s=self.unlock_timeout_s,
        )

    def _read_lock_bits(self) -> int:
        return self.bus.transact(
            build_xor_read_all(self.address),
            scan_xor_all_reply(self.address, self.lock_count),
            timeout_s=self.reply_timeout_s,
        )
