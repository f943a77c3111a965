"""Content-addressed blob stores: one small interface, a local directory and S3 behind it.

Why content addressing: an adapter's sha256 is its identity (docs/adapter-format.md), so the key of
its bytes is derived from the digest alone — ``<prefix>/blobs/sha256/ab/cdef…`` where ``ab`` is
the first two hex characters and ``cdef…`` the remaining 62 (git-style fan-out keeps directory
listings short). Identical adapters are stored once, integrity is a re-hash, and garbage
collection is "blobs no catalog row names".

Stores never interpret bytes; the publish and pull protocols (``publish.py``, ``pull.py``)
verify what goes in and comes out.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from zoo.errors import ConfigError, IntegrityError, NotFoundError, StoreError
from zoo.files import hash_stream, ordinary_mode, sha256_file

DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
BLOB_DIR = "blobs/sha256"
TEMP_SUFFIX = ".incomplete"  # a local blob being written: hidden, renamed into place when done


def check_digest(digest: str) -> str:
    """A sha256 hex digest, lower case; anything else could escape the key space."""
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return digest


def blob_key(digest: str) -> str:
    """Relative key of a blob: ``blobs/sha256/ab/cdef…``."""
    check_digest(digest)
    return f"{BLOB_DIR}/{digest[:2]}/{digest[2:]}"


def digest_from_key(key: str) -> str | None:
    """Inverse of ``blob_key`` for the part after the prefix; None for foreign keys."""
    parts = key.split("/")
    if len(parts) < 4 or "/".join(parts[-4:-2]) != BLOB_DIR:
        return None
    digest = parts[-2] + parts[-1]
    return digest if DIGEST_RE.match(digest) and len(parts[-2]) == 2 else None


@dataclass(frozen=True)
class BlobInfo:
    """One stored blob: its digest, size in bytes and last-modified time (epoch seconds)."""

    digest: str
    size: int
    mtime: float


@dataclass(frozen=True)
class UnfinishedWrite:
    """A write that never finished: a killed writer's temp file (local) or an abandoned
    multipart upload (S3). ``where`` names it for people; ``size`` is 0 when unknown."""

    where: str
    size: int
    mtime: float


@runtime_checkable
class BlobStore(Protocol):
    """What the protocols need from a store. Keys are sha256 digests, never paths."""

    url: str

    def stat(self, digest: str) -> BlobInfo | None:
        """Size and mtime of a blob, or None when absent."""
        ...

    def put_file(self, digest: str, path: str | os.PathLike[str]) -> None:
        """Store the file's bytes under ``digest`` (overwrites; callers check ``stat`` first)."""
        ...

    def put_bytes(self, digest: str, data: bytes) -> None:
        """``put_file`` for bytes already in memory (a log, a checkpoint, a fresh adapter):
        no temp file to write and read back."""
        ...

    def start_put_bytes(self, digest: str, data: bytes) -> Callable[[], None]:
        """``put_bytes`` in two steps: this call starts the write, and the blob is stored
        when the returned function (call it exactly once) returns. The caller does other
        work in between (publish: its catalog statements) while the store waits on the disk.
        """
        ...

    def read_into(self, digest: str, out: BinaryIO, *,
                  size: int | None = None) -> tuple[str, int]:
        """Write the blob into ``out`` (a new, empty file open for reading and writing);
        return (sha256 of the bytes written, size).

        ``size`` is a hint (from the catalog) that lets a store pick ranged transfers. Callers
        land the file with ``zoo.files.landing_file`` and check the digest
        (``zoo.storage.fetch.fetch_verified``): a store never leaves a half-written file behind.
        """
        ...

    def touch(self, digest: str) -> None:
        """Refresh the blob's mtime so gc's grace period protects a blob being re-published."""
        ...

    def delete(self, digest: str) -> None:
        """Remove a blob (absent is fine)."""
        ...

    def list_blobs(self) -> Iterator[BlobInfo]:
        """Every blob under this store's prefix, with sizes and mtimes (for fsck and gc)."""
        ...

    def hash_blob(self, digest: str) -> tuple[str, int]:
        """Re-hash the stored bytes: (sha256, size)."""
        ...

    def unfinished_writes(self) -> Iterator[UnfinishedWrite]:
        """Writes a killed process left behind, invisible to ``list_blobs`` (for gc)."""
        ...

    def remove_unfinished(self, write: UnfinishedWrite) -> None:
        """Delete a leftover from ``unfinished_writes`` (gone already is fine)."""
        ...

    def read_meta(self, name: str) -> bytes | None:
        """A small named object at the store's root, outside the blob space (None: absent)."""
        ...

    def write_meta(self, name: str, data: bytes) -> None:
        """Write a small named object at the store's root (the store's binding marker)."""
        ...


