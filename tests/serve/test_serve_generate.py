"""Mixed-adapter batched generation equals each adapter alone attached by zoo.attach."""

from __future__ import annotations

import random

import pytest
import torch
from servekit import LLAMA_TARGETS, attached_greedy, mixed_adapters, tiny_gpt2, tiny_llama

from zoo.errors import ConfigError
from zoo.generate import GenRequest, SamplingParams, generate

STEPS = 6


def prompts(n: int, vocab: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[1] + [rng.randrange(3, vocab) for _ in range(rng.randint(1, 11))] for _ in range(n)]


@pytest.fixture(scope="module")
def llama_zoo():
    model = tiny_llama()
    adapters = mixed_adapters(model, 20, targets=LLAMA_TARGETS)
    configs = {(a.config.r, a.config.unshared_r, a.config.share_a, a.config.share_b,
                tuple(a.config.modules)) for a in adapters}
    assert len(configs) >= 15  # really mixed configs
    return model, adapters


def check_against_attach(model, requests, completions, eos):
    for req, got in zip(requests, completions, strict=True):
        tokens, logits = attached_greedy(model, req.adapter, list(req.prompt_ids),
                                         req.params.max_tokens, eos)
        assert got.token_ids == tokens
        assert len(got.logits) == len(logits)
        for mine, ref in zip(got.logits, logits, strict=True):
            torch.testing.assert_close(mine, ref, atol=1e-4, rtol=0)


def test_mixed_batch_of_20_adapters_matches_attach(llama_zoo):
    model, adapters = llama_zoo
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ps = prompts(24, model.config.vocab_size)
    slots = list(range(20)) + [None, 3, 3, None]  # every adapter, base rows, a repeated adapter
    requests = [GenRequest(p, None if s is None else adapters[s], SamplingParams(max_tokens=STEPS))
                for p, s in zip(ps, slots, strict=True)]
    random.Random(1).shuffle(requests)  # rows of one adapter need not be adjacent
    completions = generate(model, requests, return_logits=True)
    assert len({len(r.prompt_ids) for r in requests}) > 5  # different prompt lengths
    check_against_attach(model, requests, completions, eos=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(type(m).__name__.startswith("Multi") for m in model.modules())


@pytest.mark.parametrize("mode", ["bmm", "loop"])
def test_gpt2_conv1d_mixed_batch_matches_attach(mode):
    model = tiny_gpt2()
    adapters = mixed_adapters(model, 5, targets=("c_attn", "c_proj", "c_fc"), seed=2)
    ps = prompts(7, model.config.vocab_size, seed=2)
    requests = [GenRequest(p, adapters[i % 5] if i < 6 else None, SamplingParams(max_tokens=4))
                for i, p in enumerate(ps)]
    check_against_attach(model, requests, generate(model, requests, mode=mode, return_logits=True),
                         eos=2)


def test_sampling_is_per_request_and_seeded(llama_zoo):
    model, adapters = llama_zoo
    p = prompts(1, model.config.vocab_size, seed=5)[0]
    params = SamplingParams(max_tokens=8, temperature=0.9, top_p=0.9, seed=7)
    alone = generate(model, [GenRequest(p, adapters[4], params)])[0].token_ids
    crowd = [GenRequest(q, adapters[i], SamplingParams(max_tokens=8, temperature=1.0, seed=i))
             for i, q in enumerate(prompts(6, model.config.vocab_size, seed=9))]
    mixed = generate(model, [*crowd[:3], GenRequest(p, adapters[4], params), *crowd[3:]])
    assert mixed[3].token_ids == alone  # the same seed gives the same tokens in any batch
    other = generate(model, [GenRequest(p, adapters[4], SamplingParams(
        max_tokens=8, temperature=0.9, top_p=0.9, seed=8))])[0].token_ids
    greedy = generate(model, [GenRequest(p, adapters[4], SamplingParams(max_tokens=8))])[0].token_ids
    assert other != alone or greedy != alone  # the seed matters (not greedy in disguise)


def test_tiny_top_p_is_greedy(llama_zoo):
    model, adapters = llama_zoo
    p = prompts(1, model.config.vocab_size, seed=6)[0]
    nucleus = generate(model, [GenRequest(p, adapters[1], SamplingParams(
        max_tokens=6, temperature=1.5, top_p=1e-6, seed=3))])[0]
    greedy = generate(model, [GenRequest(p, adapters[1], SamplingParams(max_tokens=6))])[0]
    assert nucleus.token_ids == greedy.token_ids


class CharTok:
    """Decodes token t as the letter chr(ord('a') + t % 26): enough for stop strings."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(ord("a") + t % 26) for t in ids)


def test_stop_string_cuts_the_text(llama_zoo):
    model, adapters = llama_zoo
    p = prompts(1, model.config.vocab_size, seed=3)[0]
    full = generate(model, [GenRequest(p, adapters[0], SamplingParams(max_tokens=8))],
                    tokenizer=CharTok())[0]
    assert full.finish_reason == "length" and len(full.text) == 8
    stop = full.text[3:5]
    cut = generate(model, [GenRequest(p, adapters[0], SamplingParams(max_tokens=8, stop=(stop,)))],
                   tokenizer=CharTok())[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[:full.text.index(stop)]


@pytest.mark.parametrize("bad", [dict(max_tokens=0), dict(temperature=-1), dict(top_p=0),
                                 dict(seed="x"), dict(stop=("",)), dict(max_tokens=True)])
def test_bad_sampling_params_are_refused(bad):
    with pytest.raises(ConfigError):
        SamplingParams(**bad)


def test_stop_without_tokenizer_is_refused(llama_zoo):
    model, _ = llama_zoo
    with pytest.raises(ConfigError, match="tokenizer"):
        generate(model, [GenRequest([1, 5], None, SamplingParams(stop=("x",)))])


def test_on_token_streams_each_request_its_tokens(llama_zoo):
    model, adapters = llama_zoo
    ps = prompts(5, model.config.vocab_size, seed=11)
    requests = [GenRequest(p, adapters[i] if i % 2 else None, SamplingParams(max_tokens=4 + i))
                for i, p in enumerate(ps)]
    seen: dict[int, list[int]] = {i: [] for i in range(5)}
    out = generate(model, requests, on_token=lambda i, t: seen[i].append(t))
    assert [seen[i] for i in range(5)] == [c.token_ids for c in out]
