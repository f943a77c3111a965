"""Data files: parsing, label mapping, errors that name file and line, completion-only masking."""

from __future__ import annotations

import hashlib

import pytest
from train_helpers import make_tokenizer, write_jsonl

from zoo.datasets import (
    IGNORE_INDEX,
    collate,
    encode_causal_lm,
    fingerprint,
    label_names_for,
    load_and_encode,
    load_causal_lm,
    load_seq_cls,
)
from zoo.errors import ConfigError, DataError


def test_jsonl_string_labels_sorted_and_fingerprint(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "pos"},
                                              {"text": "b", "label": "neg"},
                                              {"text": "c", "label": "pos"}])
    data = load_seq_cls(path)
    assert data.label_names == ["neg", "pos"]
    assert data.labels == [1, 0, 1]
    assert data.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest() == fingerprint(path)


def test_integer_labels_are_ids_and_csv_matches_jsonl(tmp_path):
    jsonl = write_jsonl(tmp_path / "d.jsonl", [{"text": "x", "label": 2}, {"text": "y", "label": 0}])
    csv = tmp_path / "d.csv"
    csv.write_text('text,label\nx,2\n"y, with comma",0\n', encoding="utf-8")
    a, b = load_seq_cls(jsonl), load_seq_cls(csv)
    assert a.label_names == b.label_names == ["0", "1", "2"]
    assert a.labels == b.labels == [2, 0]
    assert b.texts[1] == "y, with comma"


def test_eval_labels_map_through_training_names(tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [{"text": "a", "label": "pos"}])
    assert load_seq_cls(path, label_names=["neg", "pos"]).labels == [1]
    with pytest.raises(DataError, match=r"e\.jsonl:1: label 'pos' is not one of the training"):
        load_seq_cls(path, label_names=["bad", "good"])


def test_label_names_rule():
    assert label_names_for(["b", "a", "b"]) == ["a", "b"]
    assert label_names_for(["3", "1"]) == ["0", "1", "2", "3"]


@pytest.mark.parametrize(
    ("content", "task", "message"),
    [
        ("", "seq-cls", "no examples"),
        ("\n\n", "causal-lm", "no examples"),
        ('{"text": "a", "label": "x"}\n{"text": "b" "label": 1}\n', "seq-cls",
         r"d\.jsonl:2: bad JSON"),
        ('{"text": "a", "label": "x"}\n{"text": "b"}\n', "seq-cls",
         r"d\.jsonl:2: missing column 'label' \(columns: text\)"),
        ('{"prompt": "p"}\n', "causal-lm", r"d\.jsonl:1: missing column 'completion'"),
        ('{"prompt": "p", "completion": 3}\n', "causal-lm", "must be a string"),
        ('{"prompt": "p", "completion": ""}\n', "causal-lm", "empty completion"),
        ('[1, 2]\n', "causal-lm", "expected a JSON object"),
        ('{"text": "a", "label": "x"}\n', "seq-cls", "at least 2 classes"),
        ('{"text": "a", "label": [1]}\n', "seq-cls", "label must be a string or an integer"),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path, content, task, message):
    path = tmp_path / "d.jsonl"
    path.write_text(content, encoding="utf-8")
    loader = load_seq_cls if task == "seq-cls" else load_causal_lm
    with pytest.raises(DataError, match=message):
        loader(path)


def test_missing_file_and_csv_errors(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_seq_cls(tmp_path / "nope.jsonl")
    csv = tmp_path / "d.csv"
    csv.write_text("sentence,label\nhi,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.csv:2: missing column 'text'"):
        load_seq_cls(csv)
    with pytest.raises(DataError, match="CSV is supported for seq-cls only"):
        load_causal_lm(csv)
    assert issubclass(DataError, ConfigError)


def test_causal_lm_labels_mask_prompt_and_padding():
    tok = make_tokenizer("llama")
    from zoo.datasets import LMData

    data = LMData(["the k1 ->", "the very long k2 ->"], ["v1", "v2 v3"], "fp")
    enc = encode_causal_lm(data, tok, max_length=64)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    v = tok.convert_tokens_to_ids
    assert enc.input_ids[0] == [bos, v("the"), v("k1"), v("->"), v("v1"), eos]
    assert enc.labels[0] == [IGNORE_INDEX] * 4 + [v("v1"), eos]
    batch = collate(enc, [0, 1], pad_token_id=tok.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, 9)
    # row 0 is padded on the right: padding is masked in attention and ignored in the loss
    assert batch["attention_mask"][0].tolist() == [1] * 6 + [0] * 3
    assert batch["labels"][0].tolist() == [IGNORE_INDEX] * 4 + [v("v1"), eos] + [IGNORE_INDEX] * 3
    assert batch["input_ids"][0, 6:].tolist() == [tok.pad_token_id] * 3
    assert batch["labels"][1].tolist() == [IGNORE_INDEX] * 6 + [v("v2"), v("v3"), eos]


def test_truncation_keeps_the_completion():
    tok = make_tokenizer("llama")
    from zoo.datasets import LMData

    enc = encode_causal_lm(LMData(["the " * 20 + "k1 ->"], ["v1"], "fp"), tok, max_length=6)
    assert len(enc.input_ids[0]) == 6
    assert enc.labels[0][-2:] == [tok.convert_tokens_to_ids("v1"), tok.eos_token_id]
    assert enc.labels[0][:4] == [IGNORE_INDEX] * 4


def test_seq_cls_encoding_and_token_types(tmp_path):
    tok = make_tokenizer("bert")
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "the movie is good", "label": "pos"},
                                              {"text": "bad", "label": "neg"}])
    enc, parsed = load_and_encode("seq-cls", path, tok, max_length=4)
    assert [len(x) for x in enc.input_ids] == [4, 3]  # [CLS] bad [SEP]; first one truncated
    batch = collate(enc, [0, 1], tok.pad_token_id)
    assert batch["labels"].tolist() == [1, 0]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


def test_unknown_task_is_rejected(tmp_path):
    with pytest.raises(DataError, match="task='summarise' is invalid"):
        load_and_encode("summarise", tmp_path / "x.jsonl", None, 8)


def test_shipped_sentiment_data_is_valid_and_regenerates_byte_for_byte():
    import importlib.util
    import json
    from pathlib import Path

    import zoo.datasets

    data_dir = Path(zoo.datasets.__file__).parent / "data"
    spec = importlib.util.spec_from_file_location("make_sentiment", data_dir / "make_sentiment.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    train_rows = gen.generate(2000, seed=1)
    expected = "".join(json.dumps(r, sort_keys=True) + "\n" for r in train_rows)
    assert (data_dir / "sentiment_train.jsonl").read_text(encoding="utf-8") == expected
    train = load_seq_cls(data_dir / "sentiment_train.jsonl")
    evaluation = load_seq_cls(data_dir / "sentiment_eval.jsonl", label_names=train.label_names)
    assert train.label_names == ["negative", "positive"]
    assert (len(train.texts), len(evaluation.texts)) == (2000, 500)
    assert 0.4 < sum(train.labels) / 2000 < 0.6
    assert not set(train.texts) & set(evaluation.texts)  # held-out reviews are unseen
