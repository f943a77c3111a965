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
from collections.abc import Iterator
from pathlib import Path

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
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
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
