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
    from zoo.attach import attach, attachment, set_merged

    attach(model, adapter)
    set_merged(model, True)
    state = attachment(model)
    from zoo.attach import STATE_ATTR, _set_submodule

    for path, layer in state.layers.items():
        _set_submodule(model, path, layer.base_layer)  # keeps the merged weight
    for name, p in model.named_parameters():
        p.requires_grad_(state.requires_grad.get(name, p.requires_grad))
    delattr(model, STATE_ATTR)  # saved modules keep the adapter's weights: that is the merge
    return model


def save_merged(adapter: Adapter, model: nn.Module, out_dir: str | os.PathLike[str],
                tokenizer=None) -> Path:
    """Merge and write a standard transformers directory (``save_pretrained``)."""
    out = Path(out_dir)
    merged = merge_into(adapter, model)
    merged.save_pretrained(out, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out
