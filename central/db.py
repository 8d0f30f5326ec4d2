"""Engine, sessions and schema migrations for central's database."""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import CursorResult, Engine, Result, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations" / "central"

# Session.info keys: what the open transaction wiped, and whether it has committed.
_WIPED = "central.db.wiped"
_COMMITTED = "central.db.wiped_committed"
# How long a checkpoint after a wipe waits for readers and a writer: its caller (a request, a
# job) is done already and should not wait the full busy_timeout for it.
CHECKPOINT_WAIT_MS = 250
BUSY_TIMEOUT_MS = 30000
# The read standby: a small pool (its reads are few and cached), a connect that gives up soon
# (reads then go to the primary), how long reads stay on the primary after a failed connect, and
# how often that is logged.
READ_POOL_SIZE = 4
READ_CONNECT_TIMEOUT_S = 3
STANDBY_RETRY_S = 10.0
STANDBY_WARN_EVERY_S = 60.0


class ReadReplicaConfigError(ValueError):
    """A read URL that cannot be a streaming standby of the primary."""


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
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # Deleted and overwritten content (a wiped recipient) is zeroed in its page, not left
        # in free space; `scrub_after_commit` then pushes those pages out of the WAL.
        cursor.execute("PRAGMA secure_delete=ON")
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


def make_read_engine(url: str, primary: Engine, *, pool_size: int = READ_POOL_SIZE) -> Engine:
    """An engine on a streaming standby of `primary`, for reads that may lag a little.

    Every transaction on it is read only twice over: `default_transaction_read_only` is set on
    each new connection and psycopg begins each transaction READ ONLY (`postgresql_readonly`),
    so a write sent here by mistake fails loudly, also on a standby that has been promoted.
    Refused at start unless both URLs are PostgreSQL: SQLite has no standbys.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend != primary.dialect.name:
        raise ReadReplicaConfigError(
            f"the read URL (LOCKER_DATABASE_READ_URL) is {backend} but the primary "
            f"(LOCKER_DATABASE_URL) is {primary.dialect.name}: it must be a streaming standby "
            "of the primary"
        )
    if backend != "postgresql":
        raise ReadReplicaConfigError(
            f"a read URL (LOCKER_DATABASE_READ_URL) needs PostgreSQL, not {backend}: it names a "
            "streaming standby, which SQLite does not have; leave it unset"
        )
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = READ_CONNECT_TIMEOUT_S
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,  # its users hold a limiter of pool_size: none waits in the pool
        pool_pre_ping=True,  # a standby restarted: its dead connections are replaced, not used
        connect_args=connect_args,
        execution_options={"postgresql_readonly": True},
    )
    event.listen(engine, "connect", _default_read_only)
    return engine


def _default_read_only(dbapi_connection: Any, _record: Any) -> None:
    # In autocommit: a SET inside the connection's first transaction would be undone when the
    # pool rolls that transaction back.
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET default_transaction_read_only = on")
        cursor.close()
    finally:
        dbapi_connection.autocommit = autocommit


class LaggingReads:
    """Transactions for reads that may lag a little: on the read standby, or on the primary when
    there is none or it cannot be connected to.

    The standby down is not the reader's failure: these reads ran on the primary before there was
    a standby, and their callers bound how many run at once. After a failed connect, reads go to
    the primary for `retry_after_s` (none waits for a connect timeout meanwhile) and the standby
    is then tried again; a warning is logged at most once every `warn_every_s`. Only the connect
    falls back: an error once connected is the caller's.
    """

    def __init__(
        self,
        standby: sessionmaker[Session],
        primary: sessionmaker[Session],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        retry_after_s: float = STANDBY_RETRY_S,
        warn_every_s: float = STANDBY_WARN_EVERY_S,
    ) -> None:
        self.standby = standby
        self.primary = primary
        self._monotonic = monotonic
        self._retry_after_s = retry_after_s
        self._warn_every_s = warn_every_s
        self._lock = threading.Lock()
        self._skip_until = float("-inf")
        self._warned_at = float("-inf")
        self._down = False

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in a transaction; closing rolls it back (a read has nothing to keep)."""
        with self._session() as session:
            yield session

    def _session(self) -> Session:
        if self.standby is self.primary:
            return self.primary()
        with self._lock:
            skip = self._monotonic() < self._skip_until
        if skip:
            return self.primary()
        session = self.standby()
        try:
            session.connection()  # connect now, where a standby that is down can be told apart
        except OperationalError as exc:
            session.close()
            self._standby_failed(exc)
            return self.primary()
        with self._lock:
            back, self._down = self._down, False
        if back:
            log.info("the read standby answers again; reads that may lag go to it")
        return session

    def _standby_failed(self, exc: OperationalError) -> None:
        now = self._monotonic()
        with self._lock:
            self._down = True
            self._skip_until = now + self._retry_after_s
            warn = now - self._warned_at >= self._warn_every_s
            if warn:
                self._warned_at = now
        if warn:
            log.warning(
                "the read standby cannot be connected to (%s); reads that may lag go to the "
                "primary, and the standby is tried again every %.0f s",
                " ".join(str(exc.orig or exc).split()),  # libpq's message spans lines
                self._retry_after_s,
            )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)
    event.listen(factory, "after_commit", _note_commit)
    event.listen(factory, "after_transaction_end", _scrub_if_committed)
    return factory


