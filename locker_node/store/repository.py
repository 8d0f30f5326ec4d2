"""Every query of the node's store; callers pass the connection of their transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    func,
    insert,
    or_,
    select,
    update,
)

from locker_node.domain.allocation import Candidate
from locker_node.domain.codes import IssuedPickupCode
from locker_node.domain.lifecycle import (
    CodeStatus,
    DepositStatus,
    Occupancy,
    OperationResult,
    ParcelStatus,
    Purpose,
    ReservationStatus,
)
from locker_node.store.rows import changed, every, one
from locker_node.store.schema import (
    compartments,
    deposits,
    door_operations,
    parcels,
    pickup_codes,
    reservations,
)

# Compartments


@dataclass(frozen=True)
class Compartment:
    label: str
    size: str
    board: str
    lock: int
    occupancy: str
    in_service: bool
    service_note: str
    configured: bool
    updated_at: datetime
    accessible: bool = False


@dataclass(frozen=True)
class CompartmentSpec:
    label: str
    size: str
    board: str
    lock: int
    accessible: bool = False


def sync_compartments(conn: Connection, specs: Sequence[CompartmentSpec], now: datetime) -> None:
    """Make the table match the config file; a compartment dropped from the file is kept (its
    history refers to it) but never offered again."""
    known = {c.label: c for c in list_compartments(conn)}
    for spec in specs:
        current = known.pop(spec.label, None)
        values = {"size": spec.size, "board": spec.board, "lock": spec.lock, "configured": True}
        values["accessible"] = spec.accessible
        if current is None:
            conn.execute(
                insert(compartments).values(
                    label=spec.label,
                    occupancy=Occupancy.FREE,
                    in_service=True,
                    service_note="",
                    updated_at=now,
                    **values,
                )
            )
        elif any(getattr(current, key) != value for key, value in values.items()):
            conn.execute(
                update(compartments)
                .where(compartments.c.label == spec.label)
                .values(updated_at=now, **values)
            )
    for label in known:
        conn.execute(
            update(compartments)
            .where(compartments.c.label == label)
            .values(configured=False, updated_at=now)
        )


def list_compartments(conn: Connection) -> list[Compartment]:
    return every(Compartment, conn.execute(select(compartments).order_by(compartments.c.label)))


def get_compartment(conn: Connection, label: str) -> Compartment | None:
    return one(
        Compartment, conn.execute(select(compartments).where(compartments.c.label == label)).first()
    )


def free_candidates(conn: Connection) -> list[Candidate]:
    rows = conn.execute(
        select(compartments.c.label, compartments.c.size, compartments.c.accessible).where(
            compartments.c.occupancy == Occupancy.FREE,
            compartments.c.in_service.is_(True),
            compartments.c.configured.is_(True),
        )
    )
    return [Candidate(row.label, row.size, bool(row.accessible)) for row in rows]


def set_occupancy(
    conn: Connection, label: str, occupancy: Occupancy, now: datetime, *, expect: Occupancy
) -> None:
    """Move a compartment between occupancy states; the expected state guards against races."""
    count = changed(
        conn.execute(
            update(compartments)
            .where(compartments.c.label == label, compartments.c.occupancy == expect)
            .values(occupancy=occupancy, updated_at=now)
        )
    )
    if count != 1:
        raise RuntimeError(f"compartment {label} is not {expect}")


def set_service(conn: Connection, label: str, in_service: bool, note: str, now: datetime) -> bool:
    """True if the service state changed."""
    return (
        changed(
            conn.execute(
                update(compartments)
                .where(compartments.c.label == label, compartments.c.in_service.is_(not in_service))
                .values(in_service=in_service, service_note=note[:200], updated_at=now)
            )
        )
        == 1
    )


def out_of_service_labels(conn: Connection) -> list[str]:
    rows = conn.execute(select(compartments.c.label).where(compartments.c.in_service.is_(False)))
    return [row.label for row in rows]


# Reservations


@dataclass(frozen=True)
class Reservation:
    id: str
    carrier_id: str
    tracking_number: str
    size: str
    reserved_until: datetime
    status: str
    walk_up: bool
    pickup_deadline: datetime | None
    created_at: datetime
    updated_at: datetime
    kind: str = "delivery"
    accessible: bool = False
    group_id: str | None = None


def get_reservation(conn: Connection, reservation_id: str) -> Reservation | None:
    return one(
        Reservation,
        conn.execute(select(reservations).where(reservations.c.id == reservation_id)).first(),
    )


def insert_reservation(conn: Connection, reservation: Reservation) -> None:
    conn.execute(insert(reservations).values(**reservation.__dict__))


def update_reservation(conn: Connection, reservation_id: str, now: datetime, **values: Any) -> None:
    conn.execute(
        update(reservations)
        .where(reservations.c.id == reservation_id)
        .values(updated_at=now, **values)
    )


def find_reservation(
    conn: Connection, carrier_id: str, tracking_number: str, *, kind: str | None = None
) -> Reservation | None:
    """The carrier's reservation for a tracking number (of one `kind`, when given): a live one
    first, else the newest."""
    query = select(reservations).where(
        reservations.c.carrier_id == carrier_id,
        reservations.c.tracking_number == tracking_number,
    )
    if kind is not None:
        query = query.where(reservations.c.kind == kind)
    rows = every(Reservation, conn.execute(query.order_by(reservations.c.created_at.desc())))
    for row in rows:
        if row.status in (ReservationStatus.RESERVED, ReservationStatus.DEPOSITED):
            return row
    return rows[0] if rows else None


def count_waiting_reservations(conn: Connection, size: str, now: datetime) -> int:
    """Live reservations of a size class whose parcel is not in a compartment yet."""
    bound = select(deposits.c.reservation_id).where(
        deposits.c.status.in_(DepositStatus.in_progress())
    )
    count = conn.execute(
        select(func.count()).where(
            reservations.c.size == size,
            reservations.c.status == ReservationStatus.RESERVED,
            reservations.c.reserved_until > now,
            reservations.c.id.not_in(bound),
        )
    ).scalar_one()
    return int(count)


# Deposits


@dataclass(frozen=True)
class Deposit:
    id: str
    reservation_id: str
    carrier_id: str
    session_id: str | None
    compartment: str
    status: str
    created_at: datetime
    updated_at: datetime


def insert_deposit(conn: Connection, deposit: Deposit) -> None:
    conn.execute(insert(deposits).values(**deposit.__dict__))


def get_deposit(conn: Connection, deposit_id: str) -> Deposit | None:
    return one(Deposit, conn.execute(select(deposits).where(deposits.c.id == deposit_id)).first())


def update_deposit(conn: Connection, deposit_id: str, now: datetime, **values: Any) -> None:
    conn.execute(
        update(deposits).where(deposits.c.id == deposit_id).values(updated_at=now, **values)
    )


def active_deposit(conn: Connection, reservation_id: str) -> Deposit | None:
    return one(
        Deposit,
        conn.execute(
            select(deposits).where(
                deposits.c.reservation_id == reservation_id,
                deposits.c.status.in_(DepositStatus.in_progress()),
            )
        ).first(),
    )


def list_deposits(conn: Connection) -> list[Deposit]:
    return every(Deposit, conn.execute(select(deposits).order_by(deposits.c.created_at)))


def stale_deposits(conn: Connection, untouched_since: datetime) -> list[Deposit]:
    return every(
        Deposit,
        conn.execute(
            select(deposits).where(
                deposits.c.status.in_(DepositStatus.in_progress()),
                deposits.c.updated_at < untouched_since,
            )
        ),
    )


# Parcels and their codes


@dataclass(frozen=True)
class Parcel:
    id: str
    reservation_id: str
    deposit_id: str
    carrier_id: str
    tracking_number: str
    compartment: str
    status: str
    deposited_at: datetime
    pickup_deadline: datetime
    finished_at: datetime | None


def insert_parcel(conn: Connection, parcel: Parcel) -> None:
    conn.execute(insert(parcels).values(**parcel.__dict__))


def get_parcel(conn: Connection, parcel_id: str) -> Parcel | None:
    return one(Parcel, conn.execute(select(parcels).where(parcels.c.id == parcel_id)).first())


def parcel_for_deposit(conn: Connection, deposit_id: str) -> Parcel | None:
    return one(
        Parcel, conn.execute(select(parcels).where(parcels.c.deposit_id == deposit_id)).first()
    )


def set_parcel_status(
    conn: Connection, parcel_id: str, status: ParcelStatus, *, expect: ParcelStatus, now: datetime
) -> None:
    count = changed(
        conn.execute(
            update(parcels)
            .where(parcels.c.id == parcel_id, parcels.c.status == expect)
            .values(
                status=status,
                finished_at=now if status is not ParcelStatus.EXPIRED else None,
            )
        )
    )
    if count != 1:
        raise RuntimeError(f"parcel {parcel_id} is not {expect}")


def list_parcels(conn: Connection) -> list[Parcel]:
    return every(Parcel, conn.execute(select(parcels).order_by(parcels.c.deposited_at)))


def parcels_past_deadline(conn: Connection, now: datetime) -> list[Parcel]:
    return every(
        Parcel,
        conn.execute(
            select(parcels).where(
                parcels.c.status == ParcelStatus.IN_LOCKER, parcels.c.pickup_deadline <= now
            )
        ),
    )


def parcels_to_return(conn: Connection, carrier_id: str) -> list[Parcel]:
    return every(
        Parcel,
        conn.execute(
            select(parcels)
            .where(parcels.c.carrier_id == carrier_id, parcels.c.status == ParcelStatus.EXPIRED)
            .order_by(parcels.c.compartment)
        ),
    )


@dataclass(frozen=True)
class PickupCode:
    parcel_id: str
    code_hash: str | None
    qr_hash: str | None
    status: str
    expires_at: datetime
    created_at: datetime
    finished_at: datetime | None
    joins: str | None = None


def active_pickup_code(
    parcel_id: str, issued: IssuedPickupCode, expires_at: datetime, now: datetime
) -> PickupCode:
    """The row for a code just issued: only its hashes, live until the pickup deadline."""
    return PickupCode(
        parcel_id=parcel_id,
        code_hash=issued.code_hash,
        qr_hash=issued.qr_hash,
        status=CodeStatus.ACTIVE,
        expires_at=expires_at,
        created_at=now,
        finished_at=None,
    )


def insert_pickup_code(conn: Connection, code: PickupCode) -> None:
    conn.execute(insert(pickup_codes).values(**code.__dict__))


def replace_pickup_code(conn: Connection, code: PickupCode) -> None:
    """The parcel's one code row (keyed by the parcel) takes a new pair, or is made."""
    values = {k: v for k, v in code.__dict__.items() if k != "parcel_id"}
    updated = conn.execute(
        update(pickup_codes).where(pickup_codes.c.parcel_id == code.parcel_id).values(**values)
    )
    if updated.rowcount == 0:
        insert_pickup_code(conn, code)


