"""Queries for banks, compartments and capacity."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, NamedTuple, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from central.models import (
    ACTIVE_STATUSES,
    Alert,
    Bank,
    BankCapacity,
    Compartment,
    CompartmentState,
    Reservation,
    ReservationStatus,
)


def get_bank(session: Session, bank_id: str) -> Bank | None:
    return session.get(Bank, bank_id)


def get_referenced_bank(session: Session, bank_id: str) -> Bank:
    """The bank a stored row (a reservation, a node) refers to: its foreign key guarantees one,
    so a missing bank is a broken database, not a caller's mistake."""
    bank = session.get(Bank, bank_id)
    if bank is None:
        raise LookupError(f"no bank {bank_id!r}, which a stored row refers to")
    return bank


def add_bank(
    session: Session,
    bank: Bank,
    capacity: Sequence[BankCapacity],
    compartments: Sequence[Compartment],
) -> None:
    session.add(bank)
    session.flush()
    session.add_all([*capacity, *compartments])
    session.flush()


def capacity_of(session: Session, bank_ids: Sequence[str]) -> dict[str, list[BankCapacity]]:
    out: dict[str, list[BankCapacity]] = {bank_id: [] for bank_id in bank_ids}
    if not bank_ids:
        return out
    rows = session.scalars(select(BankCapacity).where(BankCapacity.bank_id.in_(bank_ids)))
    for row in rows:
        out[row.bank_id].append(row)
    return out


class BankSpot(NamedTuple):
    """What offering a bank as a nearby alternative needs of it: a few columns, not the row."""

    id: str
    name: str
    lat: float
    lon: float
    max_weight_g: int
    allow_upsize: bool


def banks_in_box(
    session: Session,
    box: tuple[float, float, float, float],
    *,
    status: str = "active",
    limit: int = 5000,
) -> Sequence[Bank]:
    return session.scalars(select(Bank).where(_in_box(box, status)).limit(limit)).all()


def bank_spots_in_box(
    session: Session, box: tuple[float, float, float, float], *, limit: int = 5000
) -> list[BankSpot]:
    """Active banks in the box, as `BankSpot`s; not those in maintenance."""
    stmt = (
        select(Bank.id, Bank.name, Bank.lat, Bank.lon, Bank.max_weight_g, Bank.allow_upsize)
        .where(_in_box(box, "active"), Bank.maintenance_since.is_(None))  # allocation skips it
        .limit(limit)
    )
    return [BankSpot(*row) for row in session.execute(stmt)]


def _in_box(box: tuple[float, float, float, float], status: str) -> ColumnElement[bool]:
    min_lat, max_lat, min_lon, max_lon = box
    lon_filter = (
        Bank.lon.between(min_lon, max_lon)
        if min_lon >= -180 and max_lon <= 180
        # The box crosses the antimeridian: take both sides.
        else or_(
            Bank.lon >= (min_lon + 360 if min_lon < -180 else min_lon),
            Bank.lon <= (max_lon - 360 if max_lon > 180 else max_lon),
        )
    )
    return and_(Bank.status == status, Bank.lat.between(min_lat, max_lat), lon_filter)


def list_banks(
    session: Session, *, status: str = "active", after: str | None = None, limit: int = 100
) -> Sequence[Bank]:
    stmt = select(Bank).where(Bank.status == status).order_by(Bank.id).limit(limit)
    if after:
        stmt = stmt.where(Bank.id > after)
    return session.scalars(stmt).all()


