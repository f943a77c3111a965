"""The verified fetch: a blob from a store to a local file, or nothing at all.

Every download the zoo makes of a content-addressed blob goes through here (pull, the inputs a
worker fetches for a job, the adapters and datasets an eval worker reads): the blob is checked
against a size cap BEFORE any byte is fetched, streamed into a new file beside the destination
while it is hashed (``zoo.files.landing_file``: an unnamed file where the filesystem allows, a
hidden temp file elsewhere), compared with its digest (and the size the catalog recorded), and
only then given its name. A mismatch is an IntegrityError naming the blob, and no
partial file is ever left behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from zoo.errors import IntegrityError, NotFoundError
from zoo.files import landing_file, sha256_file
from zoo.storage.blobstore import BlobStore

MAX_INPUT_BYTES = 64 * 1024**3  # no single blob the zoo reads is larger (a 30B shard is ~10 GB)


def fetch_verified(store: BlobStore, digest: str, dest: str | os.PathLike[str], *,
                   size: int | None = None, max_size: int = MAX_INPUT_BYTES,
                   what: str = "blob") -> Path:
    """Download blob ``digest`` to ``dest`` (atomic), checking sha256, ``size`` when known and
    the ``max_size`` cap. ``what`` names the blob in errors (e.g. ``adapter 01H… (sentiment)``)."""
    expected = size
    if expected is None:
        info = store.stat(digest)
        if info is None:
            raise _missing(store, digest, what)
        expected = info.size
    if expected > max_size:
        raise IntegrityError(f"{what}: blob sha256:{digest} is {expected} bytes, over the "
                             f"limit of {max_size}; not fetched")
    final = Path(dest)
    with landing_file(final) as out:
        try:
            got, got_size = store.read_into(digest, out, size=expected)
        except NotFoundError:
            raise _missing(store, digest, what) from None
        if got_size != expected or got != digest:
            how = "truncated" if got_size < expected else "extended"
            why = (f"{how}: {got_size} bytes, expected {expected}" if got_size != expected
                   else f"content hashes to sha256:{got}")
            raise IntegrityError(f"{what}: blob sha256:{digest} failed verification ({why}); "
                                 "nothing was written")
    return final


def fetch_bytes(store: BlobStore, digest: str, *, max_size: int, what: str = "blob") -> bytes:
    """A small blob's verified bytes (a manifest, a log, a checkpoint), through a temp file."""
    with tempfile.TemporaryDirectory(prefix="zoo-fetch-") as tmp:
        path = fetch_verified(store, digest, Path(tmp) / "blob", max_size=max_size, what=what)
        return path.read_bytes()


def fetch_cached(store: BlobStore, digest: str, dest: str | os.PathLike[str], *,
                 size: int | None = None, max_size: int = MAX_INPUT_BYTES,
                 what: str = "blob") -> Path:
    """:func:`fetch_verified`, unless ``dest`` already holds exactly those bytes (a node's
    cache of inputs shared by later jobs); a damaged cached copy is fetched again."""
    path = Path(dest)
    if path.is_file() and sha256_file(path)[0] == digest:
        return path
    return fetch_verified(store, digest, path, size=size, max_size=max_size, what=what)


def _missing(store: BlobStore, digest: str, what: str) -> IntegrityError:
    return IntegrityError(f"{what}: blob sha256:{digest} is missing from store {store.url} "
                          "(run `zoo fsck`)")
