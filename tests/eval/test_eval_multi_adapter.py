"""The multi-adapter layer equals attaching each adapter alone with ``zoo.attach``."""

from __future__ import annotations

import random

import pytest
import torch
from evalkit import (
    BERT_TARGETS,
    LLAMA_TARGETS,
    make_adapter,
    random_config,
    tiny_bert_cls,
    tiny_llama,
)

import zoo
from zoo.errors import AdapterMismatchError, ConfigError
from zoo.multi_adapter import MultiAdapterModel, NotBatchableError


def single_logits(model, adapter, input_ids, attention_mask):
    zoo.attach(model, adapter)
    try:
        with torch.no_grad():
            return model(input_ids=input_ids, attention_mask=attention_mask).logits
    finally:
        zoo.detach(model)


def check_group(model, adapters, slots, *, mode, vocab):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(4, vocab, (len(slots), 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # a right-padded row
    with MultiAdapterModel(model, adapters, mode=mode) as multi, torch.no_grad(), multi.rows(slots):
        batched = model(input_ids=ids, attention_mask=mask).logits
    for n, slot in enumerate(slots):
        alone = single_logits(model, adapters[slot], ids[n:n + 1], mask[n:n + 1])
        torch.testing.assert_close(batched[n:n + 1], alone, atol=2e-5, rtol=1e-4)
    return batched


@pytest.fixture(scope="module")
def llama_group():
    model = tiny_llama()
    rng = random.Random(0)
    adapters = [make_adapter(model, random_config(rng, LLAMA_TARGETS), seed=i)
                for i in range(22)]
    assert len({(a.config.r, a.config.unshared_r, a.config.share_a,
                 tuple(a.config.modules)) for a in adapters}) > 15  # really mixed
    return model, adapters


@pytest.fixture(scope="module")
def bert_group():
    model = tiny_bert_cls()
    rng = random.Random(1)
    adapters = [make_adapter(model, random_config(rng, BERT_TARGETS, modules_to_save=("classifier",)),
                             seed=100 + i) for i in range(21)]
    return model, adapters


@pytest.mark.parametrize("mode", ["bmm", "loop"])
def test_causal_lm_mixed_group_equals_attach(llama_group, mode):
    model, adapters = llama_group
    before = {k: v.clone() for k, v in model.state_dict().items()}
    vocab = model.config.vocab_size
    check_group(model, adapters, list(range(22)), mode=mode, vocab=vocab)  # one row each
    check_group(model, adapters, [3, 3, 0, 0, 7, 7, 21, 21], mode=mode, vocab=vocab)  # equal segs
    check_group(model, adapters, [5, 5, 5, 2, 9, 9, 1], mode=mode, vocab=vocab)  # unequal segs
    # detach restored the base exactly
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(type(m).__name__.startswith("Multi") for m in model.modules())


@pytest.mark.parametrize("mode", ["bmm", "loop"])
def test_seq_cls_heads_differ_per_row(bert_group, mode):
    model, adapters = bert_group
    slots = [0, 4, 4, 20, 11, 11, 11, 2]
    batched = check_group(model, adapters, slots, mode=mode, vocab=model.config.vocab_size)
    assert batched.shape == (len(slots), 3)
    assert not torch.allclose(batched[0], batched[1])  # different heads, different logits


def test_rows_required_and_slots_checked(llama_group):
    model, adapters = llama_group
    ids = torch.ones(2, 4, dtype=torch.long)
    with MultiAdapterModel(model, adapters[:2]) as multi:
        with pytest.raises(ConfigError, match="without rows"):
            model(input_ids=ids)
        with pytest.raises(ConfigError, match="out of range"), multi.rows([0, 5]):
            pass


def test_misfitting_adapter_rejected_before_touching_model(llama_group):
    model, adapters = llama_group
    other = tiny_llama()
    from evalkit import tiny_llama_config
    from transformers import LlamaForCausalLM

    wide = LlamaForCausalLM(tiny_llama_config(hidden_size=64)).eval()
    bad = make_adapter(wide, random_config(random.Random(5), LLAMA_TARGETS), seed=9)
    with pytest.raises(AdapterMismatchError, match="module"):
        MultiAdapterModel(other, [adapters[0], bad])
    assert not any(type(m).__name__.startswith("Multi") for m in other.modules())


def test_unbatchable_saved_module_is_reported(llama_group):
    model, _ = llama_group
    cfg = random_config(random.Random(2), LLAMA_TARGETS, modules_to_save=("norm",))
    adapter = make_adapter(model, cfg, seed=4)
    with pytest.raises(NotBatchableError, match="norm"):
        MultiAdapterModel(model, [adapter])
