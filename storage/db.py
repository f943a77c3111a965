"""Opening the catalog and the ONE transaction helper.

SQLite (embedded default): WAL journal, ``foreign_keys=ON``, a busy timeout, and write
transactions that start with ``BEGIN IMMEDIATE`` — the writer lock is taken up front, so a
transaction never fails half-way on a lock upgrade. PostgreSQL: ``postgresql+psycopg://``.

``Catalog.transaction()`` yields a Session and commits or rolls back; it retries taking the
lock when SQLite reports "database is locked". ``Catalog.run(fn)`` runs ``fn(session)`` inside
``transaction()`` and re-runs the whole unit on retryable errors (SQLite busy, PostgreSQL
serialization failure / deadlock), so users never see "database is locked". Every write of the
zoo is one ``run``: one transaction model.

A catalog FILE that exists but is empty, truncated or not a SQLite database is an error that
says so: it is never taken for a new, empty catalog (gc against an empty catalog would find
every blob unreferenced).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from zoo.errors import CatalogBusyError, ConfigError, IntegrityError, SchemaVersionError
from zoo.storage import schema

T = TypeVar("T")
# The handle of an open catalog transaction. Storage functions take it; the other layers only
# pass it along (e.g. a publish's ``on_commit``), so they never touch SQLAlchemy themselves.
Transaction = Session
BUSY_TIMEOUT_MS = 10_000
RETRY_ATTEMPTS = 12
_PG_RETRY_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def normalize_url(url: str) -> str:
    """Map ``postgres://``/``postgresql://`` to the psycopg 3 driver; validate the URL."""
    if not isinstance(url, str) or not url:
        raise ConfigError("catalog URL is empty")
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix):]
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"catalog URL {url!r} is not a database URL "
                          "(sqlite:///PATH or postgresql+psycopg://...)") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(f"catalog backend {parsed.get_backend_name()!r} is not supported; "
                          "use sqlite:///PATH or postgresql+psycopg://...")
    return url


def is_retryable(exc: BaseException) -> bool:
    """SQLite busy/locked, PostgreSQL serialization failure or deadlock."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in _PG_RETRY_SQLSTATES:
        return True
    if isinstance(exc, OperationalError):
        text = str(orig).lower()
        return "database is locked" in text or "database is busy" in text
    return False


def _backoff(attempt: int) -> float:
    return min(0.01 * (2 ** attempt), 0.5) * (0.5 + random.random())


def _sqlite_engine(url: str) -> Engine:
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (savepoints, IMMEDIATE)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001
        if conn.get_execution_options().get("zoo_begin") == "IMMEDIATE":
            _begin_immediate(conn)
        else:
            conn.exec_driver_sql("BEGIN DEFERRED")

    return engine


def _begin_immediate(conn: sa.Connection) -> None:
    """The SQLite ``begin`` event: ``BEGIN IMMEDIATE`` with :func:`begin_immediate`."""
    raw = conn.connection.dbapi_connection
    try:
        begin_immediate(raw)
    except sqlite3.Error as exc:
        raise DBAPIError.instance("BEGIN IMMEDIATE", (), exc, sqlite3.Error,
                                  dialect=conn.dialect) from exc


def begin_immediate(raw: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE`` on a sqlite3 connection, polling for the write lock every 0.1–2 ms.

    SQLite's own busy handler sleeps 1, 2, 5, 10, … ms between tries. Writers here hold the
    lock for about a millisecond, so a waiter would mostly oversleep: with two busy workers
    that was ~2 ms per job. Polling finely (busy timeout off meanwhile) ends the wait when the
    lock is free; after ``BUSY_TIMEOUT_MS`` the last try raises "database is locked" as before.
    """
    raw.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = 0.0001
        while time.monotonic() < deadline:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if "locked" not in text and "busy" not in text:
                    raise
            time.sleep(delay)
            delay = min(delay * 1.5, 0.002)
        raw.execute("BEGIN IMMEDIATE")  # raises "database is locked"
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


