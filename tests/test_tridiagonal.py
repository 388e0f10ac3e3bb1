"""Tridiagonal: every operation against semisep.reference; structure; errors."""

from __future__ import annotations

import numpy as np
import pytest

import semisep as ss
from semisep import reference as ref

from .helpers import (
    disordered_chain,
    eps_of,
    random_tridiagonal,
    relative_tolerance,
    toeplitz_logdet,
    toeplitz_resolvent_diagonal,
)

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
BATCHES = [(), (3,), (2, 3)]


def relerr(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# -------------------------------------------------------------------------------------------
# values against the dense reference
# -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("symmetric", [False, True])
def test_resolvent_diagonal_matches_dense(rng, dtype, batch, symmetric):
    d, lo, up = random_tridiagonal(rng, batch, 17, dtype, symmetric=symmetric)
    z = 0.3 + 0.7j
    T = ss.Tridiagonal(d, lo, up)
    G = T.resolvent_diagonal(z)
    expected_dtype = np.result_type(np.dtype(dtype), np.complex64)
    assert G.dtype == expected_dtype and G.shape == batch + (17,)
    Gref = ref.dense_resolvent_diagonal(d, lo, up, z)
    assert relerr(G, Gref) < relative_tolerance(dtype, d, lo, up, z)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", BATCHES)
def test_logdet_matches_lu(rng, dtype, batch):
    d, lo, up = random_tridiagonal(rng, batch, 23, dtype)
    z = -0.4 + 0.2j
    ld = ss.Tridiagonal(d, lo, up).logdet(z)
    ldr = ref.dense_logdet(d, lo, up, z)
    tol = relative_tolerance(dtype, d, lo, up, z)
    # compare exp-differences so a phase difference of 2 pi k cannot hide (imag in (-pi, pi])
    assert np.all(np.abs(ld.real - ldr.real) < tol * np.maximum(1, np.abs(ldr.real)) + tol)
    assert np.all(np.abs(np.exp(1j * (ld.imag - ldr.imag)) - 1) < tol + 10 * eps_of(dtype))
    assert np.all((ld.imag > -np.pi) & (ld.imag <= np.pi))


def test_logdet_real_when_positive_complex_when_negative(rng):
    T = ss.Tridiagonal(np.full(6, 3.0), np.ones(5))  # SPD
    ld = T.logdet()
    assert np.isrealobj(ld)
    assert ld == pytest.approx(np.linalg.slogdet(T.to_dense())[1], rel=1e-13)
    Tn = ss.Tridiagonal(np.array([-3.0, 3, 3]), np.ones(2))  # det < 0
    ldn = Tn.logdet()
    s, la = np.linalg.slogdet(Tn.to_dense())
    assert np.iscomplexobj(ldn) and s < 0
    assert ldn.real == pytest.approx(la, rel=1e-13) and ldn.imag == pytest.approx(np.pi)
    assert ss.Tridiagonal(np.array([3.0], np.float32), np.ones(0, np.float32)).logdet().dtype == np.float32


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [None, 1, 3])
def test_solve_matches_solve_banded(rng, dtype, k):
    batch = (2,)
    d, lo, up = random_tridiagonal(rng, batch, 19, dtype)
    z = 0.1 - 0.5j
    b = rng.standard_normal(batch + ((19,) if k is None else (19, k))).astype(dtype)
    x = ss.Tridiagonal(d, lo, up).solve(b, z)
    assert x.shape == b.shape
    xr = ref.solve_banded_tridiagonal(d, lo, up, b, z)
    assert relerr(x, xr) < relative_tolerance(dtype, d, lo, up, z)


def test_solve_broadcasts_rhs_batch_against_operator(rng):
    d, lo, up = random_tridiagonal(rng, (3,), 8, np.float64)
    T = ss.Tridiagonal(d, lo, up)
    b = rng.standard_normal((4, 1, 8, 2))  # matrix rhs with its own batch (4, 1)
    x = T.solve(b, 0.5j)
    assert x.shape == (4, 3, 8, 2)
    xr = ref.dense_solve(d, lo, up, b, 0.5j)
    assert relerr(x, xr) < 1e-12
    x1 = T.solve(b[0, 0, :, 0], 0.5j)  # 1-D b is always a vector
    assert x1.shape == (3, 8)


def test_resolvent_diagonal_consistent_with_solve_on_unit_vectors(rng):
    d, lo, up = random_tridiagonal(rng, (), 12, np.complex128)
    T = ss.Tridiagonal(d, lo, up)
    z = 0.2 + 0.3j
    X = T.solve(np.eye(12), z)  # columns: (T - z)^{-1} e_j
    assert relerr(T.resolvent_diagonal(z), np.diag(X)) < 1e-12


