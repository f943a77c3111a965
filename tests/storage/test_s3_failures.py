"""What a real S3 server (SeaweedFS) refuses reaches the user as one line with the store's exit
code, and nothing is written: a wrong secret key, no credentials at all, a missing bucket, a
server that stops in the middle of a pull, and bytes that do not match their SHA-256 checksum."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import blob_fixtures as bf
import pytest
from blob_fixtures import make_adapter_bytes, sha256_path, write_adapter
from seaweed import start_seaweed

from zoo.errors import StoreError
from zoo.storage.publish import publish
from zoo.storage.pull import pull
from zoo.storage.s3store import S3BlobStore

s3_env = bf.s3_env
ZOO = str(Path(sys.executable).with_name("zoo"))


@pytest.fixture
def s3_sqlite(s3_env, s3_bucket, tmp_path):
    """A SQLite catalog bound to a store on the session's SeaweedFS, with two published
    adapters tagged ``prod``."""
    b = bf.Backend("sqlite-s3", f"sqlite:///{tmp_path / 'catalog.db'}",
                   bf.s3_store_url(s3_bucket))
    for i in range(2):
        path, _ = write_adapter(tmp_path / "src" / f"a{i}.safetensors", seed=i)
        publish(b.catalog, b.store, path, name=f"adapter-{i}", tags=["prod"])
    try:
        yield b
    finally:
        b.catalog.close()


def _zoo_pull(b, out: Path, **env: str) -> subprocess.CompletedProcess:
    """``zoo pull --tag prod`` in a fresh process, as a user runs it."""
    full = {**os.environ, **b.env(), "AWS_MAX_ATTEMPTS": "2", **env}
    for k in [k for k, v in env.items() if v is None]:
        full.pop(k)
    return subprocess.run([ZOO, "pull", "--tag", "prod", "-o", str(out)], env=full,
                          capture_output=True, text=True, timeout=120)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), proc.stderr
    return lines[0]


def test_wrong_secret_key_is_one_line_exit_7_and_nothing_written(s3_sqlite, tmp_path):
    out = tmp_path / "out"
    proc = _zoo_pull(s3_sqlite, out, AWS_SECRET_ACCESS_KEY="not-the-secret")
    assert proc.returncode == StoreError.exit_code == 7
    line = _one_error_line(proc)
    assert "refused the credentials (SignatureDoesNotMatch)" in line
    assert "AWS_SECRET_ACCESS_KEY" in line and "not-the-secret" not in line
    assert not out.exists()
    # the right key pulls the same adapters: the refusal was the key's, nothing else's
    ok = _zoo_pull(s3_sqlite, out)
    assert ok.returncode == 0, ok.stderr
    assert len(list(out.iterdir())) == 2


NOWHERE = "{tmp}/no-such-aws-file"  # a config/credentials file that does not exist


@pytest.mark.parametrize("env, message", [
    ({"AWS_ACCESS_KEY_ID": "AKIANOBODY"}, "refused the credentials (InvalidAccessKeyId)"),
    ({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None,
      "AWS_PROFILE": None, "AWS_CONFIG_FILE": NOWHERE, "AWS_SHARED_CREDENTIALS_FILE": NOWHERE,
      "AWS_EC2_METADATA_DISABLED": "true"}, "no S3 credentials found"),
    ({"ZOO_STORE_URL": "s3://zoo-no-such-bucket/zoo"},
     "bucket 'zoo-no-such-bucket' does not exist"),
], ids=["unknown-access-key", "no-credentials", "missing-bucket"])
def test_store_refusals_are_one_line_and_write_nothing(s3_sqlite, tmp_path, env, message):
    out = tmp_path / "out"
    env = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in env.items()}
    proc = _zoo_pull(s3_sqlite, out, **env)
    assert proc.returncode == 7
    assert message in _one_error_line(proc)
    assert not out.exists()


def test_server_stopping_mid_pull_leaves_only_verified_files(tmp_path, monkeypatch):
    """A server of its own, killed by its process id once the first adapter has landed."""
    server = start_seaweed(tmp_path / "seaweed", buckets=("mid-pull",))
    try:
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        monkeypatch.setenv("AWS_RETRY_MODE", "standard")
        b = bf.Backend("sqlite-s3", f"sqlite:///{tmp_path / 'catalog.db'}", "s3://mid-pull/zoo")
        for i in range(30):
            path, _ = write_adapter(tmp_path / "src" / f"a{i}.safetensors", seed=i)
            publish(b.catalog, b.store, path, name=f"adapter-{i}", tags=["prod"])

        def kill_after_first(done: int, _total: int, _bytes: int) -> None:
            if done == 1:
                os.kill(server.pid, signal.SIGKILL)
                server.proc.wait(timeout=30)

        out = tmp_path / "out"
        with pytest.raises(StoreError) as caught:
            pull(b.catalog, b.store, tag="prod", out_dir=out, workers=2,
                 progress=kill_after_first)
        assert caught.value.exit_code == 7 and "\n" not in str(caught.value)
        landed = sorted(out.iterdir())
        assert 1 <= len(landed) < 30
        digests = {name: digest for _id, name, digest in b.adapter_rows()}
        for path in landed:  # complete, verified files only; no hidden temp file
            assert not path.name.startswith("."), path
            name = path.name.rsplit("-", 1)[0]
            assert sha256_path(path) == digests[name]
        b.catalog.close()
    finally:
        server.stop()


def test_upload_whose_bytes_do_not_match_the_checksum_is_refused(s3_env, s3_bucket, tmp_path):
    """The store sends the blob's digest as its SHA-256 checksum; SeaweedFS recomputes it and
    refuses a body that differs (here: a file changed after it was hashed)."""
    store = S3BlobStore(s3_bucket, "sums")
    good = make_adapter_bytes(1)
    digest = hashlib.sha256(good).hexdigest()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0x01
    path = tmp_path / "blob"
    path.write_bytes(bytes(damaged))
    with pytest.raises(StoreError, match="do not match their checksum \\(BadDigest\\)"):
        store.put_file(digest, path)
    with pytest.raises(StoreError, match="BadDigest"):
        store.put_bytes(digest, bytes(damaged))
    assert store.stat(digest) is None  # nothing was stored
    path.write_bytes(good)
    store.put_file(digest, path)
    head = store.client.head_object(Bucket=s3_bucket, Key=store.key_for(digest),
                                    ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(digest)).decode()


def test_multipart_upload_sends_a_checksum_per_part(s3_env, s3_bucket, tmp_path):
    mib = 1024 * 1024
    store = S3BlobStore(s3_bucket, "mp", multipart_threshold=5 * mib, multipart_chunksize=5 * mib)
    data = os.urandom(11 * mib)
    path = tmp_path / "big"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    store.put_file(digest, path)
    head = store.client.head_object(Bucket=s3_bucket, Key=store.key_for(digest),
                                    ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"].endswith("-3")  # a checksum of the three parts' checksums
    assert bf.read_blob(store, digest, tmp_path / "back", size=len(data)) == (digest, len(data))


def test_ranged_download_is_verified_and_leaves_nothing_when_damaged(s3_env, s3_bucket, tmp_path):
    from zoo.errors import IntegrityError
    from zoo.storage.fetch import fetch_verified

    mib = 1024 * 1024
    store = S3BlobStore(s3_bucket, "ranged", download_threshold=5 * mib, download_part=4 * mib)
    data = os.urandom(11 * mib)
    digest = hashlib.sha256(data).hexdigest()
    store.put_bytes(digest, data)
    out = tmp_path / "out"
    fetch_verified(store, digest, out / "ok", size=len(data))
    assert sha256_path(out / "ok") == digest
    # other bytes under the digest's key (a write that bypassed the zoo): the third range
    damaged = bytearray(data)
    damaged[9 * mib] ^= 0x01
    store.client.put_object(Bucket=s3_bucket, Key=store.key_for(digest), Body=bytes(damaged))
    with pytest.raises(IntegrityError, match="failed verification"):
        fetch_verified(store, digest, out / "bad", size=len(data))
    assert [p.name for p in out.iterdir()] == ["ok"]  # no partial file, no temp file
