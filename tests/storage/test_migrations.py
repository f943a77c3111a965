"""Alembic migrations: one head, models == migrations, refusal of unknown/newer schemas."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from zoo.errors import SchemaVersionError
from zoo.storage import schema
from zoo.storage.db import init_catalog, open_catalog


def test_single_head_matches_code():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(schema.alembic_config())
    assert script.get_heads() == [schema.HEAD_REVISION]
    assert [r.revision for r in script.walk_revisions()][::-1] == list(schema.KNOWN_REVISIONS)


# SQLite cannot reflect the expression index on base_models; PostgreSQL compares it.
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression")
def test_autogenerate_finds_no_diff(catalog_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from zoo.storage.tables import Base

    init_catalog(catalog_url)
    engine = sa.create_engine(catalog_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "render_as_batch": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_uninitialised_catalog_is_refused(catalog_url, tmp_path):
    with pytest.raises(SchemaVersionError, match="not initialised; run `zoo init`"):
        open_catalog(catalog_url)
    if catalog_url.startswith("sqlite"):
        assert not (tmp_path / "catalog.db").exists()  # refusing created nothing


def test_init_is_idempotent_and_refuses_newer_schema(catalog_url):
    assert init_catalog(catalog_url) == (None, schema.HEAD_REVISION)
    assert init_catalog(catalog_url) == (schema.HEAD_REVISION, schema.HEAD_REVISION)
    open_catalog(catalog_url).close()
    engine = sa.create_engine(catalog_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="newer zoo"):
        open_catalog(catalog_url)
    with pytest.raises(SchemaVersionError, match="newer zoo"):
        init_catalog(catalog_url)


def test_migration_scripts_are_packaged_and_clean():
    root = Path(schema.MIGRATIONS_DIR)
    assert (root / "env.py").is_file() and (root / "script.py.mako").is_file()
    storage = root.parent
    for path in storage.rglob("*.py"):
        assert "create_all(" not in path.read_text(encoding="utf-8"), path


# SQLite's batch mode reflects the tables around jobs, base_models' expression index included
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection")
def test_upgrade_from_0001_keeps_the_jobs_and_adds_log_text(catalog_url):
    from alembic import command

    engine = sa.create_engine(catalog_url)
    try:
        with engine.begin() as conn:
            command.upgrade(schema.alembic_config(conn), "0001")
            conn.execute(sa.text("INSERT INTO jobs (id, name, spec, state, attempt, max_retries) "
                                 "VALUES ('job-1', 'old', '{}', 'SUCCEEDED', 1, 0)"))
        with pytest.raises(SchemaVersionError,
                           match=f"older than this code's {schema.HEAD_REVISION}; run `zoo init`"):
            open_catalog(catalog_url)
        assert init_catalog(catalog_url) == ("0001", schema.HEAD_REVISION)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, name, log_text FROM jobs")).all()
        assert [tuple(r) for r in rows] == [("job-1", "old", None)]
        with engine.begin() as conn:  # and back down: the column goes, the row stays
            command.downgrade(schema.alembic_config(conn), "0001")
            columns = {c["name"] for c in sa.inspect(conn).get_columns("jobs")}
            assert "log_text" not in columns
            assert conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection")
def test_upgrade_from_0002_adds_the_base_registry(catalog_url):
    """Revision 0003: base_models gains location/registered_at (old rows keep theirs, NULL),
    and catalog_meta appears; downgrading removes both again."""
    from alembic import command

    engine = sa.create_engine(catalog_url)
    try:
        with engine.begin() as conn:
            command.upgrade(schema.alembic_config(conn), "0002")
            conn.execute(sa.text("INSERT INTO base_models (name, digest) VALUES ('b', 'd')"))
        assert init_catalog(catalog_url) == ("0002", schema.HEAD_REVISION)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT name, digest, location FROM base_models")).all()
            assert [tuple(r) for r in rows] == [("b", "d", None)]
            assert conn.execute(sa.text("SELECT count(*) FROM catalog_meta")).scalar() == 0
        with engine.begin() as conn:
            command.downgrade(schema.alembic_config(conn), "0002")
            assert not sa.inspect(conn).has_table("catalog_meta")
            columns = {c["name"] for c in sa.inspect(conn).get_columns("base_models")}
            assert "location" not in columns
    finally:
        engine.dispose()
