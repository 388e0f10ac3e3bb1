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
from semisep.reference import dense_resolvent_diagonal, sequential_resolvent_diagonal


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


# -------------------------------------------------------------------------------------------
# the output against a plain NumPy forward written from the module docstring
# -------------------------------------------------------------------------------------------
def _np(t):
    return t.detach().numpy().astype(np.float64)


def _linear(x, lin):
    return x @ _np(lin.weight).T + _np(lin.bias)


def numpy_multiscale_forward(layer, x, resolvent):
    """``MultiScaleBKLayer.forward`` in float64 NumPy from its docstring, with the resolvent
    diagonal ``resolvent(diag (B, m), z) -> (B, m)`` of ``tridiag(1; diag; 1) - zI`` supplied
    (dense inverse, or the sequential reference at large N)."""
    from scipy.special import erf

    B, N, D = x.shape
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    h = (x - mu) / np.sqrt(var + layer.norm.eps) * _np(layer.norm.weight) + _np(layer.norm.bias)
    hp = np.concatenate([h, h[:, -1:]], axis=1) if N % 2 else h
    pairs = hp.reshape(B, -1, 2, D)
    s = _linear(pairs, layer.down.score)  # (B, m, 2, 1)
    w = np.exp(s - s.max(axis=2, keepdims=True))
    w = w / w.sum(axis=2, keepdims=True)
    h_low = (w * pairs).sum(axis=2)
    core = layer.core
    v = _linear(h_low, core.v_proj)[..., 0]
    G = resolvent(v - 2.0, layer.z)
    u = h_low + _linear(np.stack([G.real, G.imag], axis=-1), core.feat_proj)
    a = _linear(u, core.fc1)
    y_low = _linear(0.5 * a * (1 + erf(a / np.sqrt(2))), core.fc2)
    m = y_low.shape[1]
    up = (y_low[:, :, None, :] * _np(layer.up.scale) + _np(layer.up.shift)).reshape(B, 2 * m, D)[:, :N]
    k = layer.refine_kernel
    q = np.pad(h + up, ((0, 0), (k // 2, k // 2), (0, 0)))
    wk = _np(layer.refine.weight)[:, 0, :]  # (D, k): depthwise cross-correlation
    r = sum(q[:, j:j + N, :] * wk[:, j] for j in range(k)) + _np(layer.refine.bias)
    return x + _np(layer.g_low) * up + _np(layer.g_ref) * r


def _trained_like(layer, seed):
    """Every parameter moved off its initial value (gates and up-sampling included), so that
    every term of the output is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return layer


@pytest.mark.parametrize("n", [16, 15])
def test_output_against_numpy_forward_dense(n):
    """Small N: the resolvent of the reference forward by dense inversion.  A = T - i I with T
    real symmetric: cond_2(A) <= (|T|_2 + 1) / 1, and the rest is a few float64 products of
    size-d sums: 1e-12 relative to the output's scale leaves a wide margin over ~d N eps cond."""
    torch.manual_seed(5)
    layer = _trained_like(MultiScaleBKLayer(8, n).double(), 5)
    x = torch.randn(2, n, 8, dtype=torch.float64)
    out, _ = layer(x)
    want = numpy_multiscale_forward(
        layer, x.numpy(), lambda d, z: dense_resolvent_diagonal(d, np.ones(d.shape[-1] - 1), None, z))
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=0, atol=1e-12 * np.abs(want).max())


@pytest.mark.slow
def test_output_against_numpy_forward_large_n():
    """N = 2^15 + 1 (odd: the pairing's repeated last position), the resolvent of the
    reference forward by the independent sequential reference."""
    n = 2 ** 15 + 1
    torch.manual_seed(6)
    layer = _trained_like(MultiScaleBKLayer(4, n).double(), 6)
    x = torch.randn(1, n, 4, dtype=torch.float64)
    out, st = layer(x)
    assert st["n_low"] == (n + 1) // 2
    want = numpy_multiscale_forward(
        layer, x.numpy(),
        lambda d, z: sequential_resolvent_diagonal(d, np.ones(d.shape[-1] - 1), None, z))
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=0, atol=1e-11 * np.abs(want).max())
