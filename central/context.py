"""What an operation needs from its caller: the session, the service keys, the time, caches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from central.allocation.choice import BankOption
from central.keys import ServiceKeys
from central.models import Bank

# The caches are named by what operations ask of them. Their classes live in areas that take a
# `Ctx` themselves (`banks.service.BankDirectory`, `webhooks.service.Subscriptions`): importing
# them here would tie this module and those areas in an import cycle.


class BankFacts(Protocol):
    """Banks' static facts, kept for a few seconds (`banks.service.BankDirectory`)."""

    def option(self, session: Session, bank_id: str) -> tuple[Bank, BankOption]: ...


class KnownSubscriptions(Protocol):
    """Carriers' webhook subscriptions, read once for a transaction that enqueues many events
    (`webhooks.service.Subscriptions`)."""

    def know(self, by_carrier: Mapping[str, list[tuple[str, list[str]]]]) -> None: ...

    def endpoint_ids(self, session: Session, carrier_id: str, event_type: str) -> list[str]: ...


class PendingNotices(Protocol):
    """Recipient notices that a transaction applying many events writes together at its end
    (`nodes.batch.BatchNotices`), with the carriers' notice choices it has read."""

    choices: dict[str, bool]

    def add(self, rows: list[dict[str, Any]]) -> None: ...


@dataclass(frozen=True, slots=True)
class Ctx:
    """What every operation needs from the request or job that runs it: the session, keys and
    the time, and the caches its caller keeps, if any."""

    session: Session
    keys: ServiceKeys
    now: datetime
    banks: BankFacts | None = None  # cached static bank facts, where the caller keeps some
    # Webhook subscriptions read once for a transaction that enqueues many events (a batch).
    subscriptions: KnownSubscriptions | None = None
    # Where a caller that writes many notices collects them; None: each is written at once.
    notices: PendingNotices | None = None
