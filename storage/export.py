"""``zoo export``: adapters laid out as PEFT LoRA folders for the serving systems teams use.

Every layout is one folder per adapter holding ``adapter_config.json`` +
``adapter_model.safetensors`` (:func:`zoo.peft_io.write_peft_files`), which is what each server
loads; the layouts differ in what the command prints for it:

- ``peft``: ``PeftModel.from_pretrained(base, DEST/<folder>)``.
- ``vllm``: the ``--lora-modules name=path`` list, as JSON.
- ``ray-serve``: Ray Serve LLM's ``dynamic_lora_loading_path`` (DEST) and model ids
  (``<base>:<folder>``): it takes one subfolder per adapter.
- ``lorax``: ``adapter_id`` per folder (a local path or an ``s3://`` prefix).

Folders are named ``<name>-<digest12>``: immutable per digest, so a later alias move exports a
NEW folder and never changes one a server already loaded. Each blob is fetched verified
(:mod:`zoo.storage.fetch`) and converted into a temp folder renamed into place (a directory
DEST), or uploaded file by file (an ``s3://`` DEST) with the manifest ``zoo-export.json``
written LAST: a folder the manifest lists is complete. A folder already there is skipped, so a
rerun exports nothing new and says so.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError
from zoo.files import landing, write_atomic
from zoo.storage.blobstore import BlobStore
from zoo.storage.db import Catalog
from zoo.storage.fetch import fetch_verified
from zoo.storage.parallel import ProgressFn, run_parallel
from zoo.storage.pull import PullItem, resolve_items

LAYOUTS = ("peft", "vllm", "ray-serve", "lorax")
MANIFEST = "zoo-export.json"
FILES = ("adapter_config.json", "adapter_model.safetensors")
DIGEST_CHARS = 12


@dataclass(frozen=True)
class Exported:
    """One adapter's folder: where, and whether this run wrote it (False: already there)."""

    id: str
    name: str
    digest: str
    folder: str
    path: str
    written: bool


@dataclass(frozen=True)
class ExportResult:
    dest: str
    layout: str
    adapters: list[Exported]

    @property
    def written(self) -> int:
        return sum(a.written for a in self.adapters)

    @property
    def present(self) -> int:
        return len(self.adapters) - self.written

    def lora_modules(self) -> list[str]:
        """vLLM's ``--lora-modules`` arguments: ``name=path`` per folder."""
        return [f"{a.folder}={a.path}" for a in self.adapters]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dest": self.dest, "layout": self.layout, "written": self.written,
                               "already_present": self.present,
                               "adapters": [asdict(a) for a in self.adapters]}
        if self.layout == "vllm":
            out["lora_modules"] = self.lora_modules()
        if self.layout == "ray-serve":
            out["dynamic_lora_loading_path"] = self.dest
        return out


def folder_name(item: PullItem) -> str:
    """``<name>-<first 12 hex of the digest>``: one digest, one folder, forever."""
    return f"{item.name}-{item.digest[:DIGEST_CHARS]}"


def export(catalog: Catalog, store: BlobStore, refs: Sequence[str] = (), *, dest: str,
           layout: str, tag: str | None = None, query: str | None = None, workers: int = 8,
           progress: ProgressFn | None = None) -> ExportResult:
    """Export the adapters REFS / tag / query select into ``dest`` (a directory or s3://)."""
    if layout not in LAYOUTS:
        raise ConfigError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}", field="layout")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}", field="workers")
    if not refs and tag is None and not query:
        raise ConfigError("nothing to export: give REF..., --tag or --select")
    items = resolve_items(catalog, refs, tag=tag, query=query)
    target: _Dest = _S3Dest(dest, workers) if dest.startswith("s3://") else _DirDest(dest)
    manifest = target.read_manifest()
    if manifest and manifest.get("layout") != layout:
        raise ConfigError(f"{dest} already holds a {manifest.get('layout')!r} export; "
                          f"export the {layout!r} layout to another destination")
    results = run_parallel(items, lambda item: _export_one(store, item, target), workers=workers,
                           progress=progress, size_of=lambda item, _res: item.size)
    listed = {a["folder"]: a for a in (manifest or {}).get("adapters", [])}
    fresh = {r.folder: {"id": r.id, "name": r.name, "digest": r.digest, "folder": r.folder}
             for r in results}
    if not manifest or any(f not in listed for f in fresh):
        entries = sorted({**listed, **fresh}.values(), key=lambda a: a["folder"])
        target.write_manifest({"format": 1, "layout": layout, "adapters": entries})
    return ExportResult(dest=target.shown, layout=layout, adapters=results)


