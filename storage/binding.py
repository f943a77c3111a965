"""Which catalog a store belongs to: recorded on both sides by ``zoo init``, checked by gc/fsck.

Garbage collection deletes the blobs no catalog row references. Run against the WRONG catalog
(a new one, an empty one, a colleague's laptop catalog pointed at the team bucket) every blob
looks unreferenced. So ``zoo init`` gives the catalog an identity (``catalog_meta``), writes it
into the store (``zoo-store.json`` at the store's root) and records the store in the catalog;
``gc`` and ``fsck`` refuse a store bound to another catalog, and ``gc`` an unbound one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zoo.errors import IntegrityError
from zoo.storage.blobstore import BlobStore
from zoo.storage.db import Catalog
from zoo.storage.sql import upsert
from zoo.storage.tables import CatalogMeta
from zoo.untrusted import UntrustedInputError, load_json

MARKER = "zoo-store.json"


@dataclass(frozen=True)
class Binding:
    """What ``zoo init`` recorded: the catalog's id and the store it is bound to."""

    catalog_id: str
    store_id: str
    store_url: str


def _meta(session: Session) -> dict[str, str]:
    return dict(session.execute(select(CatalogMeta.key, CatalogMeta.value)).all())


def catalog_id(catalog: Catalog) -> str:
    """This catalog's identity, created on first use (``zoo init``)."""
    def run(session: Session) -> str:
        known = _meta(session).get("catalog_id")
        if known is None:
            known = str(uuid.uuid4())
            upsert(session, CatalogMeta, {"key": "catalog_id", "value": known},
                   key=("key",), update=("value",))
        return known

    return catalog.run(run)


def read_marker(store: BlobStore) -> dict[str, Any] | None:
    """The store's binding marker, or None when the store was never bound."""
    raw = store.read_meta(MARKER)
    if raw is None:
        return None
    try:
        marker = load_json(raw, max_bytes=64 * 1024)
        if not isinstance(marker, dict) or not isinstance(marker.get("catalog_id"), str):
            raise UntrustedInputError("has no catalog_id")
    except UntrustedInputError as exc:
        raise IntegrityError(f"store {store.url}: {MARKER} {exc}; it cannot say which catalog "
                             "it belongs to") from None
    return marker


def bind(catalog: Catalog, store: BlobStore, *, rebind: bool = False) -> Binding:
    """``zoo init``: tie the store to this catalog (both sides), refusing a store that another
    catalog owns unless ``rebind`` (after a restore from backup, say)."""
    cid = catalog_id(catalog)
    marker = read_marker(store)
    if marker is not None and marker["catalog_id"] != cid and not rebind:
        raise IntegrityError(
            f"store {store.url} belongs to another catalog (id {marker['catalog_id']}); this "
            f"catalog is {cid}. Point ZOO_CATALOG_URL at that catalog, or pass --rebind if this "
            "catalog really is its owner now")
    store_id = str(marker.get("store_id") if marker and marker.get("store_id") else uuid.uuid4())
    if marker is None or marker["catalog_id"] != cid:
        store.write_meta(MARKER, json.dumps({"catalog_id": cid, "store_id": store_id},
                                            sort_keys=True).encode())

    def record(session: Session) -> None:
        for key, value in (("store_id", store_id), ("store_url", store.url)):
            upsert(session, CatalogMeta, {"key": key, "value": value}, key=("key",),
                   update=("value",))

    catalog.run(record)
    return Binding(cid, store_id, store.url)


def check_bound(catalog: Catalog, store: BlobStore, *, require: bool) -> None:
    """Refuse a store bound to another catalog; with ``require`` also an unbound one (gc)."""
    marker = read_marker(store)
    if marker is None:
        if require:
            raise IntegrityError(f"store {store.url} is not bound to any catalog; run `zoo init` "
                                 "with this catalog and store before gc")
        return
    cid = catalog.run(lambda session: _meta(session).get("catalog_id"), readonly=True)
    if marker["catalog_id"] != cid:
        raise IntegrityError(
            f"store {store.url} belongs to another catalog (id {marker['catalog_id']}), not to "
            f"{catalog.redacted_url} (id {cid or 'none: run `zoo init`'}); refusing")