def test_z_broadcasts_against_batch(rng):
    d, lo = disordered_chain(rng, (3,), 10)
    T = ss.Tridiagonal(d, lo)
    z = np.array([0.1j, 1 + 0.1j])[:, None]  # (2, 1) against batch (3,)
    G = T.resolvent_diagonal(z)
    assert G.shape == (2, 3, 10)
    for i in range(2):
        assert relerr(G[i], ref.dense_resolvent_diagonal(d, lo, None, z[i, 0])) < 1e-12


def test_real_z_keeps_real_dtype(rng):
    d, lo, up = random_tridiagonal(rng, (2,), 9, np.float64, dominant=True)
    T = ss.Tridiagonal(d, lo, up)
    G = T.resolvent_diagonal(0.25)
    assert G.dtype == np.float64
    assert relerr(G, ref.dense_resolvent_diagonal(d, lo, up, 0.25)) < 1e-12
    T32 = ss.Tridiagonal(d.astype(np.float32), lo.astype(np.float32), up.astype(np.float32))
    assert T32.resolvent_diagonal(0.25).dtype == np.float32
    assert T32.resolvent_diagonal(0.25j).dtype == np.complex64  # not silently upcast


def test_small_sizes(rng):
    for n in (1, 2, 3):
        d, lo, up = random_tridiagonal(rng, (2,), n, np.complex128, dominant=True)
        T = ss.Tridiagonal(d, lo, up)
        assert relerr(T.resolvent_diagonal(0.1), ref.dense_resolvent_diagonal(d, lo, up, 0.1)) < 1e-13
        assert relerr(T.logdet(0.1), ref.dense_logdet(d, lo, up, 0.1)) < 1e-13
        b = rng.standard_normal((2, n))
        assert relerr(T.solve(b, 0.1), ref.dense_solve(d, lo, up, b, 0.1)) < 1e-13


# -------------------------------------------------------------------------------------------
# structure
# -------------------------------------------------------------------------------------------
def test_structure_matvec_transpose_dense(rng):
    d, lo, up = random_tridiagonal(rng, (2,), 7, np.complex128)
    T = ss.Tridiagonal(d, lo, up)
    A = ref.tridiagonal_to_dense(d, lo, up)
    assert T.shape == (2, 7, 7) and T.batch_shape == (2,) and T.n == 7
    assert np.array_equal(T.to_dense(), A) and np.array_equal(np.asarray(T), A)
    assert np.array_equal(T.T.to_dense(), np.swapaxes(A, -1, -2))  # transpose, not conjugate
    x = rng.standard_normal((2, 7)) + 1j * rng.standard_normal((2, 7))
    assert relerr(T @ x, np.einsum("bij,bj->bi", A, x)) < 1e-15
    assert relerr(T.rmatvec(x), np.einsum("bji,bj->bi", A, x)) < 1e-15
    X = rng.standard_normal((2, 7, 3))
    assert relerr(T.matvec(X), A @ X) < 1e-15
    assert T.nbytes == d.nbytes + lo.nbytes + up.nbytes
    Ts = ss.Tridiagonal(d, lo)
    assert Ts.nbytes == d.nbytes + lo.nbytes and Ts.T is Ts
    assert T.dense_nbytes == 2 * 7 * 7 * 16


def test_integer_input_promoted_to_float64():
    T = ss.Tridiagonal(np.array([4, 4, 4]), np.array([1, 1]))
    assert T.dtype == np.float64
    assert np.allclose(T.resolvent_diagonal(), np.diag(np.linalg.inv(T.to_dense())))


def test_broadcast_batch_of_diagonals():
    d = np.full((3, 5), 3.0)
    lo = np.ones((1, 4))
    T = ss.Tridiagonal(d, lo, np.full(4, 0.5))
    assert T.batch_shape == (3,)
    assert T.resolvent_diagonal(0.1j).shape == (3, 5)


