"""A canonical safetensors writer and a strict header reader, torch-free.

Why our own writer: the adapter's sha256 is its identity (ADAPTER_FORMAT.md), so the same
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
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import AdapterFormatError

MAX_HEADER_BYTES = 100 * 1024 * 1024
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


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes by temp file in the same directory, fsync, then ``os.replace``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".incomplete", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def parse_header(blob: bytes, *, source: str = "file") -> tuple[dict[str, str], dict[str, TensorInfo], int]:
    """Parse and check a safetensors header from the file's leading bytes.

    Returns (metadata, tensors, data_start). Raises AdapterFormatError for anything that is not
    a well-formed safetensors file (a pickle, a zip, a truncated file, overlapping offsets).
    """
    if len(blob) < 8:
        raise AdapterFormatError(f"{source}: not a safetensors file (only {len(blob)} bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    if blob[:2] == b"\x80\x02" or blob[:2] == b"PK" or n > MAX_HEADER_BYTES or n == 0:
        raise AdapterFormatError(
            f"{source}: not a safetensors file (pickle/zip or garbage header); "
            "the zoo never loads pickles"
        )
    if len(blob) < 8 + n:
        raise AdapterFormatError(f"{source}: truncated safetensors header")
    try:
        header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise AdapterFormatError(f"{source}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise AdapterFormatError(f"{source}: not a safetensors file (header is not an object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise AdapterFormatError(f"{source}: __metadata__ must map strings to strings")
    tensors: dict[str, TensorInfo] = {}
    for name, info in header.items():
        try:
            dtype, shape, (start, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise AdapterFormatError(f"{source}: malformed entry for tensor {name!r}") from None
        if dtype not in DTYPE_SIZES:
            raise AdapterFormatError(f"{source}: tensor {name!r} has unsupported dtype {dtype!r}")
        count = 1
        for dim in shape:
            count *= int(dim)
        if end - start != count * DTYPE_SIZES[dtype] or start < 0:
            raise AdapterFormatError(f"{source}: tensor {name!r} byte range does not match its shape")
        tensors[name] = TensorInfo(dtype, tuple(int(d) for d in shape), int(start), int(end))
    return metadata, tensors, 8 + n


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
