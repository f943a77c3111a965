"""Evaluate many adapters on one base model in one process, rows of many adapters per batch.

Why: evaluating adapters one by one (load, run, unload — PEFT's way) spends its time on
loading and small batches. Here the base model is loaded once, adapters come in groups of
``group_size`` (:class:`zoo.multi_adapter.MultiAdapterModel`), and every batch holds rows of
many adapters: the frozen base projections run once per batch.

Row plan: examples are sorted by length (longest first) and enumerated example-major — the
rows of one batch are the SAME example (or a few of similar length) under consecutive
adapters, so a batch has (almost) no padding and its slots are a contiguous range (the
stacked weights are used as a view, nothing is gathered).

Metrics (the same definitions as :mod:`zoo.evaluate`, computed per row then summed per adapter):
``causal-lm``: ``loss`` (token mean over completion tokens), ``perplexity``, ``exact_match``
(argmax under teacher forcing equals every completion token); ``seq-cls``: ``loss``,
``accuracy``. One adapter that does not fit the base becomes an error result; the others go on.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoo.errors import ConfigError, ZooError

if TYPE_CHECKING:
    from zoo.adapter import Adapter
    from zoo.datasets import Encoded

TASK_METRICS = {"causal-lm": ("loss", "perplexity", "exact_match"),
                "seq-cls": ("loss", "accuracy")}
ALL_METRICS = ("loss", "perplexity", "exact_match", "accuracy")
LOWER_IS_BETTER = ("loss", "perplexity")  # every other metric ranks higher-is-better


@dataclass
class AdapterResult:
    """Metrics of the adapter at ``index`` of the input list, or the error that stopped it."""

    index: int
    metrics: dict[str, float] = field(default_factory=dict)
    examples: int = 0
    elapsed_s: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class Dataset:
    """A tokenised evaluation set plus its fingerprint (sha256 of the file)."""

    task: str
    encoded: Encoded
    fingerprint: str
    order: tuple[int, ...]  # example indices, longest first


def parse_metrics(text: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"loss,accuracy"`` -> ("loss", "accuracy"); None means every metric of the task."""
    if text is None:
        return None
    names = [m.strip() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in names if m not in ALL_METRICS]
    if bad or not names:
        raise ConfigError(f"metrics={text!r} is invalid: choose from {', '.join(ALL_METRICS)}")
    return tuple(dict.fromkeys(names))


def load_dataset(task: str, path: str | os.PathLike[str], tokenizer: Any, *,
                 max_length: int = 128, max_examples: int | None = None,
                 label_names: Sequence[str] | None = None) -> Dataset:
    """Parse and tokenise once; every adapter of the run is scored on these rows."""
    from zoo.datasets import load_and_encode

    encoded, parsed = load_and_encode(task, path, tokenizer, max_length,
                                      label_names=label_names, max_examples=max_examples)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded.input_ids[i]))
    return Dataset(task, encoded, parsed.fingerprint, tuple(order))


def row_plan(n_slots: int, order: Sequence[int], batch_size: int) -> list[list[tuple[int, int]]]:
    """Batches of (slot, example) rows, example-major: one example under consecutive slots."""
    rows = [(k, ex) for ex in order for k in range(n_slots)]
    return [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]


class _Totals:
    """Per-slot sums: loss, token/example counts, hits."""

    def __init__(self, n: int) -> None:
        self.loss = [0.0] * n
        self.count = [0] * n
        self.hits = [0] * n
        self.examples = [0] * n

    def add(self, slots: Sequence[int], loss: Any, count: Any, hits: Any) -> None:
        for slot, lo, c, h in zip(slots, loss.tolist(), count.tolist(), hits.tolist(), strict=True):
            self.loss[slot] += lo
            self.count[slot] += int(c)
            self.hits[slot] += int(h)
            self.examples[slot] += 1

    def metrics(self, slot: int, task: str) -> dict[str, float]:
        loss = self.loss[slot] / max(self.count[slot], 1)
        rate = self.hits[slot] / max(self.examples[slot], 1)
        if task == "seq-cls":
            return {"loss": loss, "accuracy": rate}
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "exact_match": rate}


