"""Fixtures for store tests: a migrated SQLite file per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from locker_node.store.database import DATABASE_FILE, make_engine
from locker_node.store.migrate import upgrade


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store-template") / DATABASE_FILE
    upgrade(path)
    return path


@pytest.fixture
def database(tmp_path: Path, migrated_template: Path) -> Path:
    path = tmp_path / DATABASE_FILE
    shutil.copy(migrated_template, path)
    return path


@pytest.fixture
def engine(database: Path) -> Iterator[Engine]:
    engine = make_engine(database)
    yield engine
    engine.dispose()
