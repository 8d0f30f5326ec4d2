"""Alembic upgrades of the node database; `python -m locker_node.store.migrate <db>` runs one."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations" / "node"


def alembic_config(path: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", f"sqlite:///{path}".replace("%", "%%"))
    return config


def upgrade(path: Path, revision: str = "head") -> None:
    command.upgrade(alembic_config(path), revision)


def downgrade(path: Path, revision: str = "base") -> None:
    command.downgrade(alembic_config(path), revision)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m locker_node.store.migrate <database file>", file=sys.stderr)
        return 2
    upgrade(Path(args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
