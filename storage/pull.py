"""The pull protocol: resolve in the catalog → parallel download to temp files → verify sha256
and size → atomic rename into place.

Why: a registry that hands back a truncated or flipped file without noticing is worse than
none. Every byte pulled is hashed on the way in; a mismatch raises IntegrityError naming the
adapter and its digest, and the temp file is removed in ``finally``, so the output directory
only ever holds complete, verified files. Native files already present are re-hashed and
skipped when they match (a damaged one is replaced); PEFT / merged directories are skipped when
their ``.zoo-adapter.json`` names the same digest. Re-running a pull of thousands is cheap.
Pulled files are not fsynced: a file torn by a power cut fails the re-hash and is re-fetched.

Output layout (collision-free: an id names exactly one digest, forever):

- ``native``: ``<out>/<name>-<id>.safetensors`` — the adapter file, byte-identical to the blob.
- ``peft``:   ``<out>/<name>-<id>/`` — a PEFT LoRA directory (``adapter_config.json`` +
  ``adapter_model.safetensors``) plus ``.zoo-adapter.json`` recording the source digest.
- ``merged``: ``<out>/<name>-<id>-merged/`` — the base model with the adapter merged in
  (``save_pretrained``), plus ``.zoo-adapter.json``.

Temp files are ``<out>/.<final name>.<random>.incomplete`` (hidden, same filesystem).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, IntegrityError, NotFoundError
from zoo.storage.blobstore import BlobStore, sha256_file
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


def resolve_items(catalog: Any, refs: Sequence[str] = (), *, tag: str | None = None,
                  query: str | None = None) -> list[PullItem]:
    """Resolve refs / a tag / a query to adapters (deduplicated; refs first, then by age).

    Same semantics as ``catalog.resolve_many`` (each ref must resolve; tag AND query), but it
    selects only the four columns a pull needs: resolving 1,000 adapters is one light query
    instead of loading tags, aliases and metrics for every row.
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
    return list(items.values())


