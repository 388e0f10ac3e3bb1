"""TridiagonalPlusLowRank (H = T + U V^T): every operation against dense NumPy/SciPy.

Tolerances: ``C * eps * N * cond_2(T - zI) * cond_2(K)`` with C = 50 (the tridiagonal bound of
tests/helpers.py times the conditioning of the Woodbury capacitance K), computed on the dense
matrices, never "whatever passes".
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import semisep as ss
from semisep import _linalg as la
from semisep import reference as ref

from .helpers import eps_of, random_tridiagonal

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def relerr(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def make(rng, batch, n, r, dtype, symmetric=False, ubatch=None):
    # single precision: diagonally dominant T, so that cond(A) leaves the checks meaningful
    single = np.finfo(np.dtype(dtype)).bits == 32
    d, lo, up = random_tridiagonal(rng, batch, n, dtype, symmetric=symmetric, dominant=single)
    ub = batch if ubatch is None else ubatch
    cplx = np.dtype(dtype).kind == "c"

    def arr(shape):
        x = rng.standard_normal(shape) / np.sqrt(n)
        return (x + 1j * rng.standard_normal(shape) / np.sqrt(n) if cplx else x).astype(dtype)

    return d, lo, up, arr(ub + (n, r)), arr(ub + (n, r))


def dense_H(d, lo, up, U, V):
    """The oracle's dense H = T + U V^T (complex128 / float64)."""
    T = ref.tridiagonal_to_dense(d, lo, up)
    return T + np.asarray(U, np.result_type(U, np.float64)) @ np.swapaxes(V, -1, -2)


#: Largest bound a value comparison is run with: at 1 and beyond, an all-zero result passes.
#: Problems whose bound exceeds it are too ill-conditioned for their dtype; their value checks
#: are skipped with the bound in the reason (as the property test's ``assume`` does).
TOL_CAP = 1e-2


def capped(tol: float) -> float:
    """``tol``, or skip the calling test's value checks if ``tol > TOL_CAP``."""
    if not tol <= TOL_CAP:
        pytest.skip(f"bound c eps N cond(A) cond(K) m = {tol:.3g} > {TOL_CAP:g}: the problem is "
                    "too ill-conditioned for its dtype to check values")
    return tol


def tolerance(dtype, d, lo, up, U, V, z, c=50.0):
    """``c eps N cond(A) cond(K) m`` with ``m >= 1`` the cancellation factor of the final
    Woodbury subtraction, ``max_i (|G_ii| + sum_k |X_ik W_ik|) / max_i |diag_i|`` (the sizes
    of the two terms against the size of the result), all from the dense oracle."""
    A = ref.tridiagonal_to_dense(d, lo, up, z)
    n = A.shape[-1]
    batch = np.broadcast_shapes(A.shape[:-2], U.shape[:-2], V.shape[:-2])
    nb = int(np.prod(batch))
    A = np.broadcast_to(A, batch + (n, n)).reshape((nb, n, n))
    Ub = np.broadcast_to(U, batch + U.shape[-2:]).reshape((nb,) + U.shape[-2:])
    Vb = np.broadcast_to(V, batch + V.shape[-2:]).reshape((nb,) + V.shape[-2:])
    worst = 0.0
    for a, u, v in zip(A, Ub, Vb, strict=False):
        ainv = np.linalg.inv(a)
        X = ainv @ u
        K = np.eye(u.shape[-1]) + v.T @ X
        m = 1.0
        if u.shape[-1]:
            W = np.linalg.solve(K, (ainv.T @ v).T).T
            XW = np.abs(X * W).sum(axis=1)
            res = np.diag(ainv) - (X * W).sum(axis=1)
            m = max(1.0, float(np.max(np.abs(np.diag(ainv)) + XW) / np.max(np.abs(res))))
        worst = max(worst, np.linalg.cond(a) * (np.linalg.cond(K) if u.shape[-1] else 1.0) * m)
    return c * eps_of(dtype) * A.shape[-1] * worst


# -------------------------------------------------------------------------------------------
# values against the dense reference
# -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("r", [0, 1, 4])
def test_resolvent_diagonal_matches_dense(rng, dtype, batch, symmetric, r):
    n = 19
    d, lo, up, U, V = make(rng, batch, n, r, dtype, symmetric)
    z = 0.3 + 0.7j
    H = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V)
    G = H.resolvent_diagonal(z)
    assert G.shape == batch + (n,)
    assert G.dtype == np.result_type(np.dtype(dtype), np.complex64)
    Hd = dense_H(d, lo, up, U, V) - z * np.eye(n)
    Gref = np.diagonal(np.linalg.inv(Hd), axis1=-2, axis2=-1)
    assert relerr(G, Gref) < capped(tolerance(dtype, d, lo, up, U, V, z))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch,ubatch,z", [((), None, 0.3 + 0.7j), ((3,), None, -0.2 + 0.1j),
                                            ((), (2, 3), 0.3 + 0.7j), ((2, 1), (3,), 0.25),
                                            ((), None, np.array([0.3 + 0.7j, 1j]))])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("r", [1, 3, 8])
