"""Compiled per-chunk passes for chains split into chunks along N (the Dask backend's tasks).

A chain ``A = T - z I`` split into chunks ``[s, e]`` is solved by three kinds of work: a pass
per chunk that summarises the chunk by a few numbers, an exact scan over those numbers, and a
second pass per chunk that, given the carries from its neighbours, runs the ordinary sweeps of
:mod:`semisep.backends.numpy` on the chunk.  This module holds the compiled first passes and the
second-pass helpers of logdet and solve; the resolvent diagonal's passes and the boundary
repair's sweeps, which read a chunk's blocks as they are, are in :mod:`.chunk_passes`.

Transfer matrices.  The leading minors ``p_i = det A[:i+1, :i+1]`` obey
``p_i = alpha_i p_{i-1} - beta_{i-1} p_{i-2}``, i.e. ``(p_i, p_{i-1}) = S_i (p_{i-1}, p_{i-2})``
with ``S_i = [[alpha_i, -beta_{i-1}], [1, 0]]``, and ``gL_i = p_{i-1} / p_i``: the pivot ratio
recursion ``gL_i = 1/(alpha_i - beta_{i-1} gL_{i-1})`` is the Moebius map of ``S_i``.  A chunk's
transfer matrix is ``M = S_e ... S_s``, rescaled by powers of two (exact) so that it neither
overflows nor underflows; only the ratio of the state's two components matters.  The trailing
minors give the UL ratios ``gR`` the same way with ``R_i = [[alpha_i, -beta_i], [1, 0]]``
applied from ``e`` down to ``s``.

Carries.  With the carry ``gL_{s-1}`` from the left and ``gR_{e+1}`` from the right, the
chunk's own sweeps on ``alpha'`` with ``alpha'_s = alpha_s - beta_{s-1} gL_{s-1}`` and
``alpha'_e = alpha_e - beta_e gR_{e+1}`` are the global sweeps restricted to the chunk (Schur
complements of the rest of the chain), so the whole-chain kernels serve as second passes.

Threads.  The kernels here and in :mod:`.chunk_passes` loop over a block's rows on the calling
thread (no ``parallel=True``): they run inside Dask tasks, and Dask supplies the parallelism
(one task per chunk and block of rows, a worker thread each); a thread pool per task would
oversubscribe the cores of a worker with several threads.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .. import SINGULAR_FACTOR
from .._numba import key_caches_on_constants
from .scalars import _JIT, _guard, _recip

__all__ = [
    "transfer_matrices",
    "left_chunk",
    "affine_chunk",
    "transfer_matrices_ref",
    "left_chunk_ref",
    "affine_chunk_ref",
]

_BIG = 2.0**400  # the transfer matrix is rescaled by a power of two outside [1/BIG, BIG]


@numba.njit(**_JIT)
def _maxabs(x):
    return max(abs(x.real), abs(x.imag))


@numba.njit(**_JIT)
def _pow2_rescale(m, M):
    """Scale the 2x2 ``M`` in place by the power of two that brings ``m`` (its largest
    component) to [1, 2); exact.  ``m == 0`` or non-finite: left as it is."""
    if m > 0.0 and m < np.inf:
        _, e = math.frexp(m)
        s = math.ldexp(1.0, 1 - e)
        for a in range(2):
            for b in range(2):
                M[a, b] = M[a, b] * s


@numba.njit(**_JIT)
def _transfer_row(alpha, betaL, beta_out, shift, reverse, M):
    """``M = S_last ... S_first`` for one row (see the module docstring) with
    ``alpha_i = alpha[i] - shift``; the coupling entering step ``i`` is ``betaL[i]``
    (``beta_{i-1}``) left to right and ``betaL[i+1]`` (``beta_i``; ``beta_out`` at the chunk's
    end) right to left."""
    n = alpha.shape[0]
    one = alpha[0] * 0 + shift * 0 + betaL[0] * 0 + 1.0
    m00 = one
    m01 = one * 0
    m10 = one * 0
    m11 = one
    for t in range(n):
        if reverse:
            i = n - 1 - t
            b = betaL[i + 1] if i < n - 1 else beta_out
        else:
            i = t
            b = betaL[i]
        a = alpha[i] - shift
        n00 = a * m00 - b * m10
        n01 = a * m01 - b * m11
        m10 = m00
        m11 = m01
        m00 = n00
        m01 = n01
        if (t & 7) == 7:
            m = max(max(_maxabs(m00), _maxabs(m01)), max(_maxabs(m10), _maxabs(m11)))
            if m > _BIG or m < 1.0 / _BIG:
                if m > 0.0 and m < np.inf:
                    _, e = math.frexp(m)
                    s = math.ldexp(1.0, 1 - e)
                    m00 = m00 * s
                    m01 = m01 * s
                    m10 = m10 * s
                    m11 = m11 * s
    M[0, 0] = m00
    M[0, 1] = m01
    M[1, 0] = m10
    M[1, 1] = m11
    m = max(max(_maxabs(m00), _maxabs(m01)), max(_maxabs(m10), _maxabs(m11)))
    _pow2_rescale(m, M)


@numba.njit(**_JIT)
def _transfer_batch(alpha, betaL, beta_out, shift, reverse, M):
    for r in range(alpha.shape[0]):
        _transfer_row(alpha[r], betaL[r % betaL.shape[0]], beta_out[r % beta_out.shape[0]], shift[r],
                      reverse, M[r])


def transfer_matrices(alpha, betaL, beta_out=None, shift=None, reverse=False):
    """The chunk's transfer matrices, ``(B, 2, 2)`` in the dtype of ``(alpha - shift) * betaL``.

    ``alpha (B, C)``: the chunk's diagonal, of ``A`` or (with ``shift (B,)``) of ``T``, real or
    complex; ``betaL (B, C)``: the coupling entering each left-to-right step
    (``betaL[:, j] = beta_{s+j-1}``, zero for ``s = 0``); ``beta_out (B,)``: ``beta_e`` after the
    chunk (zero for the last chunk; needed with ``reverse=True``, right to left, whose step
    ``j`` is coupled by ``beta_{s+j}``).  Each matrix is scaled by a power of two to a largest
    component in [1, 2)."""
    B, C = alpha.shape
    shift = np.zeros(B, alpha.dtype) if shift is None else np.asarray(shift)
    beta_out = np.zeros(B, betaL.dtype) if beta_out is None else np.asarray(beta_out)
    dtype = np.result_type(alpha.dtype, betaL.dtype, shift.dtype, beta_out.dtype)
    M = np.empty((B, 2, 2), dtype)
    if B and C:
        _transfer_batch(np.ascontiguousarray(alpha), np.ascontiguousarray(betaL),
                        np.ascontiguousarray(beta_out, dtype=betaL.dtype), np.ascontiguousarray(shift),
                        bool(reverse), M)
    else:
        M[:] = np.eye(2)
    return M


@numba.njit(**_JIT)
def _left_chunk_row(alpha, beta, beta_out, pivmin, is_last, gL, want_gL):
    """The guarded LU sweep over one chunk row (carry already folded into ``alpha[0]``).
    Returns (logabs, phase, guarded, singular) with the flags of the logdet / solve contract
    judged with the chain's indices: a guarded pivot ``d_k`` with ``|beta_k| <= pivmin**2``
    (``beta_out`` after the chunk's last pivot), and for the last chunk the last pivot before
    guarding below ``SINGULAR_FACTOR * pivmin``."""
    n = alpha.shape[0]
    guarded = 0
    singular = False
    logabs = 0.0
    phase = alpha[0] * 0 + 1.0
    g = alpha[0] * 0
    for i in range(n):
        t = alpha[i] - beta[i - 1] * g if i > 0 else alpha[i]
        if is_last and i == n - 1 and abs(t) < SINGULAR_FACTOR * pivmin:
            singular = True
        d, gd = _guard(t, pivmin)
        if gd:
            guarded += 1
            if not (is_last and i == n - 1):
                bnext = beta[i] if i < n - 1 else beta_out
                if abs(bnext) <= pivmin * pivmin:
                    singular = True
        g = _recip(d)
        if want_gL:
            gL[i] = g
        a = abs(d)
        logabs += math.log(a)
        phase = phase * (d / a)
        if (i & 63) == 63:
            phase = phase / abs(phase)
    return logabs, phase, guarded, singular


@numba.njit(**_JIT)
def _left_chunk_batch(alpha, beta, beta_out, pivmin, is_last, gL, want_gL, logabs, phase, guarded, singular):
    for r in range(alpha.shape[0]):
        la, ph, gd, sg = _left_chunk_row(alpha[r], beta[r], beta_out[r], pivmin[r], is_last, gL[r], want_gL)
        logabs[r] = la
        phase[r] = ph
        guarded[r] = gd
        singular[r] = sg


def left_chunk(alpha, beta, beta_out, pivmin, is_last, want_gL=True):
    """The guarded left sweep over a chunk: ``(gL, logabs, phase, guarded, singular)``.

    ``alpha (B, C)`` with the left carry folded into column 0, ``beta (B, C-1)`` the chunk's
    internal ``beta``, ``beta_out (B,)`` the coupling after the chunk (``beta_e``; anything for
    the last chunk), ``pivmin (B,)``.  ``gL (B, C)`` (None with ``want_gL=False``),
    ``logabs (B,)`` real ``sum log|d_i|``, ``phase (B,)`` the unit number ``prod d_i/|d_i|``,
    ``guarded (B,)`` int64, ``singular (B,)`` bool (see :func:`_left_chunk_row`)."""
    dtype = np.result_type(alpha.dtype, beta.dtype)
    alpha = np.ascontiguousarray(alpha, dtype=dtype)
    beta = np.ascontiguousarray(beta, dtype=dtype)
    B, C = alpha.shape
    if beta.shape[1] == 0:  # a one-element chunk: the kernel never reads beta
        beta = np.zeros((B, 1), dtype)
    real = np.finfo(dtype).dtype
    gL = np.empty((B, C) if want_gL else (B, 1), dtype)
    logabs = np.zeros(B, real)
    phase = np.ones(B, dtype)
    guarded = np.zeros(B, np.int64)
    singular = np.zeros(B, np.bool_)
    if B and C:
        _left_chunk_batch(alpha, beta, np.ascontiguousarray(beta_out, dtype=dtype),
                          np.ascontiguousarray(pivmin, dtype=real), bool(is_last), gL, bool(want_gL),
                          logabs, phase, guarded, singular)
    return (gL if want_gL else None), logabs, phase, guarded, singular


@numba.njit(**_JIT)
def _affine_batch(m, f, carry, reverse, y, P):
    B, C = m.shape
    k = f.shape[2]
    for r in range(B):
        p = m[r, 0] * 0 + 1.0
        for j in range(k):
            y_prev = carry[r, j]
            for t in range(C):
                i = C - 1 - t if reverse else t
                y_prev = m[r, i] * y_prev + f[r, i, j]
                y[r, i, j] = y_prev
        for t in range(C):
            p = p * m[r, t]
        P[r] = p


def affine_chunk(m, f, carry, reverse=False):
    """The affine recursion ``y_i = m_i y_{i-1} + f_i`` over a chunk (``y_{i+1}`` and right to
    left with ``reverse=True``) started from ``carry``: ``(y, P)``.

    ``m (B, C)``, ``f (B, C, k)``, ``carry (B, k)``; ``y (B, C, k)`` and ``P (B,) = prod m``, so
    that the chunk's last value is ``P * carry + (its value from a zero carry)``."""
    dtype = np.result_type(m.dtype, f.dtype, carry.dtype)
    m = np.ascontiguousarray(m, dtype=dtype)
    f = np.ascontiguousarray(f, dtype=dtype)
    carry = np.ascontiguousarray(carry, dtype=dtype)
    y = np.empty(f.shape, dtype)
    P = np.ones(m.shape[0], dtype)
    if m.shape[0] and m.shape[1]:
        _affine_batch(m, f, carry, bool(reverse), y, P)
    return y, P


# --------------------------------------------------------------------------------------------
# plain NumPy twins (a Python loop over the chunk, vectorised over the batch), for the tests
# --------------------------------------------------------------------------------------------
def transfer_matrices_ref(alpha, betaL, beta_out=None, shift=None, reverse=False):
    """Twin of :func:`transfer_matrices`: the plain product, normalised to a largest
    component in [1, 2) at the end (the two agree up to rounding)."""
    B, C = alpha.shape
    if shift is not None:
        alpha = alpha - np.asarray(shift)[:, None]
    beta_out = np.zeros(B, betaL.dtype) if beta_out is None else np.asarray(beta_out)
    betap = np.concatenate([betaL[:, 1:], beta_out[:, None]], axis=1) if reverse else betaL
    dtype = np.result_type(alpha.dtype, betap.dtype)
    M = np.broadcast_to(np.eye(2, dtype=dtype), (B, 2, 2)).copy()
    order = range(C - 1, -1, -1) if reverse else range(C)
    for i in order:
        S = np.zeros((B, 2, 2), dtype)
        S[:, 0, 0] = alpha[:, i]
        S[:, 0, 1] = -betap[:, i]
        S[:, 1, 0] = 1.0
        M = S @ M
        m = np.maximum(np.abs(M.real), np.abs(M.imag)).max(axis=(1, 2))
        M = M * np.ldexp(1.0, -np.frexp(m)[1])[:, None, None]  # exact: a power of two
    m = np.maximum(np.abs(M.real), np.abs(M.imag)).max(axis=(1, 2))
    return M * np.ldexp(1.0, 1 - np.frexp(m)[1])[:, None, None]


def left_chunk_ref(alpha, beta, beta_out, pivmin, is_last):
    """Twin of :func:`left_chunk`: ``(gL, logabs, phase, guarded, singular)``."""
    dtype = np.result_type(alpha.dtype, beta.dtype)
    B, C = alpha.shape
    gL = np.empty((B, C), dtype)
    logabs = np.zeros(B, np.finfo(dtype).dtype)
    phase = np.ones(B, dtype)
    guarded = np.zeros(B, np.int64)
    singular = np.zeros(B, bool)
    g = np.zeros(B, dtype)
    for i in range(C):
        t = alpha[:, i] - beta[:, i - 1] * g if i > 0 else alpha[:, i].copy()
        if is_last and i == C - 1:
            singular |= np.abs(t) < SINGULAR_FACTOR * pivmin
        a = np.abs(t)
        small = a < pivmin
        d = np.where(small, pivmin * np.where(a == 0, 1.0, t / np.where(a == 0, 1.0, a)), t)
        guarded += small
        if not (is_last and i == C - 1):
            bnext = beta[:, i] if i < C - 1 else beta_out
            singular |= small & (np.abs(bnext) <= pivmin * pivmin)
        g = 1.0 / d
        gL[:, i] = g
        logabs += np.log(np.abs(d))
        phase = phase * (d / np.abs(d))
    return gL, logabs, phase, guarded, singular


def affine_chunk_ref(m, f, carry, reverse=False):
    """Twin of :func:`affine_chunk`."""
    dtype = np.result_type(m.dtype, f.dtype, carry.dtype)
    y = np.empty(f.shape, dtype)
    prev = carry.astype(dtype)
    order = range(m.shape[1] - 1, -1, -1) if reverse else range(m.shape[1])
    for i in order:
        prev = m[:, i, None] * prev + f[:, i]
        y[:, i] = prev
    return y, np.prod(m, axis=1).astype(dtype)


key_caches_on_constants(globals(), ("SINGULAR_FACTOR",))
