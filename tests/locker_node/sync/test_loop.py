"""The sync loop's edges: rejected and local-only events, heartbeats, the thread in a node."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from central.models import Node as CentralNode
from central.models import NodeEventRecord
from locker_node.app import build_node
from locker_node.config import SyncConfig, parse_config
from locker_node.hardware.simulated import SimulatedLockBoard
from locker_node.store import outbox
from locker_node.store.database import transaction
from locker_wire import events
from tests.clock import FakeClock
from tests.locker_node.kiosk.rig import node_config_data
from tests.locker_node.support import wait_until
from tests.locker_node.sync.conftest import SyncedNode


def test_a_rejected_event_is_marked_logged_and_never_sent_again(
    make_node: Callable[..., SyncedNode], clock: FakeClock, sessions: sessionmaker[Session]
) -> None:
    node = make_node()
    with transaction(node.node.engine) as conn:
        at = clock()
        parcel = {"carrier_id": "acme", "tracking_number": "ACME-1", "compartment": "A01"}
        rejected = outbox.record(
            conn,
            events.ParcelPickedUp(
                reservation_id="rsv_unknown", parcel_id="p1", picked_up_at=at, via="code", **parcel
            ),
            at=at,
            bank_id="NYC-1",
        )
        unsendable = outbox.record(
            conn,
            events.ParcelDeposited(
                reservation_id="rsv_x",
                parcel_id="p3",
                walk_up=False,
                reserved_size="S",
                compartment_size="S",
                deposited_at=at,
                pickup_deadline=at,
                sealed_pickup_code="not a seal",
                sealed_qr_payload="not a seal",
                **parcel,
            ),
            at=at,
            bank_id="NYC-1",
        )
        local = outbox.record(
            conn,
            events.ParcelExpired(reservation_id="rsv_y", parcel_id="p2", expired_at=at, **parcel),
            at=at,
            bank_id="NYC-1",
        )

    assert node.sync.run_once()
    assert node.sync.run_once()

    assert node.transport.batches == [[rejected]]  # the local-only event never travels
    assert all(e.sent_at is not None for e in node.outbox())
    with transaction(node.node.engine) as conn:
        audit = outbox.audit_for_command(conn, "event_rejected", rejected)
        broken = outbox.audit_for_command(conn, "event_rejected", unsendable)
        assert outbox.outbox_depth(conn) == 0
    assert broken is not None and broken.reason.startswith("unsendable")
    assert audit is not None and audit.reason.startswith("unknown_reservation")
    with sessions() as session:
        record = session.get(NodeEventRecord, rejected)
        assert record is not None and record.status == "rejected"
        assert session.get(NodeEventRecord, local) is None


def test_heartbeat_reports_doors_boards_and_outbox_depth(
    make_node: Callable[..., SyncedNode], sessions: sessionmaker[Session]
) -> None:
    node = make_node()
    label = node.config.compartments[0].label
    node.board.force_open(node.lock_of(label))
    node.node.doors.poll()
    node.transport.down = True
    node.node.doors.mark_out_of_service(label, "test")
    assert not node.sync.run_once()
    node.transport.down = False

    node.sync.send_heartbeat()

    with sessions() as session:
        central = session.get(CentralNode, node.node_id)
        assert central is not None and central.health is not None
        health = central.health
    assert health["doors"][label] == "open"
    assert health["boards"] == {"main": "ok"}
    assert health["outbox_depth"] == len([e for e in node.outbox() if e.sent_at is None]) > 0


def test_a_started_node_syncs_from_its_own_thread_and_stops_cleanly(
    make_node: Callable[..., SyncedNode], sessions: sessionmaker[Session]
) -> None:
    node = make_node(interval_s=0.05)
    node.node.doors.mark_out_of_service(node.config.compartments[0].label, "test")

    node.sync.start()
    try:
        wait_until(lambda: node.sync.read_cursor() is not None, what="a feed pass")
        wait_until(lambda: all(e.sent_at for e in node.outbox()), what="outbox delivered")
    finally:
        node.sync.stop()

    with sessions() as session:
        central = session.get(CentralNode, node.node_id)
        assert central is not None and central.health is not None


def test_sync_settings_have_defaults() -> None:
    config = SyncConfig()
    assert (config.interval_s, config.heartbeat_s, config.batch_size) == (2.0, 30.0, 500)
    assert config.feed_interval_s == 600.0
    assert (config.remote_open_limit, config.remote_open_window_s) == (3, 600)


def test_a_node_with_a_central_url_but_no_enrollment_serves_without_sync(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = {**node_config_data(tmp_path / "data"), "central_url": "http://127.0.0.1:9"}
    node = build_node(
        parse_config(data),
        boards={"main": SimulatedLockBoard(name="main", lock_count=16, door_delay_s=0.0)},
        migrate_in_process=True,
    )
    node.engine.dispose()
    assert node.sync is None
    assert "run locker-node provision" in caplog.text
