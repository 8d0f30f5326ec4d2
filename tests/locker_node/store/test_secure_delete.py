"""Deleted rows leave the node's SQLite file: connections overwrite deleted content."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, event, insert

from locker_node.store.database import make_engine, transaction
from locker_node.store.schema import outbox

SECRET_TEXT = "Quillon Marchbanks-Oduya, 4 Wrenfield Mews"


def test_connections_overwrite_deleted_content(database: Path) -> None:
    engine = make_engine(database)
    statements: list[str] = []

    # Runs before the store's own listener, so the trace sees the PRAGMAs it sends.
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


def test_a_deleted_row_is_gone_from_the_file_after_a_checkpoint(
    engine: Engine, database: Path
) -> None:
    wal = Path(f"{database}-wal")
    with transaction(engine) as conn:
        conn.execute(
            insert(outbox).values(
                event_id="00000000-0000-4000-8000-000000000001",
                type="test.private",
                created_at=datetime.now(UTC),
                payload=f'{{"address": "{SECRET_TEXT}"}}',
            )
        )
    # The test would prove nothing if the row never reached the files.
    assert SECRET_TEXT.encode() in database.read_bytes() + wal.read_bytes()

    with transaction(engine) as conn:
        conn.execute(delete(outbox).where(outbox.c.type == "test.private"))
    # A raw connection: through SQLAlchemy the PRAGMA would run inside the store's BEGIN
    # IMMEDIATE, where no checkpoint can complete.
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert cursor.fetchone()[0] == 0  # not busy: every frame is in the file
        cursor.close()
    finally:
        connection.close()

    assert SECRET_TEXT.encode() not in database.read_bytes()
    assert SECRET_TEXT.encode() not in wal.read_bytes()
