"""Fixtures for central: a real database per test (SQLite always, PostgreSQL when configured)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from central.app import create_app
from central.banks.service import NewBank, add_bank, parse_compartment_spec
from central.carriers.service import add_carrier, create_api_key
from central.config import CentralSettings
from central.db import make_engine, make_sessionmaker, upgrade_database
from central.models import Base

# Imported from here by tests/locker_node/sync as well: re-exported by name.
from tests.clock import FakeClock as FakeClock

PG_URL = os.environ.get("LOCKER_TEST_DATABASE_URL")
TEST_SECRET = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "central.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own for this test run, migrated with Alembic, dropped at the end."""
    if not PG_URL:
        pytest.skip("LOCKER_TEST_DATABASE_URL is not set")
    name = f"locker_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    upgrade_database(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated, empty database: a copy of the SQLite template, or PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "central.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_url")
    _truncate(url)
    yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> CentralSettings:
    return CentralSettings(
        database_url=database_url,
        data_dir=tmp_path / "var",
        secret_key=TEST_SECRET,  # type: ignore[arg-type]
        allow_insecure_webhooks=True,
        scheduler_enabled=False,
    )


@pytest.fixture
def app(settings: CentralSettings, clock: FakeClock) -> Iterator[FastAPI]:
    app = create_app(settings, clock=clock)
    yield app
    app.state.engine.dispose()


@pytest.fixture
def sessions(app: FastAPI) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = app.state.sessions
    return factory


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=True) as test_client:
        yield test_client


@dataclass
class World:
    """Carriers with keys and banks: the usual starting point of an API test."""

    keys: dict[str, str]

    def auth(self, carrier_id: str = "usps") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[carrier_id]}"}


def make_carrier(session: Session, *, carrier_id: str, now: datetime) -> str:
    add_carrier(session, carrier_id, None, now)
    return create_api_key(session, carrier_id, now).key


def make_bank(
    session: Session,
    *,
    bank_id: str,
    now: datetime,
    lat: float = 40.7506,
    lon: float = -73.9935,
    compartments: str = "S:2,M:2,L:1",
    timezone: str = "America/New_York",
) -> None:
    add_bank(
        session,
        NewBank(
            bank_id=bank_id,
            name=f"Bank {bank_id}",
            address=f"{bank_id} Street",
            lat=lat,
            lon=lon,
            compartments=parse_compartment_spec(compartments),
            timezone=timezone,
        ),
        now,
    )


@pytest.fixture
def world(sessions: sessionmaker[Session], clock: FakeClock) -> World:
    with sessions.begin() as session:
        keys = {
            carrier: make_carrier(session, carrier_id=carrier, now=clock())
            for carrier in ("usps", "fedex", "ups", "dhl", "acme")
        }
        make_bank(session, bank_id="NYC-1", now=clock())
        make_bank(session, bank_id="NYC-2", now=clock(), lat=40.7359, lon=-73.9911)
        make_bank(session, bank_id="BOS-1", now=clock(), lat=42.3601, lon=-71.0589)
    return World(keys=keys)


def engine_for(url: str) -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(url))
