"""What the soak's carrier, couriers and recipients were told: the facts the invariants are
checked against, and every answer that was a 5xx or not what the API promises."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx


@dataclass(frozen=True)
class Told:
    """A reservation a carrier heard of (201, or 200 for a number it had reserved)."""

    reservation_id: str
    tracking_number: str
    bank_id: str
    email: str


@dataclass(frozen=True)
class Confirmed:
    """A deposit the kiosk confirmed to the courier."""

    reservation_id: str
    bank_id: str
    compartment: str
    parcel_id: str


@dataclass(frozen=True)
class ServerError:
    at: str
    where: str
    status: int
    body: str


@dataclass
class Ledger:
    told: dict[str, Told] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    confirmed: dict[str, Confirmed] = field(default_factory=dict)
    picked_up: dict[str, str] = field(default_factory=dict)  # reservation id -> how
    server_errors: list[ServerError] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    answers: int = 0  # every answer the soak's clients got
    _mutex: threading.Lock = field(default_factory=threading.Lock)

    def tell(self, told: Told) -> Told:
        with self._mutex:
            self.told[told.reservation_id] = told
        return told

    def cancel(self, reservation_id: str) -> None:
        with self._mutex:
            self.cancelled.add(reservation_id)

    def confirm(self, confirmed: Confirmed) -> Confirmed:
        with self._mutex:
            self.confirmed[confirmed.reservation_id] = confirmed
        return confirmed

    def pick_up(self, reservation_id: str, how: str) -> None:
        with self._mutex:
            self.picked_up[reservation_id] = how

    def count(self, what: str, n: int = 1) -> None:
        with self._mutex:
            self.counts[what] += n

    def anomaly(self, what: str) -> None:
        """An answer the API does not promise (or a parcel the soak had to give up on)."""
        with self._mutex:
            self.anomalies.append(what)

    def answered(self, answer: httpx.Response) -> None:
        with self._mutex:
            self.answers += 1

    def server_error(self, where: str, answer: httpx.Response) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        error = ServerError(stamp, where, answer.status_code, answer.text[:300])
        with self._mutex:
            self.server_errors.append(error)


@dataclass(frozen=True)
class Reply:
    """An answer, or None with why there was none."""

    answer: httpx.Response | None
    timed_out: bool = False

    @property
    def status(self) -> int:
        return 0 if self.answer is None else self.answer.status_code

    @property
    def error(self) -> str:
        """The API's machine-readable error code, "" when there is none."""
        if self.answer is None:
            return ""
        try:
            body = self.answer.json()
        except ValueError:
            return ""
        code = body.get("error") if isinstance(body, dict) else None
        return code if isinstance(code, str) else ""


def send(
    client: httpx.Client,
    ledger: Ledger,
    where: str,
    method: str,
    url: str,
    *,
    json: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request; a 5xx is written down, a timeout or a refused connection counted."""
    try:
        answer = client.request(method, url, json=json, headers=headers)
    except httpx.TimeoutException:
        ledger.count(f"{where}: timed out")
        return Reply(None, timed_out=True)
    except httpx.TransportError:
        ledger.count(f"{where}: no connection")
        return Reply(None)
    ledger.answered(answer)
    if answer.status_code >= 500:
        ledger.server_error(f"{method} {client.base_url.join(url)}", answer)
    return Reply(answer)