def test_resolvent_diagonal_fused_matches_composed_and_dense(rng, dtype, batch, ubatch, z,
                                                             symmetric, r):
    """The NumPy backend's fused Woodbury kernels (method "auto" / "sequential") against the
    composed path (method "reference": two tridiagonal solves, dense products) and dense
    inverses: batch 1 and batches, U / V batched beyond T, real z, an array of z, odd r."""
    n = 23
    d, lo, up, U, V = make(rng, batch, n, r, dtype, symmetric, ubatch=ubatch)
    H = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V)
    G, info = H.resolvent_diagonal(z, return_info=True)
    Gc, info_c = H.resolvent_diagonal(z, method="reference", return_info=True)
    full = np.broadcast_shapes(batch, U.shape[:-2], np.shape(z))
    assert G.shape == Gc.shape == full + (n,) and G.dtype == Gc.dtype
    assert set(info.pivots) == set(info_c.pivots)
    assert info.total_guarded == info_c.total_guarded == 0
    assert np.allclose(info.capacitance_cond, info_c.capacitance_cond, rtol=1e-3)
    for key, p in info.pivots.items():
        assert np.shape(p.pivots_guarded) == np.shape(info_c.pivots[key].pivots_guarded)
    zz = np.asarray(z)[..., None, None]
    Hd = dense_H(d, lo, up, U, V) - zz * np.eye(n)
    Gref = np.diagonal(np.linalg.inv(Hd), axis1=-2, axis2=-1)
    tol = capped(max(tolerance(dtype, d, lo, up, U, V, zk) for zk in np.atleast_1d(z)))
    # fused kernels and the composed path are independent implementations: each against the
    # dense inverse, and against each other
    assert relerr(G, Gref) < tol and relerr(Gc, Gref) < tol
    assert relerr(G, Gc) < 2 * tol


def test_resolvent_diagonal_guarded_pivot_falls_back_and_is_exact(rng):
    """A zero leading minor of T - zI (invertible): the fused kernels see a guarded pivot, the
    composed path runs instead (its solves pivot: no guard, no refinement) and stays exact."""
    d, lo, up = np.array([0.0, 1.0, 2.0, 1.5]), np.array([1.0, 1.0, 0.5]), np.array([2.0, 1.0, 1.0])
    U, V = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    H = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V)
    G, info = H.resolvent_diagonal(0.0, return_info=True)
    assert info.pivots["solve"].total_guarded == 0  # the composed path's pivoted solves
    assert info.pivots["solve"].refinement_steps == 0
    Gref = np.diag(np.linalg.inv(H.to_dense()))
    assert np.max(np.abs(G - Gref)) < 1e-13 * np.max(np.abs(Gref))


