"""The bank's settings from central: its policy over the node's own, opening hours, maintenance.

Central sends them in the feed (`FeedBank`) when their version differs from the one the node
sent; they are kept in the store (`store.bank_settings`), so they hold across restarts, and
replace the configuration's pickup hold, upsizing and walk-ups in `Ports.policy`.

A bank in maintenance takes nothing in: deposits, walk-ups and drop-offs are refused with
`bank_in_maintenance`. Everything that takes parcels out keeps working (recipients' pickups,
couriers' returns and collections), so that nobody's parcel is held hostage by a repair. A
compartment in maintenance is not offered for new deposits until central's list no longer
names it; it is not taken out of service, so a fault the node found stays as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from locker_node.flows.errors import Conflict
from locker_node.flows.ports import FlowPolicy, Ports
from locker_node.store import bank_settings as store
from locker_node.store.outbox import append_audit
from locker_wire.opening_hours import OpeningHours, validate_opening_hours, zone_of

if TYPE_CHECKING:
    from locker_wire.schemas import FeedBank

logger = logging.getLogger(__name__)

ACTOR = "central"
IN_MAINTENANCE = "bank_in_maintenance"
# Beyond any hold a bank would set (central checks its own bounds); a figure past it is a
# mistake the node does not follow.
MAX_PICKUP_HOURS = 24 * 90


@dataclass(frozen=True)
class Alternative:
    """A nearby bank the kiosk points to while this one is in maintenance."""

    bank_id: str
    name: str
    address: str
    distance_km: float


@dataclass(frozen=True)
class Maintenance:
    reason: str
    since: datetime
    until: datetime | None
    nearby: tuple[Alternative, ...] = ()


@dataclass(frozen=True)
class CompartmentMaintenance:
    label: str
    reason: str
    until: datetime | None


@dataclass(frozen=True)
class BankSettings:
    version: int
    hold_hours: int
    pickup_hours: int
    reminder_hours: int
    max_extension_hours: int
    allow_upsize: bool
    allow_walk_up: bool
    max_extensions: int | None
    timezone: str
    opening_hours: OpeningHours | None
    maintenance: Maintenance | None
    compartments_in_maintenance: tuple[CompartmentMaintenance, ...]

    @property
    def labels_in_maintenance(self) -> frozenset[str]:
        return frozenset(c.label for c in self.compartments_in_maintenance)


# From central ------------------------------------------------------------------------------


def apply_bank(conn: Connection, bank: FeedBank, now: datetime) -> BankSettings:
    """Keep the settings central sent (in the caller's transaction) and audit what changed;
    the policy is swapped by `use` once the transaction has committed."""
    before = current(conn)
    settings = from_wire(bank)
    store.put_settings(conn, bank.version, bank.model_dump(mode="json"), now)
    _audit_changes(conn, before, settings, now)
    return settings


def _audit_changes(
    conn: Connection, before: BankSettings | None, after: BankSettings, now: datetime
) -> None:
    append_audit(
        conn,
        at=now,
        actor=ACTOR,
        action="bank_settings",
        reason=f"version {after.version}",
        detail={"from": None if before is None else before.version, "to": after.version},
    )
    was = before.maintenance if before is not None else None
    if (was is None) != (after.maintenance is None):
        on = after.maintenance is not None
        append_audit(
            conn,
            at=now,
            actor=ACTOR,
            action="maintenance_started" if on else "maintenance_ended",
            reason=after.maintenance.reason[:200] if after.maintenance else "",
        )
    old = before.labels_in_maintenance if before is not None else frozenset()
    for label in sorted(after.labels_in_maintenance - old):
        append_audit(conn, at=now, actor=ACTOR, action="compartment_maintenance", compartment=label)
    for label in sorted(old - after.labels_in_maintenance):
        append_audit(
            conn, at=now, actor=ACTOR, action="compartment_maintenance_ended", compartment=label
        )


def from_wire(bank: FeedBank) -> BankSettings:
    """The node's view of central's settings. A field the node cannot use is logged and left
    at a safe value (always open, UTC) rather than refusing the rest: a bank put into
    maintenance must stop taking parcels even if its opening hours came damaged."""
    timezone = bank.timezone
    try:
        zone_of(timezone)
    except ValueError as exc:
        logger.error("bank settings %d: %s; deadlines use UTC", bank.version, exc)
        timezone = "UTC"
    opening_hours: OpeningHours | None = None
    if bank.opening_hours is not None:
        try:
            opening_hours = validate_opening_hours(bank.opening_hours)
        except ValueError as exc:
            logger.error("bank settings %d: opening hours ignored: %s", bank.version, exc)
    maintenance = None
    if bank.maintenance is not None:
        maintenance = Maintenance(
            reason=bank.maintenance.reason,
            since=bank.maintenance.since,
            until=bank.maintenance.until,
            nearby=tuple(
                Alternative(n.bank_id, n.name, n.address, n.distance_km)
                for n in bank.maintenance.nearby
            ),
        )
    policy = bank.policy
    return BankSettings(
        version=bank.version,
        hold_hours=policy.hold_hours,
        pickup_hours=policy.pickup_hours,
        reminder_hours=policy.reminder_hours,
        max_extension_hours=policy.max_extension_hours,
        allow_upsize=policy.allow_upsize,
        allow_walk_up=bank.allow_walk_up,
        max_extensions=bank.max_extensions,
        timezone=timezone,
        opening_hours=opening_hours,
        maintenance=maintenance,
        compartments_in_maintenance=tuple(
            CompartmentMaintenance(c.label, c.reason, c.until)
            for c in bank.compartments_in_maintenance
        ),
    )


# The policy ---------------------------------------------------------------------------------


def policy_with(policy: FlowPolicy, settings: BankSettings) -> FlowPolicy:
    """The node's policy with central's settings over its configuration's."""
    hold = policy.pickup_hold
    if 1 <= settings.pickup_hours <= MAX_PICKUP_HOURS:
        hold = timedelta(hours=settings.pickup_hours)
    else:
        logger.error(
            "bank settings %d: pickup hours %d ignored; the hold stays %s",
            settings.version,
            settings.pickup_hours,
            hold,
        )
    for key, mine, theirs in (
        ("[deposit] allow_upsize", policy.allow_upsize, settings.allow_upsize),
        ("[deposit] allow_walk_up", policy.allow_walk_up, settings.allow_walk_up),
    ):
        if mine != theirs:
            # Central's bank policy is the one in force: say so where an operator who set the
            # node's configuration will look (`locker-central bank policy` changes it).
            logger.warning(
                "bank settings %d: central's bank policy sets %s = %s over the node's %s",
                settings.version,
                key,
                str(theirs).lower(),
                str(mine).lower(),
            )
    return replace(
        policy,
        pickup_hold=hold,
        allow_upsize=settings.allow_upsize,
        allow_walk_up=settings.allow_walk_up,
        opening_hours=settings.opening_hours,
        timezone=settings.timezone,
    )


def use(ports: Ports, settings: BankSettings) -> None:
    """Swap the policy in one assignment, between flows (never halfway through one)."""
    with ports.flow_lock:
        ports.policy = policy_with(ports.policy, settings)


def load(ports: Ports) -> BankSettings | None:
    """At start-up: the settings kept from central, applied over the configuration's."""
    with ports.unit_of_work() as conn:
        settings = current(conn)
    if settings is not None:
        use(ports, settings)
        logger.info("bank settings version %d from central in force", settings.version)
    return settings


# Reading them --------------------------------------------------------------------------------


def current(conn: Connection) -> BankSettings | None:
    stored = store.get_settings(conn)
    if stored is None:
        return None
    # Imported only here: a node that never heard from central never loads the wire's schemas.
    from locker_wire.schemas import FeedBank

    return from_wire(FeedBank.model_validate(stored.settings))


def settings_version(ports: Ports) -> int | None:
    """The version the node has, for the feed's `settings_version`; None before any."""
    with ports.unit_of_work() as conn:
        stored = store.get_settings(conn)
    return None if stored is None else stored.version


def current_settings(ports: Ports) -> BankSettings | None:
    with ports.unit_of_work() as conn:
        return current(conn)


def labels_in_maintenance(conn: Connection) -> frozenset[str]:
    settings = current(conn)
    return frozenset() if settings is None else settings.labels_in_maintenance


def refuse_if_in_maintenance(conn: Connection) -> None:
    """Refuse to take a parcel in while the bank is in maintenance; 409 for the kiosk, with
    what the person needs to go elsewhere."""
    settings = current(conn)
    if settings is None or settings.maintenance is None:
        return
    raise in_maintenance(settings.maintenance)


def in_maintenance(maintenance: Maintenance) -> Conflict:
    return Conflict(
        f"this locker is in maintenance: {maintenance.reason}",
        code=IN_MAINTENANCE,
        reason=maintenance.reason,
        until=None if maintenance.until is None else maintenance.until.isoformat(),
        nearby=[nearby_out(n) for n in maintenance.nearby],
    )


def nearby_out(alternative: Alternative) -> dict[str, Any]:
    return {
        "bank_id": alternative.bank_id,
        "name": alternative.name,
        "address": alternative.address,
        "distance_km": alternative.distance_km,
    }
