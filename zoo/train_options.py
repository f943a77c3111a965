"""``TrainOptions``: the one set of optimisation settings, torch-free.

The library (``zoo.train.train_adapter``) takes it, and a job spec's ``train:`` section IS it
(``zoo.jobspec`` validates the section against these fields), so a job trains with exactly the
defaults a script gets: warmup, gradient clipping, everything. The defaults follow the paper's
recipe (docs/prolora.md: AdamW, weight decay 0, max grad norm 0.3, 3% linear warmup, lr 2e-4,
batch 16).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from zoo.errors import ConfigError

MAX_STEPS = 10**9
MAX_BATCH = 1 << 20


@dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings. Give ``max_steps`` or ``epochs`` (neither: one epoch)."""

    max_steps: int | None = None
    epochs: float | None = None
    lr: float = 2e-4
    batch_size: int = 16
    grad_accum: int = 1
    max_length: int = 128
    warmup_ratio: float = 0.03
    warmup_steps: int | None = None  # overrides warmup_ratio when set
    weight_decay: float = 0.0
    max_grad_norm: float = 0.3
    seed: int = 0
    eval_batch_size: int = 32
    checkpoint_every: int = 50  # optimizer steps between checkpoint callbacks; 0 = never
    eval_before: bool = False  # also evaluate before training: metrics baseline_* (the "before")

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.epochs is not None:
            raise ConfigError("give max_steps or epochs, not both", field="epochs")
        for name, ok, allowed in self._rules():
            if not ok:
                value = getattr(self, name)
                raise ConfigError(f"{name}={value!r} is invalid: {allowed}", field=name)

    def _rules(self) -> list[tuple[str, bool, str]]:
        """(field, holds, what is allowed) for every range rule."""
        def opt(value: Any, lo: float, hi: float) -> bool:
            return value is None or lo <= value <= hi

        return [
            ("max_steps", opt(self.max_steps, 1, MAX_STEPS), f"null or 1..{MAX_STEPS}"),
            ("epochs", opt(self.epochs, 1e-9, 1e6) and self.epochs != 0, "null or > 0"),
            ("lr", 0 < self.lr <= 10, "a number in (0, 10]"),
            ("batch_size", 1 <= self.batch_size <= MAX_BATCH, f"1..{MAX_BATCH}"),
            ("grad_accum", 1 <= self.grad_accum <= MAX_BATCH, f"1..{MAX_BATCH}"),
            ("max_length", 2 <= self.max_length <= MAX_BATCH, f"2..{MAX_BATCH}"),
            ("warmup_ratio", 0 <= self.warmup_ratio <= 1, "a number in [0, 1]"),
            ("warmup_steps", opt(self.warmup_steps, 0, MAX_STEPS), f"null or 0..{MAX_STEPS}"),
            ("weight_decay", 0 <= self.weight_decay <= 10, "a number in [0, 10]"),
            ("max_grad_norm", 0 < self.max_grad_norm <= 1e6, "a positive number"),
            ("seed", 0 <= self.seed < 2**63, "an integer in 0..2^63-1"),
            ("eval_batch_size", 1 <= self.eval_batch_size <= MAX_BATCH, f"1..{MAX_BATCH}"),
            ("checkpoint_every", 0 <= self.checkpoint_every <= MAX_STEPS,
             f"0 (never) ..{MAX_STEPS}"),
        ]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown train option(s) {', '.join(unknown)}; "
                              f"allowed: {', '.join(sorted(known))}", field=unknown[0])
        return cls(**data)

    def total_steps(self, num_examples: int) -> int:
        """Optimizer steps: ``max_steps``, or ``epochs`` worth of micro-batches / grad_accum."""
        if self.max_steps is not None:
            return self.max_steps
        micro = math.ceil(num_examples / self.batch_size)
        return max(1, math.ceil((self.epochs or 1.0) * micro / self.grad_accum))

    def lr_at(self, step: int, total: int) -> float:
        """Linear warmup to ``lr`` then linear decay to 0 (step is 0-based)."""
        warm = self.warmup_steps if self.warmup_steps is not None else math.ceil(
            self.warmup_ratio * total)
        if step < warm:
            return self.lr * (step + 1) / warm
        return self.lr * max(0.0, (total - step) / max(1, total - warm))
