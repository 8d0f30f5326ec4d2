"""Bank settings: maintenance of a bank or one compartment, policy edits, and deadlines that
never fall while the bank is closed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from central.banks import repository
from central.banks import service as banks
from central.context import Ctx
from central.errors import Conflict, NotFound, Unprocessable
from central.models import Alert, Bank, Compartment, CompartmentState, Reservation
from central.webhooks.service import enqueue_event
from locker_wire.opening_hours import next_deadline, validate_opening_hours
from locker_wire.schemas import (
    BankMaintenance,
    CompartmentMaintenance,
    FeedBank,
    NearbyBankInfo,
    NodePolicy,
)

MAINTENANCE_STARTED = "bank.maintenance_started"
MAINTENANCE_ENDED = "bank.maintenance_ended"
OVERDUE_ALERT = "maintenance_overdue"
# The alert a node's own report of a broken compartment raises (`nodes.events`): while it is
# open, a compartment leaving maintenance stays out of service.
FAULT_ALERT = "compartment_out_of_service"
# The subject of a whole bank's `maintenance_overdue` alert (a compartment's is its label).
BANK_SUBJECT = "bank"
# The banks a kiosk in maintenance points to: the nearest with a free unit, within this radius.
NEARBY_RADIUS_KM = 10.0
NEARBY_LIMIT = 3
_NEARBY_READ_AT_ONCE = 10
MAX_HOURS = 24 * 14  # as a carrier's `hold_hours` may ask at most


# Wire shapes of the dashboard's API ------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MaintenanceIn(_In):
    reason: str = Field(min_length=1, max_length=500)
    until: datetime | None = Field(default=None, description="the expected end, if known")


class MaintenanceEndIn(_In):
    reason: str | None = Field(default=None, min_length=1, max_length=500)


class PolicyIn(_In):
    """A policy change: only the fields given change; `max_extensions` and `opening_hours` given
    as null mean no limit and always open."""

    hold_hours: int | None = Field(default=None, ge=1, le=MAX_HOURS)
    pickup_hours: int | None = Field(default=None, ge=1, le=MAX_HOURS)
    reminder_hours: int | None = Field(default=None, ge=0, le=MAX_HOURS)
    max_extension_hours: int | None = Field(default=None, ge=0, le=MAX_HOURS)
    max_extensions: int | None = Field(default=None, ge=0, le=100)
    allow_walk_up: bool | None = None
    allow_upsize: bool | None = None
    opening_hours: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _no_null_where_null_means_nothing(self) -> Self:
        for name in self.model_fields_set - {"max_extensions", "opening_hours"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class MaintenanceOut(BaseModel):
    reason: str
    since: datetime
    until: datetime | None
    overdue: bool = Field(description="past the expected end and not ended yet")


class CompartmentMaintenanceOut(MaintenanceOut):
    label: str


class PolicyOut(BaseModel):
    hold_hours: int
    pickup_hours: int
    reminder_hours: int
    max_extension_hours: int
    max_extensions: int | None
    allow_walk_up: bool
    allow_upsize: bool
    timezone: str
    opening_hours: dict[str, list[list[str]]] | None


class BankSettingsOut(BaseModel):
    bank_id: str
    name: str
    settings_version: int
    policy: PolicyOut
    maintenance: MaintenanceOut | None
    compartments_in_maintenance: list[CompartmentMaintenanceOut]
    compartments: list[str] = Field(description="every compartment's label")


# Reading ---------------------------------------------------------------------------------------


def deadline(bank: Bank, start: datetime, hours: float) -> datetime:
    """`start` plus `hours`, moved to the end of the next open period when it would fall while
    the bank is closed (`locker_wire.opening_hours.next_deadline`)."""
    return next_deadline(start, timedelta(hours=hours), bank.opening_hours, bank.timezone)


def in_maintenance(bank: Bank) -> bool:
    return bank.maintenance_since is not None


def _overdue(until: datetime | None, now: datetime) -> bool:
    return until is not None and until < now


def _policy(bank: Bank) -> PolicyOut:
    return PolicyOut(
        hold_hours=bank.hold_hours,
        pickup_hours=bank.pickup_hours,
        reminder_hours=bank.reminder_hours,
        max_extension_hours=bank.max_extension_hours,
        max_extensions=bank.max_extensions,
        allow_walk_up=bank.allow_walk_up,
        allow_upsize=bank.allow_upsize,
        timezone=bank.timezone,
        opening_hours=bank.opening_hours,
    )


def describe(session: Session, bank: Bank, now: datetime) -> BankSettingsOut:
    maintenance = None
    if bank.maintenance_since is not None and bank.maintenance_reason is not None:
        maintenance = MaintenanceOut(
            reason=bank.maintenance_reason,
            since=bank.maintenance_since,
            until=bank.maintenance_until,
            overdue=_overdue(bank.maintenance_until, now),
        )
    return BankSettingsOut(
        bank_id=bank.id,
        name=bank.name,
        settings_version=bank.settings_version,
        policy=_policy(bank),
        maintenance=maintenance,
        compartments_in_maintenance=[
            CompartmentMaintenanceOut(
                label=c.label,
                reason=c.maintenance_reason or "",
                since=c.maintenance_since,
                until=c.maintenance_until,
                overdue=_overdue(c.maintenance_until, now),
            )
            for c in repository.compartments_in_maintenance(session, bank.id)
            if c.maintenance_since is not None
        ],
        compartments=repository.compartment_labels_of(session, bank.id),
    )


def settings_of(session: Session, bank_id: str, now: datetime) -> BankSettingsOut:
    return describe(session, _bank(session, bank_id), now)


def _bank(session: Session, bank_id: str) -> Bank:
    bank = repository.get_bank(session, bank_id)
    if bank is None:
        raise NotFound(f"bank {bank_id}", code="unknown_bank")
    return bank


def _lock_bank(session: Session, bank_id: str) -> Bank:
    bank = repository.lock_bank(session, bank_id)
    if bank is None:
        raise NotFound(f"bank {bank_id}", code="unknown_bank")
    return bank


def feed_bank(session: Session, bank: Bank) -> FeedBank:
    """The bank's settings as its node's feed carries them."""
    maintenance = None
    if bank.maintenance_since is not None:
        maintenance = BankMaintenance(
            reason=bank.maintenance_reason or "",
            since=bank.maintenance_since,
            until=bank.maintenance_until,
            nearby=nearby_banks(session, bank),
        )
    return FeedBank(
        version=bank.settings_version,
        policy=NodePolicy(
            hold_hours=bank.hold_hours,
            pickup_hours=bank.pickup_hours,
            reminder_hours=bank.reminder_hours,
            max_extension_hours=bank.max_extension_hours,
            allow_upsize=bank.allow_upsize,
        ),
        allow_walk_up=bank.allow_walk_up,
        max_extensions=bank.max_extensions,
        timezone=bank.timezone,
        opening_hours=bank.opening_hours,
        maintenance=maintenance,
        compartments_in_maintenance=[
            CompartmentMaintenance(
                label=c.label, reason=c.maintenance_reason or "", until=c.maintenance_until
            )
            for c in repository.compartments_in_maintenance(session, bank.id)
        ],
    )


def nearby_banks(session: Session, bank: Bank, limit: int = NEARBY_LIMIT) -> list[NearbyBankInfo]:
    """The nearest other banks, not in maintenance, with a free unit of any class."""
    spots = [
        (spot, distance)
        for spot, distance in banks.spots_near(session, bank.lat, bank.lon, NEARBY_RADIUS_KM)
        if spot.id != bank.id
    ]
    found: list[NearbyBankInfo] = []
    for start in range(0, len(spots), _NEARBY_READ_AT_ONCE):
        chunk = spots[start : start + _NEARBY_READ_AT_ONCE]
        capacity = repository.capacity_of(session, [spot.id for spot, _ in chunk])
        for spot, distance in chunk:
            if sum(max(0, row.available) for row in capacity[spot.id]) <= 0:
                continue
            other = repository.get_referenced_bank(session, spot.id)
            found.append(
                NearbyBankInfo(
                    bank_id=spot.id,
                    name=spot.name,
                    address=other.address,
                    distance_km=round(distance, 3),
                )
            )
            if len(found) >= limit:
                return found
    return found


# Maintenance -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Changed:
    """A settings change made: the settings as they are now, and what the audit keeps of it."""

    settings: BankSettingsOut
    detail: dict[str, Any]


def _check_until(until: datetime | None, now: datetime) -> None:
    if until is None:
        return
    if until.tzinfo is None or until.utcoffset() is None:
        raise Unprocessable("invalid_until", "give the expected end with its time zone offset")
    if until <= now:
        raise Unprocessable("invalid_until", "the expected end must be in the future")


def start_maintenance(
    ctx: Ctx, bank_id: str, reason: str, until: datetime | None, label: str | None = None
) -> Changed:
    """Put the bank, or with `label` one of its compartments, into maintenance.

    Allocation skips a bank in maintenance; a compartment in maintenance is out of service and
    its unit leaves the capacity of its class. The carriers with parcels there hear of it (one
    `bank.maintenance_started` each). Asked again while it lasts, the reason and the expected
    end are updated, and nobody is told again.
    """
    _check_until(until, ctx.now)
    bank = _lock_bank(ctx.session, bank_id)
    if label is None:
        target: Bank | Compartment = bank
    else:
        target = _lock_compartment(ctx.session, bank_id, label)
    fresh = target.maintenance_since is None
    target.maintenance_reason = reason
    target.maintenance_until = until
    if fresh:
        target.maintenance_since = ctx.now
    if isinstance(target, Compartment) and target.state != CompartmentState.OUT_OF_SERVICE:
        target.state = CompartmentState.OUT_OF_SERVICE.value
        repository.recount_units(ctx.session, bank_id)
    bank.settings_version += 1
    _settle_overdue(ctx.session, bank_id, label or BANK_SUBJECT, until, ctx.now)
    told = 0
    if fresh:
        told = _tell_carriers(ctx, bank, target, MAINTENANCE_STARTED, label)
    ctx.session.flush()
    detail = {
        "compartment": label,
        "until": until.isoformat() if until else None,
        "started": fresh,
        "carriers_told": told,
    }
    return Changed(describe(ctx.session, bank, ctx.now), detail)


def end_maintenance(ctx: Ctx, bank_id: str, label: str | None = None) -> Changed:
    """Take the bank, or one compartment, out of maintenance: everything as it was, a
    compartment back in service (unless its node reported it broken meanwhile) with its unit;
    the carriers with parcels there told (`bank.maintenance_ended`)."""
    bank = _lock_bank(ctx.session, bank_id)
    target = bank if label is None else _lock_compartment(ctx.session, bank_id, label)
    since = target.maintenance_since
    if since is None:
        where = f"compartment {label} of bank {bank_id}" if label else f"bank {bank_id}"
        raise Conflict("not_in_maintenance", f"{where} is not in maintenance")
    told = _tell_carriers(ctx, bank, target, MAINTENANCE_ENDED, label)
    target.maintenance_reason = None
    target.maintenance_since = None
    target.maintenance_until = None
    if isinstance(target, Compartment):
        _back_in_service(ctx.session, bank_id, target)
    bank.settings_version += 1
    _settle_overdue(ctx.session, bank_id, label or BANK_SUBJECT, None, ctx.now)
    ctx.session.flush()
    detail = {"compartment": label, "since": since.isoformat(), "carriers_told": told}
    return Changed(describe(ctx.session, bank, ctx.now), detail)


def _lock_compartment(session: Session, bank_id: str, label: str) -> Compartment:
    repository.lock_capacity(session, bank_id)  # first: see `lock_capacity`
    compartment = repository.lock_compartment(session, bank_id, label)
    if compartment is None:
        raise NotFound(f"compartment {label} at bank {bank_id}", code="unknown_compartment")
    return compartment


def _back_in_service(session: Session, bank_id: str, compartment: Compartment) -> None:
    if compartment.state != CompartmentState.OUT_OF_SERVICE:
        return  # a parcel went in meanwhile (a node that had not heard): already counted
    if repository.has_open_alert(session, bank_id, FAULT_ALERT, compartment.label):
        return  # its node says it is broken: it stays out of service until it says otherwise
    held = repository.parcels_at(session, bank_id, compartment.label)
    compartment.state = (CompartmentState.OCCUPIED if held else CompartmentState.FREE).value
    repository.recount_units(session, bank_id)


def _tell_carriers(
    ctx: Ctx, bank: Bank, target: Bank | Compartment, event_type: str, label: str | None
) -> int:
    """One event per carrier with parcels there, listing them; the number of carriers told."""
    by_carrier: dict[str, list[Reservation]] = defaultdict(list)
    for reservation in repository.parcels_at(ctx.session, bank.id, label):
        by_carrier[reservation.carrier_id].append(reservation)
    for carrier_id, reservations in by_carrier.items():
        enqueue_event(
            ctx.session,
            ctx.keys,
            carrier_id,
            event_type,
            partial(_event_data, bank, target, label, reservations, ctx.now, event_type),
            ctx.now,
        )
    return len(by_carrier)


def _event_data(
    bank: Bank,
    target: Bank | Compartment,
    label: str | None,
    reservations: Sequence[Reservation],
    now: datetime,
    event_type: str,
) -> dict[str, Any]:
    since = target.maintenance_since
    data: dict[str, Any] = {
        "bank_id": bank.id,
        "bank_name": bank.name,
        "compartment": label,
        "reason": target.maintenance_reason,
        "since": since.isoformat() if since else None,
        "until": target.maintenance_until.isoformat() if target.maintenance_until else None,
        "reservations": [
            {
                "id": r.id,
                "tracking_number": r.tracking_number,
                "status": r.status,
                "compartment": r.compartment_label,
            }
            for r in reservations
        ],
    }
    if event_type == MAINTENANCE_ENDED:
        data["ended_at"] = now.isoformat()
    return data


def _settle_overdue(
    session: Session, bank_id: str, subject: str, until: datetime | None, now: datetime
) -> None:
    """Resolve the target's `maintenance_overdue` alert once it is no longer overdue."""
    if _overdue(until, now):
        return
    for alert in repository.open_alerts_of_type(session, OVERDUE_ALERT):
        if alert.bank_id == bank_id and alert.subject == subject:
            alert.resolved_at = now


