"""A canonical safetensors writer and a strict header reader, torch-free.

Why our own writer: the adapter's sha256 is its identity (docs/adapter-format.md), so the same
adapter must always give the same bytes. Some safetensors writers emit ``__metadata__`` keys in
varying order; here the header is JSON with sorted keys and no whitespace, tensors are laid out
in sorted key order, and the header is space-padded to 8 bytes, exactly as the format allows.
Any safetensors reader (``safetensors.safe_open``) reads what we write.

The reader only parses the header, so the catalog can index a file without importing torch.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import AdapterFormatError
from zoo.untrusted import UntrustedInputError, load_json

MAX_HEADER_BYTES = 8 * 1024 * 1024  # a 70B model's adapter header with every projection: ~0.2 MB
MAX_DIMS = 8
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}
DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1,
}


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    start: int  # offset in the data section
    end: int


@dataclass(frozen=True)
class RawTensor:
    """A tensor as bytes: what the writer needs, so this module stays torch-free."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes


def encode(tensors: Mapping[str, RawTensor], metadata: Mapping[str, str]) -> bytes:
    """The canonical file bytes for ``tensors`` and string ``metadata``."""
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        header[name] = {
            "data_offsets": [offset, offset + len(t.data)],
            "dtype": t.dtype,
            "shape": list(t.shape),
        }
        offset += len(t.data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * (-len(text) % 8)
    parts = [struct.pack("<Q", len(text)), text]
    parts.extend(tensors[name].data for name in sorted(tensors))
    return b"".join(parts)


def parse_header(blob: bytes, *, source: str = "file") -> tuple[dict[str, str], dict[str, TensorInfo], int]:
    """Parse and check a safetensors header from the file's leading bytes.

    Returns (metadata, tensors, data_start). Raises AdapterFormatError for anything that is not
    a well-formed safetensors file: a pickle, a zip, a truncated file, a header over
    ``MAX_HEADER_BYTES`` or nested too deep, negative or non-integer dims, byte ranges that
    overlap, leave holes or do not match their shape.
    """
    if len(blob) < 8:
        raise AdapterFormatError(f"{source}: not a safetensors file (only {len(blob)} bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    if blob[:2] == b"\x80\x02" or blob[:2] == b"PK" or n == 0:
        raise AdapterFormatError(
            f"{source}: not a safetensors file (pickle/zip or garbage header); "
            "the zoo never loads pickles"
        )
    if n > MAX_HEADER_BYTES:
        raise AdapterFormatError(f"{source}: header is {n} bytes; at most {MAX_HEADER_BYTES}")
    if len(blob) < 8 + n:
        raise AdapterFormatError(f"{source}: truncated safetensors header")
    try:  # no generic depth walk: every entry's shape is checked exactly below
        header = load_json(blob[8 : 8 + n], max_bytes=MAX_HEADER_BYTES, max_depth=None)
    except UntrustedInputError as exc:
        raise AdapterFormatError(f"{source}: not a safetensors file (header {exc})") from None
    if not isinstance(header, dict):
        raise AdapterFormatError(f"{source}: not a safetensors file (header is not an object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise AdapterFormatError(f"{source}: __metadata__ must map strings to strings")
    tensors = {name: _tensor_info(name, info, source) for name, info in header.items()}
    _check_layout(tensors, source)
    return metadata, tensors, 8 + n


def _is_index(value: object) -> bool:
    return type(value) is int and value >= 0


def _tensor_info(name: str, info: object, source: str) -> TensorInfo:
    """One header entry, checked on its own: dtype, dims, and a byte range fitting the shape."""
    if type(info) is not dict or info.keys() != _ENTRY_KEYS:
        raise AdapterFormatError(f"{source}: malformed entry for tensor {name!r} (exactly "
                                 "dtype, shape and data_offsets)")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if type(dtype) is not str or dtype not in DTYPE_SIZES:
        raise AdapterFormatError(f"{source}: tensor {name!r} has unsupported dtype {dtype!r}")
    if type(shape) is not list or len(shape) > MAX_DIMS or not all(map(_is_index, shape)):
        raise AdapterFormatError(f"{source}: tensor {name!r} has an invalid shape "
                                 f"(at most {MAX_DIMS} non-negative integer dims)")
    if type(offsets) is not list or len(offsets) != 2 or not all(map(_is_index, offsets)):
        raise AdapterFormatError(f"{source}: tensor {name!r} has invalid data_offsets")
    count = 1
    for dim in shape:
        count *= dim
    start, end = offsets
    if end - start != count * DTYPE_SIZES[dtype]:
        raise AdapterFormatError(f"{source}: tensor {name!r} byte range does not match its shape")
    return TensorInfo(dtype, tuple(shape), start, end)


def _check_layout(tensors: dict[str, TensorInfo], source: str) -> None:
    """The byte ranges tile the data section: no overlap, no hole (as safetensors requires)."""
    position = 0
    for name, info in sorted(tensors.items(), key=lambda item: (item[1].start, item[1].end)):
        if info.start != position:
            what = "overlaps another tensor" if info.start < position else "leaves a gap before it"
            raise AdapterFormatError(f"{source}: tensor {name!r} {what} (offset {info.start}, "
                                     f"expected {position})")
        position = info.end


def read_header(path: str | os.PathLike[str]) -> tuple[dict[str, str], dict[str, TensorInfo], int]:
    """Read only the header of a safetensors file, checking the data section's size."""
    p = Path(path)
    size = p.stat().st_size
    with p.open("rb") as fh:
        head = fh.read(8)
        if len(head) == 8:
            (n,) = struct.unpack("<Q", head)
            if 0 < n <= MAX_HEADER_BYTES:
                head += fh.read(n)
    metadata, tensors, data_start = parse_header(head, source=str(p))
    data_len = max((t.end for t in tensors.values()), default=0)
    if data_start + data_len != size:
        raise AdapterFormatError(
            f"{p}: file is {size} bytes but its header describes {data_start + data_len}"
        )
    return metadata, tensors, data_start
