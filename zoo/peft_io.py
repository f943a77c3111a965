"""Export to, and import from, PEFT's LoRA directory format (ADAPTER_FORMAT.md).

Export expands the compact tensors into an ordinary rank-r LoRA, which PEFT, vLLM and LoRAX
load. Import stores a PEFT LoRA losslessly as PRoLoRA with ``u = r`` and no sharing (every rank
unshared), so the zoo can catalog adapters trained elsewhere. Only ``adapter_model.safetensors``
is read: a pickle ``adapter_model.bin`` is refused, never unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from zoo.errors import AdapterFormatError

if TYPE_CHECKING:
    from zoo.adapter import Adapter

PREFIX = "base_model.model."
TASK_TYPES = {"causal-lm": "CAUSAL_LM", "seq-cls": "SEQ_CLS"}
TASKS = {v: k for k, v in TASK_TYPES.items()}
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"


def peft_config(adapter: Adapter) -> dict[str, Any]:
    c = adapter.config
    kinds = {m["kind"] for m in c["modules"].values()}
    if len(kinds) > 1:
        raise AdapterFormatError("PEFT needs one fan_in_fan_out for all targets; "
                                 "this adapter mixes Linear and Conv1D modules")
    return {
        "peft_type": "LORA",
        "task_type": TASK_TYPES.get(c["task"]),
        "r": c["r"],
        "lora_alpha": c["alpha"],
        "lora_dropout": c["dropout"],
        "target_modules": sorted(c["modules"]),
        "base_model_name_or_path": c["base_model"],
        "bias": "none",
        "fan_in_fan_out": kinds == {"conv1d"},
        "modules_to_save": list(c["modules_to_save"]) or None,
        "inference_mode": True,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "rank_pattern": {},
        "alpha_pattern": {},
    }


def export_peft(adapter: Adapter, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors``; atomic per directory."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for path, (a, b) in adapter.expand().items():
        tensors[f"{PREFIX}{path}.lora_A.weight"] = a.contiguous()  # (r, h)
        tensors[f"{PREFIX}{path}.lora_B.weight"] = b.contiguous()  # (o, r)
    for key, value in adapter.saved_tensors().items():
        tensors[f"{PREFIX}{key}"] = value.contiguous()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".incomplete", dir=out.parent))
    try:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(peft_config(adapter), indent=2, sort_keys=True))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _read_peft_config(directory: Path) -> dict[str, Any]:
    cfg_path = directory / CONFIG_FILE
    if not cfg_path.is_file():
        raise AdapterFormatError(f"{directory}: not a PEFT adapter directory (no {CONFIG_FILE})")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AdapterFormatError(f"{cfg_path}: not valid JSON") from None
    if cfg.get("peft_type") != "LORA":
        raise AdapterFormatError(f"{cfg_path}: peft_type {cfg.get('peft_type')!r} is not LORA")
    for unsupported in ("use_dora", "use_rslora"):
        if cfg.get(unsupported):
            raise AdapterFormatError(f"{cfg_path}: {unsupported}=true is not supported")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise AdapterFormatError(f"{cfg_path}: per-module rank/alpha patterns are not supported")
    return cfg


def import_peft(directory: str | os.PathLike[str]) -> Adapter:
    """A PEFT LoRA directory as a zoo Adapter with u = r (lossless)."""
    from safetensors.torch import load_file

    from zoo.adapter import Adapter, dtype_name

    d = Path(directory)
    cfg = _read_peft_config(d)
    weights = d / WEIGHTS_FILE
    if not weights.is_file():
        if (d / "adapter_model.bin").exists():
            raise AdapterFormatError(
                f"{d}: only a pickle adapter_model.bin is present; the zoo never unpickles — "
                "re-save it with safetensors (save_pretrained(safe_serialization=True))")
        raise AdapterFormatError(f"{d}: no {WEIGHTS_FILE}")
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
    dtypes = {tensors[f"{p}.A_unshared"].dtype for p in modules if f"{p}.A_unshared" in tensors}
    config = {
        "base_model": cfg.get("base_model_name_or_path") or "unknown",
        "base_model_digest": None,
        "task": TASKS.get(cfg.get("task_type") or "", "causal-lm"),
        "r": r, "unshared_r": r, "share_a": 1, "share_b": 1, "stride_a": 1, "stride_b": 1,
        "rotation": True, "init": "rectified", "alpha": cfg.get("lora_alpha", r),
        "dropout": cfg.get("lora_dropout", 0.0),
        "dtype": dtype_name(dtypes.pop() if len(dtypes) == 1 else torch.float32),
        "modules": modules, "modules_to_save": sorted(saved), "imported_from": "peft",
    }
    return Adapter(config, tensors)
