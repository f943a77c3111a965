"""Many adapters in one forward pass: rows of a batch routed to different PRoLoRA adapters.

Serving systems (S-LoRA, Punica, LoRAX) batch rows of DIFFERENT adapters through one base
model; this module brings that to evaluation. For every adapted layer the frozen base
projection runs ONCE for the whole batch and each row adds its own low-rank update::

    y[n] = W0·x[n] + B_k·(A_k·x[n])        k = slot of row n,  B_k already scaled by α_k / r_k

The K adapters of a group are expanded to plain LoRA pairs (``zoo.prolora.expand_a/_b``) and
stacked per module path: ``A (K, R, h)``, ``B (K, o, R)`` with ``R`` the largest rank in the
group; smaller ranks are zero-padded and an adapter without the module has an all-zero slot,
so mixed configs (r, unshared_r, shares, target sets) need no sub-grouping. Zero ranks add
exact zeros, so padding changes nothing but summation order.

Two ways to apply the updates (``mode``), measured in ``bench/eval_bench.py``:

- ``bmm``: rows are grouped into equal, contiguous segments (one segment per slot); the slot
  weights are selected once per segment (a view when the slots are consecutive) and two
  ``torch.bmm`` calls do every segment at once. Unequal segments fall back to one segment per
  row (weights gathered per row).
- ``loop``: one pair of matmuls per segment — fewer FLOPs wasted, more kernel launches.

``modules_to_save`` (e.g. a sequence-classification head) differ per adapter: a saved
``nn.Linear`` becomes a stacked ``W (K, o, h)`` / ``b (K, o)`` applied per row the same way;
slots without that module keep the base weights. Other saved module types cannot be batched
(:class:`NotBatchableError`): callers evaluate such adapters alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.prolora import expand_a, expand_b, flat_gather_index_a, flat_gather_index_b
from zoo.surgery import set_submodule

if TYPE_CHECKING:
    from zoo.adapter import Adapter

MODES = ("bmm", "loop")
STATE_ATTR = "_zoo_multi_adapter"


class NotBatchableError(ConfigError):
    """An adapter needs something the multi-adapter layer cannot batch (evaluate it alone)."""


@dataclass
class Routing:
    """Which bank slot each row of the current batch uses, as contiguous segments."""

    segments: list[tuple[int, int, int]]  # (slot, start, end) covering rows 0..N in order
    seg_len: int  # rows per segment: equal-length segments after normalisation
    slots: torch.Tensor  # (S,) slot of each segment
    first_slot: int | None  # slots are first_slot, first_slot+1, ... (a view, no gather)

    @classmethod
    def from_rows(cls, row_slots: Sequence[int], device: torch.device | str) -> Routing:
        segments: list[tuple[int, int, int]] = []
        for n, slot in enumerate(row_slots):
            if segments and segments[-1][0] == slot:
                segments[-1] = (slot, segments[-1][1], n + 1)
            else:
                segments.append((slot, n, n + 1))
        lengths = {e - s for _, s, e in segments}
        if len(lengths) == 1:
            seg_len = lengths.pop()
            seg_slots = [k for k, _, _ in segments]
        else:  # unequal segments: one per row, weights gathered per row
            seg_len = 1
            seg_slots = list(row_slots)
        consecutive = all(b == a + 1 for a, b in zip(seg_slots, seg_slots[1:], strict=False))
        return cls(
            segments=segments, seg_len=seg_len,
            slots=torch.tensor(seg_slots, dtype=torch.long, device=device),
            first_slot=seg_slots[0] if consecutive else None,
        )

    def select(self, stack: torch.Tensor) -> torch.Tensor:
        """The per-segment slice of a (K, ...) stack: (S, ...)."""
        if self.first_slot is not None:
            return stack.narrow(0, self.first_slot, len(self.slots))
        return stack.index_select(0, self.slots)


class _Router:
    """Shared by every wrapped layer of one model: the routing of the batch in flight."""

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode={mode!r} is invalid: must be one of {', '.join(MODES)}")
        self.mode = mode
        self.routing: Routing | None = None

    def current(self) -> Routing:
        if self.routing is None:
            raise ConfigError("multi-adapter model called without rows: use `with bank.rows(...)`")
        return self.routing


def _apply_rows(x: torch.Tensor, left: torch.Tensor, right: torch.Tensor | None,
                routing: Routing, mode: str) -> torch.Tensor:
    """Per-row ``x @ left[k].T (@ right[k].T)``; x (N, ..., h) -> (N, ..., out)."""
    n = x.shape[0]
    x3 = x.reshape(n, -1, x.shape[-1])  # (N, T, h)
    if mode == "loop":
        outs = []
        for slot, s, e in routing.segments:
            y = x3[s:e] @ left[slot].T  # (m, T, R)
            outs.append(y @ right[slot].T if right is not None else y)  # (m, T, o)
        out = torch.cat(outs, dim=0)
    else:
        segs = len(routing.slots)
        xs = x3.reshape(segs, -1, x3.shape[-1])  # (S, m·T, h)
        out = torch.bmm(xs, routing.select(left).transpose(1, 2))  # (S, m·T, R)
        if right is not None:
            out = torch.bmm(out, routing.select(right).transpose(1, 2))  # (S, m·T, o)
    return out.reshape(*x.shape[:-1], out.shape[-1])


class MultiAdapterLinear(nn.Module):
    """A frozen Linear/Conv1D (``base_layer``) plus one stacked low-rank update per slot."""

    def __init__(self, base_layer: nn.Module, a: torch.Tensor, b: torch.Tensor,
                 router: _Router) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.register_buffer("a", a, persistent=False)  # (K, R, h)
        self.register_buffer("b", b, persistent=False)  # (K, o, R), scaling folded in
        self.router = router

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)  # ONE base projection for all rows
        routing, mode = self.router.current(), self.router.mode
        xa = x.to(self.a.dtype)
        if mode == "bmm" and result.dtype == self.b.dtype and result.is_contiguous():
            segs = len(routing.slots)
            low = torch.bmm(xa.reshape(segs, -1, xa.shape[-1]),
                            routing.select(self.a).transpose(1, 2))  # (S, m·T, R)
            # fused: result += low @ B^T, in place on the (S, m·T, o) view of the base output
            result.view(segs, -1, result.shape[-1]).baddbmm_(low, routing.select(self.b).transpose(1, 2))
            return result
        update = _apply_rows(xa, self.a, self.b, routing, mode)
        return result + update.to(result.dtype)


class MultiSavedLinear(nn.Module):
    """A ``modules_to_save`` Linear whose weights differ per slot (e.g. a classifier head)."""

    def __init__(self, base_layer: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None,
                 router: _Router) -> None:
        super().__init__()
        self.base_layer = base_layer  # kept only so detach can restore it
        self.register_buffer("weight", weight, persistent=False)  # (K, o, h)
        self.register_buffer("bias", bias, persistent=False)  # (K, o) or None
        self.router = router

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        routing = self.router.current()
        out = _apply_rows(x.to(self.weight.dtype), self.weight, None, routing, self.router.mode)
        if self.bias is not None:
            bias = self.bias.index_select(0, _row_slots(routing, x.device))  # (N, o)
            out = out + bias.reshape(x.shape[0], *([1] * (x.dim() - 2)), -1)
        return out.to(x.dtype)


def _row_slots(routing: Routing, device: torch.device) -> torch.Tensor:
    slots = [k for k, s, e in routing.segments for _ in range(e - s)]
    return torch.tensor(slots, dtype=torch.long, device=device)


@lru_cache(maxsize=1024)
def _index(part: str, rows: int, width: int, chunk: int, stride: int, rotation: bool) -> torch.Tensor:
    return (flat_gather_index_a if part == "a" else flat_gather_index_b)(rows, width, chunk,
                                                                         stride, rotation)


def expand_module(adapter: Adapter, path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (r × h), B (o × r)) of one module of an adapter; index tables cached across adapters."""
    c, t, mod = adapter.config, adapter.tensors, adapter.config.modules[path]
    h, o = mod.in_features, mod.out_features
    a_sh, b_sh = t.get(f"{path}.A_shared"), t.get(f"{path}.B_shared")
    idx_a = idx_b = None
    if a_sh is not None and b_sh is not None:
        idx_a = _index("a", a_sh.shape[0], h, a_sh.shape[1], c.stride_a, c.rotation)
        idx_b = _index("b", b_sh.shape[1], o, b_sh.shape[0], c.stride_b, c.rotation)
    a = expand_a(a_sh, t.get(f"{path}.A_unshared"), in_features=h, share=c.share_a,
                 stride=c.stride_a, rotation=c.rotation, index=idx_a)
    b = expand_b(b_sh, t.get(f"{path}.B_unshared"), out_features=o, share=c.share_b,
                 stride=c.stride_b, rotation=c.rotation, index=idx_b)
    return a, b


