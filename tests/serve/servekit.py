"""Tiny real models and mixed-config adapters for the serving tests (built from configs, offline)."""

from __future__ import annotations

import random
from typing import Any

import torch

import zoo
from zoo.config import PRoLoRAConfig

LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def tiny_llama(seed: int = 0, vocab: int = 61) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2(seed: int = 0, vocab: int = 61) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab, n_embd=48, n_layer=2, n_head=4, n_positions=128,
                     bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


def mixed_adapters(model: Any, n: int, *, targets: tuple[str, ...], seed: int = 0,
                   scale: float = 0.3) -> list[zoo.Adapter]:
    """``n`` random-weight adapters of varied r / u / sharing / targets (distinct configs)."""
    from zoo.testing import random_adapter

    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = rng.choice([1, 2, 4, 6, 8])
        cfg = PRoLoRAConfig(r=r, unshared_r=rng.randint(0, r), share_a=rng.choice([1, 2, 3, 4]),
                            share_b=rng.choice([1, 2, 3, 4]), alpha=rng.choice([4.0, 8.0, 16.0]),
                            rotation=rng.random() < 0.8,
                            target_modules=tuple(rng.sample(targets, rng.randint(1, len(targets)))))
        out.append(random_adapter(model, cfg, base_model="tiny", seed=1000 * seed + i, scale=scale))
    return out


def attached_greedy(model: Any, adapter: zoo.Adapter | None, prompt: list[int], steps: int,
                    eos: int) -> tuple[list[int], list[torch.Tensor]]:
    """The reference: the adapter alone via zoo.attach, the prompt unpadded, no KV cache, a
    full forward per token; (tokens before EOS, logits of each step)."""
    if adapter is not None:
        zoo.attach(model, adapter)
    try:
        ids, tokens, logits = list(prompt), [], []
        with torch.no_grad():
            for _ in range(steps):
                last = model(input_ids=torch.tensor([ids])).logits[0, -1]
                logits.append(last.float())
                token = int(last.argmax())
                if token == eos:
                    break
                tokens.append(token)
                ids.append(token)
        return tokens, logits
    finally:
        if adapter is not None:
            zoo.detach(model)
