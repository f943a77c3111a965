"""The publish protocol on SQLite + local store and PostgreSQL + S3: dedup, idempotency,
one transaction with ``on_commit``, and bad input rejected before any I/O."""

from __future__ import annotations

import blob_fixtures as bf
import pytest
from blob_fixtures import sha256_path, write_adapter

from zoo.errors import AdapterFormatError, ConfigError, ZooError
from zoo.storage.binding import MARKER
from zoo.storage.blobstore import blob_key
from zoo.storage.publish import publish

# shared fixtures (tests/storage/blob_fixtures.py)
backend = bf.backend
s3_env = bf.s3_env
sqlite_backend = bf.sqlite_backend
module_sqlite_backend = bf.module_sqlite_backend


def test_publish_uploads_then_commits_one_row(backend, tmp_path):
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=1)
    result = publish(backend.catalog, backend.store, path, name="sentiment",
                     tags=["prod", "team=nlp"], aliases=["prod"])
    assert result.uploaded and result.digest == digest
    assert result.adapter["name"] == "sentiment"
    assert backend.adapter_rows() == [(result.id, "sentiment", digest)]
    info = backend.store.stat(digest)
    assert info is not None and info.size == path.stat().st_size
    assert backend.store.hash_blob(digest) == (digest, path.stat().st_size)


def test_identical_bytes_are_stored_once(backend, tmp_path):
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=2)
    first = publish(backend.catalog, backend.store, path, name="one")
    again = publish(backend.catalog, backend.store, path, name="one")
    other = publish(backend.catalog, backend.store, path, name="two")
    assert again.id == first.id and not again.uploaded  # same digest + name: the same adapter
    assert other.id != first.id and not other.uploaded  # another name, the same blob
    assert len(backend.adapter_rows()) == 2
    assert backend.blob_digests() == {digest}


def test_same_job_id_publishes_once(backend, tmp_path):
    a, _ = write_adapter(tmp_path / "a.safetensors", seed=3)
    b, digest_b = write_adapter(tmp_path / "b.safetensors", seed=4)
    first = publish(backend.catalog, backend.store, a, name="job-out", job_id="job-1")
    retry = publish(backend.catalog, backend.store, b, name="job-out", job_id="job-1")
    assert retry.id == first.id and not retry.uploaded
    assert len(backend.adapter_rows()) == 1
    assert digest_b not in backend.blob_digests()  # the retry uploaded nothing


def test_on_commit_runs_inside_the_transaction(sqlite_backend, tmp_path):
    from sqlalchemy import select

    from zoo.storage.tables import AdapterRow

    path, digest = write_adapter(tmp_path / "a.safetensors", seed=5)
    seen = []

    def on_commit(session, adapter_id):
        # the row is visible in this transaction before it commits
        seen.append(tuple(session.execute(select(AdapterRow.id)
                                          .where(AdapterRow.digest == digest)).one()))
        seen.append(adapter_id)

    result = publish(sqlite_backend.catalog, sqlite_backend.store, path, name="x",
                     on_commit=on_commit)
    assert seen == [(result.id,), result.id]


def test_on_commit_failure_rolls_back_the_row(sqlite_backend, tmp_path):
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=6)

    def boom(connection, adapter_id):
        raise RuntimeError("job state update failed")

    with pytest.raises(RuntimeError, match="job state"):
        publish(sqlite_backend.catalog, sqlite_backend.store, path, name="x", on_commit=boom)
    assert sqlite_backend.adapter_rows() == []
    assert sqlite_backend.blob_digests() == {digest}  # at worst an orphan blob


def test_in_memory_publish_whose_transaction_fails_leaves_an_orphan_and_no_temp(
        sqlite_backend, tmp_path):
    # Bytes (a worker's fresh adapter) upload while the transaction runs: its failure must
    # still leave the store as a finished upload would, never a half-written temp file.
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=7)

    def boom(connection, adapter_id):
        raise RuntimeError("job state update failed")

    with pytest.raises(RuntimeError, match="job state"):
        publish(sqlite_backend.catalog, sqlite_backend.store, path.read_bytes(), name="x",
                on_commit=boom)
    assert sqlite_backend.adapter_rows() == []
    assert sqlite_backend.blob_digests() == {digest}
    root = sqlite_backend.store.root
    assert [p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and p.name != MARKER] == [blob_key(digest)]


def test_upload_failing_inside_the_transaction_commits_no_row(sqlite_backend, tmp_path):
    import shutil

    path, digest = write_adapter(tmp_path / "a.safetensors", seed=8)
    store = sqlite_backend.store

    def lose_the_directory(connection, adapter_id):  # runs after the upload started
        shutil.rmtree(store.path_for(digest).parent)

    with pytest.raises(FileNotFoundError):
        publish(sqlite_backend.catalog, store, path.read_bytes(), name="x",
                on_commit=lose_the_directory)
    assert sqlite_backend.adapter_rows() == []  # no row without its blob
    assert sqlite_backend.blob_digests() == set()
    retry = publish(sqlite_backend.catalog, store, path.read_bytes(), name="x")
    assert retry.uploaded and sqlite_backend.adapter_rows() == [(retry.id, "x", digest)]


BAD_NAMES = ["../escape", "/abs/name", "a/b", "n" * 10_000, "bad\u202ename", "x\x00y", "",
             "emoji\U0001f600", "C:\\windows", "name@alias", " lead"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=range(len(BAD_NAMES)))
