"""fsck finds orphans, missing blobs and size/digest mismatches; gc removes only orphans older
than the grace period and never a referenced blob. Local store and S3."""

from __future__ import annotations

import os
import time

import blob_fixtures as bf
import pytest
from blob_fixtures import write_adapter

from zoo.errors import ConfigError
from zoo.storage.fsck import fsck, gc, parse_duration
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
    young = gc(backend.catalog, backend.store, grace="1h")
    assert young.removed == [] and [b.digest for b in young.kept_young] == [orphan]
    dry = gc(backend.catalog, backend.store, grace=0, dry_run=True)
    assert [b.digest for b in dry.removed] == [orphan]
    assert orphan in backend.blob_digests()
    done = gc(backend.catalog, backend.store, grace=0)
    assert [b.digest for b in done.removed] == [orphan]
    assert backend.blob_digests() == {d for _, d in published}
    assert fsck(backend.catalog, backend.store, verify=True).orphans == []
    assert gc(backend.catalog, backend.store, grace=0).removed == []


def test_gc_removes_old_orphans_with_default_grace(sqlite_backend, tmp_path):
    _published, orphan = _setup(sqlite_backend, tmp_path, n=1)
    old = time.time() - 7200
    os.utime(sqlite_backend.store.path_for(orphan), (old, old))
    report = gc(sqlite_backend.catalog, sqlite_backend.store, grace="1h")
    assert [b.digest for b in report.removed] == [orphan]


def test_republish_touches_an_old_orphan_so_gc_spares_it(sqlite_backend, tmp_path):
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=7)
    sqlite_backend.store.put_file(digest, path)
    old = time.time() - 7200
    os.utime(sqlite_backend.store.path_for(digest), (old, old))
    # a publish that deduplicates against the old blob refreshes its mtime before committing
    publish(sqlite_backend.catalog, sqlite_backend.store, path, name="again")
    assert time.time() - sqlite_backend.store.stat(digest).mtime < 600


@pytest.mark.parametrize("text,seconds", [("90", 90), ("30s", 30), ("15m", 900), ("1h", 3600),
                                          ("1.5h", 5400), ("7d", 604800), ("2w", 1209600),
                                          (0, 0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["1y", "-1h", "h", "1 h 2m", ""])
def test_parse_duration_rejects(bad):
    with pytest.raises(ConfigError):
        parse_duration(bad)
