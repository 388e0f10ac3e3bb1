"""Quasiseparable and Semiseparable pass the operator conformance battery
(semisep.testing.OperatorConformance), general and symmetric storage, with torch gradient checks.

Shipped with the package, so semisep.test() runs it on the user's machine."""

from __future__ import annotations

import numpy as np

import semisep as ss
from semisep.testing import OperatorConformance

N = 10
#: NumPy's compiled kernels, and torch's custom ops over them (CPU tensors)
VARIANTS = (("numpy", "auto"), ("torch", "auto"))


def _t(x):
    import torch

    return None if x is None else torch.from_numpy(np.ascontiguousarray(x))


def _entries(rng, shape, dtype, scale=1.0):
    x = rng.uniform(-1.0, 1.0, shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.uniform(-1.0, 1.0, shape)
    return (scale * x).astype(dtype)


def _dense(diag, p, q, a, g, h, b):
    """The dense matrix from the definition, column by column (not by the operator)."""
    n = diag.shape[-1]
    batch = np.broadcast_shapes(diag.shape[:-1], p.shape[:-2], q.shape[:-2], a.shape[:-3],
                                g.shape[:-2], h.shape[:-2], b.shape[:-3])
    A = np.zeros(batch + (n, n), np.result_type(diag, p, q, a, g, h, b))
    for j in range(n):
        A[..., j, j] = diag[..., j]
        v, w = q[..., j, :], h[..., j, :]
        for i in range(j + 1, n):
            A[..., i, j] = np.sum(p[..., i, :] * v, -1)
            A[..., j, i] = np.sum(g[..., i, :] * w, -1)
            v = np.einsum("...rs,...s->...r", a[..., i, :, :], v)
            w = np.einsum("...rs,...s->...r", b[..., i, :, :], w)
    return A


def _gens(rng, batch, dtype, rl, ru):
    d = 3.0 * _entries(rng, batch + (N,), dtype)
    lower = (_entries(rng, (N, rl), dtype), _entries(rng, batch + (N, rl), dtype),
             _entries(rng, (N, rl, rl), dtype, 0.6))
    upper = (_entries(rng, (N, ru), dtype), _entries(rng, (N, ru), dtype),
             _entries(rng, (N, ru, ru), dtype, 0.6))
    return d, lower, upper


class TestQuasiseparableGeneral(OperatorConformance):
    """General upper form (r_l = 2, r_u = 3), shared and batched generators.  At N = 10 the
    transitions (N r^2 numbers each) outweigh the dense matrix, so ``compressed`` is off."""

    supports_torch = True
    compressed = False
    variants = VARIANTS

    def convert_operator(self, op, library):
        return ss.Quasiseparable(*(_t(x) for x in (op.diag, op.p, op.q, op.a, op.g, op.h, op.b)))

    def make_operator(self, rng, dtype, batch_shape):
        d, lo, up = _gens(rng, batch_shape, dtype, 2, 3)
        return ss.Quasiseparable(d, *lo, *up), _dense(d, *lo, *up)

    def make_torch_params(self, rng):
        import torch

        d, lo, up = _gens(rng, (2,), np.complex128, 2, 1)
        return tuple(torch.tensor(x, requires_grad=True) for x in _short((d,) + lo + up, 6))

    def make_torch_operator(self, params):
        return ss.Quasiseparable(*params)


class TestQuasiseparableSymmetric(OperatorConformance):
    """Symmetric storage (complex symmetric for complex dtypes), rank 2."""

    supports_torch = True
    compressed = False
    variants = VARIANTS

    def convert_operator(self, op, library):
        return ss.Quasiseparable(*(_t(x) for x in (op.diag, op.p, op.q, op.a)))

    def make_operator(self, rng, dtype, batch_shape):
        d, lo, _ = _gens(rng, batch_shape, dtype, 2, 2)
        return ss.Quasiseparable(d, *lo), _dense(d, *lo, *lo)

    def make_torch_params(self, rng):
        import torch

        d, lo, _ = _gens(rng, (2,), np.complex128, 2, 2)
        return tuple(torch.tensor(x, requires_grad=True) for x in _short((d,) + lo, 6))

    def make_torch_operator(self, params):
        return ss.Quasiseparable(*params)


class TestSemiseparable(OperatorConformance):
    """The generator form (identity transitions), general storage, ranks (2, 1); it runs on the
    Quasiseparable kernels checked above, so single and double complex precision suffice."""

    supports_torch = True
    dtypes = (np.float32, np.complex128)
    variants = VARIANTS

    def convert_operator(self, op, library):
        return ss.Semiseparable(*(_t(x) for x in (op.diag, op.P, op.Q, op.R, op.S)))

    def make_operator(self, rng, dtype, batch_shape):
        d = 3.0 * _entries(rng, batch_shape + (N,), dtype)
        P, Q = _entries(rng, (N, 2), dtype, 0.5), _entries(rng, batch_shape + (N, 2), dtype, 0.5)
        R, S = _entries(rng, (N, 1), dtype, 0.5), _entries(rng, (N, 1), dtype, 0.5)
        n = N
        A = (np.tril(P @ np.swapaxes(Q, -1, -2), -1) + np.triu(R @ np.swapaxes(S, -1, -2), 1)
             + d[..., :, None] * np.eye(n, dtype=dtype))
        return ss.Semiseparable(d, P, Q, R, S), A

    def make_torch_params(self, rng):
        import torch

        n = 6
        arrs = (3.0 * _entries(rng, (2, n), np.complex128), _entries(rng, (n, 2), np.complex128),
                _entries(rng, (n, 2), np.complex128), _entries(rng, (n, 1), np.complex128),
                _entries(rng, (n, 1), np.complex128))
        return tuple(torch.tensor(x, requires_grad=True) for x in arrs)

    def make_torch_operator(self, params):
        return ss.Semiseparable(*params)


def _short(arrays, n):
    """The first n steps of every generator (the N axis is -1 for diag, -2 / -3 otherwise)."""
    out = []
    for k, x in enumerate(arrays):
        if k == 0:
            out.append(x[..., :n])
        elif x.ndim >= 3 and x.shape[-1] == x.shape[-2] and x.shape[-3] == N:
            out.append(x[..., :n, :, :])
        else:
            out.append(x[..., :n, :])
    return out
