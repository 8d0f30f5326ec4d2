"""The node's SQLite database: engine settings, transactions and schema upgrades on start."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import QueuePool

logger = logging.getLogger(__name__)

# The newest migration in migrations/node. A test checks it against Alembic's head, so a new
# migration cannot ship without this changing; a node at this revision skips importing Alembic.
SCHEMA_HEAD = "0003"

DATABASE_FILE = "node.db"


class StoreError(Exception):
    """Base of the local store's errors."""


class SchemaUpgradeFailed(StoreError):
    """The database could not be brought to the schema this node version needs."""


def database_path(data_dir: Path) -> Path:
    return data_dir / DATABASE_FILE


def make_engine(path: Path) -> Engine:
    """An engine on the SQLite file at `path`: WAL, foreign keys, writers queue up."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        # Owner-only from the start; SQLite gives its -wal and -shm files the same mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    engine = create_engine(
        f"sqlite:///{path}",
        # 32 prepared statements per connection cover every query the node makes; the default
        # 128 would hold memory for statements it never runs.
        connect_args={"timeout": 30, "check_same_thread": False, "cached_statements": 32},
        poolclass=QueuePool,
        pool_size=2,
        max_overflow=6,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite would begin transactions lazily and deferred; a deferred reader that later
        # writes can fail with SQLITE_BUSY instead of waiting, so transactions are ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit survives a power cut, not only a process crash. A node writes a few
        # rows per door opening, so the extra fsync costs nothing anyone notices.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Deleted content is zeroed in its page, not left readable in free space of the file.
        cursor.execute("PRAGMA secure_delete=ON")
        # The whole database of a bank is a few megabytes; a small page cache per connection
        # keeps the node's memory flat.
        cursor.execute("PRAGMA cache_size=-128")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: a check-then-write (bind a free compartment,
        # use a code once) can never interleave with another writer.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One unit of work: commits when the block ends, rolls back on any error."""
    with engine.begin() as connection:
        yield connection


def current_revision(path: Path) -> str | None:
    """The schema revision recorded in the file, read with plain sqlite3 (no Alembic import)."""
    if not path.exists():
        return None
    with closing(sqlite3.connect(path)) as connection:
        row = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).fetchone()
        if row is None:
            return None
        version = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if version is None else str(version[0])


def ensure_schema(path: Path, *, in_process: bool = False) -> bool:
    """Upgrade the database to `SCHEMA_HEAD` if needed; True if an upgrade ran.

    By default the upgrade runs in a short-lived child process: Alembic costs about 10 MB of
    resident memory that a node would otherwise carry for months after using it once.
    """
    if current_revision(path) == SCHEMA_HEAD:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    if in_process:
        from locker_node.store.migrate import upgrade

        upgrade(path)
    else:
        logger.info("upgrading the node database schema in %s", path)
        completed = subprocess.run(  # noqa: S603 - our own interpreter and module, no shell
            [sys.executable, "-m", "locker_node.store.migrate", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise SchemaUpgradeFailed(
                f"schema upgrade of {path} failed:\n{completed.stderr.strip()}"
            )
    revision = current_revision(path)
    if revision != SCHEMA_HEAD:
        raise SchemaUpgradeFailed(f"{path} is at schema {revision!r}, expected {SCHEMA_HEAD!r}")
    return True
