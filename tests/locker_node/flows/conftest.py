"""Flow tests share the store's fixtures: a migrated SQLite file per test."""

from tests.locker_node.store.conftest import database, engine, migrated_template

__all__ = ["database", "engine", "migrated_template"]
