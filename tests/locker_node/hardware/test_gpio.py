"""GPIO relays and reed switches through gpiozero's MockFactory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from locker_node.hardware.board import BoardUnavailable, DoorState
from locker_node.hardware.gpio import GpioLockBoard, GpioLockPins

PINS = [GpioLockPins(relay=5, sensor=17), GpioLockPins(relay=6, sensor=27)]


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    factory = MockFactory()
    yield factory
    factory.close()


@pytest.mark.parametrize(
    ("active_high", "released", "energised"), [(False, True, False), (True, False, True)]
)
def test_unlock_pulses_the_relay_and_releases_it(
    factory: MockFactory, active_high: bool, released: bool, energised: bool
) -> None:
    seen: list[bool] = []
    board = GpioLockBoard(
        PINS,
        pin_factory=factory,
        relay_active_high=active_high,
        pulse_s=0.5,
        sleep=lambda s: seen.append(factory.pin(5).state),
    )
    relay = factory.pin(5)
    assert relay.state is released  # boots released: no lock clicks open at start
    before = len(relay.states)

    board.unlock(1)

    assert seen == [energised]
    assert [change.state for change in relay.states[before:]] == [energised, released]
    assert factory.pin(6).state is released
    board.close()


def test_a_failed_pulse_still_releases_the_relay(factory: MockFactory) -> None:
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    board = GpioLockBoard(PINS, pin_factory=factory, sleep=interrupted)

    with pytest.raises(KeyboardInterrupt):
        board.unlock(2)

    assert factory.pin(6).state is True  # active-low relay, released
    board.close()


@pytest.mark.parametrize("closed_when_active", [True, False])
def test_reed_switch_polarity(factory: MockFactory, closed_when_active: bool) -> None:
    board = GpioLockBoard(PINS, pin_factory=factory, door_closed_when_active=closed_when_active)
    # Pulled up: a switch closing to ground drives the pin low, which reads active.
    factory.pin(17).drive_low()
    factory.pin(27).drive_high()

    states = board.read_doors()

    active, inactive = (
        (DoorState.CLOSED, DoorState.OPEN)
        if closed_when_active
        else (DoorState.OPEN, DoorState.CLOSED)
    )
    assert states == {1: active, 2: inactive}
    board.close()


def test_a_pin_factory_is_required() -> None:
    with pytest.raises(ValueError, match="explicit pin_factory"):
        GpioLockBoard(PINS, pin_factory=None)


def test_a_pin_claimed_twice_is_a_loud_error_and_frees_what_it_took(factory: MockFactory) -> None:
    clash = [GpioLockPins(relay=5, sensor=17), GpioLockPins(relay=17, sensor=27)]

    with pytest.raises(BoardUnavailable, match="cannot claim GPIO pins"):
        GpioLockBoard(clash, pin_factory=factory)

    GpioLockBoard(PINS, pin_factory=factory).close()


def test_close_releases_relays_and_pins(factory: MockFactory) -> None:
    board = GpioLockBoard(PINS, pin_factory=factory, relay_active_high=True)
    board.close()

    again = GpioLockBoard(PINS, pin_factory=factory, relay_active_high=True)
    assert factory.pin(5).state is False
    again.close()


def test_release_all_switches_every_relay_off(factory: MockFactory) -> None:
    board = GpioLockBoard(PINS, pin_factory=factory, relay_active_high=True)
    factory.pin(6).state = True  # as if a pulse had been cut short

    board.release_all()

    assert factory.pin(6).state is False
    board.close()
