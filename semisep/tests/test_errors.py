"""Every documented bad input raises the documented error, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import semisep as ss

from ._support import to_backend


def test_shape_errors(backend, device):
    t = lambda x: to_backend(np.asarray(x, float), backend, device)  # noqa: E731
    with pytest.raises(ss.ShapeError, match="lower has shape"):
        ss.Tridiagonal(t(np.ones(5)), t(np.ones(3)))
    T = ss.Tridiagonal(t(np.full((2, 5), 3.0)), t(np.ones(4)))
    with pytest.raises(ss.ShapeError, match="z"):
        T.resolvent_diagonal(t(np.ones(3)))
    with pytest.raises(ss.ShapeError, match="b has shape"):
        T.solve(t(np.ones((2, 4))))


def test_non_finite_rejected(backend, device):
    t = lambda x: to_backend(np.asarray(x, float), backend, device)  # noqa: E731
    with pytest.raises(ss.NonFiniteError, match="diag"):
        ss.Tridiagonal(t([1.0, np.nan]), t([1.0]))
    T = ss.Tridiagonal(t([3.0, 3.0]), t([1.0]))
    with pytest.raises(ss.NonFiniteError, match="b"):
        T.solve(t([1.0, np.inf]))


def test_singular_raises_linalgerror(backend, device):
    t = lambda x: to_backend(np.asarray(x, float), backend, device)  # noqa: E731
    T = ss.Tridiagonal(t([2.0] * 5), t([1.0] * 4))  # z = 1 is an eigenvalue
    for call in (T.resolvent_diagonal, T.logdet, lambda z: T.solve(t(np.ones(5)), z)):
        with pytest.raises(np.linalg.LinAlgError, match="singular"):
            call(1.0)


def test_singularity_certificate_from_both_sides(backend, device):
    """``T = tridiag(1; [2, 2.5, ..., 2.5, 1/2 + t pivmin]; 1)``: the LU pivots of the leading
    block are exactly 2, so ``1/G_{N-1,N-1}`` (the smallest ``|1/G_ii|``) is exactly ``t pivmin``
    (``pivmin = 2.5 eps``).  Regular to working precision for ``t >= 4`` (the documented factor),
    singular below: ``t = 5, 50`` return on every method, ``t = 3`` raises on every method."""
    n = 9
    eps = float(np.finfo(np.float64).eps)
    methods = ["sequential", "reference"] + (["chunked"] if backend == "torch" else [])
    for t, singular in ((5.0, False), (50.0, False), (3.0, True)):
        d = np.full(n, 2.5)
        d[0], d[-1] = 2.0, 0.5 + t * 2.5 * eps
        T = ss.Tridiagonal(to_backend(d, backend, device), to_backend(np.ones(n - 1), backend, device))
        b = to_backend(np.ones(n), backend, device)
        for method in methods:
            for name, args in (("resolvent_diagonal", ()), ("logdet", ()), ("solve", (b,))):
                call = getattr(T, name)
                if singular:
                    with pytest.raises(ss.SingularMatrixError):
                        call(*args, method=method)
                else:
                    call(*args, method=method)