def alert_overdue_maintenance(session: Session, now: datetime) -> int:
    """Raise `maintenance_overdue` for each bank or compartment still in maintenance past its
    expected end (maintenance never ends by itself: an operator confirms the work is done), and
    resolve those that no longer are. Returns the alerts raised."""
    due: dict[tuple[str, str], dict[str, Any]] = {}
    for bank in repository.banks_overdue(session, now):
        due[(bank.id, BANK_SUBJECT)] = _overdue_detail(bank, None)
    for compartment in repository.compartments_overdue(session, now):
        due[(compartment.bank_id, compartment.label)] = _overdue_detail(
            compartment, compartment.label
        )
    open_alerts = repository.open_alerts_of_type(session, OVERDUE_ALERT)
    for alert in open_alerts:
        if alert.bank_id is None or (alert.bank_id, alert.subject) not in due:
            alert.resolved_at = now
    known = {(a.bank_id, a.subject) for a in open_alerts}
    raised = 0
    for (bank_id, subject), detail in sorted(due.items()):
        if (bank_id, subject) in known:
            continue
        repository.add_alert(
            session,
            Alert(
                bank_id=bank_id, type=OVERDUE_ALERT, subject=subject, detail=detail, created_at=now
            ),
        )
        raised += 1
    session.flush()
    return raised


