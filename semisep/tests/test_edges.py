"""Numerical edges, on every backend: pivoted solves, extreme scales, singular certificates."""

from __future__ import annotations

import numpy as np
import pytest

import semisep as ss

from ._support import to_backend, to_numpy


def _dense(d, lo, up):
    return np.diag(d) + np.diag(lo, -1) + np.diag(up, 1)


def test_solve_through_tiny_and_zero_pivots(backend, device):
    """Partial pivoting: a tiny or zero leading pivot costs no accuracy (backward stable)."""
    t = lambda x: to_backend(np.asarray(x, float), backend, device)  # noqa: E731
    eps = np.finfo(float).eps
    for first in (1e-12, 0.0):
        d = np.array([first, 1.0, 1.0, 2.0, 3.0])
        lo, up = np.ones(4), np.array([1.0, -0.5, 1.0, 2.0])
        f = np.arange(1.0, 6.0)
        A = _dense(d, lo, up)
        xd = np.linalg.solve(A, f)
        x = to_numpy(ss.Tridiagonal(t(d), t(lo), t(up)).solve(t(f)))
        assert np.max(np.abs(x - xd)) <= 100 * eps * np.linalg.cond(A) * np.max(np.abs(xd))


@pytest.mark.parametrize("scale", [1e-300, 1e-170, 1e170, 1e300])
def test_well_conditioned_at_extreme_scales(backend, device, scale):
    t = lambda x: to_backend(np.asarray(x, float), backend, device)  # noqa: E731
    d, lo = np.array([4.0, 4.5, 3.5, 4.0]), np.array([1.0, 0.5, 1.0])
    Ainv = np.linalg.inv(_dense(d, lo, lo))
    T = ss.Tridiagonal(t(d * scale), t(lo * scale))
    assert np.allclose(to_numpy(T.resolvent_diagonal()) * scale, np.diag(Ainv), rtol=1e-12, atol=0)
    assert np.allclose(to_numpy(T.solve(t(np.ones(4)))) * scale, Ainv.sum(1), rtol=1e-12, atol=0)
    ld = complex(to_numpy(T.logdet()))
    assert abs(ld - (np.linalg.slogdet(_dense(d, lo, lo))[1] + 4 * np.log(scale))) < 1e-12 * 4 * 700


def test_singular_at_extreme_scales_raises(backend, device):
    t = lambda x: to_backend(np.asarray(x, float), backend, device)  # noqa: E731
    for scale in (1e-170, 1.0, 1e170):
        T = ss.Tridiagonal(t(np.ones(2) * scale), t(np.ones(1) * scale))
        for call in (T.resolvent_diagonal, T.logdet, lambda T=T: T.solve(t(np.ones(2)))):
            with pytest.raises(ss.SingularMatrixError):
                call()


def test_low_rank_singular_H_raises(backend, device):
    """det(H) = 0 with r = 1 (cond_2(K) = 1 always): the certificate on sigma_min(K)."""
    t = lambda x: to_backend(np.asarray(x, float), backend, device)  # noqa: E731
    u = np.zeros((4, 1))
    u[0] = 1.0
    H = ss.TridiagonalPlusLowRank(ss.Tridiagonal(t(np.full(4, 2.0)), t(np.ones(3))), t(u), t(-1.25 * u))
    for call in (H.resolvent_diagonal, H.logdet, lambda: H.solve(t(np.ones(4)))):
        with pytest.raises(ss.SingularMatrixError):
            call()
