"""The zoo adapter file's header contract (docs/adapter-format.md, version 1), torch-free.

Both the torch-side ``zoo.adapter.Adapter`` and the catalog (which indexes files without
importing torch) validate through here, so the contract is written once: the format marker and
version, the config (:class:`zoo.adapter_config.AdapterConfig`), and every tensor's presence,
shape and dtype against that config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from zoo.adapter_config import AdapterConfig
from zoo.errors import AdapterFormatError
from zoo.safetensors_io import TensorInfo, parse_header, read_header

FORMAT = "zoo.prolora"
FORMAT_VERSION = "1"
PARTS = ("A_shared", "A_unshared", "B_shared", "B_unshared")
SAVED_PREFIX = "saved."
# config dtype -> safetensors dtype code of the A/B tensors
DTYPE_CODES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}


def file_metadata(config: AdapterConfig) -> dict[str, str]:
    """The ``__metadata__`` of a file holding an adapter with this config."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_json()}


def check_tensors(config: AdapterConfig, tensors: Mapping[str, tuple[tuple[int, ...], str]], *,
                  source: str = "adapter") -> None:
    """Every expected tensor present with its shape and the config's dtype (a safetensors
    code such as ``F32``), nothing unexpected (``saved.*`` aside)."""
    expected = config.expected_shapes()
    want_dtype = DTYPE_CODES[config.dtype]
    for name, shape in expected.items():
        if name not in tensors:
            raise AdapterFormatError(f"{source}: missing tensor {name} (expected shape {list(shape)})")
        got_shape, got_dtype = tensors[name]
        if tuple(got_shape) != shape:
            raise AdapterFormatError(f"{source}: tensor {name} has shape {list(got_shape)}, "
                                     f"config says {list(shape)}")
        if got_dtype != want_dtype:
            raise AdapterFormatError(f"{source}: tensor {name} is {got_dtype}, but config dtype "
                                     f"is {config.dtype} ({want_dtype})")
    extra = sorted(n for n in tensors if n not in expected and not n.startswith(SAVED_PREFIX))
    if extra:
        raise AdapterFormatError(f"{source}: unexpected tensor(s) {', '.join(extra[:5])}")


@dataclass(frozen=True)
class AdapterHeader:
    """What the header of a zoo adapter file says, validated."""

    config: AdapterConfig
    tensors: dict[str, TensorInfo]
    data_start: int

    @property
    def file_size(self) -> int:
        """The byte size of a whole file with this header (header plus data section)."""
        return self.data_start + max((t.end for t in self.tensors.values()), default=0)


def header_from_parts(metadata: dict[str, str], tensors: dict[str, TensorInfo], data_start: int,
                      *, source: str) -> AdapterHeader:
    fmt = metadata.get("format")
    if fmt != FORMAT:
        raise AdapterFormatError(f"{source}: unknown format {fmt!r} (expected {FORMAT!r})")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise AdapterFormatError(
            f"{source}: unknown format_version {version!r}; this zoo reads version {FORMAT_VERSION}"
        )
    config = AdapterConfig.from_json(metadata.get("config", ""), source=source)
    check_tensors(config, {k: (v.shape, v.dtype) for k, v in tensors.items()}, source=source)
    return AdapterHeader(config=config, tensors=tensors, data_start=data_start)


def read_adapter_header(path: str | os.PathLike[str]) -> AdapterHeader:
    """Read and validate a zoo adapter file's header without loading tensors (no torch)."""
    metadata, tensors, data_start = read_header(path)
    return header_from_parts(metadata, tensors, data_start, source=str(path))


def parse_adapter_header(blob: bytes, *, source: str = "adapter") -> AdapterHeader:
    """Same as read_adapter_header, from the file's bytes (all of them: the size is checked)."""
    metadata, tensors, data_start = parse_header(blob, source=source)
    header = header_from_parts(metadata, tensors, data_start, source=source)
    if header.file_size != len(blob):
        raise AdapterFormatError(f"{source}: {len(blob)} bytes, but its header describes "
                                 f"{header.file_size}")
    return header