def score_rows(task: str, logits: Any, labels: Any) -> tuple[Any, Any, Any]:
    """Per row: (loss sum, scored count, hit) — the definitions of :mod:`zoo.evaluate`."""
    import torch.nn.functional as F

    from zoo.datasets import IGNORE_INDEX

    if task == "seq-cls":
        logits = logits.float()  # (N, L)
        loss = F.cross_entropy(logits, labels, reduction="none")  # (N,)
        return loss, labels.new_ones(labels.shape), logits.argmax(-1) == labels
    logits = logits[:, :-1, :].float()  # (N, T-1, V): position t predicts token t+1
    targets = labels[:, 1:]  # (N, T-1)
    tok = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX,
                          reduction="none")  # (N, T-1), 0 where ignored
    mask = targets != IGNORE_INDEX
    correct = ((logits.argmax(-1) == targets) | ~mask).all(dim=1) & mask.any(dim=1)
    return tok.sum(dim=1), mask.sum(dim=1), correct


def run_group(model: Any, dataset: Dataset, n_slots: int, route: Callable[[list[int]], Any],
               *, batch_size: int, pad: int, autocast: Any) -> _Totals:
    """Score ``n_slots`` adapters over the row plan; ``route(slots)`` sets up each forward."""
    import torch

    from zoo.datasets import collate

    device = next(model.parameters()).device
    totals = _Totals(n_slots)
    with torch.no_grad(), autocast:
        for batch_rows in row_plan(n_slots, dataset.order, batch_size):
            slots = [k for k, _ in batch_rows]
            batch = collate(dataset.encoded, [ex for _, ex in batch_rows], pad)
            labels = batch.pop("labels").to(device)
            with route(slots):
                out = model(**{k: v.to(device) for k, v in batch.items()})
            totals.add(slots, *score_rows(dataset.task, out.logits, labels))
    return totals


def evaluate_many(
    model: Any, tokenizer: Any, dataset: Dataset, adapters: Sequence[Adapter], *,
    batch_size: int = 32, group_size: int | None = None, metrics: Sequence[str] | None = None,
    mode: str = "bmm", autocast_dtype: str | None = None,
    on_result: Callable[[AdapterResult], None] | None = None,
) -> list[AdapterResult]:
    """Score every adapter on ``dataset``; results in input order (errors as results).

    ``group_size``: adapters stacked per bank (default: ``batch_size``, so a batch is one
    example under ``batch_size`` adapters). ``autocast_dtype`` e.g. ``"bfloat16"`` on CUDA.
    """
    from zoo.datasets import pad_id
    from zoo.evaluate import autocast_context

    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} is invalid: must be >= 1")
    wanted = [m for m in (metrics or ALL_METRICS) if m in TASK_METRICS[dataset.task]]
    if not wanted:
        raise ConfigError(f"none of metrics {list(metrics or [])} applies to {dataset.task}; "
                          f"choose from {', '.join(TASK_METRICS[dataset.task])}")
    group_size = group_size or batch_size
    device = str(next(model.parameters()).device)
    pad = pad_id(tokenizer)
    results: list[AdapterResult | None] = [None] * len(adapters)
    was_training = model.training
    model.eval()

    def finish(result: AdapterResult) -> None:
        results[result.index] = result
        if on_result is not None:
            on_result(result)

    def run(members: list[int], route_of: Callable[[], Any]) -> None:
        start = time.perf_counter()
        with route_of() as route:
            totals = run_group(model, dataset, len(members), route, batch_size=batch_size,
                                pad=pad, autocast=autocast_context(device, autocast_dtype))
        each = (time.perf_counter() - start) / len(members)
        for slot, index in enumerate(members):
            values = totals.metrics(slot, dataset.task)
            finish(AdapterResult(index, {m: values[m] for m in wanted},
                                 totals.examples[slot], each))

    ok: list[int] = []
    for i, adapter in enumerate(adapters):
        error = _precheck(adapter, model, dataset.task)
        if error:
            finish(AdapterResult(i, error=error))
        else:
            ok.append(i)
    try:
        for members in plan_groups([adapters[i] for i in ok], group_size):
            members = [ok[j] for j in members]
            try:
                run(members, lambda m=members: _bank(model, [adapters[i] for i in m], mode))
            except _ADAPTER_FAULTS:  # not batchable, or one member breaks the bank: each alone
                for i in members:
                    try:
                        run([i], lambda i=i: _alone(model, adapters[i]))
                    except _ADAPTER_FAULTS as exc:  # this adapter's fault only
                        finish(AdapterResult(i, error=_describe(exc)))
    finally:
        model.train(was_training)
    return [r for r in results if r is not None]


