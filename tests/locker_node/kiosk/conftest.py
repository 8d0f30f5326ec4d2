"""Fixtures for kiosk tests: a node on a simulated board per test, seeded through the store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.locker_node.kiosk.rig import Rig, build_rig, make_schema_template


@pytest.fixture(scope="session")
def schema_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_schema_template(tmp_path_factory.mktemp("node-schema"))


@pytest.fixture
def make_rig(tmp_path: Path, schema_template: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(**sections: Any) -> Rig:
        rig = build_rig(tmp_path / f"rig{len(made)}", schema_template, **sections)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    rig = make_rig()
    rig.add_courier()
    return rig
