"""The paging scan: alert transitions become pages in the outbox, one per destination.

Paging never hooks into the places that raise or resolve alerts (there are many, and more
come): it reads the alerts table. Each run takes the alerts raised, and those resolved, within
`SCAN_WINDOW` that no scan has handled, matches them against the subscriptions of that moment,
and writes the pages and a record of the transition in one transaction. The window covers an
alert whose transaction committed a while after its `created_at`; the outbox's unique key
covers two hosts scanning at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from central.models import Alert
from central.notices.outbox import mask_email
from central.paging import repository as repo

SCAN_WINDOW = timedelta(hours=24)
SCAN_BATCH = 500
# Pages that ended are kept this long for the dashboard's outbox view.
PAGE_RETENTION = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Route:
    """One subscription as the scan needs it: what it wants and where its pages go."""

    operator_id: int
    operator_email: str
    alert_types: frozenset[str] | None  # None: every type
    bank_ids: frozenset[str] | None  # None: every bank
    email: bool
    target_id: int | None  # None, or an enabled target
    target_hint: str | None
    on_resolve: bool

    def wants(self, alert_type: str, bank_id: str | None, transition: str) -> bool:
        if transition == "resolved" and not self.on_resolve:
            return False
        if self.alert_types is not None and alert_type not in self.alert_types:
            return False
        # A network-wide alert (no bank) is about every bank: the types alone decide.
        return self.bank_ids is None or bank_id is None or bank_id in self.bank_ids


@dataclass(frozen=True, slots=True)
class Destination:
    key: str  # email:<operator id> | webhook:<target id>
    channel: str
    hint: str


def destinations(
    routes: Iterable[Route], alert_type: str, bank_id: str | None, transition: str
) -> list[Destination]:
    """Where one transition is paged: each matching route's channels, each destination once."""
    found: dict[str, Destination] = {}
    for route in routes:
        if not route.wants(alert_type, bank_id, transition):
            continue
        if route.email:
            key = f"email:{route.operator_id}"
            found[key] = Destination(key, "email", mask_email(route.operator_email))
        if route.target_id is not None:
            key = f"webhook:{route.target_id}"
            found[key] = Destination(key, "webhook", route.target_hint or key)
    return sorted(found.values(), key=lambda d: d.key)


def load_routes(session: Session) -> list[Route]:
    routes = []
    for sub, email, target_name, target_host, target_on in repo.live_subscriptions(session):
        target_id = sub.target_id if target_on else None
        if not sub.email and target_id is None:
            continue
        routes.append(
            Route(
                operator_id=sub.operator_id,
                operator_email=email,
                alert_types=None if sub.alert_types is None else frozenset(sub.alert_types),
                bank_ids=None if sub.bank_ids is None else frozenset(sub.bank_ids),
                email=sub.email,
                target_id=target_id,
                target_hint=f"{target_name} ({target_host})" if target_id else None,
                on_resolve=sub.on_resolve,
            )
        )
    return routes


def page_rows(
    alert: Alert, transition: str, found: list[Destination], now: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "alert_id": alert.id,
            "transition": transition,
            "destination": d.key,
            "channel": d.channel,
            "destination_hint": d.hint[:200],
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for d in found
    ]


def scan_alerts(session: Session, now: datetime) -> int:
    """Write the pages of transitions not scanned yet; returns how many pages were written
    (a page another host wrote first counts here too)."""
    transitions = repo.unscanned(session, now - SCAN_WINDOW, SCAN_BATCH)
    if not transitions:
        return 0
    routes = load_routes(session)
    pages: list[dict[str, Any]] = []
    for alert, transition in transitions:
        found = destinations(routes, alert.type, alert.bank_id, transition)
        pages += page_rows(alert, transition, found, now)
    repo.insert_pages(session, pages)
    repo.mark_scanned(
        session,
        [
            {"alert_id": alert.id, "transition": transition, "scanned_at": now}
            for alert, transition in sorted(transitions, key=lambda t: (t[0].id, t[1]))
        ],
    )
    return len(pages)


def forget_old(session: Session, now: datetime) -> None:
    """Drop scan records the window no longer reaches and pages long finished."""
    # Twice the window: a host whose clock runs behind still finds what it scanned.
    repo.forget_scans(session, now - 2 * SCAN_WINDOW)
    repo.forget_pages(session, now - PAGE_RETENTION)
