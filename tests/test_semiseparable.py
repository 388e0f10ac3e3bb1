"""Semiseparable (generator form) against the dense matrix built here from P, Q, R, S, d."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import semisep as ss

from .helpers import eps_of

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def relerr(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def gens(rng, batch, n, rl, ru, dtype, symmetric=False):
    cplx = np.dtype(dtype).kind == "c"

    def g(shape, scale=1.0):
        x = rng.standard_normal(shape)
        return ((x + 1j * rng.standard_normal(shape) if cplx else x) * scale).astype(dtype)

    d = (g(batch + (n,)) + 4).astype(dtype)
    P, Q = g(batch + (n, rl), n**-0.5), g(batch + (n, rl), n**-0.5)
    if symmetric:
        return d, P, Q, None, None
    return d, P, Q, g(batch + (n, ru), n**-0.5), g(batch + (n, ru), n**-0.5)


def dense(d, P, Q, R, S):
    """The oracle: tril(P Q^T, -1) + diag(d) + triu(R S^T, 1), in complex128 / float64."""
    if R is None:
        R, S = Q, P
    dt = np.result_type(d, P, np.float64)
    P, Q, R, S, d = (np.asarray(a, dt) for a in (P, Q, R, S, d))
    n = d.shape[-1]
    A = np.tril(P @ np.swapaxes(Q, -1, -2), -1) + np.triu(R @ np.swapaxes(S, -1, -2), 1)
    return A + d[..., :, None] * np.eye(n)


def tol(dtype, A, c=50.0):
    A = A.reshape((-1,) + A.shape[-2:])
    return c * eps_of(dtype) * A.shape[-1] * max(np.linalg.cond(a) for a in A)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [(), (2,)])
@pytest.mark.parametrize("ranks,symmetric", [((2, 3), False), ((0, 1), False), ((1, 0), False),
                                             ((2, 2), True), ((0, 0), True)])
def test_everything_matches_dense(rng, dtype, batch, ranks, symmetric):
    n = 14
    d, P, Q, R, S = gens(rng, batch, n, *ranks, dtype, symmetric)
    op = ss.Semiseparable(d, P, Q, R, S)
    A = dense(d, P, Q, R, S)
    z = 0.3 + 0.4j
    Az = A - z * np.eye(n)
    e = 20 * eps_of(dtype) * n
    assert relerr(op.to_dense(), A) < e and op.shape == batch + (n, n)
    x = rng.standard_normal(batch + (n,)).astype(dtype)
    X = rng.standard_normal(batch + (n, 3)).astype(dtype)
    assert relerr(op @ x, np.einsum("...ij,...j->...i", A, x)) < e
    assert relerr(op.matvec(X), A @ X) < e
    assert relerr(op.rmatvec(X), np.swapaxes(A, -1, -2) @ X) < e
    assert relerr(op.T.to_dense(), np.swapaxes(A, -1, -2)) < e
    t = tol(dtype, Az)
    for method in ("structured", "dense"):
        xs = op.solve(X, z, method=method)
        assert relerr(xs, np.linalg.solve(Az, X)) < t, method
        ld = op.logdet(z, method=method)
        s, la_ = np.linalg.slogdet(Az)
        assert np.all(np.abs(ld.real - la_) < t * np.maximum(1, np.abs(la_)))
        assert np.all(np.abs(np.exp(1j * ld.imag) - s) < t + 10 * eps_of(dtype))
    assert op.solve(x, z).shape == x.shape
    G = op.resolvent_diagonal(z)
    assert relerr(G, np.diagonal(np.linalg.inv(Az), axis1=-2, axis2=-1)) < t


def test_symmetric_none_means_R_Q_S_P(rng):
    n = 9
    d, P, Q, _, _ = gens(rng, (), n, 2, 2, np.complex128)
    op = ss.Semiseparable(d, P, Q)
    full = ss.Semiseparable(d, P, Q, Q, P)
    A = op.to_dense()
    assert np.array_equal(A, full.to_dense())
    assert relerr(A, A.T) < 1e-15  # complex symmetric: transpose, no conjugate
    assert relerr(A, A.conj().T) > 0.1
    assert op.T is op and op.is_symmetric_storage and not full.is_symmetric_storage
    assert op.nbytes == full.nbytes - 2 * P.nbytes
    with pytest.raises(ValueError, match="both R and S"):
        ss.Semiseparable(d, P, Q, R=Q)
    # general transpose: Semiseparable(d, S, R, Q, P)
    _, _, _, R, S = gens(rng, (), n, 2, 3, np.float64)
    g = ss.Semiseparable(d.real, P.real, Q.real, R, S)
    assert np.allclose(g.T.to_dense(), g.to_dense().T, rtol=0, atol=1e-15)


def test_logdet_real_rule_and_structured_breakdown(rng):
    n = 6
    d, P, Q, R, S = gens(rng, (), n, 1, 1, np.float64)
    op = ss.Semiseparable(d, P, Q, R, S)
    assert np.isrealobj(op.logdet())
    neg = ss.Semiseparable(np.r_[-d[0], d[1:]], P, Q, R, S)
    s, _ = np.linalg.slogdet(neg.to_dense())
    assert s < 0 and np.iscomplexobj(neg.logdet()) and neg.logdet().imag == pytest.approx(np.pi)
    # a zero leading minor of an invertible matrix: the pivot is guarded, solve refines once
    d0 = d.copy()
    d0[0] = 0.0
    Qb = np.ones((n, 1))
    Pb = np.ones((n, 1))
    op0 = ss.Semiseparable(d0, Pb, Qb, Pb.copy(), Qb.copy())
    A0 = op0.to_dense()
    assert abs(np.linalg.det(A0)) > 1e-3
    xr = np.linalg.solve(A0, np.ones(n))
    assert relerr(op0.solve(np.ones(n)), xr) < 1e-8
    assert relerr(op0.solve(np.ones(n), method="dense"), xr) < 1e-12
    with pytest.raises(ss.SemisepError, match="vanishing leading minor"):
        op0.logdet()  # the unpivoted factors cannot give it accurately: refused, not wrong
    assert abs(op0.logdet(method="dense") - np.log(np.linalg.det(A0) + 0j)) < 1e-12


def test_singular_raises_singular_matrix_error_on_every_path():
    """A singular matrix (two equal rows) raises SingularMatrixError from the structured and
    the dense paths alike, never a bare LinAlgError or -inf."""
    n = 5
    op = ss.Semiseparable(np.ones(n), np.ones((n, 1)), np.ones((n, 1)))  # the all-ones matrix
    for method in ("auto", "dense"):
        with pytest.raises(ss.SingularMatrixError):
            op.solve(np.ones(n), method=method)
        with pytest.raises(ss.SingularMatrixError):
            op.logdet(method=method)
        with pytest.raises(ss.SingularMatrixError):
            op.resolvent_diagonal(method=method)


def test_resolvent_diagonal_is_structured_and_large_n():
    """The inverse diagonal runs the O(N r^3) recursion (no dense matrix) at N = 20000."""
    rng = np.random.default_rng(5)
    n = 20000
    d, P, Q, R, S = gens(rng, (), n, 2, 2, np.float64)
    op = ss.Semiseparable(d, P, Q, R, S)
    G = op.resolvent_diagonal(0.5j)
    idx = np.array([0, 1, n // 2, n - 1])
    e = np.zeros((n, len(idx)), complex)
    e[idx, np.arange(len(idx))] = 1
    cols = op.solve(e, 0.5j)
    assert relerr(G[idx], cols[idx, np.arange(len(idx))]) < 1e-10


def test_errors(rng):
    n = 5
    d = np.ones(n)
    with pytest.raises(ss.ShapeError, match="P has shape"):
        ss.Semiseparable(d, np.ones((n + 1, 1)), np.ones((n, 1)))
    with pytest.raises(ss.ShapeError, match="ranks"):
        ss.Semiseparable(d, np.ones((n, 1)), np.ones((n, 2)))
    bad = np.ones((n, 1))
    bad[0] = np.nan
    with pytest.raises(ss.NonFiniteError, match="Q"):
        ss.Semiseparable(d, np.ones((n, 1)), bad)
    with pytest.raises(ValueError, match="method"):
        ss.Semiseparable(d, np.ones((n, 1)), np.ones((n, 1))).resolvent_diagonal(1j, method="x")


def test_memory_accounting():
    n, r = 1024, 10
    z = np.zeros((n, r), np.float32)
    op = ss.Semiseparable(np.zeros(n, np.float32), z, z, z, z)
    assert op.nbytes == (n + 4 * n * r) * 4 and op.dense_nbytes == 4 * n * n
    sym = ss.Semiseparable(np.zeros(n, np.float32), z, z)
    assert sym.nbytes == (n + 2 * n * r) * 4


def test_cancellation_with_exponentially_growing_generators():
    """cosh(g (i - j)) = cosh(g i) cosh(g j) - sinh(g i) sinh(g j): moderate entries from
    generators of size e^{g i}.  The structured matvec's relative error per row grows like
    eps e^{g i} (documented in the module docstring), while the product with the dense matrix
    built from the entries themselves stays at rounding level."""
    n, g = 80, 0.5
    i = np.arange(n)
    P = np.stack([np.cosh(g * i), np.sinh(g * i)], axis=1)
    Q = np.stack([np.cosh(g * i), -np.sinh(g * i)], axis=1)
    op = ss.Semiseparable(np.ones(n), P, Q, np.zeros((n, 0)), np.zeros((n, 0)))
    entries = np.tril(np.cosh(g * (i[:, None] - i[None, :])), -1) + np.eye(n)
    x = np.random.default_rng(0).standard_normal(n)
    exact = entries @ x  # each entry computed directly: relative error ~ eps per row
    y = op @ x
    err = np.abs(y - exact) / (np.abs(entries) @ np.abs(x))  # relative to the row's scale
    eps = np.finfo(np.float64).eps
    assert np.all(err[:10] < 1e3 * eps)  # fine while e^{g i} is small
    assert np.max(err[60:]) > 1e-6  # >= 10 digits lost at g i >= 30
    assert np.max(err[60:]) > 1e6 * np.max(err[:10])
    # the loss grows with i (compare the means of consecutive blocks of 20 rows)
    blocks = [np.mean(err[k:k + 20]) for k in range(0, n, 20)]
    assert all(b2 > 10 * b1 for b1, b2 in zip(blocks[1:], blocks[2:], strict=False))


def test_decaying_entries_overflow_their_generators():
    """Rank-one P_i = e^{-g i}, Q_j = e^{g j} (entries e^{-g(i-j)} <= 1, no cancellation)
    cannot represent long chains: Q_j overflows at g j ~ 709 (float64), ~ 88 (float32), and
    the constructor refuses the non-finite generator instead of producing NaN rows."""
    for n, dtype in ((800, np.float64), (100, np.float32)):
        i = np.arange(n)
        with np.errstate(over="ignore"):
            P, Q = np.exp(-1.0 * i)[:, None].astype(dtype), np.exp(1.0 * i)[:, None].astype(dtype)
        assert not np.all(np.isfinite(Q))
        with pytest.raises(ss.NonFiniteError, match="Q"):
            ss.Semiseparable(np.ones(n, dtype), P, Q, np.zeros((n, 0), dtype), np.zeros((n, 0), dtype))
    # short enough to fit: exact to rounding (no cancellation in rank one)
    n = 600
    i = np.arange(n)
    op = ss.Semiseparable(np.zeros(n), np.exp(-1.0 * i)[:, None], np.exp(1.0 * i)[:, None],
                          np.zeros((n, 0)), np.zeros((n, 0)))
    y = op @ np.ones(n)
    exact = np.exp(-1.0) * (1 - np.exp(-1.0 * i)) / (1 - np.exp(-1.0))
    assert relerr(y[1:], exact[1:]) < 1e-13


@st.composite
def problems(draw):
    batch = draw(st.sampled_from([(), (2,)]))
    n = draw(st.integers(1, 12))
    rl, ru = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    dtype = draw(st.sampled_from(DTYPES))
    symmetric = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    z = draw(st.complex_numbers(max_magnitude=3, allow_nan=False, allow_infinity=False))
    return gens(rng, batch, n, rl, ru if not symmetric else rl, dtype, symmetric), z, dtype


@given(problems())
def test_property_solve_logdet(p):
    (d, P, Q, R, S), z, dtype = p
    n = d.shape[-1]
    Az = dense(d, P, Q, R, S) - z * np.eye(n)
    t = tol(dtype, Az)
    assume(t < 1e-2)
    op = ss.Semiseparable(d, P, Q, R, S)
    # leading minors bounded away from zero: the structured LU's claim (no pivoting)
    minors = [np.abs(np.linalg.det(Az[..., :k, :k])) for k in range(1, n + 1)]
    assume(min(np.min(m) for m in minors) > 1e-3)
    b = np.ones(n, dtype)
    xr = np.linalg.solve(Az, np.broadcast_to(b[:, None], Az.shape[:-1] + (1,)))[..., 0]
    assert relerr(op.solve(b, z), xr) < t
    s, la_ = np.linalg.slogdet(Az)
    ld = op.logdet(z)
    assert np.all(np.abs(ld.real - la_) < t * np.maximum(1, np.abs(la_)))
