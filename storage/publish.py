"""The publish protocol: read → validate → sha256 → upload (dedup) → ONE catalog transaction,
which ends the upload and verifies it before its COMMIT.

Why this order: the blob is in the store, verified, before any catalog row naming it commits,
and the row plus whatever the caller needs done atomically with it (``on_commit``, e.g. marking
a job SUCCEEDED) commit together. The upload ends inside the transaction rather than before it
so that a local store's fsync overlaps the transaction's statements. A crash at any point
therefore leaves at worst an orphan blob — reported by ``zoo fsck`` and removed by
``zoo gc`` — never a row whose blob is missing. Publishing is idempotent: the same job id, or
the same digest under the same name, returns the adapter already in the catalog instead of a
second row.

The digest is the digest of the bytes stored: a file is read ONCE into memory, and the same
buffer is hashed, validated and uploaded (a file that changes while it is read is refused).
Pushing a file whose blob exists but is damaged replaces the blob with the good bytes.

Crash injection (for the crash-safety tests only): when the environment variable
``ZOO_CRASH_AT`` equals one of ``CRASH_POINTS`` the publishing process SIGKILLs itself at that
point — a real, uncatchable kill, as an OOM killer or a pre-empted node would do.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from zoo.adapter_meta import parse_adapter_header
from zoo.adapter_source import read_adapter_source
from zoo.errors import IntegrityError
from zoo.names import parse_name_alias, parse_tags, validate_name
from zoo.storage.blobstore import BlobStore
from zoo.storage.db import Catalog

CRASH_ENV = "ZOO_CRASH_AT"
CRASH_POINTS = ("before-upload", "after-upload", "in-transaction")

# (session, adapter_id) inside the publish transaction, e.g. marking the job SUCCEEDED
OnCommit = Callable[[Session, str], None]


def crash_point(name: str) -> None:
    """SIGKILL this process if ``ZOO_CRASH_AT`` names this point (test-only fault injection)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class PublishResult:
    """What publish did: the adapter (as ``adapter_to_dict``), and whether bytes were uploaded."""

    adapter: dict[str, Any]
    uploaded: bool

    @property
    def id(self) -> str:
        return str(self.adapter["id"])

    @property
    def digest(self) -> str:
        return str(self.adapter["digest"])




def publish(
    catalog: Catalog,
    store: BlobStore,
    source: str | os.PathLike[str] | bytes,
    *,
    name: str,
    tags: Sequence[str] = (),
    aliases: Sequence[str] = (),
    job_id: str | None = None,
    dataset_fingerprint: str | None = None,
    on_commit: OnCommit | None = None,
    job_running: bool = False,
    base: str | None = None,
    base_location: str | None = None,
) -> PublishResult:
    """Publish a zoo adapter file, a PEFT LoRA directory, or an adapter file's bytes already
    in memory (a worker's fresh adapter) under ``name``.

    ``aliases`` are ``NAME@ALIAS`` (or a bare ``ALIAS`` meaning ``name@ALIAS``). ``base`` names
    a registered base model (``zoo push --base``); ``base_location`` is where a training job
    found its base (the job registers it): see :mod:`zoo.storage.bases`.
    ``job_running=True`` says the caller runs the job's current attempt, so the job has
    published nothing yet: the lookup that spares a retried job its upload is skipped (the
    commit still re-checks the job id inside its transaction).
    """
    name = validate_name(name)
    tag_list = [str(t) for t in parse_tags(list(tags))]
    alias_list = [f"{n}@{a}" for n, a in (parse_name_alias(x, default_name=name) for x in aliases)]
    data = source if isinstance(source, bytes) else read_adapter_source(source)
    header = parse_adapter_header(data, source="adapter" if isinstance(source, bytes)
                                  else str(source))
    if job_id is not None and not job_running:
        existing = _published_by_job(catalog, job_id)
        if existing is not None:  # a retried job never publishes twice
            return PublishResult(adapter=existing, uploaded=False)
    from zoo.storage.catalog import adapter_to_dict, add_planned, plan_adapter

    digest = hashlib.sha256(data).hexdigest()
    plan = plan_adapter(  # every field is checked before the upload
        digest=digest, size=len(data), config=header.config, name=name, job_id=job_id,
        dataset_fingerprint=dataset_fingerprint, tags=tag_list, aliases=alias_list)
    crash_point("before-upload")
    # The upload starts now and ends inside the transaction, before its COMMIT: a row never
    # commits before its blob is stored and verified, and the adapter's fsync (a local
    # store's) runs while the transaction's statements do.
    upload = _Upload(store, digest, data)

    def commit(session: Session) -> dict[str, Any]:
        row = add_planned(session, plan, base=base, base_location=base_location)
        if on_commit is not None:
            on_commit(session, row.id)
        upload.finish()
        crash_point("in-transaction")  # the INSERT has run: a kill now hits an open transaction
        return adapter_to_dict(row)

    try:  # one transaction, re-run whole if the database was busy
        adapter = catalog.run(commit)
    except BaseException:
        upload.settle()  # the blob still lands, as an orphan for gc: no temp file left behind
        raise
    return PublishResult(adapter=adapter, uploaded=upload.uploaded)


def _published_by_job(catalog: Catalog, job_id: str) -> dict[str, Any] | None:
    from zoo.storage.catalog import adapter_to_dict, published_by_job

    def find(session: Session) -> dict[str, Any] | None:
        row = published_by_job(session, job_id)
        return None if row is None else adapter_to_dict(row)

    return catalog.run(find, readonly=True)


class _Upload:
    """An adapter's upload, started before the catalog transaction and finished inside it.

    Nothing is uploaded when the store already holds these exact bytes (re-hashed to be sure):
    the blob is touched instead, so a concurrent ``gc`` (which spares blobs younger than its
    grace period) cannot delete it between this check and the catalog commit. A blob of that
    digest whose bytes are damaged is replaced.
    """

    def __init__(self, store: BlobStore, digest: str, data: bytes) -> None:
        self.store, self.digest, self.size = store, digest, len(data)
        self.uploaded = not _intact(store, digest, len(data))
        if self.uploaded:
            self._end: Callable[[], None] | None = store.start_put_bytes(digest, data)
        else:
            store.touch(digest)
            self._end = None

    def finish(self) -> None:
        """End the upload and check what the store holds (again on a re-run transaction:
        cheap, and the blob must still be there when the row commits)."""
        end, self._end = self._end, None
        if end is not None:
            end()
        crash_point("after-upload")  # stored and verified next; the transaction is still open
        info = self.store.stat(self.digest)
        if info is None or info.size != self.size:
            got = "nothing" if info is None else f"{info.size} bytes"
            raise IntegrityError(
                f"upload of blob {self.digest} to {self.store.url} did not verify: "
                f"expected {self.size} bytes, store holds {got}"
            )

    def settle(self) -> None:
        """After a failed transaction: end an upload still open, quietly."""
        end, self._end = self._end, None
        if end is not None:
            with contextlib.suppress(Exception):
                end()


def _intact(store: BlobStore, digest: str, size: int) -> bool:
    """Whether the store already holds exactly these bytes under ``digest``."""
    info = store.stat(digest)
    if info is None or info.size != size:
        return False
    from zoo.errors import NotFoundError

    try:
        return store.hash_blob(digest) == (digest, size)
    except NotFoundError:  # deleted since the stat
        return False
