"""Helpers for tests/train: tiny real transformers models (hidden 32-64, 2 layers), WordLevel
tokenizers and small learnable datasets (the conftest saves the models next to their
tokenizers, so training loads them from a directory like a user's model).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = [
    "good", "great", "fine", "nice", "bad", "awful", "poor", "sad", "the", "a", "is", "not",
    "movie", "food", "day", "very", "->", "=", "yes", "no",
    *[f"k{i}" for i in range(10)], *[f"v{i}" for i in range(10)],
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<s>", "</s>"]


def make_tokenizer(kind: str):
    """A whitespace WordLevel tokenizer; BERT style ([CLS] x [SEP]) or Llama style (<s> x)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate([*SPECIALS, *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if kind == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                       cls_token="[CLS]", sep_token="[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                       special_tokens=[("<s>", 4)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   bos_token="<s>", eos_token="</s>")


def tiny_llama(tokenizer, hidden: int = 32):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1234)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                      bos_token_id=4, eos_token_id=5, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


def tiny_bert(tokenizer, num_labels: int = 2, hidden: int = 32):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(4321)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                     num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                     num_labels=num_labels, pad_token_id=0, initializer_range=0.1,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(cfg).eval()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sentiment_rows(n: int, seed: int) -> list[dict]:
    """Label = polarity of the adjective, flipped by "not": learnable, not trivial."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.random() < 0.5
        negated = rng.random() < 0.3
        adj = rng.choice(["good", "great", "fine", "nice"] if positive != negated
                         else ["bad", "awful", "poor", "sad"])
        noun = rng.choice(["movie", "food", "day"])
        text = f"the {noun} is {'not ' if negated else ''}{'very ' * rng.randrange(2)}{adj}"
        rows.append({"text": text, "label": "pos" if positive else "neg"})
    return rows


def lookup_rows(n: int, seed: int) -> list[dict]:
    """Causal LM: "k3 ->" completes to "v3": a fixed key-value map to memorise."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        i = rng.randrange(10)
        rows.append({"prompt": f"the k{i} ->", "completion": f"v{i}"})
    return rows