def _overdue_detail(target: Bank | Compartment, label: str | None) -> dict[str, Any]:
    until = target.maintenance_until
    since = target.maintenance_since
    return {
        "compartment": label,
        "reason": target.maintenance_reason,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
    }


# Policy ----------------------------------------------------------------------------------------


def update_policy(ctx: Ctx, bank_id: str, change: PolicyIn) -> Changed:
    """Change the bank's policy (only the fields given); 422 `invalid_policy` or
    `invalid_opening_hours` for a policy that cannot hold, `nothing_to_change` for none."""
    given = change.model_dump(include=change.model_fields_set)
    if not given:
        raise Unprocessable("nothing_to_change", "give at least one policy field to change")
    if "opening_hours" in given and given["opening_hours"] is not None:
        try:
            given["opening_hours"] = validate_opening_hours(given["opening_hours"])
        except ValueError as exc:
            raise Unprocessable("invalid_opening_hours", str(exc)) from exc
    bank = _lock_bank(ctx.session, bank_id)
    before = {name: getattr(bank, name) for name in given}
    pickup = given.get("pickup_hours", bank.pickup_hours)
    reminder = given.get("reminder_hours", bank.reminder_hours)
    if reminder >= pickup:
        raise Unprocessable(
            "invalid_policy",
            f"the reminder ({reminder} h before the deadline) must come after the deposit: "
            f"less than the pickup time ({pickup} h)",
        )
    changed = {name: value for name, value in given.items() if before[name] != value}
    for name, value in changed.items():
        setattr(bank, name, value)
    if changed:
        bank.settings_version += 1
    ctx.session.flush()
    detail = {"changed": {name: [before[name], value] for name, value in changed.items()}}
    return Changed(describe(ctx.session, bank, ctx.now), detail)


def check_extensions(bank: Bank, done: int) -> None:
    """409 `too_many_extensions` when the deadline was extended as often as the policy allows."""
    if bank.max_extensions is not None and done >= bank.max_extensions:
        raise Conflict(
            "too_many_extensions",
            f"this bank allows {bank.max_extensions} extension(s) of a deadline",
            max_extensions=bank.max_extensions,
        )
