"""Run-wide set-up. Under pytest-xdist (`make test` runs the suite on every core) each worker
gets a PostgreSQL database of its own, made from `LOCKER_TEST_DATABASE_URL` with the worker's
name appended, so workers never see each other's tables. Set here, before any test module reads
the variable, and inherited by the servers and nodes the tests start."""

from __future__ import annotations

import os

from sqlalchemy.engine import make_url


def _database_per_worker() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    base = os.environ.get("LOCKER_TEST_DATABASE_URL")
    if not worker or not base:
        return
    url = make_url(base)
    if url.get_backend_name() != "postgresql" or not url.database:
        return
    name = f"{url.database}_{worker}"
    import psycopg

    plain = url.set(drivername="postgresql")
    with psycopg.connect(plain.render_as_string(hide_password=False), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["LOCKER_TEST_DATABASE_URL"] = url.set(database=name).render_as_string(
        hide_password=False
    )


_database_per_worker()
