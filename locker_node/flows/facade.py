"""The one object the node's two doors hold: the kiosk's endpoints and the sync loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from locker_node.domain.doors import UnknownCompartment
from locker_node.flows import (
    bank_settings,
    collect,
    courier,
    deposit,
    dropoff,
    overflow,
    pickup,
    returns,
    upkeep,
)
from locker_node.flows.collect import CollectItem
from locker_node.flows.courier import Courier, LoginResult
from locker_node.flows.deposit import CancelledDeposit, ConfirmedDeposit, DepositView
from locker_node.flows.dropoff import CancelledDropoff, DropoffView, DroppedOff
from locker_node.flows.pickup import DoorResult, KeypadStatus
from locker_node.flows.ports import FlowPolicy, NearbyBank, Ports, Redirected
from locker_node.flows.returns import ReturnItem

if TYPE_CHECKING:
    from locker_node.flows.commands import Verify
    from locker_wire.schemas import Command, CommandAck, FeedResponse


class LockerFlows:
    """Every use case of the node, as one thin method each; the rules live in the flow modules."""

    def __init__(self, ports: Ports) -> None:
        self.ports = ports

    @property
    def policy(self) -> FlowPolicy:
        return self.ports.policy

    # Recipients

    def keypad_status(self) -> KeypadStatus:
        return pickup.keypad_status(self.ports)

    def pickup_with_code(self, code: str) -> DoorResult:
        return pickup.pickup_with_code(self.ports, code)

    def pickup_with_qr(self, token: str) -> DoorResult:
        return pickup.pickup_with_qr(self.ports, token)

    def door_state(self, label: str) -> str | None:
        """`open`, `closed` or `unknown` as the door monitor last read it (no board is polled);
        None for a label that is not a compartment here."""
        try:
            door = self.ports.doors.status(label).door
        except UnknownCompartment:
            return None
        return "unknown" if door is None else str(door)

    # Couriers

    def carriers(self) -> list[str]:
        return courier.carriers(self.ports)

    def login(self, carrier: str, pin: str) -> LoginResult:
        return courier.login(self.ports, carrier, pin)

    def authenticate(self, token: str | None) -> Courier:
        return courier.authenticate(self.ports, token)

    def logout(self, who: Courier) -> None:
        courier.logout(self.ports, who)

    def start_deposit(
        self, who: Courier, tracking_number: str, size: str | None = None
    ) -> DepositView:
        return deposit.start_deposit(self.ports, who, tracking_number, size)

    def confirm_deposit(self, who: Courier, deposit_id: str) -> ConfirmedDeposit:
        return deposit.confirm_deposit(self.ports, who, deposit_id)

    def too_small(self, who: Courier, deposit_id: str) -> DepositView:
        return deposit.too_small(self.ports, who, deposit_id)

    def report_door_problem(self, who: Courier, deposit_id: str) -> DepositView:
        return deposit.report_door_problem(self.ports, who, deposit_id)

    def cancel_deposit(self, who: Courier, deposit_id: str) -> CancelledDeposit:
        return deposit.cancel_deposit(self.ports, who, deposit_id)

    def list_returns(self, who: Courier) -> list[ReturnItem]:
        return returns.list_returns(self.ports, who)

    def open_return(self, who: Courier, parcel_id: str) -> DoorResult:
        return returns.open_return(self.ports, who, parcel_id)

    def confirm_return(self, who: Courier, parcel_id: str) -> DoorResult:
        return returns.confirm_return(self.ports, who, parcel_id)

    # Drop-offs: senders put parcels in, their carrier's couriers collect them

    def start_dropoff(self, code: str) -> DropoffView:
        return dropoff.start_dropoff(self.ports, code)

    def start_dropoff_qr(self, token: str) -> DropoffView:
        return dropoff.start_dropoff_qr(self.ports, token)

    def confirm_dropoff(self, dropoff_id: str) -> DroppedOff:
        return dropoff.confirm_dropoff(self.ports, dropoff_id)

    def cancel_dropoff(self, dropoff_id: str) -> CancelledDropoff:
        return dropoff.cancel_dropoff(self.ports, dropoff_id)

    def list_dropoffs(self, who: Courier) -> list[CollectItem]:
        return collect.list_dropoffs(self.ports, who)

    def open_collection(self, who: Courier, parcel_id: str) -> DoorResult:
        return collect.open_collection(self.ports, who, parcel_id)

    def confirm_collection(self, who: Courier, parcel_id: str) -> DoorResult:
        return collect.confirm_collection(self.ports, who, parcel_id)

    # Overflow: a parcel with no usable door here goes to a nearby bank, asked of central

    def nearby_banks(
        self, who: Courier, tracking_number: str, size: str | None = None
    ) -> list[NearbyBank]:
        return overflow.nearby_banks(self.ports, who, tracking_number, size)

    def redirect(
        self, who: Courier, tracking_number: str, bank_id: str, size: str | None = None
    ) -> Redirected:
        return overflow.redirect(self.ports, who, tracking_number, bank_id, size)

    # Central

    # Imported when first called: a node without central never loads the wire's schemas.

    def apply_feed_page(self, page: FeedResponse) -> None:
        from locker_node.flows import feed

        feed.apply_page(self.ports, page)

    def settings_version(self) -> int | None:
        """The version of central's bank settings the node has (None before any)."""
        return bank_settings.settings_version(self.ports)

    def bank_settings(self) -> bank_settings.BankSettings | None:
        return bank_settings.current_settings(self.ports)

    def handle_command(self, command: Command, *, verify: Verify) -> CommandAck:
        from locker_node.flows import commands

        return commands.handle(self.ports, command, verify=verify)

    # Upkeep

    def recover(self) -> int:
        return upkeep.recover(self.ports)

    def expire_due(self) -> int:
        return upkeep.expire_due(self.ports)

    def housekeeping(self) -> None:
        upkeep.housekeeping(self.ports)
