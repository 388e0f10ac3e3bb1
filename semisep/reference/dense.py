"""Dense and banded reference computations (SciPy), O(N^3) / O(N)."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla


def _layout(diag, lower, upper):
    diag = np.asarray(diag)
    lower = np.asarray(lower)
    upper = lower if upper is None else np.asarray(upper)
    batch = np.broadcast_shapes(diag.shape[:-1], lower.shape[:-1], upper.shape[:-1])
    n = diag.shape[-1]
    dt = np.result_type(diag, lower, upper, np.float64)
    diag = np.broadcast_to(diag, batch + (n,)).astype(dt)
    lower = np.broadcast_to(lower, batch + (max(n - 1, 0),)).astype(dt)
    upper = np.broadcast_to(upper, batch + (max(n - 1, 0),)).astype(dt)
    return diag, lower, upper, batch, n


def tridiagonal_to_dense(diag, lower, upper=None, z=0.0):
    """Dense ``T - z I`` of shape (..., N, N), complex128 if anything is complex."""
    diag, lower, upper, batch, n = _layout(diag, lower, upper)
    z = np.asarray(z)
    dt = np.result_type(diag, z)
    A = np.zeros(batch + (n, n), dt)
    i = np.arange(n)
    A[..., i, i] = diag - z[..., None] if z.ndim else diag - z
    if n > 1:
        A[..., i[1:], i[:-1]] = lower
        A[..., i[:-1], i[1:]] = upper
    return A


def dense_resolvent(diag, lower, upper=None, z=0.0):
    """``(T - z I)^{-1}`` (..., N, N) by ``scipy.linalg.inv`` on each batch element."""
    A = tridiagonal_to_dense(diag, lower, upper, z)
    out = np.empty_like(A)
    for idx in np.ndindex(A.shape[:-2]):
        out[idx] = sla.inv(A[idx])
    return out


def dense_resolvent_diagonal(diag, lower, upper=None, z=0.0):
    """``diag((T - z I)^{-1})`` (..., N) from the dense inverse."""
    return np.diagonal(dense_resolvent(diag, lower, upper, z), axis1=-2, axis2=-1).copy()


def dense_logdet(diag, lower, upper=None, z=0.0):
    """``log det(T - z I)`` (...,) complex, imaginary part in (-pi, pi], from ``lu_factor``."""
    A = tridiagonal_to_dense(diag, lower, upper, z)
    out = np.empty(A.shape[:-2], np.complex128)
    for idx in np.ndindex(A.shape[:-2]):
        lu, piv = sla.lu_factor(A[idx])
        d = np.diag(lu).astype(np.complex128)
        swaps = int(np.count_nonzero(piv != np.arange(len(piv))))
        phase = np.prod(d / np.abs(d)) * (-1) ** swaps
        out[idx] = np.log(np.abs(d)).sum() + 1j * np.angle(phase)
    return out


def dense_solve(diag, lower, upper, b, z=0.0):
    """``(T - z I)^{-1} b`` with b (..., N) or (..., N, k), by ``scipy.linalg.solve``."""
    A = tridiagonal_to_dense(diag, lower, upper, z)
    b = np.asarray(b)
    vec = b.ndim == 1 or b.ndim == A.ndim - 1
    bb = b[..., None] if vec else b
    batch = np.broadcast_shapes(A.shape[:-2], bb.shape[:-2])
    A = np.broadcast_to(A, batch + A.shape[-2:])
    bb = np.broadcast_to(bb, batch + bb.shape[-2:])
    out = np.empty(batch + bb.shape[-2:], np.result_type(A, bb))
    for idx in np.ndindex(batch):
        out[idx] = sla.solve(A[idx], bb[idx])
    return out[..., 0] if vec else out


def solve_banded_tridiagonal(diag, lower, upper, b, z=0.0):
    """``(T - z I)^{-1} b`` by ``scipy.linalg.solve_banded`` (LAPACK gtsv-like, O(N))."""
    diag, lower, upper, batch, n = _layout(diag, lower, upper)
    z = np.broadcast_to(np.asarray(z), batch) if np.ndim(z) else np.asarray(z)
    b = np.asarray(b)
    vec = b.ndim == 1 or b.ndim == len(batch) + 1
    bb = b[..., None] if vec else b
    bshape = np.broadcast_shapes(batch, bb.shape[:-2])
    dt = np.result_type(diag, z, bb)
    out = np.empty(bshape + bb.shape[-2:], dt)
    for idx in np.ndindex(bshape):
        src = tuple(i if s > 1 else 0 for i, s in zip(idx[len(idx) - len(batch):], batch, strict=True))
        ab = np.zeros((3, n), dt)
        zz = z[src] if np.ndim(z) else z
        ab[1] = diag[src] - zz
        ab[0, 1:] = upper[src]
        ab[2, :-1] = lower[src]
        b_batch = bb.shape[:-2]
        bsrc = tuple(
            i if s > 1 else 0 for i, s in zip(idx[len(idx) - len(b_batch):], b_batch, strict=True)
        )
        out[idx] = sla.solve_banded((1, 1), ab, bb[bsrc])
    return out[..., 0] if vec else out


def eigvalsh_tridiagonal(diag, offdiag):
    """Eigenvalues of the real symmetric tridiagonal matrix, by ``scipy.linalg.eigh_tridiagonal``."""
    return sla.eigh_tridiagonal(np.asarray(diag), np.asarray(offdiag), eigvals_only=True)
