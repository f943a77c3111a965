"""``Adapter``: a PRoLoRA adapter in its compact form, and its file (docs/adapter-format.md, version 1).

One safetensors file, deterministic bytes (the sha256 is the adapter's identity), no pickle,
every shape validated against the config on load and against the base model on attach.
"""

from __future__ import annotations

import hashlib
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.adapter_config import AdapterConfig
from zoo.adapter_meta import SAVED_PREFIX, check_tensors, file_metadata, parse_adapter_header
from zoo.config import PRoLoRAConfig
from zoo.errors import AdapterFormatError, AdapterMismatchError
from zoo.files import write_atomic
from zoo.safetensors_io import RawTensor, encode

_DTYPES = {
    torch.float32: ("float32", "F32"), torch.float16: ("float16", "F16"),
    torch.bfloat16: ("bfloat16", "BF16"), torch.float64: ("float64", "F64"),
    torch.int64: ("int64", "I64"), torch.int32: ("int32", "I32"), torch.uint8: ("uint8", "U8"),
    torch.bool: ("bool", "BOOL"),
}
_BY_NAME = {name: dt for dt, (name, _) in _DTYPES.items()}


def dtype_name(dtype: torch.dtype) -> str:
    """Config spelling of a torch dtype (``float32``, ``bfloat16``...)."""
    return _DTYPES[dtype][0]


def _raw(t: torch.Tensor) -> RawTensor:
    t = t.detach().to("cpu").contiguous()
    if t.dtype not in _DTYPES:
        raise AdapterFormatError(f"cannot store tensors of dtype {t.dtype}")
    data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return RawTensor(_DTYPES[t.dtype][1], tuple(t.shape), data)


