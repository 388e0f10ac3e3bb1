"""An independent O(N) implementation for large N (plain NumPy loop over N, no pivot guard).

It follows docs/mathematics.md literally, in complex128: the left and right pivot ratios for
the resolvent diagonal, the LU pivots for log det, and the Thomas algorithm for solves.  It is
slow (a Python loop over N) but obviously correct, and it never overflows (ratios, not the
theta/phi determinants).
"""

from __future__ import annotations

import numpy as np

from .dense import _layout


def _shift(diag, lower, upper, z):
    diag, lower, upper, batch, n = _layout(diag, lower, upper)
    z = np.asarray(z, dtype=np.complex128)
    alpha = (diag - (z[..., None] if z.ndim else z)).astype(np.complex128)
    alpha = np.broadcast_to(alpha, np.broadcast_shapes(alpha.shape, batch + (n,)))
    return alpha.reshape(-1, n), lower.astype(np.complex128), upper.astype(np.complex128), alpha.shape[:-1], n


def sequential_resolvent_diagonal(diag, lower, upper=None, z=0.0):
    """``diag((T - z I)^{-1})`` (..., N), complex128, by the LU/UL pivot ratios."""
    alpha, lower, upper, batch, n = _shift(diag, lower, upper, z)
    beta = np.broadcast_to(lower * upper, batch + (max(n - 1, 0),)).reshape(-1, max(n - 1, 0))
    gL = np.empty_like(alpha)
    gR = np.empty_like(alpha)
    gL[:, 0] = 1.0 / alpha[:, 0]
    for i in range(1, n):
        gL[:, i] = 1.0 / (alpha[:, i] - beta[:, i - 1] * gL[:, i - 1])
    gR[:, n - 1] = 1.0 / alpha[:, n - 1]
    for i in range(n - 2, -1, -1):
        gR[:, i] = 1.0 / (alpha[:, i] - beta[:, i] * gR[:, i + 1])
    gam = alpha.copy()
    gam[:, 1:] -= beta * gL[:, :-1]
    gam[:, :-1] -= beta * gR[:, 1:]
    return (1.0 / gam).reshape(batch + (n,))


def sequential_logdet(diag, lower, upper=None, z=0.0):
    """``log det(T - z I)`` (...,) complex128, from the LU pivots (phase kept as a unit number)."""
    alpha, lower, upper, batch, n = _shift(diag, lower, upper, z)
    beta = np.broadcast_to(lower * upper, batch + (max(n - 1, 0),)).reshape(-1, max(n - 1, 0))
    logabs = np.zeros(alpha.shape[0])
    phase = np.ones(alpha.shape[0], np.complex128)
    d = alpha[:, 0]
    for i in range(n):
        if i > 0:
            d = alpha[:, i] - beta[:, i - 1] / d
        logabs += np.log(np.abs(d))
        phase *= d / np.abs(d)
        phase /= np.abs(phase)
    return (logabs + 1j * np.angle(phase)).reshape(batch)


def sequential_solve(diag, lower, upper, b, z=0.0):
    """``(T - z I)^{-1} b`` by the Thomas algorithm (no pivoting), b (..., N) or (..., N, k)."""
    alpha, lower, upper, batch, n = _shift(diag, lower, upper, z)
    b = np.asarray(b)
    vec = b.ndim == 1 or b.ndim == len(batch) + 1
    bb = (b[..., None] if vec else b).astype(np.complex128)
    bb = np.broadcast_to(bb, batch + bb.shape[-2:]).reshape((-1,) + bb.shape[-2:]).copy()
    up = np.broadcast_to(upper, batch + (n - 1,)).reshape(-1, n - 1)
    lo = np.broadcast_to(lower, batch + (n - 1,)).reshape(-1, n - 1)
    d = np.empty_like(alpha)
    d[:, 0] = alpha[:, 0]
    for i in range(1, n):
        m = lo[:, i - 1] / d[:, i - 1]
        d[:, i] = alpha[:, i] - m * up[:, i - 1]
        bb[:, i] -= m[:, None] * bb[:, i - 1]
    bb[:, n - 1] /= d[:, n - 1][:, None]
    for i in range(n - 2, -1, -1):
        bb[:, i] = (bb[:, i] - up[:, i][:, None] * bb[:, i + 1]) / d[:, i][:, None]
    out = bb.reshape(batch + bb.shape[-2:])
    return out[..., 0] if vec else out
