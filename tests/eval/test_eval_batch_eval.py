"""Batched evaluation of many adapters equals ``zoo.evaluate.evaluate_adapter`` one by one."""

from __future__ import annotations

import random

import pytest
from evalkit import (
    BERT_TARGETS,
    LLAMA_TARGETS,
    char_tokenizer,
    make_adapter,
    random_config,
    tiny_bert_cls,
    tiny_llama,
    tiny_llama_config,
    write_cls_data,
    write_lm_data,
)

import zoo
from zoo.batch_eval import evaluate_many, load_dataset, parse_metrics, row_plan
from zoo.errors import ConfigError
from zoo.evaluate import evaluate_adapter


def alone(model, tok, adapter, task, path):
    zoo.attach(model, adapter)
    try:
        return evaluate_adapter(model, tok, task, path, batch_size=4)
    finally:
        zoo.detach(model)


def test_causal_lm_many_equals_one_by_one(tmp_path):
    from transformers import LlamaForCausalLM

    model, tok = tiny_llama(), char_tokenizer()
    path = write_lm_data(tmp_path / "lm.jsonl", 7)
    rng = random.Random(11)
    adapters = [make_adapter(model, random_config(rng, LLAMA_TARGETS), seed=i) for i in range(20)]
    wide = LlamaForCausalLM(tiny_llama_config(hidden_size=64)).eval()
    misfit = make_adapter(wide, random_config(rng, LLAMA_TARGETS), seed=99)
    adapters.insert(5, misfit)
    data = load_dataset("causal-lm", path, tok)
    seen = []
    results = evaluate_many(model, tok, data, adapters, batch_size=8, group_size=6,
                            on_result=seen.append)
    assert [r.index for r in results] == list(range(21)) and len(seen) == 21
    assert results[5].error and "module" in results[5].error and not results[5].metrics
    for i, adapter in enumerate(adapters):
        if i == 5:
            continue
        want = alone(model, tok, adapter, "causal-lm", path)
        got = results[i]
        assert got.error is None and got.examples == 7
        assert got.metrics["loss"] == pytest.approx(want["loss"], rel=1e-5)
        assert got.metrics["perplexity"] == pytest.approx(want["perplexity"], rel=1e-4)
        assert got.metrics["exact_match"] == want["exact_match"]
    assert len({round(r.metrics["loss"], 6) for r in results if r.metrics}) > 15


def test_seq_cls_many_equals_one_by_one(tmp_path):
    model, tok = tiny_bert_cls(num_labels=3), char_tokenizer()
    path = write_cls_data(tmp_path / "cls.jsonl", 9)
    rng = random.Random(12)
    adapters = [make_adapter(model, random_config(rng, BERT_TARGETS, modules_to_save=("classifier",)),
                             seed=50 + i) for i in range(20)]
    data = load_dataset("seq-cls", path, tok)
    results = evaluate_many(model, tok, data, adapters, batch_size=16, metrics=("accuracy", "loss"))
    for adapter, got in zip(adapters, results, strict=True):
        want = alone(model, tok, adapter, "seq-cls", path)
        assert got.metrics["loss"] == pytest.approx(want["loss"], rel=1e-5)
        assert got.metrics["accuracy"] == want["accuracy"]
        assert set(got.metrics) == {"loss", "accuracy"}
    assert len({r.metrics["accuracy"] for r in results}) > 1


def test_task_mismatch_and_bad_metrics(tmp_path):
    model, tok = tiny_llama(), char_tokenizer()
    data = load_dataset("causal-lm", write_lm_data(tmp_path / "lm.jsonl", 3), tok)
    cls_adapter = make_adapter(tiny_bert_cls(), random_config(random.Random(1), BERT_TARGETS),
                               seed=1)
    [res] = evaluate_many(model, tok, data, [cls_adapter])
    assert "task" in res.error
    with pytest.raises(ConfigError, match="accuracy"):
        evaluate_many(model, tok, data, [cls_adapter], metrics=["accuracy"])
    with pytest.raises(ConfigError, match="bleu"):
        parse_metrics("loss,bleu")


def test_row_plan_is_example_major():
    plan = row_plan(3, [2, 0], batch_size=4)
    assert plan == [[(0, 2), (1, 2), (2, 2), (0, 0)], [(1, 0), (2, 0)]]
