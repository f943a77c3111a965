"""``fsck``: reconcile the catalog with the object store (``zoo.storage.gc`` collects garbage).

The publish protocol guarantees at worst orphan blobs (uploaded, never committed); fsck also
finds what no protocol can prevent — blobs deleted or corrupted behind the zoo's back:

- orphans: blobs no catalog row references (harmless garbage; ``gc`` removes them);
- missing: rows whose blob is absent (pull of those adapters fails);
- mismatched: blobs whose size (always) or sha256 (``verify=True``, re-hashes every byte)
  differs from what the row says.

fsck refuses a store that ``zoo init`` bound to another catalog (``zoo.storage.binding``):
against the wrong catalog every blob would look orphaned and every row's blob missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zoo.errors import NotFoundError
from zoo.storage.blobstore import BlobInfo, BlobStore
from zoo.storage.db import Catalog
from zoo.storage.parallel import ProgressFn, run_parallel


@dataclass(frozen=True)
class RowRef:
    id: str
    name: str


@dataclass(frozen=True)
class Problem:
    """A referenced blob that is missing or whose bytes differ from the catalog."""

    digest: str
    expected_size: int
    adapters: list[RowRef]
    actual_size: int | None = None  # None: missing
    actual_digest: str | None = None  # set when --verify re-hashed and it differs

    def describe(self) -> str:
        names = ", ".join(f"{a.id} ({a.name})" for a in self.adapters[:3])
        if self.actual_size is None:
            return f"missing blob sha256:{self.digest} for adapter {names}"
        if self.actual_size != self.expected_size:
            return (f"size mismatch sha256:{self.digest}: {self.actual_size} bytes, "
                    f"expected {self.expected_size} (adapter {names})")
        return (f"digest mismatch sha256:{self.digest}: bytes hash to {self.actual_digest} "
                f"(adapter {names})")


@dataclass
class FsckReport:
    store: str
    blobs: int = 0
    adapters: int = 0
    verified: bool = False
    orphans: list[BlobInfo] = field(default_factory=list)
    missing: list[Problem] = field(default_factory=list)
    mismatched: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No referenced blob is missing or corrupt (orphans are garbage, not damage)."""
        return not self.missing and not self.mismatched

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store, "ok": self.ok, "blob_count": self.blobs,
            "adapter_count": self.adapters,  # "adapters" is a list wherever the zoo says it
            "verified": self.verified,
            "orphans": [asdict(o) for o in self.orphans],
            "missing": [{**asdict(p), "message": p.describe()} for p in self.missing],
            "mismatched": [{**asdict(p), "message": p.describe()} for p in self.mismatched],
        }


def catalog_rows(catalog: Catalog) -> dict[str, tuple[int, list[RowRef]]]:
    """digest → (size, adapters) for every adapter row (what the store must hold)."""
    from zoo.storage.tables import AdapterRow

    def run(session: Session) -> dict[str, tuple[int, list[RowRef]]]:
        rows: dict[str, tuple[int, list[RowRef]]] = {}
        for digest, size, id_, name in session.execute(
            select(AdapterRow.digest, AdapterRow.size, AdapterRow.id, AdapterRow.name)
        ):
            rows.setdefault(digest, (int(size), []))[1].append(RowRef(id_, name))
        return rows

    return catalog.run(run, readonly=True)


def fsck(catalog: Catalog, store: BlobStore, *, verify: bool = False, workers: int = 8,
         progress: ProgressFn | None = None) -> FsckReport:
    """Compare catalog rows with the store; ``verify`` re-hashes every referenced blob."""
    from zoo.storage.binding import check_bound

    check_bound(catalog, store, require=False)
    blobs = {b.digest: b for b in store.list_blobs()}
    rows = catalog_rows(catalog)
    referenced = set(rows)
    report = FsckReport(store=store.url, blobs=len(blobs),
                        adapters=sum(len(r[1]) for r in rows.values()), verified=verify)
    report.orphans = sorted((b for d, b in blobs.items() if d not in referenced),
                            key=lambda b: b.digest)
    present = []
    for digest in sorted(rows):
        size, refs = rows[digest]
        info = blobs.get(digest)
        if info is None:
            report.missing.append(Problem(digest, size, refs))
        elif info.size != size:
            report.mismatched.append(Problem(digest, size, refs, actual_size=info.size))
        else:
            present.append(digest)
    if verify:
        def rehash(digest: str) -> tuple[str, int] | None:
            try:
                return store.hash_blob(digest)
            except NotFoundError:  # deleted since the listing
                return None

        hashes = run_parallel(present, rehash, workers=workers, progress=progress,
                              size_of=lambda d, _r: rows[d][0])
        for digest, got in zip(present, hashes, strict=True):
            size, refs = rows[digest]
            if got is None:
                report.missing.append(Problem(digest, size, refs))
            elif got != (digest, size):
                report.mismatched.append(
                    Problem(digest, size, refs, actual_size=got[1], actual_digest=got[0]))
    return report