def get_pickup_code(conn: Connection, parcel_id: str) -> PickupCode | None:
    return one(
        PickupCode,
        conn.execute(select(pickup_codes).where(pickup_codes.c.parcel_id == parcel_id)).first(),
    )


def code_hash_in_use(conn: Connection, code_hash: str) -> bool:
    found = conn.execute(
        select(pickup_codes.c.parcel_id).where(pickup_codes.c.code_hash == code_hash)
    ).first()
    return found is not None


def find_live_code(
    conn: Connection, now: datetime, *, code_hash: str | None = None, qr_hash: str | None = None
) -> PickupCode | None:
    return _find_code(conn, CodeStatus.ACTIVE, code_hash=code_hash, qr_hash=qr_hash, now=now)


def find_used_code(
    conn: Connection, *, code_hash: str | None = None, qr_hash: str | None = None
) -> PickupCode | None:
    """A code that opened its door and is remembered still (for a day, `forget_used_codes`)."""
    return _find_code(conn, CodeStatus.USED, code_hash=code_hash, qr_hash=qr_hash)


def _find_code(
    conn: Connection,
    status: CodeStatus,
    *,
    code_hash: str | None,
    qr_hash: str | None,
    now: datetime | None = None,
) -> PickupCode | None:
    condition = (
        pickup_codes.c.code_hash == code_hash
        if code_hash is not None
        else pickup_codes.c.qr_hash == qr_hash
    )
    query = select(pickup_codes).where(condition, pickup_codes.c.status == status)
    if now is not None:
        query = query.where(pickup_codes.c.expires_at > now)
    return one(PickupCode, conn.execute(query).first())


