"""Engine, sessions and schema migrations for central's database."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations" / "central"


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """Build an engine; SQLite gets WAL, foreign keys and writer-serialising transactions."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, future=True
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling would start transactions lazily and deferred; a
        # deferred reader that later writes can fail with SQLITE_BUSY instead of waiting.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front, so writers queue (busy_timeout) instead of
        # failing mid-transaction; SQLite has one writer at a time anyway.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def async_twin(engine: Engine, pool_size: int) -> Callable[[], AsyncEngine] | None:
    """PostgreSQL: builds an asyncio engine on the same database, for work run on an event loop
    (one per loop: asyncio connections belong to the loop that opened them); SQLite: None.

    Its connections are in autocommit, for work whose every write is one atomic statement (the
    reservation batches), and are not pinged when checked out: its user makes the work again
    when a connection turns out to be lost (`DBAPIError.connection_invalidated`)."""
    if engine.dialect.name != "postgresql":
        return None
    return functools.partial(
        create_async_engine,
        engine.url,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=False,
        isolation_level="AUTOCOMMIT",
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(url: str) -> None:
    """Bring the schema to the newest migration (`alembic upgrade head`)."""
    command.upgrade(alembic_config(url), "head")


def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE or DELETE (typed: `Session.execute` returns a plain `Result`)."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"an UPDATE or DELETE gives a CursorResult, not {type(result).__name__}")
    return result.rowcount