_CAPACITY = cast(Table, BankCapacity.__table__)
# Prebuilt Core statements: the ORM's statement machinery costs more than the round trip itself.
# Taking a unit runs here on SQLite; PostgreSQL takes it inside the reservation statement of
# `central.reservations.repository`.
#
# `available` counts every free unit of a class, `accessible_available` the accessible ones
# among them. A unit that is not accessible is free while `available` exceeds the free
# accessible units (`available > accessible_available`, and `available > 0` for when that count
# has gone below zero); taking one leaves the accessible count alone. An accessible unit is free
# while both counts are above zero, and taking one takes from both.
_TAKE_UNIT = (
    update(_CAPACITY)
    .where(
        _CAPACITY.c.bank_id == bindparam("p_bank"),
        _CAPACITY.c.size == bindparam("p_size"),
        _CAPACITY.c.available > 0,
        _CAPACITY.c.available > _CAPACITY.c.accessible_available,
    )
    .values(available=_CAPACITY.c.available - 1)
)
_TAKE_ACCESSIBLE_UNIT = (
    update(_CAPACITY)
    .where(
        _CAPACITY.c.bank_id == bindparam("p_bank"),
        _CAPACITY.c.size == bindparam("p_size"),
        _CAPACITY.c.available > 0,
        _CAPACITY.c.accessible_available > 0,
    )
    .values(
        available=_CAPACITY.c.available - 1,
        accessible_available=_CAPACITY.c.accessible_available - 1,
    )
)
_RELEASE_UNIT = (
    update(_CAPACITY)
    .where(_CAPACITY.c.bank_id == bindparam("p_bank"), _CAPACITY.c.size == bindparam("p_size"))
    .values(available=_CAPACITY.c.available + 1)
)
_RELEASE_ACCESSIBLE_UNIT = (
    update(_CAPACITY)
    .where(_CAPACITY.c.bank_id == bindparam("p_bank"), _CAPACITY.c.size == bindparam("p_size"))
    .values(
        available=_CAPACITY.c.available + 1,
        accessible_available=_CAPACITY.c.accessible_available + 1,
    )
)

# Which kind of unit `take_unit` took.
TakenUnit = Literal["plain", "accessible"]


def take_unit(
    session: Session, bank_id: str, size: str, *, accessible: bool = False
) -> TakenUnit | None:
    """Take one free unit, each try in one statement: the WHERE re-checked under the row lock
    is the guard. None: no unit the request may take is free.

    `accessible`: only an accessible unit will do. Otherwise a unit that is not accessible is
    taken first, and an accessible one only when no other unit of the class is free.
    """
    params = {"p_bank": bank_id, "p_size": size}
    connection = session.connection()
    if not accessible and connection.execute(_TAKE_UNIT, params).rowcount == 1:
        return "plain"
    if connection.execute(_TAKE_ACCESSIBLE_UNIT, params).rowcount == 1:
        return "accessible"
    return None


def release_unit(
    session: Session, bank_id: str, size: str, *, accessible_unit: bool = False
) -> None:
    """Give back the unit a reservation held; `accessible_unit`: it was an accessible one."""
    stmt = _RELEASE_ACCESSIBLE_UNIT if accessible_unit else _RELEASE_UNIT
    session.connection().execute(stmt, {"p_bank": bank_id, "p_size": size})


# No `available > 0` guard, unlike `_TAKE_UNIT`: see `hold_unit_regardless`.
_HOLD_UNIT_REGARDLESS = (
    update(_CAPACITY)
    .where(_CAPACITY.c.bank_id == bindparam("p_bank"), _CAPACITY.c.size == bindparam("p_size"))
    .values(available=_CAPACITY.c.available - 1)
)


def hold_unit_regardless(session: Session, bank_id: str, size: str) -> None:
    """Count one more hold on a class whether or not a unit was free: for a parcel that is in
    the locker already (a walk-up the node took while central counted the class full, or while
    it could not hear of it).

    `available` stays `total - active holds`, as every other change keeps it, even when that
    goes below zero for a while (more parcels than the count thought there was room for):
    allocation (`available > 0`) then refuses the class until pickups bring it back above
    zero, which is the truth. Guarding this like `take_unit` would lose the hold, and the
    pickup that later releases the unit would leave the class one unit too free for good.
    """
    session.connection().execute(_HOLD_UNIT_REGARDLESS, {"p_bank": bank_id, "p_size": size})


