"""The CUDA path of serving (what a replica with num_gpus runs): the same code on a GPU.

fp32 on CUDA must give the tokens of the adapter attached alone; bf16 (what a replica loads
its base in on a GPU) must run mixed batches and stay close to the fp32 logits."""

from __future__ import annotations

import random

import pytest
import torch
from servekit import LLAMA_TARGETS, attached_greedy, mixed_adapters, tiny_llama

from zoo.adapter_bank import plain_lora
from zoo.generate import GenRequest, SamplingParams, generate

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def requests_for(adapters, vocab, n=12):
    rng = random.Random(0)
    return [GenRequest([1] + [rng.randrange(3, vocab) for _ in range(rng.randint(2, 12))],
                       None if i == n - 1 else adapters[i % len(adapters)],
                       SamplingParams(max_tokens=5)) for i in range(n)]


def test_cuda_fp32_mixed_batch_matches_attach():
    model = tiny_llama().to("cuda")
    adapters = [plain_lora(a) for a in mixed_adapters(model.cpu(), 8, targets=LLAMA_TARGETS)]
    model.to("cuda")
    reqs = requests_for(adapters, model.config.vocab_size)
    out = generate(model, reqs, return_logits=True)
    for req, got in zip(reqs, out, strict=True):
        tokens, logits = attached_greedy(model, req.adapter, list(req.prompt_ids), 5, eos=2)
        assert got.token_ids == tokens
        for mine, ref in zip(got.logits, logits, strict=True):
            torch.testing.assert_close(mine, ref.cpu(), atol=1e-3, rtol=1e-3)


def test_cuda_bf16_base_runs_mixed_batches_close_to_fp32():
    model = tiny_llama()
    adapters = mixed_adapters(model, 8, targets=LLAMA_TARGETS)
    reqs = requests_for(adapters, model.config.vocab_size)
    ref = generate(model.to("cuda"), reqs, return_logits=True)
    half = generate(model.to(torch.bfloat16), reqs, return_logits=True)
    for a, b in zip(ref, half, strict=True):
        assert len(b.token_ids) == 5 or b.finish_reason == "stop"
        torch.testing.assert_close(b.logits[0], a.logits[0], atol=0.1, rtol=0.05)
