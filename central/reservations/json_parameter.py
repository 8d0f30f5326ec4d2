"""The JSON parameter the PostgreSQL reservation statements read their requests from
(`repository._RESERVE_MANY`, `unit_choice._RESERVE_ONE`, through `json_to_record(set)`)."""

from __future__ import annotations

import json
from datetime import datetime

__all__ = ["json_parameter"]


def json_parameter(value: object) -> str:
    """`value` as compact JSON, timestamps in ISO 8601 (read back as `timestamptz`)."""
    return json.dumps(value, default=_json_timestamp, separators=(",", ":"))


def _json_timestamp(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
