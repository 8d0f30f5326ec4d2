"""Kerong CU16/CU12 and CU48 boards: pure frame builders and reply scanners, and the drivers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from locker_node.hardware.serial_bus import ReplyScanner, Scan, SerialLockBoard

T = TypeVar("T")

STX = 0x02
ETX = 0x03

CU16_STATUS = 0x30
CU16_UNLOCK = 0x31
CU16_STATUS_REPLY = 0x35
CU16_FRAME_LENGTH = 5
CU16_STATUS_REPLY_LENGTH = 9

CU48_STATUS = 0x60
CU48_UNLOCK = 0x61
CU48_SUCCESS = 0x75
CU48_FRAME_LENGTH = 6
CU48_STATUS_REPLY_LENGTH = 18


@dataclass(frozen=True)
class KerongStatus:
    """A status reply: bit n of each mask is lock (or item sensor) n + 1."""

    locks: int
    sensors: int


def kerong_checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def _frame(*body: int) -> bytes:
    head = bytes((STX, *body, ETX))
    return head + bytes((kerong_checksum(head),))


def build_cu16_unlock(board: int, lock_index: int) -> bytes:
    """`02 ADDR 31 03 SUM` with ADDR = board << 4 | lock_index (0-based)."""
    return _frame((board << 4) | lock_index, CU16_UNLOCK)


def build_cu16_status_request(board: int) -> bytes:
    return _frame(board << 4, CU16_STATUS)


def build_cu48_unlock(board: int, lock_index: int) -> bytes:
    """`02 ADDR LOCK 61 03 SUM`, the lock index (0-based) in byte 2."""
    return _frame(board, lock_index, CU48_UNLOCK)


def build_cu48_status_request(board: int) -> bytes:
    return _frame(board, 0x00, CU48_STATUS)


def scan_stx_frames(buffer: bytes, length: int, accept: Callable[[bytes], T | str]) -> Scan[T]:
    """Find the first `length`-byte `STX .. ETX SUM` frame that `accept` takes.

    Noise before STX is skipped; a frame with a bad checksum is rejected and the search resumes
    one byte later (its STX may have been noise); `accept` returns a reason to reject a frame
    that is valid but not the awaited reply (another address, another command).
    """
    rejected: list[str] = []
    start = 0
    while True:
        start = buffer.find(STX, start)
        if start < 0:
            return Scan(None, len(buffer), tuple(rejected))
        if len(buffer) - start < length:
            return Scan(None, start, tuple(rejected))
        frame = buffer[start : start + length]
        if frame[-2] != ETX:
            start += 1
            continue
        if frame[-1] != kerong_checksum(frame[:-1]):
            rejected.append(f"checksum mismatch in {frame.hex(' ')}")
            start += 1
            continue
        verdict = accept(frame)
        if isinstance(verdict, str):
            rejected.append(verdict)
            start += length
            continue
        return Scan(verdict, start + length, tuple(rejected))


def scan_cu16_status_reply(board: int) -> ReplyScanner[KerongStatus]:
    """`02 ADDR 35 L1-8 L9-16 S1-8 S9-16 03 SUM` from this board."""
    address = board << 4

    def accept(frame: bytes) -> KerongStatus | str:
        if frame[1] != address:
            return f"reply for address {frame[1]:02X}, expected {address:02X}"
        if frame[2] != CU16_STATUS_REPLY:
            return f"unexpected command {frame[2]:02X} in {frame.hex(' ')}"
        return KerongStatus(
            locks=int.from_bytes(frame[3:5], "little"),
            sensors=int.from_bytes(frame[5:7], "little"),
        )

    return lambda buffer: scan_stx_frames(buffer, CU16_STATUS_REPLY_LENGTH, accept)


def scan_cu48_status_reply(board: int) -> ReplyScanner[KerongStatus]:
    """`02 ADDR 00 75 [6 bytes locks] [6 bytes sensors] 03 SUM`, least significant byte first."""

    def accept(frame: bytes) -> KerongStatus | str:
        if frame[1] != board:
            return f"reply for address {frame[1]:02X}, expected {board:02X}"
        if frame[3] != CU48_SUCCESS:
            return f"board reported status {frame[3]:02X} in {frame.hex(' ')}"
        return KerongStatus(
            locks=int.from_bytes(frame[4:10], "little"),
            sensors=int.from_bytes(frame[10:16], "little"),
        )

    return lambda buffer: scan_stx_frames(buffer, CU48_STATUS_REPLY_LENGTH, accept)


class KerongCu16Board(SerialLockBoard):
    """Kerong KR-CU16 (or CU12 with `lock_count=12`), board ids 0-9 on one bus.

    The board sends nothing back after an unlock, so the bus stays quiet for
    `settle_after_unlock_s` before the next command (drivers read status 25-200 ms later).
    """

    protocol = "kerong-cu16"
    max_locks = 16
    max_address = 9
    default_baudrate = 19200
    settle_after_unlock_s = 0.025

    def _unlock(self, index: int) -> None:
        self.bus.send(
            build_cu16_unlock(self.address, index), quiet_after_s=self.settle_after_unlock_s
        )

    def _read_lock_bits(self) -> int:
        status = self.bus.transact(
            build_cu16_status_request(self.address),
            scan_cu16_status_reply(self.address),
            timeout_s=self.reply_timeout_s,
        )
        return status.locks


class KerongCu48Board(SerialLockBoard):
    """Kerong CU48 / CU48B: up to 48 locks, status replies carry a success code."""

    protocol = "kerong-cu48"
    max_locks = 48
    max_address = 0xFF
    default_baudrate = 19200
    settle_after_unlock_s = 0.025

    def _unlock(self, index: int) -> None:
        self.bus.send(
            build_cu48_unlock(self.address, index), quiet_after_s=self.settle_after_unlock_s
        )

    def _read_lock_bits(self) -> int:
        status = self.bus.transact(
            build_cu48_status_request(self.address),
            scan_cu48_status_reply(self.address),
            timeout_s=self.reply_timeout_s,
        )
        return status.locks
