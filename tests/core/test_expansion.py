"""The layer's expansion equals an index-by-index transcription of docs/prolora.md."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.config import PRoLoRAConfig
from zoo.prolora import PRoLoRALinear, expand_a, expand_b


def reference_a(a0, au, h, m, s, rotation):
    """A (r × h) straight from the formulas, with Python loops."""
    rs = 0 if a0 is None else a0.shape[0]
    u = 0 if au is None else au.shape[0]
    c = math.ceil(h / m)
    out = torch.zeros(rs + u, h, dtype=torch.float64)
    for i in range(rs):
        for col in range(h):
            k, j = col // c, col % c
            out[i, col] = a0[(i + (k * s if rotation else 0)) % rs, j]
    for t in range(u):
        out[rs + t] = au[t]
    return out


def reference_b(b0, bu, o, n, s, rotation):
    rs = 0 if b0 is None else b0.shape[1]
    u = 0 if bu is None else bu.shape[1]
    c = math.ceil(o / n)
    out = torch.zeros(o, rs + u, dtype=torch.float64)
    for row in range(o):
        k, j = row // c, row % c
        for i in range(rs):
            out[row, i] = b0[j, (i + (k * s if rotation else 0)) % rs]
    for t in range(u):
        out[:, rs + t] = bu[:, t]
    return out


@st.composite
def layer_cases(draw):
    h = draw(st.integers(1, 40))
    o = draw(st.integers(1, 40))
    r = draw(st.integers(1, 9))
    u = draw(st.integers(0, r))
    m = draw(st.integers(1, h))
    n = draw(st.integers(1, o))
    stride_a = draw(st.one_of(st.none(), st.integers(0, 12)))
    stride_b = draw(st.one_of(st.none(), st.integers(0, 12)))
    rotation = draw(st.booleans())
    return h, o, PRoLoRAConfig(r=r, unshared_r=u, share_a=m, share_b=n, stride_a=stride_a,
                               stride_b=stride_b, rotation=rotation, target_modules=("x",))


def make_layer(h, o, cfg, seed=0):
    torch.manual_seed(seed)
    base = torch.nn.Linear(h, o, dtype=torch.float64)
    layer = PRoLoRALinear(base, cfg, dtype=torch.float64)
    with torch.no_grad():
        for p in layer.parameters():
            if p.requires_grad:
                p.normal_()
    return layer


@settings(max_examples=150, deadline=None)
@given(layer_cases())
def test_expansion_matches_formulas(case):
    h, o, cfg = case
    layer = make_layer(h, o, cfg)
    sa, sb = cfg.resolved_stride_a(), cfg.resolved_stride_b()
    want_a = reference_a(layer.A_shared, layer.A_unshared, h, cfg.share_a, sa, cfg.rotation)
    want_b = reference_b(layer.B_shared, layer.B_unshared, o, cfg.share_b, sb, cfg.rotation)
    assert torch.equal(layer.expanded_a(), want_a)
    assert torch.equal(layer.expanded_b(), want_b)


def test_stride_follows_released_code_rule():
    cfg = PRoLoRAConfig(r=8, unshared_r=1, share_a=3, share_b=2, target_modules=("x",))
    assert cfg.resolved_stride_a() == 7 // 3 == 2  # r_s // m with r_s = r - u, not r // m
    assert cfg.resolved_stride_b() == 7 // 2 == 3
    assert PRoLoRAConfig(r=2, unshared_r=1, share_a=4, target_modules=("x",)).resolved_stride_a() == 1


def test_replicas_are_rank_rotations_and_cut():
    """Replica k is roll(A0, -k·s, dim=0); the last replica is cut to h columns."""
    h, m, rs = 10, 3, 4  # c = 4: replicas of width 4, 4, 2
    a0 = torch.arange(rs * 4, dtype=torch.float64).reshape(rs, 4)
    a = expand_a(a0, None, in_features=h, share=m, stride=1)
    assert torch.equal(a[:, 0:4], a0)
    assert torch.equal(a[:, 4:8], torch.roll(a0, -1, dims=0))
    assert torch.equal(a[:, 8:10], torch.roll(a0, -2, dims=0)[:, :2])
    flat = expand_a(a0, None, in_features=h, share=m, stride=1, rotation=False)
    assert torch.equal(flat[:, 4:8], a0)  # CLoRA ablation: no rotation


def test_b_replicas_rotate_columns():
    o, n, rs = 7, 2, 3  # c = 4
    b0 = torch.arange(4 * rs, dtype=torch.float64).reshape(4, rs)
    b = expand_b(b0, None, out_features=o, share=n, stride=2)
    assert torch.equal(b[0:4], b0)
    assert torch.equal(b[4:7], torch.roll(b0, -2, dims=1)[:3])


def test_unshared_ranks_come_last():
    a0, au = torch.ones(2, 3), torch.full((1, 6), 5.0)
    a = expand_a(a0, au, in_features=6, share=2, stride=1)
    assert a.shape == (3, 6) and torch.equal(a[2], au[0])
    b0, bu = torch.ones(2, 2), torch.full((4, 1), 5.0)
    b = expand_b(b0, bu, out_features=4, share=2, stride=1)
    assert b.shape == (4, 3) and torch.equal(b[:, 2], bu[:, 0])


@pytest.mark.parametrize("init, fan", [("rectified", 60), ("chunk-fan", 15)])
def test_init_bounds(init, fan):
    cfg = PRoLoRAConfig(r=16, unshared_r=2, share_a=4, share_b=4, init=init, target_modules=("x",))
    layer = PRoLoRALinear(torch.nn.Linear(60, 30), cfg)
    bound = 1 / math.sqrt(fan)
    assert layer.A_shared.abs().max() <= bound
    assert layer.A_shared.abs().max() > 0.8 * bound  # uses (nearly) the whole range
    assert layer.A_unshared.abs().max() <= 1 / math.sqrt(60)  # unshared rows: full fan-in
    assert not layer.B_shared.any() and not layer.B_unshared.any()


@settings(max_examples=40, deadline=None)
@given(layer_cases())
def test_forward_equals_merged_weight_and_merge_roundtrips(case):
    h, o, cfg = case
    layer = make_layer(h, o, cfg)
    x = torch.randn(5, h, dtype=torch.float64)
    w0 = layer.base_layer.weight.detach().clone()
    merged_w = w0 + cfg.scaling * layer.expanded_b() @ layer.expanded_a()
    want = x @ merged_w.T + layer.base_layer.bias
    torch.testing.assert_close(layer(x), want)
    layer.merge()
    torch.testing.assert_close(layer.base_layer.weight, merged_w)
    torch.testing.assert_close(layer(x), want)
    layer.unmerge()
    torch.testing.assert_close(layer.base_layer.weight, w0)


def test_conv1d_host_matches_linear_math():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    conv = Conv1D(nf=12, nx=9).double()
    cfg = PRoLoRAConfig(r=4, unshared_r=1, share_a=3, share_b=2, target_modules=("x",))
    layer = PRoLoRALinear(conv, cfg, dtype=torch.float64)
    assert (layer.in_features, layer.out_features) == (9, 12)
    with torch.no_grad():
        for p in layer.parameters():
            if p.requires_grad:
                p.normal_()
    x = torch.randn(2, 3, 9, dtype=torch.float64)
    w = conv.weight.detach().T + cfg.scaling * layer.expanded_b() @ layer.expanded_a()  # (o, h)
    torch.testing.assert_close(layer(x), x @ w.T + conv.bias)
    layer.merge()
    torch.testing.assert_close(layer(x), x @ w.T + conv.bias)


def test_gradients_reach_only_compact_tensors():
    cfg = PRoLoRAConfig(r=4, unshared_r=1, share_a=2, share_b=2, target_modules=("x",))
    layer = PRoLoRALinear(torch.nn.Linear(8, 6).requires_grad_(False), cfg)
    with torch.no_grad():
        layer.B_shared.normal_()
        layer.B_unshared.normal_()
    layer(torch.randn(3, 8)).sum().backward()
    for p in (layer.A_shared, layer.A_unshared, layer.B_shared, layer.B_unshared):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert layer.base_layer.weight.grad is None


def test_bf16_base_with_fp32_adapter():
    base = torch.nn.Linear(16, 8).to(torch.bfloat16)
    cfg = PRoLoRAConfig(r=4, unshared_r=0, share_a=2, share_b=2, target_modules=("x",))
    layer = PRoLoRALinear(base, cfg)
    assert layer.A_shared.dtype == torch.float32
    out = layer(torch.randn(2, 16, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16
