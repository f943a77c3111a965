"""Moving a job's inputs through the object store: upload at submit, fetch on the worker.

No shared filesystem is assumed between the submitting machine and the workers. At submit time
every LOCAL input is uploaded, content-addressed, into the job-artifact area of the store
(``<store>/jobs/blobs/sha256/…``, next to but outside the adapter blobs that ``zoo gc`` manages):

- a data file becomes ``zoo-blob:sha256:<hex>``;
- a model directory becomes ``zoo-model:sha256:<hex>``: every file is a blob, and a JSON
  manifest ``{"name": …, "files": {relative path: digest}}`` is the blob the URI names.
  Uploading is skipped for blobs already present, so the second job on the same base uploads
  nothing.

``s3://`` inputs and hub ids pass through unchanged. On a worker, :func:`fetch_data` and
:func:`fetch_model` materialise inputs under ``$ZOO_HOME/cache`` (per node, reused by later jobs,
written by temp file + rename so concurrent workers never see half a file).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from zoo.errors import ConfigError, IntegrityError, NotFoundError
from zoo.files import landing_file, safe_join, sha256_file, write_atomic
from zoo.jobspec import JobSpec
from zoo.storage.blobstore import BlobStore, open_store
from zoo.storage.fetch import fetch_bytes, fetch_cached
from zoo.untrusted import UntrustedInputError, load_json

BLOB_SCHEME = "zoo-blob:sha256:"
MODEL_SCHEME = "zoo-model:sha256:"
ARTIFACTS = "jobs"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


def artifact_store_url(store_url: str) -> str:
    """The job-artifact area of a store: inputs, checkpoints and logs (not adapters)."""
    return store_url.rstrip("/") + "/" + ARTIFACTS


@functools.lru_cache(maxsize=8)
def open_artifacts(store_url: str) -> BlobStore:
    """The artifact store (cached per process: one S3 client pool).

    A local artifact store skips fsync: checkpoints and logs are re-creatable, and a process
    crash (what retries handle) keeps the page cache; adapters keep their fsync.
    """
    url = artifact_store_url(store_url)
    if "://" not in url or url.startswith("file://"):
        from urllib.parse import unquote, urlparse

        from zoo.storage.blobstore import LocalBlobStore

        path = unquote(urlparse(url).path) if url.startswith("file://") else url
        return LocalBlobStore(path, fsync=False)
    return open_store(url)


def blob_uri(digest: str) -> str:
    return BLOB_SCHEME + digest


def digest_of(uri: str) -> str:
    """The digest in a ``zoo-blob:``/``zoo-model:``/``sha256:`` URI (``#name`` ignored)."""
    uri = uri.split("#", 1)[0]
    for prefix in (BLOB_SCHEME, MODEL_SCHEME, "sha256:"):
        if uri.startswith(prefix):
            return uri[len(prefix):]
    raise ConfigError(f"not a zoo blob URI: {uri!r}")


def data_name(uri: str) -> str:
    """A human name for a data location: the original file name."""
    if "#" in uri:
        return uri.split("#", 1)[1]
    return Path(uri.rstrip("/")).name or uri


GENERIC_DIR_NAMES = {"model", "models", "weights", "checkpoint", "snapshot", "base", "hf"}


def model_display_name(root: Path) -> str:
    """``minilm`` for ./models/minilm; ``pkg/model`` when the directory name says nothing."""
    if root.name.lower() in GENERIC_DIR_NAMES and root.parent.name:
        return f"{root.parent.name}/{root.name}"
    return root.name


def put_file(store: BlobStore, path: str | os.PathLike[str],
             uploaded: Callable[[int], None] | None = None) -> str:
    """Upload a file unless present; returns its digest (``uploaded(n)`` hears of the bytes
    that really went up)."""
    digest, size = sha256_file(path)
    info = store.stat(digest)
    if info is None or info.size != size:
        store.put_file(digest, path)
        if uploaded is not None:
            uploaded(size)
    return digest


def put_bytes(store: BlobStore, data: bytes) -> str:
    """Upload bytes (a checkpoint, a log) as a blob unless present; returns its digest."""
    digest = hashlib.sha256(data).hexdigest()
    info = store.stat(digest)
    if info is None or info.size != len(data):
        store.put_bytes(digest, data)
    return digest


MAX_SMALL_BLOB = 512 * 1024 * 1024  # logs, manifests, checkpoints of adapter training


def get_bytes(store: BlobStore, digest: str) -> bytes:
    """A small blob's bytes (a log, a manifest, a checkpoint), verified against its digest."""
    return fetch_bytes(store, digest, max_size=MAX_SMALL_BLOB)


def upload_model_dir(store: BlobStore, root: Path,
                     uploaded: Callable[[int], None] | None = None) -> str:
    """Every file of a model directory as a blob, plus the manifest naming them; returns the
    manifest's digest (``zoo-model:sha256:<it>`` loads the directory anywhere)."""
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            continue  # .git, .cache, editor droppings
        files[rel] = put_file(store, path, uploaded)
    if "config.json" not in files:
        raise ConfigError(f"base_model: {root} has no config.json (not a model directory)")
    manifest = json.dumps({"name": model_display_name(root), "files": files},
                          sort_keys=True).encode()
    return put_bytes(store, manifest)


def stage_inputs(specs: list[JobSpec], store_url: str,
                 on_upload: Callable[[str, int], None] | None = None) -> list[JobSpec]:
    """Upload local inputs of every spec (each distinct path once); return specs with URIs.
    ``on_upload(path, n)`` hears of each input whose bytes had to go up (n bytes): a second
    submission on the same base uploads nothing and says nothing."""
    store = open_artifacts(store_url)
    done: dict[str, str] = {}

    def stage(value: str, *, model: bool) -> str:
        if value.startswith("s3://") or not Path(value).is_absolute():
            return value  # s3:// or a hub id: the worker fetches it itself
        if value not in done:
            sent: list[int] = []
            if model:
                done[value] = MODEL_SCHEME + upload_model_dir(store, Path(value), sent.append)
            else:  # the file name rides along as a fragment: it names the eval dataset
                done[value] = blob_uri(put_file(store, value, sent.append)) + "#" + Path(value).name
            if sent and on_upload is not None:
                on_upload(value, sum(sent))
        return done[value]

    out = []
    for spec in specs:
        out.append(spec.with_locations(
            base_model=stage(spec.base_model, model=True),
            train=stage(spec.data.train, model=False),
            eval=stage(spec.data.eval, model=False) if spec.data.eval else None,
        ))
    return out


# ---------------------------------------------------------------- worker side ----------------


def cache_dir(home: str | None = None) -> Path:
    from zoo.settings import resolve_settings

    root = Path(home or resolve_settings().home) / "cache"
    root.mkdir(parents=True, exist_ok=True)
    return root


_FETCHED: dict[tuple[str, ...], tuple[Path, tuple[str, str]]] = {}


def _fetched(key: tuple[str, ...]) -> tuple[str, str] | None:
    """This process's earlier answer for a content-addressed input, while its file is there.

    Spares the next job on this worker re-resolving the settings and re-reading the cache."""
    hit = _FETCHED.get(key)
    if hit is not None and hit[0].is_file():
        return hit[1]
    return None


def _fetch_key(uri: str, store_url: str, home: str | None) -> tuple[str, ...]:
    return (uri, store_url, home or "", os.environ.get("ZOO_HOME", ""))


def fetch_data(uri: str, store_url: str, *, home: str | None = None) -> str:
    """A local path for a data URI (cached per node, verified)."""
    if uri.startswith(BLOB_SCHEME):
        key = _fetch_key(uri, store_url, home)
        if (hit := _fetched(key)) is not None:
            return hit[0]
        digest = digest_of(uri)
        path = fetch_cached(open_artifacts(store_url), digest,
                            cache_dir(home) / "data" / f"{digest}.jsonl",
                            what=f"data file {data_name(uri)}")
        _FETCHED[key] = (path, (str(path), ""))
        return str(path)
    if uri.startswith("s3://"):
        return str(_fetch_s3_object(uri, cache_dir(home) / "data"))
    return uri  # a plain path (only when worker and submitter are one machine)


def fetch_model(uri: str, store_url: str, *, home: str | None = None) -> tuple[str, str]:
    """(local directory, display name) for a base model URI (cached per node)."""
    if uri.startswith(MODEL_SCHEME):
        key = _fetch_key(uri, store_url, home)
        if (hit := _fetched(key)) is not None:
            return hit
        digest = digest_of(uri)
        root = cache_dir(home) / "models" / digest
        done = root / ".complete"
        if not done.is_file():
            _fetch_manifest(open_artifacts(store_url), digest, root)
        found = (str(root), done.read_text().split("\n", 1)[-1] or digest[:12])
        _FETCHED[key] = (done, found)
        return found
    if uri.startswith("s3://"):
        return str(_fetch_s3_prefix(uri, cache_dir(home) / "models")), uri
    return uri, uri  # a hub id (resolved from the HF cache) or a local path


def _fetch_manifest(store: BlobStore, digest: str, root: Path) -> None:
    """Every file a model manifest lists, verified, at paths that stay under ``root``."""
    try:
        manifest = load_json(get_bytes(store, digest), max_bytes=MAX_MANIFEST_BYTES)
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError
    except (UntrustedInputError, KeyError, TypeError):
        raise IntegrityError(f"model manifest {digest} is not a valid manifest") from None
    targets = {rel: safe_join(root, rel) for rel in files}  # every name checked before I/O
    for rel, file_digest in files.items():
        fetch_cached(store, str(file_digest), targets[rel], what=f"model file {rel}")
    write_atomic(root / ".complete", f"{digest}\n{manifest.get('name') or ''}".encode())


def _fetch_s3_object(uri: str, root: Path) -> Path:
    """An ``s3://`` data file, through the S3 store class (its errors are zoo errors), cached
    per object version (ETag)."""
    from zoo.storage.s3store import S3BlobStore, split_s3_uri

    bucket, key = split_s3_uri(uri)
    store = S3BlobStore(bucket)
    head = store.head_key(key)
    if head is None:
        raise NotFoundError(f"{uri} does not exist")
    tag = hashlib.sha256(f"{uri}\0{head[1]}".encode()).hexdigest()
    dest = root / f"s3-{tag}{Path(key).suffix}"
    if not dest.is_file():
        with landing_file(dest) as out:
            store.get_key(key, out)
    return dest


def _fetch_s3_prefix(uri: str, root: Path) -> Path:
    """A model directory under an ``s3://`` prefix; every key must stay inside the folder."""
    from zoo.storage.s3store import S3BlobStore, split_s3_uri

    bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
    dest = root / ("s3-" + hashlib.sha256(uri.encode()).hexdigest()[:32])
    if (dest / ".complete").is_file():
        return dest
    store = S3BlobStore(bucket)
    keys = [(key, key[len(prefix):]) for key, _ in store.list_keys(prefix)]
    targets = {key: safe_join(dest, rel) for key, rel in keys}  # all checked before any write
    for key, target in targets.items():
        with landing_file(target) as out:
            store.get_key(key, out)
    if not (dest / "config.json").is_file():
        raise ConfigError(f"base_model: {uri} holds no config.json")
    write_atomic(dest / ".complete", uri.encode())
    return dest


__all__ = [
    "BLOB_SCHEME", "MODEL_SCHEME", "artifact_store_url", "blob_uri", "data_name", "digest_of",
    "fetch_data",
    "fetch_model", "get_bytes", "open_artifacts", "put_bytes", "put_file", "stage_inputs",
]
