"""``AdapterConfig``: the typed config of an adapter file (docs/adapter-format.md), torch-free.

One type for the idea "what this adapter is": the file header holds it as canonical JSON, the
catalog's columns are read from it, PEFT export and merge read it, and ``attach`` rebuilds the
PRoLoRA layer from it. It is validated once, in :meth:`AdapterConfig.from_dict`; every
rank/sharing rule is :class:`zoo.config.PRoLoRAConfig`'s own, so a file and a job spec obey the
same rules. Fields a producer adds (``labels``, ``seed``, ``train`` …) are kept verbatim in
``extra``: ``to_dict`` gives back exactly the mapping that was read, so re-saving an adapter
gives the same bytes (its sha256 is its identity).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any

from zoo.config import PRoLoRAConfig, trainable_params
from zoo.errors import AdapterFormatError, ConfigError
from zoo.untrusted import UntrustedInputError, clip, load_json

TASKS = ("causal-lm", "seq-cls")
MODULE_KINDS = ("linear", "conv1d")
DTYPES = ("float32", "float16", "bfloat16", "float64")
MAX_BASE_NAME = 512
MAX_DIM = 1 << 24  # 16M features: far beyond any real layer, small enough to never overflow
MAX_CONFIG_BYTES = 1 << 20  # the config JSON of a 70B model with every projection is ~60 KB
_TYPES: dict[str, tuple[type, ...]] = {
    "base_model": (str,), "task": (str,), "r": (int,), "unshared_r": (int,), "share_a": (int,),
    "share_b": (int,), "stride_a": (int,), "stride_b": (int,), "rotation": (bool,),
    "init": (str,), "alpha": (int, float), "dropout": (int, float), "dtype": (str,),
    "modules": (dict,), "modules_to_save": (list,),
}


@dataclass(frozen=True)
class ModuleShape:
    """One adapted module: ``y = W·x`` with W of shape ``out_features × in_features``."""

    in_features: int
    out_features: int
    kind: str  # "linear" (nn.Linear) or "conv1d" (GPT-2's Conv1D, weight stored transposed)

    def to_dict(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "kind": self.kind}


@dataclass(frozen=True)
class AdapterConfig:
    """The header config of a zoo adapter file (format v1), validated."""

    base_model: str
    base_model_digest: str | None
    task: str
    r: int
    unshared_r: int
    share_a: int
    share_b: int
    stride_a: int
    stride_b: int
    rotation: bool
    init: str
    alpha: float
    dropout: float
    dtype: str
    modules: Mapping[str, ModuleShape]
    modules_to_save: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    # ---- reading and writing ------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, *, source: str = "adapter") -> AdapterConfig:
        """Validate a config mapping (a file header's, a catalog row's); AdapterFormatError
        (exit code 3) names the source and the field."""
        if not isinstance(data, dict):
            raise AdapterFormatError(f"{source}: config must be a JSON object")
        for name, kinds in _TYPES.items():
            if name not in data:
                raise AdapterFormatError(f"{source}: config is missing required field {name!r}")
            value = data[name]
            if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
                raise AdapterFormatError(
                    f"{source}: config field {name!r} has the wrong type ({clip(repr(value), 80)})")
        digest = data.get("base_model_digest")
        if digest is not None and (not isinstance(digest, str) or len(digest) > 128):
            raise AdapterFormatError(
                f"{source}: config field 'base_model_digest' must be text (≤ 128) or null")
        known = {f.name for f in fields(cls)} - {"extra"}
        config = cls(
            **{k: data[k] for k in _TYPES if k not in ("modules", "modules_to_save")},
            base_model_digest=digest,
            modules=_modules(data["modules"], source),
            modules_to_save=_strings(data["modules_to_save"], "modules_to_save", source),
            extra={k: v for k, v in data.items() if k not in known},
        )
        config._check(source)
        return config

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "adapter") -> AdapterConfig:
        """Parse header JSON: bounded in size and nesting, then :meth:`from_dict`."""
        try:
            data = load_json(text, max_bytes=MAX_CONFIG_BYTES)
        except UntrustedInputError as exc:
            raise AdapterFormatError(f"{source}: config {exc}") from None
        return cls.from_dict(data, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The mapping this config was read from (producer fields included)."""
        out = dict(self.extra)
        for f in fields(self):
            if f.name != "extra":
                out[f.name] = getattr(self, f.name)
        out["modules"] = {path: m.to_dict() for path, m in self.modules.items()}
        out["modules_to_save"] = list(self.modules_to_save)
        return out

    def to_json(self) -> str:
        """Keys sorted, no insignificant whitespace: part of the byte-determinism contract."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True)

    # ---- derived --------------------------------------------------------------------------
    @cached_property
    def hyper(self) -> PRoLoRAConfig:
        """The hyperparameters that rebuild this adapter's layers (targets = its modules):
        ``hyper.shared_r``, ``hyper.scaling`` and every rank rule live there."""
        return PRoLoRAConfig(
            r=self.r, unshared_r=self.unshared_r, share_a=self.share_a, share_b=self.share_b,
            alpha=self.alpha, dropout=self.dropout, target_modules=tuple(self.modules) or ("",),
            stride_a=self.stride_a, stride_b=self.stride_b, rotation=self.rotation,
            init=self.init, modules_to_save=self.modules_to_save)

    @property
    def label_names(self) -> tuple[str, ...] | None:
        """The classes of a seq-cls head, in training order (``labels`` in the header)."""
        labels = self.extra.get("labels")
        return tuple(labels) if labels is not None else None

    @property
    def params(self) -> int:
        """Trainable PRoLoRA parameters: the elements of every A/B tensor."""
        return sum(trainable_params(m.in_features, m.out_features, r=self.r,
                                    unshared_r=self.unshared_r, share_a=self.share_a,
                                    share_b=self.share_b) for m in self.modules.values())

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Tensor name → shape a file with this config must hold (``saved.*`` excluded)."""
        rs, u = self.hyper.shared_r, self.unshared_r
        shapes: dict[str, tuple[int, ...]] = {}
        for path, m in self.modules.items():
            h, o = m.in_features, m.out_features
            if rs > 0:
                shapes[f"{path}.A_shared"] = (rs, -(-h // self.share_a))  # (r_s, c_A)
                shapes[f"{path}.B_shared"] = (-(-o // self.share_b), rs)  # (c_B, r_s)
            if u > 0:
                shapes[f"{path}.A_unshared"] = (u, h)
                shapes[f"{path}.B_unshared"] = (o, u)
        return shapes

    def with_base(self, name: str, digest: str | None = None) -> AdapterConfig:
        """The same adapter described with another base name (and digest, if given)."""
        return replace(self, base_model=name,
                       base_model_digest=self.base_model_digest if digest is None else digest)

    @classmethod
    def build(cls, hyper: PRoLoRAConfig, *, base_model: str, base_model_digest: str | None,
              task: str, dtype: str, modules: Mapping[str, ModuleShape],
              modules_to_save: tuple[str, ...], extra: Mapping[str, Any] | None = None,
              ) -> AdapterConfig:
        """The config of a freshly extracted adapter (strides resolved, never null)."""
        config = cls(base_model=base_model, base_model_digest=base_model_digest, task=task,
                     r=hyper.r, unshared_r=hyper.unshared_r, share_a=hyper.share_a,
                     share_b=hyper.share_b, stride_a=hyper.resolved_stride_a(),
                     stride_b=hyper.resolved_stride_b(), rotation=hyper.rotation,
                     init=hyper.init, alpha=hyper.alpha, dropout=hyper.dropout, dtype=dtype,
                     modules=dict(modules), modules_to_save=tuple(modules_to_save),
                     extra=dict(extra or {}))
        config._check("adapter")
        return config

    # ---- validation -------------------------------------------------------------------------
    def _check(self, source: str) -> None:
        object.__setattr__(self, "modules", MappingProxyType(dict(self.modules)))
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))
        if not self.base_model or len(self.base_model) > MAX_BASE_NAME:
            raise AdapterFormatError(f"{source}: base_model must be 1..{MAX_BASE_NAME} characters")
        if self.task not in TASKS:
            raise AdapterFormatError(f"{source}: task {self.task!r} is not one of {', '.join(TASKS)}")
        if self.dtype not in DTYPES:
            raise AdapterFormatError(f"{source}: dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        try:
            _ = self.hyper  # every rank, share, stride, alpha, dropout and init rule, once
        except ConfigError as exc:
            raise AdapterFormatError(f"{source}: {exc}") from None
        for path, m in self.modules.items():
            if self.share_a > m.in_features or self.share_b > m.out_features:
                raise AdapterFormatError(
                    f"{source}: module {path!r} ({m.in_features}→{m.out_features}) is smaller "
                    f"than its sharing ratios share_a={self.share_a}, share_b={self.share_b}")
        labels = self.extra.get("labels")
        if labels is not None and (not isinstance(labels, list) or not all(
                isinstance(x, str) for x in labels)):
            raise AdapterFormatError(f"{source}: config field 'labels' must be a list of strings")


def _modules(raw: dict[str, Any], source: str) -> dict[str, ModuleShape]:
    out = {}
    for path, mod in raw.items():
        ok = (isinstance(mod, dict) and set(mod) == {"in_features", "out_features", "kind"}
              and mod["kind"] in MODULE_KINDS and all(
                  isinstance(mod[k], int) and not isinstance(mod[k], bool)
                  and 0 < mod[k] <= MAX_DIM for k in ("in_features", "out_features")))
        if not path or not ok:
            raise AdapterFormatError(f"{source}: module {path!r} has an invalid description "
                                     f"{clip(repr(mod), 80)} (in_features, out_features: 1..{MAX_DIM}; "
                                     f"kind: {' or '.join(MODULE_KINDS)})")
        out[path] = ModuleShape(mod["in_features"], mod["out_features"], mod["kind"])
    return out


def _strings(raw: list[Any], name: str, source: str) -> tuple[str, ...]:
    if not all(isinstance(x, str) and x for x in raw):
        raise AdapterFormatError(f"{source}: config field {name!r} must be a list of names")
    return tuple(raw)
