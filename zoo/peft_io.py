"""Export to, and import from, PEFT's LoRA directory format (docs/adapter-format.md).

Export expands the compact tensors into an ordinary rank-r LoRA, which PEFT, vLLM and LoRAX
load. Import stores a PEFT LoRA losslessly as PRoLoRA with ``u = r`` and no sharing (every rank
unshared), so the zoo can catalog adapters trained elsewhere. Only ``adapter_model.safetensors``
is read: a pickle ``adapter_model.bin`` is refused, never unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from zoo.errors import AdapterFormatError
from zoo.files import landing
from zoo.untrusted import UntrustedInputError, load_json

if TYPE_CHECKING:
    from zoo.adapter import Adapter

PREFIX = "base_model.model."
TASK_TYPES = {"causal-lm": "CAUSAL_LM", "seq-cls": "SEQ_CLS"}
TASKS = {v: k for k, v in TASK_TYPES.items()}
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
MAX_PEFT_CONFIG_BYTES = 1 << 20


def peft_config(adapter: Adapter) -> dict[str, Any]:
    c = adapter.config
    kinds = {m.kind for m in c.modules.values()}
    if len(kinds) > 1:
        raise AdapterFormatError("PEFT needs one fan_in_fan_out for all targets; "
                                 "this adapter mixes Linear and Conv1D modules")
    return {
        "peft_type": "LORA",
        "task_type": TASK_TYPES.get(c.task),
        "r": c.r,
        "lora_alpha": c.alpha,
        "lora_dropout": c.dropout,
        "target_modules": sorted(c.modules),
        "base_model_name_or_path": c.base_model,
        "bias": "none",
        "fan_in_fan_out": kinds == {"conv1d"},
        "modules_to_save": list(c.modules_to_save) or None,
        "inference_mode": True,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "rank_pattern": {},
        "alpha_pattern": {},
    }


def export_peft(adapter: Adapter, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors``; atomic per directory."""
    with landing(out_dir, directory=True) as tmp:
        write_peft_files(adapter, tmp)
    return Path(out_dir)


