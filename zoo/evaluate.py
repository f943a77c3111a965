"""Evaluating a model (typically with an adapter attached) on a task's data file.

Metrics:

- ``seq-cls``: mean cross-entropy ``loss`` and ``accuracy`` (argmax of the logits).
- ``causal-lm``: token-level ``loss`` over completion tokens only (the same masking as
  training), ``perplexity`` = exp(loss), and ``exact_match``: the fraction of examples whose
  greedy next-token predictions (argmax under teacher forcing, no generation loop) equal every
  completion token — cheap, deterministic, and exact for short answers.

Every result carries ``examples`` (how many were scored) and the dataset ``fingerprint``.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from typing import Any

from zoo.datasets import IGNORE_INDEX, collate, load_and_encode, pad_id


def label_names_of(model: Any) -> list[str] | None:
    """The label names a seq-cls model was set up with, unless they are transformers' defaults."""
    id2label = getattr(getattr(model, "config", None), "id2label", None) or {}
    names = [str(id2label[i]) for i in sorted(id2label, key=int)] if id2label else []
    if not names or all(n == f"LABEL_{i}" for i, n in enumerate(names)):
        return None
    return names


def causal_lm_loss(logits: Any, labels: Any) -> tuple[Any, Any, Any]:
    """(sum of token losses, token count, per-example exact-match bools) with the usual shift."""
    import torch
    import torch.nn.functional as F

    logits = logits[:, :-1, :].float()  # (B, T-1, V): position t predicts token t+1
    targets = labels[:, 1:]  # (B, T-1)
    loss_sum = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=IGNORE_INDEX, reduction="sum")
    mask = targets != IGNORE_INDEX
    correct = (logits.argmax(-1) == targets) | ~mask
    has_target = mask.any(dim=1)
    return loss_sum, mask.sum(), (correct.all(dim=1) & has_target).to(torch.long)


def model_inputs(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """Drop ``token_type_ids`` for models whose forward does not take them (Llama, GPT-2...)."""
    if "token_type_ids" in batch:
        import inspect

        if "token_type_ids" not in inspect.signature(model.forward).parameters:
            batch = {k: v for k, v in batch.items() if k != "token_type_ids"}
    return batch


def autocast_context(device: str, autocast_dtype: str | None) -> Any:
    import torch

    if device.startswith("cuda") and autocast_dtype:
        return torch.autocast("cuda", dtype=getattr(torch, autocast_dtype))
    return contextlib.nullcontext()


def evaluate_adapter(
    model: Any, tokenizer: Any, task: str, path: str | os.PathLike[str], batch_size: int = 32,
    max_examples: int | None = None, *, max_length: int = 128,
    label_names: Sequence[str] | None = None, autocast_dtype: str | None = None,
) -> dict[str, Any]:
    """Score ``model`` on the file at ``path`` without changing it (eval mode, no grad).

    ``label_names`` (seq-cls): the training label order, e.g. ``adapter.config.label_names``;
    defaults to the model config's labels when they are not transformers' placeholders, else
    to the file's own labels.
    """
    import torch
    import torch.nn.functional as F

    if label_names is None and task == "seq-cls":
        label_names = label_names_of(model)
    encoded, parsed = load_and_encode(task, path, tokenizer, max_length,
                                      label_names=label_names, max_examples=max_examples)
    device = str(next(model.parameters()).device)
    pad = pad_id(tokenizer)
    was_training = model.training
    model.eval()
    loss_sum, count, hits = 0.0, 0, 0
    try:
        with torch.no_grad(), autocast_context(device, autocast_dtype):
            for start in range(0, len(encoded), batch_size):
                batch = collate(encoded, range(start, min(start + batch_size, len(encoded))), pad)
                labels = batch.pop("labels").to(device)
                out = model(**model_inputs(model, {k: v.to(device) for k, v in batch.items()}))
                if task == "seq-cls":
                    logits = out.logits.float()  # (B, num_labels)
                    loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
                    count += labels.numel()
                    hits += (logits.argmax(-1) == labels).sum().item()
                else:
                    s, n, em = causal_lm_loss(out.logits, labels)
                    loss_sum += s.item()
                    count += int(n)
                    hits += int(em.sum())
    finally:
        model.train(was_training)
    loss = loss_sum / max(count, 1)
    result: dict[str, Any] = {"loss": loss, "examples": len(encoded),
                              "fingerprint": parsed.fingerprint}
    if task == "seq-cls":
        result["accuracy"] = hits / max(len(encoded), 1)
    else:
        result["perplexity"] = math.exp(min(loss, 700.0))
        result["exact_match"] = hits / max(len(encoded), 1)
        result["tokens"] = count
    return result
