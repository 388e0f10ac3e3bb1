"""Compiled (numba) kernels of the quasiseparable algorithms for **symmetric storage**
(``g, h, b = p, q, a``), the pivot guard's scale, and the helpers the kernels of
:mod:`semisep.backends.numpy.quasiseparable` share (rank specialisation, the row layout).
Notation and array conventions: that module's docstring.

``factor_symmetric_kernel(alpha, p, q, a, pivmin)``
    The LDL^T factorization ``A = L D L^T`` (``L = I + tril-form(p, qt, a)``): the LU
    recursion with the symmetric state ``M_0 = 0`` (r x r)::

        u = M_i p_i,  d_i = alpha_i - p_i . u,  w_i = q_i - a_i u,
        qt_i = w_i / d_i,  ht_i = w_i (= d_i qt_i),
        M_{i+1} = a_i M_i a_i^T + qt_i w_i^T

    (its upper triangle, mirrored), with the pivot guard of the general kernel.  The same
    outputs as ``factor_kernel`` without the states.
``_inverse_diagonal_sym_batch(w, d, qt, p, a, out)``
    ``G_ii = 1/d_i + qt_i . Psi_i qt_i`` with ``Psi_{N-1} = 0``,
    ``Psi_{i-1} = p_i p_i^T / d_i + ah_i^T Psi_i ah_i``, ``ah_i = a_i - qt_i p_i^T`` (the
    general recursion with ``bh_i = ah_i``; ``Psi`` symmetric, upper triangle mirrored).
``pivot_scale(alpha, p, q, g, h)``
    The largest ``|.|`` of the diagonal and the first sub- and super-diagonals per row (real
    data), the scale of the pivot guard.

Rank specialisation: kernels taking a witness ``w`` (a tuple of length ``r``, from
:func:`_witness`) are compiled for that rank, with loops of constant trip count.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .. import SINGULAR_FACTOR
from .._numba import cache_option, jit, key_caches_on_constants
from . import quasiseparable_rows as _buf

__all__ = ["factor_symmetric_kernel", "pivot_scale", "MAX_UNROLLED_RANK"]

_JIT = dict(nogil=True, cache=cache_option(__file__), fastmath=False, error_model="numpy")


#: ranks up to this get the symmetric factorization, the symmetric inverse diagonal and the
#: solve sweeps (square ranks) compiled for that rank (loops of constant length, unrolled by the
#: compiler); the general-storage factorization and inverse diagonal read the ranks at run time
#: (fewer compiled variants)
MAX_UNROLLED_RANK = 6


def _witness(r):
    """A tuple of length ``r`` (``r <= MAX_UNROLLED_RANK``, else empty): its type carries ``r``,
    so numba compiles a kernel specialised to that rank; empty means the rank is read from the
    arrays at run time."""
    return (0,) * r if r <= MAX_UNROLLED_RANK else ()


@numba.njit(**_JIT)
def _rank(w, x):
    """The rank: ``len(w)`` (a compile-time constant) when the witness is not empty, else the
    last dimension of ``x``."""
    if len(w) > 0:
        return len(w)
    return x.shape[x.ndim - 1]


def _c(x):
    return np.ascontiguousarray(x)


def _compact(x):
    """``x`` (rows, N, ...) C-contiguous; an N axis of stride 0 (one vector for every step, as
    ``q = v`` of a kernel's generators) is passed as length 1 instead of being copied out."""
    if x.ndim >= 2 and x.shape[1] > 1 and x.strides[1] == 0:
        x = np.array(x[:, :1])  # a copy of one step: writeable, as every kernel input
    return np.ascontiguousarray(x)


# --------------------------------------------------------------------------------------------
# the symmetric factorization and inverse diagonal
# --------------------------------------------------------------------------------------------
@numba.njit(**_JIT)
def _factor_sym_row(w, k, alpha, p, q, a, pivmin, d, qt, ht, sing_thr, delta):
    """The factorization of a symmetric-storage matrix (``g, h, b = p, q, a``): the recursion
    of ``factor_kernel`` with ``M_i`` symmetric, ``v = u = M_i p_i`` and
    ``ht_i = w_i = q_i - a_i u``, ``qt_i = w_i / d_i`` (the LDL^T factorization, ``U = D L^T``),
    so ``M_{i+1} = a_i M_i a_i^T + qt_i w_i^T`` (its upper triangle, mirrored)."""
    n = d.shape[1]
    r = _rank(w, p)
    ka = k if alpha.shape[0] > 1 else 0
    kp = k if p.shape[0] > 1 else 0
    kq = k if q.shape[0] > 1 else 0
    kA = k if a.shape[0] > 1 else 0
    M = np.zeros((r, r), d.dtype)
    T = np.zeros((r, r), d.dtype)
    u = np.zeros(r, d.dtype)
    w = np.zeros(r, d.dtype)
    zero = np.zeros(1, d.dtype)[0]
    guarded = 0
    last_small = False
    step_a = a.shape[1] > 1
    step_q = q.shape[1] > 1
    for i in range(n):
        ia = i if step_a else 0
        iq = i if step_q else 0
        s = alpha[ka, i] * 1
        for e in range(r):
            acc = zero
            for c in range(r):
                acc += M[e, c] * p[kp, i, c]
            u[e] = acc
            s -= p[kp, i, e] * acc
        if i == n - 1 and abs(s) < sing_thr:
            last_small = True
        ad = abs(s)
        if ad < pivmin:
            guarded += 1
            raw = s
            if ad == 0:
                s = s * 0 + pivmin
            else:
                s = s * (pivmin / ad)
            delta[k, i] = s - raw  # delta starts at zero (unguarded pivots: no write)
        d[k, i] = s
        inv = 1 / s
        for e in range(r):
            acc = q[kq, iq, e] * 1
            for c in range(r):
                acc -= a[kA, ia, e, c] * u[c]
            w[e] = acc
            qt[k, i, e] = acc * inv
            ht[k, i, e] = acc
        # M <- a_i M a_i^T + qt_i w_i^T  (symmetric: the upper triangle, mirrored)
        for e in range(r):
            for c in range(r):
                acc = zero
                for f in range(r):
                    acc += a[kA, ia, e, f] * M[f, c]
                T[e, c] = acc
        for e in range(r):
            qe = qt[k, i, e]
            for c in range(e, r):
                acc = qe * w[c]
                for f in range(r):
                    acc += T[e, f] * a[kA, ia, c, f]
                M[e, c] = acc
                M[c, e] = acc
    return guarded, last_small


@jit(parallel=True, **_JIT)
def _factor_sym_batch(w, alpha, p, q, a, pivmin, d, qt, ht, guarded, last_small, delta):
    for k0 in prange(d.shape[0]):
        k = np.int64(k0)
        thr = pivmin[k] * SINGULAR_FACTOR
        gk, sk = _factor_sym_row(w, k, alpha, p, q, a, pivmin[k], d, qt, ht, thr, delta)
        guarded[k] = gk
        last_small[k] = sk


def factor_symmetric_kernel(alpha, p, q, a, pivmin):
    """:func:`factor_kernel` for ``(g, h, b) = (p, q, a)`` (symmetric storage), without the
    states; the same outputs ``(d, qt, ht, guarded, last_small, delta)``, ``ht = d qt``."""
    r = p.shape[2]
    d, qt, ht, guarded, last_small, delta, piv = _factor_outputs(alpha, p, q, a, pivmin)
    _factor_sym_batch(_witness(r), alpha, p, q, a, piv, d, qt, ht, guarded, last_small, delta)
    return d, qt, ht, guarded, last_small, delta


def _factor_outputs(alpha, p, q, a, pivmin):
    """The symmetric factorization's outputs for the batch of ``alpha, p, q, a``:
    ``(d (B, N), qt (B, N, r), ht (B, N, r), guarded (B,), last_small (B,), delta (B, N), piv (B,))``,
    ``delta`` zeros (written where a pivot is guarded only) and ``piv`` the pivot thresholds,
    writeable, as every kernel input (one compiled signature)."""
    B = max(x.shape[0] for x in (alpha, p, q, a))
    n, r, dt = alpha.shape[1], p.shape[2], alpha.dtype
    return (_buf.empty((B, n), dt), _buf.empty((B, n, r), dt), _buf.empty((B, n, r), dt),
            np.zeros(B, np.int64), np.zeros(B, np.bool_), np.zeros((B, n), dt),
            np.full(B, pivmin, np.float64))


@numba.njit(**_JIT)
def _inverse_diagonal_sym_row(w, k, d, qt, p, a, out):
    """The general inverse-diagonal recursion for factors of a symmetric-storage matrix (``ht = d qt``,
    ``g, b = p, a``): ``bh_i = ah_i``, ``Psi`` symmetric, ``G_ii = 1/d_i + qt_i . Psi_i qt_i``,
    ``Psi_{i-1} = p_i p_i^T / d_i + ah_i^T Psi_i ah_i`` (its upper triangle, mirrored)."""
    n = d.shape[1]
    r = _rank(w, p)
    kd = k if d.shape[0] > 1 else 0
    kq = k if qt.shape[0] > 1 else 0
    kp = k if p.shape[0] > 1 else 0
    kA = k if a.shape[0] > 1 else 0
    Psi = np.zeros((r, r), out.dtype)
    T = np.zeros((r, r), out.dtype)
    ah = np.zeros((r, r), out.dtype)
    step_a = a.shape[1] > 1
    for i in range(n - 1, -1, -1):
        ia = i if step_a else 0
        di = d[kd, i]
        inv = 1 / di
        s = di * 0
        for c in range(r):
            acc = di * 0
            for e in range(r):
                acc += Psi[c, e] * qt[kq, i, e]
            s += qt[kq, i, c] * acc
        out[k, i] = inv + s
        if i == 0:
            break
        for e in range(r):
            for c in range(r):
                ah[e, c] = a[kA, ia, e, c] - qt[kq, i, e] * p[kp, i, c]
        for e in range(r):  # T = Psi ah
            for c in range(r):
                acc = di * 0
                for f in range(r):
                    acc += Psi[e, f] * ah[f, c]
                T[e, c] = acc
        for e in range(r):  # Psi = ah^T T + p p^T / d
            pe = p[kp, i, e] * inv
            for c in range(e, r):
                acc = pe * p[kp, i, c]
                for f in range(r):
                    acc += ah[f, e] * T[f, c]
                Psi[e, c] = acc
                Psi[c, e] = acc


@jit(parallel=True, **_JIT)
def _inverse_diagonal_sym_batch(w, d, qt, p, a, out):
    for k0 in prange(out.shape[0]):
        k = np.int64(k0)
        _inverse_diagonal_sym_row(w, k, d, qt, p, a, out)


# --------------------------------------------------------------------------------------------
# the scale of the pivot guard
# --------------------------------------------------------------------------------------------
@numba.njit(**_JIT)
def _absmax(s, v):
    """``max(s, |v|)``; NaN if either is NaN, as ``np.maximum``."""
    v = abs(v)
    if v != v or s != s:
        return np.nan
    return v if v > s else s


@numba.njit(**_JIT)
def _offdiag_absmax(k, s, p, q):
    """``max(s, max_i |p_i . q_{i-1}|)`` for batch row ``k`` (real data); the products summed
    over the rank in increasing order, as the NumPy expression of the operator does."""
    kp = k if p.shape[0] > 1 else 0
    kq = k if q.shape[0] > 1 else 0
    r = p.shape[2]
    if r == 0:
        return s
    step_q = q.shape[1] > 1
    for i in range(1, p.shape[1]):
        iq = i - 1 if step_q else 0
        v = p[kp, i, 0] * q[kq, iq, 0]
        for e in range(1, r):
            v = v + p[kp, i, e] * q[kq, iq, e]
        s = _absmax(s, v)
    return s


@jit(parallel=True, **_JIT)
def _pivot_scale_batch(alpha, p, q, g, h, sym, out):
    for k0 in prange(out.shape[0]):
        k = np.int64(k0)
        ka = k if alpha.shape[0] > 1 else 0
        s = 0.0
        for i in range(alpha.shape[1]):
            s = _absmax(s, alpha[ka, i])
        s = _offdiag_absmax(k, s, p, q)
        out[k] = s if sym else _offdiag_absmax(k, s, g, h)


def pivot_scale(alpha, p, q, g, h):
    """``s (B,)`` for real data (None for complex: the caller's NumPy expression then runs):
    per batch row the largest ``|.|`` of ``alpha`` (B or 1, N) and of the first sub- and
    super-diagonals ``p_i . q_{i-1}``, ``g_i . h_{i-1}`` (the scale of the pivot guard,
    :meth:`semisep._quasiseparable_rows._Rows.pivmin`), in one pass, with the same arithmetic as
    that expression (products in the arrays' dtype); ``q, h`` may have a stride-0 N axis;
    ``(g, h)`` the arrays ``(p, q)``: symmetric, counted once.  The dtype is that of the
    inputs' promotion."""
    dtype = np.result_type(alpha, p, q, g, h)
    if dtype.kind != "f":
        return None
    B = max(x.shape[0] for x in (alpha, p, q, g, h))
    out = np.empty(B, np.float64)
    sym = p is g and q is h
    p, q = _c(p), _compact(q)
    g, h = (p, q) if sym else (_c(g), _compact(h))
    _pivot_scale_batch(_c(alpha), p, q, g, h, sym, out)
    return out.astype(dtype, copy=False)


key_caches_on_constants(globals(), ("SINGULAR_FACTOR",))
