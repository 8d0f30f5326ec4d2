"""Parcel groups in the node's store: pickup codes that open several parcels, and compartments
that hold more than one parcel of a group.

A parcel that joins a group-mate's live code gets a `pickup_codes` row without hashes whose
`joins` names the holder, the parcel whose row keeps the hashes. The holder's row lives as long
as the longest-held parcel under it (its `expires_at` follows theirs), and when the holder
leaves (collected, expired, its code revoked or reissued) while a parcel under its code is still
in the locker, the code passes to that parcel (`hand_on`). So a live row with hashes always
belongs to a parcel in its compartment, as it does without groups, and every joined row names a
live holder.

A compartment may hold several parcels of one group (a courier put one with its group-mate):
it is occupied while any parcel, or any deposit in progress, is bound to it (`vacate`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from locker_node.domain.codes import IssuedPickupCode
from locker_node.domain.lifecycle import CodeStatus, DepositStatus, Occupancy, ParcelStatus
from locker_node.store import repository as repo
from locker_node.store.rows import every
from locker_node.store.schema import compartments, deposits, parcels, pickup_codes, reservations

# Parcels that are physically in their compartment: waiting, or expired and not yet taken back.
IN_COMPARTMENT = (ParcelStatus.IN_LOCKER, ParcelStatus.EXPIRED)
_CODE_FIELDS = tuple(field.name for field in fields(repo.PickupCode))


def holder_of(code: repo.PickupCode) -> str:
    """The parcel whose row holds the hashes of the code `code` opens with."""
    return code.joins or code.parcel_id


def members(conn: Connection, holder_id: str) -> list[repo.Parcel]:
    """The parcels in the locker that the code held by `holder_id` opens: the holder and every
    parcel that joined it, by compartment, then by deposit."""
    query = (
        select(parcels)
        .join(pickup_codes, pickup_codes.c.parcel_id == parcels.c.id)
        .where(
            or_(pickup_codes.c.parcel_id == holder_id, pickup_codes.c.joins == holder_id),
            pickup_codes.c.status == CodeStatus.ACTIVE,
            parcels.c.status == ParcelStatus.IN_LOCKER,
        )
        .order_by(parcels.c.compartment, parcels.c.deposited_at, parcels.c.id)
    )
    return every(repo.Parcel, conn.execute(query))


def door_mates(conn: Connection, parcel: repo.Parcel) -> list[repo.Parcel]:
    """The other parcels behind `parcel`'s door that open with the same code."""
    code = repo.get_pickup_code(conn, parcel.id)
    if code is None or code.status != CodeStatus.ACTIVE:
        return []
    return [
        mate
        for mate in members(conn, holder_of(code))
        if mate.compartment == parcel.compartment and mate.id != parcel.id
    ]


@dataclass(frozen=True)
class GroupCode:
    """A group's live code a new parcel can join: the holder's row and its reservation."""

    code: repo.PickupCode
    reservation_id: str


def code_to_join(
    conn: Connection, group_id: str, compartment: str, now: datetime
) -> GroupCode | None:
    """The live code a parcel of `group_id` deposited into `compartment` joins: that of the
    group's parcel already in the compartment, when there is one (one door, one code), else the
    group's code that lives longest; None when no parcel of the group has a live code here."""
    rows = conn.execute(
        select(pickup_codes, parcels.c.compartment, parcels.c.reservation_id.label("owner"))
        .join(parcels, pickup_codes.c.parcel_id == parcels.c.id)
        .join(reservations, parcels.c.reservation_id == reservations.c.id)
        .where(
            reservations.c.group_id == group_id,
            parcels.c.status == ParcelStatus.IN_LOCKER,
            pickup_codes.c.status == CodeStatus.ACTIVE,
        )
    ).all()
    holders = {
        row.parcel_id: row
        for row in rows
        if row.joins is None and row.code_hash is not None and row.expires_at > now
    }
    if not holders:
        return None
    here = [
        holders.get(row.joins or row.parcel_id) for row in rows if row.compartment == compartment
    ]
    chosen = next((row for row in here if row is not None), None) or max(
        holders.values(), key=lambda row: (row.expires_at, row.parcel_id)
    )
    code = repo.PickupCode(**{name: chosen._mapping[name] for name in _CODE_FIELDS})
    return GroupCode(code=code, reservation_id=chosen.owner)