class Adapter:
    """An :class:`AdapterConfig` plus compact tensors (name → CPU tensor), checked together."""

    def __init__(self, config: AdapterConfig | dict[str, Any],
                 tensors: dict[str, torch.Tensor]) -> None:
        if not isinstance(config, AdapterConfig):
            config = AdapterConfig.from_dict(config)
        for name, t in tensors.items():
            if t.dtype not in _DTYPES:
                raise AdapterFormatError(f"tensor {name} has dtype {t.dtype}, which a zoo "
                                         "adapter cannot store")
        check_tensors(config, {k: (tuple(v.shape), _DTYPES[v.dtype][1])
                               for k, v in tensors.items()})
        self.config = config
        self.tensors = tensors

    # ---- identity and size -------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The canonical file bytes: same adapter, same bytes."""
        return encode({k: _raw(v) for k, v in self.tensors.items()}, file_metadata(self.config))

    @cached_property
    def digest(self) -> str:
        """sha256 of the file bytes: the adapter's content identity everywhere."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @property
    def num_params(self) -> int:
        """Trainable PRoLoRA parameters (A/B tensors; ``saved.*`` modules excluded)."""
        return sum(t.numel() for k, t in self.tensors.items() if not k.startswith(SAVED_PREFIX))

    @property
    def num_saved_params(self) -> int:
        """Parameters of the fully stored ``modules_to_save`` (e.g. a classifier head)."""
        return sum(t.numel() for k, t in self.tensors.items() if k.startswith(SAVED_PREFIX))

    @property
    def torch_dtype(self) -> torch.dtype:
        return _BY_NAME[self.config.dtype]

    def __repr__(self) -> str:
        c = self.config
        return (f"Adapter(base={c.base_model!r}, task={c.task}, r={c.r}, u={c.unshared_r}, "
                f"share=({c.share_a},{c.share_b}), modules={len(c.modules)}, "
                f"params={self.num_params})")

    # ---- files -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the file atomically; returns its sha256."""
        data = self.to_bytes()
        write_atomic(path, data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "adapter") -> Adapter:
        header = parse_adapter_header(data, source=source)  # also checks the file's size
        from safetensors.torch import load as load_safetensors

        tensors = load_safetensors(data)  # the reference reader: proves standard compatibility
        return cls(header.config, tensors)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Adapter:
        """Read and validate a zoo adapter file (never unpickles anything)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"adapter file not found: {p}")
        return cls.from_bytes(p.read_bytes(), source=str(p))

    # ---- use with a model ------------------------------------------------------------------
    def prolora_config(self) -> PRoLoRAConfig:
        return self.config.hyper

    def check_fits(self, model: nn.Module) -> None:
        """Raise AdapterMismatchError naming the module and both shapes if the base differs."""
        from zoo.surgery import check_modules_fit

        check_modules_fit(model, self.config.modules)
        for key, tensor in self.saved_tensors().items():
            path, _, name = key.rpartition(".")
            try:
                module = model.get_submodule(path)
            except AttributeError:
                raise AdapterMismatchError(
                    f"saved module {path!r} does not exist in the base model") from None
            current = module.state_dict().get(name)
            if current is None or tuple(current.shape) != tuple(tensor.shape):
                shape = None if current is None else list(current.shape)
                raise AdapterMismatchError(
                    f"saved tensor {path}.{name}: adapter has shape {list(tensor.shape)}, "
                    f"base has {shape}")

    def label_names(self) -> list[str] | None:
        """A seq-cls head's classes: the names training recorded, else generic ``LABEL_i``
        sized by the saved head (an adapter imported from PEFT); None for other tasks."""
        if self.config.task != "seq-cls":
            return None
        if self.config.label_names is not None:
            return list(self.config.label_names)
        for key, tensor in self.saved_tensors().items():
            if key.endswith(".weight") and tensor.dim() == 2:
                return [f"LABEL_{i}" for i in range(tensor.shape[0])]
        return None

    def saved_tensors(self) -> dict[str, torch.Tensor]:
        """``modules_to_save`` weights keyed by their parameter path (prefix removed)."""
        n = len(SAVED_PREFIX)
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(SAVED_PREFIX)}

    def load_weights_into(self, model: nn.Module) -> None:
        """Copy the compact tensors and saved modules into an attached model."""
        from zoo.surgery import attachment

        state = attachment(model)
        with torch.no_grad():
            for path, layer in state.layers.items():
                for part in ("A_shared", "A_unshared", "B_shared", "B_unshared"):
                    param = getattr(layer, part)
                    if param is not None:
                        param.copy_(self.tensors[f"{path}.{part}"])
            for key, tensor in self.saved_tensors().items():
                path, _, name = key.rpartition(".")
                target = model.get_submodule(path).state_dict()[name]
                target.copy_(tensor)

    def expand(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Plain LoRA pairs: module path → (A (r × h), B (o × r))."""
        from zoo.prolora import expand_a, expand_b

        c = self.config
        out = {}
        for path, mod in c.modules.items():
            a = expand_a(self.tensors.get(f"{path}.A_shared"),
                         self.tensors.get(f"{path}.A_unshared"),
                         in_features=mod.in_features, share=c.share_a,
                         stride=c.stride_a, rotation=c.rotation)
            b = expand_b(self.tensors.get(f"{path}.B_shared"),
                         self.tensors.get(f"{path}.B_unshared"),
                         out_features=mod.out_features, share=c.share_b,
                         stride=c.stride_b, rotation=c.rotation)
            out[path] = (a, b)
        return out

    def merge_into(self, model: nn.Module) -> nn.Module:
        """Fold the adapter into the model's weights permanently (returns the plain model)."""
        from zoo.merge import merge_into

        return merge_into(self, model)

    def to_peft(self, out_dir: str | os.PathLike[str]) -> Path:
        """Export as a PEFT LoRA directory (docs/adapter-format.md, "Export to PEFT LoRA")."""
        from zoo.peft_io import export_peft

        return export_peft(self, out_dir)

    @classmethod
    def from_peft(cls, directory: str | os.PathLike[str]) -> Adapter:
        """Import a PEFT LoRA directory losslessly (as PRoLoRA with u = r, no sharing)."""
        from zoo.peft_io import import_peft

        return import_peft(directory)
