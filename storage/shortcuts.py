"""``zoo.load`` and ``zoo.publish``: the catalog in one line, for scripts and notebooks.

``import zoo; adapter = zoo.load("sentiment@prod")`` resolves the reference with the user's
settings (``ZOO_HOME``, ``ZOO_CATALOG_URL``, ``ZOO_STORE_URL``, the config file), fetches the
blob verified into ``$ZOO_HOME/cache/adapters`` (a second load reads the cache, re-hashed) and
returns the ``zoo.Adapter``. ``zoo.publish(adapter_or_path, name=…)`` is ``zoo push``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.settings import resolve_settings


def load(ref: str, *, catalog_url: str | None = None, store_url: str | None = None) -> Any:
    """The verified adapter that ``ref`` (an id, a unique id prefix or ``name@alias``) names."""
    from zoo.adapter import Adapter
    from zoo.storage.blobstore import open_store
    from zoo.storage.catalog import resolve_ref
    from zoo.storage.db import open_catalog
    from zoo.storage.fetch import fetch_cached

    settings = resolve_settings(catalog_url=catalog_url, store_url=store_url)
    with open_catalog(settings.catalog_url) as catalog:
        row = catalog.run(lambda s: resolve_ref(s, ref, load=False), readonly=True)
        adapter_id, name, digest, size = row.id, row.name, row.digest, int(row.size)
    path = fetch_cached(open_store(settings.store_url), digest,
                        Path(settings.home) / "cache" / "adapters" / f"{digest}.safetensors",
                        size=size, what=f"adapter {adapter_id} ({name})")
    return Adapter.load(path)


def publish(adapter: Any, *, name: str, tags: Sequence[str] = (), aliases: Sequence[str] = (),
            base: str | None = None, catalog_url: str | None = None,
            store_url: str | None = None) -> dict[str, Any]:
    """Publish a ``zoo.Adapter``, an adapter file or a PEFT LoRA directory under ``name``;
    returns the catalog entry (what ``zoo show --json`` prints)."""
    from zoo.storage.blobstore import open_store
    from zoo.storage.db import open_catalog
    from zoo.storage.publish import publish as publish_source

    source = adapter.to_bytes() if hasattr(adapter, "to_bytes") else os.fspath(adapter)
    settings = resolve_settings(catalog_url=catalog_url, store_url=store_url)
    with open_catalog(settings.catalog_url) as catalog:
        result = publish_source(catalog, open_store(settings.store_url), source, name=name,
                                tags=tags, aliases=aliases, base=base)
    return result.adapter