class Catalog:
    """A connected catalog: an engine plus the transaction helper."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name
        if self.dialect == "sqlite":
            reader, writer = engine, engine.execution_options(zoo_begin="IMMEDIATE")
        else:  # PostgreSQL reads need no BEGIN/COMMIT round trips: each statement is atomic
            reader, writer = engine.execution_options(isolation_level="AUTOCOMMIT"), engine
        self._readers = sessionmaker(bind=reader, expire_on_commit=False)
        self._writers = sessionmaker(bind=writer, expire_on_commit=False)

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        """Yield a Session in one transaction; commit on success, roll back on error."""
        session = (self._readers if readonly else self._writers)()
        try:
            for attempt in range(RETRY_ATTEMPTS):
                try:
                    session.connection()  # BEGIN [IMMEDIATE] now: lock waits happen here
                    break
                except OperationalError as exc:
                    session.rollback()
                    if not is_retryable(exc):
                        raise
                    if attempt == RETRY_ATTEMPTS - 1:
                        raise self._busy(exc) from None
                    time.sleep(_backoff(attempt))
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def run(self, fn: Callable[[Session], T], *, readonly: bool = False) -> T:
        """``fn(session)`` in one transaction, re-run whole on retryable errors."""
        for attempt in range(RETRY_ATTEMPTS):
            try:
                with self.transaction(readonly=readonly) as session:
                    return fn(session)
            except DBAPIError as exc:
                if not is_retryable(exc):
                    raise
                if attempt == RETRY_ATTEMPTS - 1:
                    raise self._busy(exc) from None
                time.sleep(_backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _busy(self, exc: BaseException) -> CatalogBusyError:
        return CatalogBusyError(
            f"catalog {self.redacted_url} stayed busy after {RETRY_ATTEMPTS} attempts "
            f"({type(exc).__name__}); try again"
        )

    @property
    def redacted_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            return schema.current_revision(conn)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _make_engine(url: str) -> Engine:
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    # Catalog lookups are small indexed reads: parallel workers only add start-up latency.
    return sa.create_engine(url, connect_args={"options": "-c max_parallel_workers_per_gather=0"})


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


SQLITE_MAGIC = b"SQLite format 3\x00"


def check_sqlite_file(path: Path) -> None:
    """Refuse an existing catalog file that is empty, not SQLite, or shorter than its header
    says (truncated): each would otherwise open as a new, EMPTY catalog."""
    if not path.is_file():
        raise IntegrityError(f"catalog file {path} is not a file (a directory?), not a catalog")
    size = path.stat().st_size
    if size == 0:
        raise IntegrityError(f"catalog file {path} is empty (0 bytes), not a catalog; restore it "
                             "from a backup, or remove it and run `zoo init` for a new catalog")
    with path.open("rb") as fh:
        head = fh.read(100)
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        raise IntegrityError(f"catalog file {path} is not a SQLite database")
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    counted = head[24:28] == head[92:96]  # the in-header size is valid
    if page < 512 or size % page or (counted and size < pages * page):
        want = f", its header says {pages * page}" if counted else ""
        raise IntegrityError(f"catalog file {path} is truncated ({size} bytes{want}); "
                             "restore it from a backup")


def open_catalog(url: str, *, check: bool = True) -> Catalog:
    """Connect; with ``check`` refuse a catalog that is not initialised or of another schema."""
    url = normalize_url(url)
    where = make_url(url).render_as_string(hide_password=True)
    path = _sqlite_path(url)
    if check and path is not None:
        if not path.exists():
            raise SchemaVersionError(f"catalog {where} is not initialised; run `zoo init`")
        check_sqlite_file(path)
    catalog = Catalog(_make_engine(url), url)
    if check:
        try:
            schema.check_revision(catalog.revision(), where)
        except BaseException:
            catalog.close()
            raise
    return catalog


def init_catalog(url: str) -> tuple[str | None, str]:
    """Create or upgrade the schema (``zoo init``); returns (revision before, revision now)."""
    url = normalize_url(url)
    path = _sqlite_path(url)
    if path is not None:
        if path.exists():
            check_sqlite_file(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(_make_engine(url), url)
    try:
        with catalog.engine.begin() as conn:
            return schema.upgrade(conn, make_url(url).render_as_string(hide_password=True))
    finally:
        catalog.close()