def recount_accessible_units(session: Session, bank_id: str) -> None:
    """Set each class's accessible counts from the bank's compartments as they now stand: the
    working accessible compartments, less the accessible units that reservations hold.

    For when which compartments are accessible changes (a node reporting its doors at
    enrollment). The capacity rows are locked first, so a reservation racing this one either
    committed before the count or takes its unit from the new figures. Like `available`, the
    free count may go below zero (more holds on accessible units than there now are).
    """
    session.flush()  # compartments' flags changed in this session count
    capacity = session.scalars(
        select(BankCapacity)
        .where(BankCapacity.bank_id == bank_id)
        .order_by(BankCapacity.size)
        .with_for_update()
    ).all()
    working: dict[str, int] = dict(
        session.execute(
            select(Compartment.size, func.count())
            .where(
                Compartment.bank_id == bank_id,
                Compartment.accessible.is_(True),
                Compartment.state != CompartmentState.OUT_OF_SERVICE.value,
            )
            .group_by(Compartment.size)
        ).all()
    )
    # The statuses in which a reservation holds its unit (`reservations.lifecycle`): until it
    # is picked up, cancelled, returned, or expires before its deposit.
    holding = or_(
        Reservation.status.in_([s.value for s in ACTIVE_STATUSES]),
        and_(
            Reservation.status == ReservationStatus.EXPIRED.value,
            Reservation.deposited_at.is_not(None),
        ),
    )
    held: dict[str, int] = dict(
        session.execute(
            select(Reservation.size, func.count())
            .where(Reservation.bank_id == bank_id, Reservation.accessible_unit.is_(True), holding)
            .group_by(Reservation.size)
        ).all()
    )
    for row in capacity:
        row.accessible_total = working.get(row.size, 0)
        row.accessible_available = row.accessible_total - held.get(row.size, 0)
    session.flush()


# Bank settings (central.banks.settings) ----------------------------------------------------------