def test_solve_and_logdet_take_K_from_the_fused_sweeps(rng, monkeypatch):
    """solve with k <= r and logdet take K = I + V^T X from the fused forward pass (NumPy,
    "auto"); they agree with the composed path ("reference": an r-column solve) and with the
    dense matrix; solve with k > r stays composed; a guarded pivot (a zero leading minor of
    T - zI) falls back to the composed path, which pivots, and stays exact; an ill-conditioned
    K warns at the caller's line on both paths."""
    n, r = 40, 4
    d, lo, up, U, V = make(rng, (2,), n, r, np.float64)
    H = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V)
    z = 0.3 + 0.2j
    Hd = dense_H(d, lo, up, U, V) - z * np.eye(n)
    fused_calls = []
    kernel = type(H._backend).woodbury_forward
    monkeypatch.setattr(type(H._backend), "woodbury_forward",
                        lambda self, *a, **k: fused_calls.append(1) or kernel(self, *a, **k))
    for k in (1, r, r + 3):
        b = rng.standard_normal((2, n, k))
        before = len(fused_calls)
        x, info = H.solve(b, z, return_info=True)
        assert len(fused_calls) - before == (1 if k <= r else 0)
        xc = H.solve(b, z, method="reference")
        assert len(fused_calls) - before == (1 if k <= r else 0)
        xr = np.linalg.solve(Hd, b)
        assert relerr(x, xr) < 1e-13 and relerr(xc, xr) < 1e-13
        assert info.pivots["solve"].refinement_steps == 0
        assert np.allclose(info.capacitance_cond, np.linalg.cond(
            np.eye(r) + np.swapaxes(V, -1, -2) @ np.linalg.solve(Hd - U @ np.swapaxes(V, -1, -2), U)))
    before = len(fused_calls)
    ld, info = H.logdet(z, return_info=True)
    assert len(fused_calls) - before == 1
    sgn, lab = np.linalg.slogdet(Hd)
    assert np.allclose(ld, H.logdet(z, method="reference"), rtol=1e-13, atol=0)
    assert np.allclose(ld.real, lab, rtol=1e-13) and np.allclose(np.exp(1j * ld.imag), sgn, rtol=1e-12)
    assert set(info.pivots) == {"logdet", "solve"} and info.total_guarded == 0
    # guarded pivot: T - 0 I has a zero leading 1x1 minor
    d0, lo0, up0 = np.array([0.0, 1.0, 2.0, 1.5]), np.array([1.0, 1.0, 0.5]), np.array([2.0, 1.0, 1.0])
    U0, V0 = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    H0 = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d0, lo0, up0), U0, V0)
    b0 = rng.standard_normal(4)
    x0, info0 = H0.solve(b0, 0.0, return_info=True)
    assert info0.pivots["solve"].total_guarded == 0 and info0.pivots["solve"].refinement_steps == 0
    assert relerr(x0, np.linalg.solve(H0.to_dense(), b0)) < 1e-13
    ld0 = H0.logdet(0.0)
    sgn0, lab0 = np.linalg.slogdet(H0.to_dense())
    assert ld0.real == pytest.approx(lab0, rel=1e-13) and np.exp(1j * ld0.imag) == pytest.approx(sgn0)
    # ill-conditioned K (T = I, a rank-2 update with a tiny singular value of K)
    n1 = 8
    T1 = ss.Tridiagonal(np.ones(n1), np.zeros(n1 - 1))
    U1, V1 = np.zeros((n1, 2)), np.zeros((n1, 2))
    U1[0, 0], V1[0, 0] = 1.0, 1.0
    U1[1, 1], V1[1, 1] = -(1 - 1e-14), 1.0
    H1 = ss.TridiagonalPlusLowRank(T1, U1, V1)
    for call in (lambda: H1.solve(np.ones(n1)), lambda: H1.solve(np.ones((n1, 3))), lambda: H1.logdet()):
        with pytest.warns(ss.IllConditionedWarning, match="cond_2") as rec:
            call()
        assert rec[0].filename == __file__


@pytest.mark.parametrize("method", ["auto", "reference"])
def test_resolvent_diagonal_singular_T_raises(method):
    """T - zI singular (z an eigenvalue of T) raises before any Woodbury work, on both paths."""
    n = 5
    T = ss.Tridiagonal(np.full(n, 2.0), np.ones(n - 1))
    H = ss.TridiagonalPlusLowRank(T, np.ones((n, 2)) / n, np.ones((n, 2)) / n)
    with pytest.raises(ss.SingularMatrixError, match="T - z I is singular"):
        H.resolvent_diagonal(1.0, method=method)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [None, 1, 3])
@pytest.mark.parametrize("r", [0, 2])
def test_solve_matches_dense(rng, dtype, k, r):
    batch, n = (2,), 17
    d, lo, up, U, V = make(rng, batch, n, r, dtype)
    z = 0.1 - 0.5j
    b = rng.standard_normal(batch + ((n,) if k is None else (n, k))).astype(dtype)
    x = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V).solve(b, z)
    assert x.shape == b.shape
    Hd = dense_H(d, lo, up, U, V) - z * np.eye(n)
    xr = np.linalg.solve(Hd, b[..., None] if k is None else b)
    xr = xr[..., 0] if k is None else xr
    assert relerr(x, xr) < capped(tolerance(dtype, d, lo, up, U, V, z))


def test_solve_broadcasts_rhs_and_z(rng):
    n, r = 9, 2
    d, lo, up, U, V = make(rng, (), n, r, np.float64)
    H = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V)
    z = np.array([0.5j, -0.2 + 1j, 2.0 + 0.1j])
    b = rng.standard_normal((n, 2))
    x = H.solve(b, z)  # z (3,) with an operator of batch (): result batch (3,)
    assert x.shape == (3, n, 2)
    Hd = dense_H(d, lo, up, U, V)
    for i, zi in enumerate(z):
        assert relerr(x[i], np.linalg.solve(Hd - zi * np.eye(n), b)) < 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("r", [0, 1, 3])
