"""What reaches the node from outside: reservations, courier credentials and parcel commands.

The sync client calls these with what it pulls from central (one transaction per feed page,
one per command); `locker-node seed-demo` and the tests call the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection

from locker_node.domain.allocation import SIZE_CLASSES
from locker_node.domain.codes import issue_pickup_code
from locker_node.domain.credentials import CredentialFormatError, format_courier_hash
from locker_node.domain.inputs import normalise_carrier, normalise_tracking_number
from locker_node.domain.lifecycle import CodeStatus, EventType, ReservationStatus
from locker_node.store import repository as repo
from locker_node.store.keys import NodeKeys


class InboundError(ValueError):
    """Data from outside the node that it cannot accept."""


@dataclass(frozen=True)
class ReservationIn:
    id: str
    carrier_id: str
    tracking_number: str
    size: str
    reserved_until: datetime


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
            raise InboundError(str(exc)) from exc
        return cls(carrier, stored, valid_from, valid_until)


def apply_reservation(conn: Connection, reservation: ReservationIn, now: datetime) -> None:
    """Insert a reservation, or update one not yet deposited; a later state on the node wins."""
    tracking = normalise_tracking_number(reservation.tracking_number)
    carrier = normalise_carrier(reservation.carrier_id)
    if not reservation.id or len(reservation.id) > 64:
        raise InboundError("reservation id must be 1-64 characters")
    if tracking is None:
        raise InboundError(f"not a tracking number: {reservation.tracking_number!r}")
    if carrier is None:
        raise InboundError(f"not a carrier id: {reservation.carrier_id!r}")
    if reservation.size not in SIZE_CLASSES:
        raise InboundError(f"size must be one of {', '.join(SIZE_CLASSES)}")
    if reservation.reserved_until.tzinfo is None:
        raise InboundError("reserved_until must carry a time zone")
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
        )


def cancel_reservation(conn: Connection, reservation_id: str, now: datetime) -> bool:
    """Cancel a reservation not yet deposited; False if it is unknown, in a deposit, or past."""
    existing = repo.get_reservation(conn, reservation_id)
    if existing is None or existing.status != ReservationStatus.RESERVED:
        return False
    if repo.active_deposit(conn, reservation_id) is not None:
        return False
    repo.update_reservation(conn, reservation_id, now, status=ReservationStatus.CANCELLED)
    return True


def add_courier_credential(
    conn: Connection, credential: CourierCredentialIn, now: datetime
) -> None:
    carrier = normalise_carrier(credential.carrier_id)
    if carrier is None:
        raise InboundError(f"not a carrier id: {credential.carrier_id!r}")
    try:
        format_courier_hash(*_scrypt_fields(credential.code_hash))
    except (CredentialFormatError, ValueError) as exc:
        raise InboundError(f"courier code hashes are $scrypt$ strings: {exc}") from exc
    if credential.valid_until.tzinfo is None or credential.valid_from.tzinfo is None:
        raise InboundError("validity times must carry a time zone")
    if credential.valid_until <= credential.valid_from:
        raise InboundError("valid_until must be after valid_from")
    repo.upsert_courier_credential(
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


def extend_pickup(conn: Connection, reservation_id: str, hours: int, now: datetime) -> bool:
    """Give a parcel still in its compartment more time; False if there is no such parcel."""
    if not 1 <= hours <= 24 * 7:
        raise InboundError("an extension is 1 to 168 hours")
    parcel = repo.parcel_in_locker(conn, reservation_id)
    if parcel is None:
        return False
    repo.move_pickup_deadline(conn, parcel, parcel.pickup_deadline + timedelta(hours=hours), now)
    return True


def invalidate_pickup_code(conn: Connection, reservation_id: str, now: datetime) -> bool:
    """Kill the live pickup code (and QR) of a parcel in its compartment; False if none."""
    parcel = repo.parcel_in_locker(conn, reservation_id)
    if parcel is None:
        return False
    code = repo.get_pickup_code(conn, parcel.id)
    if code is None or code.status != CodeStatus.ACTIVE:
        return False
    repo.kill_pickup_code(conn, parcel.id, CodeStatus.REVOKED, now)
    return True


def reissue_pickup_code(
    conn: Connection,
    reservation_id: str,
    now: datetime,
    *,
    keys: NodeKeys,
    code_digits: int,
    bank_id: str,
    command_id: str | None = None,
) -> str | None:
    """Replace the pickup code and QR of a parcel in its compartment with new ones.

    The old pair stops working in this transaction, and the new pair goes out in a
    `parcel.code_reissued` event, sealed like a deposit's, for central to pass to the carrier.
    Returns the event's id, or None when no parcel of that reservation is in a compartment.
    """
    parcel = repo.parcel_in_locker(conn, reservation_id)
    if parcel is None:
        return None
    if parcel.pickup_deadline <= now:
        raise InboundError("the parcel is past its pickup deadline: extend it first")
    old = repo.get_pickup_code(conn, parcel.id)
    old_hash = old.code_hash if old is not None and old.status == CodeStatus.ACTIVE else None
    issued = issue_pickup_code(
        keys.pickup_codes,
        keys.qr_tokens,
        digits=code_digits,
        # The old code's row is about to be overwritten; its code must not come back by chance.
        in_use=lambda digest: digest == old_hash or repo.code_hash_in_use(conn, digest),
    )
    # One code row per parcel: the new pair takes the old one's place, its hashes gone with it.
    repo.replace_pickup_code(
        conn, repo.active_pickup_code(parcel.id, issued, parcel.pickup_deadline, now)
    )
    return repo.append_event(
        conn,
        EventType.PARCEL_CODE_REISSUED,
        {
            "reservation_id": parcel.reservation_id,
            "parcel_id": parcel.id,
            "carrier_id": parcel.carrier_id,
            "tracking_number": parcel.tracking_number,
            "compartment": parcel.compartment,
            "pickup_deadline": parcel.pickup_deadline.isoformat(),
            "reissued_at": now.isoformat(),
            "command_id": command_id,
            # Sealed under a node key at rest, as a deposit's; sync re-seals them for central.
            "sealed_pickup_code": keys.seal(issued.code),
            "sealed_qr_payload": keys.seal(issued.qr_token),
        },
        bank_id=bank_id,
        now=now,
    )
