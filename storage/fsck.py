"""``fsck`` and ``gc``: reconcile the catalog with the object store.

The publish protocol guarantees at worst orphan blobs (uploaded, never committed); fsck also
finds what no protocol can prevent — blobs deleted or corrupted behind the zoo's back:

- orphans: blobs no catalog row references (harmless garbage; ``gc`` removes them);
- missing: rows whose blob is absent (pull of those adapters fails);
- mismatched: blobs whose size (always) or sha256 (``verify=True``, re-hashes every byte)
  differs from what the row says.

``gc`` deletes orphans older than a grace period and never a referenced blob. Why a grace
period: publish uploads before it commits, so a blob a few seconds old with no row may be a
publish in flight. The referenced set is read AFTER listing the store, and each candidate is
re-checked just before deletion, so a blob re-published meanwhile (publish touches it) survives.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select

from zoo.errors import ConfigError, NotFoundError
from zoo.storage.blobstore import BlobInfo, BlobStore, UnfinishedWrite
from zoo.storage.parallel import ProgressFn, run_parallel

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | float | int) -> float:
    """``90``, ``30s``, ``15m``, ``1h``, ``7d``, ``2w`` → seconds."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        m = _DURATION.match(text)
        if not m:
            raise ConfigError(f"duration {text!r} is not like 30s, 15m, 1h, 7d or 2w")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds < 0:
        raise ConfigError(f"duration must not be negative, got {text!r}")
    return seconds


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
            "store": self.store, "ok": self.ok, "blobs": self.blobs, "adapters": self.adapters,
            "verified": self.verified,
            "orphans": [asdict(o) for o in self.orphans],
            "missing": [asdict(p) for p in self.missing],
            "mismatched": [asdict(p) for p in self.mismatched],
        }


@dataclass
class GcReport:
    store: str
    dry_run: bool
    grace_seconds: float
    removed: list[BlobInfo] = field(default_factory=list)
    kept_young: list[BlobInfo] = field(default_factory=list)
    unfinished_removed: list[UnfinishedWrite] = field(default_factory=list)

    @property
    def removed_bytes(self) -> int:
        return sum(b.size for b in self.removed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store, "dry_run": self.dry_run, "grace_seconds": self.grace_seconds,
            "removed": [asdict(b) for b in self.removed], "removed_bytes": self.removed_bytes,
            "kept_young": [asdict(b) for b in self.kept_young],
            "unfinished_removed": [asdict(w) for w in self.unfinished_removed],
        }


def _catalog_rows(catalog: Any) -> tuple[dict[str, tuple[int, list[RowRef]]], set[str]]:
    """digest → (size, adapters) for every adapter row, and every digest the catalog needs."""
    from zoo.storage.catalog import referenced_digests
    from zoo.storage.tables import AdapterRow

    rows: dict[str, tuple[int, list[RowRef]]] = {}
    with catalog.transaction(readonly=True) as session:
        for digest, size, id_, name in session.execute(
            select(AdapterRow.digest, AdapterRow.size, AdapterRow.id, AdapterRow.name)
        ):
            rows.setdefault(digest, (int(size), []))[1].append(RowRef(id_, name))
        referenced = set(referenced_digests(session))
    return rows, referenced | set(rows)


def fsck(catalog: Any, store: BlobStore, *, verify: bool = False, workers: int = 8,
         progress: ProgressFn | None = None) -> FsckReport:
    """Compare catalog rows with the store; ``verify`` re-hashes every referenced blob."""
    blobs = {b.digest: b for b in store.list_blobs()}
    rows, referenced = _catalog_rows(catalog)
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


def gc(catalog: Any, store: BlobStore, *, grace: str | float = "1h",
       dry_run: bool = False) -> GcReport:
    """Delete orphan blobs older than ``grace``; never a blob any catalog row references."""
    return collect_garbage(store, lambda: _catalog_rows(catalog)[1], grace=grace,
                           dry_run=dry_run)


def collect_garbage(store: BlobStore, referenced_now: Callable[[], set[str]], *,
                    grace: str | float = "1h", dry_run: bool = False) -> GcReport:
    """Delete the blobs of ``store`` outside ``referenced_now()`` and older than ``grace``.

    The store is listed BEFORE the referenced set is read, so a row committed in between is
    seen; each candidate is re-checked just before deletion (a re-upload touches it)."""
    grace_s = parse_duration(grace)
    listed = list(store.list_blobs())
    referenced = referenced_now()
    report = GcReport(store=store.url, dry_run=dry_run, grace_seconds=grace_s)
    now = time.time()
    for info in sorted(listed, key=lambda b: b.digest):
        if info.digest in referenced:
            continue
        if now - info.mtime < grace_s:
            report.kept_young.append(info)
            continue
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