def lock_bank(session: Session, bank_id: str) -> Bank | None:
    """The bank, locked until commit: settings changes of one bank happen one after another.

    FOR NO KEY UPDATE on PostgreSQL, which a reservation's foreign key check (KEY SHARE) does
    not wait for: a reservation holding its class's capacity row while this waits for that row
    (`recount_units`) would otherwise deadlock with it.
    """
    return session.scalars(
        select(Bank)
        .where(Bank.id == bank_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one_or_none()


def lock_capacity(session: Session, bank_id: str) -> None:
    """Lock the bank's capacity rows in class order before a compartment's: the order in which
    a batch of node events mostly takes them (a pickup's released unit, then the compartment)."""
    session.execute(
        select(BankCapacity.size)
        .where(BankCapacity.bank_id == bank_id)
        .order_by(BankCapacity.size)
        .with_for_update()
    ).all()


def lock_compartment(session: Session, bank_id: str, label: str) -> Compartment | None:
    return session.scalars(
        select(Compartment)
        .where(Compartment.bank_id == bank_id, Compartment.label == label)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def compartment_labels_of(session: Session, bank_id: str) -> list[str]:
    return list(
        session.scalars(
            select(Compartment.label)
            .where(Compartment.bank_id == bank_id)
            .order_by(Compartment.label)
        )
    )


def compartments_in_maintenance(session: Session, bank_id: str) -> Sequence[Compartment]:
    return session.scalars(
        select(Compartment)
        .where(Compartment.bank_id == bank_id, Compartment.maintenance_since.is_not(None))
        .order_by(Compartment.label)
    ).all()


def _holding() -> ColumnElement[bool]:
    """The statuses in which a reservation holds its unit (`reservations.lifecycle`): until it
    is picked up, cancelled, returned, or expires before its deposit."""
    return or_(
        Reservation.status.in_([s.value for s in ACTIVE_STATUSES]),
        and_(
            Reservation.status == ReservationStatus.EXPIRED.value,
            Reservation.deposited_at.is_not(None),
        ),
    )


def parcels_at(session: Session, bank_id: str, label: str | None = None) -> Sequence[Reservation]:
    """The reservations that hold a unit at the bank (reserved, or a parcel in the locker), or,
    with `label`, the parcels in that compartment; by carrier and id."""
    stmt = select(Reservation).where(Reservation.bank_id == bank_id, _holding())
    if label is not None:
        stmt = stmt.where(
            Reservation.compartment_label == label,
            Reservation.status != ReservationStatus.RESERVED.value,
        )
    return session.scalars(stmt.order_by(Reservation.carrier_id, Reservation.id)).all()


def recount_units(session: Session, bank_id: str) -> None:
    """Set each class's counts from the bank's compartments and holds as they now stand:
    `total` the working compartments (not out of service), `available` that less the units
    reservations hold; the accessible counts alike.

    For a compartment taken out of service by central itself (maintenance) and given back: the
    figures are what the deltas of `nodes.repository.change_working_units` keep, counted
    afresh, so leaving maintenance gives back exactly what entering it took, whatever happened
    in between. The capacity rows are locked first, as in `recount_accessible_units`.
    """
    session.flush()
    capacity = session.scalars(
        select(BankCapacity)
        .where(BankCapacity.bank_id == bank_id)
        .order_by(BankCapacity.size)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    working = {
        (size, bool(accessible)): count
        for size, accessible, count in session.execute(
            select(Compartment.size, Compartment.accessible, func.count())
            .where(
                Compartment.bank_id == bank_id,
                Compartment.state != CompartmentState.OUT_OF_SERVICE.value,
            )
            .group_by(Compartment.size, Compartment.accessible)
        ).all()
    }
    held = {
        (size, bool(accessible)): count
        for size, accessible, count in session.execute(
            select(Reservation.size, Reservation.accessible_unit, func.count())
            .where(Reservation.bank_id == bank_id, _holding())
            .group_by(Reservation.size, Reservation.accessible_unit)
        ).all()
    }
    for row in capacity:
        accessible_working = working.get((row.size, True), 0)
        accessible_held = held.get((row.size, True), 0)
        row.total = working.get((row.size, False), 0) + accessible_working
        row.available = row.total - accessible_held - held.get((row.size, False), 0)
        row.accessible_total = accessible_working
        row.accessible_available = accessible_working - accessible_held
    session.flush()


def banks_overdue(session: Session, now: datetime) -> Sequence[Bank]:
    """Banks in maintenance past the end the admin expected."""
    return session.scalars(
        select(Bank).where(Bank.maintenance_since.is_not(None), Bank.maintenance_until < now)
    ).all()


def compartments_overdue(session: Session, now: datetime) -> Sequence[Compartment]:
    return session.scalars(
        select(Compartment).where(
            Compartment.maintenance_since.is_not(None), Compartment.maintenance_until < now
        )
    ).all()


def open_alerts_of_type(session: Session, alert_type: str) -> Sequence[Alert]:
    return session.scalars(
        select(Alert).where(Alert.type == alert_type, Alert.resolved_at.is_(None))
    ).all()


def has_open_alert(session: Session, bank_id: str, alert_type: str, subject: str) -> bool:
    found = session.execute(
        select(Alert.id)
        .where(
            Alert.bank_id == bank_id,
            Alert.type == alert_type,
            Alert.subject == subject,
            Alert.resolved_at.is_(None),
        )
        .limit(1)
    ).first()
    return found is not None


def add_alert(session: Session, alert: Alert) -> None:
    session.add(alert)
    session.flush()


def compartment_in_maintenance(session: Session, bank_id: str, label: str) -> bool:
    found = session.execute(
        select(Compartment.id)
        .where(
            Compartment.bank_id == bank_id,
            Compartment.label == label,
            Compartment.maintenance_since.is_not(None),
        )
        .limit(1)
    ).first()
    return found is not None
