"""The Alembic migrations and the SQLAlchemy models describe the same schema."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from central.db import alembic_config
from central.models import Base
from tests.central.conftest import PG_URL


def test_models_and_migrations_agree(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == []


def test_downgrade_to_base_and_back(database_url: str) -> None:
    config = alembic_config(database_url)
    command.downgrade(config, "base")
    engine = create_engine(database_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    command.upgrade(config, "head")
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_hosts_upgrading_together_take_turns(tmp_path: Path) -> None:
    """Two `db upgrade` at once on an empty PostgreSQL database (two hosts starting together):
    both succeed, one after the other, instead of racing to create the same tables."""
    if not PG_URL:
        pytest.skip("LOCKER_TEST_DATABASE_URL is not set")
    name = f"locker_upgrade_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        env = os.environ | {"LOCKER_DATABASE_URL": url, "LOCKER_DATA_DIR": str(tmp_path)}
        hosts = [
            subprocess.Popen(
                [sys.executable, "-m", "central.cli", "db", "upgrade"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(2)
        ]
        outputs = [host.communicate(timeout=60)[0].decode() for host in hosts]
        assert [host.returncode for host in hosts] == [0, 0], outputs
        engine = create_engine(url)
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
