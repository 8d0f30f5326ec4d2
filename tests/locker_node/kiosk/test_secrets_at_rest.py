"""No pickup code, QR token, courier code or session token in clear: not in the database, its
write-ahead log, the outbox, or the logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from locker_node.store.database import DATABASE_FILE, ensure_schema, make_engine
from locker_node.store.keys import NodeKeys
from tests.locker_node.kiosk.rig import COURIER_CODE, Rig


def stored_bytes(data_dir: Path) -> bytes:
    files = [data_dir / name for name in (DATABASE_FILE, f"{DATABASE_FILE}-wal")]
    return b"".join(path.read_bytes() for path in files if path.exists())


def test_secrets_never_reach_the_store_or_the_logs(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    login = rig.client.post("/api/courier/login", json={"carrier": "ups", "pin": COURIER_CODE})
    session_token = login.json()["token"]
    headers = {"Authorization": f"Bearer {session_token}"}
    secrets = []
    for n in range(3):
        rig.add_reservation(f"1Z000{n}")
        confirmed = rig.deposit(f"1Z000{n}", headers)
        secrets.append(rig.secrets_for(confirmed["parcel_id"]))
    rig.pickup("0000000000")  # a wrong one, logged as a refusal
    assert rig.pickup(secrets[0]["pickup_code"]).status_code == 200
    qr = rig.client.post("/api/pickup/qr", json={"token": secrets[1]["qr_payload"]})
    assert qr.status_code == 200
    rig.close()  # checkpoints the WAL into the file as well

    at_rest = stored_bytes(rig.config.data_dir)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    outbox = "\n".join(event.payload for event in rig.events())
    clear = [COURIER_CODE, session_token]
    for issued in secrets:
        clear += [issued["pickup_code"], issued["qr_payload"]]
    assert logged and len(at_rest) > 10_000  # there was something to look through
    for secret in clear:
        assert secret.encode() not in at_rest
        assert secret not in logged
        assert secret not in outbox


def test_the_node_secret_and_database_are_for_their_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    NodeKeys.load_or_create(data_dir)
    ensure_schema(data_dir / DATABASE_FILE, in_process=True)
    make_engine(data_dir / DATABASE_FILE).dispose()

    [secret_file] = data_dir.glob("*.key")
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert (data_dir / DATABASE_FILE).stat().st_mode & 0o777 == 0o600
    assert data_dir.stat().st_mode & 0o077 == 0