class LocalBlobStore:
    """Blobs as files under a directory; writes land by temp file + fsync + ``os.replace``."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()
        self.fsync = fsync
        self._mode = ordinary_mode()

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path_for(self, digest: str) -> Path:
        return self.root / blob_key(digest)

    def stat(self, digest: str) -> BlobInfo | None:
        try:
            st = self.path_for(digest).stat()
        except FileNotFoundError:
            return None
        return BlobInfo(digest, st.st_size, st.st_mtime)

    def put_file(self, digest: str, path: str | os.PathLike[str]) -> None:
        """Copy the file in, hashing as it goes: bytes that do not hash to ``digest`` (the file
        changed since it was hashed) are refused, never stored under the wrong name."""

        def fill(out: BinaryIO) -> None:
            with open(path, "rb") as src:
                got, _size = hash_stream(src, out)
            if got != digest:
                raise IntegrityError(f"{path} changed while it was being stored (its bytes no "
                                     f"longer hash to sha256:{digest[:12]}…); nothing was stored")

        self._write(digest, fill)

    def put_bytes(self, digest: str, data: bytes) -> None:
        self._write(digest, lambda out: out.write(data))

    def start_put_bytes(self, digest: str, data: bytes) -> Callable[[], None]:
        """Write the temp file now and start its fsync on a helper thread; the returned
        function waits for the fsync and renames the blob into place.

        Only the fsync runs on the helper: it is one call that holds no GIL while the disk
        works, so the caller's Python runs meanwhile (a helper doing the whole write would
        wait for the GIL at each of its system calls)."""
        target, tmp, out = self._open_temp(digest)
        try:
            out.write(data)
            out.flush()
        except BaseException:
            out.close()
            _unlink_quiet(tmp)
            raise
        synced = _fsync_pool().submit(os.fsync, out.fileno()) if self.fsync else None

        def finish() -> None:
            try:
                if synced is not None:
                    synced.result()
                out.close()
                os.replace(tmp, target)
            except BaseException:
                out.close()
                _unlink_quiet(tmp)
                raise

        return finish

    def _open_temp(self, digest: str) -> tuple[Path, str, BinaryIO]:
        """(blob path, temp path, temp file open for writing) in the blob's directory."""
        target = self.path_for(digest)
        prefix = f".{target.name[:16]}."
        try:  # the fan-out directory usually exists: no mkdir call to pay for then
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=TEMP_SUFFIX, dir=target.parent)
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=TEMP_SUFFIX, dir=target.parent)
        os.fchmod(fd, self._mode)  # mkstemp's 0600 would hide blobs from the team's readers
        return target, tmp, os.fdopen(fd, "wb")

    def _write(self, digest: str, fill: Callable[[BinaryIO], object]) -> None:
        """Temp file in the blob's directory, filled, fsynced, then renamed into place: a
        reader sees the whole blob or none of it."""
        target, tmp, out = self._open_temp(digest)
        try:
            with out:
                fill(out)
                if self.fsync:
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, target)
            tmp = None
        finally:
            if tmp is not None:
                _unlink_quiet(tmp)

    def read_into(self, digest: str, out: BinaryIO, *,
                  size: int | None = None) -> tuple[str, int]:
        try:
            fin = open(self.path_for(digest), "rb")  # noqa: SIM115 - closed below, error mapped first
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} is missing from store {self.url}") from None
        with fin:
            return hash_stream(fin, out)

    def touch(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path_for(digest))

    def delete(self, digest: str) -> None:
        _unlink_quiet(self.path_for(digest))

    def list_blobs(self) -> Iterator[BlobInfo]:
        for fan, entry in self._fan_out_entries():
            digest = fan + entry.name
            if entry.is_file() and DIGEST_RE.match(digest):
                st = entry.stat()
                yield BlobInfo(digest, st.st_size, st.st_mtime)

    def _fan_out_entries(self) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """(fan-out directory name, entry) for everything in the ``ab/`` directories."""
        base = self.root / BLOB_DIR
        if not base.is_dir():
            return
        for fan in sorted(base.iterdir()):
            if fan.is_dir() and len(fan.name) == 2:
                for entry in os.scandir(fan):
                    yield fan.name, entry

    def hash_blob(self, digest: str) -> tuple[str, int]:
        try:
            return sha256_file(self.path_for(digest))
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} is missing from store {self.url}") from None

    def unfinished_writes(self) -> Iterator[UnfinishedWrite]:
        """Temp files (``.<digest prefix>.<random>.incomplete``) of writers killed before
        their rename; a live writer's is among them too, hence gc's grace period."""
        for _fan, entry in self._fan_out_entries():
            if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX):
                with contextlib.suppress(FileNotFoundError):  # renamed since the listing
                    st = entry.stat()
                    yield UnfinishedWrite(entry.path, st.st_size, st.st_mtime)

    def read_meta(self, name: str) -> bytes | None:
        """A small named file at the store's root (None when absent)."""
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    def write_meta(self, name: str, data: bytes) -> None:
        from zoo.files import write_atomic

        write_atomic(self.root / name, data)

    def remove_unfinished(self, write: UnfinishedWrite) -> None:
        path = Path(write.where)
        if path.parent.parent != self.root / BLOB_DIR or not path.name.endswith(TEMP_SUFFIX):
            raise ValueError(f"{write.where} is not a temp file of store {self.url}")
        _unlink_quiet(path)


