"""scipy.sparse.linalg on semisep operators through aslinearoperator()."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla

import semisep as ss


def test_linear_operator_products_and_adjoint(rng):
    n = 30
    d = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    lo = rng.standard_normal(n - 1) + 1j * rng.standard_normal(n - 1)
    up = rng.standard_normal(n - 1)
    T = ss.Tridiagonal(d, lo, up)
    L = T.aslinearoperator()
    A = T.to_dense()
    x = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    assert np.allclose(L @ x, A @ x, rtol=1e-14)
    assert np.allclose(L.rmatvec(x), A.conj().T @ x, rtol=1e-14)  # SciPy: conjugate transpose
    X = rng.standard_normal((n, 3))
    assert np.allclose(L.matmat(X), A @ X, rtol=1e-14)
    assert np.allclose(L.H @ X, A.conj().T @ X, rtol=1e-14)


def test_eigsh_and_gmres_on_laplacian():
    n = 200
    T = ss.Tridiagonal(np.full(n, 2.0), np.full(n - 1, -1.0))
    vals = spla.eigsh(T.aslinearoperator(), k=3, which="LA", return_eigenvectors=False)
    exact = 2 - 2 * np.cos(np.pi * np.arange(1, n + 1) / (n + 1))
    assert np.allclose(np.sort(vals), np.sort(exact)[-3:], rtol=1e-10)
    b = np.ones(n)
    x, info = spla.gmres(T.aslinearoperator(), b, rtol=1e-12, restart=n, maxiter=10 * n)
    assert info == 0
    assert np.allclose(x, T.solve(b), rtol=1e-8)


def test_batched_or_torch_operator_rejected():
    T = ss.Tridiagonal(np.ones((2, 3)) * 3, np.ones(2))
    with pytest.raises(ss.ShapeError, match="unbatched"):
        T.aslinearoperator()


def test_every_operator_is_a_linear_operator(rng):
    """StructuredOperator gives every operator aslinearoperator(), with SciPy's adjoint."""
    n, r = 20, 2
    T = ss.Tridiagonal(rng.standard_normal(n) + 3, rng.standard_normal(n - 1), rng.standard_normal(n - 1))
    U = rng.standard_normal((n, r)) + 1j * rng.standard_normal((n, r))
    V = rng.standard_normal((n, r))
    ops = [
        ss.TridiagonalPlusLowRank(T, U, V),
        ss.Semiseparable(rng.standard_normal(n), rng.standard_normal((n, r)), rng.standard_normal((n, r)),
                         rng.standard_normal((n, r)), rng.standard_normal((n, r))),
    ]
    x = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    for op in ops:
        L, A = op.aslinearoperator(), np.asarray(op)
        assert np.allclose(L @ x, A @ x, rtol=1e-13)
        assert np.allclose(L.rmatvec(x), A.conj().T @ x, rtol=1e-13)
        assert np.allclose(op @ x, A @ x, rtol=1e-13)
