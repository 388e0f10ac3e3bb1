"""factorize / check_factorization: exact recovery, honest reports, what the iteration adds."""

from __future__ import annotations

import math

import numpy as np
import pytest

import semisep as ss
from semisep.factorize import RANDOMIZED_THRESHOLD, _one_step_factorize


def synthetic(rng, n, r, dtype=np.float64, batch=()):
    """A matrix that truly is tridiagonal + rank r (non-symmetric T)."""
    cplx = np.dtype(dtype).kind == "c"

    def g(shape):
        x = rng.standard_normal(shape)
        return x + 1j * rng.standard_normal(shape) if cplx else x

    d, lo, up = g(batch + (n,)), g(batch + (n - 1,)), g(batch + (n - 1,))
    U, V = g(batch + (n, r)), g(batch + (n, r))
    T = ss.Tridiagonal(d, lo, up).to_dense()
    return (T + U @ np.swapaxes(V, -1, -2)).astype(dtype)


@pytest.mark.parametrize("method", ["svd", "randomized"])
@pytest.mark.parametrize("n,r", [(40, 2), (64, 5)])
def test_exact_recovery_of_tridiagonal_plus_rank_r(rng, method, n, r):
    H = synthetic(rng, n, r)
    op, rep = ss.factorize(H, r, method=method, return_report=True)
    assert isinstance(op, ss.TridiagonalPlusLowRank) and op.rank == r
    assert rep.relative_error < 1e-10, rep
    assert rep.spectral_error < 1e-10 and rep.passes
    assert rep.iterations == op.factorization.iterations > 1
    assert op.factorization.stop_reason in ("rounding", "tol")
    # the one-step method of the original system cannot
    one = ss.check_factorization(H, _one_step_factorize(H, r))
    assert one.relative_error > 1e-3


def test_exact_recovery_complex_and_batched(rng):
    H = synthetic(rng, 32, 3, np.complex128, batch=(2,))
    op, rep = ss.factorize(H, 3, return_report=True)
    assert op.batch_shape == (2,) and op.dtype == np.complex128
    assert rep.relative_error < 1e-10


def test_iteration_beats_one_step_with_noise(rng):
    """T + rank r + noise of relative size ~1e-6: the iteration reaches the noise level, the
    one-step method stays at the size of band(U V^T)."""
    n, r = 64, 4
    H = synthetic(rng, n, r)
    noise = rng.standard_normal((n, n))
    H = H + 1e-6 * np.linalg.norm(H) / np.linalg.norm(noise) * noise
    it = ss.factorize(H, r, method="svd", return_report=True)[1]
    one = ss.check_factorization(H, _one_step_factorize(H, r))
    assert it.relative_error < 2e-6
    assert one.relative_error > 1e-2
    assert it.relative_error < 1e-3 * one.relative_error
    assert one.iterations == 1 and it.iterations > 1


def test_random_gaussian_matrix_reports_honestly(rng):
    n = 96
    H = rng.standard_normal((n, n))
    op, rep = ss.factorize(H, return_report=True)
    assert rep.rank == math.ceil(math.log2(n)) == op.rank
    assert 0.7 < rep.relative_error < 1.0
    assert rep.passes is False
    assert 0.3 < rep.spectral_error <= 1.0
    d = rep.as_dict()
    assert set(d) == {"relative_error", "max_abs_error", "spectral_error", "rank", "iterations",
                      "passes", "rtol"}
    assert d["passes"] is False and d["rtol"] == 1e-2


def test_check_factorization_fields(rng):
    n = 30
    H = synthetic(rng, n, 2)
    op = ss.factorize(H, 2)
    perturbed = ss.TridiagonalPlusLowRank(op.tridiagonal, op.U * 1.01, op.V)
    rep = ss.check_factorization(H, perturbed, rtol=1e-3)
    D = H - perturbed.to_dense()
    assert rep.relative_error == pytest.approx(np.linalg.norm(D) / np.linalg.norm(H), rel=1e-12)
    assert rep.max_abs_error == pytest.approx(np.max(np.abs(D)), rel=1e-12)
    true_spec = np.linalg.norm(D, 2) / np.linalg.norm(H, 2)
    assert rep.spectral_error == pytest.approx(true_spec, rel=1e-3)  # power-iteration estimate
    assert rep.iterations is None  # built directly, not by factorize
    assert ss.check_factorization(H, op).iterations == op.factorization.iterations
    assert rep.passes == (rep.relative_error <= 1e-3)


