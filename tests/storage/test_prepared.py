"""Prepared statements and ``Catalog.run_raw``: the per-job hot path, on SQLite and PostgreSQL.

They bypass SQLAlchemy's execution layer, so each test checks them against what SQLAlchemy
itself reads back: the same values and types, the same errors, the same atomicity.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from catalog_fixtures import adapter_config, fake_digest

from zoo.storage.prepared import Prepared
from zoo.storage.tables import BaseModelRow, JobRow

JOBS = JobRow.__table__


def _job(catalog, job_id: str) -> None:
    with catalog.engine.begin() as conn:
        conn.execute(sa.insert(JOBS).values(id=job_id, name="j", spec="{}", state="PENDING",
                                            attempt=0, max_retries=0))


def test_update_returning_matches_what_sqlalchemy_reads(catalog):
    _job(catalog, "job-1")
    now = datetime(2026, 11, 29, 3, 4, 5, 123456, tzinfo=timezone.utc)
    start = Prepared(sa.update(JOBS).where(JOBS.c.id == sa.bindparam("job"))
                     .values(state="RUNNING", attempt=JOBS.c.attempt + 1,
                             heartbeat_at=sa.bindparam("now", type_=JOBS.c.heartbeat_at.type))
                     .returning(JOBS.c.id, JOBS.c.attempt, JOBS.c.heartbeat_at, JOBS.c.state))
    got = catalog.run_raw(lambda conn: start.first(conn, {"job": "job-1", "now": now}))
    assert got == ("job-1", 1, now, "RUNNING")
    assert got[2].tzinfo is not None  # converted as the column type says: aware UTC
    with catalog.engine.connect() as conn:
        read = conn.execute(sa.select(JOBS.c.attempt, JOBS.c.heartbeat_at)).one()
    assert tuple(read) == (1, now)
    assert catalog.run_raw(lambda conn: start.first(conn, {"job": "nope", "now": now})) is None


def test_insert_on_conflict_and_executemany(catalog):
    from zoo.storage.catalog import _statement

    dialect = catalog.engine.dialect.name
    base = _statement(dialect, "base")
    rows = [{"name": f"m{i}", "digest": fake_digest(i)} for i in range(3)]
    assert catalog.run_raw(lambda conn: base.rowcount(conn, rows[0])) == 1
    assert catalog.run_raw(lambda conn: base.rowcount(conn, rows[0])) == 0  # DO NOTHING
    catalog.run_raw(lambda conn: base.execute_many(conn, rows[1:]))
    with catalog.engine.connect() as conn:
        names = conn.execute(sa.select(BaseModelRow.name).order_by(BaseModelRow.name)).scalars().all()
    assert names == ["m0", "m1", "m2"]


def test_a_missing_value_is_refused_before_anything_runs(catalog):
    start = Prepared(sa.update(JOBS).where(JOBS.c.id == sa.bindparam("job"))
                     .values(node=sa.bindparam("node")))
    with pytest.raises(sa.exc.InvalidRequestError, match="node"):
        catalog.run_raw(lambda conn: start.rowcount(conn, {"job": "x"}))


def test_an_insert_missing_a_defaulted_column_is_refused(catalog):
    from zoo.storage.tables import EvalRow

    insert = Prepared(EvalRow.__table__.insert())
    with pytest.raises(ValueError, match="created_at, elapsed_s, n_examples"):
        catalog.run_raw(lambda conn: insert.rowcount(conn, {"adapter_id": "a", "metric": "m"}))


def test_expanding_in_is_refused(catalog):
    stmt = Prepared(sa.select(JOBS.c.id).where(JOBS.c.state.in_(["PENDING", "RUNNING"])))
    with pytest.raises(ValueError, match="expanding"):
        catalog.run_raw(lambda conn: stmt.first(conn, {}))


def test_errors_are_sqlalchemys_and_roll_back_everything(catalog):
    _job(catalog, "job-2")
    touch = Prepared(sa.update(JOBS).where(JOBS.c.id == sa.bindparam("job"))
                     .values(node="written"))
    # a job pointing at an adapter that does not exist: a foreign key violation
    dangling = Prepared(sa.update(JOBS).where(JOBS.c.id == sa.bindparam("job"))
                        .values(adapter_id="no-such-adapter"))

    def both(conn):
        touch.rowcount(conn, {"job": "job-2"})
        dangling.rowcount(conn, {"job": "job-2"})

    with pytest.raises(sa.exc.IntegrityError):
        catalog.run_raw(both)
    with catalog.engine.connect() as conn:
        assert conn.execute(sa.select(JOBS.c.node, JOBS.c.adapter_id)).one() == (None, None)
    # the pooled connection is usable afterwards
    assert catalog.run_raw(lambda conn: touch.rowcount(conn, {"job": "job-2"})) == 1


def test_run_raw_waits_for_the_sqlite_write_lock(sqlite_url):
    from zoo.storage.db import init_catalog, open_catalog

    init_catalog(sqlite_url)
    catalog = open_catalog(sqlite_url)
    try:
        _job(catalog, "job-3")
        holder = sqlite3.connect(sa.engine.make_url(sqlite_url).database, isolation_level=None,
                                 check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
        releaser = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
        touch = Prepared(sa.update(JOBS).where(JOBS.c.id == sa.bindparam("job"))
                         .values(node="after-wait"))
        releaser.start()
        start = time.monotonic()
        assert catalog.run_raw(lambda conn: touch.rowcount(conn, {"job": "job-3"})) == 1
        assert time.monotonic() - start >= 0.25  # it waited, then wrote
        releaser.join()
        holder.close()
    finally:
        catalog.close()


def test_a_planned_adapter_dict_is_what_the_catalog_reads_back(catalog):
    from zoo.storage.catalog import (
        adapter_to_dict,
        insert_adapter,
        plan_adapter,
        resolve_ref,
    )

    plan = plan_adapter(digest=fake_digest("x"), size=99, config=adapter_config(r=4, u=0),
                        name="demo", tags=["b", "team=nlp", "a"], aliases=["latest"],
                        job_id="job-9", dataset_fingerprint="f" * 64)
    assert catalog.run_raw(lambda conn: insert_adapter(conn, plan)) is not None
    assert catalog.run_raw(lambda conn: insert_adapter(conn, plan)) is None  # a duplicate
    with catalog.transaction(readonly=True) as session:
        read = adapter_to_dict(resolve_ref(session, "demo@latest"))
    assert plan.to_dict() == read
