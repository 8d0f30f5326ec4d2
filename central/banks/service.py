"""Banks: creation with their compartments, capacity views and courier access codes."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from time import monotonic
from typing import Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from central.allocation.choice import BankOption, ClassOption
from central.allocation.sizing import DEFAULT_CLASS_DIMENSIONS, Dimensions
from central.banks import geo, repository
from central.banks.schemas import (
    BankOut,
    BankPolicy,
    ClassCapacity,
    CourierCode,
    InnerDimensions,
    Location,
)
from central.errors import NotFound
from central.keys import ServiceKeys
from central.models import Bank, BankCapacity, Compartment, SizeClass

BANK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SPEC_ITEM = re.compile(r"^\s*(S|M|L|XL)\s*:\s*(\d{1,4})\s*$")
_LABEL = re.compile(r"^[A-Za-z]{1,3}[0-9]{2,3}$")
COMPARTMENTS_PER_COLUMN = 12


class BankError(ValueError):
    """A bank definition that cannot be accepted."""


def parse_compartment_spec(spec: str) -> dict[SizeClass, int]:
    """`"S:20,M:15,L:8,XL:2"` -> counts per class."""
    counts: dict[SizeClass, int] = {}
    for item in spec.split(","):
        match = _SPEC_ITEM.match(item)
        if not match:
            raise BankError(f"bad compartment spec {item!r}; expected like S:20,M:15,L:8,XL:2")
        size = SizeClass(match.group(1))
        if size in counts:
            raise BankError(f"size {size} given twice")
        counts[size] = int(match.group(2))
    if sum(counts.values()) == 0:
        raise BankError("a bank needs at least one compartment")
    return counts


def parse_accessible_labels(spec: str) -> frozenset[str]:
    """`"A01,A02"` -> the labels of the accessible (wheelchair height) compartments; `""`: none.

    Labels as printed on the doors (see `compartment_labels`), any case; each is checked against
    the bank's compartments when the bank is added.
    """
    if not spec.strip():
        return frozenset()
    labels: list[str] = []
    for item in spec.split(","):
        label = item.strip().upper()
        if not _LABEL.match(label):
            raise BankError(f"bad compartment label {item.strip()!r}; expected like A01,A02")
        if label in labels:
            raise BankError(f"compartment {label} given twice as accessible")
        labels.append(label)
    return frozenset(labels)


def compartment_labels(counts: dict[SizeClass, int]) -> list[tuple[str, SizeClass]]:
    """Labels as printed on the doors: columns A, B, ... of twelve, smallest class first."""
    out: list[tuple[str, SizeClass]] = []
    for size in sorted(counts, key=lambda s: s.rank):
        for _ in range(counts[size]):
            index = len(out)
            column, row = divmod(index, COMPARTMENTS_PER_COLUMN)
            letters = ""
            column += 1
            while column:
                column, rem = divmod(column - 1, 26)
                letters = chr(ord("A") + rem) + letters
            out.append((f"{letters}{row + 1:02d}", size))
    return out


@dataclass(frozen=True, slots=True)
class NewBank:
    bank_id: str
    name: str
    address: str
    lat: float
    lon: float
    compartments: dict[SizeClass, int]
    timezone: str = "UTC"
    opening_hours: dict[str, list[list[str]]] | None = None
    # Labels of the compartments within reach from a wheelchair (`parse_accessible_labels`).
    accessible: frozenset[str] = frozenset()


def add_bank(session: Session, new: NewBank, now: datetime) -> Bank:
    if not BANK_ID.match(new.bank_id):
        raise BankError("bank id must be 1-64 letters, digits, '-' or '_'")
    if not (-90 <= new.lat <= 90 and -180 <= new.lon <= 180):
        raise BankError("latitude must be within ±90 and longitude within ±180")
    try:
        ZoneInfo(new.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BankError(f"unknown time zone {new.timezone!r}") from exc
    if repository.get_bank(session, new.bank_id) is not None:
        raise BankError(f"bank {new.bank_id!r} exists already")
    bank = Bank(
        id=new.bank_id,
        name=new.name,
        address=new.address,
        lat=new.lat,
        lon=new.lon,
        timezone=new.timezone,
        opening_hours=new.opening_hours,
        status="active",
        hold_hours=72,
        pickup_hours=72,
        reminder_hours=24,
        max_extension_hours=72,
        max_weight_g=25_000,
        allow_upsize=False,
        created_at=now,
    )
    labels = compartment_labels(new.compartments)
    unknown = sorted(new.accessible - {label for label, _ in labels})
    if unknown:
        raise BankError(f"accessible compartments not in this bank: {', '.join(unknown)}")
    capacity = []
    for size, dims in DEFAULT_CLASS_DIMENSIONS.items():
        count = new.compartments.get(size, 0)
        accessible = sum(1 for label, s in labels if s == size and label in new.accessible)
        capacity.append(
            BankCapacity(
                bank_id=new.bank_id,
                size=size.value,
                length_mm=dims.length_mm,
                width_mm=dims.width_mm,
                height_mm=dims.height_mm,
                total=count,
                available=count,
                accessible_total=accessible,
                accessible_available=accessible,
            )
        )
    compartments = [
        Compartment(
            bank_id=new.bank_id,
            label=label,
            size=size.value,
            length_mm=DEFAULT_CLASS_DIMENSIONS[size].length_mm,
            width_mm=DEFAULT_CLASS_DIMENSIONS[size].width_mm,
            height_mm=DEFAULT_CLASS_DIMENSIONS[size].height_mm,
            state="free",
            accessible=label in new.accessible,
        )
        for label, size in labels
    ]
    repository.add_bank(session, bank, capacity, compartments)
    return bank


def require_bank(session: Session, bank_id: str) -> Bank:
    bank = repository.get_bank(session, bank_id)
    if bank is None or bank.status != "active":
        raise NotFound(f"bank {bank_id}", code="unknown_bank")
    return bank


def describe(bank: Bank, capacity: Sequence[BankCapacity], distance_km: float | None) -> BankOut:
    return BankOut(
        id=bank.id,
        name=bank.name,
        address=bank.address,
        location=Location(lat=bank.lat, lon=bank.lon),
        timezone=bank.timezone,
        opening_hours=bank.opening_hours,
        # A bank in maintenance stays active underneath (central.banks.settings).
        status="maintenance" if bank.maintenance_since is not None else bank.status,
        distance_km=None if distance_km is None else round(distance_km, 3),
        capacity={
            SizeClass(row.size): ClassCapacity(
                total=row.total,
                free=max(0, row.available),
                accessible_total=max(0, row.accessible_total),
                accessible_free=max(0, min(row.available, row.accessible_available)),
                inner_dimensions=InnerDimensions(
                    length_mm=row.length_mm, width_mm=row.width_mm, height_mm=row.height_mm
                ),
            )
            for row in sorted(capacity, key=lambda r: SizeClass(r.size).rank)
            if row.total > 0
        },
        policy=BankPolicy(
            hold_hours=bank.hold_hours,
            pickup_hours=bank.pickup_hours,
            reminder_hours=bank.reminder_hours,
            max_extension_hours=bank.max_extension_hours,
            max_weight_g=bank.max_weight_g,
        ),
    )


def option_for(
    bank: Bank | repository.BankSpot,
    capacity: Sequence[BankCapacity],
    distance_km: float,
    *,
    optimistic: bool = False,
) -> BankOption:
    """The bank as the allocation choice sees it.

    `optimistic` treats every working unit as possibly free: for capacity rows that may be a few
    seconds old, where the atomic decrement, not this snapshot, decides.
    """
    return BankOption(
        bank_id=bank.id,
        distance_km=distance_km,
        classes={
            SizeClass(row.size): ClassOption(
                dimensions=Dimensions(row.length_mm, row.width_mm, row.height_mm),
                available=row.total if optimistic else row.available,
                accessible_available=row.accessible_total
                if optimistic
                else row.accessible_available,
            )
            for row in capacity
            if row.total > 0
        },
        max_weight_g=bank.max_weight_g,
        allow_upsize=bank.allow_upsize,
    )


class _Placed(Protocol):
    """What `_nearest` reads of a bank: a whole row or a `BankSpot`."""

    @property
    def id(self) -> str: ...
    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...


_P = TypeVar("_P", bound=_Placed)


def _nearest(
    banks: Iterable[_P], lat: float, lon: float, radius_km: float
) -> list[tuple[_P, float]]:
    """The banks within the radius and their distance in km, nearest first."""
    within = [(bank, geo.haversine_km(lat, lon, bank.lat, bank.lon)) for bank in banks]
    within = [(bank, d) for bank, d in within if d <= radius_km]
    within.sort(key=lambda pair: (pair[1], pair[0].id))
    return within


def spots_near(
    session: Session, lat: float, lon: float, radius_km: float
) -> list[tuple[repository.BankSpot, float]]:
    """Active banks within the radius, as `BankSpot`s with their distance, nearest first."""
    box = geo.bounding_box(lat, lon, radius_km)
    return _nearest(repository.bank_spots_in_box(session, box), lat, lon, radius_km)


def banks_near(
    session: Session, lat: float, lon: float, radius_km: float
) -> list[tuple[Bank, float, list[BankCapacity]]]:
    """Active banks within the radius with their capacity rows, nearest first."""
    box = geo.bounding_box(lat, lon, radius_km)
    within = _nearest(repository.banks_in_box(session, box), lat, lon, radius_km)
    capacity = repository.capacity_of(session, [bank.id for bank, _ in within])
    return [(bank, d, capacity[bank.id]) for bank, d in within]


def courier_code(keys: ServiceKeys, carrier_id: str, bank: Bank, now: datetime) -> CourierCode:
    zone = ZoneInfo(bank.timezone)
    local_day = now.astimezone(zone).date()
    start = datetime.combine(local_day, time(0), zone)
    end = datetime.combine(local_day + timedelta(days=1), time(0), zone)
    return CourierCode(
        code=keys.courier_code(carrier_id, bank.id, local_day),
        valid_from=start.isoformat(),
        valid_until=end.isoformat(),
    )


class BankDirectory:
    """Per-process snapshot of banks' static facts (place, policy, classes) for a few seconds.

    Reserving at a named bank needs its policy and class dimensions on every request; these change
    rarely, and free capacity is never taken from here (the conditional decrement decides), so a
    short-lived copy saves two queries per reservation. A policy change takes effect within `ttl_s`.
    """

    def __init__(self, ttl_s: float = 5.0, clock: Callable[[], float] = monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Bank, list[BankCapacity], BankOption]] = {}

    def option(self, session: Session, bank_id: str) -> tuple[Bank, BankOption]:
        """The bank and its `option_for(..., optimistic=True)`, built once per snapshot."""
        _, bank, _, option = self._entry(session, bank_id)
        return bank, option

    def forget(self, bank_id: str) -> None:
        """Drop the bank's snapshot: a settings change takes effect at once in this process (in
        the others within `ttl_s`)."""
        with self._lock:
            self._entries.pop(bank_id, None)

    def _entry(
        self, session: Session, bank_id: str
    ) -> tuple[float, Bank, list[BankCapacity], BankOption]:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(bank_id)
        if entry is not None and now - entry[0] < self._ttl_s:
            return entry
        bank = require_bank(session, bank_id)
        capacity = repository.capacity_of(session, [bank.id])[bank.id]
        for row in (bank, *capacity):
            session.expunge(row)  # a detached, read-only copy shared between threads
        entry = (now, bank, capacity, option_for(bank, capacity, 0.0, optimistic=True))
        with self._lock:
            self._entries[bank_id] = entry
        return entry
