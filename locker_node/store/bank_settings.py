"""The one row of the bank's settings as central last sent them (JSON) and their version."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.sqlite import insert

from locker_node.store.schema import bank_settings

_ROW = 1


@dataclass(frozen=True)
class StoredSettings:
    version: int
    settings: dict[str, Any]
    updated_at: datetime


def get_settings(conn: Connection) -> StoredSettings | None:
    row = conn.execute(select(bank_settings).where(bank_settings.c.id == _ROW)).one_or_none()
    if row is None:
        return None
    data = json.loads(row.settings)
    if not isinstance(data, dict):
        raise ValueError("the stored bank settings are not a JSON object")
    return StoredSettings(version=row.version, settings=data, updated_at=row.updated_at)


def put_settings(conn: Connection, version: int, settings: dict[str, Any], now: datetime) -> None:
    values = {
        "version": version,
        "settings": json.dumps(settings, sort_keys=True, separators=(",", ":")),
        "updated_at": now,
    }
    statement = insert(bank_settings).values(id=_ROW, **values)
    conn.execute(statement.on_conflict_do_update(index_elements=["id"], set_=values))
