"""Local file primitives the whole zoo uses: atomic writes, temp names, hashing, safe paths.

One home for "a reader sees the whole file or none of it": content lands in a hidden temp file
in the destination's own directory (``.<name>.<random>.incomplete``: same filesystem, so the
final ``os.replace`` is atomic) and is removed in ``finally`` when anything fails. Files get
ordinary permissions (the umask), not the 0600 of ``mkstemp``. And one home for "nothing is
written outside its destination": :func:`safe_join` refuses every way a remote name could
escape its folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from zoo.errors import IntegrityError

TEMP_SUFFIX = ".incomplete"
CHUNK = 1024 * 1024


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ordinary_mode(*, directory: bool = False) -> int:
    """The mode ``open()``/``mkdir`` would give under the current umask (0644/0755 for 022):
    for files created by ``mkstemp`` or by libraries that choose 0600."""
    return (0o777 if directory else 0o666) & ~_umask()


def temp_path(final: Path) -> Path:
    """A hidden sibling name for ``final`` that no one else will pick."""
    return final.parent / f".{final.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"


@contextlib.contextmanager
def landing(final: str | os.PathLike[str], *, directory: bool = False) -> Iterator[Path]:
    """Yield a temp path beside ``final``; when the block succeeds, rename it into place
    (replacing a previous file or folder), else remove it. Nothing partial is ever visible."""
    target = Path(final)
    if not target.parent.is_dir():  # a stat, not a mkdir that fails: pulls land 1000s of files
        target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    if directory:
        tmp.mkdir(mode=ordinary_mode(directory=True))
    old: Path | None = None
    placed = False
    try:
        yield tmp
        if directory and target.exists():  # a directory cannot be replaced in one rename
            old = temp_path(target)
            os.replace(target, old)
        os.replace(tmp, target)
        placed = True
    finally:
        for leftover in (None if placed else tmp, old):
            if leftover is not None:
                remove(leftover)


@contextlib.contextmanager
def landing_file(final: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a new, empty file open for reading and writing that appears at ``final`` (replacing
    a previous file) only when the block succeeds, and never if it fails.

    Where the filesystem can (Linux ``O_TMPFILE``: ext4, xfs, btrfs, tmpfs) the file is an
    unnamed inode linked into place at the end: no temp name ever shows in the folder, a killed
    process leaves nothing behind, and a pull of 1,000 small files saves a rename each. Elsewhere
    it is :func:`landing`'s hidden temp file, renamed into place.
    """
    target = Path(final)
    fd = _unnamed_file(target.parent)
    if fd is None:
        with landing(target) as tmp, open(tmp, "w+b") as out:
            yield out
        return
    # buffered, so that every write is complete or raises (the hash is of what was handed over)
    with open(fd, "w+b") as out:
        yield out
        out.flush()
        _link_into_place(out, target)


_proc_fds: tuple[int, int] | None = None  # (pid, fd of /proc/self/fd): "self" is per process
_proc_fds_lock = threading.Lock()


def _proc_fd_dir() -> int | None:
    """A directory fd of this process's /proc/self/fd (re-opened after a fork: a child using
    its parent's would link the parent's file of the same number), or None without /proc."""
    global _proc_fds
    pid = os.getpid()
    with _proc_fds_lock:
        if _proc_fds is None or _proc_fds[0] != pid:
            try:
                _proc_fds = (pid, os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY))
            except OSError:
                return None
        return _proc_fds[1]


def _unnamed_file(directory: Path) -> int | None:
    """An fd of a new unnamed file in ``directory`` (O_TMPFILE), or None where unsupported."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or _proc_fd_dir() is None:
        return None
    for _ in range(2):
        try:
            return os.open(directory, flag | os.O_RDWR, 0o666)  # the umask applies, as for open()
        except FileNotFoundError:  # no stat up front: pulls land thousands of files in one folder
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:  # EOPNOTSUPP, EISDIR (kernels before 3.11), ...: use a named temp file
            return None
    return None


def _link_into_place(out: BinaryIO, target: Path) -> None:
    """Give the unnamed file behind ``out`` the name ``target``, replacing what was there."""
    fd_name, proc = str(out.fileno()), _proc_fd_dir()
    try:
        if proc is None:  # never link a relative name "3" from the working directory
            raise FileNotFoundError("/proc/self/fd")
        os.link(fd_name, target, src_dir_fd=proc, follow_symlinks=True)
        return
    except FileExistsError:
        pass
    except OSError:  # a /proc that cannot link: copy the bytes into a named temp file instead
        out.seek(0)
        with landing(target) as tmp, open(tmp, "wb") as copy:
            shutil.copyfileobj(out, copy, CHUNK)
        return
    tmp = temp_path(target)
    os.link(fd_name, tmp, src_dir_fd=proc, follow_symlinks=True)
    try:
        os.replace(tmp, target)
    except BaseException:
        remove(tmp)
        raise


def write_atomic(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Write bytes by temp file in the same directory, fsync, then ``os.replace``."""
    with landing(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())


def remove(path: str | os.PathLike[str]) -> None:
    """Remove a file or a whole directory; absent is fine."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(sha256 hex, size) of a file, streamed."""
    with open(path, "rb") as fh:
        return hash_stream(fh)


def hash_stream(src: Any, out: BinaryIO | None = None) -> tuple[str, int]:
    """(sha256 hex, size) of everything ``src`` (anything with ``read(n)``: a file, an HTTP or
    S3 body) yields from here on, read in CHUNK pieces; each piece is also written to ``out``
    when given, while it is still in the cache."""
    h = hashlib.sha256()
    size = 0
    while chunk := src.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
        if out is not None:
            out.write(chunk)
    return h.hexdigest(), size


def safe_join(root: str | os.PathLike[str], relative: str) -> Path:
    """``root / relative`` for a name that came from elsewhere (a remote key, a manifest),
    or IntegrityError BEFORE anything is written: absolute paths, ``..``, empty segments
    (``a//b``), backslashes, NUL and a symlink anywhere under ``root`` are all refused."""
    base = Path(root)
    problem = None
    if not relative or relative.startswith("/") or "\\" in relative or "\x00" in relative:
        problem = "is absolute, empty or contains a backslash or NUL"
    elif any(part in ("", ".", "..") for part in relative.split("/")):
        problem = "has an empty, '.' or '..' segment"
    if problem is None:
        joined = base.joinpath(*relative.split("/"))
        current = base
        for part in relative.split("/")[:-1]:
            current = current / part
            if current.is_symlink():
                problem = f"passes through the symlink {current}"
                break
        if problem is None and joined.is_symlink():
            problem = "is a symlink"
        if problem is None:
            return joined
    raise IntegrityError(f"refusing to write {relative[:200]!r} under {base}: the name {problem}")
