"""Training and evaluation data: parsing, label mapping, tokenisation, batching.

Two tasks, two file shapes:

- ``causal-lm``: JSONL, one ``{"prompt": ..., "completion": ...}`` object per line. The loss
  covers only the completion: prompt and padding positions get label -100 (ignored by
  cross-entropy), so the adapter learns to answer, not to echo the prompt.
- ``seq-cls``: JSONL or CSV with ``text`` and ``label``. Labels may be integers (used as class
  ids) or strings (sorted, then numbered) — see :func:`label_names_for`; the mapping is recorded
  in the adapter so evaluation and serving agree with training.

A dataset's fingerprint is the sha256 of the file bytes: the catalog keys evaluation results and
training provenance by it. Errors are :class:`zoo.errors.DataError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import DataError

TASKS = ("causal-lm", "seq-cls")
IGNORE_INDEX = -100
_COLUMNS = {"causal-lm": ("prompt", "completion"), "seq-cls": ("text", "label")}


def check_task(task: str) -> str:
    """Return ``task`` if known, else raise a ConfigError-family error listing the choices."""
    if task not in TASKS:
        raise DataError(f"task={task!r} is invalid: must be one of {', '.join(TASKS)}")
    return task


def fingerprint(path: str | os.PathLike[str]) -> str:
    """sha256 hex of the file's bytes (streamed)."""
    from zoo.files import sha256_file

    try:
        return sha256_file(path)[0]
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None


def _read_text(path: str | os.PathLike[str]) -> str:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file not found: {p}")
    try:
        return p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_records(path: str | os.PathLike[str], task: str) -> list[dict[str, Any]]:
    """Rows of a JSONL (any suffix but .csv/.tsv) or CSV/TSV file, with the task's columns checked."""
    check_task(task)
    text = _read_text(path)
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv"):
        if task != "seq-cls":
            raise DataError(f"{path}: CSV is supported for seq-cls only; use JSONL for {task}")
        rows = _read_csv(path, text, "\t" if suffix == ".tsv" else ",")
    else:
        rows = _read_jsonl(path, text)
    if not rows:
        raise DataError(f"{path}: no examples (the file is empty)")
    return rows