def test_logdet_matches_slogdet(rng, dtype, r):
    batch, n = (3,), 15
    d, lo, up, U, V = make(rng, batch, n, r, dtype)
    z = -0.4 + 0.2j
    ld = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V).logdet(z)
    s, la_ = np.linalg.slogdet(dense_H(d, lo, up, U, V) - z * np.eye(n))
    tol = capped(tolerance(dtype, d, lo, up, U, V, z))
    assert np.all(np.abs(ld.real - la_) < tol * np.maximum(1, np.abs(la_)) + tol)
    assert np.all(np.abs(np.exp(1j * ld.imag) - s) < tol + 10 * eps_of(dtype))
    assert np.all((ld.imag > -np.pi) & (ld.imag <= np.pi))


def test_logdet_real_rule(rng):
    n = 8
    T = ss.Tridiagonal(np.full(n, 3.0), np.ones(n - 1))
    U = rng.standard_normal((n, 2)) * 0.1
    H = ss.TridiagonalPlusLowRank(T, U, U)  # SPD: T SPD plus U U^T
    ld = H.logdet()
    assert np.isrealobj(ld)
    assert ld == pytest.approx(np.linalg.slogdet(H.to_dense())[1], rel=1e-13)
    # negative determinant through K alone: T = I, U V^T = -2 e0 e0^T -> det = -1
    e0 = np.zeros((n, 1))
    e0[0] = 1
    Hn = ss.TridiagonalPlusLowRank(ss.Tridiagonal(np.ones(n), np.zeros(n - 1)), -2 * e0, e0)
    ldn = Hn.logdet()
    assert np.iscomplexobj(ldn) and ldn.imag == np.pi and abs(ldn.real) < 1e-15


@pytest.mark.parametrize("dtype", DTYPES)
def test_products_transpose_dense(rng, dtype):
    batch, n, r = (2,), 11, 3
    d, lo, up, U, V = make(rng, batch, n, r, dtype)
    H = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V)
    Hd = dense_H(d, lo, up, U, V)
    tol = 20 * eps_of(dtype) * n
    assert relerr(H.to_dense(), Hd) < tol
    assert relerr(np.asarray(H), Hd) < tol
    x = rng.standard_normal(batch + (n,)).astype(dtype)
    X = rng.standard_normal(batch + (n, 4)).astype(dtype)
    assert relerr(H @ x, np.einsum("...ij,...j->...i", Hd, x)) < tol
    assert relerr(H.matvec(X), Hd @ X) < tol
    assert relerr(H.rmatvec(X), np.swapaxes(Hd, -1, -2) @ X) < tol
    assert relerr(H.T.to_dense(), np.swapaxes(Hd, -1, -2)) < tol  # transpose, no conjugate
    assert H.shape == batch + (n, n) and H.batch_shape == batch and H.rank == r
    assert H.dtype == np.dtype(dtype)


def test_rank_zero_reduces_to_T(rng):
    n = 13
    d, lo, up = random_tridiagonal(rng, (), n, np.float64)
    T = ss.Tridiagonal(d, lo, up)
    H = ss.TridiagonalPlusLowRank(T, np.zeros((n, 0)), np.zeros((n, 0)))
    z = 0.5 + 0.5j
    assert np.array_equal(H.resolvent_diagonal(z), T.resolvent_diagonal(z))
    assert np.array_equal(H.solve(np.ones(n), z), T.solve(np.ones(n), z))
    assert H.logdet(z) == T.logdet(z)
    assert np.array_equal(H.to_dense(), T.to_dense())


def test_dtype_promotion(rng):
    n = 6
    T32 = ss.Tridiagonal(np.full(n, 3, np.float32), np.ones(n - 1, np.float32))
    U32 = np.ones((n, 1), np.float32)
    H = ss.TridiagonalPlusLowRank(T32, U32, U32)
    assert H.dtype == np.float32 and H.tridiagonal.dtype == np.float32
    assert H.resolvent_diagonal(0.5).dtype == np.float32
    assert H.resolvent_diagonal(1j).dtype == np.complex64
    assert H.solve(np.ones(n, np.float32)).dtype == np.float32
    H64 = ss.TridiagonalPlusLowRank(T32, U32.astype(np.float64), U32)
    assert H64.dtype == np.float64 and H64.tridiagonal.dtype == np.float64
    Hi = ss.TridiagonalPlusLowRank(ss.Tridiagonal(np.full(n, 3), np.ones(n - 1, int)),
                                   np.ones((n, 1), int), np.ones((n, 1), int))
    assert Hi.dtype == np.float64


