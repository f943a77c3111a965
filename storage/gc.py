"""``gc``: remove what nothing in the catalog needs — the whole of it, for every caller.

Three kinds of garbage, one call (:func:`gc`), so a script gets exactly what ``zoo gc`` does:

- adapter blobs no adapter row references (uploads whose publish never committed);
- blobs of the job-artifact area (``<store>/jobs/``: staged inputs, logs, checkpoints) that no
  job row needs: its log, its checkpoint, its spec's staged inputs (a model manifest and every
  file the manifest lists). Jobs are never deleted, so old jobs keep their inputs;
- what killed writers left: temp files of a local store, S3 multipart uploads never completed.

Safety, because deleting is forever:

- a grace period: publish uploads before it commits, and ``zoo submit`` stages inputs before
  its job rows exist, so a young unreferenced blob may be work in flight. The store is listed
  BEFORE the referenced set is read, and each candidate is re-checked just before deletion (a
  re-publish touches its blob), so a blob that became referenced meanwhile survives;
- the store must be bound to THIS catalog (``zoo init``; ``zoo.storage.binding``);
- gc refuses to delete more than half of an area's blobs unless ``force``: that is what running
  it against an empty or truncated catalog would look like.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zoo.durations import parse_duration
from zoo.errors import IntegrityError
from zoo.storage import audit, staging
from zoo.storage.blobstore import BlobInfo, BlobStore, UnfinishedWrite
from zoo.storage.db import Catalog
from zoo.storage.tables import AdapterRow, JobRow

SAFE_SHARE = 0.5


@dataclass
class AreaReport:
    """What gc did (or would do) in one area of the store."""

    store: str
    removed: list[BlobInfo] = field(default_factory=list)
    kept_young: list[BlobInfo] = field(default_factory=list)
    unfinished_removed: list[UnfinishedWrite] = field(default_factory=list)

    @property
    def removed_bytes(self) -> int:
        return sum(b.size for b in self.removed)

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "removed": [asdict(b) for b in self.removed],
                "removed_bytes": self.removed_bytes,
                "kept_young": [asdict(b) for b in self.kept_young],
                "unfinished_removed": [asdict(w) for w in self.unfinished_removed]}


@dataclass
class GcReport:
    dry_run: bool
    grace_seconds: float
    adapters: AreaReport
    jobs: AreaReport

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "grace_seconds": self.grace_seconds,
                "adapter_blobs": self.adapters.to_dict(), "job_artifacts": self.jobs.to_dict()}


def gc(catalog: Catalog, store: BlobStore, *, grace: str | float = "1h", dry_run: bool = False,
       force: bool = False) -> GcReport:
    """Delete what no catalog row needs, older than ``grace``; never a referenced blob."""
    from zoo.storage.binding import check_bound

    check_bound(catalog, store, require=True)
    grace_s = parse_duration(grace)
    artifacts = staging.open_artifacts(store.url)
    adapters = collect(store, lambda: referenced_adapters(catalog), grace_s=grace_s,
                       dry_run=dry_run, force=force, what="adapter blobs")
    jobs = collect(artifacts, lambda: referenced_artifacts(catalog, artifacts), grace_s=grace_s,
                   dry_run=dry_run, force=force, what="job artifacts")
    report = GcReport(dry_run, grace_s, adapters, jobs)
    if not dry_run:  # the blobs are gone already: the row records what went
        catalog.run(lambda s: audit.record(s, "gc", store.url, after={
            "adapter_blobs": len(adapters.removed), "job_artifacts": len(jobs.removed),
            "bytes": adapters.removed_bytes + jobs.removed_bytes}))
    return report


def referenced_adapters(catalog: Catalog) -> set[str]:
    """Every digest an adapter row references."""
    return catalog.run(lambda s: set(s.scalars(select(AdapterRow.digest).distinct())),
                       readonly=True)


def collect(store: BlobStore, referenced_now: Callable[[], set[str]], *, grace_s: float,
            dry_run: bool = False, force: bool = False, what: str = "blobs") -> AreaReport:
    """Delete the blobs of ``store`` outside ``referenced_now()`` and older than ``grace_s``,
    then the unfinished writes older than ``grace_s``."""
    listed = list(store.list_blobs())
    referenced = referenced_now()
    now = time.time()
    doomed = [b for b in listed if b.digest not in referenced and now - b.mtime >= grace_s]
    if not force and len(doomed) > SAFE_SHARE * len(listed):
        raise IntegrityError(
            f"gc would delete {len(doomed)} of the {len(listed)} {what} in {store.url}, more "
            f"than {SAFE_SHARE:.0%}: is this the catalog that owns the store? Check with "
            "`zoo fsck`; if it is right, run `zoo gc --force`")
    report = AreaReport(store=store.url)
    report.kept_young = sorted((b for b in listed if b.digest not in referenced
                                and now - b.mtime < grace_s), key=lambda b: b.digest)
    for info in sorted(doomed, key=lambda b: b.digest):
        if not dry_run:
            current = store.stat(info.digest)  # re-check: a publish may have touched it
            if current is None:
                continue
            if time.time() - current.mtime < grace_s:
                report.kept_young.append(current)
                continue
            store.delete(info.digest)
        report.removed.append(info)
    for write in store.unfinished_writes():  # a killed writer's leftovers, never a blob
        if time.time() - write.mtime >= grace_s:
            if not dry_run:
                store.remove_unfinished(write)
            report.unfinished_removed.append(write)
    return report


def _row_references(spec_json: str, log_uri: str | None, checkpoint_uri: str | None,
                    ) -> tuple[set[str], set[str]]:
    """(blob digests, model manifest digests) one job row names."""
    blobs = {staging.digest_of(uri) for uri in (log_uri, checkpoint_uri) if uri}
    models = set()
    spec = json.loads(spec_json)
    base = spec.get("base_model") or ""
    if base.startswith(staging.MODEL_SCHEME):
        models.add(staging.digest_of(base))
    for uri in (spec.get("data") or {}).values():
        if isinstance(uri, str) and uri.startswith(staging.BLOB_SCHEME):
            blobs.add(staging.digest_of(uri))
    return blobs, models


def referenced_artifacts(catalog: Catalog, store: BlobStore) -> set[str]:
    """Every digest of the job area some job row needs (model manifests read from ``store``).

    A registered base that lives in the store (``zoo-model:``) is needed too. A manifest that
    is gone no longer protects files (nothing can load it anyway); any other read error
    propagates, so nothing is deleted on a guess."""
    from zoo.storage.tables import BaseModelRow

    def run(session: Session) -> tuple[set[str], set[str]]:
        blobs: set[str] = set()
        models: set[str] = set()
        for spec_json, log_uri, ckpt in session.execute(
                select(JobRow.spec, JobRow.log_uri, JobRow.checkpoint_uri)):
            row_blobs, row_models = _row_references(spec_json, log_uri, ckpt)
            blobs |= row_blobs
            models |= row_models
        for (location,) in session.execute(select(BaseModelRow.location).where(
                BaseModelRow.location.startswith(staging.MODEL_SCHEME))):
            models.add(staging.digest_of(location))
        return blobs, models

    blobs, models = catalog.run(run, readonly=True)
    for digest in sorted(models):
        blobs.add(digest)
        if store.stat(digest) is None:
            continue
        manifest = json.loads(staging.get_bytes(store, digest))
        blobs.update(manifest.get("files", {}).values())
    return blobs
