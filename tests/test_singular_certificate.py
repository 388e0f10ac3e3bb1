"""The singularity certificate ``|1/G_ii| < SINGULAR_FACTOR * pivmin`` (``SINGULAR_FACTOR = 4``)
from both sides, on matrices whose smallest ``|1/G_ii|`` is known exactly.

``T = tridiag(1; [2, 2.5, ..., 2.5, 1/2 + t pivmin]; 1)``: the LU pivots of the leading block
are ``d_0 = 2``, ``d_i = 2.5 - 1/2 = 2`` (exact in every precision), so the last pivot, which
is ``1/G_{N-1,N-1}``, is ``d_{N-1} = t pivmin`` exactly; ``pivmin = eps * 2.5`` (the largest
entry), and ``1/2 + t pivmin`` is exact for ``t`` a multiple of ``1/5`` (``ulp(1/2) = eps/2``).
The other ``|1/G_ii|`` are larger (checked against the dense inverse below), so ``T`` is
regular to working precision for ``t >= 4`` and singular for ``t < 4``.  A factor raised
from 4 (to 100, say) or a ``<`` turned into ``<=`` flips a case here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import semisep as ss
from semisep.backends import SINGULAR_FACTOR
from semisep.errors import SingularMatrixError

#: t (the last pivot in units of pivmin): regular at and above 4, singular below
REGULAR = [4.0, 4.2, 10.0, 50.0, 99.0]
SINGULAR = [3.8, 3.0]
DTYPES = [np.float64, np.float32]


def certificate_matrix(n: int, t: float, dtype=np.float64):
    """``(diag (n,), off (n-1,), pivmin)`` of the matrix of the module docstring."""
    eps = float(np.finfo(dtype).eps)
    pivmin = 2.5 * eps
    diag = np.full(n, 2.5)
    diag[0] = 2.0
    diag[-1] = 0.5 + t * pivmin
    diag = diag.astype(dtype)
    assert float(diag[-1]) - 0.5 == t * pivmin  # exact
    return diag, np.ones(n - 1, dtype), pivmin


def test_the_constant_is_four():
    assert SINGULAR_FACTOR == 4.0


@pytest.mark.parametrize("t", REGULAR + SINGULAR)
def test_smallest_inverse_diagonal_is_the_last_pivot(t):
    """The construction: ``min_i |1/G_ii| = |1/G_{N-1,N-1}| = t pivmin`` and every other
    ``|1/G_ii|`` at least 3.5 times larger (float64 dense inverse: it resolves ``t pivmin`` to
    a few percent, ``cond(T) ~ 1/(t eps)``)."""
    d, e, pivmin = certificate_matrix(9, t)
    A = np.diag(d) + np.diag(e, 1) + np.diag(e, -1)
    gam = 1.0 / np.diag(np.linalg.inv(A))
    assert abs(gam[-1] / (t * pivmin) - 1) < 0.05
    assert np.all(np.abs(gam[:-1]) > 3.5 * abs(gam[-1]))


def _expect(t):
    return t < 4.0  # the documented factor, not the constant: a changed constant must show


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [9, 10])  # odd and even N: the two-sided kernel's two endings
@pytest.mark.parametrize("complex_shift", [False, True])
def test_kernels_and_twins_agree_at_the_boundary(n, dtype, complex_shift):
    """Every compiled kernel that certifies against its plain NumPy twin, row by row, exactly,
    on a batch holding both sides of the boundary (t = 4 is regular: the test is strict)."""
    from semisep.backends import numpy as nk

    ts = REGULAR + SINGULAR
    rows = [certificate_matrix(n, t, dtype) for t in ts]
    cdt = np.result_type(dtype, np.complex64) if complex_shift else dtype
    alpha = np.stack([r[0] for r in rows]).astype(cdt)
    beta = np.stack([r[1] for r in rows]).astype(cdt)
    pivmin = np.array([r[2] for r in rows], np.finfo(dtype).dtype)
    want = np.array([_expect(t) for t in ts])

    _, _, s_ref = nk.resolvent_diagonal_ref(alpha, beta, pivmin)
    _, _, s_ld_ref = nk.logdet_ref(alpha, beta, pivmin)
    np.testing.assert_array_equal(s_ref, want)
    np.testing.assert_array_equal(s_ld_ref, want)

    np.testing.assert_array_equal(nk.resolvent_diagonal_kernel(alpha, beta, pivmin)[2], want)
    np.testing.assert_array_equal(nk.resolvent_diagonal_with_pivots(alpha, beta, pivmin)[4], want)
    np.testing.assert_array_equal(nk.logdet_kernel(alpha, beta, pivmin)[2], want)
    sel = np.array([n - 1, 0])
    np.testing.assert_array_equal(nk.resolvent_diagonal_selected_kernel(alpha, beta, pivmin, sel)[2],
                                  want)
    f = np.ones((len(ts), n, 1), cdt)
    np.testing.assert_array_equal(nk.solve_kernel(alpha, beta, beta, f, pivmin)[2], want)
    np.testing.assert_array_equal(nk.solve_ref(alpha, beta, beta, f, pivmin)[2], want)


def _ops(t, dtype, lib, n=9):
    d, e, _ = certificate_matrix(n, t, dtype)
    if lib == "torch":
        torch = pytest.importorskip("torch")
        dt = torch.from_numpy(d)
        return ss.Tridiagonal(dt, torch.from_numpy(e)), torch.ones(n, dtype=dt.dtype)
    return ss.Tridiagonal(d, e), np.ones(n, dtype)


def _methods(lib):
    return ["sequential", "chunked", "reference"] if lib == "torch" else ["sequential", "reference"]


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_public_api_regular_side(lib, dtype):
    """``4 pivmin <= min|1/G_ii| < 100 pivmin``: resolvent diagonal, log det and solve return on
    every method, with the exact values: ``G_{N-1,N-1} = 1/(t pivmin)`` (the last pivot is exact,
    so only the reciprocal rounds) and ``log det T = (N-1) log 2 + log(t pivmin)`` (N logs)."""
    n = 9
    eps = float(np.finfo(dtype).eps)
    for t in REGULAR:
        T, b = _ops(t, dtype, lib, n)
        _, _, pivmin = certificate_matrix(n, t, dtype)
        want_ld = (n - 1) * np.log(2.0) + np.log(t * pivmin)
        for method in _methods(lib):
            G = np.asarray(T.resolvent_diagonal(0.0, method=method))
            ld = complex(np.asarray(T.logdet(0.0, method=method)))
            x = np.asarray(T.solve(b, 0.0, method=method))
            assert abs(float(abs(G[-1])) * t * pivmin - 1) <= 4 * eps, (t, method)
            assert abs(ld.real - want_ld) <= n * eps * (abs(want_ld) + 1), (t, method)
            assert abs(ld.imag) <= n * eps, (t, method)
            # backward stable solve: |T x - b| <= c N eps |T| |x| (T x computed in float64)
            d, e, _ = certificate_matrix(n, t, dtype)
            A = (np.diag(d) + np.diag(e, 1) + np.diag(e, -1)).astype(np.float64)
            xr = np.asarray(x, np.float64)
            res = np.abs(A @ xr - 1.0)
            assert np.all(res <= 4 * n * eps * (np.abs(A) @ np.abs(xr))), (t, method)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_public_api_singular_side(lib, dtype):
    """``min|1/G_ii| < 4 pivmin``: every entry point raises SingularMatrixError on every method."""
    for t in SINGULAR:
        T, b = _ops(t, dtype, lib)
        for method in _methods(lib):
            with pytest.raises(SingularMatrixError):
                T.resolvent_diagonal(0.0, method=method)
            with pytest.raises(SingularMatrixError):
                T.resolvent_diagonal(0.0, indices=[8, 0], method=method)
            with pytest.raises(SingularMatrixError):
                T.logdet(0.0, method=method)
            with pytest.raises(SingularMatrixError):
                T.solve(b, 0.0, method=method)


_CACHE_PROBE = textwrap.dedent("""
    import sys
    import numpy as np
    import semisep.backends as b
    b.SINGULAR_FACTOR = float(sys.argv[1])  # before the kernel module reads it
    from semisep.backends import numpy as nk
    sys.path.insert(0, sys.argv[2])
    from test_singular_certificate import certificate_matrix
    d, e, pivmin = certificate_matrix(9, 10.0)
    kernel = nk._logdet_row(d, e, pivmin)[3]  # one row, not the parallel batch: compiles faster
    print(int(kernel), int(nk.logdet_ref(d[None], e[None], np.array([pivmin]))[2][0]))
""")


@pytest.mark.slow
def test_cached_kernels_see_a_changed_constant(tmp_path):
    """numba freezes a global into compiled code and caches on disk keyed by the kernel file's
    stamp: a kernel compiled with ``SINGULAR_FACTOR = 4`` must not be reused once the factor
    is 100.  Two fresh processes share one cache directory; the second changes the factor
    before the kernel module is imported; kernel and twin must agree in both (t = 10: regular
    at 4, singular at 100)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    for factor in ("4", "100", "4"):
        r = subprocess.run([sys.executable, "-c", _CACHE_PROBE, factor, here], env=env,
                           capture_output=True, text=True, check=True)
        out.append(r.stdout.split())
    assert out == [["0", "0"], ["1", "1"], ["0", "0"]]