# -------------------------------------------------------------------------------------------
# the exact formula versus the two wrong ones the original system got close to
# -------------------------------------------------------------------------------------------
def _woodbury_variant(d, lo, up, U, V, z, variant):
    """Dense-oracle versions of the Woodbury diagonal: the exact one and two wrong ones."""
    A = ref.tridiagonal_to_dense(d, lo, up, z)
    Ainv = np.linalg.inv(A)
    G = np.diag(Ainv)
    if variant == "shortcut":  # diag(G) in place of A^{-1}: resolvent of another matrix
        X, Y = G[:, None] * U, G[:, None] * V
    else:
        X, Y = Ainv @ U, Ainv.T @ V
    K = np.eye(U.shape[1]) + V.T @ X
    if variant == "K^T":
        K = K.T
    W = np.linalg.solve(K, Y.T).T
    return G - np.sum(X * W, axis=1), G


def test_wrong_capacitance_orientation_and_diag_shortcut_fail(rng):
    """On a non-symmetric problem (N = 64, r = 6, z = 1j) the exact Woodbury diagonal passes
    its tolerance while K^T and the diag(G) shortcut miss by orders of magnitude."""
    n, r, z = 64, 6, 1j
    d, lo, up = random_tridiagonal(rng, (), n, np.float64)  # non-symmetric T
    U = rng.standard_normal((n, r))
    V = rng.standard_normal((n, r))
    H = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V)
    exact = np.diag(np.linalg.inv(dense_H(d, lo, up, U, V) - z * np.eye(n)))
    ours = H.resolvent_diagonal(z)
    tol = tolerance(np.float64, d, lo, up, U, V, z)
    assert tol < 1e-6
    assert relerr(ours, exact) < tol
    oracle_exact, G = _woodbury_variant(d, lo, up, U, V, z, "exact")
    assert relerr(oracle_exact, exact) < tol  # the formula itself, in the oracle
    correction = np.max(np.abs(exact - G))
    for variant in ("K^T", "shortcut"):
        wrong, _ = _woodbury_variant(d, lo, up, U, V, z, variant)
        err = relerr(wrong, exact)
        assert err > 1e6 * tol, (variant, err, tol)
        # and a large fraction of the correction itself
        assert np.max(np.abs(wrong - exact)) > 0.1 * correction, variant


# -------------------------------------------------------------------------------------------
# info, conditioning, errors
# -------------------------------------------------------------------------------------------
def test_return_info_reports_capacitance_condition(rng):
    n, r = 10, 2
    d, lo, up, U, V = make(rng, (3,), n, r, np.float64)
    H = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V)
    G, info = H.resolvent_diagonal(1j, return_info=True)
    assert isinstance(info, ss.WoodburyInfo) and info.rank == r
    assert set(info.pivots) == {"resolvent_diagonal", "solve", "solve_transpose"}
    assert info.capacitance_cond.shape == (3,)
    for i in range(3):
        A = ref.tridiagonal_to_dense(d[i], lo[i], up[i], 1j)
        K = np.eye(r) + V[i].T @ np.linalg.solve(A, U[i])
        assert info.capacitance_cond[i] == pytest.approx(np.linalg.cond(K), rel=1e-8)
    x, info2 = H.solve(np.ones(n), 1j, return_info=True)
    assert set(info2.pivots) == {"solve"} and info2.total_guarded == 0
    Hs = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo), U, V)  # symmetric T: one shared pass
    _, info3 = Hs.resolvent_diagonal(1j, return_info=True)
    assert set(info3.pivots) == {"resolvent_diagonal", "solve"}


def test_singular_capacitance_raises_and_ill_conditioned_warns():
    n = 8
    T = ss.Tridiagonal(np.ones(n), np.zeros(n - 1))  # T = I
    e0 = np.zeros((n, 1))
    e0[0] = 1.0
    H = ss.TridiagonalPlusLowRank(T, -e0, e0)  # H = I - e0 e0^T: singular, K = 0
    for call in (lambda: H.resolvent_diagonal(0.0), lambda: H.solve(np.ones(n)),
                 lambda: H.logdet()):
        with pytest.raises(ss.SingularMatrixError, match="capacitance"):
            call()
    # rank 1 always has cond(K) = 1; a rank-2 K with a tiny singular value instead
    U = np.zeros((n, 2))
    V = np.zeros((n, 2))
    U[0, 0], V[0, 0] = 1.0, 1.0
    U[1, 1], V[1, 1] = -(1 - 1e-14), 1.0
    Hw = ss.TridiagonalPlusLowRank(T, U, V)
    with pytest.warns(ss.IllConditionedWarning, match="cond_2"):
        G, info = Hw.resolvent_diagonal(0.0, return_info=True)
    assert info.worst_capacitance_cond > 1e13
    assert np.all(np.isfinite(G))


