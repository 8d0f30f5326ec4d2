"""The soak's load through the real APIs: a carrier reserves, a courier deposits at the kiosk,
the recipient reads the pickup code in the "ready" mail and picks the parcel up.

Every call that gets no answer (a process killed or stopped) is retried: a reservation with the
same tracking number (central answers with the one it made, 200), a deposit by scanning the
parcel again (the node reopens the compartment it bound), a confirmation as it was (confirming
twice answers the same). A pickup whose answer was lost is settled by what the node recorded,
as the recipient would see the door open, before the code is typed again.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from bench.soak_ledger import Confirmed, Ledger, Reply, Told, send
from bench.soak_network import CARRIER, Network, Site
from bench.soak_receivers import RecipientMail

T = TypeVar("T")
SIZES = (("S", 0.5), ("M", 0.3), ("L", 0.15), ("XL", 0.05))
RETRY_S = 0.5
MAX_RETRY_S = 5.0


class Abandon(Exception):
    """This parcel's story ends here; `anomaly` when the API answered what it does not promise."""

    def __init__(self, reason: str, *, anomaly: bool = True) -> None:
        super().__init__(reason)
        self.anomaly = anomaly


@dataclass(frozen=True)
class LoadOptions:
    rate_per_min: float
    cancel_share: float
    courier_delay_s: float  # at most this long between a reservation and its deposit
    pickup_delay_s: float  # at most this long between the mail and the pickup
    give_up_s: float  # a parcel still stuck after this long is given up (an anomaly)
    workers: int
    seed: int


@dataclass
class CourierCodes:
    """The carrier's courier access codes, per bank, fetched from central as a carrier does."""

    client: httpx.Client
    ledger: Ledger
    headers: dict[str, str]
    _codes: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    _mutex: threading.Lock = field(default_factory=threading.Lock)

    def code(self, bank_id: str) -> str | None:
        with self._mutex:
            known = self._codes.get(bank_id)
            if known is not None and known[1] > datetime.now(UTC):
                return known[0]
        url = f"/v1/banks/{bank_id}/courier-code"
        reply = send(self.client, self.ledger, "courier code", "GET", url, headers=self.headers)
        if reply.answer is None or reply.status != 200:
            return None
        body = reply.answer.json()
        until = datetime.fromisoformat(body["valid_until"])
        with self._mutex:
            self._codes[bank_id] = (str(body["code"]), until)
        return str(body["code"])

    def forget(self, bank_id: str) -> None:
        with self._mutex:
            self._codes.pop(bank_id, None)


