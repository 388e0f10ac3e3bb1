"""TridiagonalPlusLowRank passes the operator conformance battery (semisep.testing.
OperatorConformance): batched and shared low-rank factors, real and complex dtypes, with torch
gradient checks.

Shipped with the package, so semisep.test() runs it on the user's machine."""

from __future__ import annotations

from typing import Any

import numpy as np

import semisep as ss
from semisep.testing import OperatorConformance

from .test_conformance_tridiagonal import N, _dense, _entries, _to_torch

R = 2


class TestTridiagonalPlusLowRank(OperatorConformance):
    """``T + U V^T`` with a general T (batched diagonals) and U, V shared by the batch
    (``(N, r)``, broadcast), scaled so that the low-rank term is of the size of T."""

    supports_torch = True
    compressed = False  # at N = 11 the (N, r) factors are not smaller than a dense 11 x 11
    #: the fused NumPy kernels, the composed path's reference solves, torch's zero-copy path
    #: and its chunked scan (the CUDA path, run on CPU)
    variants = (("numpy", "auto"), ("numpy", "reference"), ("torch", "auto"), ("torch", "chunked"))

    def convert_operator(self, op, library):
        import torch

        U, V = (torch.from_numpy(np.ascontiguousarray(x)) for x in (op.U, op.V))
        return ss.TridiagonalPlusLowRank(_to_torch(op.tridiagonal), U, V)
    dtypes: tuple[Any, ...] = (np.float32, np.float64, np.complex64, np.complex128)
    # (2, 1) runs in the batched-factors class below (CI time)
    batch_shapes: tuple[tuple[int, ...], ...] = ((), (3,))

    def make_operator(self, rng, dtype, batch_shape):
        d = 2.0 * _entries(rng, batch_shape + (N,), dtype)
        lo = _entries(rng, (N - 1,), dtype)
        up = _entries(rng, (N - 1,), dtype)
        U = (_entries(rng, (N, R), dtype) / np.sqrt(N)).astype(dtype)
        V = _entries(rng, (N, R), dtype)
        dense = _dense(d, lo, up) + U @ V.T
        return ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V), dense

    def make_torch_params(self, rng):
        import torch

        n = 6
        cplx = np.complex128
        arrays = (2.0 * _entries(rng, (2, n), cplx), _entries(rng, (n - 1,), cplx),
                  _entries(rng, (n - 1,), cplx), _entries(rng, (n, R), cplx) / np.sqrt(n),
                  _entries(rng, (n, R), cplx))
        return tuple(torch.tensor(a, requires_grad=True) for a in arrays)

    def make_torch_operator(self, params):
        d, lo, up, U, V = params
        return ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V)


class TestTridiagonalPlusLowRankBatchedFactors(TestTridiagonalPlusLowRank):
    """U and V batched like the diagonal ``(..., N, r)``."""

    supports_torch = False
    dtypes = (np.complex128,)
    batch_shapes = ((2, 1),)

    def make_operator(self, rng, dtype, batch_shape):
        d = 2.0 * _entries(rng, batch_shape + (N,), dtype)
        lo = _entries(rng, (N - 1,), dtype)
        U = (_entries(rng, batch_shape + (N, R), dtype) / np.sqrt(N)).astype(dtype)
        V = _entries(rng, batch_shape + (N, R), dtype)
        dense = _dense(d, lo, lo) + U @ np.swapaxes(V, -1, -2)
        return ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo), U, V), dense
