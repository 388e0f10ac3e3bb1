"""Values against closed forms and the independent sequential reference where the kernels
renormalise: the log-determinant's running product of pivots (NumPy kernel: powers of two
outside [2^-100, 2^100]) and the torch chunked sweep's in-chunk transfer matrices (``frexp``
every few steps).  Each case would overflow or underflow without its renormalisation.

Closed forms (tests/helpers.py): for ``T = tridiag(b; a; c)`` (Toeplitz), ``r1, r2`` the roots of
``r^2 - a r + bc``, ``log det T = (n+1) log r1 + log(1 - rho^{n+1}) - log(r1 - r2)`` and
``G_ii = (1 - rho^{i+1}) (1 - rho^{n-i}) / (r1 (1 - rho) (1 - rho^{n+1}))``, ``rho = r2/r1``.
"""

from __future__ import annotations

import numpy as np
import pytest

import semisep as ss
from semisep import reference as ref

from .helpers import eps_of, toeplitz_logdet, toeplitz_resolvent_diagonal, toeplitz_roots

# (a, bc, n): what the running product of pivots does
LOGDET_CASES = [
    pytest.param(3.0 + 0.5j, 1.0, 3000, id="product-overflows"),  # |d_i| ~ 2.7: past 2^100 every ~70
    pytest.param(0.3 - 0.2j, 0.01, 3000, id="product-underflows"),  # |d_i| ~ 0.32
    pytest.param(1e40, 1.0, 200, id="pivots-above-2^100"),
    pytest.param(1e-40, 1e-82, 200, id="pivots-below-2^-100"),
    pytest.param(-2.5, 1.0, 3001, id="real-negative-pivots"),  # sign flips: phase +-1
]


def _toeplitz(a, bc, n, lib, dtype):
    d = np.full(n, a, dtype)
    e = np.full(n - 1, np.sqrt(complex(bc)) if np.dtype(dtype).kind == "c" else np.sqrt(bc), dtype)
    if lib == "torch":
        torch = pytest.importorskip("torch")
        return ss.Tridiagonal(torch.from_numpy(d), torch.from_numpy(e))
    return ss.Tridiagonal(d, e)


def _methods(lib):
    return ["sequential", "chunked", "reference"] if lib == "torch" else ["sequential", "reference"]


def _logdet_bound(a, bc, n, dtype):
    """A sum of n logs of pivots, each with relative error ~ eps: ``4 n eps (|log r1| + 1)``."""
    r1, _ = toeplitz_roots(a, bc)
    return 4 * n * eps_of(dtype) * (abs(np.log(r1)) + 1)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("a,bc,n", LOGDET_CASES)
def test_logdet_renormalised_product_against_closed_form(lib, a, bc, n):
    dtype = np.complex128 if isinstance(a, complex) else np.float64
    T = _toeplitz(a, bc, n, lib, dtype)
    want = toeplitz_logdet(a, bc, n)
    tol = _logdet_bound(a, bc, n, dtype)
    for method in _methods(lib):
        ld = complex(np.asarray(T.logdet(0.0, method=method)))
        assert abs(ld.real - want.real) <= tol * max(1.0, 1e-3 * abs(want.real)), (method, ld, want)
        assert abs(np.angle(np.exp(1j * (ld.imag - want.imag)))) <= tol, (method, ld, want)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_logdet_single_precision_against_closed_form(lib):
    """complex64: the NumPy kernel accumulates in double but reads single-precision pivots; the
    pivots' rounding is what the bound counts."""
    a, bc, n = 3.0 + 0.5j, 1.0, 3000
    T = _toeplitz(a, bc, n, lib, np.complex64)
    want = toeplitz_logdet(a, bc, n)
    tol = _logdet_bound(a, bc, n, np.complex64)
    for method in _methods(lib):
        ld = complex(np.asarray(T.logdet(0.0, method=method)))
        assert abs(ld.real - want.real) <= tol, (method, ld, want)
        assert abs(np.angle(np.exp(1j * (ld.imag - want.imag)))) <= tol, (method, ld, want)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_resolvent_diagonal_against_closed_form(lib):
    """Every entry of ``diag(T^{-1})`` of a Toeplitz chain with complex diagonal, N = 5000:
    diagonally dominant (``|a| - 2|b| > 2``), so ``cond_2(T) <= (|a| + 2) / (|a| - 2) < 6``."""
    a, bc, n = 4.0 + 0.5j, 1.0, 5000
    T = _toeplitz(a, bc, n, lib, np.complex128)
    want = toeplitz_resolvent_diagonal(a, bc, n)
    for method in _methods(lib):
        G = np.asarray(T.resolvent_diagonal(0.0, method=method))
        assert np.max(np.abs(G - want)) <= 50 * eps_of(np.complex128) * 6 * np.max(np.abs(want)), method


# -------------------------------------------------------------------------------------------
# torch chunked: in-chunk renormalisation
# -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
@pytest.mark.parametrize("L", [64, 256])
def test_chunked_in_chunk_renormalisation(dtype, L):
    """Chunks of L = 64 and 256 steps on rows whose chunk transfer matrices shrink by ~1e-6 per
    step (one entry 1e6 sets the prescale ``s``, the rest of the row is ~3: ``|alpha/s| ~ 3e-6``):
    without renormalisation inside the chunk they underflow to zero within 6 (single) or 50
    (double) steps and the carries become 0/0.  Against the independent sequential reference;
    the row is diagonally dominant by 1 (``|alpha_i| - 2 |b| >= 1``), so the recursions contract
    and every ``G_ii`` is accurate to a few eps relative: bound ``50 eps``."""
    torch = pytest.importorskip("torch")
    from semisep.backends.torch import TorchBackend

    tdt = getattr(torch, dtype)
    n, B = 4 * L + 3, 2
    rng = np.random.default_rng(7)
    diag = 3.0 + rng.uniform(0.0, 1.0, (B, n))
    if dtype.startswith("complex"):
        diag = diag + 0.5j
    diag[:, 0] = 1e6
    diag[1, n // 2] = -1e6  # and one in the middle of a chunk
    off = np.ones(n - 1)
    be = TorchBackend()
    alpha = torch.from_numpy(diag).to(tdt)
    beta = torch.from_numpy(np.broadcast_to(off * off, (B, n - 1)).copy()).to(tdt)
    pm = be.amax_abs(alpha, axis=1).to(torch.float64) * eps_of(np.dtype(dtype))
    G, guarded, singular = be.resolvent_diagonal(alpha, beta, pm, "chunked", chunk_length=L)
    ld, _, _ = be.logdet(alpha, beta, pm, "chunked", chunk_length=L)
    assert not singular.any() and not guarded.any()
    a64 = alpha.numpy().astype(np.complex128)
    want = ref.sequential_resolvent_diagonal(a64, off, None, 0.0)
    err = np.abs(G.numpy() - want) / np.abs(want)
    assert err.max() <= 50 * eps_of(np.dtype(dtype)), err.max()
    want_ld = ref.sequential_logdet(a64, off, None, 0.0)
    assert np.all(np.abs(ld.numpy().real - want_ld.real) <= 4 * n * eps_of(np.dtype(dtype)) * 15)
