"""Drop-offs for node tests: codes hashed as central hashes them, fed in as central's feed does."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from locker_node.flows.dropoff import DropoffCodeIn
from locker_node.flows.facade import LockerFlows
from locker_wire.schemas import DropoffCodeHash, FeedReservation, FeedResponse

# One salt per bank, as central derives it; a second one stands for a bank whose salt changed.
BANK_SALT = bytes(range(16))
OTHER_SALT = bytes(range(16, 32))
# A tiny scrypt cost keeps the suite fast; the node follows each hash's own parameters.
CHEAP = {"n": 16, "r": 1, "p": 1}

CODE = "4815162342"
QR = "dropoff-qr-token-0000000001"


def code_hashes(
    code: str, qr: str, *, salt: bytes = BANK_SALT, cost: dict[str, int] | None = None
) -> DropoffCodeHash:
    """A drop-off's code and QR as central sends them in the feed."""
    params = cost or CHEAP
    digest = hashlib.scrypt(code.encode(), salt=salt, dklen=32, **params)
    return DropoffCodeHash(
        code_hash=digest.hex(),
        salt=salt.hex(),
        qr_hash=hashlib.sha256(qr.encode()).hexdigest(),
        **params,
    )


def code_in(code: str, qr: str, **options: Any) -> DropoffCodeIn:
    return DropoffCodeIn(**code_hashes(code, qr, **options).model_dump())


def feed_row(
    reservation_id: str,
    tracking: str,
    *,
    now: datetime,
    status: str = "reserved",
    size: str = "S",
    carrier: str = "ups",
    code: str | None = CODE,
    qr: str = QR,
    hold: timedelta = timedelta(hours=24),
    salt: bytes = BANK_SALT,
) -> FeedReservation:
    return FeedReservation(
        id=reservation_id,
        carrier=carrier,
        tracking_number=tracking,
        size=size,
        status=status,
        compartment=None,
        reserved_until=now + hold,
        pickup_deadline=None,
        updated_at=now,
        kind="dropoff",
        dropoff_code=None
        if code is None or status != "reserved"
        else code_hashes(code, qr, salt=salt),
    )


def feed(*rows: FeedReservation) -> FeedResponse:
    return FeedResponse(
        reservations=list(rows), commands=[], courier_codes=[], cursor="c1", more=False
    )


def add_dropoff(
    flows: LockerFlows,
    tracking: str,
    *,
    code: str = CODE,
    qr: str = QR,
    size: str = "S",
    carrier: str = "ups",
    hold: timedelta = timedelta(hours=24),
    salt: bytes = BANK_SALT,
) -> str:
    """A drop-off reservation with its code, through the node's feed step; its id."""
    reservation_id = f"drop-{tracking.lower()}"
    row = feed_row(
        reservation_id,
        tracking,
        now=flows.ports.now(),
        size=size,
        carrier=carrier,
        code=code,
        qr=qr,
        hold=hold,
        salt=salt,
    )
    flows.apply_feed_page(feed(row))
    return reservation_id
