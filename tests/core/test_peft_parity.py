"""Degenerate PRoLoRA equals PEFT LoRA; PEFT exports load in PEFT with the same logits."""

from __future__ import annotations

import copy

import peft  # a dev dependency: when it is missing these tests fail, never skip
import pytest
import torch
from core_models import randomize_adapter, tiny_bert_cls, tiny_gpt2, tiny_llama

import zoo


def peft_lora(model, r, alpha, targets, fan_in_fan_out=False):
    cfg = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0,
                          fan_in_fan_out=fan_in_fan_out)
    return peft.get_peft_model(model, cfg).eval()


@pytest.mark.parametrize("u, m, n", [(4, 3, 2), (1, 1, 1), (0, 1, 1)])
def test_degenerate_cases_equal_peft_lora(tokens, u, m, n):
    """u = r (nothing shared) or m = n = 1: PRoLoRA is plain LoRA with A = [A0; A_u]."""
    targets = ("q_proj", "v_proj", "up_proj")
    ours = tiny_llama()
    theirs = peft_lora(tiny_llama(), 4, 16, targets)
    cfg = zoo.PRoLoRAConfig(r=4, unshared_r=u, share_a=m, share_b=n, alpha=16,
                            target_modules=targets)
    zoo.attach(ours, cfg)
    randomize_adapter(ours)
    adapter = zoo.extract(ours, base_model="tiny")
    with torch.no_grad():
        for path, (a, b) in adapter.expand().items():
            layer = theirs.base_model.model.get_submodule(path)
            layer.lora_A["default"].weight.copy_(a)
            layer.lora_B["default"].weight.copy_(b)
    torch.testing.assert_close(ours(tokens).logits, theirs(tokens).logits, rtol=1e-5, atol=1e-5)


def _export_and_reload(adapter, fresh_base, tmp_path):
    out = adapter.to_peft(tmp_path / "peft")
    assert (out / "adapter_config.json").is_file()
    return peft.PeftModel.from_pretrained(fresh_base, str(out)).eval()


def test_export_llama(tmp_path, tokens):
    model = zoo.attach(tiny_llama(), zoo.PRoLoRAConfig(
        r=8, unshared_r=1, share_a=7, share_b=5, target_modules=r".*\.(q|k|v|o|gate|up|down)_proj"))
    randomize_adapter(model)
    adapter = zoo.extract(model, base_model="tiny-llama")
    loaded = _export_and_reload(adapter, tiny_llama(), tmp_path)
    torch.testing.assert_close(loaded(tokens).logits, model(tokens).logits, rtol=1e-5, atol=1e-5)


def test_export_gpt2_conv1d(tmp_path, tokens):
    model = zoo.attach(tiny_gpt2(), zoo.PRoLoRAConfig(
        r=6, unshared_r=2, share_a=3, share_b=4, target_modules=["c_attn", "c_fc"]))
    randomize_adapter(model)
    adapter = zoo.extract(model, base_model="tiny-gpt2")
    assert {m.kind for m in adapter.config.modules.values()} == {"conv1d"}
    loaded = _export_and_reload(adapter, tiny_gpt2(), tmp_path)
    import json

    assert json.loads((tmp_path / "peft" / "adapter_config.json").read_text())["fan_in_fan_out"]
    torch.testing.assert_close(loaded(tokens).logits, model(tokens).logits, rtol=1e-5, atol=1e-5)


def test_export_seq_cls_with_head(tmp_path, tokens):
    model = zoo.attach(tiny_bert_cls(), zoo.PRoLoRAConfig(
        r=4, unshared_r=1, share_a=2, share_b=2, target_modules=["query", "value"],
        modules_to_save=("classifier",)))
    randomize_adapter(model)  # includes the (trainable) classifier head
    adapter = zoo.extract(model, base_model="tiny-bert")
    assert adapter.config.task == "seq-cls"
    assert "saved.classifier.weight" in adapter.tensors
    loaded = _export_and_reload(adapter, tiny_bert_cls(), tmp_path)
    torch.testing.assert_close(loaded(tokens).logits, model(tokens).logits, rtol=1e-5, atol=1e-5)


def test_import_peft_is_lossless(tmp_path, tokens):
    theirs = peft_lora(tiny_llama(), 4, 8, ("q_proj", "down_proj"))
    randomize_adapter(theirs)
    theirs.save_pretrained(tmp_path / "p")
    adapter = zoo.Adapter.from_peft(tmp_path / "p")
    assert adapter.config.unshared_r == adapter.config.r == 4
    ours = zoo.attach(tiny_llama(), adapter)
    torch.testing.assert_close(ours(tokens).logits, theirs(tokens).logits, rtol=1e-5, atol=1e-5)
    # and back out again: the export holds the very same tensors
    back = zoo.Adapter.from_peft(adapter.to_peft(tmp_path / "again"))
    assert back.to_bytes() == adapter.to_bytes()


def test_merged_model_matches_attached(tokens):
    model = zoo.attach(tiny_llama(), zoo.PRoLoRAConfig(r=4, share_a=2, share_b=3,
                                                       target_modules=["q_proj", "o_proj"]))
    randomize_adapter(model)
    want = model(tokens).logits
    adapter = zoo.extract(model, base_model="tiny")
    merged = adapter.merge_into(tiny_llama())
    assert not any(type(m).__name__ == "PRoLoRALinear" for m in merged.modules())
    torch.testing.assert_close(merged(tokens).logits, want, rtol=1e-5, atol=1e-5)


def test_detach_restores_base_exactly(tokens):
    base = tiny_bert_cls()
    reference = copy.deepcopy(base.state_dict())
    want = base(tokens).logits
    zoo.attach(base, zoo.PRoLoRAConfig(target_modules=["query"], modules_to_save=("classifier",)))
    randomize_adapter(base)
    zoo.detach(base)
    for k, v in base.state_dict().items():
        assert torch.equal(v, reference[k]), k
    torch.testing.assert_close(base(tokens).logits, want)
    assert all(p.requires_grad for p in base.parameters())
