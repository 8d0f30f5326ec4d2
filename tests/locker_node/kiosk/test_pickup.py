"""Recipients: a code or a QR opens the right door once; wrong codes lock the keypad."""

from __future__ import annotations

from locker_node.domain.lifecycle import CodeStatus, Occupancy, ParcelStatus
from locker_node.hardware.simulator import Fault
from locker_node.store import outbox
from locker_node.store import repository as repo
from locker_node.store.database import transaction
from tests.locker_node.kiosk.rig import Rig


def deposited(rig: Rig, tracking: str = "1Z0001", *, size: str = "S") -> tuple[str, str, str]:
    """A parcel in the locker: (parcel id, compartment, pickup code)."""
    rig.add_reservation(tracking, size=size)
    confirmed = rig.deposit(tracking, rig.login())
    secrets = rig.secrets_for(confirmed["parcel_id"])
    return confirmed["parcel_id"], confirmed["compartment"], secrets["pickup_code"]


def code_row(rig: Rig, parcel_id: str) -> repo.PickupCode:
    with transaction(rig.engine) as conn:
        row = repo.get_pickup_code(conn, parcel_id)
    assert row is not None
    return row


WRONG = "0000000000"


def wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def test_the_code_opens_its_door_once_and_dies(rig: Rig) -> None:
    parcel_id, label, code = deposited(rig)

    answer = rig.pickup(code)

    assert answer.status_code == 200
    assert answer.json() == {
        "compartment": label,
        "door": "open",
        "compartments": [label],
        "failed": [],
    }
    assert rig.door_is_open(label)
    assert rig.parcel(parcel_id).status == ParcelStatus.PICKED_UP
    assert rig.compartment(label).occupancy == Occupancy.FREE
    row = code_row(rig, parcel_id)
    assert row.status == CodeStatus.USED
    [event] = rig.events("parcel.picked_up")
    assert event.data["parcel_id"] == parcel_id and event.data["via"] == "code"
    again = rig.pickup(code)
    # The recipient typing their code again: told so, and no strike against the keypad.
    assert again.status_code == 409 and again.json()["error"] == "already_collected"
    assert "attempts_left" not in again.json()
    assert rig.client.get("/api/status").json()["keypad"] == {"locked": False, "retry_after_s": 0}
    # A day later the used code's hashes are forgotten, as a dead code's are at once.
    rig.clock.advance(days=1, seconds=1)
    rig.node.flows.housekeeping()
    row = code_row(rig, parcel_id)
    assert (row.status, row.code_hash, row.qr_hash) == (CodeStatus.USED, None, None)
    assert rig.pickup(code).json()["error"] == "invalid_code"


def test_the_qr_payload_opens_the_same_door(rig: Rig) -> None:
    parcel_id, label, code = deposited(rig)
    token = rig.secrets_for(parcel_id)["qr_payload"]

    answer = rig.client.post("/api/pickup/qr", json={"token": token})

    assert answer.status_code == 200 and answer.json()["compartment"] == label
    assert rig.parcel(parcel_id).status == ParcelStatus.PICKED_UP
    # The code died with the QR's use: it opens nothing, and says the parcel is collected.
    assert rig.pickup(code).json()["error"] == "already_collected"
    assert rig.client.post("/api/pickup/qr", json={"token": token}).status_code == 409


def test_each_code_opens_only_its_own_parcel(rig: Rig) -> None:
    first = deposited(rig, "1Z0001")
    second = deposited(rig, "1Z0002")
    assert first[1] != second[1]

    assert rig.pickup(second[2]).json()["compartment"] == second[1]
    assert rig.parcel(first[0]).status == ParcelStatus.IN_LOCKER
    assert rig.pickup(first[2]).json()["compartment"] == first[1]


def test_wrong_codes_count_down_then_lock_the_keypad(rig: Rig) -> None:
    parcel_id, _, code = deposited(rig)
    wrong = wrong_code(code)

    lefts = [rig.pickup(wrong).json().get("attempts_left") for _ in range(4)]
    locking = rig.pickup(wrong)
    during = rig.pickup(code)

    assert lefts == [4, 3, 2, 1]
    assert locking.status_code == 401
    assert locking.json()["attempts_left"] == 0 and locking.json()["retry_after_s"] == 30
    assert during.status_code == 429
    assert during.json()["error"] == "locked_out" and 0 < during.json()["retry_after_s"] <= 30
    assert during.headers["Retry-After"] == str(during.json()["retry_after_s"])
    assert rig.parcel(parcel_id).status == ParcelStatus.IN_LOCKER  # not even checked
    status = rig.client.get("/api/status").json()["keypad"]
    assert status["locked"] is True

    rig.clock.advance(seconds=31)
    assert rig.pickup(code).status_code == 200