# -------------------------------------------------------------------------------------------
# errors
# -------------------------------------------------------------------------------------------
def test_wrong_shapes_name_the_argument():
    with pytest.raises(ss.ShapeError, match=r"lower has shape \(3,\).*\(5,\)"):
        ss.Tridiagonal(np.ones(5), np.ones(3))
    with pytest.raises(ss.ShapeError, match="upper"):
        ss.Tridiagonal(np.ones(5), np.ones(4), np.ones(5))
    with pytest.raises(ss.ShapeError, match="lower"):
        ss.Tridiagonal(np.ones((2, 5)), np.ones((3, 4)))
    with pytest.raises(ss.ShapeError, match="N must be at least 1"):
        ss.Tridiagonal(np.ones(0), np.ones(0))
    T = ss.Tridiagonal(np.ones((2, 5)), np.ones(4))
    with pytest.raises(ss.ShapeError, match="z"):
        T.resolvent_diagonal(np.ones(3))
    with pytest.raises(ss.ShapeError, match="b has shape"):
        T.solve(np.ones((2, 4)))
    with pytest.raises(ValueError):  # ShapeError is a ValueError
        T.matvec(np.ones(6))


def test_non_finite_input_rejected():
    with pytest.raises(ss.NonFiniteError, match="diag"):
        ss.Tridiagonal(np.array([1.0, np.nan]), np.ones(1))
    with pytest.raises(ss.NonFiniteError, match="lower"):
        ss.Tridiagonal(np.ones(2), np.array([np.inf]))
    T = ss.Tridiagonal(np.ones(2) * 3, np.ones(1))
    with pytest.raises(ss.NonFiniteError, match="z"):
        T.resolvent_diagonal(complex(np.nan, 1))
    with pytest.raises(ss.NonFiniteError, match="b"):
        T.solve(np.array([1.0, np.nan]))
    # check_finite=False skips the check (documented: results then undefined)
    ss.Tridiagonal(np.array([1.0, np.nan]), np.ones(1), check_finite=False)


def test_mixed_array_types_rejected():
    torch = pytest.importorskip("torch")
    with pytest.raises(ss.BackendError, match="mixed"):
        ss.Tridiagonal(np.ones(3), torch.ones(2))
    T = ss.Tridiagonal(np.ones(3) * 3, np.ones(2))
    with pytest.raises(ss.BackendError, match="mixed"):
        T.solve(torch.ones(3))


def test_unknown_method_rejected():
    T = ss.Tridiagonal(np.ones(3) * 3, np.ones(2))
    with pytest.raises(ValueError, match="method='magic'"):
        T.resolvent_diagonal(1j, method="magic")


@pytest.mark.parametrize(
    "diag, off, z",
    [
        ([1.0, 1.0], [1.0], 0.0),  # [[1,1],[1,1]]
        ([1.0, 0.0, 1.0], [0.0, 0.0], 0.0),  # a zero pivot in a decoupled block
        ([2.0] * 5, [1.0] * 4, 1.0),  # z an eigenvalue (2 + 2cos(2pi/3) = 1); guarded sweep
        ([2.0] * 5, [1.0] * 4, 3.0),
        ([0.0], [], 0.0),
    ],
)
def test_exactly_singular_raises_linalgerror(diag, off, z):
    T = ss.Tridiagonal(np.array(diag), np.array(off))
    for call in (T.resolvent_diagonal, T.logdet, lambda z: T.solve(np.ones(T.n), z)):
        with pytest.raises(np.linalg.LinAlgError, match="singular"):
            call(z)


def test_zero_leading_minor_is_guarded_and_exact():
    # invertible, but the leading 1x1 minor is zero: plain LU without pivoting breaks down
    d, lo, up = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0]), np.array([2.0, 1.0])
    T = ss.Tridiagonal(d, lo, up)
    G, info = T.resolvent_diagonal(return_info=True)
    assert info.total_guarded >= 1
    Ginv = np.linalg.inv(T.to_dense())
    assert np.max(np.abs(G - np.diag(Ginv))) < 1e-14
    x, info = T.solve(np.array([1.0, 2.0, 3.0]), return_info=True)
    assert info.refinement_steps == 0 and info.total_guarded == 0  # partial pivoting, no guard
    assert np.max(np.abs(x - Ginv @ [1.0, 2.0, 3.0])) < 1e-13
    ld = T.logdet()
    s, la = np.linalg.slogdet(T.to_dense())
    assert abs(ld.real - la) < 1e-13 and abs(abs(ld.imag) - (np.pi if s < 0 else 0)) < 1e-13


def test_hermitian_shift_bound_no_guard(rng):
    d, lo = disordered_chain(rng, (4,), 1000)
    G, info = ss.Tridiagonal(d, lo).resolvent_diagonal(0.1 + 0.01j, return_info=True)
    assert info.total_guarded == 0
    assert np.all(np.abs(G) <= 1 / 0.01 * (1 + 1e-12))
    assert np.all(G.imag > 0)  # Im G_ii > 0 for Im z > 0 and Hermitian T