class MultiAdapterModel:
    """K adapters attached to ONE base model at once; each batch row picks its slot.

    Use as a context manager (it detaches on exit)::

        with MultiAdapterModel(model, adapters) as multi:
            with multi.rows([0, 0, 1, 2]):
                logits = model(**batch).logits
    """

    def __init__(self, model: nn.Module, adapters: Sequence[Adapter], *, mode: str = "bmm",
                 dtype: torch.dtype | None = None) -> None:
        if getattr(model, STATE_ATTR, None) is not None:
            raise ConfigError("a multi-adapter bank is already attached to this model")
        if not adapters:
            raise ConfigError("a multi-adapter bank needs at least one adapter")
        self.model = model
        self.adapters = list(adapters)
        self.router = _Router(mode)
        first = next(model.parameters())
        self.device = first.device
        self.dtype = dtype or (first.dtype if first.dtype.is_floating_point else torch.float32)
        for adapter in self.adapters:
            adapter.check_fits(model)
        saved = self._build_saved()  # may raise NotBatchableError before the model is touched
        adapted = self._build_adapted()
        self.originals: dict[str, nn.Module] = {}
        for path, module in {**adapted, **saved}.items():
            self.originals[path] = model.get_submodule(path)
            set_submodule(model, path, module)
        setattr(model, STATE_ATTR, self)

    # ---- building the stacks -------------------------------------------------------------
    def _build_adapted(self) -> dict[str, MultiAdapterLinear]:
        paths: dict[str, dict[str, Any]] = {}
        for adapter in self.adapters:
            for path, mod in adapter.config.modules.items():
                paths.setdefault(path, mod)
        layers = {}
        for path, mod in paths.items():
            h, o = mod.in_features, mod.out_features
            rank = max(a.config.r for a in self.adapters if path in a.config.modules)
            a_stack = torch.zeros(len(self.adapters), rank, h, dtype=self.dtype)  # (K, R, h)
            b_stack = torch.zeros(len(self.adapters), o, rank, dtype=self.dtype)  # (K, o, R)
            for k, adapter in enumerate(self.adapters):
                if path not in adapter.config.modules:
                    continue  # missing module: zero update for this slot
                a, b = expand_module(adapter, path)
                r = a.shape[0]
                scaling = adapter.config.hyper.scaling
                a_stack[k, :r] = a.to(self.dtype)
                b_stack[k, :, :r] = (b.to(torch.float32) * scaling).to(self.dtype)
            layers[path] = MultiAdapterLinear(
                self.model.get_submodule(path), a_stack.to(self.device),
                b_stack.to(self.device), self.router)
        return layers

    def _build_saved(self) -> dict[str, MultiSavedLinear]:
        by_module: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
        for k, adapter in enumerate(self.adapters):
            for key, tensor in adapter.saved_tensors().items():
                path, _, name = key.rpartition(".")
                by_module.setdefault(path, {}).setdefault(k, {})[name] = tensor
        adapted = {p for a in self.adapters for p in a.config.modules}
        out = {}
        for path, per_slot in by_module.items():
            base = self.model.get_submodule(path)
            if type(base) is not nn.Linear or any(
                p == path or p.startswith(path + ".") or path.startswith(p + ".") for p in adapted
            ):
                raise NotBatchableError(
                    f"saved module {path!r} ({type(base).__name__}) cannot be batched per row; "
                    "only a plain nn.Linear that is not itself adapted can")
            weight = base.weight.detach().to(self.dtype).unsqueeze(0).repeat(len(self.adapters), 1, 1)
            bias = None
            if base.bias is not None:
                bias = base.bias.detach().to(self.dtype).unsqueeze(0).repeat(len(self.adapters), 1)
            for k, tensors in per_slot.items():
                for name, tensor in tensors.items():
                    if name == "weight":
                        weight[k] = tensor.to(self.device, self.dtype)
                    elif name == "bias" and bias is not None:
                        bias[k] = tensor.to(self.device, self.dtype)
                    else:
                        raise NotBatchableError(f"saved tensor {path}.{name} cannot be batched")
            out[path] = MultiSavedLinear(base, weight, bias, self.router)
        return out

    # ---- use -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def rows(self, row_slots: Sequence[int]) -> Iterator[Routing]:
        """Route the next forward: row ``n`` of the batch uses adapter ``row_slots[n]``."""
        bad = [s for s in row_slots if not 0 <= s < len(self.adapters)]
        if bad:
            raise ConfigError(f"row slot {bad[0]} is out of range 0..{len(self.adapters) - 1}")
        self.router.routing = Routing.from_rows(row_slots, self.device)
        try:
            yield self.router.routing
        finally:
            self.router.routing = None

    def detach(self) -> nn.Module:
        """Restore the original modules exactly; returns the model."""
        for path, module in self.originals.items():
            set_submodule(self.model, path, module)
        self.originals = {}
        if getattr(self.model, STATE_ATTR, None) is self:
            delattr(self.model, STATE_ATTR)
        return self.model

    def __enter__(self) -> MultiAdapterModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()
