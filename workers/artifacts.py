"""Garbage collection of the job-artifact area (``<store>/jobs/``): what no job row needs.

The area holds staged inputs (data files, model manifests and model files), attempt logs and
checkpoints. The protocols delete what they supersede (an older log, the last checkpoint of a
finished job), so garbage comes only from crashes and abandoned submissions: a worker killed
between an upload and its catalog update, a submission that died after staging its inputs.
A blob is needed while any job row names it: its log, its checkpoint, or its spec's staged
inputs (a model manifest, and every file the manifest lists). Jobs are never deleted, so the
inputs of old jobs stay for their retries and for ``zoo jobs show``.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from zoo.errors import NotFoundError
from zoo.storage import staging
from zoo.storage.fsck import GcReport, collect_garbage
from zoo.storage.tables import JobRow


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


def referenced_artifacts(catalog: Any, store: Any) -> set[str]:
    """Every digest of the job area some job row needs (model manifests read from ``store``).

    A manifest that is gone no longer protects files (its job cannot run anyway); any other
    read error propagates, so nothing is deleted on a guess."""
    blobs: set[str] = set()
    models: set[str] = set()
    query = sa.select(JobRow.spec, JobRow.log_uri, JobRow.checkpoint_uri)
    with catalog.transaction(readonly=True) as session:
        for spec_json, log_uri, checkpoint_uri in session.execute(query):
            row_blobs, row_models = _row_references(spec_json, log_uri, checkpoint_uri)
            blobs |= row_blobs
            models |= row_models
    for digest in sorted(models):
        blobs.add(digest)
        try:
            manifest = json.loads(staging.get_bytes(store, digest))
        except NotFoundError:
            continue
        blobs.update(manifest.get("files", {}).values())
    return blobs


def gc_job_artifacts(catalog: Any, store_url: str, *, grace: str | float = "1h",
                     dry_run: bool = False) -> GcReport:
    """``zoo gc`` for the job area: delete blobs no job row needs, older than ``grace`` (which
    also spares the inputs of a submission still staging, before its job rows exist)."""
    store = staging.open_artifacts(store_url)
    return collect_garbage(store, lambda: referenced_artifacts(catalog, store), grace=grace,
                           dry_run=dry_run)


__all__ = ["gc_job_artifacts", "referenced_artifacts"]