def join_code(
    conn: Connection, parcel: repo.Parcel, holder: repo.PickupCode, now: datetime
) -> None:
    """`parcel` opens with `holder`'s code from now on, which lives at least as long as it."""
    conn.execute(
        insert(pickup_codes).values(
            parcel_id=parcel.id,
            code_hash=None,
            qr_hash=None,
            status=CodeStatus.ACTIVE,
            expires_at=parcel.pickup_deadline,
            created_at=now,
            finished_at=None,
            joins=holder.parcel_id,
        )
    )
    conn.execute(
        update(pickup_codes)
        .where(
            pickup_codes.c.parcel_id == holder.parcel_id,
            pickup_codes.c.expires_at < parcel.pickup_deadline,
        )
        .values(expires_at=parcel.pickup_deadline)
    )


def store_code(
    conn: Connection,
    reservation: repo.Reservation,
    parcel: repo.Parcel,
    issued: IssuedPickupCode,
    now: datetime,
) -> str | None:
    """A parcel just deposited gets its pickup code: the live code of a group-mate in the
    locker, which it joins (`code_to_join`), when its reservation has a group and there is one;
    else `issued`. Returns the reservation id of the group-mate whose code it joined, or None."""
    if reservation.group_id is not None:
        shared = code_to_join(conn, reservation.group_id, parcel.compartment, now)
        if shared is not None and shared.reservation_id != reservation.id:
            join_code(conn, parcel, shared.code, now)
            return shared.reservation_id
    repo.insert_pickup_code(
        conn, repo.active_pickup_code(parcel.id, issued, parcel.pickup_deadline, now)
    )
    return None


def hand_on(conn: Connection, parcel_id: str) -> str | None:
    """Before the code `parcel_id` holds stops opening it: pass the code's hashes to the parcel
    under it held longest, which the others now join; returns that parcel's id, or None when
    the code opens no other parcel (or `parcel_id` holds none)."""
    code = repo.get_pickup_code(conn, parcel_id)
    if (
        code is None
        or code.status != CodeStatus.ACTIVE
        or code.joins is not None
        or code.code_hash is None
    ):
        return None
    others = [parcel for parcel in members(conn, parcel_id) if parcel.id != parcel_id]
    if not others:
        return None
    heir = max(others, key=lambda parcel: (parcel.pickup_deadline, parcel.id))
    # The hashes are unique: off the holder's row before they go onto the heir's.
    conn.execute(
        update(pickup_codes)
        .where(pickup_codes.c.parcel_id == parcel_id)
        .values(code_hash=None, qr_hash=None)
    )
    conn.execute(
        update(pickup_codes)
        .where(pickup_codes.c.parcel_id == heir.id)
        .values(
            code_hash=code.code_hash,
            qr_hash=code.qr_hash,
            joins=None,
            expires_at=max(parcel.pickup_deadline for parcel in others),
        )
    )
    conn.execute(
        update(pickup_codes)
        .where(
            pickup_codes.c.joins == parcel_id,
            pickup_codes.c.status == CodeStatus.ACTIVE,
            pickup_codes.c.parcel_id != heir.id,
        )
        .values(joins=heir.id)
    )
    return heir.id


def end_code(conn: Connection, parcel_id: str, status: CodeStatus, now: datetime) -> None:
    """The parcel's code stops opening it (`status`: used, expired, revoked), as
    `repository.kill_pickup_code` has it, and the parcels that share the code keep it: a code
    the parcel holds passes on to them first (`hand_on`); one it joined lives on for the rest,
    no longer than the longest-held of them."""
    code = repo.get_pickup_code(conn, parcel_id)
    if code is not None and code.status == CodeStatus.ACTIVE and code.joins is not None:
        repo.kill_pickup_code(conn, parcel_id, status, now)
        _follow_members(conn, code.joins)
        return
    hand_on(conn, parcel_id)
    repo.kill_pickup_code(conn, parcel_id, status, now)


def leave_code(conn: Connection, parcel_id: str) -> None:
    """The parcel is about to get a code of its own (a reissue): a code it holds passes on to
    the parcels under it (`hand_on`); one it joined no longer counts it."""
    code = repo.get_pickup_code(conn, parcel_id)
    if code is None or code.status != CodeStatus.ACTIVE:
        return
    if code.joins is None:
        hand_on(conn, parcel_id)
        return
    conn.execute(
        update(pickup_codes).where(pickup_codes.c.parcel_id == parcel_id).values(joins=None)
    )
    _follow_members(conn, code.joins)