def test_errors_name_arguments():
    n = 5
    T = ss.Tridiagonal(np.full(n, 2.0), np.ones(n - 1))
    with pytest.raises(ss.ShapeError, match="U has shape"):
        ss.TridiagonalPlusLowRank(T, np.ones((n + 1, 2)), np.ones((n, 2)))
    with pytest.raises(ss.ShapeError, match="last dimensions"):
        ss.TridiagonalPlusLowRank(T, np.ones((n, 2)), np.ones((n, 3)))
    with pytest.raises(ss.ShapeError, match="V has shape"):
        ss.TridiagonalPlusLowRank(T, np.ones((n, 2)), np.ones(n))
    with pytest.raises(ss.ShapeError, match="batch"):
        ss.TridiagonalPlusLowRank(T, np.ones((2, n, 1)), np.ones((3, n, 1)))
    bad = np.ones((n, 1))
    bad[2] = np.nan
    with pytest.raises(ss.NonFiniteError, match="U"):
        ss.TridiagonalPlusLowRank(T, bad, np.ones((n, 1)))
    with pytest.raises(TypeError, match="Tridiagonal"):
        ss.TridiagonalPlusLowRank(np.eye(n), np.ones((n, 1)), np.ones((n, 1)))
    H = ss.TridiagonalPlusLowRank(T, np.ones((n, 1)), np.ones((n, 1)))
    with pytest.raises(ss.ShapeError, match="N = 5"):
        H.solve(np.ones(n + 1))
    with pytest.raises(ss.NonFiniteError):
        H.resolvent_diagonal(np.nan)
    torch = pytest.importorskip("torch")
    with pytest.raises(ss.BackendError, match="mixed"):
        ss.TridiagonalPlusLowRank(T, torch.ones(n, 1, dtype=torch.float64), np.ones((n, 1)))


def test_memory_accounting_reproduces_the_table():
    """N = 1024, r = 10, float32: dense 4.00 MiB; structured: what the operator holds.

    Non-symmetric T holds diag (N) + lower (N-1) + upper (N-1) = 3070 floats, U and V hold
    2 N r = 20480: 94200 bytes = 0.0898 MiB, i.e. the "about 0.09 MiB" of the original table
    (which counted 3N; the true tridiagonal is 2 floats smaller).  Symmetric storage holds
    one off-diagonal: 90108 bytes = 0.0859 MiB.
    """
    n, r = 1024, 10
    T = ss.Tridiagonal(np.zeros(n, np.float32), np.zeros(n - 1, np.float32),
                       np.zeros(n - 1, np.float32))
    U = np.zeros((n, r), np.float32)
    H = ss.TridiagonalPlusLowRank(T, U, U.copy())
    mib = 2.0**20
    assert H.dense_nbytes == 4 * n * n and f"{H.dense_nbytes / mib:.2f}" == "4.00"
    assert H.nbytes == (3 * n - 2 + 2 * n * r) * 4 == 94200
    assert f"{H.nbytes / mib:.2f}" == "0.09"
    Hs = ss.TridiagonalPlusLowRank(ss.Tridiagonal(T.diag, T.lower), U, U.copy())
    assert Hs.nbytes == (2 * n - 1 + 2 * n * r) * 4 == 90108
    assert H.dense_nbytes / H.nbytes == pytest.approx(44.5, abs=0.1)


# -------------------------------------------------------------------------------------------
# hypothesis
# -------------------------------------------------------------------------------------------
@st.composite
def lowrank_problems(draw):
    batch = draw(st.sampled_from([(), (1,), (2,), (2, 1)]))
    n = draw(st.integers(1, 16))
    r = draw(st.integers(0, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.complex64, np.complex128]))
    symmetric = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    ubatch = draw(st.sampled_from([(), batch]))
    rng = np.random.default_rng(seed)
    d, lo, up, U, V = make(rng, batch, n, r, dtype, symmetric, ubatch=ubatch)
    z = draw(st.one_of(
        st.complex_numbers(max_magnitude=3, allow_nan=False, allow_infinity=False),
        st.floats(-3, 3),
    ))
    return d, lo, up, U, V, z, dtype


