"""Drop-offs in the node's store: their codes, the sender's door openings, parcels to collect."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, insert, select, update

from locker_node.domain.lifecycle import CodeStatus, OperationResult, ParcelStatus, Purpose
from locker_node.store.repository import Parcel, forget_finished_hashes
from locker_node.store.rows import changed, every, one
from locker_node.store.schema import door_operations, dropoff_codes, parcels

# The scrypt digest at the end of a stored `$scrypt$...$<hash hex>` string: 32 bytes in hex.
_DIGEST_CHARS = 64


@dataclass(frozen=True)
class DropoffCode:
    reservation_id: str
    code_hash: str | None
    qr_hash: str | None
    status: str
    created_at: datetime
    finished_at: datetime | None


def get_code(conn: Connection, reservation_id: str) -> DropoffCode | None:
    query = select(dropoff_codes).where(dropoff_codes.c.reservation_id == reservation_id)
    return one(DropoffCode, conn.execute(query).first())


def put_code(
    conn: Connection, reservation_id: str, *, code_hash: str, qr_hash: str, now: datetime
) -> bool:
    """Store a drop-off's live code, or give a live one central's latest hashes; a code that
    already finished here (used, revoked, expired) stays finished. True if stored."""
    existing = get_code(conn, reservation_id)
    if existing is None:
        conn.execute(
            insert(dropoff_codes).values(
                reservation_id=reservation_id,
                code_hash=code_hash,
                qr_hash=qr_hash,
                status=CodeStatus.ACTIVE,
                created_at=now,
                finished_at=None,
            )
        )
        return True
    if existing.status != CodeStatus.ACTIVE:
        return False
    if (existing.code_hash, existing.qr_hash) != (code_hash, qr_hash):
        conn.execute(
            update(dropoff_codes)
            .where(dropoff_codes.c.reservation_id == reservation_id)
            .values(code_hash=code_hash, qr_hash=qr_hash)
        )
    return True


def qr_hash_taken(conn: Connection, qr_hash: str, *, by_other_than: str) -> bool:
    query = select(dropoff_codes.c.reservation_id).where(
        dropoff_codes.c.qr_hash == qr_hash, dropoff_codes.c.reservation_id != by_other_than
    )
    return conn.execute(query).first() is not None


def kill_code(conn: Connection, reservation_id: str, status: CodeStatus, now: datetime) -> bool:
    """End a live code. A dead code forgets its hashes at once; a used one keeps them for a
    day (`forget_used_codes`), so that typing it again answers "already dropped off"."""
    keep = status == CodeStatus.USED
    return (
        changed(
            conn.execute(
                update(dropoff_codes)
                .where(
                    dropoff_codes.c.reservation_id == reservation_id,
                    dropoff_codes.c.status == CodeStatus.ACTIVE,
                )
                .values(
                    status=status,
                    code_hash=dropoff_codes.c.code_hash if keep else None,
                    qr_hash=dropoff_codes.c.qr_hash if keep else None,
                    finished_at=now,
                )
            )
        )
        == 1
    )


def forget_used_codes(conn: Connection, finished_before: datetime) -> int:
    """Used drop-off codes finished before then forget their hashes, as pickup codes do."""
    return forget_finished_hashes(conn, dropoff_codes, finished_before)


def hash_prefixes(conn: Connection) -> list[str]:
    """The distinct `$scrypt$n=..,r=..,p=..$<salt>$` prefixes of the codes a typed code may
    match (live ones, and used ones still remembered): one scrypt each, never one per row."""
    prefix = func.substr(
        dropoff_codes.c.code_hash, 1, func.length(dropoff_codes.c.code_hash) - _DIGEST_CHARS
    )
    query = (
        select(prefix.label("prefix"))
        .where(
            dropoff_codes.c.code_hash.is_not(None),
            dropoff_codes.c.status.in_((CodeStatus.ACTIVE, CodeStatus.USED)),
        )
        .distinct()
        .order_by("prefix")
    )
    return [str(row.prefix) for row in conn.execute(query)]


def find_code(
    conn: Connection,
    status: CodeStatus,
    *,
    code_hashes: Sequence[str] = (),
    qr_hash: str | None = None,
) -> DropoffCode | None:
    """The code in `status` with one of these hashes (the oldest, should two ever share one)."""
    if qr_hash is not None:
        condition = dropoff_codes.c.qr_hash == qr_hash
    elif code_hashes:
        condition = dropoff_codes.c.code_hash.in_(list(code_hashes))
    else:
        return None
    query = (
        select(dropoff_codes)
        .where(condition, dropoff_codes.c.status == status)
        .order_by(dropoff_codes.c.created_at, dropoff_codes.c.reservation_id)
    )
    return one(DropoffCode, conn.execute(query).first())


def opened_via(conn: Connection, deposit_id: str) -> str | None:
    """How the sender opened a drop-off's door (`code` or `qr`): its last opening that did."""
    query = (
        select(door_operations.c.via)
        .where(
            door_operations.c.deposit_id == deposit_id,
            door_operations.c.purpose == Purpose.DROPOFF,
            door_operations.c.result == OperationResult.OPENED,
            door_operations.c.via.is_not(None),
        )
        .order_by(door_operations.c.started_at.desc())
    )
    row = conn.execute(query).first()
    return None if row is None else str(row.via)


def awaiting_collection(conn: Connection, carrier_id: str) -> list[Parcel]:
    return every(
        Parcel,
        conn.execute(
            select(parcels)
            .where(
                parcels.c.carrier_id == carrier_id,
                parcels.c.status == ParcelStatus.AWAITING_COLLECTION,
            )
            .order_by(parcels.c.compartment)
        ),
    )
