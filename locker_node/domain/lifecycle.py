"""States of compartments, reservations, deposits, parcels and codes on a node, and event types."""

from __future__ import annotations

import enum


class Occupancy(enum.StrEnum):
    """What a compartment holds. Whether it works is separate (`in_service`): a compartment
    whose door jammed on a pickup is both occupied and out of service."""

    FREE = "free"
    BOUND = "bound"  # reserved for a deposit in progress
    OCCUPIED = "occupied"


class ReservationStatus(enum.StrEnum):
    RESERVED = "reserved"
    DEPOSITED = "deposited"
    PICKED_UP = "picked_up"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    RETURNED = "returned"
    COLLECTED = "collected"  # a drop-off the carrier's courier took away


class DepositStatus(enum.StrEnum):
    OPENING = "opening"  # compartment bound, door not yet seen open
    OPEN = "open"  # door seen open: waiting for the courier to confirm
    # The courier cancelled after the door was open: the parcel may be inside until they say
    # they took it out (cancel again, door closed).
    REMOVING = "removing"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"  # never confirmed: the compartment waits for an inspection

    @classmethod
    def in_progress(cls) -> tuple[DepositStatus, ...]:
        return (cls.OPENING, cls.OPEN, cls.REMOVING)

    @property
    def active(self) -> bool:
        return self in DepositStatus.in_progress()

    @property
    def door_was_opened(self) -> bool:
        """The parcel may be in the compartment: only the courier can say it is not."""
        return self in (DepositStatus.OPEN, DepositStatus.REMOVING)


class ParcelStatus(enum.StrEnum):
    IN_LOCKER = "in_locker"
    PICKED_UP = "picked_up"
    EXPIRED = "expired"  # pickup deadline passed: waits for its carrier to take it back
    RETURNED = "returned"
    # A sender's drop-off: in its compartment until the carrier's courier collects it. It never
    # expires on the node (its `pickup_deadline` is only the reservation's `reserved_until`).
    AWAITING_COLLECTION = "awaiting_collection"
    COLLECTED = "collected"


class CodeStatus(enum.StrEnum):
    ACTIVE = "active"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"


class Purpose(enum.StrEnum):
    """Why a door is opened."""

    DEPOSIT = "deposit"
    PICKUP = "pickup"
    RETURN = "return"
    DROPOFF = "dropoff"  # a sender puts a parcel in (a `deposits` row without a courier session)
    COLLECT = "collect"  # the carrier's courier takes a drop-off away


class OperationResult(enum.StrEnum):
    OPENED = "opened"
    NOT_OPENED = "not_opened"
    # The node died with the unlock in flight and the door is shut now: the lock may have fired
    # and someone may have used the door meanwhile. The compartment is inspected before use.
    UNKNOWN = "unknown"


class EventType(enum.StrEnum):
    """Events for central, written to the outbox with the state change they record."""

    PARCEL_DEPOSITED = "parcel.deposited"
    PARCEL_CODE_REISSUED = "parcel.code_reissued"  # a new pickup code for a parcel in its locker
    PARCEL_PICKED_UP = "parcel.picked_up"
    PARCEL_EXPIRED = "parcel.expired"
    PARCEL_RETURNED = "parcel.returned"
    COMPARTMENT_OUT_OF_SERVICE = "compartment.out_of_service"
    COMPARTMENT_IN_SERVICE = "compartment.in_service"
    DOOR_FORCED_OPEN = "door.forced_open"  # opened with no command behind it
    DOOR_LEFT_OPEN = "door.left_open"
    BOARD_UNREACHABLE = "board.unreachable"
