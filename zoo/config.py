"""PRoLoRA hyperparameters: a frozen, flat, torch-free config.

Semantics follow docs/prolora.md (Wang et al., ACL 2024, arXiv 2402.16902, and the authors' code):
``r`` total rank, ``unshared_r`` ranks kept unshared (stored last), ``share_a``/``share_b`` the
broadcast ratios along the input/output hidden axes, rotation strides
``max((r - unshared_r) // share, 1)`` unless overridden, scaling ``alpha / r``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from zoo.errors import ConfigError

INIT_CHOICES = ("rectified", "chunk-fan")
MAX_RANK = 1 << 16  # far above any LoRA rank in use; keeps every count inside a 32-bit column
MAX_SHARE = 1 << 24  # a sharing ratio or stride cannot exceed a layer width


def _fail(name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{name}={value!r} is invalid: {allowed}", field=name)


@dataclass(frozen=True)
class PRoLoRAConfig:
    """How to adapt a model. ``target_modules``: module-name suffixes, or one regex string."""

    r: int = 8
    unshared_r: int = 1
    share_a: int = 2
    share_b: int = 2
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] | str = ("q_proj", "v_proj")
    stride_a: int | None = None
    stride_b: int | None = None
    rotation: bool = True
    init: str = "rectified"
    modules_to_save: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # Lists are accepted for convenience and frozen into tuples (hashable, immutable).
        if isinstance(self.target_modules, Sequence) and not isinstance(self.target_modules, str):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        object.__setattr__(self, "modules_to_save", tuple(self.modules_to_save))
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the field, the value and what is allowed."""
        for name in ("r", "unshared_r", "share_a", "share_b"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise _fail(name, value, "must be an integer")
        if not 0 < self.r <= MAX_RANK:
            raise _fail("r", self.r, f"must be a positive integer up to {MAX_RANK}")
        if not 0 <= self.unshared_r <= self.r:
            raise _fail("unshared_r", self.unshared_r, f"must be between 0 and r={self.r}")
        for name in ("share_a", "share_b"):
            if not 1 <= getattr(self, name) <= MAX_SHARE:
                raise _fail(name, getattr(self, name), f"must be an integer in 1..{MAX_SHARE}")
        for name in ("stride_a", "stride_b"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SHARE
            ):
                raise _fail(name, value, f"must be null or an integer in 0..{MAX_SHARE}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)):
            raise _fail("alpha", self.alpha, "must be a number")
        if not math.isfinite(self.alpha) or self.alpha <= 0:
            raise _fail("alpha", self.alpha, "must be a positive finite number")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise _fail("dropout", self.dropout, "must be a number in [0, 1)")
        if self.init not in INIT_CHOICES:
            raise _fail("init", self.init, f"must be one of {', '.join(INIT_CHOICES)}")
        if not isinstance(self.rotation, bool):
            raise _fail("rotation", self.rotation, "must be true or false")
        if isinstance(self.target_modules, str):
            try:
                re.compile(self.target_modules)
            except re.error as exc:
                raise _fail("target_modules", self.target_modules, f"bad regex ({exc})") from None
        elif not self.target_modules or not all(
            isinstance(t, str) and t for t in self.target_modules
        ):
            raise _fail("target_modules", self.target_modules, "must be non-empty names or a regex")

    @property
    def shared_r(self) -> int:
        """Shared ranks r_s = r - u."""
        return self.r - self.unshared_r

    @property
    def scaling(self) -> float:
        """alpha / r with the FULL rank r (as the released code does)."""
        return self.alpha / self.r

    def resolved_stride_a(self) -> int:
        return self.stride_a if self.stride_a is not None else max(self.shared_r // self.share_a, 1)

    def resolved_stride_b(self) -> int:
        return self.stride_b if self.stride_b is not None else max(self.shared_r // self.share_b, 1)

    def matches(self, module_name: str) -> bool:
        """Whether a module path is targeted: regex fullmatch, or a dotted-suffix match."""
        if isinstance(self.target_modules, str):
            return re.fullmatch(self.target_modules, module_name) is not None
        return any(
            module_name == t or module_name.endswith("." + t) for t in self.target_modules
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PRoLoRAConfig:
        """Build from a mapping, rejecting unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown PRoLoRA option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
            )
        return cls(**data)


def trainable_params(
    in_features: int, out_features: int, *, r: int, unshared_r: int, share_a: int, share_b: int
) -> int:
    """Per-layer trainable count: u·(h+o) + r_s·(ceil(h/m) + ceil(o/n)) (docs/prolora.md)."""
    shared = r - unshared_r
    return unshared_r * (in_features + out_features) + shared * (
        -(-in_features // share_a) + -(-out_features // share_b)
    )
