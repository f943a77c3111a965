"""Fixtures for tests/train: tiny models saved to disk, small data files, one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import (
    lookup_rows,
    make_tokenizer,
    sentiment_rows,
    tiny_bert,
    tiny_llama,
    write_jsonl,
)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny_llama")
    tok = make_tokenizer("llama")
    tiny_llama(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny_bert")
    tok = make_tokenizer("bert")
    tiny_bert(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def cls_files(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("cls_data")
    return (write_jsonl(d / "train.jsonl", sentiment_rows(256, 0)),
            write_jsonl(d / "eval.jsonl", sentiment_rows(64, 1)))


@pytest.fixture(scope="session")
def lm_files(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("lm_data")
    return (write_jsonl(d / "train.jsonl", lookup_rows(256, 0)),
            write_jsonl(d / "eval.jsonl", lookup_rows(64, 1)))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest (and deterministically) on one thread; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
