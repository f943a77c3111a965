"""The pull protocol: verified parallel downloads, atomic placement, skip of verified files,
and corruption (flipped byte, truncation, missing blob) caught with a message naming the
adapter and its digest, on a local store and on S3."""

from __future__ import annotations

import hashlib
from pathlib import Path

import blob_fixtures as bf
import pytest
from blob_fixtures import sha256_path, write_adapter

from zoo.errors import ConfigError, IntegrityError, NotFoundError
from zoo.storage.publish import publish
from zoo.storage.pull import pull

# shared fixtures (tests/storage/blob_fixtures.py)
backend = bf.backend
s3_env = bf.s3_env
sqlite_backend = bf.sqlite_backend


def _publish_many(b, tmp_path, n, *, tag=None):
    out = []
    for i in range(n):
        path, digest = write_adapter(tmp_path / "src" / f"a{i}.safetensors", seed=100 + i)
        res = publish(b.catalog, b.store, path, name=f"adapter-{i}", tags=[tag] if tag else [])
        out.append((res, digest))
    return out


def _listing(d: Path) -> list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*"))


def test_pull_by_tag_is_byte_identical(backend, tmp_path):
    published = _publish_many(backend, tmp_path, 5, tag="prod")
    _publish_many_untagged = publish(
        backend.catalog, backend.store,
        write_adapter(tmp_path / "x.safetensors", seed=999)[0], name="other")
    events = []
    result = pull(backend.catalog, backend.store, tag="prod", out_dir=tmp_path / "out",
                  workers=4, progress=lambda *e: events.append(e))
    assert result.downloaded == 5 and result.skipped == 0
    names = _listing(tmp_path / "out")
    assert names == sorted(f"adapter-{i}-{r.id}.safetensors" for i, (r, _) in
                           enumerate(published))
    for pulled in result.adapters:
        assert sha256_path(Path(pulled.path)) == pulled.digest
    assert {p.digest for p in result.adapters} == {d for _, d in published}
    assert _publish_many_untagged.id not in {p.id for p in result.adapters}
    assert events[0] == (0, 5, 0) and events[-1][:2] == (5, 5)


def test_pull_by_refs_and_skip_verified(sqlite_backend, tmp_path):
    (r0, d0), (r1, _) = _publish_many(sqlite_backend, tmp_path, 2)
    out = tmp_path / "out"
    first = pull(sqlite_backend.catalog, sqlite_backend.store, [r0.id, r1.id[:10]], out_dir=out)
    assert first.downloaded == 2
    again = pull(sqlite_backend.catalog, sqlite_backend.store, [r0.id, r1.id], out_dir=out)
    assert again.skipped == 2 and again.downloaded == 0
    # a locally damaged file is not trusted: it is re-downloaded and replaced
    target = Path(first.adapters[0].path)
    target.write_bytes(b"damaged")
    third = pull(sqlite_backend.catalog, sqlite_backend.store, [r0.id], out_dir=out)
    assert third.downloaded == 1 and sha256_path(target) == d0


def _corrupt(b, digest: str, how: str) -> None:
    """Damage the stored blob behind the zoo's back (local file or S3 object via boto3)."""
    if b.kind == "sqlite-local":
        data = b.store.path_for(digest).read_bytes()
    else:
        key = b.store.key_for(digest)
        data = b.store.client.get_object(Bucket=b.store.bucket, Key=key)["Body"].read()
    if how == "flip":
        i = len(data) // 2
        data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
    else:
        data = data[: len(data) - 100]
    if b.kind == "sqlite-local":
        b.store.path_for(digest).write_bytes(data)
    else:
        b.store.client.put_object(Bucket=b.store.bucket, Key=b.store.key_for(digest), Body=data)


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_corrupt_blob_fails_naming_adapter_and_digest(backend, tmp_path, how):
    published = _publish_many(backend, tmp_path, 4, tag="prod")
    bad, bad_digest = published[2]
    _corrupt(backend, bad_digest, how)
    out = tmp_path / "out"
    with pytest.raises(IntegrityError) as info:
        pull(backend.catalog, backend.store, tag="prod", out_dir=out, workers=3)
    msg = str(info.value)
    assert bad.id in msg and "adapter-2" in msg and bad_digest in msg
    assert ("truncated" in msg) == (how == "truncate")
    # nothing partial: no temp files, no file for the bad adapter; others are complete
    listing = _listing(out)
    assert not any("incomplete" in n or n.startswith(".") for n in listing)
    assert not any(bad.id in n for n in listing)
    for name in listing:
        digest = sha256_path(out / name)
        assert digest in {d for _, d in published} and digest != bad_digest


