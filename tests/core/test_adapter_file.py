"""The adapter file: docs/adapter-format.md, version 1, deterministic bytes, strict validation."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch
from core_models import randomize_adapter, tiny_bert_cls, tiny_llama

import zoo
from zoo.adapter_meta import read_adapter_header
from zoo.errors import AdapterFormatError, AdapterMismatchError, ConfigError
from zoo.safetensors_io import RawTensor, encode


def trained_adapter(seed=1, **cfg):
    cfg = {"r": 4, "unshared_r": 1, "share_a": 3, "share_b": 2,
           "target_modules": ["q_proj", "v_proj"], **cfg}
    model = zoo.attach(tiny_llama(), zoo.PRoLoRAConfig(**cfg))
    randomize_adapter(model, seed)
    return zoo.extract(model, base_model="tiny-llama", extra={"seed": seed})


def test_header_follows_the_format(tmp_path):
    adapter = trained_adapter()
    path = tmp_path / "a.safetensors"
    digest = adapter.save(path)
    header = read_adapter_header(path)
    cfg = header.config.to_dict()  # the JSON mapping in the file
    assert cfg["stride_a"] == 1 and cfg["stride_b"] == 1  # resolved: max(3 // 3, 1), max(3 // 2, 1)
    assert cfg["modules"]["model.layers.0.self_attn.q_proj"] == {
        "in_features": 48, "out_features": 48, "kind": "linear"}
    assert cfg["modules"]["model.layers.0.self_attn.v_proj"]["out_features"] == 24
    assert header.tensors["model.layers.0.self_attn.v_proj.B_shared"].shape == (12, 3)
    assert header.tensors["model.layers.0.self_attn.q_proj.A_shared"].shape == (3, 16)
    assert cfg["seed"] == 1  # producer fields are kept
    from safetensors import safe_open

    with safe_open(path, "pt") as f:  # the standard reader agrees
        meta = f.metadata()
        assert meta["format"] == "zoo.prolora" and meta["format_version"] == "1"
        assert meta["config"] == json.dumps(cfg, sort_keys=True, separators=(",", ":"))
        assert set(f.keys()) == set(adapter.tensors)
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest == adapter.digest


def test_bytes_are_deterministic(tmp_path):
    a, b = trained_adapter(seed=3), trained_adapter(seed=3)
    a.save(tmp_path / "1.safetensors")
    b.save(tmp_path / "2.safetensors")
    assert (tmp_path / "1.safetensors").read_bytes() == (tmp_path / "2.safetensors").read_bytes()
    again = zoo.Adapter.load(tmp_path / "1.safetensors")
    assert again.to_bytes() == a.to_bytes()
    assert trained_adapter(seed=4).digest != a.digest


def test_roundtrip_restores_outputs(tmp_path, tokens):
    cfg = zoo.PRoLoRAConfig(r=4, target_modules=["query", "value"], modules_to_save=("classifier",))
    model = zoo.attach(tiny_bert_cls(), cfg)
    randomize_adapter(model)
    want = model(tokens).logits
    zoo.extract(model, base_model="b").save(tmp_path / "a.safetensors")
    fresh = zoo.attach(tiny_bert_cls(), zoo.Adapter.load(tmp_path / "a.safetensors"))
    torch.testing.assert_close(fresh(tokens).logits, want)


def test_bf16_storage(tmp_path):
    model = zoo.attach(tiny_llama(), zoo.PRoLoRAConfig(target_modules=["q_proj"]))
    randomize_adapter(model)
    adapter = zoo.extract(model, base_model="x", dtype=torch.bfloat16)
    assert adapter.config.dtype == "bfloat16"
    adapter.save(tmp_path / "a.safetensors")
    loaded = zoo.Adapter.load(tmp_path / "a.safetensors")
    assert all(t.dtype == torch.bfloat16 for t in loaded.tensors.values())


# ---- bad input: one clear error naming the problem ---------------------------------------

@pytest.mark.parametrize("kwargs, needle", [
    ({"r": 0}, "r=0"), ({"r": -2}, "r=-2"), ({"r": 4, "unshared_r": 5}, "unshared_r=5"),
    ({"share_a": 0}, "share_a=0"), ({"share_b": -1}, "share_b=-1"), ({"alpha": 0}, "alpha=0"),
    ({"dropout": 1.5}, "dropout=1.5"), ({"init": "kaiming"}, "init='kaiming'"),
    ({"target_modules": []}, "target_modules"), ({"r": 2.5}, "r=2.5"),
])
def test_bad_config_values(kwargs, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        zoo.PRoLoRAConfig(**kwargs)


def test_share_larger_than_dimension():
    with pytest.raises(ConfigError, match="share_b=100 is larger than the dimension 24"):
        zoo.attach(tiny_llama(), zoo.PRoLoRAConfig(share_b=100, target_modules=["v_proj"]))


def test_targets_matching_nothing_lists_candidates():
    model = tiny_llama()
    with pytest.raises(ConfigError, match="matched no Linear/Conv1D module; candidates: .*q_proj"):
        zoo.attach(model, zoo.PRoLoRAConfig(target_modules=["query"]))
    assert not hasattr(model, "_zoo_attachment")  # nothing half-attached


def _rewrite(path, *, config=None, version="1", shapes=None):
    """A file written like ours but with a tampered header."""
    adapter = zoo.Adapter.load(path)
    cfg = config or adapter.config.to_dict()
    tensors = {k: RawTensor("F32", tuple(shapes.get(k, v.shape) if shapes else v.shape),
                            b"\0" * 4 * int(torch.Size(shapes.get(k, v.shape) if shapes
                                                       else v.shape).numel()))
               for k, v in adapter.tensors.items()}
    meta = {"format": "zoo.prolora", "format_version": version,
            "config": json.dumps(cfg, sort_keys=True)}
    path.write_bytes(encode(tensors, meta))


def test_wrong_shapes_rejected_naming_tensor(tmp_path):
    p = tmp_path / "a.safetensors"
    trained_adapter().save(p)
    key = "model.layers.1.self_attn.q_proj.A_shared"
    _rewrite(p, shapes={key: (3, 17)})
    want = r"q_proj.A_shared has shape \[3, 17\], config says \[3, 16\]"
    with pytest.raises(AdapterFormatError, match=want):
        zoo.Adapter.load(p)


def test_unknown_format_version(tmp_path):
    p = tmp_path / "a.safetensors"
    trained_adapter().save(p)
    _rewrite(p, version="2")
    with pytest.raises(AdapterFormatError, match="unknown format_version '2'"):
        zoo.Adapter.load(p)


def test_pickle_and_garbage_rejected(tmp_path):
    p = tmp_path / "evil.safetensors"
    p.write_bytes(pickle.dumps({"x": 1}, protocol=2))
    with pytest.raises(AdapterFormatError, match="never loads pickles"):
        zoo.Adapter.load(p)
    torch.save({"w": torch.ones(2)}, tmp_path / "t.pt")  # a zip file
    with pytest.raises(AdapterFormatError, match="not a safetensors file"):
        zoo.Adapter.load(tmp_path / "t.pt")
    (tmp_path / "g").write_bytes(struct.pack("<Q", 20) + b"{not json at all!!!}")
    with pytest.raises(AdapterFormatError, match="not a safetensors file"):
        zoo.Adapter.load(tmp_path / "g")


def test_truncated_file(tmp_path):
    p = tmp_path / "a.safetensors"
    trained_adapter().save(p)
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(AdapterFormatError, match="bytes"):
        zoo.Adapter.load(p)


def test_foreign_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(AdapterFormatError, match="unknown format None"):
        zoo.Adapter.load(tmp_path / "w.safetensors")


def test_adapter_for_another_base_is_rejected():
    adapter = trained_adapter()
    with pytest.raises(AdapterMismatchError, match="does not exist"):
        zoo.attach(tiny_bert_cls(), adapter)
    wider = tiny_llama(hidden_size=64)
    with pytest.raises(AdapterMismatchError, match=r"q_proj'.*48→48.*64→64"):
        zoo.attach(wider, adapter)
    assert not hasattr(wider, "_zoo_attachment")


def test_attach_twice_is_refused():
    model = zoo.attach(tiny_llama(), zoo.PRoLoRAConfig(target_modules=["q_proj"]))
    with pytest.raises(ConfigError, match="already attached"):
        zoo.attach(model, zoo.PRoLoRAConfig(target_modules=["v_proj"]))


def test_extracted_adapter_is_a_snapshot(tokens):
    """Extract copies: further training and detach (which restores the head) leave it intact."""
    cfg = zoo.PRoLoRAConfig(r=4, target_modules=["query"], modules_to_save=("classifier",))
    model = zoo.attach(tiny_bert_cls(), cfg)
    randomize_adapter(model)
    adapter = zoo.extract(model, base_model="b")
    digest = adapter.to_bytes()
    randomize_adapter(model, seed=9)
    zoo.detach(model)
    assert adapter.to_bytes() == digest


# ---- hostile headers: bounded, and refused with exit code 3 (docs/adapter-format.md) ---------

def _raw_file(header: dict, data: bytes = b"") -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


def test_deeply_nested_header_is_a_format_error_not_a_recursion_error(tmp_path):
    p = tmp_path / "deep.safetensors"
    nested = "[" * 100_000 + "]" * 100_000
    text = ('{"__metadata__":{"format":"zoo.prolora"},"x":' + nested + "}").encode()
    p.write_bytes(struct.pack("<Q", len(text)) + text)
    with pytest.raises(AdapterFormatError, match="nested more than"):
        zoo.Adapter.load(p)


def test_oversized_header_and_config_are_refused(tmp_path):
    from zoo.safetensors_io import MAX_HEADER_BYTES

    p = tmp_path / "big.safetensors"
    p.write_bytes(struct.pack("<Q", MAX_HEADER_BYTES + 8) + b" " * 64)
    with pytest.raises(AdapterFormatError, match="header is .* bytes; at most"):
        zoo.Adapter.load(p)
    good = tmp_path / "a.safetensors"
    trained_adapter().save(good)
    cfg = zoo.Adapter.load(good).config.to_dict()
    cfg["notes"] = "x" * (2 << 20)  # a 2 MB producer field: over the config cap
    _rewrite(good, config=cfg)
    with pytest.raises(AdapterFormatError, match="config is .* bytes; at most"):
        zoo.Adapter.load(good)


def test_config_dtype_must_match_the_tensors(tmp_path):
    p = tmp_path / "a.safetensors"
    trained_adapter().save(p)
    cfg = zoo.Adapter.load(p).config.to_dict()
    cfg["dtype"] = "bfloat16"  # the tensors are F32
    _rewrite(p, config=cfg)
    with pytest.raises(AdapterFormatError, match=r"is F32, but config dtype is bfloat16"):
        zoo.Adapter.load(p)


@pytest.mark.parametrize("entries, needle", [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, "overlaps another tensor"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, "leaves a gap"),
    ({"a": {"dtype": "F32", "shape": [-2, -1], "data_offsets": [0, 8]}}, "invalid shape"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, "invalid data_offsets"),
    ({"a": {"dtype": "F32", "shape": [True, 2], "data_offsets": [0, 8]}}, "invalid shape"),
])
def test_bad_byte_layouts_are_refused(tmp_path, entries, needle):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(_raw_file(entries, b"\0" * 16))
    with pytest.raises(AdapterFormatError, match=needle):
        zoo.Adapter.load(p)


@pytest.mark.parametrize("change, needle", [
    ({"modules": {"m": {"in_features": -4, "out_features": 4, "kind": "linear"}}},
     "invalid description"),
    ({"r": 10**30}, "invalid"),
    ({"share_a": 500}, "smaller than its sharing ratios"),
    ({"labels": "neg,pos"}, "labels"),
    ({"task": "vision"}, "task 'vision'"),
])
def test_bad_config_fields_are_refused_with_exit_code_3(tmp_path, change, needle):
    from zoo.adapter_config import AdapterConfig

    p = tmp_path / "a.safetensors"
    trained_adapter().save(p)
    cfg = {**zoo.Adapter.load(p).config.to_dict(), **change}
    with pytest.raises(AdapterFormatError, match=needle) as info:
        AdapterConfig.from_dict(cfg)
    assert info.value.exit_code == 3


def test_config_round_trips_to_the_same_bytes(tmp_path):
    """Reading a config and writing it back is the identity: producer fields, int alphas and
    module order survive, so a re-saved adapter keeps its digest."""
    p = tmp_path / "a.safetensors"
    digest = trained_adapter().save(p)
    again = zoo.Adapter.load(p)
    assert again.save(tmp_path / "b.safetensors") == digest