def write_peft_files(adapter: Adapter, directory: Path) -> None:
    """The two PEFT files of ``adapter``, written into an existing (temp) directory."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for path, (a, b) in adapter.expand().items():
        tensors[f"{PREFIX}{path}.lora_A.weight"] = a.contiguous()  # (r, h)
        tensors[f"{PREFIX}{path}.lora_B.weight"] = b.contiguous()  # (o, r)
    for key, value in adapter.saved_tensors().items():
        tensors[f"{PREFIX}{key}"] = value.contiguous()
    # bytes then an ordinary write: safetensors' save_file creates the file 0600
    (directory / WEIGHTS_FILE).write_bytes(save(tensors, metadata={"format": "pt"}))
    (directory / CONFIG_FILE).write_text(json.dumps(peft_config(adapter), indent=2,
                                                    sort_keys=True))


PICKLES = ("adapter_model.bin", "pytorch_model.bin")


def check_peft_dir(directory: str | os.PathLike[str]) -> Path:
    """Raise AdapterFormatError unless ``directory`` looks like a safetensors PEFT LoRA export.

    Torch-free on purpose: a directory holding only a pickle is refused before torch is even
    imported, so nothing ever calls ``torch.load`` on it (a pickle can run code)."""
    d = Path(directory)
    if not (d / CONFIG_FILE).is_file():
        raise AdapterFormatError(
            f"{d} is a directory but not a PEFT LoRA export: {CONFIG_FILE} is missing "
            "(push a zoo adapter file or a PEFT directory)")
    if not (d / WEIGHTS_FILE).is_file():
        pickles = [p for p in PICKLES if (d / p).exists()]
        if pickles:
            raise AdapterFormatError(
                f"{d} holds only pickle weights ({', '.join(pickles)}); the zoo never unpickles. "
                "Re-save with safetensors (PEFT: save_pretrained(..., safe_serialization=True))")
        raise AdapterFormatError(f"{d}: {WEIGHTS_FILE} is missing")
    return d


def _read_peft_config(directory: Path) -> dict[str, Any]:
    cfg_path = directory / CONFIG_FILE
    try:
        cfg = load_json(cfg_path.read_bytes(), max_bytes=MAX_PEFT_CONFIG_BYTES)
    except UntrustedInputError as exc:
        raise AdapterFormatError(f"{cfg_path}: {exc}") from None
    if not isinstance(cfg, dict):
        raise AdapterFormatError(f"{cfg_path}: not a JSON object")
    if cfg.get("peft_type") != "LORA":
        raise AdapterFormatError(f"{cfg_path}: peft_type {cfg.get('peft_type')!r} is not LORA")
    for unsupported in ("use_dora", "use_rslora"):
        if cfg.get(unsupported):
            raise AdapterFormatError(f"{cfg_path}: {unsupported}=true is not supported")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise AdapterFormatError(f"{cfg_path}: per-module rank/alpha patterns are not supported")
    if not isinstance(cfg.get("r"), int) or isinstance(cfg.get("r"), bool) or cfg["r"] < 1:
        raise AdapterFormatError(f"{cfg_path}: r must be a positive integer")
    return cfg


def import_peft(directory: str | os.PathLike[str]) -> Adapter:
    """A PEFT LoRA directory as a zoo Adapter with u = r (lossless)."""
    from safetensors.torch import load_file

    from zoo.adapter import Adapter, dtype_name

    d = check_peft_dir(directory)
    cfg = _read_peft_config(d)
    weights = d / WEIGHTS_FILE
    try:
        state = load_file(str(weights))
    except Exception as exc:  # noqa: BLE001 - any reader failure is a format problem
        raise AdapterFormatError(f"{weights}: not a readable safetensors file ({exc})") from None
    r = int(cfg["r"])
    conv = bool(cfg.get("fan_in_fan_out"))
    tensors: dict[str, torch.Tensor] = {}
    modules: dict[str, dict[str, Any]] = {}
    saved: set[str] = set()
    for key, value in sorted(state.items()):
        name = key[len(PREFIX):] if key.startswith(PREFIX) else key
        for part, zoo_part in ((".lora_A.weight", "A_unshared"), (".lora_B.weight", "B_unshared")):
            if name.endswith(part):
                path = name[: -len(part)]
                tensors[f"{path}.{zoo_part}"] = value
                mod = modules.setdefault(path, {"kind": "conv1d" if conv else "linear"})
                if zoo_part == "A_unshared":
                    mod["in_features"] = int(value.shape[1])
                else:
                    mod["out_features"] = int(value.shape[0])
                break
        else:
            if ".lora_" in name:
                raise AdapterFormatError(f"{weights}: unsupported LoRA tensor {key}")
            tensors[f"saved.{name}"] = value
            saved.add(name.rsplit(".", 1)[0])
    if not modules:
        raise AdapterFormatError(f"{weights}: contains no LoRA tensors")
    lora = [k for k in tensors if not k.startswith("saved.")]
    dtypes = {tensors[k].dtype for k in lora}
    dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    if dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        dtype = torch.float32
    for k in lora:  # one dtype for every A/B tensor, as the format requires
        tensors[k] = tensors[k].to(dtype)
    config = {
        "base_model": cfg.get("base_model_name_or_path") or "unknown",
        "base_model_digest": None,
        "task": TASKS.get(cfg.get("task_type") or "", "causal-lm"),
        "r": r, "unshared_r": r, "share_a": 1, "share_b": 1, "stride_a": 1, "stride_b": 1,
        "rotation": True, "init": "rectified", "alpha": cfg.get("lora_alpha", r),
        "dropout": cfg.get("lora_dropout", 0.0),
        "dtype": dtype_name(dtype),
        "modules": modules, "modules_to_save": sorted(saved), "imported_from": "peft",
    }
    return Adapter(config, tensors)
