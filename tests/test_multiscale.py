"""Tests for semisep.nn.multiscale and the FLOP counts of semisep.nn._flops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from semisep.cost import resolvent_diagonal_flops
from semisep.nn import AdaptiveDownsampling, BKLayer, MultiScaleBKLayer
from semisep.nn._flops import bk_layer_flops, multiscale_bk_layer_flops
from semisep.nn.sparse import laplacian_resolvent_diagonal
from semisep.reference import dense_resolvent_diagonal


@pytest.mark.parametrize("n", [16, 15])
def test_shapes_and_stats(n):
    torch.manual_seed(0)
    layer = MultiScaleBKLayer(8, n)
    x = torch.randn(2, n, 8)
    out, st = layer(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert st["n_low"] == (n + 1) // 2
    exp = 1 - multiscale_bk_layer_flops(2, n, 8, 16)["total"] / bk_layer_flops(2, n, 8, 16)["total"]
    assert st["flops_saved_ratio"] == pytest.approx(exp)
    assert st["flops"] < st["flops_full"]


def test_flops_saved_ratio_depends_on_shapes():
    ratios = {
        (n, d): 1
        - multiscale_bk_layer_flops(1, n, d, 2 * d)["total"] / bk_layer_flops(1, n, d, 2 * d)["total"]
        for n in (16, 1024)
        for d in (4, 64)
    }
    assert len({round(r, 6) for r in ratios.values()}) == 4
    # the core dominates for wide models: the saving approaches the half-resolution bound 1/2
    assert 0.35 < ratios[(1024, 64)] < 0.5
    # for d = 4 the fixed per-position overheads (layernorm, sampling, refinement) eat most of it
    assert ratios[(1024, 4)] < ratios[(1024, 64)]


@pytest.mark.parametrize(
    "cls,count", [(BKLayer, bk_layer_flops), (MultiScaleBKLayer, multiscale_bk_layer_flops)]
)
@pytest.mark.parametrize("n,d", [(32, 8), (33, 12)])
def test_matmul_and_conv_counts_equal_torch_flop_counter(cls, count, n, d):
    layer = cls(d, n)
    x = torch.randn(3, n, d)
    with FlopCounterMode(display=False) as fc:
        layer(x)
    c = count(3, n, d, 2 * d)
    assert fc.get_total_flops() == c["matmul"] + c.get("conv", 0)
    assert c["resolvent"] == 3 * (
        2 * (n if cls is BKLayer else (n + 1) // 2)
        + resolvent_diagonal_flops(n if cls is BKLayer else (n + 1) // 2)
    )


def test_core_resolvent_is_exact_at_low_resolution():
    torch.manual_seed(1)
    v = torch.randn(2, 11, dtype=torch.float64)
    G = laplacian_resolvent_diagonal(v, 1j).numpy()
    ref = dense_resolvent_diagonal(v.numpy() - 2.0, np.ones(10), None, 1j)
    np.testing.assert_allclose(G, ref, rtol=1e-12, atol=1e-12)


def test_downsampling_is_a_convex_pair_combination():
    torch.manual_seed(2)
    down = AdaptiveDownsampling(4)
    h = torch.randn(2, 7, 4)
    low = down(h)
    assert low.shape == (2, 4, 4)
    with torch.no_grad():
        down.score.weight.zero_()
        down.score.bias.zero_()
    low = down(h)
    torch.testing.assert_close(low[:, :3], 0.5 * (h[:, 0:6:2] + h[:, 1:6:2]))
    torch.testing.assert_close(low[:, 3], h[:, 6])


def test_gradients_reach_every_parameter_and_gradcheck():
    torch.manual_seed(3)
    layer = MultiScaleBKLayer(4, 6).double()
    x = torch.randn(1, 6, 4, dtype=torch.float64, requires_grad=True)
    out, _ = layer(x)
    out.pow(2).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert torch.autograd.gradcheck(lambda xx: layer(xx)[0], (x.detach().clone().requires_grad_(),))
