"""Loading a base model and its tokenizer for a task, never hanging on the network.

A local directory is loaded with ``local_files_only=True``. A hub id is looked up in the local
cache first (``local_files_only=True``); only when it is not cached AND ``HF_HUB_OFFLINE`` /
``TRANSFORMERS_OFFLINE`` are unset does transformers go to the network. Offline and not cached
is a ConfigError naming the model, immediately.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.datasets import check_task
from zoo.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}


def offline() -> bool:
    """Whether HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE asks for no network."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def local_model_dir(name_or_path: str | os.PathLike[str]) -> Path | None:
    """The directory holding the model's files: the path itself, or the hub cache snapshot."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    if str(name_or_path).startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(str(name_or_path), "config.json")
    except Exception:  # noqa: BLE001 - a malformed id is simply "not cached"
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def _model_class(task: str) -> Any:
    import transformers

    check_task(task)
    return (transformers.AutoModelForCausalLM if task == "causal-lm"
            else transformers.AutoModelForSequenceClassification)


def _load(fn: Any, name: str, local_only: bool, **kwargs: Any) -> Any:
    """Call a from_pretrained ``fn``; cache first, network only when allowed."""
    try:
        return fn(name, local_files_only=True, **kwargs)
    except OSError as exc:
        if local_only or offline():
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(
                f"base model {name!r}: not a model directory and not in the local cache "
                f"(offline) — {reason}"
            ) from None
    try:
        return fn(name, **kwargs)
    except OSError as exc:
        raise ConfigError(f"base model {name!r} could not be loaded: {exc}") from None


def load_tokenizer(name_or_path: str | os.PathLike[str]) -> Any:
    """The model's tokenizer with a pad token (EOS, else UNK, when it has none)."""
    from transformers import AutoTokenizer

    name = str(name_or_path)
    local = Path(name).expanduser().is_dir()
    tok = _load(AutoTokenizer.from_pretrained, str(Path(name).expanduser()) if local else name,
                local)
    if tok.pad_token_id is None:
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        elif tok.unk_token is not None:
            tok.pad_token = tok.unk_token
    return tok


def load_base(
    name_or_path: str | os.PathLike[str], task: str, *,
    label_names: Sequence[str] | None = None, dtype: str = "float32",
    device: str = "cpu", tokenizer: Any = None,
) -> tuple[Any, Any]:
    """(model, tokenizer) for ``task``; seq-cls gets a fresh head sized by ``label_names``.

    The head's initial values come from torch's RNG, so seed it before calling (train does).
    """
    import torch

    cls = _model_class(task)
    name = str(name_or_path)
    local = Path(name).expanduser().is_dir()
    if local:
        name = str(Path(name).expanduser())
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype)}
    if task == "seq-cls":
        if not label_names or len(label_names) < 2:
            raise ConfigError("seq-cls needs label_names with at least 2 classes")
        kwargs.update(
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={n: i for i, n in enumerate(label_names)},
            ignore_mismatched_sizes=True,  # a base with another head size gets a fresh head
        )
    if tokenizer is None:
        tokenizer = load_tokenizer(name)
    model = _load(cls.from_pretrained, name, local, **kwargs)
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id  # seq-cls pools at the last non-pad
    model.to(device)
    model.eval()
    return model, tokenizer
