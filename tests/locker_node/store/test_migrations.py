"""The node's own Alembic migrations: they match the tables, and a node upgrades on start."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, insert, inspect, text
from sqlalchemy.exc import IntegrityError

from locker_node.store.database import (
    SCHEMA_HEAD,
    SchemaUpgradeFailed,
    current_revision,
    ensure_schema,
    make_engine,
    transaction,
)
from locker_node.store.migrate import alembic_config, downgrade, upgrade
from locker_node.store.schema import audit_log, metadata


def test_models_and_migrations_agree(database: Path) -> None:
    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    engine.dispose()

    assert differences == []


def test_schema_head_is_the_newest_migration() -> None:
    script = ScriptDirectory.from_config(alembic_config(Path("unused.db")))

    assert script.get_heads() == [SCHEMA_HEAD]


def test_downgrade_to_base_and_back(database: Path) -> None:
    downgrade(database, "base")
    engine = create_engine(f"sqlite:///{database}")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(database)
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_a_node_upgrades_a_fresh_database_in_a_child_process(tmp_path: Path) -> None:
    path = tmp_path / "data" / "node.db"

    assert ensure_schema(path) is True
    assert current_revision(path) == SCHEMA_HEAD
    assert ensure_schema(path) is False  # at head: nothing to do, no Alembic import


def test_an_upgrade_that_fails_is_a_loud_error(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('from-the-future')")
        conn.commit()

    with pytest.raises(SchemaUpgradeFailed, match="from-the-future"):
        ensure_schema(path)


def test_the_database_runs_in_wal_mode_with_foreign_keys(engine: Engine) -> None:
    with transaction(engine) as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_the_audit_log_is_append_only(engine: Engine) -> None:
    from datetime import UTC, datetime

    with transaction(engine) as conn:
        conn.execute(
            insert(audit_log).values(
                at=datetime.now(UTC), actor="test", action="door_open", reason="why"
            )
        )
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(IntegrityError, match="append-only"), transaction(engine) as conn:
            conn.execute(text(statement))
    with transaction(engine) as conn:
        assert conn.execute(text("SELECT actor FROM audit_log")).scalar_one() == "test"


def test_make_engine_creates_the_data_directory(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "deep" / "er" / "node.db")
    with transaction(engine) as conn:
        conn.exec_driver_sql("SELECT 1")
    engine.dispose()
    assert (tmp_path / "deep" / "er" / "node.db").exists()