def scrub_after_commit(session: Session, tables: Iterable[str], *, vacuum: bool = False) -> None:
    """Ask that personal data this transaction wipes from `tables` leave the database's files
    once the transaction commits (with a session from `make_sessionmaker`).

    SQLite (`secure_delete` has zeroed the old content in its pages): checkpoint the WAL into the
    file and truncate it, so no older copy of those pages stays in the WAL. PostgreSQL, when
    `vacuum` (the periodic jobs, not every request): VACUUM the tables, once per transaction, so
    the dead row versions an UPDATE leaves behind are removed.
    """
    wiped: dict[str, bool] = session.info.setdefault(_WIPED, {})
    for table in tables:
        wiped[table] = wiped.get(table, False) or vacuum


def _note_commit(session: Session) -> None:
    if not session.in_nested_transaction():  # a released savepoint commits nothing yet
        session.info[_COMMITTED] = True


def _scrub_if_committed(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction has ended and its connection is back in the pool.
    if transaction.parent is not None:
        return
    wiped: dict[str, bool] = session.info.pop(_WIPED, {})
    if not session.info.pop(_COMMITTED, False) or not wiped:
        return
    engine = session.get_bind().engine
    # The data is committed: a failed scrub is logged, never turned into the caller's error.
    if engine.dialect.name == "sqlite":
        _checkpoint_wal(engine)
    elif engine.dialect.name == "postgresql":
        _vacuum(engine, sorted(table for table, vacuum in wiped.items() if vacuum))


def _checkpoint_wal(engine: Engine) -> None:
    """`PRAGMA wal_checkpoint(TRUNCATE)` outside any transaction, waiting briefly for readers."""
    try:
        # The raw connection: SQLAlchemy's would begin a transaction (BEGIN IMMEDIATE) first.
        connection = engine.raw_connection()
    except SQLAlchemyError:
        log.warning(
            "no connection for the WAL checkpoint after a personal-data wipe", exc_info=True
        )
        return
    try:
        cursor = connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        row = cursor.fetchone()  # (busy, frames in the WAL, frames checkpointed)
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()
    except sqlite3.Error:
        log.warning("WAL checkpoint after a personal-data wipe failed", exc_info=True)
        # Its busy_timeout may still be the short one: not a connection to hand out again.
        connection.invalidate()
        return
    finally:
        connection.close()
    if row is not None and row[0]:
        # Readers or a writer were still on the WAL: the wiped rows' old pages stay in it until
        # a later checkpoint (the next wipe's, or SQLite's automatic one) overwrites them.
        log.warning(
            "WAL checkpoint after a personal-data wipe was busy (%s of %s frames copied); "
            "the old pages stay in the WAL until a later checkpoint",
            row[2],
            row[1],
        )


def _vacuum(engine: Engine, tables: list[str]) -> None:
    """VACUUM the tables; it cannot run inside a transaction block, hence autocommit."""
    if not tables:
        return
    names = ", ".join(engine.dialect.identifier_preparer.quote(table) for table in tables)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            # SKIP_LOCKED: never wait behind another VACUUM (autovacuum) or a schema change;
            # ordinary reads and writes do not conflict with VACUUM.
            connection.exec_driver_sql(f"VACUUM (SKIP_LOCKED) {names}")
    except SQLAlchemyError:
        log.warning("VACUUM of %s after a personal-data wipe failed", names, exc_info=True)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


# The advisory lock `db upgrade` holds on PostgreSQL (any fixed number the project owns).
MIGRATION_LOCK = 0x10CC_E2_0001


def upgrade_database(url: str) -> None:
    """Bring the schema to the newest migration (`alembic upgrade head`).

    On PostgreSQL under an advisory lock: hosts that start together (each unit's `ExecStartPre`,
    a rolling restart) upgrade one after the other, and the later ones find nothing to do,
    instead of racing to create the same tables.
    """
    if make_url(url).get_backend_name() != "postgresql":
        command.upgrade(alembic_config(url), "head")
        return
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as lock:
            lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            try:
                command.upgrade(alembic_config(url), "head")
            finally:
                lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
    finally:
        engine.dispose()


def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE or DELETE (typed: `Session.execute` returns a plain `Result`)."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"an UPDATE or DELETE gives a CursorResult, not {type(result).__name__}")
    return result.rowcount