def _export_one(store: BlobStore, item: PullItem, target: _Dest) -> Exported:
    folder = folder_name(item)
    if target.has_folder(folder):
        return Exported(item.id, item.name, item.digest, folder, target.path_of(folder), False)
    from zoo.adapter import Adapter
    from zoo.peft_io import write_peft_files

    with tempfile.TemporaryDirectory(prefix="zoo-export-") as tmp:
        native = fetch_verified(store, item.digest, Path(tmp) / "adapter.safetensors",
                                size=item.size, what=f"adapter {item.id} ({item.name})")
        adapter = Adapter.load(native)
        target.write_folder(folder, lambda into: write_peft_files(adapter, into))
    return Exported(item.id, item.name, item.digest, folder, target.path_of(folder), True)


class _Dest:
    """Where folders land: a local directory or an S3 prefix."""

    shown: str

    def path_of(self, folder: str) -> str: ...
    def has_folder(self, folder: str) -> bool: ...
    def write_folder(self, folder: str, fill: Any) -> None: ...
    def read_manifest(self) -> dict[str, Any] | None: ...
    def write_manifest(self, data: dict[str, Any]) -> None: ...


class _DirDest(_Dest):
    def __init__(self, dest: str) -> None:
        self.root = Path(dest).expanduser().resolve()
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"{dest}: exists and is not a directory")
        self.root.mkdir(parents=True, exist_ok=True)
        self.shown = str(self.root)

    def path_of(self, folder: str) -> str:
        return str(self.root / folder)

    def has_folder(self, folder: str) -> bool:
        return all((self.root / folder / f).is_file() for f in FILES)

    def write_folder(self, folder: str, fill: Any) -> None:
        with landing(self.root / folder, directory=True) as tmp:  # whole folder or nothing
            fill(tmp)

    def read_manifest(self) -> dict[str, Any] | None:
        return _parse_manifest(self.root / MANIFEST, _read(self.root / MANIFEST))

    def write_manifest(self, data: dict[str, Any]) -> None:
        write_atomic(self.root / MANIFEST, _dump(data))


class _S3Dest(_Dest):
    def __init__(self, dest: str, workers: int) -> None:
        from zoo.storage.s3store import make_client, split_s3_uri

        bucket, prefix = split_s3_uri(dest.rstrip("/") + "/x")
        self.bucket, self.prefix = bucket, prefix[:-1]  # "" or "a/b/"
        self.client = make_client(workers=workers)
        self.shown = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def path_of(self, folder: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{folder}"

    def has_folder(self, folder: str) -> bool:
        return all(self._size(f"{self.prefix}{folder}/{f}") is not None for f in FILES)

    def write_folder(self, folder: str, fill: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="zoo-export-") as tmp:
            fill(Path(tmp))
            for name in FILES:  # the manifest, written last, is what marks the folder done
                self._put(f"{self.prefix}{folder}/{name}", (Path(tmp) / name).read_bytes())

    def read_manifest(self) -> dict[str, Any] | None:
        key = f"{self.prefix}{MANIFEST}"
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:  # noqa: BLE001 - absent is normal; the rest is one line
            if _s3_missing(exc):
                return None
            raise _s3_error("read", f"s3://{self.bucket}/{key}", exc) from None
        return _parse_manifest(f"s3://{self.bucket}/{key}", body)

    def write_manifest(self, data: dict[str, Any]) -> None:
        self._put(f"{self.prefix}{MANIFEST}", _dump(data))

    def _size(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except Exception as exc:  # noqa: BLE001
            if _s3_missing(exc):
                return None
            raise _s3_error("stat", f"s3://{self.bucket}/{key}", exc) from None

    def _put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except Exception as exc:  # noqa: BLE001
            raise _s3_error("write", f"s3://{self.bucket}/{key}", exc) from None


def _s3_missing(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


def _s3_error(what: str, where: str, exc: Exception) -> Exception:
    from zoo.errors import StoreError

    return StoreError(f"{what} {where} failed: {type(exc).__name__}: {exc}")


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _parse_manifest(where: object, data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        manifest = json.loads(data)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("adapters"), list):
        raise ConfigError(f"{where}: not a zoo export manifest; export to another destination")
    return manifest


def _dump(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


__all__ = ["LAYOUTS", "MANIFEST", "ExportResult", "Exported", "export", "folder_name"]
