"""Gathering the soak's state for the invariants: central's database, each node's store, the
receivers, the soak's own ledger and every log; and the faults `--break` plants first."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from bench.soak_checks import (
    Capacity,
    CentralNodeEvent,
    CentralReservation,
    NodeParcel,
    State,
    Webhook,
)
from bench.soak_ledger import Ledger
from bench.soak_network import CARRIER, Network, Site
from bench.soak_receivers import RecipientMail, WebhookLog
from central.models import BankCapacity, NodeEventRecord, Notice, Reservation, WebhookDelivery

BREAKS = ("node-event", "webhook")
# uvicorn's access log line: `... "POST /v1/node/events HTTP/1.1" 500 Internal Server Error`.
_ACCESS_5XX = re.compile(r'"[A-Z]+ (\S+) HTTP/[0-9.]+" (5[0-9][0-9])\b')
TRACEBACK = "Traceback (most recent call last):"


def _central(state: State, session: Session, banks: list[str]) -> None:
    for r in session.scalars(select(Reservation).where(Reservation.carrier_id == CARRIER)):
        state.reservations.append(
            CentralReservation(
                r.id, r.tracking_number, r.bank_id, r.size, r.status, r.compartment_label
            )
        )
    for e in session.scalars(select(NodeEventRecord).where(NodeEventRecord.bank_id.in_(banks))):
        reservation = e.data.get("reservation_id") if isinstance(e.data, dict) else None
        state.node_events.append(CentralNodeEvent(e.id, e.bank_id, e.type, e.status, reservation))
    for c in session.scalars(select(BankCapacity).where(BankCapacity.bank_id.in_(banks))):
        state.capacity.append(Capacity(c.bank_id, c.size, c.total, c.available))
    deliveries = session.execute(
        select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    )
    state.deliveries_not_delivered = {s: n for s, n in deliveries if s != "delivered"}
    state.delivery_event_ids = set(
        session.scalars(
            select(WebhookDelivery.event_id).where(WebhookDelivery.status == "delivered")
        )
    )
    notices = session.execute(select(Notice.status, func.count()).group_by(Notice.status))
    state.notices_not_sent = {s: n for s, n in notices if s != "sent"}


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    at = datetime.fromisoformat(value)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _node(state: State, site: Site) -> None:
    with sqlite3.connect(f"file:{site.database}?mode=ro", uri=True, timeout=30) as conn:
        unsent = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
        state.outbox_unsent[site.bank_id] = int(unsent[0])
        rows = conn.execute(
            "SELECT id, reservation_id, compartment, deposited_at, finished_at FROM parcels"
        )
        for parcel_id, reservation_id, label, deposited_at, finished_at in rows:
            deposited = _parse_time(deposited_at)
            if deposited is None:
                continue
            state.node_parcels.append(
                NodeParcel(
                    site.bank_id,
                    parcel_id,
                    reservation_id,
                    label,
                    deposited,
                    _parse_time(finished_at),
                )
            )


def scan_log(path: Path) -> tuple[list[str], list[str]]:
    """The last line (the exception) of each traceback in the log, and each 5xx access line."""
    tracebacks: list[str] = []
    errors: list[str] = []
    inside = False
    with path.open(errors="replace") as log:
        for line in log:
            if line.startswith(TRACEBACK):
                inside = True
                continue
            if inside and line[:1] not in (" ", "\t", "") and line.strip():
                tracebacks.append(line.strip()[:300])
                inside = False
            found = _ACCESS_5XX.search(line)
            if found:
                errors.append(f"{path.name}: {found.group(2)} for {found.group(1)}")
    if inside:
        tracebacks.append("(a traceback at the end of the log)")
    return tracebacks, errors


def gather(network: Network, ledger: Ledger, webhooks: WebhookLog, mail: RecipientMail) -> State:
    state = State()
    banks = [site.bank_id for site in network.sites]
    with Session(network.engine) as session:
        _central(state, session, banks)
    for site in network.sites:
        _node(state, site)
    state.webhooks = [
        Webhook(w.event_id, w.type, w.reservation_id, w.deliveries, w.pickup_code)
        for w in webhooks.snapshot()
    ]
    state.bad_signatures = webhooks.bad_signatures
    letters = mail.letters()
    for reservation_id, told in ledger.told.items():
        codes = [letter.code for letter in letters.get(told.email, []) if letter.code]
        if codes:
            state.mail_codes[reservation_id] = codes
    state.told = {rid: told.tracking_number for rid, told in ledger.told.items()}
    state.cancelled = set(ledger.cancelled)
    state.confirmed = {rid: (c.bank_id, c.compartment) for rid, c in ledger.confirmed.items()}
    state.picked_up = set(ledger.picked_up)
    state.server_errors = [f"{e.at} {e.where}: {e.status} {e.body}" for e in ledger.server_errors]
    state.anomalies = list(ledger.anomalies)
    state.answers = ledger.answers
    state.logs = len(network.processes)
    for process in network.processes:
        tracebacks, errors = scan_log(process.log_path)
        if tracebacks:
            state.tracebacks[process.log_path.name] = tracebacks
        state.server_errors += errors
        if process.pid is None:
            state.processes_down.append(process.name)
    return state


def settled(network: Network) -> dict[str, int]:
    """What is still on its way: node events not sent, webhooks and notices not yet sent."""
    waiting: Counter[str] = Counter()
    for site in network.sites:
        try:
            with sqlite3.connect(f"file:{site.database}?mode=ro", uri=True, timeout=10) as conn:
                row = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
        except sqlite3.Error:
            waiting["node stores unreadable"] += 1
            continue
        waiting["node events"] += int(row[0])
    with Session(network.engine) as session:
        waiting["webhooks"] = (
            session.scalar(select(func.count()).where(WebhookDelivery.status == "pending")) or 0
        )
        waiting["notices"] = (
            session.scalar(select(func.count()).where(Notice.status == "pending")) or 0
        )
    return {what: n for what, n in waiting.items() if n}


def plant_fault(kind: str, network: Network, ledger: Ledger, webhooks: WebhookLog) -> str:
    """Break one fact on purpose, so that the check must fail (`--break`)."""
    if not ledger.confirmed:
        raise RuntimeError("--break needs at least one confirmed deposit; run longer")
    victim = sorted(ledger.confirmed)[0]
    if kind == "node-event":
        with Session(network.engine) as session, session.begin():
            events = session.scalars(
                select(NodeEventRecord).where(NodeEventRecord.type == "parcel.deposited")
            ).all()
            chosen = next(e for e in events if e.data.get("reservation_id") == victim)
            session.execute(delete(NodeEventRecord).where(NodeEventRecord.id == chosen.id))
        return f"deleted central's parcel.deposited node event {chosen.id} of {victim}"
    for event in webhooks.snapshot():
        if event.type == "parcel.deposited" and event.reservation_id == victim:
            webhooks.forget(event.event_id)
            return f"forgot the receipt of webhook event {event.event_id} ({victim} deposited)"
    raise RuntimeError(f"no parcel.deposited webhook was received for {victim}")
