"""Comparison baselines for the resolvent diagonal ``diag((T - z I)^{-1})``, written plainly.

All take the shifted rows of ``A = T - z I`` in the kernel layout (``alpha`` (B, N) with
``alpha_i = A[i, i]``, ``beta`` (B, N-1) with ``beta_i = A[i, i+1] A[i+1, i]``):

(a) :func:`theta_phi_torch` -- the seed system's determinant recursion, a Python loop over N
    vectorised over the batch in torch.  **Unstable**: ``|theta_i|`` grows like ``e^{gamma i}``
    and overflows complex128 (near N ~ 900 on a clean chain at z = 1j); it is a *timing*
    baseline only, and callers must check whether its output is finite.
(b) :func:`numpy_loop` -- the LU/UL pivot recursion as a Python loop over N vectorised over
    the batch in plain NumPy; this is ``semisep.backends.numpy.resolvent_diagonal_ref``.
(c) :func:`make_copyto` -- ``np.copyto`` of an output-sized array: the memory-bandwidth floor
    of any method that writes B x N complex numbers.
(d) :func:`dense_inv_diagonal` -- ``scipy.linalg.inv`` of each dense batch element.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import scipy.linalg as sla

from semisep.backends.numpy import resolvent_diagonal_ref

__all__ = ["theta_phi_torch", "numpy_loop", "make_copyto", "dense_matrices", "dense_inv_diagonal"]


def theta_phi_torch(alpha: Any, beta: Any) -> Any:
    """(a) ``G_ii = theta_{i-1} phi_{i+1} / theta_N`` (1-based), torch tensors (B, N), (B, N-1).

    ``theta_0 = 1, theta_1 = alpha_1, theta_i = alpha_i theta_{i-1} - beta_{i-1} theta_{i-2}``
    (leading principal minors), ``phi_{N+1} = 1, phi_N = alpha_N,
    phi_i = alpha_i phi_{i+1} - beta_i phi_{i+2}`` (trailing minors).  No scaling: this is the
    unstable algorithm of the original system, kept as a timing baseline.
    """
    import torch

    B, N = alpha.shape
    a = alpha.T.contiguous()  # (N, B): a[i-1] is alpha_i (1-based)
    b = beta.T.contiguous()  # (N-1, B): b[i-1] is beta_i, the coupling of i and i+1 (1-based)
    theta = torch.empty((N + 1, B), dtype=alpha.dtype)
    phi = torch.empty((N + 2, B), dtype=alpha.dtype)
    theta[0] = 1.0
    theta[1] = a[0]
    for i in range(2, N + 1):
        theta[i] = a[i - 1] * theta[i - 1] - b[i - 2] * theta[i - 2]
    phi[N + 1] = 1.0
    phi[N] = a[N - 1]
    for i in range(N - 1, 0, -1):
        phi[i] = a[i - 1] * phi[i + 1] - b[i - 1] * phi[i + 2]
    G = theta[0:N] * phi[2 : N + 2] / theta[N]
    return G.T


def numpy_loop(alpha: np.ndarray, beta: np.ndarray, pivmin: np.ndarray) -> np.ndarray:
    """(b) The pivot recursion as a NumPy loop over N (semisep's own ``_ref`` twin)."""
    G, _, _ = resolvent_diagonal_ref(alpha, beta, pivmin)
    return G


def make_copyto(shape: tuple[int, ...], dtype: Any = np.complex128) -> Callable[[], None]:
    """(c) A closure that runs ``np.copyto(dst, src)`` on pre-allocated, pre-touched arrays."""
    src = np.ones(shape, dtype)
    dst = np.zeros(shape, dtype)

    def copy() -> None:
        np.copyto(dst, src)

    return copy


def dense_matrices(alpha: np.ndarray, beta_lower: np.ndarray, beta_upper: np.ndarray) -> np.ndarray:
    """Dense ``A`` (B, N, N) from its diagonal and the two off-diagonals (lower, upper)."""
    B, N = alpha.shape
    A = np.zeros((B, N, N), alpha.dtype)
    i = np.arange(N)
    A[:, i, i] = alpha
    A[:, i[1:], i[:-1]] = beta_lower
    A[:, i[:-1], i[1:]] = beta_upper
    return A


def dense_inv_diagonal(A: np.ndarray) -> np.ndarray:
    """(d) ``diag(inv(A[k]))`` for each batch element ``k``, by ``scipy.linalg.inv``."""
    out = np.empty(A.shape[:-1], A.dtype)
    for k in range(A.shape[0]):
        out[k] = np.diagonal(sla.inv(A[k]))
    return out