def test_missing_blob_names_the_adapter(sqlite_backend, tmp_path):
    ((res, digest),) = _publish_many(sqlite_backend, tmp_path, 1)
    sqlite_backend.store.delete(digest)
    with pytest.raises(IntegrityError, match=f"{res.id}.*{digest}.*missing"):
        pull(sqlite_backend.catalog, sqlite_backend.store, [res.id], out_dir=tmp_path / "o")
    assert _listing(tmp_path / "o") == []


def test_unknown_ref_and_bad_arguments(sqlite_backend, tmp_path):
    _publish_many(sqlite_backend, tmp_path, 1)
    with pytest.raises(NotFoundError):
        pull(sqlite_backend.catalog, sqlite_backend.store, ["zzzzzzzz"], out_dir=tmp_path / "o")
    with pytest.raises(NotFoundError):
        pull(sqlite_backend.catalog, sqlite_backend.store, ["nobody@prod"],
             out_dir=tmp_path / "o")
    with pytest.raises(NotFoundError):
        pull(sqlite_backend.catalog, sqlite_backend.store, tag="no-such-tag",
             out_dir=tmp_path / "o")
    with pytest.raises(ConfigError):
        pull(sqlite_backend.catalog, sqlite_backend.store, out_dir=tmp_path / "o")
    with pytest.raises(ConfigError):
        pull(sqlite_backend.catalog, sqlite_backend.store, tag="x", out_dir=tmp_path / "o",
             format="onnx")
    assert not (tmp_path / "o").exists() or _listing(tmp_path / "o") == []


def test_pull_peft_round_trips_losslessly(backend, tmp_path):
    from blob_fixtures import real_adapter

    from zoo.adapter import Adapter

    native, digest = real_adapter(tmp_path / "n.safetensors", seed=3)
    res = publish(backend.catalog, backend.store, native, name="real")
    out = tmp_path / "out"
    result = pull(backend.catalog, backend.store, [res.id], out_dir=out, format="peft")
    d = Path(result.adapters[0].path)
    assert d.name == f"real-{res.id}"
    assert (d / "adapter_config.json").is_file() and (d / "adapter_model.safetensors").is_file()
    expected = tmp_path / "expected-peft"
    Adapter.load(native).to_peft(expected)
    assert sha256_path(d / "adapter_model.safetensors") == sha256_path(
        expected / "adapter_model.safetensors")
    again = pull(backend.catalog, backend.store, [res.id], out_dir=out, format="peft")
    assert again.skipped == 1
    assert not any(p.name.endswith(".incomplete") for p in out.iterdir())
    # native of the same adapter: byte-identical to what was pushed
    nat = pull(backend.catalog, backend.store, [res.id], out_dir=out, format="native")
    assert hashlib.sha256(Path(nat.adapters[0].path).read_bytes()).hexdigest() == digest


def test_pull_merged_writes_a_loadable_model(sqlite_backend, tmp_path):
    import torch
    from blob_fixtures import real_adapter
    from transformers import AutoModelForCausalLM

    import zoo
    from zoo.adapter import Adapter
    from zoo.storage.bases import register_location

    native, _ = real_adapter(tmp_path / "n.safetensors", seed=4, base_dir=tmp_path / "base")
    res = publish(sqlite_backend.catalog, sqlite_backend.store, native, name="m")
    with pytest.raises(NotFoundError, match="has no registered location; run `zoo base add"):
        pull(sqlite_backend.catalog, sqlite_backend.store, [res.id], out_dir=tmp_path / "out",
             format="merged")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    register_location(sqlite_backend.catalog, sqlite_backend.store, "tiny-llama",
                      str(tmp_path / "base"))
    result = pull(sqlite_backend.catalog, sqlite_backend.store, [res.id],
                  out_dir=tmp_path / "out", format="merged")
    merged_dir = Path(result.adapters[0].path)
    assert merged_dir.name == f"m-{res.id}-merged"
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base").eval()
    zoo.attach(base, Adapter.load(native))
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, base(ids).logits, atol=1e-4, rtol=1e-4)
