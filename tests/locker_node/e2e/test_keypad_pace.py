"""A real node while someone keeps typing wrong codes at its keypad: the recipient with the right
code still gets in after at most one pace, and typing it again is "already collected", not a
strike. The pace is 2 s here instead of 30 s so that the test takes seconds; the arithmetic that
bounds the guesses is the same (tests/locker_node/domain/test_lockout.py)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from locker_node.store import outbox
from locker_node.store.database import DATABASE_FILE, make_engine, transaction
from locker_node.store.keys import NodeKeys
from locker_node.store.migrate import upgrade
from tests.locker_node.e2e.nodes import free_port, node_process
from tests.locker_node.e2e.test_board_fault import board_process
from tests.locker_node.e2e.test_board_fault import seed as seed_reservations
from tests.locker_node.kiosk.rig import COURIER_CODE, open_sealed

PACE_S = 2
WRONG = "0000000000"


def write_config(directory: Path, *, port: int, board: str) -> Path:
    lines = [
        'bank_id = "SILENT-1"',
        'data_dir = "data"',
        "[kiosk]",
        f"port = {port}",
        "[pickup.keypad]",
        f"first_lockout_s = {PACE_S}",
        f"max_lockout_s = {PACE_S}",
        "[doors]",
        "confirm_window_ms = 300",
        "confirm_poll_ms = 10",
        "[[boards]]",
        'name = "left"',
        'protocol = "kerong-cu16"',
        f'port = "{board}"',
        "locks = 4",
    ]
    for lock in range(1, 5):
        lines += ["[[compartments]]", f'label = "A0{lock}"', 'size = "S"']
        lines += ['board = "left"', f"lock = {lock}"]
    path = directory / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_recipient_gets_in_while_someone_keeps_guessing_at_the_keypad(tmp_path: Path) -> None:
    with ExitStack() as stack:
        board = stack.enter_context(board_process())
        port = free_port()
        config = write_config(tmp_path, port=port, board=board.path)
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        upgrade(data_dir / DATABASE_FILE)
        engine = make_engine(data_dir / DATABASE_FILE)
        stack.callback(engine.dispose)
        seed_reservations(engine)
        client = stack.enter_context(httpx.Client(timeout=30))
        node = stack.enter_context(node_process(config, port=port))
        node.wait_ready(client)
        base = node.base_url
        login = client.post(
            f"{base}/api/courier/login", json={"carrier": "ups", "pin": COURIER_CODE}
        )
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        opened = client.post(
            f"{base}/api/courier/deposit", json={"tracking_number": "SILENT01"}, headers=headers
        ).json()
        board.control(f"close {opened['compartment'][-1]}")
        confirmed = client.post(
            f"{base}/api/courier/deposit/{opened['deposit_id']}/confirm", headers=headers
        )
        assert confirmed.status_code == 200, confirmed.text
        with transaction(engine) as conn:
            [event] = [e for e in outbox.outbox_events(conn) if e.type == "parcel.deposited"]
        code = open_sealed(NodeKeys.load_or_create(data_dir), event.data)["pickup_code"]

        # Someone types wrong codes as fast as the keypad takes them, for a few paces.
        waits = []
        deadline = time.monotonic() + 4 * PACE_S
        while time.monotonic() < deadline:
            answer = client.post(f"{base}/api/pickup", json={"code": WRONG})
            assert answer.status_code in (401, 429), answer.text
            waits.append(answer.json().get("retry_after_s", 0))
            time.sleep(0.05)
        assert max(waits) == PACE_S  # the keypad paced them, and never for longer

        # The recipient steps up right behind a guess.
        client.post(f"{base}/api/pickup", json={"code": WRONG})
        refused = client.post(f"{base}/api/pickup", json={"code": code})
        assert refused.status_code == 429 and refused.json()["retry_after_s"] <= PACE_S
        time.sleep(refused.json()["retry_after_s"])
        picked = client.post(f"{base}/api/pickup", json={"code": code})
        assert picked.status_code == 200, f"{picked.text}\n{node.log_text()}"
        assert picked.json()["compartment"] == opened["compartment"]

        again = client.post(f"{base}/api/pickup", json={"code": code})
        assert again.status_code == 409 and again.json()["error"] == "already_collected"
