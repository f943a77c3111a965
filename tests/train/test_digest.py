"""base_model_digest: stable, path-independent, sensitive to config and shapes, and cheap."""

from __future__ import annotations

import json
import shutil

import pytest
from train_helpers import make_tokenizer, tiny_llama

from zoo.digest import SAMPLE_BYTES, base_model_digest, describe_directory
from zoo.errors import ConfigError
from zoo.safetensors_io import read_header


def test_stable_and_independent_of_location(llama_dir, tmp_path):
    first = base_model_digest(llama_dir)
    assert first == base_model_digest(str(llama_dir))
    assert len(first) == 64 and int(first, 16) >= 0
    copy = tmp_path / "copy"
    shutil.copytree(llama_dir, copy)
    assert base_model_digest(copy) == first


def test_resaving_the_same_model_gives_the_same_digest(tmp_path):
    tok = make_tokenizer("llama")
    tiny_llama(tok).save_pretrained(tmp_path / "a")
    tiny_llama(tok).save_pretrained(tmp_path / "b")
    assert base_model_digest(tmp_path / "a") == base_model_digest(tmp_path / "b")


def _edit_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


def test_config_changes_count_volatile_keys_do_not(llama_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(llama_dir, copy)
    base = base_model_digest(copy)
    _edit_config(copy, transformers_version="9.9.9", _name_or_path="elsewhere")
    assert base_model_digest(copy) == base
    _edit_config(copy, rope_theta=1234.0)
    assert base_model_digest(copy) != base


def test_tensor_shape_change_changes_the_digest(tmp_path):
    tok = make_tokenizer("llama")
    tiny_llama(tok, hidden=32).save_pretrained(tmp_path / "a")
    tiny_llama(tok, hidden=64).save_pretrained(tmp_path / "b")
    shutil.copy(tmp_path / "a" / "config.json", tmp_path / "b" / "config.json")  # same config
    assert base_model_digest(tmp_path / "a") != base_model_digest(tmp_path / "b")


def test_cheap_only_sampled_weight_bytes_are_read(tmp_path):
    """A weight byte outside the samples does not change the digest (weights are not hashed
    in full); one inside the first sample does, and so does any header change."""
    import torch
    from safetensors.torch import save_file

    root = tmp_path / "m"
    root.mkdir()
    (root / "config.json").write_text('{"model_type": "llama"}')
    save_file({"w": torch.zeros(1_000_000)}, str(root / "model.safetensors"))  # 4 MB
    base = base_model_digest(root)
    _, _, data_start = read_header(root / "model.safetensors")
    size = (root / "model.safetensors").stat().st_size

    def flip(offset: int) -> str:
        with (root / "model.safetensors").open("r+b") as fh:
            fh.seek(offset)
            old = fh.read(1)
            fh.seek(offset)
            fh.write(bytes([old[0] ^ 0xFF]))
        try:
            return base_model_digest(root)
        finally:
            with (root / "model.safetensors").open("r+b") as fh:
                fh.seek(offset)
                fh.write(old)

    assert flip(SAMPLE_BYTES + 100) == base  # between the first and second sample
    assert flip(size // 2 + SAMPLE_BYTES * 2 + 7) == base  # mid-file gap (not a sample)
    assert flip(data_start + 10) != base  # inside the first sample
    assert base_model_digest(root) == base
    files = describe_directory(root)["files"]
    assert files[0]["name"] == "model.safetensors" and files[0]["size"] == size
    assert files[0]["tensors"]["w"][:2] == ["F32", [1_000_000]]


def test_in_memory_model_digest():
    tok = make_tokenizer("llama")
    a, b = tiny_llama(tok, hidden=32), tiny_llama(tok, hidden=32)
    assert base_model_digest(a) == base_model_digest(b)
    assert base_model_digest(a) != base_model_digest(tiny_llama(tok, hidden=64))
    assert base_model_digest(a.to(dtype=__import__("torch").bfloat16)) != base_model_digest(b)


def test_bad_paths(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        base_model_digest(tmp_path / "missing")
    with pytest.raises(ConfigError, match="has no config.json"):
        base_model_digest(tmp_path)
