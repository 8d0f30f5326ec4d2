"""Every query of the node's store; callers pass the connection of their transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    Connection,
    CursorResult,
    Row,
    and_,
    delete,
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
    EventType,
    Occupancy,
    OperationResult,
    ParcelStatus,
    Purpose,
    ReservationStatus,
)
from locker_node.store.schema import (
    audit_log,
    compartments,
    courier_credentials,
    courier_sessions,
    deposits,
    door_operations,
    keypad_failures,
    outbox,
    parcels,
    pickup_codes,
    reservations,
)

if TYPE_CHECKING:
    from locker_wire.schemas import KioskEventType

T = TypeVar("T")


def _record(kind: type[T], row: Row[Any] | None) -> T | None:
    return None if row is None else kind(**row._mapping)


def _records(kind: type[T], rows: Iterable[Row[Any]]) -> list[T]:
    return [kind(**row._mapping) for row in rows]


def _changed(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


def new_id() -> str:
    return uuid.uuid4().hex


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


@dataclass(frozen=True)
class CompartmentSpec:
    label: str
    size: str
    board: str
    lock: int


def sync_compartments(conn: Connection, specs: Sequence[CompartmentSpec], now: datetime) -> None:
    """Make the table match the config file; a compartment dropped from the file is kept (its
    history refers to it) but never offered again."""
    known = {c.label: c for c in list_compartments(conn)}
    for spec in specs:
        current = known.pop(spec.label, None)
        values = {"size": spec.size, "board": spec.board, "lock": spec.lock, "configured": True}
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
    return _records(Compartment, conn.execute(select(compartments).order_by(compartments.c.label)))


def get_compartment(conn: Connection, label: str) -> Compartment | None:
    return _record(
        Compartment, conn.execute(select(compartments).where(compartments.c.label == label)).first()
    )


def free_candidates(conn: Connection) -> list[Candidate]:
    rows = conn.execute(
        select(compartments.c.label, compartments.c.size).where(
            compartments.c.occupancy == Occupancy.FREE,
            compartments.c.in_service.is_(True),
            compartments.c.configured.is_(True),
        )
    )
    return [Candidate(label=row.label, size=row.size) for row in rows]


def set_occupancy(
    conn: Connection, label: str, occupancy: Occupancy, now: datetime, *, expect: Occupancy
) -> None:
    """Move a compartment between occupancy states; the expected state guards against races."""
    changed = _changed(
        conn.execute(
            update(compartments)
            .where(compartments.c.label == label, compartments.c.occupancy == expect)
            .values(occupancy=occupancy, updated_at=now)
        )
    )
    if changed != 1:
        raise RuntimeError(f"compartment {label} is not {expect}")


def set_service(conn: Connection, label: str, in_service: bool, note: str, now: datetime) -> bool:
    """True if the service state changed."""
    return (
        _changed(
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


def get_reservation(conn: Connection, reservation_id: str) -> Reservation | None:
    return _record(
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


def find_reservation(conn: Connection, carrier_id: str, tracking_number: str) -> Reservation | None:
    """The carrier's reservation for a tracking number: a live one first, else the newest."""
    rows = _records(
        Reservation,
        conn.execute(
            select(reservations)
            .where(
                reservations.c.carrier_id == carrier_id,
                reservations.c.tracking_number == tracking_number,
            )
            .order_by(reservations.c.created_at.desc())
        ),
    )
    for row in rows:
        if row.status in (ReservationStatus.RESERVED, ReservationStatus.DEPOSITED):
            return row
    return rows[0] if rows else None


