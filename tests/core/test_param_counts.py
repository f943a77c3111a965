"""Trainable parameter counts equal the formula and reproduce the paper's LLaMA-2-7B figures."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.config import trainable_params

SEVEN = r".*\.(q|k|v|o|gate|up|down)_proj"


def llama2_7b_on_meta():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)
    with torch.device("meta"):
        return LlamaForCausalLM(cfg)


def count_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("r, u, m, n, expected", [
    (8, 8, 1, 1, 19_988_480),   # LoRA r=8 on all seven projections
    (8, 1, 7, 7, 4_999_520),    # PRoLoRA r=8, u=1, m=n=7: the budget of LoRA r=2
])
def test_llama2_7b_counts_reproduce_the_paper(r, u, m, n, expected):
    model = zoo.attach(llama2_7b_on_meta(), zoo.PRoLoRAConfig(
        r=r, unshared_r=u, share_a=m, share_b=n, target_modules=SEVEN))
    assert count_trainable(model) == expected


def test_lora_r2_budget_matches_prolora():
    model = zoo.attach(llama2_7b_on_meta(), zoo.PRoLoRAConfig(
        r=2, unshared_r=2, share_a=1, share_b=1, target_modules=SEVEN))
    assert count_trainable(model) == 4_997_120  # LoRA r=2: the paper's "5.00M"


@pytest.mark.parametrize("h, o, r, u, m, n", [(10, 7, 5, 2, 3, 2), (64, 64, 8, 0, 2, 2),
                                              (33, 17, 4, 4, 5, 4), (9, 100, 6, 1, 9, 7)])
def test_layer_count_equals_formula(h, o, r, u, m, n):
    cfg = zoo.PRoLoRAConfig(r=r, unshared_r=u, share_a=m, share_b=n, target_modules=("lin",))
    model = torch.nn.Sequential()
    model.add_module("lin", torch.nn.Linear(h, o))
    zoo.attach(model, cfg)
    want = trainable_params(h, o, r=r, unshared_r=u, share_a=m, share_b=n)
    assert count_trainable(model) == want
    assert zoo.extract(model, base_model="x", task="causal-lm").num_params == want
