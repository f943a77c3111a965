"""Tiny real models, a char-level tokenizer and random-weight adapters for the eval tests."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import torch

import zoo
from zoo.config import PRoLoRAConfig

LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BERT_TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense")
CHARS = string.ascii_letters + string.digits + " .,:;!?'-+=()"


def char_tokenizer(out_dir: str | Path | None = None) -> Any:
    """A character-level fast tokenizer (BOS prefix, EOS/PAD/UNK), optionally saved to a dir."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for ch in CHARS:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def tiny_llama_config(**overrides: Any) -> Any:
    from transformers import LlamaConfig

    cfg = dict(vocab_size=len(CHARS) + 4, hidden_size=48, intermediate_size=80,
               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    cfg.update(overrides)
    return LlamaConfig(**cfg)


def tiny_llama(seed: int = 0) -> Any:
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_llama_config()).eval()


def tiny_bert_cls(seed: int = 0, num_labels: int = 3) -> Any:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=len(CHARS) + 4, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=80, max_position_embeddings=128, num_labels=num_labels,
        pad_token_id=0)).eval()


def random_config(rng: random.Random, targets: tuple[str, ...], **extra: Any) -> PRoLoRAConfig:
    r = rng.choice([1, 2, 4, 6, 8])
    return PRoLoRAConfig(
        r=r, unshared_r=rng.randint(0, r), share_a=rng.choice([1, 2, 3, 4]),
        share_b=rng.choice([1, 2, 3, 4]), alpha=rng.choice([4.0, 8.0, 16.0]),
        rotation=rng.random() < 0.8,
        target_modules=tuple(rng.sample(targets, rng.randint(1, len(targets)))), **extra)


def make_adapter(model: torch.nn.Module, config: PRoLoRAConfig, seed: int, *,
                 base_model: str = "tiny", task: str | None = None) -> zoo.Adapter:
    """Attach, give every trainable tensor random values, extract, detach (model unchanged)."""
    zoo.attach(model, config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    try:
        return zoo.extract(model, base_model=base_model, task=task)
    finally:
        zoo.detach(model)


def write_lm_data(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    words = ["red", "blue", "cat", "dog", "sun", "one", "two", "yes", "no", "tree"]
    with path.open("w") as fh:
        for _ in range(n):
            prompt = " ".join(rng.choices(words, k=rng.randint(1, 4))) + ":"
            completion = " " + " ".join(rng.choices(words, k=rng.randint(1, 3)))
            fh.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")
    return path


def write_cls_data(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    labels = ["neg", "neu", "pos"]
    with path.open("w") as fh:
        for _ in range(n):
            text = "".join(rng.choices(string.ascii_lowercase + " ", k=rng.randint(3, 20)))
            fh.write(json.dumps({"text": text, "label": rng.choice(labels)}) + "\n")
    return path
