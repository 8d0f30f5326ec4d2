"""What every flow works with: the store, the doors, the keys, the rules of this bank, a clock."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection, Engine

from locker_node.domain.crashpoints import NO_CRASHES, CrashPoints
from locker_node.domain.doors import DoorController
from locker_node.domain.lockout import LockoutPolicy
from locker_node.store.database import transaction
from locker_node.store.journal import SqliteCommandJournal
from locker_node.store.keys import NodeKeys
from locker_wire.opening_hours import OpeningHours, next_deadline

RECIPIENT = "recipient"
SYSTEM = "system"


@dataclass(frozen=True)
class FlowPolicy:
    """The bank's rules as the node applies them; built once from the node's configuration."""

    bank_id: str
    kiosk_id: str = "kiosk"
    code_digits: int = 10
    pickup_hold: timedelta = timedelta(hours=72)
    keypad: LockoutPolicy = field(default_factory=LockoutPolicy)
    login: LockoutPolicy = field(
        default_factory=lambda: LockoutPolicy(first_lockout_s=60, max_lockout_s=60)
    )
    session_idle: timedelta = timedelta(minutes=5)
    allow_upsize: bool = True
    allow_walk_up: bool = False
    deposit_timeout: timedelta = timedelta(minutes=15)
    max_moves: int = 3  # compartments tried after the first one's door fails, per request
    # Remote opens from central: more than this many in the window are refused, so that a
    # compromised path cannot empty a bank.
    remote_open_limit: int = 3
    remote_open_window: timedelta = timedelta(minutes=10)
    # From central's bank settings (`flows.bank_settings`): a pickup deadline never falls while
    # the bank is closed. None: always open.
    opening_hours: OpeningHours | None = None
    timezone: str = "UTC"
    # Approved mass opens ("open all") from central: at most this many in the window, so that
    # even a compromised central cannot empty the bank again and again.
    mass_open_limit: int = 2
    mass_open_window: timedelta = timedelta(hours=24)

    def pickup_deadline(self, deposited_at: datetime) -> datetime:
        """The hold from the deposit, moved past any closed hours (the rule central follows)."""
        return next_deadline(deposited_at, self.pickup_hold, self.opening_hours, self.timezone)

    @property
    def pickup_scope(self) -> str:
        return f"pickup:{self.kiosk_id}"

    @property
    def login_scope(self) -> str:
        return f"courier:{self.kiosk_id}"


@dataclass(frozen=True)
class NearbyBank:
    """Another bank with room for a parcel, as central tells it."""

    bank_id: str
    name: str
    address: str
    distance_km: float
    free: int


@dataclass(frozen=True)
class Redirected:
    """Where central moved a reservation to, for the courier to take the parcel."""

    reservation_id: str
    bank_id: str
    name: str
    address: str
    size: str


class CentralLink(Protocol):
    """Questions a flow asks central and waits for (`locker_node.sync.link`): answered within
    seconds, or `errors.CentralUnreachable`; central's refusals come back as flow errors."""

    def nearby(self, size: str, accessible: bool) -> list[NearbyBank]: ...

    def redirect(self, reservation_id: str, bank_id: str, size: str | None) -> Redirected: ...


class FeedRefresh(Protocol):
    """The sync loop, asked by a flow to pull the feed now (`locker_node.sync.service`)."""

    def catch_up(self) -> bool:
        """Pull the feed at once and wait for it, a few seconds at most; False when it could
        not (central unreachable, or no answer in time). Never called holding `flow_lock`."""
        ...


@dataclass
class Ports:
    engine: Engine
    doors: DoorController
    journal: SqliteCommandJournal
    keys: NodeKeys
    policy: FlowPolicy
    clock: Callable[[], datetime]
    crash: CrashPoints = NO_CRASHES
    # One flow at a time: a bank has one kiosk and one person in front of it, and it keeps
    # every check-then-open (throttle, code, binding) free of interleavings.
    flow_lock: threading.RLock = field(default_factory=threading.RLock)
    # Logins are checked one at a time too, or parallel guesses would all pass the lockout
    # check before any failure was written.
    login_lock: threading.Lock = field(default_factory=threading.Lock)
    # Central, for what a flow must ask it while someone waits (overflow); None for a node
    # that runs without central (or is not enrolled).
    central: CentralLink | None = None
    # The sync loop while it runs, for a flow that meets what central may have just sent (a
    # parcel with no reservation here): None without central, or while sync is stopped.
    feed: FeedRefresh | None = None

    def now(self) -> datetime:
        return self.clock()

    @contextmanager
    def unit_of_work(self) -> Iterator[Connection]:
        """One store transaction: committed when the block ends, rolled back if it raises."""
        with transaction(self.engine) as conn:
            yield conn


def seconds_until(until: datetime | None, now: datetime) -> int:
    if until is None or until <= now:
        return 0
    return max(1, math.ceil((until - now).total_seconds()))
