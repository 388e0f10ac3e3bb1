"""Reverse-mode (adjoint) sweep of the quasiseparable LU factorization, compiled with numba.

The forward step i of :func:`semisep.backends.numpy.quasiseparable.factor_kernel` maps the
state ``M = M_i`` (r_l x r_u) and the inputs to::

    u = M g_i,   v = M^T p_i,   d_i = alpha_i - p_i . u,
    w = q_i - a_i u,   qt_i = w / d_i,   ht_i = h_i - b_i v,
    M_{i+1} = a_i M b_i^T + qt_i ht_i^T.

Given the adjoints ``dbar, qtbar, htbar`` of the outputs, the sweep runs i = N-1, ..., 0 with
the state adjoint ``Mbar`` (``Mbar_N = 0``) and the stored states ``M_i``::

    abar_i  = Mbar b_i M^T - (qtbar'/d_i) u^T          (qtbar' = qtbar_i + Mbar ht_i)
    bbar_i  = Mbar^T a_i M - htbar' v^T                 (htbar' = htbar_i + Mbar^T qt_i)
    qbar_i  = qtbar' / d_i,  hbar_i = htbar'
    dbar'   = dbar_i - (qtbar' . qt_i) / d_i,  alphabar_i = dbar'
    ubar    = -a_i^T qtbar' / d_i - dbar' p_i,  vbar = -b_i^T htbar'
    pbar_i  = -dbar' u + M vbar,  gbar_i = M^T ubar
    Mbar   <- a_i^T Mbar b_i + p_i vbar^T + ubar g_i^T

(the pivot guard is treated as the identity: it acts only on a matrix with a zero leading
minor).  For complex data torch's convention (the conjugate of the holomorphic derivative) is
obtained by passing the *conjugates* of every forward array; the formulas are unchanged.
O(N r^3) time, O(N r_l r_u) memory (the stored states).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

__all__ = ["factor_backward_kernel"]

_JIT = dict(nogil=True, cache=True, fastmath=False, error_model="numpy")


@numba.njit(**_JIT)
def _factor_backward_row(k, p, a, g, b, d, qt, ht, Ms, dbar, qtbar, htbar,
                         galpha, gp, gq, ga, gg, gh, gb):
    n = d.shape[1]
    rl = p.shape[2]
    ru = g.shape[2]
    kp = k if p.shape[0] > 1 else 0
    kA = k if a.shape[0] > 1 else 0
    kg = k if g.shape[0] > 1 else 0
    kB = k if b.shape[0] > 1 else 0
    zero = np.zeros(1, d.dtype)[0]
    Mbar = np.zeros((rl, ru), d.dtype)
    T1 = np.zeros((rl, ru), d.dtype)
    T2 = np.zeros((rl, ru), d.dtype)
    u = np.zeros(rl, d.dtype)
    v = np.zeros(ru, d.dtype)
    qtb = np.zeros(rl, d.dtype)
    htb = np.zeros(ru, d.dtype)
    ub = np.zeros(rl, d.dtype)
    vb = np.zeros(ru, d.dtype)
    for i in range(n - 1, -1, -1):
        ia = i if a.shape[1] > 1 else 0
        ib = i if b.shape[1] > 1 else 0
        di = d[k, i]
        inv = 1 / di
        for r in range(rl):
            acc = zero
            for c in range(ru):
                acc += Ms[k, i, r, c] * g[kg, i, c]
            u[r] = acc
        for c in range(ru):
            acc = zero
            for r in range(rl):
                acc += Ms[k, i, r, c] * p[kp, i, r]
            v[c] = acc
        # adjoints of qt_i, ht_i including the M_{i+1} = ... + qt ht^T term
        for r in range(rl):
            acc = qtbar[k, i, r] * 1
            for c in range(ru):
                acc += Mbar[r, c] * ht[k, i, c]
            qtb[r] = acc
        for c in range(ru):
            acc = htbar[k, i, c] * 1
            for r in range(rl):
                acc += Mbar[r, c] * qt[k, i, r]
            htb[c] = acc
        # T1 = M b^T (rl x ru): abar = Mbar T1^T ... computed as Mbar b M^T
        for r in range(rl):
            for c in range(ru):
                acc = zero
                for e in range(ru):
                    acc += Mbar[r, e] * b[kB, ib, e, c]
                T1[r, c] = acc  # (Mbar b)
        for r in range(rl):
            for c in range(rl):
                acc = zero
                for e in range(ru):
                    acc += T1[r, e] * Ms[k, i, c, e]
                ga[k, i, r, c] = acc - qtb[r] * inv * u[c]
        for r in range(rl):
            for c in range(ru):
                acc = zero
                for e in range(rl):
                    acc += a[kA, ia, r, e] * Ms[k, i, e, c]
                T2[r, c] = acc  # (a M)
        for r in range(ru):
            for c in range(ru):
                acc = zero
                for e in range(rl):
                    acc += Mbar[e, r] * T2[e, c]
                gb[k, i, r, c] = acc - htb[r] * v[c]
        dq = zero
        for r in range(rl):
            gq[k, i, r] = qtb[r] * inv
            dq += qtb[r] * qt[k, i, r]
        for c in range(ru):
            gh[k, i, c] = htb[c]
        dd = dbar[k, i] - dq * inv
        galpha[k, i] = dd
        for r in range(rl):
            acc = zero
            for e in range(rl):
                acc += a[kA, ia, e, r] * qtb[e]
            ub[r] = -acc * inv - dd * p[kp, i, r]
        for c in range(ru):
            acc = zero
            for e in range(ru):
                acc += b[kB, ib, e, c] * htb[e]
            vb[c] = -acc
        for r in range(rl):
            acc = -dd * u[r]
            for c in range(ru):
                acc += Ms[k, i, r, c] * vb[c]
            gp[k, i, r] = acc
        for c in range(ru):
            acc = zero
            for r in range(rl):
                acc += Ms[k, i, r, c] * ub[r]
            gg[k, i, c] = acc
        # Mbar <- a^T Mbar b + p vbar^T + ubar g^T   (T1 = Mbar b from above)
        for r in range(rl):
            for c in range(ru):
                acc = p[kp, i, r] * vb[c] + ub[r] * g[kg, i, c]
                for e in range(rl):
                    acc += a[kA, ia, e, r] * T1[e, c]
                T2[r, c] = acc
        for r in range(rl):
            for c in range(ru):
                Mbar[r, c] = T2[r, c]


@numba.njit(parallel=True, **_JIT)
def _factor_backward_batch(p, a, g, b, d, qt, ht, Ms, dbar, qtbar, htbar,
                           galpha, gp, gq, ga, gg, gh, gb):
    for k0 in prange(d.shape[0]):
        k = np.int64(k0)
        _factor_backward_row(k, p, a, g, b, d, qt, ht, Ms, dbar, qtbar, htbar,
                             galpha, gp, gq, ga, gg, gh, gb)


def factor_backward_kernel(p, a, g, b, d, qt, ht, Ms, dbar, qtbar, htbar):
    """Adjoints ``(alphabar (B, N), pbar, qbar (B, N, r_l), abar (B, N, r_l, r_l), gbar, hbar
    (B, N, r_u), bbar (B, N, r_u, r_u))`` per batch row (module docstring).  ``d, qt, ht, Ms``
    (B rows) from ``factor_kernel(..., store_states=True)``; the adjoints ``dbar, qtbar,
    htbar`` have B rows; ``p, a, g, b`` may have 1 row.  All C-contiguous, one dtype."""
    B, n = d.shape
    rl, ru = p.shape[2], g.shape[2]
    dt = d.dtype
    galpha = np.empty((B, n), dt)
    gp = np.empty((B, n, rl), dt)
    gq = np.empty((B, n, rl), dt)
    ga = np.empty((B, n, rl, rl), dt)
    gg = np.empty((B, n, ru), dt)
    gh = np.empty((B, n, ru), dt)
    gb = np.empty((B, n, ru, ru), dt)
    _factor_backward_batch(p, a, g, b, d, qt, ht, Ms, dbar, qtbar, htbar,
                           galpha, gp, gq, ga, gg, gh, gb)
    return galpha, gp, gq, ga, gg, gh, gb