@dataclass
class KioskDesk:
    """One bank's kiosk as its couriers use it: one session, logged in again when it ends."""

    site: Site
    client: httpx.Client
    _token: str | None = None
    _mutex: threading.Lock = field(default_factory=threading.Lock)

    def session(self, ctx: LoadContext) -> dict[str, str] | None:
        with self._mutex:
            if self._token is None:
                self._token = self._login(ctx)
            return None if self._token is None else {"Authorization": f"Bearer {self._token}"}

    def expire(self, headers: dict[str, str]) -> None:
        with self._mutex:
            if headers.get("Authorization") == f"Bearer {self._token}":
                self._token = None

    def call(
        self,
        ctx: LoadContext,
        where: str,
        url: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        return send(self.client, ctx.ledger, where, "POST", url, json=body, headers=headers)

    def _login(self, ctx: LoadContext) -> str | None:
        pin = ctx.codes.code(self.site.bank_id)
        if pin is None:
            return None
        body = {"carrier": CARRIER, "pin": pin}
        reply = self.call(ctx, "courier login", "/api/courier/login", body)
        if reply.answer is not None and reply.status == 200:
            return str(reply.answer.json()["token"])
        if reply.error == "invalid_credentials":
            ctx.ledger.anomaly(f"{self.site.bank_id}: the day's courier code was refused")
            ctx.codes.forget(self.site.bank_id)
        elif reply.error == "locked_out" and reply.answer is not None:
            time.sleep(float(reply.answer.json().get("retry_after_s", 5)))
        return None


@dataclass
class LoadContext:
    network: Network
    ledger: Ledger
    mail: RecipientMail
    options: LoadOptions
    central: httpx.Client
    codes: CourierCodes
    kiosks: dict[str, KioskDesk]
    give_up: threading.Event = field(default_factory=threading.Event)

    def call(self, where: str, method: str, url: str, body: dict[str, Any] | None = None) -> Reply:
        """The carrier API, as the carrier with its key."""
        auth = {"Authorization": f"Bearer {self.network.api_key}"}
        return send(self.central, self.ledger, where, method, url, json=body, headers=auth)


def retry(ctx: LoadContext, what: str, attempt: Callable[[], T | None]) -> T | None:
    """`attempt` until it gives a value, backing off; None when it abandons the parcel, when
    `give_up_s` passes or when the soak's settling time is over."""
    deadline = time.monotonic() + ctx.options.give_up_s
    pause = RETRY_S
    while not ctx.give_up.is_set():
        try:
            value = attempt()
        except Abandon as exc:
            ctx.ledger.count(f"abandoned: {exc}")
            if exc.anomaly:
                ctx.ledger.anomaly(f"{what}: {exc}")
            return None
        if value is not None:
            return value
        if time.monotonic() > deadline:
            ctx.ledger.anomaly(f"{what}: still failing after {ctx.options.give_up_s:.0f} s")
            return None
        time.sleep(pause)
        pause = min(MAX_RETRY_S, pause * 1.5)
    ctx.ledger.count("parcels cut short by the end of the settling time")
    return None


def reserve(ctx: LoadContext, tracking: str, bank_id: str, size: str, email: str) -> Told | None:
    body = {
        "tracking_number": tracking,
        "bank_id": bank_id,
        "size": size,
        "recipient": {"name": "Soak Recipient", "email": email, "language": "en"},
    }
    lost = False

    def attempt() -> Told | None:
        nonlocal lost
        reply = ctx.call("reserve", "POST", "/v1/reservations", body)
        if reply.answer is None:
            lost = True
            return None
        if reply.status in (200, 201):
            if lost:
                ctx.ledger.count("reserve: retried with the same number after a lost answer")
                if reply.status == 200:
                    ctx.ledger.count("reserve: ... whose retry found the one it had made (200)")
            found = reply.answer.json()
            return ctx.ledger.tell(Told(str(found["id"]), tracking, bank_id, email))
        if reply.error == "no_capacity":
            raise Abandon("no_capacity", anomaly=False)
        if reply.status >= 500:
            return None
        raise Abandon(f"reserve {tracking}: {reply.status} {reply.answer.text[:200]}")

    return retry(ctx, f"reserve {tracking}", attempt)


def cancel(ctx: LoadContext, told: Told) -> None:
    url = f"/v1/reservations/{told.reservation_id}"

    def attempt() -> bool | None:
        reply = ctx.call("cancel", "DELETE", url)
        if reply.answer is None or reply.status >= 500:
            return None
        if reply.status != 200:
            # An earlier DELETE whose answer was lost may have cancelled it already.
            current = ctx.call("cancel", "GET", url)
            if current.answer is None or current.status != 200:
                return None
            if current.answer.json().get("status") != "cancelled":
                raise Abandon(f"cancel {told.tracking_number}: {reply.status} {reply.error}")
        ctx.ledger.cancel(told.reservation_id)
        return True

    retry(ctx, f"cancel {told.tracking_number}", attempt)


def deposit(ctx: LoadContext, told: Told) -> Confirmed | None:
    desk = ctx.kiosks[told.bank_id]
    opened: dict[str, Any] | None = None

    def attempt() -> Confirmed | None:
        nonlocal opened
        headers = desk.session(ctx)
        if headers is None:
            return None
        if opened is None:
            opened = _scan(ctx, desk, headers, told)
            if opened is None:
                return None
        url = f"/api/courier/deposit/{opened['deposit_id']}/confirm"
        reply = desk.call(ctx, "confirm", url, headers=headers)
        if reply.answer is not None and reply.status == 200:
            done = reply.answer.json()
            return ctx.ledger.confirm(
                Confirmed(told.reservation_id, told.bank_id, done["compartment"], done["parcel_id"])
            )
        if reply.status == 401:
            desk.expire(headers)
        elif reply.error != "door_open" and reply.answer is not None and reply.status < 500:
            # The deposit was abandoned or its door never seen open: scan the parcel again.
            ctx.ledger.count(f"confirm: {reply.status} {reply.error}, scanned again")
            opened = None
        return None

    return retry(ctx, f"deposit {told.tracking_number}", attempt)


def _scan(
    ctx: LoadContext, desk: KioskDesk, headers: dict[str, str], told: Told
) -> dict[str, Any] | None:
    body = {"tracking_number": told.tracking_number}
    reply = desk.call(ctx, "deposit", "/api/courier/deposit", body, headers)
    if reply.answer is None or reply.status >= 500:
        return None
    if reply.status == 200:
        opened: dict[str, Any] = reply.answer.json()
        return opened
    if reply.status == 401:
        desk.expire(headers)
    elif reply.error in ("no_reservation", "no_capacity"):
        # Not on the node yet (its feed is behind while central is away), or the bank is full.
        ctx.ledger.count(f"deposit: {reply.error}, tried again")
    else:
        raise Abandon(f"deposit {told.tracking_number}: {reply.status} {reply.answer.text[:200]}")
    return None


def pick_up(ctx: LoadContext, told: Told, delay_s: float) -> None:
    desk = ctx.kiosks[told.bank_id]
    code = retry(ctx, f"mail to {told.email}", lambda: ctx.mail.wait_for_code(told.email, 5.0))
    if code is None:
        return
    time.sleep(delay_s)
    uncertain = False

    def opened_unheard() -> bool:
        """After a lost answer: did that request open the door (and spend the code)?"""
        if uncertain and node_parcel_status(desk.site, told.reservation_id) == "picked_up":
            ctx.ledger.pick_up(told.reservation_id, "door opened, answer lost")
            ctx.ledger.count("pickup: the door opened but the answer was lost")
            return True
        return False

    def attempt() -> bool | None:
        nonlocal uncertain
        if opened_unheard():
            return True
        reply = desk.call(ctx, "pickup", "/api/pickup", {"code": code})
        if reply.answer is None:
            uncertain = True
            return None
        if reply.status == 200:
            ctx.ledger.pick_up(told.reservation_id, "code")
            return True
        if reply.error in ("invalid_code", "already_collected") and opened_unheard():
            # The request that timed out was served late, spending the code: the node now says
            # so (already_collected), or that the code is unknown.
            return True
        if reply.error == "locked_out":
            time.sleep(float(reply.answer.json().get("retry_after_s", 5)))
            return None
        if reply.status >= 500:
            return None
        raise Abandon(f"pickup {told.tracking_number}: {reply.status} {reply.answer.text[:200]}")

    retry(ctx, f"pickup {told.tracking_number}", attempt)


def node_parcel_status(site: Site, reservation_id: str) -> str | None:
    """What the node's store says of the reservation's parcel (read-only, beside the node)."""
    try:
        with sqlite3.connect(f"file:{site.database}?mode=ro", uri=True, timeout=10) as conn:
            row = conn.execute(
                "SELECT status FROM parcels WHERE reservation_id = ? ORDER BY deposited_at DESC",
                (reservation_id,),
            ).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def parcel_story(ctx: LoadContext, n: int, run_tag: str) -> None:
    """One parcel from reservation to pickup (or cancellation)."""
    rng = random.Random(f"{ctx.options.seed}-{n}")
    site = rng.choice(ctx.network.sites)
    size = rng.choices([s for s, _ in SIZES], [w for _, w in SIZES])[0]
    tracking = f"SOAK{run_tag}{n:06d}"
    email = f"r{n}-{run_tag.lower()}@soak.example"
    told = reserve(ctx, tracking, site.bank_id, size, email)
    if told is None:
        return
    if rng.random() < ctx.options.cancel_share:
        cancel(ctx, told)
        return
    time.sleep(rng.uniform(0, ctx.options.courier_delay_s))
    if deposit(ctx, told) is not None:
        pick_up(ctx, told, rng.uniform(0, ctx.options.pickup_delay_s))


class Load:
    """Parcels arriving at random (a Poisson process at `rate_per_min`), each told as a story
    in a thread of a pool; stopping ends the arrivals and leaves the stories to finish."""

    def __init__(self, ctx: LoadContext, run_tag: str) -> None:
        self.ctx = ctx
        self.run_tag = run_tag
        self.started = 0
        self._pool = ThreadPoolExecutor(ctx.options.workers, thread_name_prefix="parcel")
        self._futures: list[Future[None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._arrivals, name="soak-arrivals", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _arrivals(self) -> None:
        rng = random.Random(self.ctx.options.seed)
        mean_gap_s = 60.0 / self.ctx.options.rate_per_min
        while not self._stop.wait(rng.expovariate(1.0 / mean_gap_s)):
            self.started += 1
            future = self._pool.submit(parcel_story, self.ctx, self.started, self.run_tag)
            self._futures.append(future)
            future.add_done_callback(self._report)

    def _report(self, future: Future[None]) -> None:
        exc = future.exception()
        if exc is not None:
            self.ctx.ledger.anomaly(f"a parcel's story failed: {exc!r}")

    def in_flight(self) -> int:
        return sum(1 for future in self._futures if not future.done())

    def stop_arrivals(self) -> None:
        self._stop.set()
        self._thread.join()

    def finish(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for the stories under way; then cut the rest short. Returns
        how many were cut short."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight() and time.monotonic() < deadline:
            time.sleep(0.5)
        left = self.in_flight()
        self.ctx.give_up.set()
        self._pool.shutdown(wait=True)
        return left
