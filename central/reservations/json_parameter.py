"""The JSON parameter the PostgreSQL reservation statements read their requests from
(`repository._RESERVE_MANY`, `unit_choice._RESERVE_ONE`, through `json_to_record(set)`)."""

from __future__ import annotations

from pydantic_core import to_json

__all__ = ["json_parameter"]


def json_parameter(value: object) -> str:
    """`value` as compact JSON, timestamps in ISO 8601 (read back as `timestamptz`).

    Written by pydantic's serializer, in a quarter of the time `json.dumps` took with a hook
    for the timestamps: it runs for every request of every batch. Text is written as UTF-8
    rather than escaped, and UTC as `Z` rather than `+00:00`; PostgreSQL reads both the same.
    """
    return to_json(value).decode()
