"""Compiled (numba) kernels of the quasiseparable **products**: ``A x`` and the gradient of a
bilinear form ``u^T L v`` (reverse-mode differentiation of the torch backend).

Notation and array conventions: :mod:`semisep.backends.numpy.quasiseparable` (``A = S - z I``
of size N, lower form ``(p, q, a)`` of order r_l, upper form the transpose of ``(g, h, b)`` of
order r_u; a leading batch axis of length B or 1; ``a, b, q, h`` may have length 1 on their N
axis).

``matvec_kernel(alpha, p, q, a, g, h, b, x)``, x (B or 1, N, k) -> y (B, N, k)
    ``y = A x`` by the forward state ``f_{i+1} = a_i f_i + q_i x_i`` and the backward state
    ``e_{i-1} = b_i^T e_i + g_i x_i``: ``y_i = alpha_i x_i + p_i . f_i + h_i . e_i``;
    O(N r^2 k).
``bilinear_grad_kernel(u, v, p, q, a)``, u, v (B or 1, N, k) -> dp, dq (B, N, r), da (B, N, r, r)
    The gradient of ``sum_k u_k^T L v_k`` (``L`` the strictly lower form (p, q, a)) with
    respect to ``p, q, a``: with the forward state ``phi_{i+1} = a_i phi_i + q_i v_i`` and the
    backward state ``lam_{i-1} = a_i^T lam_i + p_i u_i``: ``dp_i = sum u_i phi_i``,
    ``dq_i = sum lam_i v_i``, ``da_i = sum lam_i phi_i^T`` (``lam_i`` the state after row i is
    added, so that it collects rows > i).

The plain loop twin is :mod:`semisep.reference.quasiseparable`.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .._numba import cache_option, jit

__all__ = ["matvec_kernel", "bilinear_grad_kernel"]

_JIT = dict(nogil=True, cache=cache_option(__file__), fastmath=False, error_model="numpy")

# --------------------------------------------------------------------------------------------
# products and the gradient of a bilinear form
# --------------------------------------------------------------------------------------------
@numba.njit(**_JIT)
def _lower_apply_row(k, p, q, a, x, y, transpose_order):
    """``y += L x`` for the strictly lower form (p, q, a) (``transpose_order`` False), or
    ``y += L^T x`` (True: the backward sweep ``e_{i-1} = a_i^T e_i + p_i x_i``, ``y_i += q_i . e_i``)."""
    n = x.shape[1]
    kk = x.shape[2]
    r = p.shape[2]
    kp = k if p.shape[0] > 1 else 0
    kq = k if q.shape[0] > 1 else 0
    kA = k if a.shape[0] > 1 else 0
    kx = k if x.shape[0] > 1 else 0
    zero = np.zeros(1, y.dtype)[0]
    st = np.zeros((r, kk), y.dtype)
    tmp = np.zeros((r, kk), y.dtype)
    for t in range(n):
        i = n - 1 - t if transpose_order else t
        ia = i if a.shape[1] > 1 else 0
        iq = i if q.shape[1] > 1 else 0
        if transpose_order:
            for c in range(kk):
                acc = zero
                for e in range(r):
                    acc += q[kq, iq, e] * st[e, c]
                y[k, i, c] += acc
            for e in range(r):
                for c in range(kk):
                    acc = p[kp, i, e] * x[kx, i, c]
                    for f in range(r):
                        acc += a[kA, ia, f, e] * st[f, c]
                    tmp[e, c] = acc
        else:
            for c in range(kk):
                acc = zero
                for e in range(r):
                    acc += p[kp, i, e] * st[e, c]
                y[k, i, c] += acc
            for e in range(r):
                for c in range(kk):
                    acc = q[kq, iq, e] * x[kx, i, c]
                    for f in range(r):
                        acc += a[kA, ia, e, f] * st[f, c]
                    tmp[e, c] = acc
        for e in range(r):
            for c in range(kk):
                st[e, c] = tmp[e, c]


@jit(parallel=True, **_JIT)
def _matvec_batch(alpha, p, q, a, g, h, b, x, y):
    for k0 in prange(y.shape[0]):
        k = np.int64(k0)
        kal = k if alpha.shape[0] > 1 else 0
        kx = k if x.shape[0] > 1 else 0
        for i in range(y.shape[1]):
            for c in range(y.shape[2]):
                y[k, i, c] = alpha[kal, i] * x[kx, i, c]
        _lower_apply_row(k, p, q, a, x, y, False)
        # the upper triangle is the transpose of the lower form (g, h, b)
        _lower_apply_row(k, g, h, b, x, y, True)


def matvec_kernel(alpha, p, q, a, g, h, b, x):
    """``y = A x`` for x (B or 1, N, k); O(N r^2 k)."""
    B = max(t.shape[0] for t in (alpha, p, q, a, g, h, b, x))
    y = np.empty((B,) + x.shape[1:], np.result_type(alpha, x))
    _matvec_batch(alpha, p, q, a, g, h, b, x, y)
    return y


@numba.njit(**_JIT)
def _bilinear_grad_row(k, u, v, p, q, a, dp, dq, da):
    n = u.shape[1]
    kk = u.shape[2]
    r = p.shape[2]
    ku = k if u.shape[0] > 1 else 0
    kv = k if v.shape[0] > 1 else 0
    kp = k if p.shape[0] > 1 else 0
    kq = k if q.shape[0] > 1 else 0
    kA = k if a.shape[0] > 1 else 0
    # the accumulators start from a typed zero, never from the (uninitialised) outputs
    zero = np.zeros(1, dp.dtype)[0]
    phi = np.zeros((n, r, kk), dp.dtype)  # phi_i: the forward state before row i
    st = np.zeros((r, kk), dp.dtype)
    tmp = np.zeros((r, kk), dp.dtype)
    for i in range(n):
        ia = i if a.shape[1] > 1 else 0
        for e in range(r):
            for c in range(kk):
                phi[i, e, c] = st[e, c]
        for e in range(r):
            for c in range(kk):
                acc = q[kq, i, e] * v[kv, i, c]
                for f in range(r):
                    acc += a[kA, ia, e, f] * st[f, c]
                tmp[e, c] = acc
        for e in range(r):
            for c in range(kk):
                st[e, c] = tmp[e, c]
    lam = np.zeros((r, kk), dp.dtype)
    for i in range(n - 1, -1, -1):
        ia = i if a.shape[1] > 1 else 0
        # lam holds sum_{j>i} (a_{j-1} .. a_{i+1})^T p_j u_j
        for e in range(r):
            accp = zero
            accq = zero
            for c in range(kk):
                accp += u[ku, i, c] * phi[i, e, c]
                accq += lam[e, c] * v[kv, i, c]
            dp[k, i, e] = accp
            dq[k, i, e] = accq
        for e in range(r):
            for f in range(r):
                acc = zero
                for c in range(kk):
                    acc += lam[e, c] * phi[i, f, c]
                da[k, i, e, f] = acc
        for e in range(r):
            for c in range(kk):
                acc = p[kp, i, e] * u[ku, i, c]
                for f in range(r):
                    acc += a[kA, ia, f, e] * lam[f, c]
                tmp[e, c] = acc
        for e in range(r):
            for c in range(kk):
                lam[e, c] = tmp[e, c]


@jit(parallel=True, **_JIT)
def _bilinear_grad_batch(u, v, p, q, a, dp, dq, da):
    for k0 in prange(dp.shape[0]):
        k = np.int64(k0)
        _bilinear_grad_row(k, u, v, p, q, a, dp, dq, da)


def bilinear_grad_kernel(u, v, p, q, a):
    """``(dp, dq, da)`` of ``sum_k u_k^T L(p, q, a) v_k`` (B, N, r), (B, N, r), (B, N, r, r);
    see the module docstring.  ``da_0`` is zero (``a_0`` never enters)."""
    B = max(t.shape[0] for t in (u, v, p, q, a))
    n, r = u.shape[1], p.shape[2]
    dt = np.result_type(u, v, p)
    dp = np.empty((B, n, r), dt)
    dq = np.empty((B, n, r), dt)
    da = np.empty((B, n, r, r), dt)
    _bilinear_grad_batch(u, v, p, q, a, dp, dq, da)
    return dp, dq, da
