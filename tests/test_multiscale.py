"""Tests for semisep.nn.multiscale and the FLOP counts of semisep.nn._flops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import semisep.nn.multiscale as multiscale_module
from semisep.backends.numpy import resolvent_diagonal_ref
from semisep.cost import FLOP_RULES
from semisep.nn import AdaptiveDownsampling, BKLayer, MultiScaleBKLayer
from semisep.nn._flops import bk_layer_flops, multiscale_bk_layer_flops
from semisep.nn.sparse import laplacian_resolvent_diagonal
from semisep.reference import dense_resolvent_diagonal, sequential_resolvent_diagonal

from .test_cost import Counted, _val, measure


@pytest.mark.parametrize("n", [16, 15])
def test_shapes_and_stats(n):
    torch.manual_seed(0)
    layer = MultiScaleBKLayer(8, n)
    x = torch.randn(2, n, 8)
    out, st = layer(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert st["n_low"] == (n + 1) // 2
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


# -------------------------------------------------------------------------------------------
# the reported FLOPs against an independent count of a real forward
# -------------------------------------------------------------------------------------------
# Flops of each aten op beyond the products torch.utils.flop_counter counts (addmm's and
# convolution's multiply-adds), written from the op's definition; one flop = one real
# floating-point operation.  Ops not listed here and not in _FREE make the tally fail.
def _layer_norm_cost(args, out):
    # per row of d = prod(normalized_shape): mean (d - 1 adds, 1 division), centre (d),
    # square (d), variance (d - 1 adds, 1 division), + eps and rsqrt (2), normalise (d),
    # scale by weight (d), shift by bias (d)
    d = int(np.prod(args[1]))
    return args[0].numel() // d * (7 * d + 2)


def _softmax_cost(args, out):
    # per slice of s: max (s - 1 comparisons), s subtractions, s exps, sum (s - 1), s divisions
    s = args[0].shape[args[1]]
    return args[0].numel() // s * (5 * s - 2)


_COST = {
    "add": lambda args, out: out.numel(),
    "sub": lambda args, out: out.numel(),
    "mul": lambda args, out: out.numel(),
    "addmm": lambda args, out: out.numel(),  # + bias (the product: FlopCounterMode)
    "convolution": lambda args, out: out.numel() if args[2] is not None else 0,  # + bias
    "native_layer_norm": _layer_norm_cost,
    "_softmax": _softmax_cost,
    "sum": lambda args, out: args[0].numel() - out.numel(),
    "gelu": lambda args, out: 8 * out.numel(),  # the stated convention: erf is not one flop
    "maximum": lambda args, out: 0,  # comparisons (the pivot guard's threshold only)
    "abs": lambda args, out: 0,
}
_FREE = {"view", "_unsafe_view", "t", "transpose", "select", "slice", "expand", "unsqueeze",
         "cat", "clone", "_to_copy", "detach", "view_as_real", "lift_fresh", "empty", "zeros",
         "ones", "promote_types", "complex", "zeros_like", "copy_", "alias"}


class _Tally(TorchDispatchMode):
    """Tallies ``_COST`` over every aten op of a forward; ops run inside
    ``laplacian_resolvent_diagonal`` go to ``inside`` (by output shape) instead of ``outside``."""

    def __init__(self):
        super().__init__()
        self.outside = 0
        self.inside: list = []  # (output shape, flops) of each op in the resolvent call
        self.in_resolvent = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in _FREE:
            return result
        assert name in _COST, f"no cost rule for aten.{name}"
        out = result[0] if isinstance(result, tuple) else result  # layer_norm: (y, mean, rstd)
        assert not out.is_complex(), f"complex aten.{name}: not in the cost table"
        flops = _COST[name](args, out)
        if self.in_resolvent:
            self.inside.append((tuple(out.shape), flops))
        else:
            self.outside += flops
        return result


def _twin_resolvent_flops(v, z, G):
    """The resolvent part counted by the backend's NumPy twin on counting scalars: ``alpha =
    (v - 2) - z`` (the ``- z`` here; ``v - 2`` runs in torch and is tallied there) and
    ``resolvent_diagonal_ref(alpha, beta = 1, pivmin)``, all ``B`` rows, less the ``n`` products
    (real beta times complex pivot, 2 flops) and sums (2) per row the twin spends forming each
    ``gamma_i`` from scratch where the compiled kernel reuses its sweep's ``t_i``
    (``tests/test_cost.py`` pins that difference); the twin's diagonal must be the layer's
    ``G``."""
    B, n = v.shape
    alpha = np.empty((B, n), dtype=object)
    alpha.ravel()[:] = [Counted(float(x)) for x in np.ravel(v.detach().double().numpy() - 2.0)]
    beta = np.empty((B, n - 1), dtype=object)
    beta.ravel()[:] = [Counted(1.0) for _ in range(B * (n - 1))]
    pivmin = np.full(B, 1e-300)  # far below every pivot here: no guard fires

    def run():
        a = alpha - complex(z)
        return resolvent_diagonal_ref(a, beta, pivmin)

    (g, guarded, singular), flops = measure(run)
    assert not guarded.any() and not singular.any()
    np.testing.assert_allclose(np.vectorize(_val)(g).astype(complex), G.detach().numpy(),
                               rtol=1e-4, atol=0)
    return flops - B * n * (FLOP_RULES[("mul", "R", "C")] + FLOP_RULES[("add", "C", "C")])


def independent_flops(layer, x, monkeypatch):
    """``(stats, count)``: the layer's stats and the FLOPs of its forward on ``x`` counted
    without :mod:`semisep.nn._flops`: FlopCounterMode (matmul, convolution) + the aten tally +
    the NumPy twin of the resolvent kernel; ``count["setup"]`` is the per-call work the model
    leaves out (the guard threshold on (B,) and the off-diagonal products on (n-1,))."""
    tally = _Tally()
    calls = []

    def counted_resolvent(v, z, **kw):
        tally.in_resolvent = True
        try:
            G = laplacian_resolvent_diagonal(v, z, **kw)
        finally:
            tally.in_resolvent = False
        calls.append((v, z, G))
        return G

    monkeypatch.setattr(multiscale_module, "laplacian_resolvent_diagonal", counted_resolvent)
    with FlopCounterMode(display=False) as fc, tally:
        _, stats = layer(x)
    (v, z, G), = calls
    data = sum(f for shape, f in tally.inside if shape == tuple(v.shape))  # v - 2: n per row
    setup = sum(f for shape, f in tally.inside if shape != tuple(v.shape))
    assert all(shape in (tuple(v.shape), v.shape[:1], (v.shape[1] - 1,)) for shape, _ in tally.inside)
    total = fc.get_total_flops() + tally.outside + data + _twin_resolvent_flops(v, z, G)
    return stats, {"total": total, "setup": setup}


@pytest.mark.parametrize("n,d", [(16, 8), (15, 8), (33, 12)])
def test_reported_flops_equal_an_independent_count_of_the_forward(n, d, monkeypatch):
    """stats["flops"], stats["flops_full"] and the saving ratio against the count of a real
    forward of the layer (and of a BKLayer of the same width at the same N).  Exact: both sides
    count the same operations with the same per-operation rules; the model leaves out only the
    per-call set-up inside the resolvent (guard threshold, O(B); beta = 1 * 1, n - 1 products),
    which the tally shows is all that is left."""
    torch.manual_seed(7)
    B = 3  # B not in (n_low, n_low - 1, n, n - 1): the tally tells set-up from data by shape
    layer = _trained_like(MultiScaleBKLayer(d, n), 7)
    full = BKLayer(d, n)
    full.load_state_dict({k: v for k, v in layer.state_dict().items()
                          if k.startswith("norm.") or k.startswith("core.")})
    x = torch.randn(B, n, d)
    st, ms = independent_flops(layer, x, monkeypatch)
    st_full, fl = independent_flops(full, x, monkeypatch)
    assert st["flops"] == ms["total"]
    assert st_full["flops"] == fl["total"] == st["flops_full"]
    assert st["flops_saved_ratio"] == pytest.approx(1 - ms["total"] / fl["total"], rel=1e-14)
    for c, m in ((ms, (n + 1) // 2), (fl, n)):
        assert 0 < c["setup"] <= 8 * B + (m - 1)


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
