"""Changes central pushes through its feed: reservations, their cancellations, courier codes.

`apply_page` applies one feed page in one transaction; `locker-node seed-demo` and the tests
call the single steps with a transaction of their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from locker_node.domain.allocation import SIZE_CLASSES
from locker_node.domain.credentials import CredentialFormatError, format_courier_hash
from locker_node.domain.inputs import normalise_carrier, normalise_tracking_number
from locker_node.domain.lifecycle import CodeStatus, ReservationStatus
from locker_node.flows import bank_settings, dropoff
from locker_node.flows.errors import Refused
from locker_node.flows.ports import Ports
from locker_node.store import couriers
from locker_node.store import repository as repo
from locker_wire.schemas import FeedResponse

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReservationIn:
    id: str
    carrier_id: str
    tracking_number: str
    size: str
    reserved_until: datetime
    kind: str = "delivery"
    accessible: bool = False
    group_id: str | None = None


@dataclass(frozen=True)
class CourierCredentialIn:
    """A carrier's courier access code for this bank, valid for one window, as a hash."""

    carrier_id: str
    code_hash: str  # `$scrypt$n=..,r=..,p=..$<salt hex>$<hash hex>`
    valid_from: datetime
    valid_until: datetime

    @classmethod
    def from_wire(
        cls,
        *,
        carrier: str,
        code_hash: str,
        salt: str,
        n: int,
        r: int,
        p: int,
        valid_from: datetime,
        valid_until: datetime,
    ) -> CourierCredentialIn:
        """From the fields of the wire's `CourierCodeHash`, as the sync client receives them."""
        try:
            stored = format_courier_hash(code_hash, salt, n, r, p)
        except (CredentialFormatError, ValueError) as exc:
            raise Refused(str(exc)) from exc
        return cls(carrier, stored, valid_from, valid_until)


def apply_reservation(conn: Connection, reservation: ReservationIn, now: datetime) -> None:
    """Insert a reservation, or update one not yet deposited; a later state on the node wins."""
    tracking = normalise_tracking_number(reservation.tracking_number)
    carrier = normalise_carrier(reservation.carrier_id)
    if not reservation.id or len(reservation.id) > 64:
        raise Refused("reservation id must be 1-64 characters")
    if tracking is None:
        raise Refused(f"not a tracking number: {reservation.tracking_number!r}")
    if carrier is None:
        raise Refused(f"not a carrier id: {reservation.carrier_id!r}")
    if reservation.size not in SIZE_CLASSES:
        raise Refused(f"size must be one of {', '.join(SIZE_CLASSES)}")
    if reservation.kind not in ("delivery", "dropoff"):
        raise Refused(f"unknown reservation kind {reservation.kind!r}")
    if reservation.group_id is not None and not 1 <= len(reservation.group_id) <= 32:
        raise Refused("a group id is 1-32 characters")
    if reservation.reserved_until.tzinfo is None:
        raise Refused("reserved_until must carry a time zone")
    existing = repo.get_reservation(conn, reservation.id)
    if existing is None:
        repo.insert_reservation(
            conn,
            repo.Reservation(
                id=reservation.id,
                carrier_id=carrier,
                tracking_number=tracking,
                size=reservation.size,
                reserved_until=reservation.reserved_until,
                status=ReservationStatus.RESERVED,
                walk_up=False,
                pickup_deadline=None,
                created_at=now,
                updated_at=now,
                kind=reservation.kind,
                accessible=reservation.accessible,
                group_id=reservation.group_id,
            ),
        )
    elif (
        existing.status == ReservationStatus.RESERVED
        and repo.active_deposit(conn, existing.id) is None
    ):
        repo.update_reservation(
            conn,
            existing.id,
            now,
            carrier_id=carrier,
            tracking_number=tracking,
            size=reservation.size,
            reserved_until=reservation.reserved_until,
            accessible=reservation.accessible,
            group_id=reservation.group_id,
        )


def cancel_reservation(conn: Connection, reservation_id: str, now: datetime) -> bool:
    """Cancel a reservation not yet deposited; False if it is unknown, in a deposit, or past."""
    existing = repo.get_reservation(conn, reservation_id)
    if existing is None or existing.status != ReservationStatus.RESERVED:
        return False
    if repo.active_deposit(conn, reservation_id) is not None:
        return False
    repo.update_reservation(conn, reservation_id, now, status=ReservationStatus.CANCELLED)
    if existing.kind == dropoff.DROPOFF:
        dropoff.end_code(conn, reservation_id, CodeStatus.REVOKED, now)
    return True


