"""A cheap fingerprint of a base model, stored with every adapter as ``base_model_digest``.

Why: an adapter only means something on the base it was trained on. Hashing a 7B model's 14 GB
of weights on every job would take minutes, so the digest covers what identifies a checkpoint
and can be read in milliseconds.

For a model DIRECTORY (``base_model_digest("./llama")``) the digest is the sha256 of canonical
JSON holding:

- ``config.json``, parsed, minus keys that do not change the model: ``_name_or_path``,
  ``transformers_version``, ``torch_dtype``/``dtype`` (the dtype of every tensor is covered below);
- for every ``*.safetensors`` file directly in the directory (sorted by name): its name, its size
  in bytes, its header (tensor names, dtypes, shapes, byte offsets; ``__metadata__`` excluded);
- a sample of each weight file's bytes: 16 slices of 4 KiB at evenly spaced offsets (64 KiB per
  file, independent of model size) so that two finetunes of one architecture, whose configs
  and headers are identical, still get different digests;
- ``*.bin``/``*.pt``/``*.pth`` weight files (no safetensors): name, size and the same byte sample.

It does NOT cover tokenizer files, generation config, or weight bytes outside the samples: two
checkpoints differing only in unsampled bytes (e.g. a single edited weight) collide by design.

For an in-memory MODEL (``base_model_digest(model)``): sha256 of canonical JSON of the config
(same keys removed) and the name, shape and dtype of every parameter and buffer. No weight
values. The two kinds are not comparable with each other: prefer the directory form, which
:func:`zoo.train.train_adapter` uses whenever the base model's files are on disk. Attach no
adapter before digesting a model: the wrappers change the names.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError
from zoo.safetensors_io import read_header

VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version", "torch_dtype", "dtype")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
SAMPLES = 16
SAMPLE_BYTES = 4096


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def _clean_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in VOLATILE_CONFIG_KEYS}


def _sample(path: Path, size: int) -> str:
    """sha256 of SAMPLES slices of SAMPLE_BYTES at evenly spaced offsets."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        if size <= SAMPLES * SAMPLE_BYTES:
            h.update(fh.read())
        else:
            step = (size - SAMPLE_BYTES) // (SAMPLES - 1)
            for i in range(SAMPLES):
                fh.seek(i * step)
                h.update(fh.read(SAMPLE_BYTES))
    return h.hexdigest()


def describe_directory(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The exact structure that :func:`base_model_digest` hashes for a directory."""
    root = Path(path)
    config_file = root / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"base model directory {root} has no config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_file}: not valid JSON ({exc})") from None
    weights = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    safetensors = [p for p in weights if p.suffix == ".safetensors"]
    files = []
    for p in safetensors or weights:
        size = p.stat().st_size
        entry: dict[str, Any] = {"name": p.name, "size": size, "sample": _sample(p, size)}
        if p.suffix == ".safetensors":
            _, tensors, _ = read_header(p)
            entry["tensors"] = {
                name: [t.dtype, list(t.shape), t.start, t.end] for name, t in sorted(tensors.items())
            }
        files.append(entry)
    return {"kind": "directory-v1", "config": _clean_config(config), "files": files}


def describe_model(model: Any) -> dict[str, Any]:
    """The exact structure that :func:`base_model_digest` hashes for an in-memory model."""
    config = model.config.to_dict() if hasattr(model, "config") else {}
    tensors = {
        name: [str(t.dtype).removeprefix("torch."), list(t.shape)]
        for name, t in [*model.named_parameters(), *model.named_buffers()]
    }
    return {"kind": "model-v1", "config": _clean_config(config), "tensors": dict(sorted(tensors.items()))}


def base_model_digest(path_or_model: str | os.PathLike[str] | Any) -> str:
    """sha256 hex fingerprint of a base model directory or in-memory model (see module doc)."""
    if isinstance(path_or_model, (str, os.PathLike)):
        root = Path(path_or_model)
        if not root.is_dir():
            raise ConfigError(f"base model path {root} is not a directory")
        desc = describe_directory(root)
    else:
        desc = describe_model(path_or_model)
    return hashlib.sha256(_canonical(desc)).hexdigest()
