"""Push of a PEFT LoRA directory: checked torch-free, then converted losslessly (u = r).

Why check here first: a directory holding only ``adapter_model.bin`` is a pickle, and the zoo
never unpickles (a pickle can run code). Refusing it before importing torch gives a clear,
fast error and guarantees nothing ever calls ``torch.load`` on it.
"""

from __future__ import annotations

import os
from pathlib import Path

from zoo.errors import AdapterFormatError

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
PICKLES = ("adapter_model.bin", "pytorch_model.bin")


def check_peft_dir(directory: str | os.PathLike[str]) -> Path:
    """Raise AdapterFormatError unless ``directory`` looks like a safetensors PEFT LoRA export."""
    d = Path(directory)
    if not (d / CONFIG).is_file():
        raise AdapterFormatError(
            f"{d} is a directory but not a PEFT LoRA export: {CONFIG} is missing "
            "(push a zoo adapter file or a PEFT directory)"
        )
    if not (d / WEIGHTS).is_file():
        pickles = [p for p in PICKLES if (d / p).exists()]
        if pickles:
            raise AdapterFormatError(
                f"{d} holds only pickle weights ({', '.join(pickles)}); the zoo never unpickles. "
                f"Re-save with safetensors (PEFT: save_pretrained(..., safe_serialization=True))"
            )
        raise AdapterFormatError(f"{d}: {WEIGHTS} is missing")
    return d


def peft_dir_to_file(directory: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Convert a PEFT LoRA directory into a zoo adapter file at ``out`` (imports torch)."""
    d = check_peft_dir(directory)
    from zoo.adapter import Adapter

    Adapter.from_peft(d).save(out)
    return Path(out)
