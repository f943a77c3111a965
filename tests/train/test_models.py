"""Base model loading: local directories, task heads, offline behaviour without hanging."""

from __future__ import annotations

import time

import pytest

from zoo.base_models import load_base, local_model_dir, offline
from zoo.errors import ConfigError


def test_load_causal_lm_from_directory(llama_dir):
    model, tok = load_base(llama_dir, "causal-lm")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not model.training
    assert tok.pad_token_id is not None


def test_load_seq_cls_with_labels(bert_dir):
    model, _ = load_base(str(bert_dir), "seq-cls", label_names=["neg", "neu", "pos"])
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.num_labels == 3
    assert model.classifier.out_features == 3
    assert model.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    with pytest.raises(ConfigError, match="at least 2 classes"):
        load_base(bert_dir, "seq-cls")


def test_offline_unknown_hub_id_fails_fast_with_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert offline()
    started = time.monotonic()
    with pytest.raises(ConfigError, match="'nobody/no-such-model-xyz'.*not in the local cache"):
        load_base("nobody/no-such-model-xyz", "causal-lm")
    assert time.monotonic() - started < 60  # generous: it must not wait on the network


def test_missing_local_path_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not a model directory"):
        load_base(str(tmp_path / "absent"), "causal-lm")


def test_local_model_dir(llama_dir, tmp_path):
    assert local_model_dir(llama_dir) == llama_dir
    assert local_model_dir("./definitely/not/here") is None
    assert local_model_dir("nobody/no-such-model-xyz") is None


def test_unknown_task(llama_dir):
    with pytest.raises(ConfigError, match="task='translation' is invalid"):
        load_base(llama_dir, "translation")
