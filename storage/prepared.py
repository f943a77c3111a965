"""Core statements compiled once per dialect and executed on the DBAPI connection.

Why: a training job writes the catalog a handful of times (start the attempt, publish: base
model, adapter row, tags, SUCCEEDED), each one a tiny indexed statement. SQLite runs such a
statement in ~0.05 ms, but SQLAlchemy's per-execution machinery around it (cache key, execution
context, parameter and result processing: several hundred Python calls) cost ~0.5-1 ms per
statement inside a worker between two trainings, most of the zoo's own time per short job.
Here SQLAlchemy still writes the SQL (dialect, quoting, paramstyle, type conversions); only
the execution is done by hand, in the caller's transaction: a Session's connection, a Core
Connection, or ``Catalog.run_raw``'s lean one, whose lock handling and retries match
``Catalog.run``.

Use it for hot, simple statements only: no expanding ``IN`` parameters (write ``OR``), and an
INSERT must be given every column that has a Python-side default (refused otherwise: it would
write NULL).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Compiled:
    sql: str
    dialect: Any
    positional: tuple[str, ...] | None  # bind names in order (qmark/format), else named
    convert: tuple[tuple[str, Callable[[Any], Any]], ...]  # bind name, to-DBAPI conversion
    compiled: Any
    results: tuple[Processor, ...]  # RETURNING/SELECT columns: from-DBAPI conversion


class Prepared:
    """One statement, compiled on first use for each dialect (and set of INSERT columns)."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, tuple[str, ...] | None], _Compiled] = {}

    def _compile(self, dialect: Any, keys: tuple[str, ...] | None) -> _Compiled:
        cache_key = (dialect.name, keys)
        found = self._compiled.get(cache_key)
        if found is not None:
            return found
        if keys is not None:  # an INSERT: a column left out would get NULL, not its default
            table = self.statement.table
            unfilled = sorted(column.key for column in table.columns
                              if column.key not in keys and column.default is not None)
            if unfilled:
                raise ValueError(f"Prepared INSERT into {table.name} needs values for "
                                 f"{', '.join(unfilled)} (Python-side defaults are not applied)")
        compiled = self.statement.compile(dialect=dialect, column_keys=keys)
        if any(bind.expanding for bind in compiled.binds.values()):
            raise ValueError("Prepared statements cannot use expanding IN parameters")
        convert = tuple((name, process) for name, bind in compiled.binds.items()
                        if (process := bind.type.dialect_impl(dialect).bind_processor(dialect))
                        is not None)
        results = tuple(col.type.dialect_impl(dialect).result_processor(dialect, None)
                        for col in self.statement.exported_columns)
        found = _Compiled(sql=compiled.string, dialect=dialect,
                          positional=tuple(compiled.positiontup) if compiled.positional
                          else None,
                          convert=convert, compiled=compiled, results=results)
        self._compiled[cache_key] = found
        return found

    def _params(self, c: _Compiled, values: Mapping[str, Any]) -> Any:
        params = c.compiled.construct_params(values)  # literal binds, and missing-value errors
        for name, process in c.convert:
            if name in params:
                params[name] = process(params[name])
        if c.positional is not None:
            return tuple(params[name] for name in c.positional)
        return params

    def execute(self, connection: sa.Connection, values: Mapping[str, Any]) -> Any:
        """Run with ``values`` in ``connection``'s transaction; returns the DBAPI cursor.

        DBAPI errors come out as SQLAlchemy's (``OperationalError`` …), as ``execute`` would
        raise them, so lock-wait retries and error mapping upstream keep working."""
        c = self._compile(connection.dialect, self._keys(values))
        params = self._params(c, values)
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.execute(c.sql, params)
        except c.dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise DBAPIError.instance(c.sql, params, exc, c.dialect.loaded_dbapi.Error,
                                      dialect=c.dialect) from exc
        return cursor

    def execute_many(self, connection: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """One ``executemany`` for rows that all have the same keys."""
        if not rows:
            return
        c = self._compile(connection.dialect, self._keys(rows[0]))
        params = [self._params(c, row) for row in rows]
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.executemany(c.sql, params)
        except c.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(c.sql, params, exc, c.dialect.loaded_dbapi.Error,
                                      dialect=c.dialect, ismulti=True) from exc
        finally:
            cursor.close()

    def first(self, connection: sa.Connection, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row the statement returns (converted to Python types), or None."""
        cursor = self.execute(connection, values)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        if row is None:
            return None
        results = self._compile(connection.dialect, self._keys(values)).results
        if not results:
            return tuple(row)
        return tuple(value if process is None else process(value)
                     for process, value in zip(results, row, strict=True))

    def rowcount(self, connection: sa.Connection, values: Mapping[str, Any]) -> int:
        """Run; the number of rows it wrote."""
        cursor = self.execute(connection, values)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def _keys(self, values: Mapping[str, Any]) -> tuple[str, ...] | None:
        """INSERTs compile for the columns given; other statements name their binds."""
        if isinstance(self.statement, sa.Insert):
            return tuple(sorted(values))
        return None


__all__ = ["Prepared"]
