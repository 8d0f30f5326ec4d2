"""The board simulator: door model, protocol answers, faults and the control channel."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from locker_node.hardware import kerong, xor
from locker_node.hardware.board import DoorState
from locker_node.hardware.simulator import (
    BoardSimulator,
    Fault,
    PtyBoardServer,
    SimulatedBoardModel,
    run_control_command,
)
from locker_node.hardware.xor import XorBoard
from tests.clock import FakeClock
from tests.locker_node.support import node_clock, wait_until

OPEN, CLOSED = DoorState.OPEN, DoorState.CLOSED


def model(**options: object) -> tuple[SimulatedBoardModel, FakeClock]:
    clock = node_clock()
    return SimulatedBoardModel(4, clock=clock.monotonic, **options), clock  # type: ignore[arg-type]


def test_a_fired_door_opens_after_the_delay_and_stays_open_until_closed() -> None:
    doors, clock = model(door_delay_s=0.05)

    doors.fire(1)
    assert doors.door_states()[1] is CLOSED
    clock.advance(0.05)
    assert doors.door_states()[1] is OPEN
    clock.advance(3600)
    assert doors.door_states()[1] is OPEN

    doors.close_door(1)
    assert doors.door_states()[1] is CLOSED
    assert doors.fired(1) == 1


def test_auto_close_and_a_door_left_open() -> None:
    doors, clock = model(door_delay_s=0.0, auto_close_after_s=1.0)
    doors.set_fault(Fault.LEFT_OPEN, lock=2)

    doors.fire(1)
    doors.fire(2)
    clock.advance(1.0)

    assert doors.door_states() == {1: CLOSED, 2: OPEN, 3: CLOSED, 4: CLOSED}


def test_a_jammed_lock_fires_but_its_door_never_opens() -> None:
    doors, clock = model(door_delay_s=0.0)
    doors.set_fault(Fault.JAM, lock=3)

    doors.fire(3)
    clock.advance(10)

    assert doors.door_states()[3] is CLOSED
    assert doors.fired(3) == 1


def test_a_reset_drops_the_command_releases_relays_and_reboots() -> None:
    doors, clock = model(door_delay_s=0.5)
    doors.fire(1)  # pulse in progress
    doors.set_fault(Fault.RESET)

    assert doors.accept_command() is False  # the command that hit the reset
    assert doors.accept_command() is False  # still rebooting
    clock.advance(doors.reboot_s)
    assert doors.accept_command() is True
    clock.advance(1)
    assert doors.door_states()[1] is CLOSED


def test_reply_faults_count_down_per_answer() -> None:
    doors, _ = model()
    doors.set_fault(Fault.NO_REPLY, times=2)

    assert [Fault.NO_REPLY in doors.take_reply_faults() for _ in range(3)] == [True, True, False]


def test_cu16_simulator_answers_status_for_its_address_only() -> None:
    sim = BoardSimulator("kerong-cu16", address=1, lock_count=16, door_delay_s=0.0)
    sim.force_open(1)

    assert sim.feed(kerong.build_cu16_status_request(0)) == []
    (reply,) = sim.feed(kerong.build_cu16_status_request(1))

    assert reply.data == bytes.fromhex("02 10 35 FE FF 00 00 03 47")


def test_simulator_resynchronises_after_noise_and_split_commands() -> None:
    sim = BoardSimulator("kerong-cu48", door_delay_s=0.0)
    command = kerong.build_cu48_unlock(0, 4)

    assert sim.feed(b"\xff\x02\x00" + command[:3]) == []
    assert sim.feed(command[3:]) == []

    assert sim.fired(5) == 1


def test_xor_simulator_answers_unlock_with_the_configured_header() -> None:
    sim = BoardSimulator("xor", address=1, reply_header=0x80, door_delay_s=0.0)

    (reply,) = sim.feed(xor.build_xor_unlock(1, 1))

    # The answer carries the lock's feedback after the pulse: open (no signal) here.
    assert reply.data == bytes.fromhex("80 01 01 00 80")


def test_wrong_address_fault_still_checks_out() -> None:
    sim = BoardSimulator("xor", address=1)
    sim.set_fault(Fault.WRONG_ADDRESS)

    (reply,) = sim.feed(xor.build_xor_read_channel(1, 1))

    assert reply.data[1] == 2
    assert xor.xor_checksum(reply.data) == 0


def test_bad_checksum_garbage_split_and_no_reply_faults() -> None:
    sim = BoardSimulator("kerong-cu16")
    request = kerong.build_cu16_status_request(0)
    (clean,) = sim.feed(request)

    sim.set_fault(Fault.BAD_CHECKSUM, times=1)
    sim.set_fault(Fault.GARBAGE, times=1)
    sim.set_fault(Fault.SPLIT, times=1)
    (faulty,) = sim.feed(request)
    sim.set_fault(Fault.NO_REPLY, times=1)
    silent = sim.feed(request)

    assert faulty.split
    assert faulty.data.endswith(clean.data[:-1] + bytes([(clean.data[-1] + 1) & 0xFF]))
    assert len(faulty.data) > len(clean.data)
    assert silent == []


def test_control_channel() -> None:
    sim = BoardSimulator("kerong-cu16", lock_count=4, door_delay_s=0.0)

    assert run_control_command(sim, "force-open 2") == ["ok"]
    assert run_control_command(sim, "fault jam 3") == ["ok"]
    assert run_control_command(sim, "fault no-reply 2") == ["ok"]
    status = run_control_command(sim, "status")
    assert run_control_command(sim, "close all") == ["ok"]
    assert run_control_command(sim, "clear") == ["ok"]

    assert status[1] == "lock 2: open fired=0"
    assert status[2] == "lock 3: closed fired=0 faults=jam"
    assert status[-2:] == ["reply faults: no-reply x2", "ok"]
    assert sim.door_states()[2] is CLOSED
    assert run_control_command(sim, "fault jam") == ["error: usage: fault jam N"]
    assert run_control_command(sim, "close 9")[0].startswith("error: ")
    assert run_control_command(sim, "fly away") == ["error: unknown command 'fly away' (try: help)"]


def test_pty_server_releases_its_descriptors() -> None:
    before = set(os.listdir("/proc/self/fd"))
    with PtyBoardServer([BoardSimulator("xor")]) as server:
        assert os.path.exists(server.path)
    assert set(os.listdir("/proc/self/fd")) <= before


def test_simulate_board_command_serves_a_real_driver_and_takes_control_commands() -> None:
    command = [
        sys.executable, "-m", "locker_node.cli", "simulate-board",
        "--protocol", "xor", "--pty", "--locks", "8", "--door-delay-ms", "0",
    ]  # fmt: skip
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
    ) as process:
        assert process.stdin is not None and process.stdout is not None
        try:
            path = process.stdout.readline().strip()
            assert path.startswith("/dev/")
            board = XorBoard(path, lock_count=8, reply_timeout_s=1.0, unlock_timeout_s=1.0)
            try:
                board.unlock(4)
                wait_until(lambda: board.read_doors()[4] is OPEN, what="door 4 open")
                process.stdin.write("status\n")
                lines = [process.stdout.readline().strip() for _ in range(9)]
                assert lines[3] == "lock 4: open fired=1"
                assert lines[-1] == "ok"
                process.stdin.write("close 4\n")
                assert process.stdout.readline().strip() == "ok"
                assert board.read_doors()[4] is CLOSED
            finally:
                board.close()
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert process.returncode == 0


@pytest.mark.parametrize("protocol", ["kerong-cu16", "kerong-cu48", "xor"])
def test_simulator_refuses_more_locks_than_the_protocol_has(protocol: str) -> None:
    with pytest.raises(ValueError, match="locks"):
        BoardSimulator(protocol, lock_count=51)
