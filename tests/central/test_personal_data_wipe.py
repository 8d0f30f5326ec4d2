"""A recipient wiped from a reservation is gone from the database's files, not only from queries."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from central.context import Ctx
from central.db import make_engine
from central.keys import ServiceKeys
from central.models import Reservation
from central.reservations.transitions import expire_holds
from tests.central.conftest import TEST_SECRET, World
from tests.clock import FakeClock

NAME = "Zebulon Quaxworth-Piddock"
EMAIL = "zebulon.quaxworth@example.org"
PHONE = "+1 555 0199 7788"

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def reserve_for_recipient(client: TestClient, world: World) -> str:
    body = {
        "tracking_number": "ACME-PII-1",
        "bank_id": "NYC-1",
        "size": "S",
        "recipient": {"name": NAME, "email": EMAIL, "phone": PHONE},
    }
    response = client.post("/v1/reservations", json=body, headers=world.auth("acme"))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def file_bytes(database_url: str) -> dict[str, bytes]:
    """The database file and its write-ahead log, as they are on disk now."""
    database = make_url(database_url).database
    assert database
    files = (Path(database), Path(f"{database}-wal"))
    return {path.name: path.read_bytes() if path.exists() else b"" for path in files}


def recipient_traces(database_url: str) -> list[tuple[str, str]]:
    return [
        (name, needle)
        for name, content in file_bytes(database_url).items()
        for needle in (NAME, EMAIL, PHONE)
        if needle.encode() in content
    ]


def expire_due_holds(sessions: sessionmaker[Session], clock: FakeClock) -> int:
    """The scheduler's `expire_reservations` job, run once."""
    with sessions.begin() as session:
        return expire_holds(
            Ctx(session=session, keys=ServiceKeys(TEST_SECRET.encode()), now=clock())
        )


@sqlite_only
def test_central_sqlite_connections_overwrite_deleted_content(database_url: str) -> None:
    engine = make_engine(database_url)
    statements: list[str] = []

    # Runs before central's own listener, so the trace sees the PRAGMAs it sends.
    @event.listens_for(engine, "connect", insert=True)
    def _trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA secure_delete").scalar_one() == 1
    finally:
        engine.dispose()
    # Asked for, not only this SQLite build's default (Debian's is compiled with it on).
    assert "PRAGMA secure_delete=ON" in statements


@sqlite_only
def test_a_cancelled_recipient_is_gone_from_the_sqlite_files(
    client: TestClient, world: World, database_url: str, sessions: sessionmaker[Session]
) -> None:
    rid = reserve_for_recipient(client, world)
    # The test would prove nothing if the recipient never reached the files.
    assert {needle for _, needle in recipient_traces(database_url)} == {NAME, EMAIL, PHONE}

    response = client.delete(f"/v1/reservations/{rid}", headers=world.auth("acme"))
    assert response.status_code == 200, response.text

    with sessions() as session:
        reservation = session.get(Reservation, rid)
        assert reservation is not None
        assert reservation.recipient is None
    assert recipient_traces(database_url) == []


@sqlite_only
def test_the_expiry_job_leaves_no_recipient_in_the_sqlite_files(
    client: TestClient,
    world: World,
    database_url: str,
    sessions: sessionmaker[Session],
    clock: FakeClock,
) -> None:
    reserve_for_recipient(client, world)
    clock.advance(timedelta(days=30).total_seconds())
    assert expire_due_holds(sessions, clock) == 1
    assert recipient_traces(database_url) == []


@sqlite_only
def test_a_busy_checkpoint_is_logged_and_the_cancel_still_succeeds(
    client: TestClient,
    world: World,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rid = reserve_for_recipient(client, world)
    database = make_url(database_url).database
    assert database
    # A reader holding a snapshot pins the write-ahead log: it cannot be truncated meanwhile.
    # (Plain sqlite3: central's own transactions begin IMMEDIATE, which would take the write lock.)
    with closing(sqlite3.connect(database, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM reservations").fetchone()
        with caplog.at_level(logging.WARNING, logger="central.db"):
            response = client.delete(f"/v1/reservations/{rid}", headers=world.auth("acme"))
        assert response.status_code == 200, response.text
        assert "checkpoint" in caplog.text
        assert recipient_traces(database_url) != []
    assert response.json()["status"] == "cancelled"


@postgresql_only
def test_the_expiry_job_vacuums_reservations_on_postgresql(
    client: TestClient, world: World, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    def manual_vacuums() -> Any:
        with sessions() as session:
            return session.execute(
                text("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'reservations'")
            ).scalar_one()

    before = manual_vacuums()
    reserve_for_recipient(client, world)
    assert expire_due_holds(sessions, clock) == 0
    assert manual_vacuums() == before  # nothing wiped, nothing to vacuum

    clock.advance(timedelta(days=30).total_seconds())
    assert expire_due_holds(sessions, clock) == 1
    assert manual_vacuums() == before + 1
