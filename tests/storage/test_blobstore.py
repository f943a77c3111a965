"""The blob-store interface, on a local directory and on a real S3 protocol server."""

from __future__ import annotations

import hashlib
import os
import time

import blob_fixtures as bf
import pytest
from blob_fixtures import make_adapter_bytes

from zoo.errors import ConfigError, NotFoundError
from zoo.storage.blobstore import (
    BlobStore,
    LocalBlobStore,
    blob_key,
    digest_from_key,
    open_store,
)

# shared fixtures (tests/storage/blob_fixtures.py)
s3_env = bf.s3_env
store_url = bf.store_url


def _blob(tmp_path, seed=0):
    data = make_adapter_bytes(seed)
    path = tmp_path / f"src-{seed}.safetensors"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest(), data


def test_key_layout_is_content_addressed():
    digest = "ab" + "c" * 62
    assert blob_key(digest) == f"blobs/sha256/ab/{'c' * 62}"
    assert digest_from_key("pre/fix/" + blob_key(digest)) == digest
    assert digest_from_key("pre/blobs/sha256/ab/nothex") is None


@pytest.mark.parametrize("bad", ["../etc/passwd", "AB" * 32, "a" * 63, "/" + "a" * 63, ""])
def test_bad_digest_never_becomes_a_key(bad):
    with pytest.raises(ValueError):
        blob_key(bad)


def test_store_roundtrip(store_url, tmp_path):
    store = open_store(store_url)
    assert isinstance(store, BlobStore)
    path, digest, data = _blob(tmp_path)
    assert store.stat(digest) is None
    store.put_file(digest, path)
    info = store.stat(digest)
    assert info is not None and info.size == len(data) and info.digest == digest
    assert abs(info.mtime - time.time()) < 600
    out = tmp_path / "out.bin"
    assert bf.read_blob(store, digest, out, size=len(data)) == (digest, len(data))
    assert out.read_bytes() == data
    assert store.hash_blob(digest) == (digest, len(data))
    assert [b.digest for b in store.list_blobs()] == [digest]
    store.touch(digest)
    assert store.stat(digest).size == len(data)
    store.delete(digest)
    assert store.stat(digest) is None
    assert list(store.list_blobs()) == []
    with pytest.raises(NotFoundError, match=digest):
        bf.read_blob(store, digest, tmp_path / "gone.bin")
    store.delete(digest)  # absent is fine


def test_put_bytes_stores_the_same_blob_as_put_file(store_url, tmp_path):
    store = open_store(store_url)
    path, digest, data = _blob(tmp_path, seed=7)
    store.put_bytes(digest, data)
    assert store.stat(digest).size == len(data)
    assert store.hash_blob(digest) == (digest, len(data))
    out = tmp_path / "out.bin"
    assert bf.read_blob(store, digest, out) == (digest, len(data))
    other, other_digest, _ = _blob(tmp_path, seed=8)
    store.put_file(other_digest, other)
    assert sorted(b.digest for b in store.list_blobs()) == sorted([digest, other_digest])


def test_start_put_bytes_stores_the_blob_once_finished(store_url, tmp_path):
    store = open_store(store_url)
    _, digest, data = _blob(tmp_path, seed=10)
    finish = store.start_put_bytes(digest, data)
    finish()
    assert store.hash_blob(digest) == (digest, len(data))
    assert [b.digest for b in store.list_blobs()] == [digest]  # and no temp object


def test_local_start_put_bytes_shows_nothing_under_the_key_until_finished(tmp_path):
    store = LocalBlobStore(tmp_path / "s", fsync=True)
    _, digest, data = _blob(tmp_path, seed=11)
    finish = store.start_put_bytes(digest, data)
    assert store.stat(digest) is None  # a reader never sees a blob still being written
    finish()
    files = [p for p in (tmp_path / "s").rglob("*") if p.is_file()]
    assert [p.relative_to(tmp_path / "s").as_posix() for p in files] == [blob_key(digest)]
    assert store.path_for(digest).read_bytes() == data


def test_local_start_put_bytes_failing_to_finish_leaves_nothing(tmp_path):
    import shutil

    store = LocalBlobStore(tmp_path / "s", fsync=True)
    _, digest, data = _blob(tmp_path, seed=12)
    finish = store.start_put_bytes(digest, data)
    shutil.rmtree(store.path_for(digest).parent)  # the rename into place now fails
    with pytest.raises(FileNotFoundError):
        finish()
    assert [p for p in (tmp_path / "s").rglob("*") if p.is_file()] == []


