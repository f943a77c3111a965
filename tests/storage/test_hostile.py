"""A careless or hostile user cannot make the storage layer lose data or write outside its
destination: each case here was reproduced against the zoo before it was fixed."""

from __future__ import annotations

import threading
from pathlib import Path

import blob_fixtures as bf
import pytest
from blob_fixtures import make_adapter_bytes, write_adapter

from zoo.errors import IntegrityError
from zoo.files import safe_join
from zoo.storage.fsck import fsck
from zoo.storage.gc import gc
from zoo.storage.publish import publish

backend = bf.backend
s3_env = bf.s3_env
sqlite_backend = bf.sqlite_backend


# ---- nothing is written outside its destination -------------------------------------------

@pytest.mark.parametrize("name", ["/abs/path", "../up", "a/../b", "a//b", "a\\b", "", "a/./b",
                                  "x\x00y"])
def test_safe_join_refuses_every_escape(tmp_path, name):
    with pytest.raises(IntegrityError, match="refusing to write"):
        safe_join(tmp_path, name)


def test_safe_join_refuses_symlinks(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path)
    with pytest.raises(IntegrityError, match="symlink"):
        safe_join(tmp_path / "out", "link/config.json")
    assert safe_join(tmp_path / "out", "sub/config.json") == tmp_path / "out" / "sub" / "config.json"


@pytest.fixture
def moto_s3(monkeypatch):
    """moto's S3 server, kept for this one test: the hostile key below (``prefix//abs/path``)
    exists on AWS S3, but SeaweedFS stores keys as filer paths and collapses the ``//``, so a
    real server here cannot hold it. Any credentials are accepted by moto."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for k, v in (("AWS_ENDPOINT_URL", f"http://{host}:{port}"), ("AWS_ACCESS_KEY_ID", "moto"),
                 ("AWS_SECRET_ACCESS_KEY", "moto"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(k, v)
    import boto3

    boto3.session.Session().client("s3").create_bucket(Bucket="hostile")
    try:
        yield "hostile"
    finally:
        server.stop()
        boto3.DEFAULT_SESSION = None  # it may have cached moto's keys: later tests need their own


def test_s3_base_prefix_with_an_absolute_key_writes_nothing(moto_s3, tmp_path):
    """``prefix//abs/path`` used to become ``dest / '/abs/path'``: a write anywhere."""
    import boto3

    from zoo.storage.staging import fetch_model

    client = boto3.session.Session().client("s3")
    victim = tmp_path / "victim.txt"
    client.put_object(Bucket=moto_s3, Key="models/tiny/config.json", Body=b"{}")
    client.put_object(Bucket=moto_s3, Key=f"models/tiny/{victim}", Body=b"pwned")
    home = tmp_path / "node"
    with pytest.raises(IntegrityError, match="refusing to write"):
        fetch_model(f"s3://{moto_s3}/models/tiny", "file:///unused", home=str(home))
    assert not victim.exists()
    written = [p for p in home.rglob("*") if p.is_file()] if home.exists() else []
    assert written == []  # every name is checked before the first download


def test_model_manifest_with_a_traversing_path_writes_nothing(tmp_path):
    import json

    from zoo.storage.staging import MODEL_SCHEME, fetch_model, open_artifacts, put_bytes

    store_url = (tmp_path / "store").as_uri()
    store = open_artifacts(store_url)
    good = put_bytes(store, b"{}")
    manifest = put_bytes(store, json.dumps(
        {"name": "evil", "files": {"config.json": good, "../../escaped.txt": good}}).encode())
    with pytest.raises(IntegrityError, match="refusing to write"):
        fetch_model(MODEL_SCHEME + manifest, store_url, home=str(tmp_path / "node"))
    assert not (tmp_path / "escaped.txt").exists()
    assert not list((tmp_path / "node").rglob("config.json"))


# ---- a blob's digest is the digest of the bytes stored ---------------------------------------

def test_a_file_rewritten_during_push_never_commits_a_wrong_digest(sqlite_backend, tmp_path):
    """Another process rewrites the file while pushes run: every push either fails with a clear
    error or commits a row whose blob hashes to its digest (fsck --verify stays clean)."""
    b = sqlite_backend
    path = tmp_path / "a.safetensors"
    versions = [make_adapter_bytes(seed=s) for s in range(4)]
    path.write_bytes(versions[0])
    stop = threading.Event()

    def rewrite() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            with open(path, "r+b") as fh:  # in place, as an editor or a trainer would
                fh.write(versions[i % len(versions)])

    writer = threading.Thread(target=rewrite)
    writer.start()
    outcomes = []
    try:
        for _ in range(40):
            try:
                publish(b.catalog, b.store, path, name="racy")
                outcomes.append("ok")
            except (IntegrityError, ValueError) as exc:
                outcomes.append(type(exc).__name__)
    finally:
        stop.set()
        writer.join()
    report = fsck(b.catalog, b.store, verify=True)
    assert report.ok, [p.describe() for p in report.mismatched]
    assert "ok" in outcomes


