"""The pull protocol: resolve in the catalog → parallel download to new unnamed files → verify
sha256 and size → link (or rename) into place.

Why: a registry that hands back a truncated or flipped file without noticing is worse than
none. Every byte pulled is hashed on the way in; a mismatch raises IntegrityError naming the
adapter and its digest, and the unfinished file is discarded, so the output directory
only ever holds complete, verified files. Native files already present are re-hashed and
skipped when they match (a damaged one is replaced); PEFT / merged directories are skipped when
their ``.zoo-adapter.json`` names the same digest. Re-running a pull of thousands is cheap.
Pulled files are not fsynced: a file torn by a power cut fails the re-hash and is re-fetched.

Converting is the domain's work (``zoo.peft_io`` and ``zoo.merge``); a merged pull loads the
base from its REGISTERED location and checks its digest (``zoo.storage.bases``), never from the
name written inside the adapter file.

Output layout (collision-free: an id names exactly one digest, forever):

- ``native``: ``<out>/<name>-<id>.safetensors`` — the adapter file, byte-identical to the blob.
- ``peft``:   ``<out>/<name>-<id>/`` — a PEFT LoRA directory (``adapter_config.json`` +
  ``adapter_model.safetensors``) plus ``.zoo-adapter.json`` recording the source digest.
- ``merged``: ``<out>/<name>-<id>-merged/`` — the base model with the adapter merged in
  (``save_pretrained``), plus ``.zoo-adapter.json``.

Native files are written through ``zoo.files.landing_file``: an unnamed file (Linux
``O_TMPFILE``) that gets its name once verified, else ``<out>/.<final name>.<random>.incomplete``
(hidden, same filesystem) renamed into place. PEFT and merged directories are built in such a
hidden temp directory and renamed in.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, NotFoundError
from zoo.files import landing, remove, sha256_file, temp_path
from zoo.storage.bases import BaseLocation
from zoo.storage.blobstore import BlobStore
from zoo.storage.db import Catalog
from zoo.storage.fetch import fetch_verified
from zoo.storage.parallel import ProgressFn, run_parallel

FORMATS = ("native", "peft", "merged")
MARKER = ".zoo-adapter.json"


@dataclass(frozen=True)
class PullItem:
    """What the catalog says about one adapter to pull."""

    id: str
    name: str
    digest: str
    size: int
    base: BaseLocation | None = None  # where a merged pull loads the base from

    @property
    def stem(self) -> str:
        return f"{self.name}-{self.id}"


@dataclass(frozen=True)
class Pulled:
    """One adapter on disk: where, and whether it was already there (verified, skipped)."""

    id: str
    name: str
    digest: str
    size: int
    path: str
    skipped: bool


@dataclass(frozen=True)
class PullResult:
    out_dir: str
    format: str
    adapters: list[Pulled]

    @property
    def downloaded(self) -> int:
        return sum(not a.skipped for a in self.adapters)

    @property
    def skipped(self) -> int:
        return sum(a.skipped for a in self.adapters)

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": self.out_dir, "format": self.format, "downloaded": self.downloaded,
                "skipped": self.skipped, "adapters": [asdict(a) for a in self.adapters]}


def resolve_items(catalog: Catalog, refs: Sequence[str] = (), *, tag: str | None = None,
                  query: str | None = None, with_base: bool = False) -> list[PullItem]:
    """Resolve refs / a tag / a query to adapters (deduplicated; refs first, then by age).

    Same semantics as ``catalog.resolve_many`` (each ref must resolve; tag AND query), but it
    selects only the four columns a pull needs: resolving 1,000 adapters is one light query
    instead of loading tags, aliases and metrics for every row. ``with_base`` adds each
    adapter's registered base location (a merged pull needs it; an unregistered base is an
    error that says how to register it).
    """
    from sqlalchemy import select

    from zoo.storage.catalog import resolve_ref, selection_query
    from zoo.storage.query import compile_query
    from zoo.storage.tables import AdapterRow

    if not refs and tag is None and not query:
        raise ConfigError("nothing to pull: give REF..., --tag or --query")
    items: dict[str, PullItem] = {}
    with catalog.transaction(readonly=True) as session:
        for ref in refs:
            row = resolve_ref(session, ref, load=False)
            items.setdefault(row.id, PullItem(row.id, row.name, row.digest, int(row.size)))
        text = selection_query(tag, query)
        if text:
            stmt = (select(AdapterRow.id, AdapterRow.name, AdapterRow.digest, AdapterRow.size)
                    .where(*compile_query(text)).order_by(AdapterRow.created_at, AdapterRow.id))
            for id_, name, digest, size in session.execute(stmt):
                items.setdefault(id_, PullItem(id_, name, digest, int(size)))
        if not items:
            what = f"tag {tag!r}" if tag is not None else f"query {query!r}"
            raise NotFoundError(f"no adapter matches {what}")
        if with_base:
            from zoo.storage.bases import location_of

            items = {i: replace(item, base=location_of(session, i)) for i, item in items.items()}
    return list(items.values())


def pull(
    catalog: Catalog,
    store: BlobStore,
    refs: Sequence[str] = (),
    *,
    out_dir: str | os.PathLike[str],
    tag: str | None = None,
    query: str | None = None,
    format: str = "native",
    workers: int = 8,
    progress: ProgressFn | None = None,
) -> PullResult:
    """Pull adapters into ``out_dir`` in ``format``; see the module docstring for the layout."""
    if format not in FORMATS:
        raise ConfigError(f"format {format!r} is not one of {', '.join(FORMATS)}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    items = resolve_items(catalog, refs, tag=tag, query=query, with_base=format == "merged")
    return pull_items(store, items, out_dir=out_dir, format=format, workers=workers,
                      progress=progress)


def pull_items(store: BlobStore, items: Sequence[PullItem], *, out_dir: str | os.PathLike[str],
               format: str = "native", workers: int = 8,
               progress: ProgressFn | None = None) -> PullResult:
    """Download already-resolved items (the part after the catalog lookup)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out}: exists and is not a directory")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    if format == "native":
        # in a folder this pull just made there is nothing to compare with: skip the lookups
        fn = lambda item: _pull_native(store, item, out, existing=not created)  # noqa: E731
    else:
        fn = lambda item: _pull_converted(store, item, out, format)  # noqa: E731
        workers = 1 if format == "merged" else workers  # a merge holds a whole base in memory
    try:
        results = run_parallel(items, fn, workers=workers, progress=progress,
                               size_of=lambda item, _res: item.size)
    except BaseException:
        if created:  # a pull that failed before its first file leaves no trace, not even -o
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return PullResult(out_dir=str(out), format=format, adapters=results)


