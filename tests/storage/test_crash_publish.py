"""Crash safety (acceptance 2): a real ``zoo push`` process is SIGKILLed at each injected point
(before upload, after upload, inside the open catalog transaction). Afterwards no catalog row
lacks its blob, fsck reports exactly the orphans, gc removes them, and a retry publishes once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import blob_fixtures as bf
import pytest
from blob_fixtures import write_adapter

from zoo.storage.fsck import fsck
from zoo.storage.gc import gc
from zoo.storage.publish import CRASH_ENV, CRASH_POINTS, publish

# shared fixtures (tests/storage/blob_fixtures.py)
backend = bf.backend
s3_env = bf.s3_env
sqlite_backend = bf.sqlite_backend


def _push(b, path, name, crash_at=None):
    env = {**os.environ, **b.env()}
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "zoo.cli.main", "push", str(path), "--name", name, "--tag", "crash"],
        env=env, capture_output=True, text=True, timeout=120,
    )


def _no_row_without_blob(b):
    rows = b.adapter_rows()
    blobs = b.blob_digests()
    assert all(digest in blobs for _id, _name, digest in rows), (rows, blobs)
    return rows


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_sigkill_at_each_point_leaves_at_worst_an_orphan(backend, tmp_path, point):
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=11)
    before = backend.counts()
    proc = _push(backend, path, "crashy", crash_at=point)
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    assert _no_row_without_blob(backend) == []
    assert backend.counts() == before  # the killed transaction never committed
    expected_orphans = [] if point == "before-upload" else [digest]
    report = fsck(backend.catalog, backend.store)
    assert report.ok and [o.digest for o in report.orphans] == expected_orphans

    removed = gc(backend.catalog, backend.store, grace=0, force=True).adapters  # 1 of 1 blobs
    assert [b.digest for b in removed.removed] == expected_orphans
    assert backend.blob_digests() == set()

    retry = publish(backend.catalog, backend.store, path, name="crashy", tags=["crash"])
    again = publish(backend.catalog, backend.store, path, name="crashy", tags=["crash"])
    assert again.id == retry.id and not again.uploaded  # idempotent: the same adapter
    rows = _no_row_without_blob(backend)
    assert rows == [(retry.id, "crashy", digest)]
    assert fsck(backend.catalog, backend.store, verify=True).orphans == []


def test_retry_after_crash_reuses_the_orphan_blob(sqlite_backend, tmp_path):
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=12)
    assert _push(sqlite_backend, path, "reuse", crash_at="in-transaction").returncode == (
        -signal.SIGKILL)
    # the killed process held SQLite's write lock inside BEGIN IMMEDIATE: the OS released it
    retry = publish(sqlite_backend.catalog, sqlite_backend.store, path, name="reuse")
    assert not retry.uploaded  # deduplicated against the orphan the crash left
    assert sqlite_backend.blob_digests() == {digest}
    assert len(sqlite_backend.adapter_rows()) == 1
    assert fsck(sqlite_backend.catalog, sqlite_backend.store).orphans == []