@pytest.mark.parametrize("batch", [(), (2,)])
def test_check_factorization_norms_in_closed_form(batch):
    """The report's norms on matrices whose norms are known exactly: ``H = 2 I_n``
    (``|H|_F = 2 sqrt(n)``, ``|H|_2 = 2``) against ``T = H`` but for one diagonal entry
    ``2 - delta``: ``D = delta e_k e_k^T`` has ``|D|_F = |D|_2 = max|D_ij| = delta``, and the
    power iteration is exact on both (rank one, and a multiple of I), so every field is
    determined: relative ``delta / (2 sqrt n)``, spectral ``delta / 2``.  A batch takes the
    worst element."""
    n, k = 16, 5
    deltas = [4e-2, 1e-3][: (batch[0] if batch else 1)]  # the worst first
    d = np.full(batch + (n,), 2.0)
    H = np.broadcast_to(2.0 * np.eye(n), batch + (n, n)).copy()
    for i, delta in enumerate(deltas):
        d[(i,) * len(batch) + (k,)] = 2.0 - delta
    op = ss.Tridiagonal(d, np.zeros(n - 1))
    rep = ss.check_factorization(H, op, rtol=0.01)
    worst = max(deltas)
    assert rep.relative_error == pytest.approx(worst / (2 * math.sqrt(n)), rel=1e-12)
    assert rep.spectral_error == pytest.approx(worst / 2, rel=1e-12)
    assert rep.max_abs_error == pytest.approx(worst, rel=1e-12)
    assert rep.passes == (worst / (2 * math.sqrt(n)) <= 0.01)
    zero = ss.check_factorization(np.zeros((n, n)), ss.Tridiagonal(np.zeros(n), np.zeros(n - 1)))
    assert zero.relative_error == 0.0 and zero.spectral_error == 0.0 and zero.passes


def test_rank_and_method_rules(rng):
    H = synthetic(rng, 8, 1)
    assert ss.factorize(H).rank == 3  # ceil(log2 8)
    assert ss.factorize(np.ones((1, 1))).rank == 0
    assert ss.factorize(H, 0).factorization.stop_reason == "rank"
    op = ss.factorize(H, 8)
    assert ss.check_factorization(H, op).relative_error < 1e-13
    assert ss.factorize(H).factorization.method == "svd"
    big = rng.standard_normal((RANDOMIZED_THRESHOLD + 1,) * 2)
    assert ss.factorize(big, 2, max_iter=2).factorization.method == "randomized"
    assert ss.factorize(H.astype(np.float32), 1).dtype == np.float32
    with pytest.raises(ss.ShapeError, match="square"):
        ss.factorize(np.ones((3, 4)))
    with pytest.raises(ValueError, match="rank"):
        ss.factorize(H, 9)
    with pytest.raises(ValueError, match="method"):
        ss.factorize(H, method="qr")
    bad = H.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ss.NonFiniteError, match="H"):
        ss.factorize(bad)


def test_residual_history_never_increases_with_dense_svd(rng):
    H = synthetic(rng, 40, 3) + 1e-3 * rng.standard_normal((40, 40))
    hist = ss.factorize(H, 3, method="svd", tol=0.0, max_iter=30).factorization
    res = np.array(hist.residuals)
    assert np.all(np.diff(res) <= 1e-12 * res[0])


def test_torch_factorize(rng):
    torch = pytest.importorskip("torch")
    try:
        ss.backends.get_backend("torch")
    except ss.BackendError as exc:
        pytest.skip(f"torch backend not available: {exc}")
    H = synthetic(rng, 32, 2)
    op, rep = ss.factorize(torch.as_tensor(H), 2, return_report=True)
    assert isinstance(op.U, torch.Tensor) and rep.relative_error < 1e-10