def _what(item: PullItem) -> str:
    return f"adapter {item.id} ({item.name})"


def _pull_native(store: BlobStore, item: PullItem, out: Path, *, existing: bool = True) -> Pulled:
    final = out / f"{item.stem}.safetensors"
    if existing and final.is_file() and sha256_file(final) == (item.digest, item.size):
        return _pulled(item, final, skipped=True)
    fetch_verified(store, item.digest, final, size=item.size, what=_what(item))
    return _pulled(item, final, skipped=False)


def _pull_converted(store: BlobStore, item: PullItem, out: Path, format: str) -> Pulled:
    """Download + verify the native file, convert it into a temp dir, rename the dir in."""
    final = out / (item.stem if format == "peft" else f"{item.stem}-merged")
    if _marker_digest(final) == item.digest:
        return _pulled(item, final, skipped=True)
    native = temp_path(out / f"{final.name}.safetensors")
    try:
        fetch_verified(store, item.digest, native, size=item.size, what=_what(item))
        from zoo.adapter import Adapter

        adapter = Adapter.load(native)
        with landing(final, directory=True) as tmp:
            if format == "peft":
                from zoo.peft_io import write_peft_files

                write_peft_files(adapter, tmp)
            else:
                _merge(store, item, adapter, tmp)
            (tmp / MARKER).write_text(
                json.dumps({"id": item.id, "name": item.name, "digest": item.digest}) + "\n")
    finally:
        remove(native)
    return _pulled(item, final, skipped=False)


def _merge(store: BlobStore, item: PullItem, adapter: Any, dest: Path) -> None:
    """The adapter folded into its REGISTERED base (loaded and digest-checked)."""
    from zoo.merge import save_merged_from
    from zoo.storage.bases import load_base_dir

    if item.base is None:
        raise ConfigError(f"{_what(item)}: its base model has no registered location")
    save_merged_from(adapter, load_base_dir(item.base, store.url), dest)


def _marker_digest(path: Path) -> str | None:
    try:
        return json.loads((path / MARKER).read_text()).get("digest")
    except (OSError, ValueError, AttributeError):
        return None


def _pulled(item: PullItem, path: Path, *, skipped: bool) -> Pulled:
    return Pulled(item.id, item.name, item.digest, item.size, str(path), skipped)
