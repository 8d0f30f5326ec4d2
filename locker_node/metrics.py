"""Prometheus metrics of one node, computed when scraped from its doors and its store.

Counters are counts of events in the outbox, which keeps every event the node ever queued: they
survive restarts and cost nothing on the kiosk's paths. `/metrics` is served by the kiosk server,
which listens on localhost; a node exporter or agent on the node scrapes it there. This module,
and prometheus_client with it (about 1.3 MB of a node's memory: it brings an HTTP server, a WSGI
server and urllib), is loaded at the first scrape (`locker_node.metrics_route`), so a node nobody
scrapes does without it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from locker_node.domain.doors import DoorController
from locker_node.store import outbox
from locker_node.store.database import transaction

# metric name (without _total) -> (outbox event type, help)
COUNTED_EVENTS: dict[str, tuple[str, str]] = {
    "locker_node_pickups": ("parcel.picked_up", "Parcels picked up (by code or QR)."),
    "locker_node_deposits": ("parcel.deposited", "Parcels deposited by couriers."),
    "locker_node_code_failures": (
        "kiosk.code_failed",
        "Wrong pickup codes and courier codes entered.",
    ),
    "locker_node_lockouts": ("kiosk.locked_out", "Keypad lockouts started."),
    "locker_node_board_errors": ("board.unreachable", "Times a lock board stopped answering."),
    "locker_node_door_faults": (
        "compartment.out_of_service",
        "Compartments taken out of service (jammed or unconfirmed doors).",
    ),
}


class NodeCollector(Collector):
    """Reads the doors and the store at scrape time; nothing is kept in between."""

    def __init__(self, engine: Engine, doors: DoorController, bank_id: str) -> None:
        self._engine = engine
        self._doors = doors
        self._bank_id = bank_id

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        states: Counter[str] = Counter()
        out_of_service = 0
        for status in self._doors.statuses():
            states[str(status.door) if status.door is not None else "unknown"] += 1
            out_of_service += not status.in_service
        doors = GaugeMetricFamily(
            "locker_node_doors", "Doors by the state last read from their sensor.", labels=["state"]
        )
        for state in ("open", "closed", "unknown"):
            doors.add_metric([state], states[state])
        yield doors
        yield GaugeMetricFamily(
            "locker_node_compartments_out_of_service",
            "Compartments out of service.",
            value=out_of_service,
        )
        with transaction(self._engine) as conn:
            depth = outbox.outbox_depth(conn)
            counts = outbox.count_events_by_type(
                conn, [event_type for event_type, _ in COUNTED_EVENTS.values()]
            )
        yield GaugeMetricFamily(
            "locker_node_outbox_depth", "Events not yet delivered to central.", value=depth
        )
        for name, (event_type, help_text) in COUNTED_EVENTS.items():
            yield CounterMetricFamily(name, help_text, value=counts[event_type])
        info = GaugeMetricFamily("locker_node_info", "The bank this node serves.", labels=["bank"])
        info.add_metric([self._bank_id], 1)
        yield info


def build_registry(engine: Engine, doors: DoorController, bank_id: str) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(engine, doors, bank_id))
    return registry


def exposition(registry: CollectorRegistry) -> Response:
    """The registry's metrics now, in Prometheus text format."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
