"""Merge an adapter into a base model for deployment: ``W ← W + (α/r)·B·A``.

PEFT's ``safe_merge`` lesson: compute the merged weight first, refuse NaN/inf before touching the
model. The result is the plain base architecture (no wrappers), ready for ``save_pretrained``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from zoo.adapter import Adapter


def merge_into(adapter: Adapter, model: nn.Module) -> nn.Module:
    """Attach, merge every layer, then drop the wrappers keeping the merged weights."""
    from zoo.surgery import attach, merge_and_unwrap

    attach(model, adapter)
    return merge_and_unwrap(model)


def save_merged(adapter: Adapter, model: nn.Module, out_dir: str | os.PathLike[str],
                tokenizer=None) -> Path:
    """Merge and write a standard transformers directory (``save_pretrained``)."""
    out = Path(out_dir)
    merged = merge_into(adapter, model)
    merged.save_pretrained(out, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def save_merged_from(adapter: Adapter, base_dir: str | os.PathLike[str],
                     out_dir: str | os.PathLike[str]) -> Path:
    """Load the base at ``base_dir`` for the adapter's task (a seq-cls head sized by its
    labels), merge, and write a transformers directory with the base's tokenizer if it has
    one."""
    from types import SimpleNamespace

    from zoo.base_models import load_base, load_tokenizer
    from zoo.errors import ConfigError

    try:  # a base saved without a tokenizer still merges; the tokenizer is copied when present
        tokenizer = load_tokenizer(base_dir)
    except (ConfigError, OSError, ValueError):
        tokenizer = None
    model, _ = load_base(base_dir, adapter.config.task, label_names=adapter.label_names(),
                         dtype=adapter.config.dtype,
                         tokenizer=tokenizer or SimpleNamespace(pad_token_id=None))
    return save_merged(adapter, model, out_dir, tokenizer)
