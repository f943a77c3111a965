"""PRoLoRA: partial rotation for more parameter-efficient LoRA, one adapted layer.

Wang et al., "PRoLoRA: Partial Rotation Empowers More Parameter-Efficient LoRA", ACL 2024
(arXiv 2402.16902). Semantics follow the authors' released code (see docs/prolora.md).

For a frozen ``W0`` of shape ``o × h`` (``y = W0·x``), rank ``r`` of which ``u`` are unshared
and ``r_s = r - u`` shared, sharing ratios ``m`` (A, input axis) and ``n`` (B, output axis)::

    c_A = ceil(h / m)            c_B = ceil(o / n)
    s_A = max(r_s // m, 1)       s_B = max(r_s // n, 1)           (unless overridden)
    A[i, col]       = A0[(i + (col // c_A)·s_A) mod r_s, col % c_A]    i < r_s
    A[r_s + t, :]   = A_u[t, :]                                        unshared rows LAST
    B[row, i]       = B0[row % c_B, (i + (row // c_B)·s_B) mod r_s]    i < r_s
    B[:, r_s + t]   = B_u[:, t]                                        unshared columns LAST
    y = W0·x + (α / r) · B·(A·dropout(x))

Replica ``k`` of A's chunk is ``roll(A0, -k·s_A, dim=0)``: the rotation is along the RANK axis.
Without rotation (the CLoRA ablation) every replica is ``A0`` itself. "Rectified" init draws A
uniformly in ±1/sqrt(h) (the full fan-in); the "chunk-fan" ablation uses ±1/sqrt(c_A).

The expansion is one flat ``index_select`` per matrix with index tables computed once at
construction, so a forward costs a rank-r LoRA plus ``r·(h + o)`` gathered elements.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zoo.config import PRoLoRAConfig
from zoo.errors import ConfigError


def shared_row_index(rows: int, width: int, chunk: int, stride: int, rotation: bool) -> torch.Tensor:
    """Index table ``idx[i, col] = (i + (col // chunk)·stride) mod rows`` (rows × width).

    ``rows`` is r_s, ``width`` the full hidden size, ``chunk`` the replica width c.
    """
    i = torch.arange(rows).unsqueeze(1)  # (r_s, 1)
    k = (torch.arange(width) // chunk).unsqueeze(0)  # (1, width) replica number of each column
    shift = k * stride if rotation else torch.zeros_like(k)
    return (i + shift) % rows  # (r_s, width)


def flat_gather_index_a(rows: int, width: int, chunk: int, stride: int, rotation: bool) -> torch.Tensor:
    """Flat positions into ``A0.reshape(-1)`` giving the shared rows of A (r_s·h,)."""
    idx = shared_row_index(rows, width, chunk, stride, rotation)  # (r_s, h) source rows
    cols = torch.arange(width) % chunk  # (h,) source columns
    return (idx * chunk + cols).reshape(-1)


def flat_gather_index_b(cols: int, height: int, chunk: int, stride: int, rotation: bool) -> torch.Tensor:
    """Flat positions into ``B0.reshape(-1)`` giving the shared columns of B (o·r_s,)."""
    idx = shared_row_index(cols, height, chunk, stride, rotation).T  # (o, r_s) source columns
    rows = (torch.arange(height) % chunk).unsqueeze(1)  # (o, 1) source rows
    return (rows * cols + idx).reshape(-1)


def expand_a(
    a_shared: torch.Tensor | None,
    a_unshared: torch.Tensor | None,
    *,
    in_features: int,
    share: int,
    stride: int,
    rotation: bool = True,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """The ordinary LoRA ``A`` (r × h) from the compact tensors (shared rows first).

    ``index`` is ``flat_gather_index_a(...)``, precomputed by the layer; one ``index_select``
    (whose backward is a cheap ``index_add``) builds all m rotated replicas at once.
    """
    parts = []
    if a_shared is not None:
        rows, chunk = a_shared.shape  # (r_s, c_A)
        if index is None:
            index = flat_gather_index_a(rows, in_features, chunk, stride, rotation)
        flat = a_shared.reshape(-1).index_select(0, index.to(a_shared.device))
        parts.append(flat.view(rows, in_features))  # (r_s, h)
    if a_unshared is not None:
        parts.append(a_unshared)  # (u, h)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)  # (r, h)


def expand_b(
    b_shared: torch.Tensor | None,
    b_unshared: torch.Tensor | None,
    *,
    out_features: int,
    share: int,
    stride: int,
    rotation: bool = True,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """The ordinary LoRA ``B`` (o × r) from the compact tensors (shared columns first)."""
    parts = []
    if b_shared is not None:
        chunk, cols = b_shared.shape  # (c_B, r_s)
        if index is None:
            index = flat_gather_index_b(cols, out_features, chunk, stride, rotation)
        flat = b_shared.reshape(-1).index_select(0, index.to(b_shared.device))
        parts.append(flat.view(out_features, cols))  # (o, r_s)
    if b_unshared is not None:
        parts.append(b_unshared)  # (o, u)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # (o, r)


def host_kind(module: nn.Module) -> str | None:
    """``linear`` for nn.Linear, ``conv1d`` for transformers' GPT-2 Conv1D, else None."""
    if isinstance(module, nn.Linear):
        return "linear"
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf") and module.weight.dim() == 2:
        return "conv1d"
    return None


def host_features(module: nn.Module) -> tuple[int, int]:
    """(h, o) of ``y = W·x`` for a supported host; Conv1D stores W transposed (h × o)."""
    if host_kind(module) == "conv1d":
        h, o = module.weight.shape
        return int(h), int(o)
    return int(module.in_features), int(module.out_features)


class PRoLoRALinear(nn.Module):
    """Wraps a frozen Linear/Conv1D as ``base_layer`` and adds the PRoLoRA update.

    Knows nothing about files: attach/extract (``zoo.attach``) move tensors in and out.
    """

    def __init__(
        self, base_layer: nn.Module, config: PRoLoRAConfig, *, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        kind = host_kind(base_layer)
        if kind is None:
            raise ConfigError(f"cannot adapt {type(base_layer).__name__}: only Linear and Conv1D")
        self.base_layer = base_layer
        self.kind = kind
        self.in_features, self.out_features = host_features(base_layer)
        h, o = self.in_features, self.out_features
        for name, share, dim in (("share_a", config.share_a, h), ("share_b", config.share_b, o)):
            if share > dim:
                raise ConfigError(f"{name}={share} is larger than the dimension {dim} it shares")
        self.r, self.unshared_r, self.shared_r = config.r, config.unshared_r, config.shared_r
        self.share_a, self.share_b = config.share_a, config.share_b
        self.stride_a, self.stride_b = config.resolved_stride_a(), config.resolved_stride_b()
        self.rotation, self.init = config.rotation, config.init
        self.scaling = config.scaling
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.merged = False

        dtype = dtype or torch.float32
        device = base_layer.weight.device
        rs, u = self.shared_r, self.unshared_r
        self.chunk_a, self.chunk_b = math.ceil(h / self.share_a), math.ceil(o / self.share_b)

        def param(*shape: int) -> nn.Parameter | None:
            if 0 in shape:
                return None
            return nn.Parameter(torch.zeros(*shape, dtype=dtype, device=device))

        self.A_shared = param(rs, self.chunk_a)  # (r_s, c_A)
        self.A_unshared = param(u, h)  # (u, h)
        self.B_shared = param(self.chunk_b, rs)  # (c_B, r_s)
        self.B_unshared = param(o, u)  # (o, u)
        if rs > 0:
            self.register_buffer(
                "index_a",
                flat_gather_index_a(rs, h, self.chunk_a, self.stride_a, self.rotation).to(device),
                persistent=False,
            )
            self.register_buffer(
                "index_b",
                flat_gather_index_b(rs, o, self.chunk_b, self.stride_b, self.rotation).to(device),
                persistent=False,
            )
        else:
            self.index_a = self.index_b = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Rectified init: A ~ U(±1/sqrt(h)) with the FULL fan-in; B = 0 (update starts at 0)."""
        fan_shared = self.chunk_a if self.init == "chunk-fan" else self.in_features
        with torch.no_grad():
            if self.A_shared is not None:
                bound = 1.0 / math.sqrt(fan_shared)
                self.A_shared.uniform_(-bound, bound)
            if self.A_unshared is not None:
                bound = 1.0 / math.sqrt(self.in_features)
                self.A_unshared.uniform_(-bound, bound)
            for p in (self.B_shared, self.B_unshared):
                if p is not None:
                    p.zero_()

    def expanded_a(self) -> torch.Tensor:
        return expand_a(
            self.A_shared, self.A_unshared, in_features=self.in_features, share=self.share_a,
            stride=self.stride_a, rotation=self.rotation, index=self.index_a,
        )  # (r, h)

    def expanded_b(self) -> torch.Tensor:
        return expand_b(
            self.B_shared, self.B_unshared, out_features=self.out_features, share=self.share_b,
            stride=self.stride_b, rotation=self.rotation, index=self.index_b,
        )  # (o, r)

    def delta_weight(self) -> torch.Tensor:
        """(α/r)·B·A as an ``o × h`` matrix in the adapter's dtype."""
        return self.scaling * (self.expanded_b() @ self.expanded_a())  # (o, h)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return result
        a = self.expanded_a()  # (r, h)
        b = self.expanded_b()  # (o, r)
        x_a = self.dropout(x).to(a.dtype)  # (..., h)
        update = (x_a @ a.T) @ (self.scaling * b).T  # (..., o); scale the small matrix
        return result + update.to(result.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight (inference). Refuses non-finite updates."""
        if self.merged:
            return
        delta = self.delta_weight()
        if not torch.isfinite(delta).all():
            raise ValueError("refusing to merge: the adapter update contains NaN or inf")
        weight = self.base_layer.weight
        weight += (delta.T if self.kind == "conv1d" else delta).to(weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the update again (exact up to floating-point rounding)."""
        if not self.merged:
            return
        delta = self.delta_weight()
        weight = self.base_layer.weight
        weight -= (delta.T if self.kind == "conv1d" else delta).to(weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind}, in={self.in_features}, out={self.out_features}, r={self.r}, "
            f"u={self.unshared_r}, share_a={self.share_a}, share_b={self.share_b}, "
            f"stride=({self.stride_a},{self.stride_b}), rotation={self.rotation}"
        )
