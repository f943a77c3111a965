"""The zoo adapter file's metadata and shape contract (ADAPTER_FORMAT.md v1), torch-free.

Both the torch-side ``zoo.adapter.Adapter`` and the catalog (which indexes files without
importing torch) validate through here, so the contract is written once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from zoo.errors import AdapterFormatError
from zoo.safetensors_io import TensorInfo, parse_header, read_header

FORMAT = "zoo.prolora"
FORMAT_VERSION = "1"
TASKS = ("causal-lm", "seq-cls")
REQUIRED_FIELDS = {
    "base_model": str, "task": str, "r": int, "unshared_r": int, "share_a": int, "share_b": int,
    "stride_a": int, "stride_b": int, "rotation": bool, "init": str, "alpha": (int, float),
    "dropout": (int, float), "dtype": str, "modules": dict, "modules_to_save": list,
}
PARTS = ("A_shared", "A_unshared", "B_shared", "B_unshared")
SAVED_PREFIX = "saved."


def canonical_config_json(config: dict[str, Any]) -> str:
    """Keys sorted, no insignificant whitespace: part of the byte-determinism contract."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape that a v1 file with this config must hold (saved.* excluded)."""
    r, u = config["r"], config["unshared_r"]
    rs = r - u
    shapes: dict[str, tuple[int, ...]] = {}
    for path, mod in config["modules"].items():
        h, o = mod["in_features"], mod["out_features"]
        if rs > 0:
            shapes[f"{path}.A_shared"] = (rs, -(-h // config["share_a"]))
            shapes[f"{path}.B_shared"] = (-(-o // config["share_b"]), rs)
        if u > 0:
            shapes[f"{path}.A_unshared"] = (u, h)
            shapes[f"{path}.B_unshared"] = (o, u)
    return shapes


def validate_config(config: Any, *, source: str = "adapter") -> dict[str, Any]:
    """Check required fields and their types; unknown fields are allowed and ignored."""
    if not isinstance(config, dict):
        raise AdapterFormatError(f"{source}: config must be a JSON object")
    for name, typ in REQUIRED_FIELDS.items():
        if name not in config:
            raise AdapterFormatError(f"{source}: config is missing required field {name!r}")
        value = config[name]
        if typ is int and isinstance(value, bool) or not isinstance(value, typ):
            raise AdapterFormatError(f"{source}: config field {name!r} has wrong type ({value!r})")
    if config.get("base_model_digest") is not None and not isinstance(
        config["base_model_digest"], str
    ):
        raise AdapterFormatError(f"{source}: config field 'base_model_digest' must be a string or null")
    r, u = config["r"], config["unshared_r"]
    if r <= 0 or not 0 <= u <= r or config["share_a"] < 1 or config["share_b"] < 1:
        raise AdapterFormatError(
            f"{source}: invalid ranks/shares r={r} unshared_r={u} "
            f"share_a={config['share_a']} share_b={config['share_b']}"
        )
    for path, mod in config["modules"].items():
        if not isinstance(mod, dict) or not all(
            isinstance(mod.get(k), int) and mod[k] > 0 for k in ("in_features", "out_features")
        ) or mod.get("kind") not in ("linear", "conv1d"):
            raise AdapterFormatError(f"{source}: module {path!r} has an invalid description {mod!r}")
    return config


def check_tensor_shapes(
    config: dict[str, Any], shapes: dict[str, tuple[int, ...]], *, source: str = "adapter"
) -> None:
    """Every expected tensor present with its shape, nothing unexpected (saved.* aside)."""
    expected = expected_shapes(config)
    for name, shape in expected.items():
        if name not in shapes:
            raise AdapterFormatError(f"{source}: missing tensor {name} (expected shape {list(shape)})")
        if tuple(shapes[name]) != shape:
            raise AdapterFormatError(
                f"{source}: tensor {name} has shape {list(shapes[name])}, "
                f"config says {list(shape)}"
            )
    extra = sorted(n for n in shapes if n not in expected and not n.startswith(SAVED_PREFIX))
    if extra:
        raise AdapterFormatError(f"{source}: unexpected tensor(s) {', '.join(extra[:5])}")


@dataclass(frozen=True)
class AdapterHeader:
    """What the header of a zoo adapter file says, validated."""

    config: dict[str, Any]
    tensors: dict[str, TensorInfo]
    data_start: int

    @property
    def file_size(self) -> int:
        """The byte size of a whole file with this header (header plus data section)."""
        return self.data_start + max((t.end for t in self.tensors.values()), default=0)

    @property
    def num_params(self) -> int:
        total = 0
        for info in self.tensors.values():
            n = 1
            for d in info.shape:
                n *= d
            total += n
        return total


def header_from_parts(
    metadata: dict[str, str], tensors: dict[str, TensorInfo], data_start: int, *, source: str
) -> AdapterHeader:
    fmt = metadata.get("format")
    if fmt != FORMAT:
        raise AdapterFormatError(f"{source}: unknown format {fmt!r} (expected {FORMAT!r})")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise AdapterFormatError(
            f"{source}: unknown format_version {version!r}; this zoo reads version {FORMAT_VERSION}"
        )
    try:
        config = json.loads(metadata.get("config", ""))
    except json.JSONDecodeError:
        raise AdapterFormatError(f"{source}: config metadata is not valid JSON") from None
    validate_config(config, source=source)
    check_tensor_shapes(config, {k: v.shape for k, v in tensors.items()}, source=source)
    return AdapterHeader(config=config, tensors=tensors, data_start=data_start)


def read_adapter_header(path: str | os.PathLike[str]) -> AdapterHeader:
    """Read and validate a zoo adapter file's header without loading tensors (no torch)."""
    metadata, tensors, data_start = read_header(path)
    return header_from_parts(metadata, tensors, data_start, source=str(path))


def parse_adapter_header(blob: bytes, *, source: str = "adapter") -> AdapterHeader:
    """Same as read_adapter_header, from the file's bytes."""
    metadata, tensors, data_start = parse_header(blob, source=source)
    return header_from_parts(metadata, tensors, data_start, source=source)