def test_local_put_bytes_creates_its_fan_out_directory_and_leaves_no_temp(tmp_path):
    store = LocalBlobStore(tmp_path / "s", fsync=True)
    _, digest, data = _blob(tmp_path, seed=9)
    store.put_bytes(digest, data)  # the store root does not exist yet
    store.put_bytes(digest, data)  # overwriting in place is allowed
    files = [p for p in (tmp_path / "s").rglob("*") if p.is_file()]
    assert [p.relative_to(tmp_path / "s").as_posix() for p in files] == [blob_key(digest)]
    assert store.path_for(digest).read_bytes() == data


def test_local_store_layout_and_no_temp_left(tmp_path):
    store = LocalBlobStore(tmp_path / "s")
    path, digest, _ = _blob(tmp_path)
    store.put_file(digest, path)
    files = [p for p in (tmp_path / "s").rglob("*") if p.is_file()]
    assert [p.relative_to(tmp_path / "s").as_posix() for p in files] == [blob_key(digest)]


def test_local_touch_refreshes_mtime(tmp_path):
    store = LocalBlobStore(tmp_path / "s")
    path, digest, _ = _blob(tmp_path)
    store.put_file(digest, path)
    old = time.time() - 7200
    os.utime(store.path_for(digest), (old, old))
    assert store.stat(digest).mtime == pytest.approx(old)
    store.touch(digest)
    assert store.stat(digest).mtime > old + 3600


def test_open_store_urls(tmp_path):
    assert isinstance(open_store(tmp_path), LocalBlobStore)
    assert open_store(tmp_path.as_uri()).root == tmp_path.resolve()
    with pytest.raises(ConfigError, match="unsupported scheme"):
        open_store("ftp://host/x")
    with pytest.raises(ConfigError, match="bucket"):
        open_store("s3:///prefix")


def test_s3_client_config(s3_env, s3_bucket, monkeypatch):
    store = open_store(f"s3://{s3_bucket}/team/zoo", workers=32)
    cfg = store.client.meta.config
    assert cfg.max_pool_connections >= 32
    assert cfg.s3["addressing_style"] == "path"
    assert cfg.retries["mode"] == "standard"
    assert store.client.meta.endpoint_url == s3_env
    assert store.key_for("ab" + "0" * 62) == f"team/zoo/blobs/sha256/ab/{'0' * 62}"
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    assert open_store(f"s3://{s3_bucket}").client.meta.config.retries["mode"] == "adaptive"


def test_s3_multipart_for_large_files(s3_env, s3_bucket, tmp_path):
    from zoo.storage.s3store import S3BlobStore

    mib = 1024 * 1024
    store = S3BlobStore(s3_bucket, "mp", multipart_threshold=5 * mib, multipart_chunksize=5 * mib)
    data = os.urandom(11 * mib)
    digest = hashlib.sha256(data).hexdigest()
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    store.put_file(digest, src)
    head = store.client.head_object(Bucket=s3_bucket, Key=store.key_for(digest))
    assert head["ETag"].strip('"').endswith("-3")  # three parts: a multipart upload
    assert head["Metadata"]["sha256"] == digest
    assert bf.read_blob(store, digest, tmp_path / "back.bin", size=len(data)) == (digest, len(data))


def test_s3_missing_bucket_is_a_store_error(s3_env, tmp_path):
    from zoo.errors import StoreError

    store = open_store("s3://no-such-bucket-zoo/x")
    path, digest, _ = _blob(tmp_path)
    with pytest.raises(StoreError, match="no-such-bucket-zoo"):
        store.put_file(digest, path)


def test_s3_list_ignores_foreign_keys(s3_env, s3_bucket, tmp_path):
    store = open_store(f"s3://{s3_bucket}/p")
    path, digest, _ = _blob(tmp_path)
    store.put_file(digest, path)
    store.client.put_object(Bucket=s3_bucket, Key="p/blobs/sha256/zz/notadigest", Body=b"x")
    store.client.put_object(Bucket=s3_bucket, Key="other/blobs/sha256/" + blob_key(digest)[13:],
                            Body=b"x")
    assert [b.digest for b in store.list_blobs()] == [digest]
