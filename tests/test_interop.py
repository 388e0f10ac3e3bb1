"""scipy.sparse.linalg on semisep operators through aslinearoperator()."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla

import semisep as ss


def assert_product(got, A, x):
    """``got`` is ``A @ x`` to rounding: ``|got - A x| <= 4 n eps |A| |x|`` elementwise (the
    standard bound of a dot product of length n; no absolute floor)."""
    eps = np.finfo(np.float64).eps
    bound = 4 * A.shape[-1] * eps * (np.abs(A) @ np.abs(x))
    assert np.all(np.abs(got - A @ x) <= bound)


def test_linear_operator_products_and_adjoint(rng):
    n = 30
    d = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    lo = rng.standard_normal(n - 1) + 1j * rng.standard_normal(n - 1)
    up = rng.standard_normal(n - 1)
    T = ss.Tridiagonal(d, lo, up)
    L = T.aslinearoperator()
    A = T.to_dense()
    x = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    assert_product(L @ x, A, x)
    assert_product(L.rmatvec(x), A.conj().T, x)  # SciPy: conjugate transpose
    X = rng.standard_normal((n, 3))
    assert_product(L.matmat(X), A, X)
    assert_product(L.H @ X, A.conj().T, X)


def test_eigsh_and_gmres_on_laplacian():
    n = 200
    T = ss.Tridiagonal(np.full(n, 2.0), np.full(n - 1, -1.0))
    vals = spla.eigsh(T.aslinearoperator(), k=3, which="LA", return_eigenvectors=False)
    exact = 2 - 2 * np.cos(np.pi * np.arange(1, n + 1) / (n + 1))
    np.testing.assert_allclose(np.sort(vals), np.sort(exact)[-3:], rtol=1e-10, atol=0)
    b = np.ones(n)
    x, info = spla.gmres(T.aslinearoperator(), b, rtol=1e-12, restart=n, maxiter=10 * n)
    assert info == 0
    # relative residual <= 1e-12, so the relative error is at most cond_2(T) times that
    cond = exact.max() / exact.min()
    xs = T.solve(b)
    assert np.linalg.norm(x - xs) <= 1e-12 * cond * np.linalg.norm(xs)


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
        assert_product(L @ x, A, x)
        assert_product(L.rmatvec(x), A.conj().T, x)
        assert_product(op @ x, A, x)