def pull(
    catalog: Any,
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
    items = resolve_items(catalog, refs, tag=tag, query=query)
    return pull_items(store, items, out_dir=out_dir, format=format, workers=workers,
                      progress=progress)


def pull_items(store: BlobStore, items: Sequence[PullItem], *, out_dir: str | os.PathLike[str],
               format: str = "native", workers: int = 8,
               progress: ProgressFn | None = None) -> PullResult:
    """Download already-resolved items (the part after the catalog lookup)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if format == "native":
        fn = lambda item: _pull_native(store, item, out)  # noqa: E731
    elif format == "peft":
        fn = lambda item: _pull_converted(store, item, out, _write_peft, "")  # noqa: E731
    else:
        fn = lambda item: _pull_converted(store, item, out, _write_merged, "-merged")  # noqa: E731
        workers = 1  # each merge holds a whole base model in memory
    results = run_parallel(items, fn, workers=workers, progress=progress,
                           size_of=lambda item, _res: item.size)
    return PullResult(out_dir=str(out), format=format, adapters=results)


def _tmp_path(out: Path, final_name: str) -> Path:
    return out / f".{final_name}.{secrets.token_hex(6)}.incomplete"


def _download_verified(store: BlobStore, item: PullItem, tmp: Path) -> None:
    """Fetch the blob into ``tmp`` and check its sha256 and size against the catalog."""
    try:
        digest, size = store.get_file(item.digest, tmp, size=item.size)
    except NotFoundError:
        raise IntegrityError(
            f"adapter {item.id} ({item.name}): blob sha256:{item.digest} is missing from "
            f"store {store.url} (run `zoo fsck`)"
        ) from None
    if size != item.size or digest != item.digest:
        what = (f"truncated/extended: {size} bytes, expected {item.size}" if size != item.size
                else f"content hashes to sha256:{digest}")
        raise IntegrityError(
            f"adapter {item.id} ({item.name}): blob sha256:{item.digest} failed verification "
            f"({what}); nothing was written"
        )


def _pull_native(store: BlobStore, item: PullItem, out: Path) -> Pulled:
    final = out / f"{item.stem}.safetensors"
    if final.is_file() and sha256_file(final) == (item.digest, item.size):
        return _pulled(item, final, skipped=True)
    tmp: Path | None = _tmp_path(out, final.name)
    try:
        _download_verified(store, item, tmp)  # type: ignore[arg-type]
        os.replace(tmp, final)  # type: ignore[arg-type]
        tmp = None
    finally:
        if tmp is not None:
            _remove(tmp)
    return _pulled(item, final, skipped=False)


def _pull_converted(store: BlobStore, item: PullItem, out: Path, write: Any,
                    suffix: str) -> Pulled:
    """Download + verify the native file, convert it into a temp dir, rename the dir in."""
    final = out / f"{item.stem}{suffix}"
    if _marker_digest(final) == item.digest:
        return _pulled(item, final, skipped=True)
    tmp_file: Path | None = _tmp_path(out, f"{final.name}.safetensors")
    tmp_dir: Path | None = _tmp_path(out, final.name)
    old: Path | None = None
    try:
        _download_verified(store, item, tmp_file)  # type: ignore[arg-type]
        write(tmp_file, tmp_dir, item)
        (tmp_dir / MARKER).write_text(  # type: ignore[operator]
            json.dumps({"id": item.id, "name": item.name, "digest": item.digest}) + "\n")
        if final.exists():  # a stale or foreign export under our name: move it aside first
            old = _tmp_path(out, final.name + ".old")
            os.replace(final, old)
        os.replace(tmp_dir, final)  # type: ignore[arg-type]
        tmp_dir = None
    finally:
        for p in (tmp_file, tmp_dir, old):
            if p is not None:
                _remove(p)
    return _pulled(item, final, skipped=False)


def _write_peft(native: Path, dest: Path, item: PullItem) -> None:
    from zoo.adapter import Adapter

    Adapter.load(native).to_peft(dest)


def _write_merged(native: Path, dest: Path, item: PullItem) -> None:
    """Base model (offline, from its directory or the local cache) with the adapter folded in."""
    from types import SimpleNamespace

    from zoo.adapter import Adapter
    from zoo.base_models import load_base, load_tokenizer

    adapter = Adapter.load(native)
    cfg = adapter.config
    labels = None
    if cfg["task"] == "seq-cls":
        labels = cfg.get("label_names") or _label_names(adapter)
    try:  # a base saved without a tokenizer still merges; the tokenizer is copied when present
        tokenizer = load_tokenizer(cfg["base_model"])
    except (ConfigError, OSError, ValueError):
        tokenizer = None
    model, _ = load_base(cfg["base_model"], cfg["task"], label_names=labels,
                         dtype=cfg.get("dtype", "float32"),
                         tokenizer=tokenizer or SimpleNamespace(pad_token_id=None))
    merged = adapter.merge_into(model)
    merged.save_pretrained(dest)
    if tokenizer is not None:
        tokenizer.save_pretrained(dest)


def _label_names(adapter: Any) -> list[str]:
    """Generic label names sized from the saved classification head's weight."""
    for key, tensor in adapter.saved_tensors().items():
        if key.endswith(".weight") and tensor.dim() == 2:
            return [f"LABEL_{i}" for i in range(tensor.shape[0])]
    raise ConfigError(f"seq-cls adapter has no saved head to size the labels of {adapter!r}")


def _marker_digest(path: Path) -> str | None:
    try:
        return json.loads((path / MARKER).read_text()).get("digest")
    except (OSError, ValueError, AttributeError):
        return None


def _pulled(item: PullItem, path: Path, *, skipped: bool) -> Pulled:
    return Pulled(item.id, item.name, item.digest, item.size, str(path), skipped)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