def kill_pickup_code(conn: Connection, parcel_id: str, status: CodeStatus, now: datetime) -> None:
    """A code that dies forgets its hashes: nothing left to match, nothing left to crack. A used
    one keeps them (keyed hashes) for a day, so that typing it again answers "already collected"
    rather than counting as a wrong code."""
    keep = status == CodeStatus.USED
    conn.execute(
        update(pickup_codes)
        .where(pickup_codes.c.parcel_id == parcel_id, pickup_codes.c.status == CodeStatus.ACTIVE)
        .values(
            status=status,
            code_hash=pickup_codes.c.code_hash if keep else None,
            qr_hash=pickup_codes.c.qr_hash if keep else None,
            finished_at=now,
        )
    )


def forget_used_codes(conn: Connection, finished_before: datetime) -> int:
    """Used codes finished before then forget their hashes, as dead codes do at once."""
    return forget_finished_hashes(conn, pickup_codes, finished_before)


def forget_finished_hashes(conn: Connection, codes: Table, finished_before: datetime) -> int:
    """The codes of a codes table (`pickup_codes`, `dropoff_codes`) finished before then
    forget their hashes; how many did."""
    return changed(
        conn.execute(
            update(codes)
            .where(
                codes.c.status != CodeStatus.ACTIVE,
                codes.c.finished_at < finished_before,
                or_(codes.c.code_hash.is_not(None), codes.c.qr_hash.is_not(None)),
            )
            .values(code_hash=None, qr_hash=None)
        )
    )


