"""Catalog fixtures: a fresh catalog on SQLite and on PostgreSQL, and fake adapter rows.

Adapter rows need no files here: a config per docs/adapter-format.md and a fake sha256 are enough
(the publish tests exercise real files and blobs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from catalog_fixtures import adapter_config, fake_digest, snapshot


@pytest.fixture(params=["sqlite", "pg"])
def catalog_url(request, tmp_path) -> str:
    """A fresh, uninitialised catalog URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.db'}"


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Any]:
    """An initialised, open catalog (schema at head)."""
    from zoo.storage.db import init_catalog, open_catalog

    init_catalog(catalog_url)
    cat = open_catalog(catalog_url)
    try:
        yield cat
    finally:
        cat.close()


@pytest.fixture
def add(catalog) -> Callable[..., str]:
    """``add(name, seed=..., tags=..., aliases=..., **config_overrides) -> adapter id``."""
    counter = iter(range(10**9))

    def _add(name: str, *, seed: object = None, tags=(), aliases=(), job_id=None,
             dataset_fingerprint=None, size: int = 1234, **cfg: Any) -> str:
        from zoo.storage.catalog import add_adapter

        digest = fake_digest(seed if seed is not None else (name, next(counter)))
        with catalog.transaction() as s:
            row = add_adapter(s, digest=digest, size=size, config=adapter_config(**cfg),
                              name=name, tags=tags, aliases=aliases, job_id=job_id,
                              dataset_fingerprint=dataset_fingerprint)
            return row.id

    return _add


@pytest.fixture
def table_snapshot(catalog) -> Callable[[], dict[str, list]]:
    return lambda: snapshot(catalog)
