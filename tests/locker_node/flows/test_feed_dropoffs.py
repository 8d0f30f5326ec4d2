"""Drop-off codes arrive in the feed as hashes; a cancelled or expired drop-off's code dies."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from locker_node.domain.credentials import verify_courier_code
from locker_node.domain.lifecycle import CodeStatus, ReservationStatus
from locker_node.flows import dropoff
from locker_node.flows.errors import InvalidCode, Refused
from locker_node.flows.facade import LockerFlows
from locker_node.flows.feed import cancel_reservation
from locker_node.store import dropoffs as store
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from tests.locker_node.dropoffs import (
    CODE,
    QR,
    add_dropoff,
    code_hashes,
    code_in,
    feed,
    feed_row,
)
from tests.locker_node.kiosk.rig import Rig


def code_row(rig: Rig, reservation_id: str) -> store.DropoffCode | None:
    with transaction(rig.engine) as conn:
        return store.get_code(conn, reservation_id)


def status_of(rig: Rig, reservation_id: str) -> str:
    with transaction(rig.engine) as conn:
        found = repo.get_reservation(conn, reservation_id)
    assert found is not None
    return found.status


def test_a_reserved_drop_off_brings_its_code_as_hashes_only(rig: Rig) -> None:
    flows: LockerFlows = rig.node.flows
    reservation_id = add_dropoff(flows, "RET0001")
    add_dropoff(flows, "RET0001")  # the same page again: one row, unchanged

    row = code_row(rig, reservation_id)
    assert row is not None and row.status == CodeStatus.ACTIVE
    assert row.code_hash is not None and row.code_hash.startswith("$scrypt$n=16,r=1,p=1$")
    assert verify_courier_code(row.code_hash, CODE)
    assert row.qr_hash == code_hashes(CODE, QR).qr_hash
    with transaction(rig.engine) as conn:
        stored = repo.get_reservation(conn, reservation_id)
    assert stored is not None and stored.kind == "dropoff"
    dump = repr(rig.snapshot())
    assert CODE not in dump and QR not in dump


def test_central_may_change_a_live_code(rig: Rig) -> None:
    flows = rig.node.flows
    reservation_id = add_dropoff(flows, "RET0001")
    add_dropoff(flows, "RET0001", code="9999999999", qr="dropoff-qr-token-new")

    with pytest.raises(InvalidCode):
        flows.start_dropoff(CODE)
    assert flows.start_dropoff("9999999999").door == "open"
    assert code_row(rig, reservation_id) is not None


@pytest.mark.parametrize(
    ("status", "code_status"), [("cancelled", "revoked"), ("expired", "expired")]
)
def test_a_cancelled_or_expired_drop_off_kills_its_code(
    rig: Rig, status: str, code_status: str
) -> None:
    flows = rig.node.flows
    reservation_id = add_dropoff(flows, "RET0001")

    flows.apply_feed_page(feed(feed_row(reservation_id, "RET0001", now=rig.clock(), status=status)))

    row = code_row(rig, reservation_id)
    assert row is not None and row.status == code_status
    assert (row.code_hash, row.qr_hash) == (None, None)
    assert status_of(rig, reservation_id) == status
    with pytest.raises(InvalidCode):
        flows.start_dropoff(CODE)
    # Heard again as reserved (an old page): the code stays dead.
    add_dropoff(flows, "RET0001")
    assert code_row(rig, reservation_id).status == code_status  # type: ignore[union-attr]


def test_a_sender_at_the_door_keeps_the_drop_off(rig: Rig) -> None:
    flows = rig.node.flows
    reservation_id = add_dropoff(flows, "RET0001")
    opened = flows.start_dropoff(CODE)

    for status in ("cancelled", "expired"):
        row = feed_row(reservation_id, "RET0001", now=rig.clock(), status=status)
        flows.apply_feed_page(feed(row))

    assert status_of(rig, reservation_id) == ReservationStatus.RESERVED
    assert code_row(rig, reservation_id).status == CodeStatus.ACTIVE  # type: ignore[union-attr]
    rig.close_door(opened.compartment)
    assert flows.confirm_dropoff(opened.dropoff_id).compartment == opened.compartment


def test_an_expired_delivery_is_left_to_the_node(rig: Rig) -> None:
    reservation_id = rig.add_reservation("1Z0001")
    row = feed_row(reservation_id, "1Z0001", now=rig.clock(), status="expired", code=None)

    rig.node.flows.apply_feed_page(feed(row.model_copy(update={"kind": "delivery"})))

    assert status_of(rig, reservation_id) == ReservationStatus.RESERVED


def test_codes_the_node_cannot_check_are_refused(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    flows = rig.node.flows
    reservation_id = add_dropoff(flows, "RET0001", code=None)  # type: ignore[arg-type]
    costly = code_hashes(CODE, QR).model_copy(update={"n": 2**20})
    row = feed_row(reservation_id, "RET0001", now=rig.clock())

    with caplog.at_level(logging.ERROR, logger="locker_node.flows.feed"):
        flows.apply_feed_page(feed(row.model_copy(update={"dropoff_code": costly})))

    assert code_row(rig, reservation_id) is None
    assert "refused" in caplog.text and CODE not in caplog.text
    delivery = rig.add_reservation("1Z0001")
    with transaction(rig.engine) as conn:
        bad_qr = code_in(CODE, QR)
        with pytest.raises(Refused, match="SHA-256"):
            dropoff.store_code(
                conn,
                reservation_id,
                dropoff.DropoffCodeIn(**{**bad_qr.__dict__, "qr_hash": "abc"}),
                rig.clock(),
            )
        with pytest.raises(Refused, match="not a drop-off"):
            dropoff.store_code(conn, delivery, code_in(CODE, QR), rig.clock())


def test_a_qr_hash_belongs_to_one_drop_off(rig: Rig) -> None:
    flows = rig.node.flows
    add_dropoff(flows, "RET0001")
    second = add_dropoff(flows, "RET0002", code="2222222222")  # the same QR payload

    assert code_row(rig, second) is None
    assert flows.start_dropoff_qr(QR).door == "open"


def test_a_drop_off_heard_again_after_it_was_deposited_keeps_its_used_code(rig: Rig) -> None:
    flows = rig.node.flows
    reservation_id = add_dropoff(flows, "RET0001")
    opened = flows.start_dropoff(CODE)
    rig.close_door(opened.compartment)
    flows.confirm_dropoff(opened.dropoff_id)

    add_dropoff(flows, "RET0001", hold=timedelta(hours=48))

    assert code_row(rig, reservation_id).status == CodeStatus.USED  # type: ignore[union-attr]
    assert status_of(rig, reservation_id) == ReservationStatus.DEPOSITED


def test_a_cancel_from_central_ends_the_code_too(rig: Rig) -> None:
    reservation_id = add_dropoff(rig.node.flows, "RET0001")

    with transaction(rig.engine) as conn:
        cancelled = cancel_reservation(conn, reservation_id, rig.clock())

    row = code_row(rig, reservation_id)
    assert cancelled and row is not None and row.status == CodeStatus.REVOKED
    assert (row.code_hash, row.qr_hash) == (None, None)
