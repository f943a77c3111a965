"""fsck finds orphans, missing blobs and size/digest mismatches; gc removes only orphans older
than the grace period and never a referenced blob. Local store and S3."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import blob_fixtures as bf
import pytest
from blob_fixtures import make_adapter_bytes, write_adapter

from zoo.durations import parse_duration
from zoo.errors import ConfigError
from zoo.storage.blobstore import BLOB_DIR
from zoo.storage.fsck import fsck
from zoo.storage.gc import collect, gc
from zoo.storage.publish import publish

# shared fixtures (tests/storage/blob_fixtures.py)
backend = bf.backend
s3_env = bf.s3_env
sqlite_backend = bf.sqlite_backend


def _setup(b, tmp_path, n=3):
    published = []
    for i in range(n):
        path, digest = write_adapter(tmp_path / f"a{i}.safetensors", seed=200 + i)
        published.append((publish(b.catalog, b.store, path, name=f"fs-{i}"), digest))
    orphan_path, orphan = write_adapter(tmp_path / "orphan.safetensors", seed=299)
    b.store.put_file(orphan, orphan_path)  # uploaded, never committed: what a crash leaves
    return published, orphan


def _rewrite(b, digest: str, data: bytes) -> None:
    if b.kind == "sqlite-local":
        b.store.path_for(digest).write_bytes(data)
    else:
        b.store.client.put_object(Bucket=b.store.bucket, Key=b.store.key_for(digest), Body=data)


def _read(b, digest: str) -> bytes:
    if b.kind == "sqlite-local":
        return b.store.path_for(digest).read_bytes()
    return b.store.client.get_object(Bucket=b.store.bucket,
                                     Key=b.store.key_for(digest))["Body"].read()


def test_fsck_reports_exactly_the_orphans(backend, tmp_path):
    _published, orphan = _setup(backend, tmp_path)
    report = fsck(backend.catalog, backend.store)
    assert report.ok and report.adapters == 3 and report.blobs == 4
    assert [o.digest for o in report.orphans] == [orphan]
    assert report.missing == [] and report.mismatched == []
    assert fsck(backend.catalog, backend.store, verify=True).ok


def test_fsck_finds_missing_and_corrupt_blobs(backend, tmp_path):
    published, _ = _setup(backend, tmp_path)
    (r0, d0), (r1, d1), (r2, d2) = published
    backend.store.delete(d0)
    data1 = _read(backend, d1)
    _rewrite(backend, d1, data1[:-8])  # truncated: caught by size alone
    data2 = bytearray(_read(backend, d2))
    data2[-1] ^= 0xFF  # same size: only a re-hash finds it
    _rewrite(backend, d2, bytes(data2))

    quick = fsck(backend.catalog, backend.store)
    assert not quick.ok
    assert [p.digest for p in quick.missing] == [d0]
    assert quick.missing[0].adapters[0].id == r0.id
    assert [p.digest for p in quick.mismatched] == [d1]
    assert quick.mismatched[0].actual_size == len(data1) - 8

    full = fsck(backend.catalog, backend.store, verify=True)
    assert sorted(p.digest for p in full.mismatched) == sorted([d1, d2])
    flipped = next(p for p in full.mismatched if p.digest == d2)
    assert flipped.actual_digest not in (None, d2)
    assert r2.id in flipped.describe() and d2 in flipped.describe()


def test_gc_respects_grace_and_never_removes_referenced(backend, tmp_path):
    published, orphan = _setup(backend, tmp_path)
    young = gc(backend.catalog, backend.store, grace="1h").adapters
    assert young.removed == [] and [b.digest for b in young.kept_young] == [orphan]
    dry = gc(backend.catalog, backend.store, grace=0, dry_run=True).adapters
    assert [b.digest for b in dry.removed] == [orphan]
    assert orphan in backend.blob_digests()
    done = gc(backend.catalog, backend.store, grace=0).adapters
    assert [b.digest for b in done.removed] == [orphan]
    assert backend.blob_digests() == {d for _, d in published}
    assert fsck(backend.catalog, backend.store, verify=True).orphans == []
    assert gc(backend.catalog, backend.store, grace=0).adapters.removed == []


def test_gc_removes_old_orphans_with_default_grace(sqlite_backend, tmp_path):
    _published, orphan = _setup(sqlite_backend, tmp_path, n=1)
    old = time.time() - 7200
    os.utime(sqlite_backend.store.path_for(orphan), (old, old))
    report = gc(sqlite_backend.catalog, sqlite_backend.store, grace="1h").adapters
    assert [b.digest for b in report.removed] == [orphan]


def test_republish_touches_an_old_orphan_so_gc_spares_it(sqlite_backend, tmp_path):
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=7)
    sqlite_backend.store.put_file(digest, path)
    old = time.time() - 7200
    os.utime(sqlite_backend.store.path_for(digest), (old, old))
    # a publish that deduplicates against the old blob refreshes its mtime before committing
    publish(sqlite_backend.catalog, sqlite_backend.store, path, name="again")
    assert time.time() - sqlite_backend.store.stat(digest).mtime < 600


def _kill_a_local_writer_mid_blob(store_root, data: bytes) -> None:
    """A real process that starts a blob write and is SIGKILLed before finishing it."""
    script = (
        "import hashlib, os, signal, sys\n"
        "from zoo.storage.blobstore import LocalBlobStore\n"
        "data = sys.stdin.buffer.read()\n"
        "LocalBlobStore(sys.argv[1]).start_put_bytes(hashlib.sha256(data).hexdigest(), data)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(store_root)], input=data,
                          capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_gc_removes_a_killed_writers_temp_file_after_grace(sqlite_backend, tmp_path):
    store = sqlite_backend.store
    published, orphan = _setup(sqlite_backend, tmp_path, n=1)
    _kill_a_local_writer_mid_blob(store.root, make_adapter_bytes(77))
    [left] = list(store.unfinished_writes())
    assert left.size > 0 and Path(left.where).parent.parent == store.root / BLOB_DIR
    assert fsck(sqlite_backend.catalog, store).ok  # not a blob: fsck neither counts nor minds it

    assert gc(sqlite_backend.catalog, store, grace="1h").adapters.unfinished_removed == []  # maybe live
    old = time.time() - 7200
    os.utime(left.where, (old, old))
    dry = gc(sqlite_backend.catalog, store, grace="1h", dry_run=True).adapters
    assert [w.where for w in dry.unfinished_removed] == [left.where]
    assert Path(left.where).exists()
    done = gc(sqlite_backend.catalog, store, grace="1h").adapters
    assert [w.where for w in done.unfinished_removed] == [left.where]
    assert list(store.unfinished_writes()) == [] and not Path(left.where).exists()
    assert sqlite_backend.blob_digests() == {published[0][1], orphan}  # young orphan kept


def test_gc_aborts_abandoned_s3_multipart_uploads(s3_env, s3_bucket):
    from zoo.storage.blobstore import open_store

    store = open_store(f"s3://{s3_bucket}/mp-gc")
    digest = hashlib.sha256(b"large adapter").hexdigest()
    client = store.client
    # what a put_file killed between parts leaves: an upload never completed nor aborted
    upload = client.create_multipart_upload(Bucket=s3_bucket, Key=store.key_for(digest))
    client.upload_part(Bucket=s3_bucket, Key=store.key_for(digest), PartNumber=1,
                       UploadId=upload["UploadId"], Body=b"x" * 1024)
    other = client.create_multipart_upload(Bucket=s3_bucket, Key="elsewhere/not-ours")
    [left] = list(store.unfinished_writes())
    assert left.where.endswith(f"{store.key_for(digest)}?uploadId={upload['UploadId']}")

    assert abs(time.time() - left.mtime) < 3600  # the server's real initiation time
    assert collect(store, set, grace_s=3600).unfinished_removed == []  # young: kept
    assert [w.where for w in collect(store, set, grace_s=0, force=True).unfinished_removed] == [
        left.where]
    assert list(store.unfinished_writes()) == []
    remaining = client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert [u["UploadId"] for u in remaining] == [other["UploadId"]]  # not under our blobs


def test_remove_unfinished_refuses_what_is_not_a_leftover_of_the_store(tmp_path):
    from zoo.storage.blobstore import LocalBlobStore, UnfinishedWrite

    store = LocalBlobStore(tmp_path / "s")
    victim = tmp_path / "precious.incomplete"
    victim.write_text("keep")
    with pytest.raises(ValueError, match="not a temp file"):
        store.remove_unfinished(UnfinishedWrite(str(victim), 4, 0.0))
    assert victim.exists()


@pytest.mark.parametrize("text,seconds", [("90", 90), ("30s", 30), ("15m", 900), ("1h", 3600),
                                          ("1.5h", 5400), ("7d", 604800), ("2w", 1209600),
                                          (0, 0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["1y", "-1h", "h", "1 h 2m", ""])
def test_parse_duration_rejects(bad):
    with pytest.raises(ConfigError):
        parse_duration(bad)