@given(lowrank_problems())
def test_property_against_dense(p):
    d, lo, up, U, V, z, dtype = p
    n = d.shape[-1]
    Hd = dense_H(d, lo, up, U, V) - z * np.eye(n)
    A = ref.tridiagonal_to_dense(d, lo, up, z)
    # the claim is for problems the dtype can represent: A and K well conditioned
    tol = tolerance(dtype, d, lo, up, U, V, z)
    assume(tol < 1e-2)
    assume(np.max(np.linalg.cond(A.reshape((-1, n, n)))) < 1e-2 / eps_of(dtype))
    H = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ss.IllConditionedWarning)
        G = H.resolvent_diagonal(z)
        x = H.solve(np.ones(n, dtype), z)
    Gref = np.diagonal(np.linalg.inv(Hd), axis1=-2, axis2=-1)
    assert G.shape == Gref.shape
    assert relerr(G, Gref) < tol
    xr = np.linalg.solve(Hd, np.broadcast_to(np.ones((n, 1)), Hd.shape[:-1] + (1,)))[..., 0]
    assert relerr(x, xr) < tol


# -------------------------------------------------------------------------------------------
# torch backend: runs once semisep.backends.get_backend('torch') works
# -------------------------------------------------------------------------------------------
def _torch_or_skip():
    torch = pytest.importorskip("torch")
    try:
        ss.backends.get_backend("torch")
    except ss.BackendError as exc:
        pytest.skip(f"torch backend not available: {exc}")
    return torch


def test_torch_matches_numpy(rng):
    torch = _torch_or_skip()
    n, r = 12, 3
    d, lo, up, U, V = make(rng, (2,), n, r, np.complex128)
    Hn = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V)
    t = torch.as_tensor
    Ht = ss.TridiagonalPlusLowRank(ss.Tridiagonal(t(d), t(lo), t(up)), t(U), t(V))
    z = 0.2 + 0.9j
    for a, b in ((Ht.resolvent_diagonal(z), Hn.resolvent_diagonal(z)),
                 (Ht.solve(t(np.ones(n)), z), Hn.solve(np.ones(n), z)),
                 (Ht.logdet(z), Hn.logdet(z)), (Ht.to_dense(), Hn.to_dense())):
        assert isinstance(a, torch.Tensor)
        assert relerr(a.numpy(), b) < 1e-12


def test_torch_batch_equal_to_rank_is_not_read_as_vectors(rng):
    """Regression: K^{-1} = solve(K, I_r) with K (r, r, r) -- a batch of r matrices of rank r
    -- went to torch.linalg.solve, which reads an I_r of shape K.shape[:-1] as a batch of
    vectors; the composed torch path returned a wrong diagonal (error 0.8 on a 7 x 7 example)
    whenever the batch size equalled the rank.  Every torch path against the dense inverse,
    with and without autograd."""
    torch = _torch_or_skip()
    t = torch.as_tensor
    for r in (2, 3):
        n = 7
        d, lo, up, U, V = make(rng, (r,), n, r, np.float64)
        Hn = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V)
        z = 0.3 + 0.8j
        want = np.diagonal(np.linalg.inv(Hn.to_dense() - z * np.eye(n)), axis1=-2, axis2=-1)
        Ug = t(U).clone().requires_grad_(True)
        for Uin in (t(U), Ug):
            Ht = ss.TridiagonalPlusLowRank(ss.Tridiagonal(t(d), t(lo), t(up)), Uin, t(V))
            for method in ("auto", "chunked", "reference"):
                got = Ht.resolvent_diagonal(z, method=method).detach().numpy()
                assert relerr(got, want) < 1e-12, (r, method, Uin.requires_grad)
    K = t(rng.standard_normal((3, 3, 3)) + 3 * np.eye(3))
    assert np.allclose(la.solve(ss.backends.get_backend("torch"), K, t(np.eye(3))).numpy(),
                       np.linalg.inv(K.numpy()), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_torch_cpu_without_grad_takes_the_fused_kernels(rng, monkeypatch, dtype):
    """On CPU tensors that need no gradient the torch backend runs the NumPy backend's fused
    Woodbury kernels (zero-copy views): the same values as the NumPy operator, tensors out;
    r above the inline rank too.  A tensor that requires grad (U, or z), "chunked" and
    "reference" take the composed path, and the gradient still flows."""
    torch = _torch_or_skip()
    from semisep.backends import numpy as npb

    calls = []
    kernel = npb.NumpyBackend.woodbury_forward
    monkeypatch.setattr(npb.NumpyBackend, "woodbury_forward",
                        lambda self, *a, **k: calls.append(1) or kernel(self, *a, **k))
    t = torch.as_tensor
    for n, r, batch in ((40, 3, (2,)), (300, 11, ())):
        d, lo, up, U, V = make(rng, batch, n, r, dtype)
        Hn = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V)
        Ht = ss.TridiagonalPlusLowRank(ss.Tridiagonal(t(d), t(lo), t(up)), t(U), t(V))
        z = 0.2 + 0.9j
        b = np.ones(n)
        for name, args_t, args_n in (("resolvent_diagonal", (z,), (z,)), ("logdet", (z,), (z,)),
                                     ("solve", (t(b), z), (b, z))):
            before = len(calls)
            got = getattr(Ht, name)(*args_t)
            assert len(calls) == before + 1, name  # the fused kernels ran
            want = getattr(Hn, name)(*args_n)
            assert isinstance(got, torch.Tensor) and got.dtype == torch.complex128
            assert relerr(got.numpy(), want) < 1e-13, name
        want = Hn.resolvent_diagonal(z)  # (the NumPy operator calls the spied kernel too)
        before = len(calls)
        for kw in ({"method": "chunked"}, {"method": "reference"}):
            got = Ht.resolvent_diagonal(z, **kw)
            assert relerr(got.numpy(), want) < 1e-10
        Ug = t(U).clone().requires_grad_(True)
        Hg = ss.TridiagonalPlusLowRank(ss.Tridiagonal(t(d), t(lo), t(up)), Ug, t(V))
        G = Hg.resolvent_diagonal(z)
        assert relerr(G.detach().numpy(), want) < 1e-12
        G.abs().pow(2).sum().backward()
        assert Ug.grad is not None and torch.isfinite(Ug.grad).all()
        zt = torch.tensor(z, requires_grad=True)
        Ht.resolvent_diagonal(zt).real.sum().backward()
        assert zt.grad is not None
        assert len(calls) == before  # none of these ran the fused kernels
        with torch.no_grad():  # no graph: fused again
            Hg.resolvent_diagonal(z)
        assert len(calls) == before + 1


