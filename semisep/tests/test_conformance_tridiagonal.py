"""Tridiagonal passes the operator conformance battery (semisep.testing.OperatorConformance),
symmetric and non-symmetric storage, real and complex dtypes, with torch gradient checks.

Shipped with the package, so semisep.test() runs it on the user's machine."""

from __future__ import annotations

import numpy as np

import semisep as ss
from semisep.testing import OperatorConformance

N = 11


def _entries(rng, shape, dtype):
    x = rng.uniform(-1.0, 1.0, shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.uniform(-1.0, 1.0, shape)
    return x.astype(dtype)


def _dense(d, lo, up):
    """The dense matrix, built here by index arithmetic (not by Tridiagonal.to_dense)."""
    n = d.shape[-1]
    batch = np.broadcast_shapes(d.shape[:-1], lo.shape[:-1], up.shape[:-1])
    A = np.zeros(batch + (n, n), np.result_type(d, lo, up))
    for i in range(n):
        A[..., i, i] = d[..., i]
        if i + 1 < n:
            A[..., i + 1, i] = lo[..., i]
            A[..., i, i + 1] = up[..., i]
    return A


#: every backend and method: NumPy's compiled sweeps and its twins, torch's zero-copy path
#: to the compiled sweeps, its chunked scan (the CUDA path, run here on CPU) and its twins
VARIANTS = (("numpy", "auto"), ("numpy", "reference"), ("torch", "auto"), ("torch", "chunked"),
            ("torch", "reference"))


def _to_torch(T):
    import torch

    def t(a):
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a))

    return ss.Tridiagonal(t(T.diag), t(T.lower), t(T.upper))


class TestTridiagonalNonsymmetric(OperatorConformance):
    """General T: independent lower and upper off-diagonals, diagonal in [-2, 2] (so shifts
    near the real axis land inside the spectrum's neighbourhood)."""

    supports_torch = True
    variants = VARIANTS

    def convert_operator(self, op, library):
        return _to_torch(op)

    def make_operator(self, rng, dtype, batch_shape):
        d = 2.0 * _entries(rng, batch_shape + (N,), dtype)
        lo = _entries(rng, batch_shape + (N - 1,), dtype)
        up = _entries(rng, batch_shape + (N - 1,), dtype)
        return ss.Tridiagonal(d, lo, up), _dense(d, lo, up)

    def make_torch_params(self, rng):
        import torch

        n = 6
        cplx = np.complex128
        arrays = (2.0 * _entries(rng, (2, n), cplx), _entries(rng, (2, n - 1), cplx),
                  _entries(rng, (2, n - 1), cplx))
        return tuple(torch.tensor(a, requires_grad=True) for a in arrays)

    def make_torch_operator(self, params):
        return ss.Tridiagonal(*params)


class TestTridiagonalSymmetric(OperatorConformance):
    """Symmetric storage (``upper=None``): real symmetric, or complex symmetric (not
    Hermitian) for complex dtypes.  Off-diagonals broadcast from a shared (N-1,) array."""

    supports_torch = True
    variants = VARIANTS

    def convert_operator(self, op, library):
        return _to_torch(op)

    def make_operator(self, rng, dtype, batch_shape):
        d = 2.0 * _entries(rng, batch_shape + (N,), dtype)
        lo = _entries(rng, (N - 1,), dtype)  # shared by the whole batch
        return ss.Tridiagonal(d, lo), _dense(d, lo, lo)

    def make_torch_params(self, rng):
        import torch

        n = 6
        cplx = np.complex128
        arrays = (2.0 * _entries(rng, (2, n), cplx), _entries(rng, (n - 1,), cplx))
        return tuple(torch.tensor(a, requires_grad=True) for a in arrays)

    def make_torch_operator(self, params):
        return ss.Tridiagonal(*params)