def test_after_the_free_attempts_each_wrong_code_costs_a_steady_30_s(rig: Rig) -> None:
    retries = []
    for _ in range(12):
        answer = rig.pickup(WRONG)
        if "retry_after_s" in answer.json():
            retries.append(answer.json()["retry_after_s"])
            rig.clock.advance(seconds=answer.json()["retry_after_s"])
    assert retries == [30] * 8  # never growing: nobody waits longer behind a guesser


def test_a_recipient_gets_in_within_a_minute_while_someone_keeps_guessing(rig: Rig) -> None:
    parcel_id, label, code = deposited(rig)
    # Someone guesses as fast as the keypad takes codes, for an hour.
    for _ in range(120):
        answer = rig.pickup(WRONG)
        wait = answer.json().get("retry_after_s", 0)
        assert wait <= 30
        rig.clock.advance(seconds=wait)

    # The recipient arrives just after a guess: the keypad is paced, not locked for long.
    assert rig.pickup(WRONG).json()["retry_after_s"] == 30
    refused = rig.pickup(code)
    assert refused.status_code == 429 and refused.json()["retry_after_s"] <= 30
    rig.clock.advance(seconds=refused.json()["retry_after_s"])
    opened = rig.pickup(code)

    assert opened.status_code == 200 and opened.json()["compartment"] == label
    assert rig.parcel(parcel_id).status == ParcelStatus.PICKED_UP


def test_a_lockout_never_blocks_a_qr_pickup(rig: Rig) -> None:
    parcel_id, label, code = deposited(rig)
    for _ in range(5):
        rig.pickup(wrong_code(code))
    assert rig.pickup(code).status_code == 429

    token = rig.secrets_for(parcel_id)["qr_payload"]
    answer = rig.client.post("/api/pickup/qr", json={"token": token})

    assert answer.status_code == 200 and answer.json()["compartment"] == label


def test_a_door_that_does_not_open_keeps_the_parcel_and_the_code(rig: Rig) -> None:
    parcel_id, label, code = deposited(rig)
    rig.board.set_fault(Fault.JAM, lock=rig.lock_of(label))

    answer = rig.pickup(code)

    assert answer.status_code == 503
    assert answer.json()["error"] == "door_fault" and answer.json()["compartment"] == label
    assert rig.parcel(parcel_id).status == ParcelStatus.IN_LOCKER
    assert code_row(rig, parcel_id).status == CodeStatus.ACTIVE
    assert not rig.compartment(label).in_service
    assert rig.events("parcel.picked_up") == []

    rig.board.clear_faults()
    retried = rig.pickup(code)
    assert retried.status_code == 200 and retried.json()["compartment"] == label
    assert rig.parcel(parcel_id).status == ParcelStatus.PICKED_UP


def test_a_code_dies_at_the_pickup_deadline_and_the_parcel_waits_for_return(
    rig: Rig,
) -> None:
    parcel_id, label, code = deposited(rig)
    rig.clock.advance(hours=72, seconds=1)

    answer = rig.pickup(code)
    rig.node.flows.expire_due()

    assert answer.status_code == 401
    assert rig.parcel(parcel_id).status == ParcelStatus.EXPIRED
    assert code_row(rig, parcel_id).status == CodeStatus.EXPIRED
    assert [e.data["parcel_id"] for e in rig.events("parcel.expired")] == [parcel_id]
    assert rig.compartment(label).occupancy == Occupancy.OCCUPIED


def test_every_door_opening_is_in_the_audit_log(rig: Rig) -> None:
    _, label, code = deposited(rig)
    rig.pickup(code)

    with transaction(rig.engine) as conn:
        entries = outbox.audit_entries(conn, compartment=label)
    opens = [e for e in entries if e.action == "door_open"]
    assert [e.actor.split(":")[0] for e in opens] == ["courier", "recipient"]
    assert all(e.command_id and e.reason for e in opens)
    opened = {e.command_id for e in entries if e.action == "door_opened"}
    assert {e.command_id for e in opens} <= opened


def test_keypad_lockouts_survive_a_restart(rig: Rig) -> None:
    for _ in range(5):
        rig.pickup(WRONG)

    rig.restart()

    assert rig.pickup(WRONG).status_code == 429
