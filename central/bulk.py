"""Many rows written in one statement: one JSON document on PostgreSQL, an executemany elsewhere.

A batch of node events writes hundreds of rows to each of several tables. psycopg adapts every
parameter of an executemany in Python, and parses a statement with hundreds of parameters anew
on every run; on PostgreSQL the rows travel instead as one JSON document, which `json.dumps`
writes in C and `json_to_recordset` reads back as rows, in the order given. SQLite keeps its
executemany, which costs little there.

A JSON column's None is written as JSON `null`, as SQLAlchemy binds it (`none_as_null` off), and
its value as `json.dumps` writes it, as SQLAlchemy's default serialiser does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Table, bindparam, insert, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

__all__ = ["BulkInsert", "BulkUpdate", "document", "recordset"]

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy's dialects are untyped


def document(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as one JSON array, timestamps in ISO 8601 (read back as `timestamptz`)."""
    return json.dumps(rows, default=_timestamp)


def _timestamp(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _quoted(name: str) -> str:
    return f'"{name}"'


def recordset(table: Table, columns: Sequence[str], extra: Sequence[str] = ()) -> str:
    """The FROM item that reads `:p_rows` as rows `r` with these columns of the table, typed as
    the table has them (and `extra` ones, given as "name type"), and `r.ord`, each row's place."""
    defs = [f"{_quoted(name)} {table.c[name].type.compile(dialect=_PG)}" for name in columns]
    names = [_quoted(name) for name in columns]
    for item in extra:
        name, _, kind = item.partition(" ")
        defs.append(f"{_quoted(name)} {kind}")
        names.append(_quoted(name))
    return (
        f"ROWS FROM (json_to_recordset(CAST(:p_rows AS json)) AS ({', '.join(defs)})) "
        f"WITH ORDINALITY AS r({', '.join(names)}, ord)"
    )


def value_of(table: Table, name: str) -> str:
    """Column `name` of the row read, as SQLAlchemy would have bound it."""
    if isinstance(table.c[name].type, JSON):
        return f"COALESCE(r.{_quoted(name)}, 'null'::json)"
    return f"r.{_quoted(name)}"


class BulkInsert:
    """INSERT of many rows with the same columns, in the order given; `unique`: a column whose
    unique index leaves out a row that exists already (ON CONFLICT DO NOTHING)."""

    def __init__(self, table: Table, columns: Sequence[str], *, unique: str | None = None) -> None:
        self.columns = tuple(columns)
        names = ", ".join(_quoted(name) for name in self.columns)
        values = ", ".join(value_of(table, name) for name in self.columns)
        conflict = f" ON CONFLICT ({_quoted(unique)}) DO NOTHING" if unique else ""
        self._postgresql: TextClause = text(
            f"INSERT INTO {_quoted(table.name)} ({names}) "  # noqa: S608 - the table's own names
            f"SELECT {values} FROM {recordset(table, self.columns)} ORDER BY r.ord{conflict}"
        )
        self._other = (
            sqlite.insert(table).on_conflict_do_nothing(index_elements=[unique])
            if unique
            else insert(table)
        )

    def run(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            connection.execute(self._postgresql, {"p_rows": document(rows)})
        else:
            params = [{name: row[name] for name in self.columns} for row in rows]
            connection.execute(self._other, params)


class BulkUpdate:
    """UPDATE of many rows, each found by its `key` column, setting `columns` to its values."""

    def __init__(self, table: Table, key: str, columns: Sequence[str]) -> None:
        self.key = key
        self.columns = tuple(columns)
        sets = ", ".join(f"{_quoted(name)} = {value_of(table, name)}" for name in self.columns)
        self._postgresql: TextClause = text(
            f"UPDATE {_quoted(table.name)} AS t SET {sets} "  # noqa: S608 - the table's own names
            f"FROM {recordset(table, (key, *self.columns))} "
            f"WHERE t.{_quoted(key)} = r.{_quoted(key)}"
        )
        self._other = (
            update(table)
            .where(table.c[key] == bindparam("b_key"))
            .values({name: bindparam(f"b_{name}", type_=table.c[name].type) for name in columns})
        )

    def run(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
        """The number of rows updated."""
        if not rows:
            return 0
        connection = session.connection()
        result: CursorResult[Any]
        if connection.dialect.name == "postgresql":
            result = connection.execute(self._postgresql, {"p_rows": document(rows)})
        else:
            params = [
                {"b_key": row[self.key], **{f"b_{name}": row[name] for name in self.columns}}
                for row in rows
            ]
            result = connection.execute(self._other, params)
        return result.rowcount