def count_waiting_reservations(conn: Connection, size: str, now: datetime) -> int:
    """Live reservations of a size class whose parcel is not in a compartment yet."""
    bound = select(deposits.c.reservation_id).where(
        deposits.c.status.in_([DepositStatus.OPENING, DepositStatus.OPEN])
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


# Courier credentials and sessions


def upsert_courier_credential(
    conn: Connection,
    *,
    carrier_id: str,
    code_hash: str,
    valid_from: datetime,
    valid_until: datetime,
    now: datetime,
) -> None:
    existing = conn.execute(
        select(courier_credentials.c.id).where(
            courier_credentials.c.carrier_id == carrier_id,
            courier_credentials.c.valid_from == valid_from,
        )
    ).first()
    if existing is None:
        conn.execute(
            insert(courier_credentials).values(
                carrier_id=carrier_id,
                code_hash=code_hash,
                valid_from=valid_from,
                valid_until=valid_until,
                created_at=now,
            )
        )
    else:
        conn.execute(
            update(courier_credentials)
            .where(courier_credentials.c.id == existing.id)
            .values(code_hash=code_hash, valid_until=valid_until, created_at=now)
        )


def valid_credential_hashes(conn: Connection, carrier_id: str, now: datetime) -> list[str]:
    rows = conn.execute(
        select(courier_credentials.c.code_hash).where(
            courier_credentials.c.carrier_id == carrier_id,
            courier_credentials.c.valid_from <= now,
            courier_credentials.c.valid_until > now,
        )
    )
    return [row.code_hash for row in rows]


def carriers_with_credentials(conn: Connection, now: datetime) -> list[str]:
    rows = conn.execute(
        select(courier_credentials.c.carrier_id)
        .where(courier_credentials.c.valid_from <= now, courier_credentials.c.valid_until > now)
        .distinct()
        .order_by(courier_credentials.c.carrier_id)
    )
    return [row.carrier_id for row in rows]


def prune_courier_credentials(conn: Connection, before: datetime) -> int:
    return _changed(
        conn.execute(delete(courier_credentials).where(courier_credentials.c.valid_until < before))
    )


@dataclass(frozen=True)
class CourierSession:
    id: str
    token_hash: str
    carrier_id: str
    created_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None


def insert_session(conn: Connection, session: CourierSession) -> None:
    conn.execute(insert(courier_sessions).values(**session.__dict__))


def find_session(conn: Connection, token_hash: str) -> CourierSession | None:
    return _record(
        CourierSession,
        conn.execute(
            select(courier_sessions).where(courier_sessions.c.token_hash == token_hash)
        ).first(),
    )


def touch_session(conn: Connection, session_id: str, now: datetime) -> None:
    conn.execute(
        update(courier_sessions).where(courier_sessions.c.id == session_id).values(last_seen_at=now)
    )


def end_session(conn: Connection, session_id: str, now: datetime) -> None:
    conn.execute(
        update(courier_sessions)
        .where(courier_sessions.c.id == session_id, courier_sessions.c.ended_at.is_(None))
        .values(ended_at=now)
    )


def get_session(conn: Connection, session_id: str) -> CourierSession | None:
    return _record(
        CourierSession,
        conn.execute(select(courier_sessions).where(courier_sessions.c.id == session_id)).first(),
    )


def idle_sessions(conn: Connection, idle_since: datetime) -> list[CourierSession]:
    """Open sessions with no activity since `idle_since` (housekeeping ends them)."""
    return _records(
        CourierSession,
        conn.execute(
            select(courier_sessions).where(
                courier_sessions.c.ended_at.is_(None),
                courier_sessions.c.last_seen_at < idle_since,
            )
        ),
    )


def count_session_deposits(conn: Connection, session_id: str) -> int:
    """Parcels a courier session put into the bank (confirmed deposits)."""
    query = (
        select(func.count())
        .select_from(deposits)
        .where(deposits.c.session_id == session_id, deposits.c.status == DepositStatus.CONFIRMED)
    )
    return int(conn.execute(query).scalar_one())


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
    return _record(
        Deposit, conn.execute(select(deposits).where(deposits.c.id == deposit_id)).first()
    )


def update_deposit(conn: Connection, deposit_id: str, now: datetime, **values: Any) -> None:
    conn.execute(
        update(deposits).where(deposits.c.id == deposit_id).values(updated_at=now, **values)
    )


def active_deposit(conn: Connection, reservation_id: str) -> Deposit | None:
    return _record(
        Deposit,
        conn.execute(
            select(deposits).where(
                deposits.c.reservation_id == reservation_id,
                deposits.c.status.in_([DepositStatus.OPENING, DepositStatus.OPEN]),
            )
        ).first(),
    )


def list_deposits(conn: Connection) -> list[Deposit]:
    return _records(Deposit, conn.execute(select(deposits).order_by(deposits.c.created_at)))


def stale_deposits(conn: Connection, untouched_since: datetime) -> list[Deposit]:
    return _records(
        Deposit,
        conn.execute(
            select(deposits).where(
                deposits.c.status.in_([DepositStatus.OPENING, DepositStatus.OPEN]),
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
    return _record(Parcel, conn.execute(select(parcels).where(parcels.c.id == parcel_id)).first())


def parcel_for_deposit(conn: Connection, deposit_id: str) -> Parcel | None:
    return _record(
        Parcel, conn.execute(select(parcels).where(parcels.c.deposit_id == deposit_id)).first()
    )


def set_parcel_status(
    conn: Connection, parcel_id: str, status: ParcelStatus, *, expect: ParcelStatus, now: datetime
) -> None:
    changed = _changed(
        conn.execute(
            update(parcels)
            .where(parcels.c.id == parcel_id, parcels.c.status == expect)
            .values(
                status=status,
                finished_at=now if status is not ParcelStatus.EXPIRED else None,
            )
        )
    )
    if changed != 1:
        raise RuntimeError(f"parcel {parcel_id} is not {expect}")


def list_parcels(conn: Connection) -> list[Parcel]:
    return _records(Parcel, conn.execute(select(parcels).order_by(parcels.c.deposited_at)))


def parcels_past_deadline(conn: Connection, now: datetime) -> list[Parcel]:
    return _records(
        Parcel,
        conn.execute(
            select(parcels).where(
                parcels.c.status == ParcelStatus.IN_LOCKER, parcels.c.pickup_deadline <= now
            )
        ),
    )


def parcels_to_return(conn: Connection, carrier_id: str) -> list[Parcel]:
    return _records(
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
    return _record(
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
    condition = (
        pickup_codes.c.code_hash == code_hash
        if code_hash is not None
        else pickup_codes.c.qr_hash == qr_hash
    )
    return _record(
        PickupCode,
        conn.execute(
            select(pickup_codes).where(
                condition,
                pickup_codes.c.status == CodeStatus.ACTIVE,
                pickup_codes.c.expires_at > now,
            )
        ).first(),
    )


def kill_pickup_code(conn: Connection, parcel_id: str, status: CodeStatus, now: datetime) -> None:
    """A code that dies forgets its hashes: nothing left to match, nothing left to crack."""
    conn.execute(
        update(pickup_codes)
        .where(pickup_codes.c.parcel_id == parcel_id, pickup_codes.c.status == CodeStatus.ACTIVE)
        .values(status=status, code_hash=None, qr_hash=None, finished_at=now)
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
    return _records(
        DoorOperation,
        conn.execute(
            select(door_operations)
            .where(door_operations.c.result.is_(None))
            .order_by(door_operations.c.started_at)
        ),
    )


def unfinished_operation_for(
    conn: Connection,
    purpose: Purpose,
    *,
    parcel_id: str | None = None,
    deposit_id: str | None = None,
) -> DoorOperation | None:
    conditions = [door_operations.c.purpose == purpose, door_operations.c.result.is_(None)]
    if parcel_id is not None:
        conditions.append(door_operations.c.parcel_id == parcel_id)
    if deposit_id is not None:
        conditions.append(door_operations.c.deposit_id == deposit_id)
    return _record(DoorOperation, conn.execute(select(door_operations).where(*conditions)).first())


def last_opened_operation(
    conn: Connection, purpose: Purpose, *, parcel_id: str
) -> DoorOperation | None:
    return _record(
        DoorOperation,
        conn.execute(
            select(door_operations)
            .where(
                door_operations.c.purpose == purpose,
                door_operations.c.parcel_id == parcel_id,
                door_operations.c.result == OperationResult.OPENED,
            )
            .order_by(door_operations.c.started_at.desc())
        ).first(),
    )


# Keypad failures


def record_keypad_failure(
    conn: Connection, scope: str, at: datetime, locked_until: datetime | None
) -> None:
    conn.execute(insert(keypad_failures).values(scope=scope, at=at, locked_until=locked_until))


def count_keypad_failures(conn: Connection, scope: str, since: datetime) -> int:
    count = conn.execute(
        select(func.count()).where(keypad_failures.c.scope == scope, keypad_failures.c.at > since)
    ).scalar_one()
    return int(count)


def keypad_locked_until(conn: Connection, scope: str) -> datetime | None:
    row = conn.execute(
        select(keypad_failures.c.locked_until)
        .where(keypad_failures.c.scope == scope, keypad_failures.c.locked_until.is_not(None))
        .order_by(keypad_failures.c.locked_until.desc())
        .limit(1)
    ).first()
    return None if row is None else row.locked_until


def prune_keypad_failures(conn: Connection, before: datetime) -> int:
    return _changed(
        conn.execute(
            delete(keypad_failures).where(
                keypad_failures.c.at < before,
                or_(
                    keypad_failures.c.locked_until.is_(None),
                    keypad_failures.c.locked_until < before,
                ),
            )
        )
    )


# Audit log and outbox


def append_audit(
    conn: Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    reason: str = "",
    compartment: str | None = None,
    command_id: str | None = None,
    parcel_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        insert(audit_log).values(
            at=at,
            actor=actor[:80],
            action=action[:40],
            reason=reason[:200],
            compartment=compartment,
            command_id=command_id,
            parcel_id=parcel_id,
            detail=None if detail is None else json.dumps(detail, sort_keys=True, default=str),
        )
    )


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    compartment: str | None
    reason: str
    command_id: str | None
    parcel_id: str | None
    detail: str | None


def audit_entries(conn: Connection, *, compartment: str | None = None) -> list[AuditEntry]:
    query = select(audit_log).order_by(audit_log.c.id)
    if compartment is not None:
        query = query.where(audit_log.c.compartment == compartment)
    return _records(AuditEntry, conn.execute(query))


@dataclass(frozen=True)
class OutboxEvent:
    seq: int
    event_id: str
    type: str
    created_at: datetime
    payload: str
    sent_at: datetime | None

    @property
    def data(self) -> dict[str, Any]:
        body = json.loads(self.payload)
        assert isinstance(body, dict)
        data = body["data"]
        assert isinstance(data, dict)
        return data


def append_event(
    conn: Connection,
    event_type: EventType | KioskEventType,
    data: dict[str, Any],
    *,
    bank_id: str,
    now: datetime,
) -> str:
    """Queue an event for central in the caller's transaction, under a node-made UUID that
    central uses to apply it at most once."""
    event_id = str(uuid.uuid4())
    # The envelope of the node-central wire's `NodeEvent`, plus the bank it happened at.
    body = {
        "id": event_id,
        "type": str(event_type),
        "bank_id": bank_id,
        "occurred_at": now.isoformat(),
        "data": data,
    }
    conn.execute(
        insert(outbox).values(
            event_id=event_id,
            type=str(event_type),
            created_at=now,
            payload=json.dumps(body, sort_keys=True, default=str),
        )
    )
    return event_id


def outbox_events(
    conn: Connection, *, after_seq: int = 0, limit: int | None = None, unsent_only: bool = False
) -> list[OutboxEvent]:
    query = select(outbox).where(outbox.c.seq > after_seq).order_by(outbox.c.seq)
    if unsent_only:
        query = query.where(outbox.c.sent_at.is_(None))
    if limit is not None:
        query = query.limit(limit)
    return _records(OutboxEvent, conn.execute(query))


def mark_events_sent(conn: Connection, event_ids: Sequence[str], now: datetime) -> int:
    return _changed(
        conn.execute(
            update(outbox)
            .where(and_(outbox.c.event_id.in_(list(event_ids)), outbox.c.sent_at.is_(None)))
            .values(sent_at=now)
        )
    )


def outbox_depth(conn: Connection) -> int:
    """Events not yet delivered to central."""
    query = select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
    return int(conn.execute(query).scalar_one())


def count_events_by_type(conn: Connection, types: Sequence[str]) -> dict[str, int]:
    """Events ever queued of each type (the outbox keeps every event): metrics counters."""
    query = (
        select(outbox.c.type, func.count())
        .where(outbox.c.type.in_(list(types)))
        .group_by(outbox.c.type)
    )
    counts = dict.fromkeys(types, 0)
    counts.update({str(event_type): int(n) for event_type, n in conn.execute(query)})
    return counts


def count_audit_since(conn: Connection, action: str, since: datetime) -> int:
    query = (
        select(func.count())
        .select_from(audit_log)
        .where(and_(audit_log.c.action == action, audit_log.c.at >= since))
    )
    return int(conn.execute(query).scalar_one())


def audit_for_command(conn: Connection, action: str, command_id: str) -> AuditEntry | None:
    query = (
        select(audit_log)
        .where(and_(audit_log.c.action == action, audit_log.c.command_id == command_id))
        .order_by(audit_log.c.id.desc())
        .limit(1)
    )
    return _record(AuditEntry, conn.execute(query).first())


def parcel_in_locker(conn: Connection, reservation_id: str) -> Parcel | None:
    query = select(parcels).where(
        parcels.c.reservation_id == reservation_id, parcels.c.status == ParcelStatus.IN_LOCKER
    )
    return _record(Parcel, conn.execute(query).first())


def move_pickup_deadline(
    conn: Connection, parcel: Parcel, deadline: datetime, now: datetime
) -> None:
    """The parcel, its live code and its reservation all end at `deadline`."""
    conn.execute(update(parcels).where(parcels.c.id == parcel.id).values(pickup_deadline=deadline))
    conn.execute(
        update(pickup_codes)
        .where(pickup_codes.c.parcel_id == parcel.id, pickup_codes.c.status == CodeStatus.ACTIVE)
        .values(expires_at=deadline)
    )
    update_reservation(conn, parcel.reservation_id, now, pickup_deadline=deadline)
