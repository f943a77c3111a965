"""What ``zoo push`` reads: the bytes of a zoo adapter file, or of a PEFT LoRA directory
converted to one. Used both by direct publishing and by the team-server client, so a PEFT
directory pushed through ``ZOO_URL`` becomes the same bytes (and digest) as a direct push."""

from __future__ import annotations

import os
from pathlib import Path

from zoo.errors import IntegrityError


def read_adapter_source(path: str | os.PathLike[str]) -> bytes:
    """The bytes of an adapter file (or a PEFT directory converted to one), read once.

    A file that changes while it is read (size, mtime or inode differ before and after) is
    refused: its bytes would be a mix of two versions."""
    path = Path(path)
    if path.is_dir():
        from zoo.peft_io import check_peft_dir

        check_peft_dir(path)  # refuses a pickle-only directory before anything is loaded
        from zoo.adapter import Adapter

        return Adapter.from_peft(path).to_bytes()
    try:
        before = os.stat(path)
        with open(path, "rb") as fh:
            data = fh.read()
            after = os.fstat(fh.fileno())
    except FileNotFoundError:
        raise FileNotFoundError(f"nothing to push at {path}: no such file or directory") from None
    if (before.st_size, before.st_mtime_ns, before.st_ino) != \
            (after.st_size, after.st_mtime_ns, after.st_ino) or len(data) != after.st_size:
        raise IntegrityError(f"{path} changed while it was being read; push it again once "
                             "nothing writes it")
    return data
