"""Flow tests share the store's fixtures (a migrated SQLite file per test) and the kiosk's rig
(a node on a simulated board per test), here without a courier."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.locker_node.kiosk.conftest import make_rig, schema_template
from tests.locker_node.kiosk.rig import Rig
from tests.locker_node.store.conftest import database, engine, migrated_template

__all__ = ["database", "engine", "make_rig", "migrated_template", "schema_template"]


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    return make_rig()
