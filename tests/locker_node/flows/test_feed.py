"""Changes central pushes through its feed: reservations and courier credentials in, checked."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from locker_node.domain.credentials import hash_courier_code, verify_courier_code
from locker_node.domain.lifecycle import ReservationStatus
from locker_node.flows.errors import Refused
from locker_node.flows.feed import (
    CourierCredentialIn,
    ReservationIn,
    add_courier_credential,
    apply_reservation,
    cancel_reservation,
)
from locker_node.store import couriers
from locker_node.store import repository as repo
from locker_node.store.database import transaction

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def reservation(**changes: object) -> ReservationIn:
    values: dict[str, object] = {
        "id": "r1",
        "carrier_id": "ups",
        "tracking_number": "1z 999-01",
        "size": "M",
        "reserved_until": NOW + timedelta(hours=72),
    }
    values.update(changes)
    return ReservationIn(**values)  # type: ignore[arg-type]


def test_a_reservation_is_stored_normalised_and_updated_until_deposited(engine: Engine) -> None:
    with transaction(engine) as conn:
        apply_reservation(conn, reservation(), NOW)
        apply_reservation(conn, reservation(size="L"), NOW)
        stored = repo.get_reservation(conn, "r1")
    assert stored is not None
    assert (stored.tracking_number, stored.size, stored.status) == ("1Z99901", "L", "reserved")

    with transaction(engine) as conn:
        repo.update_reservation(conn, "r1", NOW, status=ReservationStatus.DEPOSITED)
        apply_reservation(conn, reservation(size="S"), NOW)
        stored = repo.get_reservation(conn, "r1")
    assert stored is not None and stored.size == "L"  # the node's later state wins


def test_cancel_only_before_deposit(engine: Engine) -> None:
    with transaction(engine) as conn:
        apply_reservation(conn, reservation(), NOW)
        assert cancel_reservation(conn, "r1", NOW) is True
        assert cancel_reservation(conn, "r1", NOW) is False
        assert cancel_reservation(conn, "unknown", NOW) is False


@pytest.mark.parametrize(
    "changes",
    [
        {"id": ""},
        {"tracking_number": "??"},
        {"carrier_id": "U P S"},
        {"size": "XXL"},
        {"reserved_until": datetime(2026, 3, 5, 12, 0)},
    ],
)
def test_bad_reservations_are_refused(engine: Engine, changes: dict[str, object]) -> None:
    with pytest.raises(Refused), transaction(engine) as conn:
        apply_reservation(conn, reservation(**changes), NOW)


def test_courier_credentials_are_hashes_valid_for_a_window(engine: Engine) -> None:
    code_hash = hash_courier_code("24681357")
    credential = CourierCredentialIn("ups", code_hash, NOW, NOW + timedelta(days=1))
    with transaction(engine) as conn:
        add_courier_credential(conn, credential, NOW)
        add_courier_credential(conn, credential, NOW)  # the same again: one row
        today = couriers.valid_credential_hashes(conn, "ups", NOW + timedelta(hours=1))
        tomorrow = couriers.valid_credential_hashes(conn, "ups", NOW + timedelta(days=1, seconds=1))
    assert today == [code_hash] and tomorrow == []
    assert verify_courier_code(code_hash, "24681357")
    assert not verify_courier_code(code_hash, "24681358")
    assert not verify_courier_code("not a hash", "24681357")


def test_a_plain_code_is_never_accepted_as_a_hash(engine: Engine) -> None:
    with pytest.raises(Refused, match=r"\$scrypt\$"), transaction(engine) as conn:
        add_courier_credential(
            conn, CourierCredentialIn("ups", "24681357", NOW, NOW + timedelta(days=1)), NOW
        )


def test_a_hash_as_the_wire_carries_it_is_accepted(engine: Engine) -> None:
    salt = bytes(range(16))
    digest = hashlib.scrypt(b"24681357", salt=salt, n=2**14, r=8, p=1, dklen=32).hex()
    window = {"valid_from": NOW, "valid_until": NOW + timedelta(days=1)}
    credential = CourierCredentialIn.from_wire(
        carrier="ups", code_hash=digest, salt=salt.hex(), n=2**14, r=8, p=1, **window
    )
    with transaction(engine) as conn:
        add_courier_credential(conn, credential, NOW)
        [stored] = couriers.valid_credential_hashes(conn, "ups", NOW)
    assert verify_courier_code(stored, "24681357")
    with pytest.raises(Refused, match="out of range"):
        CourierCredentialIn.from_wire(
            carrier="ups", code_hash=digest, salt=salt.hex(), n=2**24, r=8, p=1, **window
        )
