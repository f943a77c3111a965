"""8 processes adding, tagging and moving the same aliases at once (issue 3, acceptance 3).

Checks: no lost update (every tag written is there), no duplicate (the shared digest exists
once, each alias is one row), and no error escapes — in particular no "database is locked".
"""

from __future__ import annotations

import multiprocessing as mp
import traceback

import pytest
from catalog_fixtures import adapter_config, fake_digest

WORKERS = 8
ROUNDS = 10


def worker(url: str, index: int, target: str, candidates: list[str], barrier, results) -> None:
    """One process: per round add its own adapter + the shared one, tag target, move aliases."""
    errors: list[str] = []
    alias_sets = 0
    try:
        from zoo.storage import catalog as api
        from zoo.storage.db import open_catalog

        cat = open_catalog(url)
        barrier.wait(timeout=120)
        for i in range(ROUNDS):
            ops = [
                lambda s, i=i: api.add_adapter(
                    s, digest=fake_digest(("own", index, i)), size=10, name=f"w{index}",
                    config=adapter_config(), tags=[f"round={i}"]),
                lambda s: api.add_adapter(
                    s, digest=fake_digest("shared"), size=10, name="shared",
                    config=adapter_config(), tags=[f"by-w{index}"], aliases=["latest"]),
                lambda s, i=i: api.add_tags(s, target, [f"w{index}-{i}", "common"]),
                lambda s, i=i: api.set_alias(s, "target@live", candidates[(index + i) % 3]),
                lambda s, i=i: api.set_alias(s, f"target@w{index % 2}",
                                             candidates[i % 3]),
            ]
            for op in ops:
                try:
                    cat.run(op)
                except Exception as exc:  # noqa: BLE001 - reported to the parent
                    errors.append(f"{type(exc).__name__}: {exc}")
            alias_sets += 2
        cat.close()
    except Exception:  # noqa: BLE001
        errors.append(traceback.format_exc())
    results.put((index, errors, alias_sets))


def test_eight_processes_no_lost_update_no_duplicate(catalog, add, catalog_url):
    import sqlalchemy as sa

    from zoo.storage import catalog as api

    target = add("target", tags=["seed"])
    candidates = [target, add("target"), add("target")]
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(catalog_url, i, target, candidates, barrier,
                                              results)) for i in range(WORKERS)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [e for _, errs, _ in outcomes for e in errs]
    assert errors == [], errors[:5]
    assert not any("locked" in e for e in errors)

    with catalog.transaction(readonly=True) as s:
        tags = set(api.adapter_to_dict(api.resolve_ref(s, target))["tags"])
        expected = {f"w{w}-{i}" for w in range(WORKERS) for i in range(ROUNDS)}
        assert expected <= tags, sorted(expected - tags)[:5]  # no lost update
        assert {"seed", "common"} <= tags
        shared = api.list_adapters(s, "name=shared", limit=None)
        assert len(shared) == 1  # same digest + name from 8 processes: one row
        shared_tags = set(api.adapter_to_dict(shared[0])["tags"])
        assert shared_tags == {f"by-w{w}" for w in range(WORKERS)}
        assert api.resolve_ref(s, "shared@latest").id == shared[0].id
        for w in range(WORKERS):
            own = api.list_adapters(s, f"name=w{w}", limit=None)
            assert len(own) == ROUNDS
        assert api.resolve_ref(s, "target@live").id in candidates
    with catalog.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT name, alias, count(*) FROM aliases GROUP BY name, alias")).all()
        assert sorted(r[:2] for r in rows) == [("shared", "latest"), ("target", "live"),
                                               ("target", "w0"), ("target", "w1")]
        assert all(r[2] == 1 for r in rows)
        dup = conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT adapter_id, key, value FROM tags "
            "GROUP BY adapter_id, key, value HAVING count(*) > 1) d")).scalar()
        assert dup == 0


@pytest.mark.parametrize("readonly", [True, False])
def test_transaction_helper_retries_past_a_held_write_lock(sqlite_url, monkeypatch, readonly):
    """A writer holds SQLite's lock far longer than our (shortened) busy timeout: ``run``
    retries with backoff instead of surfacing "database is locked"."""
    import threading
    import time

    import sqlalchemy as sa

    from zoo.storage import db
    from zoo.storage.db import init_catalog, open_catalog

    init_catalog(sqlite_url)
    holder = open_catalog(sqlite_url)
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 50)  # every wait now ends in SQLITE_BUSY
    cat = open_catalog(sqlite_url)
    locked = threading.Event()

    def hold() -> None:
        with holder.transaction() as s:  # BEGIN IMMEDIATE: holds the write lock
            s.execute(sa.text("UPDATE alembic_version SET version_num = version_num"))
            locked.set()
            time.sleep(1.0)

    t = threading.Thread(target=hold)
    try:
        t.start()
        assert locked.wait(10)
        stmt = sa.text("INSERT INTO base_models (name) VALUES ('m')") if not readonly \
            else sa.text("SELECT count(*) FROM adapters")
        cat.run(lambda s: s.execute(stmt), readonly=readonly)
        t.join()
        with cat.engine.connect() as conn:
            count = conn.execute(sa.text("SELECT count(*) FROM base_models")).scalar()
        assert count == (0 if readonly else 1)
    finally:
        t.join()
        cat.close()
        holder.close()


def test_write_transaction_waits_for_a_briefly_held_lock_then_restores_busy_timeout(sqlite_url):
    """BEGIN IMMEDIATE polls for the write lock (instead of SQLite's coarse sleeps) and gets it
    as soon as the holder commits; the connection keeps its normal busy timeout afterwards."""
    import threading
    import time

    import sqlalchemy as sa

    from zoo.storage.db import BUSY_TIMEOUT_MS, init_catalog, open_catalog

    init_catalog(sqlite_url)
    holder, cat = open_catalog(sqlite_url), open_catalog(sqlite_url)
    locked, released = threading.Event(), []

    def hold() -> None:
        with holder.transaction() as s:
            s.execute(sa.text("UPDATE alembic_version SET version_num = version_num"))
            locked.set()
            time.sleep(0.3)
        released.append(time.monotonic())

    t = threading.Thread(target=hold)
    try:
        t.start()
        assert locked.wait(10)
        with cat.transaction() as s:
            got_lock = time.monotonic()
            s.execute(sa.text("INSERT INTO base_models (name) VALUES ('m')"))
            timeout = s.execute(sa.text("PRAGMA busy_timeout")).scalar()
        t.join()
        assert released and got_lock >= released[0] - 0.05  # it really waited for the holder
        assert timeout == BUSY_TIMEOUT_MS
    finally:
        t.join()
        cat.close()
        holder.close()