# -------------------------------------------------------------------------------------------
# large N
# -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_large_n_matches_sequential_reference(rng):
    n = 1 << 17
    d, lo = disordered_chain(rng, (2,), n)
    z = 0.3 + 1e-3j
    T = ss.Tridiagonal(d, lo)
    G = T.resolvent_diagonal(z)
    Gs = ref.sequential_resolvent_diagonal(d, lo, None, z)
    assert relerr(G, Gs) < 1e-9
    assert np.max(np.abs(G - Gs) / np.abs(Gs)) < 1e-9
    ld = T.logdet(z)
    assert np.max(np.abs(ld - ref.sequential_logdet(d, lo, None, z)) / np.abs(ld)) < 1e-11
    b = rng.standard_normal(n)
    x = T.solve(b, z)
    xs = ref.sequential_solve(d, lo, None, b, z)
    assert np.linalg.norm(x - xs) / np.linalg.norm(xs) < 1e-9


@pytest.mark.slow
def test_clean_chain_million_stays_finite():
    # theta/phi overflows complex128 near N = 900 here; the pivot ratios never do
    n = 1 << 20
    T = ss.Tridiagonal(np.full(n, -2.0), np.ones(n - 1))
    G = T.resolvent_diagonal(1j)
    assert np.all(np.isfinite(G)) and np.all(np.abs(G) <= 1.0 + 1e-12)
    # bulk value of the infinite chain: G = 1/sqrt((a - z)^2 - 4), Im G > 0
    a, z = -2.0, 1j
    g_inf = 1 / np.sqrt(complex((a - z) ** 2 - 4))
    g_inf = g_inf if g_inf.imag > 0 else -g_inf
    assert abs(G[n // 2] - g_inf) < 1e-10
    # every entry against the closed form of the Toeplitz chain; A = T - iI is normal with
    # |A| <= 2 + sqrt(5) and |A^{-1}| <= 1/Im z = 1, so cond_2(A) <= 4.3
    want = toeplitz_resolvent_diagonal(a - z, 1.0, n)
    assert np.max(np.abs(G - want)) <= 50 * eps_of(np.float64) * 4.3 * np.max(np.abs(want))
    # log det against its closed form, to the n eps |log r1| of a sum of n logs (|log r1| < 4)
    ld = complex(T.logdet(1j))
    want_ld = toeplitz_logdet(a - z, 1.0, n)
    assert abs(ld.real - want_ld.real) <= 4 * n * eps_of(np.float64) * 4
    assert abs(np.angle(np.exp(1j * (ld.imag - want_ld.imag)))) <= 4 * n * eps_of(np.float64) * 4


# -------------------------------------------------------------------------------------------
# selected entries
# -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["sequential", "reference"])
@pytest.mark.parametrize(
    "indices", [[0], [4], [39], [3, 17, 5, 5, 39, 0], list(range(40)), [20, 21, 22]]
)
def test_selected_entries_equal_full_diagonal(rng, method, indices):
    d, lo, up = random_tridiagonal(rng, (3,), 40, np.complex128, dominant=True)
    T = ss.Tridiagonal(d, lo, up)
    z = 0.2 + 0.1j
    full = ref.dense_resolvent_diagonal(d, lo, up, z)  # independent of every kernel
    sel = T.resolvent_diagonal(z, indices=indices, method=method)
    assert sel.shape == (3, len(indices))
    tol = relative_tolerance(np.complex128, d, lo, up, z)
    assert tol < 1e-10
    assert np.max(np.abs(sel - full[:, indices])) <= tol * np.max(np.abs(full))


def test_selected_entries_errors_and_empty():
    T = ss.Tridiagonal(np.full(5, 3.0), np.ones(4))
    with pytest.raises(IndexError, match=r"indices\[1\] = 5"):
        T.resolvent_diagonal(1j, indices=[0, 5])
    with pytest.raises(IndexError):
        T.resolvent_diagonal(1j, indices=[-1])
    with pytest.raises(TypeError, match="integers"):
        T.resolvent_diagonal(1j, indices=[0.5])
    assert T.resolvent_diagonal(1j, indices=[]).shape == (0,)


def test_selected_entries_singular_judged_at_selection():
    # z = 1 is an eigenvalue of the 5x5 chain with diagonal 2: singular wherever you look
    T = ss.Tridiagonal(np.full(5, 2.0), np.ones(4))
    with pytest.raises(np.linalg.LinAlgError):
        T.resolvent_diagonal(1.0, indices=[0, 2])