_FSYNC_POOL: list[ThreadPoolExecutor] = []
_FSYNC_POOL_LOCK = threading.Lock()
os.register_at_fork(after_in_child=_FSYNC_POOL.clear)  # a forked child starts its own


def _fsync_pool() -> ThreadPoolExecutor:
    """This process's fsync threads, started once and reused (no thread start per blob)."""
    with _FSYNC_POOL_LOCK:
        if not _FSYNC_POOL:
            _FSYNC_POOL.append(ThreadPoolExecutor(max_workers=2, thread_name_prefix="zoo-fsync"))
        return _FSYNC_POOL[0]


def _unlink_quiet(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def open_store(url: str | os.PathLike[str], *, workers: int = 8) -> BlobStore:
    """A store from a URL: ``file:///dir``, a plain directory path, or ``s3://bucket/prefix``.

    ``workers`` sizes the S3 connection pool to the transfer thread count.
    """
    text = os.fspath(url)
    if text.startswith("s3://"):
        from zoo.storage.s3store import S3BlobStore

        parsed = urlparse(text)
        if not parsed.netloc:
            raise ConfigError(f"store URL {text!r} has no bucket (expected s3://bucket/prefix)")
        return S3BlobStore(parsed.netloc, parsed.path.strip("/"), workers=workers)
    if text.startswith("file://"):
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"store URL {text!r}: file URLs must be local (file:///path)")
        return LocalBlobStore(unquote(parsed.path))
    if "://" in text:
        raise ConfigError(f"store URL {text!r}: unsupported scheme (use a directory, file:// or s3://)")
    return LocalBlobStore(text)


def age_seconds(info: BlobInfo, now: float | None = None) -> float:
    """How long ago the blob was last written."""
    return (time.time() if now is None else now) - info.mtime


__all__ = [
    "BlobInfo", "BlobStore", "LocalBlobStore", "StoreError", "age_seconds", "blob_key",
    "check_digest", "digest_from_key", "open_store", "sha256_file",
]