def _follow_members(conn: Connection, holder_id: str) -> None:
    """The holder's code expires with the longest-held parcel it still opens."""
    deadlines = [parcel.pickup_deadline for parcel in members(conn, holder_id)]
    if deadlines:
        conn.execute(
            update(pickup_codes)
            .where(
                pickup_codes.c.parcel_id == holder_id, pickup_codes.c.status == CodeStatus.ACTIVE
            )
            .values(expires_at=max(deadlines))
        )


# Compartments holding several parcels of a group


def holds_anything(conn: Connection, label: str, *, ignoring_deposit: str | None = None) -> bool:
    """Whether a parcel is in the compartment (waiting or expired), or a deposit in progress
    other than `ignoring_deposit` is bound to it."""
    parcel = conn.execute(
        select(func.count()).where(
            parcels.c.compartment == label, parcels.c.status.in_(IN_COMPARTMENT)
        )
    ).scalar_one()
    bound = select(func.count()).where(
        deposits.c.compartment == label, deposits.c.status.in_(DepositStatus.in_progress())
    )
    if ignoring_deposit is not None:
        bound = bound.where(deposits.c.id != ignoring_deposit)
    return bool(parcel) or bool(conn.execute(bound).scalar_one())


def vacate(
    conn: Connection,
    label: str,
    now: datetime,
    *,
    expect: tuple[Occupancy, ...],
    ignoring_deposit: str | None = None,
) -> bool:
    """Free the compartment when nothing is left in it (`holds_anything`): a group-mate's
    compartment stays occupied while one of them is still inside. `expect`: the states the
    caller may find it in (anything else is a bug). True if it is free now."""
    compartment = repo.get_compartment(conn, label)
    if compartment is None or compartment.occupancy not in expect:
        raise RuntimeError(f"compartment {label} is not {' or '.join(expect)}")
    if holds_anything(conn, label, ignoring_deposit=ignoring_deposit):
        return False
    repo.set_occupancy(conn, label, Occupancy.FREE, now, expect=Occupancy(compartment.occupancy))
    return True


def occupy(conn: Connection, label: str, now: datetime) -> None:
    """A deposit is confirmed: its bound compartment is occupied (one shared with a group-mate
    is already)."""
    compartment = repo.get_compartment(conn, label)
    if compartment is not None and compartment.occupancy == Occupancy.OCCUPIED:
        return
    repo.set_occupancy(conn, label, Occupancy.OCCUPIED, now, expect=Occupancy.BOUND)


@dataclass(frozen=True)
class SharedDoor:
    """A compartment holding a parcel of the group, with a live code, that the courier may put
    another parcel of the group into."""

    label: str
    size: str
    in_service: bool
    accessible: bool


def group_doors(
    conn: Connection, group_id: str, *, ignoring_deposit: str | None = None
) -> list[SharedDoor]:
    """Compartments holding a parcel of the group whose code is live, by label, with no
    deposit in progress bound to them (but `ignoring_deposit`)."""
    busy = select(deposits.c.compartment).where(deposits.c.status.in_(DepositStatus.in_progress()))
    if ignoring_deposit is not None:
        busy = busy.where(deposits.c.id != ignoring_deposit)
    rows = conn.execute(
        select(
            compartments.c.label,
            compartments.c.size,
            compartments.c.in_service,
            compartments.c.accessible,
        )
        .distinct()
        .join(parcels, parcels.c.compartment == compartments.c.label)
        .join(reservations, parcels.c.reservation_id == reservations.c.id)
        .join(
            pickup_codes,
            and_(
                pickup_codes.c.parcel_id == parcels.c.id,
                pickup_codes.c.status == CodeStatus.ACTIVE,
            ),
        )
        .where(
            reservations.c.group_id == group_id,
            parcels.c.status == ParcelStatus.IN_LOCKER,
            compartments.c.occupancy == Occupancy.OCCUPIED,
            compartments.c.configured.is_(True),
            compartments.c.label.not_in(busy),
        )
        .order_by(compartments.c.label)
    )
    return [SharedDoor(row.label, row.size, row.in_service, row.accessible) for row in rows]
