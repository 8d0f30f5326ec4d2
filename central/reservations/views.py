"""How a reservation reads to its carrier: `describe`, and the lookups the API answers with."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel
from sqlalchemy.orm import Session

from central.banks import repository as banks_repository
from central.banks.schemas import Location
from central.context import Ctx
from central.errors import NotFound
from central.models import Bank, Reservation, ReservationEvent, SizeClass
from central.reservations import repository as repo
from central.reservations.groups import group_of
from central.reservations.paging import SearchQuery, search_page
from central.reservations.schemas import (
    BankRef,
    HistoryEntry,
    Parcel,
    ReservationList,
    ReservationOut,
)

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__


def _built(model: type[M], /, **fields: Any) -> M:
    """`model.model_construct(**fields)` for a model given exactly its fields, in under half
    the time: what `model_construct` leaves of its work when nothing is defaulted, aliased or
    extra (it looks each field up in several ways first). Given other fields, or a model with
    a post-init hook or extra fields, it is `model_construct` itself."""
    if (
        fields.keys() != model.__pydantic_fields__.keys()
        or model.__pydantic_post_init__ is not None
        or model.model_config.get("extra") == "allow"
    ):
        return model.model_construct(**fields)
    built = model.__new__(model)
    _set(built, "__dict__", fields)
    _set(built, "__pydantic_fields_set__", set(fields))
    _set(built, "__pydantic_extra__", None)
    _set(built, "__pydantic_private__", None)
    return built


class _ReservationView(Protocol):
    """What `describe` reads of a reservation: a stored row or one about to be inserted."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def group_id(self) -> str | None: ...
    @property
    def carrier_id(self) -> str: ...
    @property
    def tracking_number(self) -> str: ...
    @property
    def bank_id(self) -> str: ...
    @property
    def size(self) -> str: ...
    @property
    def compartment_label(self) -> str | None: ...
    @property
    def accessible(self) -> bool: ...
    @property
    def length_mm(self) -> int | None: ...
    @property
    def width_mm(self) -> int | None: ...
    @property
    def height_mm(self) -> int | None: ...
    @property
    def weight_g(self) -> int | None: ...
    @property
    def tracking_status(self) -> str | None: ...
    @property
    def reserved_until(self) -> datetime: ...
    @property
    def pickup_deadline(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


class _EventView(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def from_status(self) -> str | None: ...
    @property
    def to_status(self) -> str | None: ...
    @property
    def actor(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def at(self) -> datetime: ...
    @property
    def data(self) -> dict[str, Any] | None: ...


def describe(
    session: Session,
    reservation: Reservation | _ReservationView,
    *,
    bank: Bank | None = None,
    history: Sequence[ReservationEvent | _EventView] | None = None,
    group_mates: Sequence[str] | None = None,
) -> ReservationOut:
    """The reservation as the API and the webhooks show it. Its group (when it has one) costs
    one indexed query, unless `group_mates` gives the group's other reservations already."""
    bank = bank or banks_repository.get_referenced_bank(session, reservation.bank_id)
    if history is not None:
        events = history
    elif isinstance(reservation, Reservation):
        events = reservation.history
    else:
        raise TypeError("a reservation not yet stored is described with its history given")
    has_parcel = reservation.length_mm is not None
    # Built from stored rows, whose types the columns fix: not validated again, a fair share of
    # a reservation's CPU on the busiest routes (the API tests would catch a mistyped field:
    # pydantic warns when it serialises one, and warnings fail them).
    return _built(
        ReservationOut,
        id=reservation.id,
        kind=reservation.kind,
        status=reservation.status,
        carrier=reservation.carrier_id,
        tracking_number=reservation.tracking_number,
        bank=_built(
            BankRef,
            id=bank.id,
            name=bank.name,
            address=bank.address,
            location=_built(Location, lat=bank.lat, lon=bank.lon),
        ),
        size=SizeClass(reservation.size),
        compartment=reservation.compartment_label,
        parcel=_built(
            Parcel,
            length_mm=reservation.length_mm or 0,
            width_mm=reservation.width_mm or 0,
            height_mm=reservation.height_mm or 0,
            weight_g=reservation.weight_g,
        )
        if has_parcel
        else None,
        accessible=reservation.accessible,
        tracking_status=reservation.tracking_status,
        reserved_until=reservation.reserved_until,
        pickup_deadline=reservation.pickup_deadline,
        group=group_of(session, reservation.id, reservation.group_id, group_mates),
        created_at=reservation.created_at,
        updated_at=reservation.updated_at,
        history=[
            _built(
                HistoryEntry,
                type=e.type,
                from_status=e.from_status,
                to_status=e.to_status,
                actor=e.actor,
                reason=e.reason,
                at=e.at,
                data=e.data,
            )
            for e in events
        ],
    )


def require_own(session: Session, carrier_id: str, reservation_id: str) -> Reservation:
    """The caller's reservation; another carrier's is indistinguishable from a missing one."""
    reservation = repo.get(session, reservation_id)
    if reservation is None or reservation.carrier_id != carrier_id:
        raise NotFound(f"reservation {reservation_id}")
    return reservation


def get(ctx: Ctx, carrier_id: str, reservation_id: str) -> ReservationOut:
    return describe(ctx.session, require_own(ctx.session, carrier_id, reservation_id))


def search(ctx: Ctx, carrier_id: str, query: SearchQuery) -> ReservationList:
    """The carrier's reservations, drop-offs among them, newest first, a page at a time."""
    rows, next_cursor = search_page(ctx.session, carrier_id, query)
    return ReservationList(items=[describe(ctx.session, r) for r in rows], next_cursor=next_cursor)