def test_pushing_the_good_file_heals_a_damaged_blob(backend, tmp_path):
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=40)
    publish(backend.catalog, backend.store, path, name="heal")
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[-10] ^= 0xFF
    _overwrite(backend, digest, bytes(damaged))
    assert not fsck(backend.catalog, backend.store, verify=True).ok
    again = publish(backend.catalog, backend.store, path, name="heal")
    assert again.uploaded  # the damaged copy was replaced
    assert fsck(backend.catalog, backend.store, verify=True).ok


def _overwrite(b, digest: str, data: bytes) -> None:
    if b.kind == "sqlite-local":
        target = b.store.path_for(digest)
        target.chmod(0o644)
        target.write_bytes(data)
    else:
        b.store.client.put_object(Bucket=b.store.bucket, Key=b.store.key_for(digest), Body=data)


def test_a_name_that_cannot_be_a_file_name_is_refused_at_push(sqlite_backend, tmp_path):
    from zoo.errors import InvalidNameError

    path, _ = write_adapter(tmp_path / "a.safetensors", seed=41)
    with pytest.raises(InvalidNameError, match="bytes"):
        publish(sqlite_backend.catalog, sqlite_backend.store, path, name="模" * 70)  # 210 bytes
    assert sqlite_backend.adapter_rows() == []


# ---- the store belongs to one catalog ---------------------------------------------------------

def test_gc_with_another_catalog_deletes_nothing(sqlite_backend, tmp_path):
    """A new, empty catalog pointed at the team's store sees every blob as garbage."""
    from zoo.storage.db import init_catalog, open_catalog

    path, digest = write_adapter(tmp_path / "a.safetensors", seed=42)
    publish(sqlite_backend.catalog, sqlite_backend.store, path, name="team")
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    init_catalog(other_url)
    with open_catalog(other_url) as other:
        with pytest.raises(IntegrityError, match="belongs to another catalog"):
            gc(other, sqlite_backend.store, grace=0, force=True)
        with pytest.raises(IntegrityError, match="belongs to another catalog"):
            fsck(other, sqlite_backend.store)
    assert sqlite_backend.blob_digests() == {digest}


def test_gc_refuses_an_unbound_store_and_a_wholesale_deletion(tmp_path):
    from zoo.storage.binding import bind
    from zoo.storage.blobstore import open_store
    from zoo.storage.db import init_catalog, open_catalog

    url = f"sqlite:///{tmp_path / 'c.db'}"
    init_catalog(url)
    store = open_store(tmp_path / "store")
    digests = []
    for seed in range(3):
        p, d = write_adapter(tmp_path / f"o{seed}.safetensors", seed=43 + seed)
        store.put_file(d, p)  # orphans: uploaded, never committed
        digests.append(d)
    with open_catalog(url) as catalog:
        with pytest.raises(IntegrityError, match="not bound to any catalog"):
            gc(catalog, store, grace=0)
        bind(catalog, store)
        with pytest.raises(IntegrityError, match=r"would delete 3 of the 3 adapter blobs"):
            gc(catalog, store, grace=0)
        assert {b.digest for b in store.list_blobs()} == set(digests)
        assert len(gc(catalog, store, grace=0, force=True).adapters.removed) == 3


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_a_damaged_catalog_file_is_an_error_not_a_new_catalog(sqlite_backend, tmp_path, damage):
    from zoo.storage.db import init_catalog, open_catalog

    db = Path(sqlite_backend.catalog_url.removeprefix("sqlite:///"))
    path, _ = write_adapter(tmp_path / "a.safetensors", seed=46)
    publish(sqlite_backend.catalog, sqlite_backend.store, path, name="x")
    sqlite_backend.catalog.close()
    data = db.read_bytes()
    db.write_bytes({"empty": b"", "truncated": data[: len(data) // 2 + 100],
                    "garbage": b"not a database at all" * 10}[damage])
    want = {"empty": "is empty", "truncated": "is truncated",
            "garbage": "is not a SQLite database"}[damage]
    for attempt in (open_catalog, init_catalog):
        with pytest.raises(IntegrityError, match=want):
            attempt(sqlite_backend.catalog_url)
