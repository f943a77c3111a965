"""The publish protocol: validate → sha256 → upload (dedup) → ONE catalog transaction, which
ends the upload and verifies it before its COMMIT.

Why this order: the blob is in the store, verified, before any catalog row naming it commits,
and the row plus whatever the caller needs done atomically with it (``on_commit``, e.g. marking
a job SUCCEEDED) commit together. The upload ends inside the transaction rather than before it
so that a local store's fsync overlaps the transaction's statements. A crash at any point
therefore leaves at worst an orphan blob — reported by ``zoo fsck`` and removed by
``zoo gc`` — never a row whose blob is missing. Publishing is idempotent: the same job id, or
the same digest under the same name, returns the adapter already in the catalog instead of a
second row.

Crash injection (for the crash-safety tests only): when the environment variable
``ZOO_CRASH_AT`` equals one of ``CRASH_POINTS`` the publishing process SIGKILLs itself at that
point — a real, uncatchable kill, as an OOM killer or a pre-empted node would do.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.adapter_meta import AdapterHeader, parse_adapter_header, read_adapter_header
from zoo.errors import AdapterFormatError, IntegrityError
from zoo.storage.blobstore import BlobStore, sha256_file

CRASH_ENV = "ZOO_CRASH_AT"
CRASH_POINTS = ("before-upload", "after-upload", "in-transaction")

# (connection, adapter_id) inside the publish transaction: a SQLAlchemy Connection or the raw
# one of ``Catalog.run_raw``; both run ``zoo.storage.prepared.Prepared`` statements.
OnCommit = Callable[[Any, str], None]


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
    catalog: Any,
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
) -> PublishResult:
    """Publish a zoo adapter file, a PEFT LoRA directory, or an adapter file's bytes already
    in memory (a worker's fresh adapter: no temp file written and read back) under ``name``.

    ``aliases`` are ``NAME@ALIAS`` (or a bare ``ALIAS`` meaning ``name@ALIAS``).
    ``job_running=True`` says the caller runs the job's current attempt, so the job has
    published nothing yet: the lookup that spares a retried job its upload is skipped (the
    commit still re-checks the job id inside its transaction).
    """
    from zoo.names import parse_name_alias, parse_tags, validate_name

    name = validate_name(name)
    labels = {
        "name": name, "tags": [str(t) for t in parse_tags(list(tags))],
        "aliases": [f"{n}@{a}" for n, a in (parse_name_alias(x, default_name=name)
                                           for x in aliases)],
        "job_id": job_id, "dataset_fingerprint": dataset_fingerprint, "on_commit": on_commit,
        "job_running": job_running,
    }
    if isinstance(source, bytes):
        return _publish(catalog, store, _in_memory(store, source), **labels)
    path = Path(source)
    if path.is_dir():
        from zoo.storage.peft_import import peft_dir_to_file

        with tempfile.TemporaryDirectory(prefix="zoo-peft-") as tmp:
            converted = peft_dir_to_file(path, Path(tmp) / "adapter.safetensors")
            return _publish(catalog, store, _on_disk(store, converted), **labels)
    if not path.exists():
        raise FileNotFoundError(f"nothing to push at {path}: no such file or directory")
    return _publish(catalog, store, _on_disk(store, path), **labels)


@dataclass(frozen=True)
class _Source:
    """An adapter to publish: its validated header, and how to hash and upload its bytes."""

    header: AdapterHeader
    measure: Callable[[], tuple[str, int]]  # (sha256, size)
    start_put: Callable[[str], Callable[[], None]]  # start the upload; call the result to end it


def _on_disk(store: BlobStore, path: Path) -> _Source:
    def put(digest: str) -> Callable[[], None]:
        store.put_file(digest, path)
        return lambda: None

    return _Source(read_adapter_header(path), lambda: sha256_file(path), put)  # torch-free


def _in_memory(store: BlobStore, data: bytes) -> _Source:
    header = parse_adapter_header(data, source="adapter")
    if header.file_size != len(data):
        raise AdapterFormatError(f"adapter: {len(data)} bytes, but its header describes "
                                 f"{header.file_size}")
    return _Source(header, lambda: (hashlib.sha256(data).hexdigest(), len(data)),
                   lambda digest: store.start_put_bytes(digest, data))


def _publish(catalog: Any, store: BlobStore, source: _Source, *, name: str, tags: list[str],
             aliases: list[str], job_id: str | None, dataset_fingerprint: str | None,
             on_commit: OnCommit | None, job_running: bool) -> PublishResult:
    """Upload (verified), then the ONE catalog transaction."""
    from zoo.storage.catalog import adapter_to_dict, add_planned, insert_adapter, plan_adapter

    if job_id is not None and not job_running:
        existing = _published_by_job(catalog, job_id)
        if existing is not None:  # a retried job never publishes twice
            return PublishResult(adapter=existing, uploaded=False)
    digest, size = source.measure()
    plan = plan_adapter(  # every field is checked before the upload
        digest=digest, size=size, config=source.header.config, name=name, job_id=job_id,
        dataset_fingerprint=dataset_fingerprint, tags=tags, aliases=aliases)
    crash_point("before-upload")
    # The upload starts now and ends inside the transaction, before its COMMIT: a row never
    # commits before its blob is stored and verified, and the adapter's fsync (a local
    # store's) runs while the transaction's statements do.
    upload = _Upload(store, digest, size, source.start_put)

    def commit_new(connection: Any) -> dict[str, Any] | None:
        """A new adapter, on the raw connection: its row is what was written."""
        if insert_adapter(connection, plan) is None:
            return None  # published before: labelled and returned by commit_existing
        if on_commit is not None:
            on_commit(connection, plan.values["id"])
        upload.finish()
        crash_point("in-transaction")  # the INSERT has run: a kill now hits an open transaction
        return plan.to_dict()

    def commit_existing(session: Any) -> dict[str, Any]:
        row = add_planned(session, plan)
        if on_commit is not None:
            on_commit(session.connection(), row.id)
        upload.finish()
        crash_point("in-transaction")
        return adapter_to_dict(row)

    try:  # one transaction, re-run whole if the database was busy
        adapter = catalog.run_raw(commit_new) or catalog.run(commit_existing)
    except BaseException:
        upload.settle()  # the blob still lands, as an orphan for gc: no temp file left behind
        raise
    return PublishResult(adapter=adapter, uploaded=upload.uploaded)


def _published_by_job(catalog: Any, job_id: str) -> dict[str, Any] | None:
    from sqlalchemy import select

    from zoo.storage.catalog import adapter_to_dict, resolve_ref
    from zoo.storage.tables import AdapterRow

    with catalog.transaction(readonly=True) as session:
        found = session.scalars(select(AdapterRow.id).where(AdapterRow.job_id == job_id)).first()
        return None if found is None else adapter_to_dict(resolve_ref(session, found))


class _Upload:
    """An adapter's upload, started before the catalog transaction and finished inside it.

    Nothing is uploaded when an object of the right size is there already: it is touched
    instead, so a concurrent ``gc`` (which spares blobs younger than its grace period) cannot
    delete it between this check and the catalog commit.
    """

    def __init__(self, store: BlobStore, digest: str, size: int,
                 start_put: Callable[[str], Callable[[], None]]) -> None:
        self.store, self.digest, self.size = store, digest, size
        info = store.stat(digest)
        self.uploaded = not (info is not None and info.size == size)
        if self.uploaded:
            self._end: Callable[[], None] | None = start_put(digest)
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
