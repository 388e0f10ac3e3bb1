"""Tests for semisep.nn.functional.masked_resolvent_diagonal and the learned-sparsity modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semisep import SingularMatrixError
from semisep.nn import (
    LearnedSparsityG_ii,
    SparseBKBlock,
    SparseBKCore,
    gumbel_sigmoid,
    linear_interpolate,
    masked_resolvent_diagonal,
    topk_mask,
)
from semisep.reference import dense_resolvent_diagonal

# complex128 on well-conditioned problems (Im z = 1 for Hermitian T; |G| <= 1): rounding only
TOL64 = 1e-12


def _problem(rng, B, N, complex_t=False):
    diag = rng.standard_normal((B, N)) - 2.0
    lower = rng.standard_normal((B, N - 1))
    upper = rng.standard_normal((B, N - 1)) if complex_t else None
    if complex_t:
        diag = diag + 1j * rng.standard_normal((B, N))
        lower = lower + 0.5j * rng.standard_normal((B, N - 1))
        upper = upper + 0.5j * rng.standard_normal((B, N - 1))
        diag = diag + 4.0  # keep it comfortably invertible
    return diag, lower, upper


def _t(x):
    return None if x is None else torch.from_numpy(np.asarray(x))


# ------------------------------------------------------------------------------------------------
# masked_resolvent_diagonal
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method,L", [("chunked", None), ("chunked", 3), ("chunked", 4), ("sequential", None), ("reference", None)]
)
@pytest.mark.parametrize("complex_t", [False, True])
def test_masked_values_equal_dense_reference(rng, method, L, complex_t):
    B, N = 4, 29
    diag, lower, upper = _problem(rng, B, N, complex_t)
    z = 0.3 + 1j
    ref = dense_resolvent_diagonal(diag, lower, upper, z)
    masks = [rng.random((B, N)) < p for p in (0.3, 0.5, 0.9)]
    block = np.zeros((B, N), bool)
    block[0, :5] = block[1, 20:] = block[2, 11:13] = True  # row 3 keeps nothing
    for m in masks + [block, np.ones((B, N), bool)]:
        r = masked_resolvent_diagonal(
            _t(diag), _t(lower), _t(upper), z, torch.from_numpy(m), method=method, chunk_length=L
        )
        assert r.values.shape == (int(m.sum()),)
        np.testing.assert_allclose(r.values.numpy(), ref[m], rtol=TOL64, atol=TOL64)
        assert torch.equal(r.mask, torch.from_numpy(m))


def test_chunked_skips_second_pass_only_for_empty_chunks(rng):
    B, N, L = 2, 64, 8
    diag, lower, _ = _problem(rng, B, N)
    block = np.zeros((B, N), bool)
    block[:, 8:16] = True  # one chunk per row in the left sweep
    r = masked_resolvent_diagonal(
        _t(diag), _t(lower), None, 1j, torch.from_numpy(block), method="chunked", chunk_length=L
    )
    full = 2 * B * (N // L) * L
    assert r.work["second_pass_steps_full"] == full
    # left sweep: chunk 1; right sweep needs gR at 9..16 -> positions in two chunks of the reversed
    # sequence: 3 active (row, chunk) pairs per row
    assert r.work["second_pass_steps"] == B * 3 * L
    assert r.work["combined"] == int(block.sum())
    ref = dense_resolvent_diagonal(diag, lower, None, 1j)
    np.testing.assert_allclose(r.values.numpy(), ref[block], rtol=TOL64, atol=TOL64)
    # an unstructured mask at 50% touches every chunk: no pass is skipped
    m = np.zeros((B, N), bool)
    m[:, ::2] = True
    r = masked_resolvent_diagonal(
        _t(diag), _t(lower), None, 1j, torch.from_numpy(m), method="chunked", chunk_length=L
    )
    assert r.work["second_pass_steps"] == full


def test_masked_n1_and_dense_and_per_row(rng):
    r = masked_resolvent_diagonal(
        torch.tensor([[3.0]], dtype=torch.float64),
        torch.zeros(1, 0, dtype=torch.float64),
        None,
        1j,
        torch.tensor([[True]]),
        method="chunked",
    )
    np.testing.assert_allclose(r.values.numpy(), [1 / (3 - 1j)], rtol=TOL64)
    diag, lower, _ = _problem(rng, 3, 10)
    m = torch.from_numpy(np.stack([np.arange(10) % 2 == 0, np.arange(10) < 5, np.arange(10) >= 5]))
    r = masked_resolvent_diagonal(_t(diag), _t(lower), None, 1j, m)
    d = r.dense(fill=float("nan"))
    assert torch.isnan(d.real[~m]).all()
    ref = dense_resolvent_diagonal(diag, lower, None, 1j)
    np.testing.assert_allclose(d[m].numpy(), ref[m.numpy()], rtol=TOL64)
    assert r.per_row().shape == (3, 5)
    m2 = m.clone()
    m2[0, 1] = True
    with pytest.raises(ValueError):
        masked_resolvent_diagonal(_t(diag), _t(lower), None, 1j, m2).per_row()


def test_masked_singular_and_bad_mask():
    diag = torch.zeros(1, 4, dtype=torch.float64)
    lower = torch.zeros(1, 3, dtype=torch.float64)
    with pytest.raises(SingularMatrixError):
        masked_resolvent_diagonal(
            diag, lower, None, 0.0, torch.ones(1, 4, dtype=torch.bool), method="chunked"
        )
    with pytest.raises(ValueError):
        masked_resolvent_diagonal(diag + 1, lower, None, 1j, torch.ones(1, 5, dtype=torch.bool))


def test_masked_gradcheck_wrt_v_and_z(rng):
    N = 9
    v0 = torch.from_numpy(rng.standard_normal((2, N)))
    ones = torch.ones(N - 1, dtype=torch.float64)
    m = torch.from_numpy(rng.random((2, N)) < 0.5)
    m[:, 0] = True

    def f(v, zr, zi):
        r = masked_resolvent_diagonal(v - 2.0, ones, None, torch.complex(zr, zi), m)
        return torch.view_as_real(r.values)

    args = (
        v0.clone().requires_grad_(),
        torch.tensor(0.2, dtype=torch.float64, requires_grad=True),
        torch.tensor(0.9, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(f, args)


# ------------------------------------------------------------------------------------------------
# masks and interpolation
# ------------------------------------------------------------------------------------------------
def test_linear_interpolate_against_loop(rng):
    B, N, C = 3, 17, 2
    vals = torch.from_numpy(rng.standard_normal((B, N, C)))
    m = torch.from_numpy(rng.random((B, N)) < 0.3)
    m[:, 5] = True
    out = linear_interpolate(vals, m).numpy()
    for b in range(B):
        kept = np.flatnonzero(m[b].numpy())
        for c in range(C):
            exp = np.interp(np.arange(N), kept, vals[b, kept, c].numpy())  # flat beyond the ends
            np.testing.assert_allclose(out[b, :, c], exp, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError):
        linear_interpolate(vals, torch.zeros(B, N, dtype=torch.bool))


def test_gumbel_sigmoid_rate_and_straight_through():
    torch.manual_seed(0)
    logits = torch.full((200, 100), 0.8, requires_grad=True)
    m = gumbel_sigmoid(logits, tau=1.0)
    assert set(torch.unique(m.detach()).tolist()) <= {0.0, 1.0}
    # P(keep) = sigmoid(0.8) = 0.690; 20000 samples: std 0.0033
    assert abs(m.detach().mean().item() - torch.sigmoid(torch.tensor(0.8)).item()) < 0.015
    m.sum().backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad > 0).all()


def test_topk_mask_deterministic_ties():
    s = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0]])
    assert topk_mask(s, 2).tolist() == [[0.0, 1.0, 1.0, 0.0, 0.0]]


# ------------------------------------------------------------------------------------------------
# SparseBKCore / LearnedSparsityG_ii
# ------------------------------------------------------------------------------------------------
def _exact_features(v, z=1j):
    G = dense_resolvent_diagonal(v.detach().double().numpy() - 2.0, np.ones(v.shape[1] - 1), None, z)
    return np.stack([G.real, G.imag], -1)


@pytest.mark.parametrize("s", [0.3, 0.5, 0.7])
def test_eval_mask_deterministic_with_target_sparsity(s):
    torch.manual_seed(1)
    B, N, D = 4, 30, 8
    core = SparseBKCore(D, N, target_sparsity=s).eval()
    x, v = torch.randn(B, N, D), torch.randn(B, N)
    with torch.no_grad():
        f1, m1, r1 = core(x, v)
        f2, m2, r2 = core(x, v)
    k = round(N * (1 - s))
    assert torch.equal(m1, m2) and torch.equal(f1, f2)
    assert (m1.sum(1) == k).all()
    assert r1.item() == pytest.approx(1 - k / N)
    keep = m1.bool().numpy()
    np.testing.assert_allclose(f1.numpy()[keep], _exact_features(v)[keep], rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("interp", ["linear", "learned"])
def test_kept_exact_and_skipped_interpolated_in_training(interp):
    torch.manual_seed(2)
    B, N, D = 3, 25, 8
    core = LearnedSparsityG_ii(D, N, target_sparsity=0.5, interpolation_method=interp).double().train()
    x, v = torch.randn(B, N, D, dtype=torch.float64), torch.randn(B, N, dtype=torch.float64)
    f, m, ratio = core(x, v)
    keep = m.detach().bool()
    exact = _exact_features(v)
    np.testing.assert_allclose(f.detach().numpy()[keep.numpy()], exact[keep.numpy()], rtol=1e-12, atol=1e-12)
    assert ratio.item() == pytest.approx(1 - keep.double().mean().item())
    kept_only = torch.where(keep[..., None], torch.from_numpy(exact), torch.zeros(()))
    if interp == "linear":  # the skipped values are the linear interpolation of the kept ones
        np.testing.assert_allclose(
            f.detach().numpy(), linear_interpolate(kept_only, keep).numpy(), rtol=1e-12, atol=1e-12
        )
    # skipped positions never see their own exact value: changing v changes G everywhere, but the
    # fill must equal the interpolator applied to the kept values only
    interp_out = core.interpolate(kept_only, keep, v).detach().numpy()
    np.testing.assert_allclose(
        f.detach().numpy()[~keep.numpy()], interp_out[~keep.numpy()], rtol=1e-12, atol=1e-12
    )


def test_gradients_flow_through_straight_through_mask():
    torch.manual_seed(3)
    B, N, D = 4, 20, 8
    core = SparseBKCore(D, N, target_sparsity=0.5).train()
    x = torch.randn(B, N, D, requires_grad=True)
    v = torch.randn(B, N, requires_grad=True)
    f, m, _ = core(x, v)
    assert m.requires_grad
    (f.pow(2).sum() + core.sparsity_loss()).backward()
    for name, g in [("x", x.grad), ("v", v.grad)] + [(n, p.grad) for n, p in core.named_parameters()]:
        if name.startswith("interpolator.net.0") or name.startswith("interpolator.net.2"):
            continue  # behind the zero-initialised last layer: zero gradient at init, by design
        assert g is not None and torch.isfinite(g).all(), name
        assert g.abs().sum() > 0, name


def test_gradcheck_wrt_v_at_fixed_mask():
    torch.manual_seed(4)
    B, N, D = 1, 7, 4
    core = SparseBKCore(D, N, target_sparsity=0.5).double().eval()
    with torch.no_grad():  # make the learned interpolator non-trivial
        core.interpolator.net[-1].weight.normal_(0, 0.3)
    x = torch.randn(B, N, D, dtype=torch.float64)
    v = torch.randn(B, N, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda vv: core(x, vv)[0], (v,))


def test_sparsity_loss_moves_sparsity_toward_target():
    torch.manual_seed(5)
    B, N, D = 8, 32, 8
    target = 0.8
    core = SparseBKCore(D, N, target_sparsity=target, interpolation_method="linear").train()
    with torch.no_grad():
        core.predictor.out.bias.zero_()  # start near keep-rate 0.5, i.e. sparsity 0.5
    opt = torch.optim.Adam(core.parameters(), lr=5e-2)
    x, v = torch.randn(B, N, D), torch.randn(B, N)
    feats = torch.from_numpy(_exact_features(v)).float()

    def expected_sparsity():
        with torch.no_grad():
            return 1.0 - torch.sigmoid(core.predictor(x)).mean().item()

    start = expected_sparsity()
    for _ in range(40):
        opt.zero_grad()
        f, _, _ = core(x, v)
        loss = (f - feats).pow(2).mean() + 1.0 * core.sparsity_loss()
        loss.backward()
        opt.step()
    end = expected_sparsity()
    assert abs(start - 0.5) < 0.1
    # the gap to the target shrinks to less than half of its start
    assert abs(end - target) < 0.5 * abs(start - target), (start, end)
    assert core.get_sparsity_stats()["calls"] == 40


def test_block_stats_are_measured():
    torch.manual_seed(6)
    blk = SparseBKBlock(8, 16, target_sparsity=0.25)
    x = torch.randn(3, 16, 8)
    y = blk(x)
    st = blk.get_sparsity_stats()
    m = blk.core._last_mask.detach()
    assert y.shape == x.shape
    assert st["sparsity_ratio"] == pytest.approx(1 - m.mean().item())
    assert st["num_computed"] == pytest.approx(m.sum(1).mean().item())
    assert blk.get_sparsity_loss().item() == pytest.approx(0.01 * (1 - m.mean().item() - 0.25) ** 2, rel=1e-5)
    blk.eval()
    with torch.no_grad():
        blk(x)
    assert blk.get_sparsity_stats()["sparsity_ratio"] == pytest.approx(1 - 12 / 16)
