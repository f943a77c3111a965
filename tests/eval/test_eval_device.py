"""Device selection for evaluation: CPU fp32 here; CUDA + bf16 through the same code on a GPU."""

from __future__ import annotations

import random

import pytest
import torch
from evalkit import LLAMA_TARGETS, char_tokenizer, make_adapter, random_config, write_lm_data

from zoo.batch_eval import evaluate_many, load_base_for, load_dataset


@pytest.fixture
def saved_base(tmp_path):
    from evalkit import tiny_llama

    model = tiny_llama()
    model.save_pretrained(str(tmp_path / "base"))
    char_tokenizer(tmp_path / "base")
    adapters = [make_adapter(model, random_config(random.Random(i), LLAMA_TARGETS), seed=i,
                             base_model=str(tmp_path / "base"), task="causal-lm")
                for i in range(4)]
    return tmp_path, adapters


def test_cpu_is_fp32_without_autocast(saved_base):
    tmp, adapters = saved_base
    model, tok, choice = load_base_for(adapters[0], tmp / "base", device="cpu")
    assert (choice.device, choice.autocast_dtype) == ("cpu", None)
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_matches_cpu(saved_base):
    tmp, adapters = saved_base
    data_path = write_lm_data(tmp / "lm.jsonl", 8)
    out = {}
    for device in ("cpu", "cuda"):
        model, tok, choice = load_base_for(adapters[0], tmp / "base", device=device)
        data = load_dataset("causal-lm", data_path, tok)
        out[device] = evaluate_many(model, tok, data, adapters, batch_size=8,
                                    autocast_dtype=choice.autocast_dtype)
    assert choice.device == "cuda" and choice.autocast_dtype == "bfloat16"
    for cpu, gpu in zip(out["cpu"], out["cuda"], strict=True):
        assert gpu.metrics["loss"] == pytest.approx(cpu.metrics["loss"], rel=3e-2)


def test_seq_cls_base_gets_the_adapters_head_size(tmp_path):
    from evalkit import BERT_TARGETS, tiny_bert_cls, write_cls_data

    base = tiny_bert_cls(num_labels=3)
    base.save_pretrained(str(tmp_path / "bert"))
    char_tokenizer(tmp_path / "bert")
    adapters = [make_adapter(base, random_config(random.Random(i), BERT_TARGETS,
                                                 modules_to_save=("classifier",)),
                             seed=i, base_model=str(tmp_path / "bert"), task="seq-cls")
                for i in range(3)]
    model, tok, choice = load_base_for(adapters[0], tmp_path / "bert")
    assert model.config.num_labels == 3 and choice.device in ("cpu", "cuda")
    data = load_dataset("seq-cls", write_cls_data(tmp_path / "cls.jsonl", 6), tok)
    results = evaluate_many(model, tok, data, adapters, batch_size=4,
                            autocast_dtype=choice.autocast_dtype)
    assert all(r.error is None and 0 <= r.metrics["accuracy"] <= 1 for r in results)