def test_bad_names_rejected_before_any_io(module_sqlite_backend, tmp_path, name):
    path, _ = write_adapter(tmp_path / "a.safetensors", seed=7)
    before = module_sqlite_backend.counts()
    with pytest.raises(ConfigError) as info:
        publish(module_sqlite_backend.catalog, module_sqlite_backend.store, path, name=name)
    assert len(str(info.value)) < 400  # one readable line, even for a 10k-char name
    assert module_sqlite_backend.counts() == before
    assert module_sqlite_backend.blob_digests() == set()


@pytest.mark.parametrize("tags,aliases", [
    (["../../etc/passwd"], []), (["/abs"], []), (["t" * 10_000], []), (["ok", "k=v/../x"], []),
    ([], ["other/../x@prod"]), ([], ["name@../prod"]), ([], ["a@b@c"]),
])
def test_bad_tags_and_aliases_rejected_before_any_io(module_sqlite_backend, tmp_path, tags,
                                                    aliases):
    path, _ = write_adapter(tmp_path / "a.safetensors", seed=8)
    before = module_sqlite_backend.counts()
    with pytest.raises(ConfigError):
        publish(module_sqlite_backend.catalog, module_sqlite_backend.store, path, name="ok", tags=tags,
                aliases=aliases)
    assert module_sqlite_backend.counts() == before
    assert module_sqlite_backend.blob_digests() == set()


@pytest.mark.parametrize("content", [
    b"\x80\x02}q\x00.",  # a pickle
    b"PK\x03\x04 zip",  # a zip (torch.save)
    b"garbage",
    b"\x10\x00\x00\x00\x00\x00\x00\x00{}              ",  # safetensors, not a zoo adapter
])
def test_non_adapter_files_rejected(module_sqlite_backend, tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(AdapterFormatError):
        publish(module_sqlite_backend.catalog, module_sqlite_backend.store, path, name="bad")
    assert module_sqlite_backend.counts()["adapters"] == 0
    assert module_sqlite_backend.blob_digests() == set()


def test_missing_path_is_a_clear_error(module_sqlite_backend, tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such"):
        publish(module_sqlite_backend.catalog, module_sqlite_backend.store, tmp_path / "no-such", name="x")


def test_pickle_only_peft_dir_rejected_without_unpickling(module_sqlite_backend, tmp_path):
    d = tmp_path / "peft"
    d.mkdir()
    (d / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    # unpickling this would create a file: the test proves nothing ever loads it
    marker = tmp_path / "pwned"
    (d / "adapter_model.bin").write_bytes(
        b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(AdapterFormatError, match="pickle"):
        publish(module_sqlite_backend.catalog, module_sqlite_backend.store, d, name="peft")
    assert not marker.exists()
    assert module_sqlite_backend.counts()["adapters"] == 0


def test_directory_without_peft_config_rejected(module_sqlite_backend, tmp_path):
    with pytest.raises(AdapterFormatError, match="adapter_config.json"):
        publish(module_sqlite_backend.catalog, module_sqlite_backend.store, tmp_path, name="dir")


def test_peft_dir_is_converted_losslessly(backend, tmp_path):
    from blob_fixtures import real_adapter

    from zoo.adapter import Adapter

    native, _ = real_adapter(tmp_path / "native.safetensors", seed=1)
    peft_dir = Adapter.load(native).to_peft(tmp_path / "peft")
    expected = Adapter.from_peft(peft_dir)
    result = publish(backend.catalog, backend.store, peft_dir, name="from-peft")
    assert result.digest == expected.digest
    assert result.adapter["unshared_r"] == result.adapter["r"]  # stored as PRoLoRA with u = r
    assert backend.blob_digests() == {expected.digest}


def test_errors_are_zoo_errors(module_sqlite_backend, tmp_path):
    path, digest = write_adapter(tmp_path / "a.safetensors")
    with pytest.raises(ZooError):
        publish(module_sqlite_backend.catalog, module_sqlite_backend.store, path, name="../x")
    assert sha256_path(path) == digest  # the input file is untouched


def test_publishing_bytes_matches_publishing_the_file(backend, tmp_path):
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=11)
    from_memory = publish(backend.catalog, backend.store, path.read_bytes(), name="mem",
                          tags=["t"], aliases=["prod"], job_id="job-mem")
    assert from_memory.uploaded and from_memory.digest == digest
    assert from_memory.adapter["tags"] == ["t"] and from_memory.adapter["aliases"] == ["mem@prod"]
    assert backend.store.hash_blob(digest) == (digest, path.stat().st_size)
    again = publish(backend.catalog, backend.store, path, name="mem", job_id="job-mem")
    assert again.id == from_memory.id and not again.uploaded


@pytest.mark.parametrize("cut", [1, 100])
def test_publishing_bytes_rejects_truncated_or_padded_bytes(module_sqlite_backend, tmp_path, cut):
    path, _ = write_adapter(tmp_path / "a.safetensors", seed=12)
    data = path.read_bytes()
    for bad in (data[:-cut], data + b"\0" * cut):
        with pytest.raises(AdapterFormatError, match="header describes"):
            publish(module_sqlite_backend.catalog, module_sqlite_backend.store, bad, name="bad")
    assert module_sqlite_backend.counts()["adapters"] == 0
    assert module_sqlite_backend.blob_digests() == set()