# Door operations (the business side of an unlock command)


@dataclass(frozen=True)
class DoorOperation:
    command_id: str
    purpose: str
    compartment: str
    actor: str
    deposit_id: str | None
    parcel_id: str | None
    via: str | None
    started_at: datetime
    result: str | None
    finished_at: datetime | None


def insert_operation(conn: Connection, operation: DoorOperation) -> None:
    conn.execute(insert(door_operations).values(**operation.__dict__))


def finish_operation(
    conn: Connection, command_id: str, result: OperationResult, now: datetime
) -> None:
    conn.execute(
        update(door_operations)
        .where(door_operations.c.command_id == command_id, door_operations.c.result.is_(None))
        .values(result=result, finished_at=now)
    )


def unfinished_operations(conn: Connection) -> list[DoorOperation]:
    return every(
        DoorOperation,
        conn.execute(
            select(door_operations)
            .where(door_operations.c.result.is_(None))
            .order_by(door_operations.c.started_at)
        ),
    )


def last_operation(
    conn: Connection,
    purpose: Purpose,
    *,
    parcel_id: str,
    result: OperationResult | None = None,
) -> DoorOperation | None:
    """The latest opening of a parcel's door for `purpose` (with that `result`, when given)."""
    query = select(door_operations).where(
        door_operations.c.purpose == purpose, door_operations.c.parcel_id == parcel_id
    )
    if result is not None:
        query = query.where(door_operations.c.result == result)
    return one(
        DoorOperation, conn.execute(query.order_by(door_operations.c.started_at.desc())).first()
    )


def parcel_in_locker(conn: Connection, reservation_id: str) -> Parcel | None:
    query = select(parcels).where(
        parcels.c.reservation_id == reservation_id, parcels.c.status == ParcelStatus.IN_LOCKER
    )
    return one(Parcel, conn.execute(query).first())


def move_pickup_deadline(
    conn: Connection, parcel: Parcel, deadline: datetime, now: datetime
) -> None:
    """The parcel, its live code and its reservation all end at `deadline` (a later one: a
    deadline only moves out). A code shared by a parcel group lives as long as the longest-held
    of its parcels: the code a parcel joined (`joins`) is moved out too, never in."""
    conn.execute(update(parcels).where(parcels.c.id == parcel.id).values(pickup_deadline=deadline))
    joined = select(pickup_codes.c.joins).where(pickup_codes.c.parcel_id == parcel.id)
    conn.execute(
        update(pickup_codes)
        .where(
            or_(
                pickup_codes.c.parcel_id == parcel.id,
                pickup_codes.c.parcel_id == joined.scalar_subquery(),
            ),
            pickup_codes.c.status == CodeStatus.ACTIVE,
            pickup_codes.c.expires_at < deadline,
        )
        .values(expires_at=deadline)
    )
    update_reservation(conn, parcel.reservation_id, now, pickup_deadline=deadline)