def follow_pickup_deadline(
    conn: Connection, reservation_id: str, deadline: datetime, now: datetime
) -> bool:
    """Move a parcel's pickup deadline out to `deadline`, central's, never in: the same
    deadline heard twice (a command, then the feed) moves it once. False if no such parcel."""
    if deadline.tzinfo is None:
        raise Refused("a deadline must carry a time zone")
    parcel = repo.parcel_in_locker(conn, reservation_id)
    if parcel is None:
        return False
    if deadline > parcel.pickup_deadline:
        repo.move_pickup_deadline(conn, parcel, deadline, now)
    return True


def add_courier_credential(
    conn: Connection, credential: CourierCredentialIn, now: datetime
) -> None:
    carrier = normalise_carrier(credential.carrier_id)
    if carrier is None:
        raise Refused(f"not a carrier id: {credential.carrier_id!r}")
    try:
        format_courier_hash(*_scrypt_fields(credential.code_hash))
    except (CredentialFormatError, ValueError) as exc:
        raise Refused(f"courier code hashes are $scrypt$ strings: {exc}") from exc
    if credential.valid_until.tzinfo is None or credential.valid_from.tzinfo is None:
        raise Refused("validity times must carry a time zone")
    if credential.valid_until <= credential.valid_from:
        raise Refused("valid_until must be after valid_from")
    couriers.upsert_courier_credential(
        conn,
        carrier_id=carrier,
        code_hash=credential.code_hash,
        valid_from=credential.valid_from,
        valid_until=credential.valid_until,
        now=now,
    )


def _scrypt_fields(stored: str) -> tuple[str, str, int, int, int]:
    """Split a stored hash back into (hash, salt, n, r, p) for checking."""
    parts = stored.split("$")
    if len(parts) != 5 or parts[1] != "scrypt":
        raise CredentialFormatError("not a $scrypt$ string")
    params = dict(item.split("=", 1) for item in parts[2].split(",") if "=" in item)
    try:
        return parts[4], parts[3], int(params["n"]), int(params["r"]), int(params["p"])
    except (KeyError, ValueError) as exc:
        raise CredentialFormatError("scrypt parameters missing") from exc


def apply_page(ports: Ports, page: FeedResponse) -> None:
    """One feed page in one transaction; what the node cannot accept is logged and skipped."""
    now = ports.now()
    settings = None
    with ports.unit_of_work() as conn:
        if page.bank is not None:
            settings = bank_settings.apply_bank(conn, page.bank, now)
        for reservation in page.reservations:
            try:
                if reservation.status == "reserved":
                    apply_reservation(
                        conn,
                        ReservationIn(
                            id=reservation.id,
                            carrier_id=reservation.carrier,
                            tracking_number=reservation.tracking_number,
                            size=reservation.size,
                            reserved_until=reservation.reserved_until,
                            kind=reservation.kind,
                            accessible=reservation.accessible,
                            group_id=reservation.group_id,
                        ),
                        now,
                    )
                    if reservation.kind == "dropoff" and reservation.dropoff_code is not None:
                        hashes = dropoff.DropoffCodeIn(**reservation.dropoff_code.model_dump())
                        dropoff.store_code(conn, reservation.id, hashes, now)
                elif reservation.status == "cancelled":
                    cancel_reservation(conn, reservation.id, now)
                elif reservation.status == "expired" and reservation.kind == "dropoff":
                    # Nobody brought it in time: its code dies (a delivery's expiry is the
                    # node's own, from `reserved_until`).
                    dropoff.expire_reservation(conn, reservation.id, now)
                elif reservation.status == "deposited" and reservation.pickup_deadline:
                    # The deposit happened here; what central may have changed since is the
                    # deadline (a carrier's or a recipient's extension), only ever later.
                    follow_pickup_deadline(conn, reservation.id, reservation.pickup_deadline, now)
                # Later states (picked up, returned, ...) were reached on this node.
            except Refused as exc:
                logger.error("reservation %s from central refused: %s", reservation.id, exc)
        for code in page.courier_codes:
            try:
                credential = CourierCredentialIn.from_wire(
                    carrier=code.carrier,
                    code_hash=code.code_hash,
                    salt=code.salt,
                    n=code.n,
                    r=code.r,
                    p=code.p,
                    valid_from=code.valid_from,
                    valid_until=code.valid_until,
                )
                add_courier_credential(conn, credential, now)
            except Refused as exc:
                logger.error("courier code for %s refused: %s", code.carrier, exc)
    if settings is not None:
        # Once they are in the store: a policy in force is always one the node keeps.
        bank_settings.use(ports, settings)
