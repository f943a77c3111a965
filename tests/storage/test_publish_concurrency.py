"""8 processes publish at once into one catalog and one store: the same file under one name,
and each its own file. Content addressing stores each blob once; the catalog gets no duplicate
row; every process sees success and the same id for the shared adapter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import blob_fixtures as bf
import pytest
from blob_fixtures import write_adapter

from zoo.storage.fsck import fsck

# shared fixtures (tests/storage/blob_fixtures.py)
backend = bf.backend
s3_env = bf.s3_env

WORKER = """
import json, os, sys, time
from zoo.storage.blobstore import open_store
from zoo.storage.db import open_catalog
from zoo.storage.publish import publish

go, shared, own, i = sys.argv[1:5]
catalog = open_catalog(os.environ["ZOO_CATALOG_URL"])
store = open_store(os.environ["ZOO_STORE_URL"])
store.stat("0" * 64)  # connected to the store too (S3: the client's pool is warm)
open(go + f".ready-{i}", "w").close()  # imported and connected: ready to race
while not os.path.exists(go):
    time.sleep(0.001)
a = publish(catalog, store, shared, name="shared", tags=["team=nlp"], aliases=["shared@latest"])
b = publish(catalog, store, own, name=f"own-{i}", tags=["mine"])
print(json.dumps([a.id, b.id]))
"""


@pytest.mark.slow  # 8 interpreter start-ups: ~20-50 s on 2 shared cores
def test_eight_processes_publish_without_duplicates(backend, tmp_path):
    shared, shared_digest = write_adapter(tmp_path / "shared.safetensors", seed=40)
    owns = [write_adapter(tmp_path / f"own{i}.safetensors", seed=50 + i) for i in range(8)]
    go = tmp_path / "go"
    env = {**os.environ, **backend.env()}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(go), str(shared),
                               str(owns[i][0]), str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(8)]
    deadline = time.monotonic() + 300
    while not all(go.with_name(f"go.ready-{i}").exists() for i in range(8)):  # the barrier
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, "workers never got ready"
        time.sleep(0.05)
    go.touch()  # all 8 imported and connected: they start together
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out))

    shared_ids = {r[0] for r in results}
    assert len(shared_ids) == 1
    rows = backend.adapter_rows()
    assert sorted(name for _id, name, _d in rows) == sorted(["shared"] + [f"own-{i}" for i in range(8)])
    assert {d for _id, name, d in rows if name == "shared"} == {shared_digest}
    assert backend.blob_digests() == {shared_digest} | {d for _p, d in owns}
    report = fsck(backend.catalog, backend.store, verify=True)
    assert report.ok and report.orphans == []