def _read_jsonl(path: str | os.PathLike[str], text: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: bad JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        row["__line__"] = lineno
        rows.append(row)
    return rows


def _read_csv(path: str | os.PathLike[str], text: str, delimiter: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    if not reader.fieldnames:
        raise DataError(f"{path}: no examples (the file is empty)")
    rows: list[dict[str, Any]] = []
    try:
        for row in reader:
            if None in row:
                raise DataError(f"{path}:{reader.line_num}: more fields than the header has")
            row = {k: v for k, v in row.items() if k is not None}
            if all(v in (None, "") for v in row.values()):
                continue
            row["__line__"] = reader.line_num
            rows.append(row)
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: bad CSV ({exc})") from None
    return rows


def _field(path: str | os.PathLike[str], row: dict[str, Any], name: str) -> Any:
    if name not in row or row[name] is None:
        cols = ", ".join(sorted(k for k in row if k != "__line__")) or "none"
        raise DataError(f"{path}:{row['__line__']}: missing column {name!r} (columns: {cols})")
    return row[name]


def _text(path: str | os.PathLike[str], row: dict[str, Any], name: str) -> str:
    value = _field(path, row, name)
    if not isinstance(value, str):
        raise DataError(
            f"{path}:{row['__line__']}: column {name!r} must be a string, got {type(value).__name__}"
        )
    return value


# ---------------------------------------------------------------------------------------------
# seq-cls


@dataclass(frozen=True)
class ClsData:
    """Texts with integer class ids and the names of those ids (index = id)."""

    texts: list[str]
    labels: list[int]
    label_names: list[str]
    fingerprint: str


def _label_key(path: str | os.PathLike[str], row: dict[str, Any]) -> str:
    value = _field(path, row, "label")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DataError(
            f"{path}:{row['__line__']}: label must be a string or an integer, got {value!r}"
        )
    key = str(value).strip()
    if not key:
        raise DataError(f"{path}:{row['__line__']}: empty label")
    if isinstance(value, int) and value < 0:
        raise DataError(f"{path}:{row['__line__']}: integer label must be >= 0, got {value}")
    return key


def label_names_for(keys: Sequence[str]) -> list[str]:
    """The id -> name list for a set of labels.

    All labels non-negative integers ("0", "3", or JSON ints): the integer IS the id, names are
    "0".."max". Otherwise the distinct strings sorted, numbered in that order — deterministic,
    so two files with the same label set map the same way.
    """
    distinct = set(keys)
    if all(k.isdigit() for k in distinct):
        return [str(i) for i in range(max(int(k) for k in distinct) + 1)]
    return sorted(distinct)


def load_seq_cls(
    path: str | os.PathLike[str], *, label_names: Sequence[str] | None = None,
    max_examples: int | None = None,
) -> ClsData:
    """Read a seq-cls file; with ``label_names`` (from training) map labels through them."""
    rows = read_records(path, "seq-cls")
    if max_examples is not None:
        rows = rows[:max_examples]
    texts = [_text(path, row, "text") for row in rows]
    keys = [_label_key(path, row) for row in rows]
    names = list(label_names) if label_names is not None else label_names_for(keys)
    index = {name: i for i, name in enumerate(names)}
    labels = []
    for row, key in zip(rows, keys, strict=True):
        if key not in index and key.isdigit() and str(int(key)) in index:
            key = str(int(key))  # "07" -> "7"
        if key not in index:
            raise DataError(
                f"{path}:{row['__line__']}: label {key!r} is not one of the training labels "
                f"({', '.join(names)})"
            )
        labels.append(index[key])
    if len(names) < 2:
        raise DataError(f"{path}: seq-cls needs at least 2 classes, found {names}")
    return ClsData(texts, labels, names, fingerprint(path))


# ---------------------------------------------------------------------------------------------
# causal-lm


@dataclass(frozen=True)
class LMData:
    prompts: list[str]
    completions: list[str]
    fingerprint: str


def load_causal_lm(path: str | os.PathLike[str], *, max_examples: int | None = None) -> LMData:
    rows = read_records(path, "causal-lm")
    if max_examples is not None:
        rows = rows[:max_examples]
    prompts = [_text(path, row, "prompt") for row in rows]
    completions = [_text(path, row, "completion") for row in rows]
    for row, completion in zip(rows, completions, strict=True):
        if not completion:
            raise DataError(f"{path}:{row['__line__']}: empty completion (nothing to learn)")
    return LMData(prompts, completions, fingerprint(path))


# ---------------------------------------------------------------------------------------------
# tokenisation and batching


@dataclass(frozen=True)
class Encoded:
    """Unpadded token ids per example plus a per-example target (label id or label list)."""

    input_ids: list[list[int]]
    labels: list[Any]  # seq-cls: int; causal-lm: list[int] aligned with input_ids
    token_type_ids: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_seq_cls(data: ClsData, tokenizer: Any, max_length: int) -> Encoded:
    enc = tokenizer(data.texts, truncation=True, max_length=max_length)
    tt = enc.get("token_type_ids")
    return Encoded([list(x) for x in enc["input_ids"]], list(data.labels),
                   [list(x) for x in tt] if tt is not None else None)


def encode_causal_lm(data: LMData, tokenizer: Any, max_length: int) -> Encoded:
    """prompt tokens (with the tokenizer's special prefix) + completion tokens + EOS.

    Tokenised separately so the boundary is exact. Too long: the prompt loses tokens from its
    left first; the completion is cut on the right only if it alone exceeds ``max_length``.
    """
    prompts = tokenizer(data.prompts, add_special_tokens=True)["input_ids"]
    completions = tokenizer(data.completions, add_special_tokens=False)["input_ids"]
    eos = getattr(tokenizer, "eos_token_id", None)
    ids_out, labels_out = [], []
    for p, c in zip(prompts, completions, strict=True):
        c = list(c) + ([eos] if eos is not None else [])
        c = c[:max_length]
        p = list(p)[max(0, len(p) + len(c) - max_length):]
        ids_out.append(p + c)
        labels_out.append([IGNORE_INDEX] * len(p) + c)
    return Encoded(ids_out, labels_out)


def pad_id(tokenizer: Any) -> int:
    for attr in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


def collate(encoded: Encoded, indices: Sequence[int], pad_token_id: int) -> dict[str, Any]:
    """Right-padded tensors for the examples at ``indices``; label -100 on padding."""
    import torch

    rows = [encoded.input_ids[i] for i in indices]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[b, : len(r)] = 1
    batch: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
    if encoded.token_type_ids is not None:
        tt = torch.zeros((len(rows), width), dtype=torch.long)
        for b, i in enumerate(indices):
            t = encoded.token_type_ids[i]
            tt[b, : len(t)] = torch.tensor(t, dtype=torch.long)
        batch["token_type_ids"] = tt
    first = encoded.labels[indices[0]]
    if isinstance(first, list):
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for b, i in enumerate(indices):
            lab = encoded.labels[i]
            labels[b, : len(lab)] = torch.tensor(lab, dtype=torch.long)
    else:
        labels = torch.tensor([encoded.labels[i] for i in indices], dtype=torch.long)  # (B,)
    batch["labels"] = labels
    return batch


def load_and_encode(
    task: str, path: str | os.PathLike[str], tokenizer: Any, max_length: int, *,
    label_names: Sequence[str] | None = None, max_examples: int | None = None,
) -> tuple[Encoded, ClsData | LMData]:
    """Parse ``path`` for ``task`` and tokenise it; returns (encoded, parsed)."""
    check_task(task)
    if task == "seq-cls":
        cls = load_seq_cls(path, label_names=label_names, max_examples=max_examples)
        return encode_seq_cls(cls, tokenizer, max_length), cls
    lm = load_causal_lm(path, max_examples=max_examples)
    return encode_causal_lm(lm, tokenizer, max_length), lm
