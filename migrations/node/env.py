"""Alembic environment for the locker node's own SQLite database."""

from __future__ import annotations

from pathlib import Path

from alembic import context
from sqlalchemy import Connection

from locker_node.store.database import make_engine
from locker_node.store.schema import metadata

config = context.config
target_metadata = metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None or not url.startswith("sqlite:///"):
        raise RuntimeError(f"the node's store is a SQLite file (sqlite:///...), not {url!r}")
    engine = make_engine(Path(url.removeprefix("sqlite:///")))
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