@pytest.mark.parametrize("what", ["resolvent_diagonal", "logdet", "solve"])
def test_torch_gradcheck(rng, what):
    torch = _torch_or_skip()
    n, r = 7, 2
    d, lo, up, U, V = make(rng, (), n, r, np.complex128)
    args = [torch.tensor(a, requires_grad=True) for a in (d, lo, up, U, V)]
    z = torch.tensor(0.3 + 0.8j, dtype=torch.complex128, requires_grad=True)
    b = torch.tensor(rng.standard_normal(n) + 0j)

    def f(d, lo, up, U, V, z):
        H = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V)
        if what == "solve":
            return H.solve(b, z)
        return getattr(H, what)(z)

    assert torch.autograd.gradcheck(f, (*args, z), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_matmul_mixed_reads_a_complex_operand_as_real_parts(rng):
    """``_linalg.matmul_mixed``: a real A times a complex B through B's interleaved real view
    (batched, a transposed A, a non-contiguous B) equals the complex product; other dtype
    combinations take the plain cast-and-multiply."""
    from semisep import _linalg as la
    from semisep.backends import get_backend

    bk = get_backend("numpy")
    A = rng.standard_normal((3, 50, 4))
    B = rng.standard_normal((3, 4, 6)) + 1j * rng.standard_normal((3, 4, 6))
    for a, b in ((A, B), (np.swapaxes(A, -1, -2), rng.standard_normal((3, 50, 2)) + 1j),
                 (A, B[..., ::2]), (A[0], B)):
        got = la.matmul_mixed(bk, a, b, np.complex128)
        assert got.dtype == np.complex128 and got.shape == (a @ b).shape
        assert np.max(np.abs(got - a @ b)) <= 1e-14 * np.max(np.abs(a @ b))
    Bf = B.astype(np.complex64)
    got = la.matmul_mixed(bk, A.astype(np.float32), Bf, np.complex64)
    assert got.dtype == np.complex64 and np.allclose(got, A @ B, rtol=1e-5, atol=1e-5)
    real = la.matmul_mixed(bk, A, B.real, np.float64)
    assert real.dtype == np.float64 and np.allclose(real, A @ B.real)
    torch = pytest.importorskip("torch")
    tk = get_backend("torch")
    t = torch.as_tensor
    for a, b in ((A, B), (np.swapaxes(A, -1, -2), rng.standard_normal((3, 50, 2)) + 1j), (A, B[..., ::2])):
        got = la.matmul_mixed(tk, t(a), t(b), torch.complex128)
        assert got.dtype == torch.complex128 and tuple(got.shape) == (a @ b).shape
        assert np.max(np.abs(got.numpy() - a @ b)) <= 1e-14 * np.max(np.abs(a @ b))
    conj = la.matmul_mixed(tk, t(A), t(B).conj(), torch.complex128)  # a conjugate view
    assert np.allclose(conj.numpy(), A @ B.conj(), rtol=1e-14, atol=1e-14)
    At = t(A[0]).requires_grad_(True)
    Bt = t(B[0]).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: la.matmul_mixed(tk, a, b, torch.complex128), (At, Bt))
