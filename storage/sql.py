"""Dialect-aware writes shared by the catalog's stores: INSERT … ON CONFLICT, built once.

SQLite and PostgreSQL spell "insert unless it exists" and "insert or update" with their own
dialect constructs; the statements are built once per (dialect, table) and then reused, so
SQLAlchemy's compiled cache serves every later execution (publish runs these for every job).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

_STATEMENTS: dict[tuple[Any, ...], Any] = {}


def _insert(dialect: str, table: Any) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def _statement(session: Session, table: Any, kind: tuple[Any, ...]) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else \
        session.get_bind().dialect.name
    key = (dialect, table, kind)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        stmt = _insert(dialect, table.__table__)
        if kind[0] == "ignore":
            stmt = stmt.on_conflict_do_nothing()
        else:
            _, index, update = kind
            stmt = stmt.on_conflict_do_update(
                index_elements=list(index), set_={c: stmt.excluded[c] for c in update})
        _STATEMENTS[key] = stmt
    return stmt


def insert_ignoring_conflicts(session: Session, table: Any,
                              rows: Sequence[Mapping[str, Any]]) -> int:
    """INSERT ``rows`` (all with the same keys) skipping those that hit a unique constraint;
    returns how many were inserted (for one row: 1 or 0)."""
    if not rows:
        return 0
    stmt = _statement(session, table, ("ignore",))
    connection = session.connection()  # Core statements: no ORM execution layer to pay for
    if len(rows) == 1:
        return int(connection.execute(stmt, dict(rows[0])).rowcount)
    connection.execute(stmt, [dict(r) for r in rows])
    return len(rows)


def upsert(session: Session, table: Any, values: Mapping[str, Any], *, key: tuple[str, ...],
           update: tuple[str, ...]) -> None:
    """INSERT, or UPDATE the ``update`` columns of the row with the same ``key``."""
    session.connection().execute(_statement(session, table, ("upsert", key, update)),
                                 dict(values))