# What one adapter can make a forward raise (a tensor op on its weights, a bad index, a
# zoo check); a programming error elsewhere still propagates.
_ADAPTER_FAULTS = (ZooError, RuntimeError, ValueError, IndexError, KeyError)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, ZooError) else f"{type(exc).__name__}: {text}"[:500]


def plan_groups(adapters: Sequence[Adapter], group_size: int) -> list[list[int]]:
    """Indices in banks of at most ``group_size``: one rank and target set per bank.

    A bank pads every slot to its largest rank and computes every module for every slot, so
    mixing configs wastes FLOPs; a smaller homogeneous bank still fills its batches (rows of
    several examples per batch). Measured in bench/eval_bench.py.
    """
    by_key: dict[tuple[Any, ...], list[int]] = {}
    for i, adapter in enumerate(adapters):
        key = (adapter.config.r, tuple(sorted(adapter.config.modules)))
        by_key.setdefault(key, []).append(i)
    return [ids[g:g + group_size] for _, ids in sorted(by_key.items())
            for g in range(0, len(ids), group_size)]


def _precheck(adapter: Adapter, model: Any, task: str) -> str | None:
    if adapter.config.task != task:
        return f"adapter task {adapter.config.task!r} differs from the dataset task {task!r}"
    try:
        adapter.check_fits(model)
    except ZooError as exc:
        return str(exc)
    return None


@contextlib.contextmanager
def _bank(model: Any, adapters: list[Adapter], mode: str) -> Any:
    from zoo.multi_adapter import MultiAdapterModel

    with MultiAdapterModel(model, adapters, mode=mode) as multi:
        yield multi.rows


@contextlib.contextmanager
def _alone(model: Any, adapter: Adapter) -> Any:
    import zoo

    zoo.attach(model, adapter)
    try:
        yield lambda slots: contextlib.nullcontext()
    finally:
        zoo.detach(model)


def load_base_for(adapter: Adapter, base: str | os.PathLike[str], *,
                  device: str | None = None) -> tuple[Any, Any, Any]:
    """(model, tokenizer, DeviceChoice) of the base directory ``base`` for an adapter's task
    (a seq-cls head sized by its labels): CUDA + bf16 when usable, else CPU.

    The same code path on both: :func:`zoo.device.select_device` decides, the base is loaded
    in ``choice.base_dtype`` and :func:`evaluate_many` gets ``choice.autocast_dtype``. The
    caller says where the base is (the zoo: its registered location); the name written in the
    adapter is never used to find it.
    """
    from zoo.base_models import load_base
    from zoo.device import select_device

    choice = select_device(device)
    cfg = adapter.config
    model, tokenizer = load_base(base, cfg.task,
                                 label_names=adapter.label_names(),
                                 dtype=choice.base_dtype, device=choice.device)
    return model, tokenizer, choice
