"""NumPy backend: numba-compiled sequential pivot sweeps, with plain NumPy ``_ref`` twins.

The sweeps are the LU / UL pivot recursions of docs/mathematics.md for ``A = T - z I``::

    gL_0 = 1/alpha_0,          gL_i = 1/(alpha_i - beta_{i-1} gL_{i-1})
    gR_{N-1} = 1/alpha_{N-1},  gR_i = 1/(alpha_i - beta_i gR_{i+1})
    G_ii = 1/(alpha_i - beta_{i-1} gL_{i-1} - beta_i gR_{i+1})

Compiled kernels (``numba.njit``, ``parallel=True``) run over the batch with ``prange``.  Each
sweep is latency-bound (every step waits for the previous reciprocal), so the resolvent
diagonal runs the left and the right sweep of a row interleaved on one thread, meeting in the
middle (:func:`_resolvent_row_twosided`): two independent recursions in flight cost little more
than one.  Its shift form takes ``diag`` and ``z`` apart and forms ``alpha`` in registers, so
the only B x N array it writes is the result.  Complex reciprocals use ``conj(x) / |x|^2`` with
one real division (``|x|^2`` also serves the pivot guard), falling back to ``1/x`` where
``|x|^2`` would overflow or underflow.

Compile time.  numba compiles every kernel once per argument signature (dtype, layout,
read-only flag), and CI starts from a cold cache.  The per-element steps are scalar
``overload`` functions; only the hot paths' fast halves (:func:`_pivot_step`, :func:`_combine_step`,
:func:`_guarded_recip`, :func:`_checked_recip`) are inlined in numba's IR, and the rare
guarded / tiny / huge pivot branches are separate compiled functions
(:func:`_guarded_recip_slow`, :func:`_checked_recip_slow`) that LLVM leaves out of line.
Inlining every helper in numba's IR multiplies the compile time per signature, while the
hot loops' machine code is the same either way (the fast paths are inlined, only the slow-path
calls remain); ``benchmarks/compile_times.py`` measures the cold first calls.

The ``*_ref`` functions are the plain NumPy twins (a Python loop over N, vectorised over the
batch); tests compare every compiled kernel with its twin.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numba
import numpy as np
from numba import prange
from numba.extending import overload

from .. import SINGULAR_FACTOR, Backend
from .._blas import single_threaded_blas
from .._numba import cache_option, configure_threading, jit, key_caches_on_constants
from . import linalg as _linalg_ns

__all__ = [
    "NumpyBackend",
    "left_pivots",
    "right_pivots",
    "resolvent_diagonal_kernel",
    "resolvent_diagonal_shifted_kernel",
    "resolvent_diagonal_selected_kernel",
    "resolvent_diagonal_with_pivots",
    "resolvent_diagonal_backward",
    "logdet_kernel",
    "solve_kernel",
    "WoodburySweeps",
    "woodbury_forward_kernel",
    "woodbury_correction_kernel",
    "release_scratch",
    "left_pivots_ref",
    "right_pivots_ref",
    "resolvent_diagonal_ref",
    "logdet_ref",
    "solve_ref",
    "woodbury_forward_ref",
    "woodbury_correction_ref",
]

configure_threading()  # numba's threading layer: fork- and thread-safe (backends/_numba.py)
_JIT = dict(nogil=True, cache=cache_option(__file__), fastmath=False, error_model="numpy")
#: Globals the kernels read that are defined in another file.  numba freezes a global's value
#: into the compiled code, and its on-disk cache is keyed on this file's time stamp and each
#: function's bytecode only: a cached kernel would keep an old value while the NumPy twins read
#: the new one.  These values are part of every kernel's cache key (see the end of the module).
_KERNEL_CONSTANTS = ("SINGULAR_FACTOR",)


# --------------------------------------------------------------------------------------------
# scalar helpers
# --------------------------------------------------------------------------------------------
# Each scalar helper below is a plain Python function (what runs under NUMBA_DISABLE_JIT=1)
# with a numba ``overload`` that replaces it in compiled code; both compute the same thing.
def _recip(x):
    with np.errstate(all="ignore"):  # 1/0 -> inf (real), inf + nan j (complex): NumPy's value
        return np.divide(1.0, x)


@overload(_recip)
def _recip_impl(x):
    if isinstance(x, numba.types.Complex):

        def impl(x):
            re = x.real
            im = x.imag
            s = re * re + im * im
            # one real division; |x|^2 overflows beyond ~1e154 (double) / ~1e19 (single) and
            # underflows below their inverses: there, plain complex division is exact enough.
            if s > 1e-290 and s < 1e290:
                r = 1.0 / s
                return complex(re * r, -im * r)
            if re == 0.0 and im == 0.0:
                # numba's complex division raises on zero whatever the error model; this is
                # NumPy's value.  Only an exactly singular pivot gets here, and the kernels
                # flag that row singular, so the core raises SingularMatrixError.
                return complex(np.inf, np.nan)
            return 1.0 / x

        return impl

    def impl_real(x):
        return 1.0 / x

    return impl_real


def _small(x, thr):
    if np.iscomplexobj(x):
        return x.real * x.real + x.imag * x.imag < thr * thr
    return abs(x) < thr


@overload(_small)
def _small_impl(x, thr):
    """``|x| < thr`` without a square root for complex x (``re^2 + im^2 < thr^2``)."""
    if isinstance(x, numba.types.Complex):

        def impl(x, thr):
            return x.real * x.real + x.imag * x.imag < thr * thr

        return impl

    def impl_real(x, thr):
        return abs(x) < thr

    return impl_real


def _guard(d, pivmin):
    a = abs(d)
    if a < pivmin:
        if np.iscomplexobj(d):
            return (d * 0 + pivmin, True) if a == 0.0 else (d * (pivmin / a), True)
        return (d * 0 - pivmin, True) if d < 0 else (d * 0 + pivmin, True)
    return d, False


@overload(_guard)
def _guard_impl(d, pivmin):
    """Return (d', guarded): ``d' = pivmin * d/|d|`` (``pivmin`` if d == 0) when |d| < pivmin."""
    if isinstance(d, numba.types.Complex):

        def impl(d, pivmin):
            if not _small(d, pivmin):
                return d, False
            a = abs(d)
            if a < pivmin:
                if a == 0.0:
                    return d * 0 + pivmin, True
                return d * (pivmin / a), True
            return d, False

        return impl

    def impl_real(d, pivmin):
        a = abs(d)
        if a < pivmin:
            if d < 0:
                return d * 0 - pivmin, True
            return d * 0 + pivmin, True
        return d, False

    return impl_real


@numba.njit(**_JIT)
def _guarded_recip_slow(t, pivmin):
    """:func:`_guarded_recip` off its fast path (a guarded, tiny or huge pivot): a separate
    compiled function, so the hot loops inline only the fast path."""
    d, g = _guard(t, pivmin)
    return _recip(d), int(g)


@numba.njit(**_JIT)
def _checked_recip_slow(t, thr):
    """:func:`_checked_recip` off its fast path (see :func:`_guarded_recip_slow`)."""
    return _recip(t), _small(t, thr)


def _guarded_recip(t, pivmin):
    d, g = _guard(t, pivmin)
    return _recip(d), int(g)


@overload(_guarded_recip, inline="always")
def _guarded_recip_impl(t, pivmin):
    """``(1/d, guarded)`` with ``d = _guard(t, pivmin)``: ``|t|^2`` is formed once and serves
    both the guard test and the reciprocal (the common case costs one real division)."""
    if isinstance(t, numba.types.Complex):

        def impl(t, pivmin):
            re = t.real
            im = t.imag
            s = re * re + im * im
            if s >= pivmin * pivmin and s > 1e-290 and s < 1e290:
                r = 1.0 / s
                return complex(re * r, -im * r), 0
            return _guarded_recip_slow(t, pivmin)

        return impl

    def impl_real(t, pivmin):
        d, g = _guard(t, pivmin)
        return 1.0 / d, int(g)

    return impl_real


def _checked_recip(t, thr):
    return _recip(t), _small(t, thr)


@overload(_checked_recip, inline="always")
def _checked_recip_impl(t, thr):
    """``(1/t, |t| < thr)`` with ``|t|^2`` formed once (``_recip`` and ``_small`` fused)."""
    if isinstance(t, numba.types.Complex):

        def impl(t, thr):
            re = t.real
            im = t.imag
            s = re * re + im * im
            if s >= thr * thr and s > 1e-290 and s < 1e290:
                r = 1.0 / s
                return complex(re * r, -im * r), False
            return _checked_recip_slow(t, thr)

        return impl

    def impl_real(t, thr):
        return 1.0 / t, abs(t) < thr

    return impl_real


def _times(b, g):
    return b * g


@overload(_times)
def _times_impl(b, g):
    """``b * g``; a real ``b`` times a complex ``g`` as two real products.  numba would
    promote ``b`` to complex and spend four products and two sums (the zero imaginary part
    cannot be folded away without fastmath); the result is the same for finite ``g``."""
    if isinstance(b, numba.types.Float) and isinstance(g, numba.types.Complex):

        def impl(b, g):
            return complex(b * g.real, b * g.imag)

        return impl

    def impl_any(b, g):
        return b * g

    return impl_any


def _shifted(d, s):
    return d - s


@overload(_shifted)
def _shifted_impl(d, s):
    """``d - s``; a real ``d`` minus a complex ``s`` without promoting ``d`` (see _times)."""
    if isinstance(d, numba.types.Float) and isinstance(s, numba.types.Complex):

        def impl(d, s):
            return complex(d - s.real, -s.imag)

        return impl

    def impl_any(d, s):
        return d - s

    return impl_any


def _conj_if(x, sign):
    if np.iscomplexobj(x):
        return x.conjugate() if sign < 0 else x
    return x


@overload(_conj_if)
def _conj_if_impl(x, sign):
    """``conj(x)`` for ``sign = -1.0``, ``x`` for ``sign = 1.0`` (exact either way; a real
    ``x`` is returned as it is).  Arithmetic, not a branch: numba's inliner mishandled a
    conditional expression here (out-of-scope phi variables)."""
    if isinstance(x, numba.types.Complex):

        def impl(x, sign):
            return complex(x.real, sign * x.imag)

        return impl

    def impl_real(x, sign):
        return x

    return impl_real


# --------------------------------------------------------------------------------------------
# compiled row kernels (one batch row)
# --------------------------------------------------------------------------------------------
@numba.njit(**_JIT)
def _left_row(alpha, beta, pivmin, gL):
    """LU pivots of one row into gL (N,); returns (guarded, singular)."""
    n = alpha.shape[0]
    guarded = 0
    singular = False
    d, g = _guard(alpha[0], pivmin)
    guarded += g
    if g and n > 1 and abs(beta[0]) <= pivmin * pivmin:
        singular = True
    gl = _recip(d)
    gL[0] = gl
    for i in range(1, n):
        d, g = _guard(alpha[i] - beta[i - 1] * gl, pivmin)
        if g:
            guarded += 1
            if i < n - 1 and abs(beta[i]) <= pivmin * pivmin:
                singular = True
        gl = _recip(d)
        gL[i] = gl
    if abs(alpha[n - 1] - (beta[n - 2] * gL[n - 2] if n > 1 else 0.0)) < SINGULAR_FACTOR * pivmin:
        singular = True  # the last pivot is 1/G_{N-1,N-1}
    return guarded, singular


@numba.njit(**_JIT)
def _right_row(alpha, beta, pivmin, gR):
    """UL pivots of one row into gR (N,); returns the number of guarded pivots."""
    n = alpha.shape[0]
    guarded = 0
    d, g = _guard(alpha[n - 1], pivmin)
    guarded += g
    gr = _recip(d)
    gR[n - 1] = gr
    for i in range(n - 2, -1, -1):
        d, g = _guard(alpha[i] - beta[i] * gr, pivmin)
        guarded += g
        gr = _recip(d)
        gR[i] = gr
    return guarded


def _pivot_step(d, shift, b, g, pivmin):
    return _guarded_recip(_shifted(d, shift) - _times(b, g), pivmin)


@overload(_pivot_step, inline="always")
def _pivot_step_impl(d, shift, b, g, pivmin):
    """One sweep step on scalars: ``(1/guard(t), guarded)`` with ``t = (d - shift) - b g``
    (``b = g = 0`` at a sweep's first step gives ``t = d - shift`` exactly)."""

    def impl(d, shift, b, g, pivmin):
        return _guarded_recip(_shifted(d, shift) - _times(b, g), pivmin)

    return impl


def _combine_step(d, shift, b, g, b_other, g_other, pivmin, q):
    t = _shifted(d, shift) - _times(b, g)
    x, s = _checked_recip(t - _times(b_other, g_other), q)
    r, guarded = _guarded_recip(t, pivmin)
    return x, r, guarded, s


@overload(_combine_step, inline="always")
def _combine_step_impl(d, shift, b, g, b_other, g_other, pivmin, q):
    """One sweep step that also combines: ``t = (d - shift) - b g`` is this sweep's pivot,
    ``gamma = t - b_other g_other`` the full ``1/G_ii`` with the other sweep's ratio
    (``b_other = g_other = 0`` past the matrix's end).  Returns
    ``(1/gamma, 1/guard(t), guarded, |gamma| < q)``."""

    def impl(d, shift, b, g, b_other, g_other, pivmin, q):
        t = _shifted(d, shift) - _times(b, g)
        x, s = _checked_recip(t - _times(b_other, g_other), q)
        r, guarded = _guarded_recip(t, pivmin)
        return x, r, guarded, s

    return impl


@numba.njit(**_JIT)
def _combine_row(diag, shift, beta, pivmin, G, gL, gR):
    """``G_ii = 1/(alpha_i - beta_{i-1} gL_{i-1} - beta_i gR_{i+1})`` into G from stored
    pivots; returns singular (some ``|1/G_ii| < SINGULAR_FACTOR * pivmin``)."""
    n = diag.shape[0]
    singular = False
    q = SINGULAR_FACTOR * pivmin
    for i in range(n):
        gam = _shifted(diag[i], shift)
        if i > 0:
            gam = gam - _times(beta[i - 1], gL[i - 1])
        if i < n - 1:
            gam = gam - _times(beta[i], gR[i + 1])
        x, s = _checked_recip(gam, q)
        singular |= s
        G[i] = x
    return singular


@numba.njit(**_JIT)
def _pivots_row_interleaved(diag, shift, beta, pivmin, G, gL, gR):
    """The LU and UL sweeps of one row into gL, gR (N,), then ``G_ii`` into G
    (:func:`_combine_row`), with ``alpha_i = diag_i - shift`` formed in registers; returns
    ``(guarded, singular)``, singular where some ``|1/G_ii| < SINGULAR_FACTOR * pivmin`` (the
    kernel contract).

    :func:`_left_row` and :func:`_right_row` in one loop: the two recursions are independent
    and latency-bound, so interleaving them lets the CPU overlap them.  Same pivots, same guard
    count as the two calls (tested against the reference twins).  The steps are
    :func:`_pivot_step`'s, so a real ``diag`` / ``beta`` with a complex shift costs real
    products."""
    n = diag.shape[0]
    zg = diag[0] * 0 + shift * 0
    zb = beta.dtype.type(0)
    gl, guarded = _pivot_step(diag[0], shift, zb, zg, pivmin)
    gL[0] = gl
    gr, g = _pivot_step(diag[n - 1], shift, zb, zg, pivmin)
    guarded += g
    gR[n - 1] = gr
    for i in range(1, n):
        j = n - 1 - i
        gl, g1 = _pivot_step(diag[i], shift, beta[i - 1], gl, pivmin)
        gr, g2 = _pivot_step(diag[j], shift, beta[j], gr, pivmin)
        guarded += g1 + g2
        gL[i] = gl
        gR[j] = gr
    return guarded, _combine_row(diag, shift, beta, pivmin, G, gL, gR)


@numba.njit(**_JIT)
def _pivots_rows_paired(diag, shift, beta, pivmin, G, gL, gR, a, b, guarded, singular):
    """:func:`_pivots_row_interleaved` for rows ``a`` and ``b`` in one loop: four independent
    recursions in flight instead of two, which fills the core's pipelines where one row leaves
    them waiting on its reciprocals.  The same steps, so the same pivots (tested)."""
    # One view per statement: numba's alias analysis does not see through a tuple unpack, and
    # it then dropped the last stores through such a view as dead code (numba 0.68: an odd-N
    # tail's results never reached G in an earlier paired kernel).
    da = diag[a]
    db = diag[b]
    ba = beta[a]
    bb = beta[b]
    la = gL[a]
    lb = gL[b]
    ra = gR[a]
    rb = gR[b]
    sa, sb, pa, pb = shift[a], shift[b], pivmin[a], pivmin[b]
    n = da.shape[0]
    zg = da[0] * 0 + sa * 0
    zb = ba.dtype.type(0)
    gla, g1 = _pivot_step(da[0], sa, zb, zg, pa)
    gra, g2 = _pivot_step(da[n - 1], sa, zb, zg, pa)
    glb, g3 = _pivot_step(db[0], sb, zb, zg, pb)
    grb, g4 = _pivot_step(db[n - 1], sb, zb, zg, pb)
    ga = g1 + g2
    gb = g3 + g4
    la[0] = gla
    ra[n - 1] = gra
    lb[0] = glb
    rb[n - 1] = grb
    for i in range(1, n):
        j = n - 1 - i
        gla, g1 = _pivot_step(da[i], sa, ba[i - 1], gla, pa)
        gra, g2 = _pivot_step(da[j], sa, ba[j], gra, pa)
        glb, g3 = _pivot_step(db[i], sb, bb[i - 1], glb, pb)
        grb, g4 = _pivot_step(db[j], sb, bb[j], grb, pb)
        ga += g1 + g2
        gb += g3 + g4
        la[i] = gla
        ra[j] = gra
        lb[i] = glb
        rb[j] = grb
    guarded[a] = ga
    guarded[b] = gb
    singular[a] = _combine_row(da, sa, ba, pa, G[a], la, ra)
    singular[b] = _combine_row(db, sb, bb, pb, G[b], lb, rb)


@numba.njit(**_JIT)
def _resolvent_row_twosided(diag, shift, beta, pivmin, G):
    """``G_ii`` of one row with ``alpha_i = diag_i - shift``; returns (guarded, singular).

    The LU sweep (from the left) and the UL sweep (from the right) are independent
    recursions, each latency-bound on its reciprocal; they run interleaved so that the CPU
    overlaps them.  Phase 1 (:func:`_pivot_step`): both sweeps up to the middle,
    ``G[:h] = gL``, ``G[h:] = gR`` (``h = N // 2``).  Phase 2 (:func:`_combine_step`): the
    left sweep continues over ``[h, N)`` combining as it goes (``gR_{i+1}`` is still in
    ``G[i+1]``), the right sweep over ``[0, h)`` likewise with ``gL_{j-1}`` in ``G[j-1]``.
    Every pivot of both sweeps is formed and guard-counted, as in the reference; each element
    costs three reciprocals, one row reads ``diag`` twice and ``G`` once and writes ``G``
    twice.  The steps take scalars (a zero ``b`` and ``g`` where a neighbour is missing).
    """
    n = diag.shape[0]
    q = SINGULAR_FACTOR * pivmin
    h = n // 2
    guarded = 0
    singular = False
    zg = diag[0] * 0 + shift * 0  # a zero typed like alpha
    zb = beta.dtype.type(0)
    gl = gr = zg
    for k in range(h):
        j = n - 1 - k
        gl, g1 = _pivot_step(diag[k], shift, beta[k - 1] if k > 0 else zb, gl, pivmin)
        gr, g2 = _pivot_step(diag[j], shift, beta[j] if j < n - 1 else zb, gr, pivmin)
        guarded += g1 + g2
        G[k] = gl
        G[j] = gr
    if n - h > h:  # odd N: the middle position is one more right-sweep step
        gr, g2 = _pivot_step(diag[h], shift, beta[h] if h < n - 1 else zb, gr, pivmin)
        guarded += g2
        G[h] = gr
    for k in range(h):  # i = h .. N-1 (left sweep), j = h-1 .. 0 (right sweep)
        i = h + k
        j = h - 1 - k
        more = i < n - 1
        x, gl, g1, s1 = _combine_step(diag[i], shift, beta[i - 1], gl, beta[i] if more else zb,
                                      G[i + 1] if more else zg, pivmin, q)
        y, gr, g2, s2 = _combine_step(diag[j], shift, beta[j], gr, beta[j - 1] if j > 0 else zb,
                                      G[j - 1] if j > 0 else zg, pivmin, q)
        G[i] = x
        G[j] = y
        guarded += g1 + g2
        singular |= s1 | s2
    if n - h > h:  # odd N: the last position, gamma_{N-1} = t_{N-1}
        i = n - 1
        x, gl, g1, s1 = _combine_step(diag[i], shift, beta[i - 1] if i > 0 else zb, gl, zb, zg,
                                      pivmin, q)
        G[i] = x
        guarded += g1
        singular |= s1
    return guarded, singular


@jit(parallel=True, **_JIT)
def _resolvent_batch(diag, shift, beta, pivmin, G, guarded, singular):
    """One row per task (``G (B, N)`` written in place; ``guarded``, ``singular`` ``(B,)``)."""
    for k in prange(diag.shape[0]):
        guarded[k], singular[k] = _resolvent_row_twosided(diag[k], shift[k], beta[k], pivmin[k], G[k])


@numba.njit(**_JIT)
def _resolvent_row_selected(alpha, beta, pivmin, idx, gL, out):
    """G_ii at the positions idx only: the left sweep runs to max(idx) - 1, the right sweep
    from N-1 down to min(idx) + 1 (fused with the combine at the selected positions)."""
    n = alpha.shape[0]
    k = idx.shape[0]
    guarded = 0
    singular = False
    lo = n
    hi = -1
    for t in range(k):
        lo = min(lo, idx[t])
        hi = max(hi, idx[t])
    # left pivots 0 .. hi-1
    if hi >= 1:
        d, g = _guard(alpha[0], pivmin)
        guarded += g
        gl = _recip(d)
        gL[0] = gl
        for i in range(1, hi):
            d, g = _guard(alpha[i] - beta[i - 1] * gl, pivmin)
            guarded += g
            gl = _recip(d)
            gL[i] = gl
    # right sweep N-1 .. lo+1; the position idx[t] needs gR_{i+1}: walk the sorted order
    order = np.argsort(idx)[::-1]
    t = 0
    gr = alpha[0] * 0  # gR_{i+1} for the current i (unused at i = N-1)
    i = n - 1
    while t < k:
        target = idx[order[t]]
        # advance the right sweep until gr = gR_{target+1}
        while i > target:
            if i == n - 1:
                d, g = _guard(alpha[i], pivmin)
            else:
                d, g = _guard(alpha[i] - beta[i] * gr, pivmin)
            guarded += g
            gr = _recip(d)
            i -= 1
        gam = alpha[target]
        if target > 0:
            gam = gam - beta[target - 1] * gL[target - 1]
        if target < n - 1:
            gam = gam - beta[target] * gr
        if _small(gam, SINGULAR_FACTOR * pivmin):
            singular = True
        out[order[t]] = _recip(gam)
        t += 1
    return guarded, singular


@jit(parallel=True, **_JIT)
def _resolvent_selected_batch(alpha, beta, pivmin, idx, gL, out, guarded, singular):
    for r in prange(alpha.shape[0]):
        guarded[r], singular[r] = _resolvent_row_selected(alpha[r], beta[r], pivmin[r], idx, gL[r], out[r])


@jit(parallel=True, **_JIT)
def _resolvent_pivots_batch(diag, shift, beta, pivmin, G, gL, gR, guarded, singular, start):
    """Rows ``start .. B-1`` one per task (:func:`_pivots_row_interleaved`)."""
    for k in prange(start, diag.shape[0]):
        guarded[k], singular[k] = _pivots_row_interleaved(diag[k], shift[k], beta[k], pivmin[k],
                                                          G[k], gL[k], gR[k])


@jit(parallel=True, **_JIT)
def _resolvent_pivots_pairs(diag, shift, beta, pivmin, G, gL, gR, guarded, singular, npairs):
    """Rows ``2p, 2p+1`` for ``p < npairs``, one pair per task (:func:`_pivots_rows_paired`).
    A separate function from :func:`_resolvent_pivots_batch`, so that a call that never pairs
    rows never compiles the (large) paired loop."""
    for p in prange(npairs):
        _pivots_rows_paired(diag, shift, beta, pivmin, G, gL, gR, 2 * p, 2 * p + 1, guarded, singular)


@numba.njit(**_JIT)
def _resolvent_backward_row(gbar, G, gL, gR, beta, dalpha, dbeta, want_dbeta, conjugate, dreal, want_real):
    """O(N) backward of ``G = diag(A^{-1})`` for one row, holomorphic convention.

    ``s_i = gbar_i G_i^2``; ``SL_j = beta_{j-1} gR_j^2 SL_{j-1} + s_j`` (stored in dalpha);
    ``SR_j = beta_j gL_j^2 SR_{j+1} + s_j`` (carried);
    ``dalpha_j = -(SL_j + SR_j - s_j)``, ``dbeta_j = gR_{j+1} SL_j + gL_j SR_{j+1}``.
    ``conjugate``: ``gbar`` is read conjugated and both outputs are written conjugated (the
    conjugate-linear map PyTorch's complex autograd wants, with no conjugated copies).
    ``want_real``: ``Re(dalpha_j)`` goes to ``dreal`` (N,) and ``dalpha`` is only the scratch of
    the first scan (a real diagonal's gradient, written contiguous).  Returns
    ``sum_j dalpha_j`` (the shift's gradient is its negative).  Writes only the outputs.
    """
    n = G.shape[0]
    sign = 1.0 - 2.0 * conjugate  # -1.0: conjugate (the sign _conj_if takes)
    g0 = _conj_if(gbar[0], sign)
    sl = g0 * G[0] * G[0]
    dalpha[0] = sl
    for j in range(1, n):
        gr = gR[j]
        g = G[j]
        sl = _times(beta[j - 1], gr * gr * sl) + _conj_if(gbar[j], sign) * (g * g)
        dalpha[j] = sl
    g = G[n - 1]
    s = _conj_if(gbar[n - 1], sign) * (g * g)
    sr = s
    val = _conj_if(-(dalpha[n - 1] + sr - s), sign)
    total = val
    if want_real:
        dreal[n - 1] = val.real
    else:
        dalpha[n - 1] = val
    for j in range(n - 2, -1, -1):
        sr_next = sr
        g = G[j]
        gl = gL[j]
        s = _conj_if(gbar[j], sign) * (g * g)
        sr = _times(beta[j], gl * gl * sr_next) + s
        slj = dalpha[j]
        if want_dbeta:
            dbeta[j] = _conj_if(gR[j + 1] * slj + gl * sr_next, sign)
        val = _conj_if(-(slj + sr - s), sign)
        total += val
        if want_real:
            dreal[j] = val.real
        else:
            dalpha[j] = val
    return total


@jit(parallel=True, **_JIT)
def _resolvent_backward_batch(gbar, G, gL, gR, beta, dalpha, dbeta, want_dbeta, conjugate, dreal, want_real,
                              dsum):
    """One row per task: the two scans read four B x N arrays and are bound by memory, so rows
    are not paired as in the forward kernels."""
    for k in prange(G.shape[0]):
        dsum[k] = _resolvent_backward_row(gbar[k], G[k], gL[k], gR[k], beta[k], dalpha[k], dbeta[k],
                                          want_dbeta, conjugate, dreal[k], want_real)


@jit(parallel=True, **_JIT)
def _left_batch(alpha, beta, pivmin, gL, guarded, singular):
    for k in prange(alpha.shape[0]):
        guarded[k], singular[k] = _left_row(alpha[k], beta[k], pivmin[k], gL[k])


@jit(parallel=True, **_JIT)
def _right_batch(alpha, beta, pivmin, gR, guarded):
    for k in prange(alpha.shape[0]):
        guarded[k] = _right_row(alpha[k], beta[k], pivmin[k], gR[k])


def _one_wide(x):
    return complex(1.0, 0.0) if np.iscomplexobj(x) else 1.0


@overload(_one_wide)
def _one_wide_impl(x):
    """1 in double precision, complex if ``x`` is (the product accumulator of _logdet_row)."""
    if isinstance(x, numba.types.Complex):
        return lambda x: complex(1.0, 0.0)
    return lambda x: 1.0


_LOGDET_BIG = 2.0**100  # the running product is renormalised outside [1/BIG, BIG]


@numba.njit(**_JIT)
def _rescaled(x):
    """``(x 2^-e, e)`` with ``e`` the binary exponent of ``|re x| + |im x|`` (exact; x != 0)."""
    m = abs(x.real) + abs(x.imag)
    if m == 0.0 or not np.isfinite(m):
        return x, 0
    e = math.frexp(m)[1]
    return x * math.ldexp(1.0, -e), e


@numba.njit(**_JIT)
def _times_pivot(p, expo, d):
    """``p 2^expo`` times the pivot ``d``, renormalised (see :func:`_logdet_row`)."""
    lo = 1.0 / _LOGDET_BIG
    md = abs(d.real) + abs(d.imag)
    if md > _LOGDET_BIG or md < lo:
        dd, ed = _rescaled(p * 0 + d)
        p = p * dd
        expo += ed
    else:
        p = p * d
    mp = abs(p.real) + abs(p.imag)
    if mp > _LOGDET_BIG or mp < lo:
        p, ep = _rescaled(p)
        expo += ep
    return p, expo


@numba.njit(**_JIT)
def _balanced(beta, zero):
    """``(beta / m, m)`` with ``m = sqrt(|Re beta| + |Im beta|)`` (``(0, 0)`` for beta = 0),
    typed like ``zero``: the upper and lower entry of the balanced matrix (:func:`_logdet_row`)."""
    m = math.sqrt(_cabs1(beta))
    if m == 0.0:
        return zero, zero
    return zero + beta * (1.0 / m), zero + m


@numba.njit(**_JIT)
def _logdet_row(alpha, beta, pivmin):
    """``log|det|`` and the phase ``det/|det|`` by Gaussian elimination with partial pivoting
    (LAPACK ``?gtsv``'s, :func:`_gtsv_factor_step`): ``det A = (-1)^(exchanges) prod U_ii``;
    no storage.

    ``det A`` depends on the products ``beta_i`` only, so the elimination runs on the
    diagonally similar matrix with lower ``m_i = sqrt(|beta_i|)`` and upper ``beta_i / m_i``
    (both of modulus ``m_i``; 0 where ``beta_i = 0``), the balanced form of A: for real
    ``beta_i > 0`` it is symmetric, and its entries are at most A's.  Returns
    ``(log|det|, phase, 0, singular)``: no pivot is guarded; singular where some
    ``|Re U_ii| + |Im U_ii| < SINGULAR_FACTOR * pivmin`` (the certificate of :func:`_solve_row`,
    for the balanced matrix: it lies within ``8 pivmin`` of a singular one).

    The pivots' product is accumulated in double precision and renormalised by exact powers of
    two whenever it leaves ``[2^-100, 2^100]`` (a pivot outside that range is renormalised
    before the product), with the exponents summed: ``det = p 2^E``, ``log|det| = log|p| +
    E log 2`` (:func:`_times_pivot`).  The product's rounding errors are of the order of the
    summed logs' (relative ``eps`` per step)."""
    n = alpha.shape[0]
    q = SINGULAR_FACTOR * pivmin
    singular = False
    di = alpha[0]
    zero = di * 0
    dui = zero
    lo_next = zero
    if n > 1:
        dui, lo_next = _balanced(beta[0], zero)
    p = _one_wide(di)
    expo = 0
    swaps = 0
    for i in range(n - 1):
        lower = lo_next
        dun = zero
        if i < n - 2:
            dun, lo_next = _balanced(beta[i + 1], zero)
        u, _, _, _, _, swap, di, dui = _gtsv_factor_step(di, dui, lower, alpha[i + 1], dun)
        if _cabs1(u) < q:
            singular = True
        p, expo = _times_pivot(p, expo, u)
        swaps += swap
    if _cabs1(di) < q:
        singular = True
    p, expo = _times_pivot(p, expo, di)
    if swaps % 2 == 1:
        p = -p
    a = abs(p)
    if not a > 0.0:  # an exactly zero pivot (flagged singular): numba's complex p / 0 raises
        return -np.inf, p * 0 + 1.0, 0, True
    return np.log(a) + expo * math.log(2.0), p / a, 0, singular


@jit(parallel=True, **_JIT)
def _logdet_batch(alpha, beta, pivmin, logabs, phase, guarded, singular):
    for k in prange(alpha.shape[0]):
        logabs[k], phase[k], guarded[k], singular[k] = _logdet_row(alpha[k], beta[k], pivmin[k])


@numba.njit(**_JIT)
def _forward_sweep(alpha, shift, b, c, f, pivmin, cap, out, gL):
    """One forward sweep of Gaussian elimination without row exchanges (the fused Woodbury
    kernels' ``X = A^{-1} U``); the diagonal of A is ``alpha - shift`` (``shift`` a scalar: the
    fused Woodbury path passes T's diagonal and z, so that ``alpha`` is never formed).

    ``out = L^{-1} f`` and ``gL`` (N,) filled with the pivot reciprocals.  f: (N, k) of any
    dtype that promotes to alpha's (real U, V are read as they are).  Returns
    ``(unstable, singular)``: ``unstable`` counts the guarded pivots and the steps whose
    elimination term ``|c_{i-1} b_{i-1} / d_{i-1}|`` exceeds ``cap`` (element growth: without
    row exchanges the sweep is then not backward stable, and the caller takes the pivoted
    solve instead); ``singular`` as the pre-pivoting contract (the last pivot, or a guarded
    pivot of a decoupled block).
    """
    n = alpha.shape[0]
    k = f.shape[1]
    guarded = 0
    singular = False
    a0 = alpha[0] - shift
    if n == 1 and abs(a0) < SINGULAR_FACTOR * pivmin:
        singular = True
    d, g = _guard(a0, pivmin)
    if g:
        guarded += 1
        if n > 1 and abs(b[0] * c[0]) <= pivmin * pivmin:
            singular = True
    gl = _recip(d)
    gL[0] = gl
    for j in range(k):
        out[0, j] = f[0, j]
    for i in range(1, n):
        m = c[i - 1] * gl
        mb = m * b[i - 1]
        if _cabs1(mb) > cap:
            guarded += 1
        draw = (alpha[i] - shift) - mb
        if i == n - 1 and _small(draw, SINGULAR_FACTOR * pivmin):
            singular = True
        d, g = _guard(draw, pivmin)
        if g:
            guarded += 1
            if i < n - 1 and abs(b[i] * c[i]) <= pivmin * pivmin:
                singular = True
        gl = _recip(d)
        gL[i] = gl
        for j in range(k):
            out[i, j] = f[i, j] - m * out[i - 1, j]
    return guarded, singular


def _cabs1(x):
    return abs(x.real) + abs(x.imag)


@overload(_cabs1, inline="always")
def _cabs1_impl(x):
    """``|Re x| + |Im x|`` (LAPACK's CABS1; ``|x|`` for real x): within sqrt(2) of ``|x|``,
    no square, so it neither overflows nor underflows where ``x`` is finite."""
    if isinstance(x, numba.types.Complex):
        return lambda x: abs(x.real) + abs(x.imag)
    return lambda x: abs(x)


@numba.njit(**_JIT)
def _gtsv_factor_step(di, dui, dl, dnext, dunext):
    """One step of Gaussian elimination with partial pivoting on a tridiagonal matrix (LAPACK
    ``?gtsv``): rows ``i`` = ``[di, dui, 0]`` and ``i+1`` = ``[dl, dnext, dunext]`` at columns
    ``i, i+1, i+2``.  Returns ``(u, rinv, u1, u2, fact, swap, dnext', dunext')``: row ``i`` of
    U is ``[u, u1, u2]`` (``rinv = 1/u``), the multiplier ``fact`` (``|fact| <= 1``), whether the
    rows were exchanged, and what is left of row ``i+1`` at columns ``i+1, i+2``."""
    zero = dnext * 0
    if _cabs1(di) >= _cabs1(dl):
        rinv = _recip(di)
        fact = zero
        if dl != 0:
            fact = dl * rinv
        return di, rinv, dui, zero, fact, False, dnext - fact * dui, dunext
    rinv = _recip(dl)
    fact = di * rinv
    return dl, rinv, dnext, dunext, fact, True, dui - fact * dnext, -fact * dunext


@numba.njit(**_JIT)
def _solve_row(alpha, b, c, f, pivmin, x, rinv, u1, u2):
    """``A x = f`` by Gaussian elimination with partial pivoting (row exchanges), LAPACK's
    ``?gtsv``: ``P A = L U`` with ``L`` unit lower bidiagonal up to the exchanges
    (``|L_ij| <= 1``) and ``U`` upper triangular with two superdiagonals (the fill of an
    exchange); backward stable, O(N k).

    alpha (N,), b (N-1,) upper, c (N-1,) lower, f, x: (N, k); rinv (N,) = ``1/U_ii``,
    u1 (N,), u2 (N,) U's superdiagonals: workspace.  Returns ``(0, singular)``: no pivot is
    guarded; singular where some ``|Re U_ii| + |Im U_ii| < SINGULAR_FACTOR * pivmin``, which
    certifies ``cond_2(A) > 1/(8 eps)`` (``1/|U_ii| <= ||U^{-1}||_2 <= ||L||_2 ||A^{-1}||_2``,
    ``||L||_2 <= 2``)."""
    n = alpha.shape[0]
    k = f.shape[1]
    q = SINGULAR_FACTOR * pivmin
    singular = False
    for j in range(k):
        x[0, j] = f[0, j]
    di = alpha[0]
    zero = di * 0
    dui = zero
    if n > 1:
        dui = b[0]
    for i in range(n - 1):
        dunext = zero
        if i < n - 2:
            dunext = b[i + 1]
        u, ri, a1, a2, fact, swap, di, dui = _gtsv_factor_step(di, dui, c[i], alpha[i + 1], dunext)
        if _cabs1(u) < q:
            singular = True
        rinv[i] = ri
        u1[i] = a1
        u2[i] = a2
        if swap:
            for j in range(k):
                t = x[i, j]
                fn = f[i + 1, j]
                x[i, j] = fn
                x[i + 1, j] = t - fact * fn
        else:
            for j in range(k):
                x[i + 1, j] = f[i + 1, j] - fact * x[i, j]
    if _cabs1(di) < q:
        singular = True
    rinv[n - 1] = _recip(di)
    # back substitution, the columns downwards too so that memory is read in one descending
    # stream (see the Woodbury kernels' comment)
    g = rinv[n - 1]
    for j in range(k - 1, -1, -1):
        x[n - 1, j] = g * x[n - 1, j]
    if n > 1:
        g = rinv[n - 2]
        a1 = u1[n - 2]
        for j in range(k - 1, -1, -1):
            x[n - 2, j] = g * (x[n - 2, j] - a1 * x[n - 1, j])
    for i in range(n - 3, -1, -1):
        g = rinv[i]
        a1 = u1[i]
        a2 = u2[i]
        for j in range(k - 1, -1, -1):
            x[i, j] = g * (x[i, j] - a1 * x[i + 1, j] - a2 * x[i + 2, j])
    return 0, singular


@jit(parallel=True, **_JIT)
def _solve_batch(alpha, b, c, f, pivmin, x, rinv, u1, u2, guarded, singular):
    for r in prange(alpha.shape[0]):
        guarded[r], singular[r] = _solve_row(alpha[r], b[r], c[r], f[r], pivmin[r], x[r], rinv[r], u1[r],
                                             u2[r])


# --------------------------------------------------------------------------------------------
# fused Woodbury resolvent diagonal (TridiagonalPlusLowRank.resolvent_diagonal, NumPy backend)
# --------------------------------------------------------------------------------------------
# With A = L D M (Thomas, no row exchanges): L unit lower with L[i, i-1] = c_{i-1} gL_{i-1},
# D = diag(d_i), d_i = 1/gL_i, M unit upper with M[i, i+1] = b_i gL_i.  A^T = M^T D L^T has the
# same pivots (they depend on b_i c_i only), so one set serves A^{-1} and A^{-T}:
#
#   forward:      X = A^{-1} U      q_i = u_i - c_{i-1} gL_{i-1} q_{i-1}    (ascending)
#                                   x_i = gL_i (q_i - b_i x_{i+1})          (descending)
#                 K - I = V^T X     one product per block of rows, taken while the block
#                                   the back sweep just wrote is in cache
#   correction:   Z = V K^{-T}      one product per block of rows
#                 P = D^{-1} M^{-T} Z   p_i = gL_i (z_i - b_{i-1} p_{i-1})   (ascending, stored)
#                 W = L^{-T} P = A^{-T} V K^{-T}   w_i = p_i - c_i gL_i w_{i+1}   (descending)
#   diag((H - zI)^{-1})_i = G_ii - sum_k X_ik W_ik      (summed in the descending pass; W
#                                                        is never stored)
#
# V enters both products as it is.  For a real U, V at a complex z (the usual case: a real
# low-rank term, a complex spectral parameter) they are real x complex products, 2 real
# multiply-adds per complex entry, half of a complex x complex product's 4.  The order
# K - I = P^T Q, R = P K^{-T} with the complex P = D^{-1} M^{-T} V needs no stored X but spends
# 4 + 4 N r^2 real multiply-adds where this one spends 2 + 2, at the price of one more pass over
# an (N, r) array (P written and read back); the saving outweighs the pass from moderate r on
# (the performance page has the figures).  For a complex U or V (or a real z) the flops are
# those of that order.
#
# Threads: the r columns are split into ``nsplit`` panels, one task per (batch row, panel);
# each task runs its own pivot recursion (the same arithmetic, so the same pivots) and both
# passes over its panel, which is stored contiguously ((N, h) at offset N j0 of a flat (N r)
# row), so that the block products read contiguous memory.  Within a row the descending pass
# walks the columns downwards too: the whole pass reads memory in one descending stream (an
# ascending-within-row, descending-across-rows pattern defeated the hardware prefetcher: 4x
# slower at r = 32 once the panels no longer fit in L3).
# Stability: without row exchanges the sweeps are backward stable while the elimination terms
# |c_{i-1} b_{i-1} / d_{i-1}| stay within a small multiple of the largest entry (|L||U| is then
# of the order of |A|).  The forward kernel counts the steps past _WOODBURY_GROWTH times that
# (``pivmin / eps``) with the guarded pivots, and the caller then takes the composed path,
# whose solves pivot (:func:`_solve_row`).  Diagonally dominant and Hermitian positive
# definite A never get there; a Hermitian T at z close to an eigenvalue may.
_WOODBURY_GROWTH = 16.0
_WOODBURY_BLOCK = 256  # rows per block product: a (256, h) block stays in L2
# up to this rank the correction forms V K^{-T} row by row in its loop, and the forward kernel
# takes V^T X as one product per panel after the back sweep instead of one per block
_WOODBURY_INLINE_RANK = 8


def _dot_into(a, b, out):
    out[...] = np.dot(a, b)


@overload(_dot_into)
def _dot_into_impl(a, b, out):
    """``out = a @ b`` (BLAS); a real ``a`` times a complex ``b`` through the interleaved real
    views of ``b`` and ``out`` ((k, 2h): each complex column a pair of real ones), so that the
    product costs 2 real multiply-adds per complex entry.  ``b`` and ``out`` C-contiguous."""
    if isinstance(a.dtype, numba.types.Float) and isinstance(b.dtype, numba.types.Complex):
        real = np.float64 if b.dtype.bitwidth == 128 else np.float32

        def impl(a, b, out):
            np.dot(a, b.view(real), out.view(real))

        return impl

    def impl_any(a, b, out):
        np.dot(a, b, out)

    return impl_any


@numba.njit(**_JIT)
def _woodbury_forward_panel(alpha, shift, b, c, U, V, pivmin, cap, X, gL, K):
    """One panel: ``X = A^{-1} U`` and ``K = V^T X``.

    alpha (N,), shift a scalar (A's diagonal is ``alpha - shift``), b, c (N-1,); U (N, h) this
    panel's columns of U; V (N, r) C-contiguous; X (N, h) C-contiguous, written; gL (N,)
    written with the pivot reciprocals; K (r, h) written.  Returns (guarded, singular) as
    :func:`_forward_sweep`.
    """
    n = alpha.shape[0]
    h = X.shape[1]
    r = V.shape[1]
    guarded, singular = _forward_sweep(alpha, shift, b, c, U, pivmin, cap, X, gL)  # X = L^{-1} U
    K[:] = 0
    part = np.empty_like(K)
    g = gL[n - 1]
    for j in range(h - 1, -1, -1):
        X[n - 1, j] = g * X[n - 1, j]
    hi = n
    while hi > 0:
        lo = max(hi - _WOODBURY_BLOCK, 0)
        for i in range(min(hi, n - 1) - 1, lo - 1, -1):
            g = gL[i]
            bi = b[i]
            for j in range(h - 1, -1, -1):
                X[i, j] = g * (X[i, j] - _times(bi, X[i + 1, j]))
        if r > _WOODBURY_INLINE_RANK:  # the block the back sweep just wrote, still in cache
            _dot_into(V[lo:hi].T, X[lo:hi], part)
            K += part
        hi = lo
    if r <= _WOODBURY_INLINE_RANK:  # small r: one product over the whole panel (cheaper than
        _dot_into(V.T, X, part)      # a scalar sum per row in the loop)
        K += part
    return guarded, singular


@numba.njit(**_JIT)
def _panel_task(task, nsplit, r):
    """``(k, t, j0, j1)`` of a prange task over B x nsplit: batch row k, panel t of columns
    ``j0:j1``, ``j_t = r t // nsplit``."""
    t = task % nsplit
    return task // nsplit, t, (r * t) // nsplit, (r * (t + 1)) // nsplit


@numba.njit(**_JIT)
def _panel(flat, n, j0, j1):
    """Columns j0:j1 of an (n, r) matrix stored as column panels in ``flat`` (n r,): an
    (n, j1 - j0) C-contiguous view."""
    return flat[n * j0:n * j1].reshape((n, j1 - j0))


@jit(parallel=True, **_JIT)
def _woodbury_forward_batch(alpha, shift, b, c, U, V, pivmin, cap, X, gL, K, guarded, singular):
    """B x nsplit tasks (row k, panel t): X[k]'s panel t, gL[k, t], K[k, t][:, panel t].
    X (B, N r) flat; V (BV, N, r) with BV = 1 (shared) or B."""
    B, n = alpha.shape
    r = U.shape[2]
    nsplit = K.shape[1]
    for task in prange(B * nsplit):
        k, t, j0, j1 = _panel_task(task, nsplit, r)
        g, s = _woodbury_forward_panel(alpha[k], shift[k], b[k], c[k], U[k, :, j0:j1], V[k % V.shape[0]],
                                       pivmin[k], cap[k], _panel(X[k], n, j0, j1), gL[k, t],
                                       K[k, t, :, j0:j1])
        if t == 0:
            guarded[k] = g
            singular[k] = s


@numba.njit(**_JIT)
def _woodbury_correction_panel(gL, b, c, X, V, KT, P, out):
    """``out_i = sum_{j in panel} X_ij W_ij`` (see above) for one panel.

    gL (N,), b, c (N-1,); X (N, h) the panel from :func:`_woodbury_forward_panel`; V (N, r)
    C-contiguous; KT (r, h) C-contiguous, this panel's columns of K^{-T}; P (N, h) scratch;
    out (N,).
    """
    n = gL.shape[0]
    h = X.shape[1]
    r = V.shape[1]
    zero = np.zeros(1, X.dtype)[0]
    zero_b = np.zeros(1, b.dtype)[0]  # b, c may be real (a real T at a complex z)
    p = np.zeros(h, X.dtype)
    Z = np.empty((_WOODBURY_BLOCK, h), X.dtype)
    lo = 0
    while lo < n:  # ascending: P = D^{-1} M^{-T} (V K^{-T}), stored
        hi = min(lo + _WOODBURY_BLOCK, n)
        if r > _WOODBURY_INLINE_RANK:
            _dot_into(V[lo:hi], KT, Z[:hi - lo])
        else:
            for i in range(lo, hi):
                for j in range(h):
                    s = zero
                    for m in range(r):
                        s += _times(V[i, m], KT[m, j])
                    Z[i - lo, j] = s
        for i in range(lo, hi):
            g = gL[i]
            bi = zero_b
            if i > 0:
                bi = b[i - 1]
            for j in range(h):
                pj = g * (Z[i - lo, j] - _times(bi, p[j]))
                p[j] = pj
                P[i, j] = pj
        lo = hi
    w = np.zeros(h, X.dtype)
    for i in range(n - 1, -1, -1):  # descending: W = L^{-T} P and sum_j X_ij W_ij
        gc = zero
        if i < n - 1:
            gc = gL[i] * c[i]
        s = zero
        for j in range(h - 1, -1, -1):
            wj = P[i, j] - gc * w[j]
            w[j] = wj
            s += X[i, j] * wj
        out[i] = s


@jit(parallel=True, **_JIT)
def _woodbury_correction_batch(gL, b, c, X, V, KT, P, out):
    """B x nsplit tasks (row k, panel t) -> out[t, k] (N,); nsplit = out.shape[0]."""
    nsplit, B, n = out.shape
    r = V.shape[2]
    for task in prange(B * nsplit):
        k, t, j0, j1 = _panel_task(task, nsplit, r)
        KTt = np.ascontiguousarray(KT[k, :, j0:j1])
        _woodbury_correction_panel(gL[k], b[k], c[k], _panel(X[k], n, j0, j1), V[k % V.shape[0]], KTt,
                                   _panel(P[k], n, j0, j1), out[t, k])


# --------------------------------------------------------------------------------------------
# public compiled entry points on (B, N) arrays
# --------------------------------------------------------------------------------------------
def _prep(*arrays):
    """Rows for the kernels: contiguous along N; a batch axis of stride 0 (one off-diagonal
    shared by the batch, broadcast) is kept as a view instead of being copied B times."""
    out = []
    for a in arrays:
        a = np.asarray(a)
        if a.ndim and a.shape[-1] > 1 and a.strides[-1] != a.itemsize:
            a = np.ascontiguousarray(a)
        out.append(a)
    return out


def _pivmin(pivmin, dtype):
    return np.ascontiguousarray(pivmin, dtype=np.finfo(dtype).dtype)


def left_pivots(alpha, beta, pivmin):
    """LU pivot reciprocals ``gL`` (B, N) and guarded counts (B,); compiled."""
    alpha, beta = _prep(alpha, beta)
    gL = np.empty_like(alpha)
    guarded = np.zeros(alpha.shape[0], np.int64)
    singular = np.zeros(alpha.shape[0], np.bool_)
    _left_batch(alpha, beta, _pivmin(pivmin, alpha.dtype), gL, guarded, singular)
    return gL, guarded


def right_pivots(alpha, beta, pivmin):
    """UL pivot reciprocals ``gR`` (B, N) and guarded counts (B,); compiled."""
    alpha, beta = _prep(alpha, beta)
    gR = np.empty_like(alpha)
    guarded = np.zeros(alpha.shape[0], np.int64)
    _right_batch(alpha, beta, _pivmin(pivmin, alpha.dtype), gR, guarded)
    return gR, guarded


def resolvent_diagonal_kernel(alpha, beta, pivmin):
    """``diag(A^{-1})`` (B, N), guarded (B,), singular (B,); compiled, see the module docstring."""
    alpha = np.asarray(alpha)
    return resolvent_diagonal_shifted_kernel(alpha, np.zeros(alpha.shape[0], alpha.dtype), beta, pivmin)


def _row_pairs(B: int) -> int:
    """How many row pairs :func:`_resolvent_pivots_pairs` runs: pairs only while every thread still
    gets at least one (a pair costs a thread ~1.3 rows' time, so with fewer rows than two per
    thread, single rows on separate threads finish sooner)."""
    return B // 2 if B >= 2 * numba.get_num_threads() else 0


def _like_precision(x, dtype):
    """``x`` in ``dtype``'s precision, kept real if it is real (a real diagonal or off-diagonal
    product times a complex pivot costs two real multiplications, not four)."""
    target = dtype if np.iscomplexobj(x) else np.finfo(dtype).dtype
    return x if x.dtype == target else x.astype(target)


def resolvent_diagonal_shifted_kernel(diag, shift, beta, pivmin):
    """``diag(A^{-1})`` for ``A = tridiag(beta; diag - shift)`` without forming ``alpha``.

    ``diag``: (B, N) real or complex (a stride-0 batch axis is fine), ``shift``: (B,),
    ``beta``: (B, N-1) real or complex, ``pivmin``: (B,).  ``alpha_i = diag_i - shift`` is formed
    in registers, so the call reads ``diag`` and writes ``G`` and nothing else of size B x N.
    Returns ``(G, guarded, singular)`` as :func:`resolvent_diagonal_kernel`, with ``G`` in
    ``result_type(diag, shift, beta)``.
    """
    diag, beta = _prep(diag, beta)
    shift = np.asarray(shift)
    dtype = np.result_type(diag.dtype, shift.dtype, beta.dtype)
    diag, beta = _like_precision(diag, dtype), _like_precision(beta, dtype)
    shift = np.ascontiguousarray(shift, dtype=dtype)
    B, N = diag.shape
    G = np.empty((B, N), dtype)
    guarded = np.zeros(B, np.int64)
    singular = np.zeros(B, np.bool_)
    if B > 0 and N > 0:
        _resolvent_batch(diag, shift, beta, _pivmin(pivmin, dtype), G, guarded, singular)
    return G, guarded, singular


def resolvent_diagonal_selected_kernel(alpha, beta, pivmin, indices):
    """``G_ii`` at ``indices`` (K,) for every row -> (B, K); guarded; singular. Compiled.

    Work: the left sweep over ``[0, max(indices))``, the right sweep over
    ``(min(indices), N)``, the combine at the K positions only.  The sweeps stay O(N) unless
    the selected positions cluster at one end; the saving is the skipped combine (about a
    third of the fused kernel's work) plus the sweep tails.
    """
    alpha, beta = _prep(alpha, beta)
    idx = np.ascontiguousarray(indices, dtype=np.int64)
    B, N = alpha.shape
    out = np.empty((B, idx.shape[0]), alpha.dtype)
    gL = np.empty_like(alpha)
    guarded = np.zeros(B, np.int64)
    singular = np.zeros(B, np.bool_)
    if idx.shape[0] and B:
        _resolvent_selected_batch(alpha, beta, _pivmin(pivmin, alpha.dtype), idx, gL, out, guarded, singular)
    return out, guarded, singular


def resolvent_diagonal_with_pivots(alpha, beta, pivmin):
    """``(G, gL, gR, guarded, singular)``: the resolvent diagonal and the LU / UL pivot
    reciprocals it was combined from (what the O(N) backward needs), both sweeps in one
    compiled loop."""
    alpha = np.asarray(alpha)
    return resolvent_diagonal_shifted_with_pivots(alpha, np.zeros(alpha.shape[0], alpha.dtype), beta, pivmin)


def resolvent_diagonal_shifted_with_pivots(diag, shift, beta, pivmin):
    """:func:`resolvent_diagonal_with_pivots` for ``alpha = diag - shift`` without forming
    ``alpha`` (``diag`` (B, N) and ``beta`` (B, N-1) real or complex, a stride-0 batch axis
    kept; ``shift`` (B,)).  G, gL, gR come in ``result_type(diag, shift, beta)``."""
    diag, beta = _prep(diag, beta)
    shift = np.asarray(shift)
    dtype = np.result_type(diag.dtype, shift.dtype, beta.dtype)
    diag, beta = _like_precision(diag, dtype), _like_precision(beta, dtype)
    shift = np.ascontiguousarray(shift, dtype=dtype)
    B, N = diag.shape
    G, gL, gR = (np.empty((B, N), dtype) for _ in range(3))
    guarded = np.zeros(B, np.int64)
    singular = np.zeros(B, np.bool_)
    if B and N:
        pm = _pivmin(pivmin, dtype)
        npairs = _row_pairs(B)
        if npairs:
            _resolvent_pivots_pairs(diag, shift, beta, pm, G, gL, gR, guarded, singular, npairs)
        if 2 * npairs < B:
            _resolvent_pivots_batch(diag, shift, beta, pm, G, gL, gR, guarded, singular, 2 * npairs)
    return G, gL, gR, guarded, singular


def resolvent_diagonal_backward(gbar, G, gL, gR, beta, want_dbeta=True, conjugate=False, real_dalpha=False,
                                return_sum=False):
    """``(dL/dalpha (B, N), dL/dbeta (B, N-1))`` from ``gbar = dL/dG`` (holomorphic convention:
    no conjugation here) by the two affine scans of docs/mathematics.md; compiled, in place.
    ``beta`` may be real (a real ``T``; real products then).  ``want_dbeta=False``:
    ``dL/dbeta`` is not formed (None), e.g. when the off-diagonals need no gradient.
    ``conjugate=True``: PyTorch's convention instead, ``conj(K(conj(gbar)))`` for the
    holomorphic map ``K`` above, conjugating in registers.  ``real_dalpha=True``: ``dL/dalpha``
    comes back as its real part, a contiguous real (B, N) array (the gradient of a real
    diagonal; no strided copy of a complex result's ``.real`` later).  ``return_sum=True``:
    also ``sum_j dL/dalpha_j`` (B,), complex, summed in the kernel (``-`` that is the shift's
    gradient), as a third result."""
    gbar, G, gL, gR, beta = _prep(gbar, G, gL, gR, beta)
    if not np.iscomplexobj(G):
        conjugate = False
        real_dalpha = False
    B, N = G.shape
    dalpha = np.empty_like(G)  # the result, or the first scan's scratch with real_dalpha
    dreal = np.empty((B, N) if real_dalpha else (B, 1), G.real.dtype)
    dbeta = np.empty((B, max(N - 1, 0) if want_dbeta else 1), G.dtype)
    dsum = np.zeros(B, G.dtype)
    if B and N:
        _resolvent_backward_batch(gbar, G, gL, gR, beta, dalpha, dbeta, want_dbeta, bool(conjugate), dreal,
                                  bool(real_dalpha), dsum)
    out = (dreal if real_dalpha else dalpha, dbeta if want_dbeta else None)
    return out + (dsum,) if return_sum else out


def logdet_kernel(alpha, beta, pivmin):
    """``log det A`` (B,) complex, imaginary part in (-pi, pi]; guarded (zero); singular.
    Compiled: partial pivoting (:func:`_logdet_row`)."""
    alpha, beta = _prep(alpha, beta)
    B = alpha.shape[0]
    real = np.finfo(alpha.dtype).dtype
    logabs = np.zeros(B, real)
    phase = np.ones(B, alpha.dtype)
    guarded = np.zeros(B, np.int64)
    singular = np.zeros(B, np.bool_)
    _logdet_batch(alpha, beta, _pivmin(pivmin, alpha.dtype), logabs, phase, guarded, singular)
    return _logdet_from_phase(logabs, phase), guarded, singular


def _logdet_from_phase(logabs, phase):
    cdtype = np.result_type(logabs.dtype, np.complex64)
    return (logabs + 1j * np.angle(phase)).astype(cdtype)


def solve_kernel(alpha, b, c, f, pivmin):
    """Solution of ``A x = f``, f: (B, N, k) -> x (B, N, k); guarded; singular. Compiled.

    Gaussian elimination with partial pivoting, LAPACK's ``?gtsv`` (:func:`_solve_row`):
    backward stable, no pivot guarded (``guarded`` is zero); ``singular`` where some
    ``|Re U_ii| + |Im U_ii| < SINGULAR_FACTOR * pivmin``."""
    alpha, b, c, f = _prep(alpha, b, c, f)
    B, N = alpha.shape
    x = np.empty_like(f)
    rinv, u1, u2 = (np.empty_like(alpha) for _ in range(3))
    guarded = np.zeros(B, np.int64)
    singular = np.zeros(B, np.bool_)
    if B and N:
        _solve_batch(alpha, b, c, f, _pivmin(pivmin, alpha.dtype), x, rinv, u1, u2, guarded, singular)
    return x, guarded, singular


def _prep_rhs(f):
    """A (B, N, k) block whose (N, k) rows are C-contiguous (the kernels' inner loop runs
    along k); a stride-0 batch axis (U shared by the batch) stays a view."""
    f = np.asarray(f)
    n, k = f.shape[-2:]
    isz = f.itemsize
    if (k > 1 and f.strides[-1] != isz) or (n > 1 and f.strides[-2] != k * isz):
        f = np.ascontiguousarray(f)
    return f


class WoodburySweeps:
    """What :func:`woodbury_forward_kernel` leaves for :func:`woodbury_correction_kernel`.

    ``KmI`` (B, r, r) ``= K - I = V^T A^{-1} U``; ``guarded`` (B,) int, ``singular`` (B,) bool
    with :func:`solve_kernel`'s meaning; ``gL`` (B, N) the LU pivot reciprocals of A (shared by
    ``A^T``).  ``X`` (B, N r) holds ``A^{-1} U`` in ``nsplit`` column panels (panel t: columns
    ``j0:j1``, ``j_t = r t // nsplit``, stored C-contiguous as (N, j1 - j0) at offset ``N j0``);
    :meth:`dense_X` returns it as (B, N, r).  ``P`` (B, N r) and ``parts`` (nsplit, B, N) are
    the correction's scratch, ``b``, ``c``, ``V`` the inputs it reads again; ``buffer`` is the
    1-D byte array that X, P, the pivots and ``parts`` are views into.
    """

    __slots__ = ("X", "P", "KmI", "gL", "parts", "guarded", "singular", "nsplit", "b", "c", "V",
                 "buffer")

    def __init__(self, X, P, KmI, gL, parts, guarded, singular, nsplit, b, c, V, buffer):
        self.X, self.P, self.KmI, self.gL, self.parts = X, P, KmI, gL, parts
        self.guarded, self.singular, self.nsplit = guarded, singular, nsplit
        self.b, self.c, self.V, self.buffer = b, c, V, buffer

    @property
    def rank(self) -> int:
        return self.KmI.shape[-1]

    def dense_X(self):
        """``A^{-1} U`` as a (B, N, r) array (a copy)."""
        B, N = self.gL.shape
        r = self.rank
        out = np.empty((B, N, r), self.X.dtype)
        for t in range(self.nsplit):
            j0, j1 = (r * t) // self.nsplit, (r * (t + 1)) // self.nsplit
            out[:, :, j0:j1] = self.X[:, N * j0:N * j1].reshape(B, N, j1 - j0)
        return out


def _gemm_operand(V, dtype):
    """V as the block products read it: (BV, N, r) C-contiguous with BV = 1 where the batch
    is a broadcast of one (N, r) block (no copy per batch row), else B; of ``dtype`` if V is
    complex, of its real dtype if V is real (a real V stays real: see ``_dot_into``)."""
    V = np.asarray(V)
    want = np.dtype(dtype) if np.iscomplexobj(V) else np.finfo(dtype).dtype
    if V.shape[0] > 1 and V.strides[0] == 0:
        V = V[:1]
    return np.ascontiguousarray(V, dtype=want)


def _woodbury_split(B: int, r: int) -> int:
    """Column panels per batch row: enough tasks for every numba thread, at most r."""
    return max(1, min(r, numba.get_num_threads() // max(B, 1)))


def _woodbury_views(B, N, r, nsplit, dtype, buffer):
    """``(buffer, X, P, gL, parts)``: X, P (B, N r), gL (B, nsplit, N), parts (nsplit, B, N)
    of ``dtype``, views into ``buffer`` (1-D uint8), or into a new one where it is None or too
    small."""
    dtype = np.dtype(dtype)
    sizes = (B * N * r, B * N * r, B * nsplit * N, nsplit * B * N)
    need = sum(sizes) * dtype.itemsize
    if buffer is None or buffer.nbytes < need:
        buffer = np.empty(need, np.uint8)
    flat = buffer[:need].view(dtype)
    views, start = [], 0
    for size in sizes:
        views.append(flat[start:start + size])
        start += size
    X, P, gL, parts = views
    return (buffer, X.reshape(B, N * r), P.reshape(B, N * r), gL.reshape(B, nsplit, N),
            parts.reshape(nsplit, B, N))


def woodbury_forward_kernel(alpha, b, c, U, V, pivmin, shift=None, buffer=None):
    """The first half of the fused Woodbury resolvent diagonal; compiled.

    ``A = tridiag(c, alpha - shift, b) = L D M`` (comment above ``_woodbury_forward_panel``).
    alpha (B, N); ``shift`` (B,) or None (zero); b, c (B, N-1) upper and lower; U, V (B, N, r).
    The working dtype is ``result_type(alpha, shift)``; alpha, b, c and U may be of it or of a
    real dtype that promotes to it (read as they are -- so a real T at a complex z passes its
    own diagonal, off-diagonals and z, and no complex copy is made); V likewise, a real V
    entering the products as real.

    Returns a :class:`WoodburySweeps`: ``X = A^{-1} U`` (column panels), ``K - I = V^T X``
    (B, r, r), the pivots, ``guarded`` and ``singular``.  The r columns are split over the
    threads (batch 1 uses every thread).  ``buffer``: a 1-D uint8 array to hold X, P and the
    pivots (a new one is allocated where it is None or too small; the one used is
    ``sweeps.buffer``): fresh allocations of that size cost page faults on every call.
    """
    alpha, b, c = _prep(alpha, b, c)
    U = _prep_rhs(U)
    B, N = alpha.shape
    r = U.shape[-1]
    dtype = alpha.dtype if shift is None else np.result_type(alpha, shift)
    V = _gemm_operand(V, dtype)
    shift = np.zeros(B, dtype) if shift is None else np.ascontiguousarray(np.broadcast_to(shift, (B,)), dtype)
    nsplit = _woodbury_split(B, r)
    buffer, X, P, gL, parts = _woodbury_views(B, N, r, nsplit, dtype, buffer)
    K = np.zeros((B, nsplit, r, r), dtype)
    guarded = np.zeros(B, np.int64)
    singular = np.zeros(B, np.bool_)
    if B and N and r:
        hold = r > _WOODBURY_INLINE_RANK and _concurrent_tasks(B * nsplit, B * N * r * r)
        with single_threaded_blas(hold):
            pm = _pivmin(pivmin, dtype)
            cap = pm * (_WOODBURY_GROWTH / np.finfo(dtype).eps)
            _woodbury_forward_batch(alpha, shift, b, c, U, V, pm, cap, X, gL, K, guarded, singular)
    return WoodburySweeps(X, P, K.sum(axis=1), gL[:, 0], parts, guarded, singular, nsplit, b, c, V, buffer)


class _Scratch(threading.local):
    """One scratch buffer per thread, kept between calls of the fused Woodbury kernels.

    ``X``, ``P``, the pivots and the correction's partial sums (2 B N r + 2 B nsplit N
    elements) are rewritten on every call; fresh allocations of that size come from the OS
    zero-filled, and their page faults cost a multiple of the forward sweep itself.  The buffer
    is taken out while in use
    (a nested or failed call just allocates its own) and put back by the correction kernel.
    At most one buffer of at most ``_SCRATCH_MAX`` bytes is kept per thread;
    :func:`release_scratch` frees it.
    """

    buf: np.ndarray | None = None


_scratch = _Scratch()
_SCRATCH_MAX = 1 << 28  # 256 MiB


def release_scratch() -> None:
    """Free this thread's scratch buffer of the fused Woodbury kernels (see ``_Scratch``)."""
    _scratch.buf = None


def _take_scratch():
    """This thread's scratch buffer, taken out (None if there is none or it is in use)."""
    buf, _scratch.buf = _scratch.buf, None
    return buf


def _give_back_scratch(buf):
    """Keep ``buf`` (1-D uint8) as this thread's scratch buffer for the next call, unless it
    is over ``_SCRATCH_MAX`` or smaller than the one kept."""
    if buf.nbytes <= _SCRATCH_MAX and (_scratch.buf is None or _scratch.buf.nbytes <= buf.nbytes):
        _scratch.buf = buf


_BLAS_HOLD_WORK = 1 << 20  # B N r^2 below which the kernels' BLAS calls are too small to thread


def _concurrent_tasks(tasks: int, work: int) -> bool:
    """Whether a prange over ``tasks`` runs BLAS calls on several numba threads at once, with
    enough work (``B N r^2`` multiply-adds) for BLAS to start its own threads: then BLAS is held
    at one thread (:mod:`semisep.backends._blas`).  Below ``_BLAS_HOLD_WORK`` the hold is
    skipped: setting and restoring the thread count is then a noticeable share of the call,
    whose products OpenBLAS runs on one thread anyway."""
    return tasks > 1 and work >= _BLAS_HOLD_WORK and numba.get_num_threads() > 1


def woodbury_correction_kernel(sweeps, Kinv, subtract_from=None):
    """``sum_k X_ik W_ik`` (B, N): ``X = A^{-1} U``, ``W = A^{-T} V K^{-T}``; compiled.

    ``sweeps`` from :func:`woodbury_forward_kernel`, ``Kinv = K^{-1}`` (B, r, r).  One task per
    (batch row, column panel), the panels' partial sums added.  ``subtract_from`` (B, N) of the
    working dtype: the sum is subtracted from it in place and it is returned (``G - sum`` with
    no new (B, N) array); otherwise a new array.  May be called more than once on the same
    sweeps (it writes only their scratch).
    """
    s = sweeps
    B, N = s.gL.shape
    r = s.rank
    KT = np.ascontiguousarray(np.swapaxes(np.asarray(Kinv, dtype=s.X.dtype), -1, -2))
    parts = s.parts
    if B and N and r:
        hold = r > _WOODBURY_INLINE_RANK and _concurrent_tasks(B * s.nsplit, B * N * r * r)
        with single_threaded_blas(hold):
            _woodbury_correction_batch(s.gL, s.b, s.c, s.X, s.V, KT, s.P, parts)
    else:
        parts[...] = 0
    # the partial sums added in place (no temporary from parts.sum(axis=0))
    if subtract_from is None:
        out = parts[0].copy()
        for t in range(1, s.nsplit):
            out += parts[t]
        return out
    if subtract_from.shape != (B, N) or subtract_from.dtype != s.X.dtype:
        raise ValueError(f"subtract_from must be a ({B}, {N}) array of {s.X.dtype}")
    for t in range(s.nsplit):
        subtract_from -= parts[t]
    return subtract_from


# --------------------------------------------------------------------------------------------
# plain NumPy twins (loop over N, vectorised over the batch)
# --------------------------------------------------------------------------------------------
def _guard_ref(d, pivmin):
    a = np.abs(d)
    small = a < pivmin
    if not small.any():
        return d, small
    unit = np.where(a == 0, 1.0, d / np.where(a == 0, 1.0, a))
    if not np.iscomplexobj(d):
        unit = np.where(a == 0, 1.0, np.sign(d))
    return np.where(small, pivmin * unit, d).astype(d.dtype), small


def left_pivots_ref(alpha, beta, pivmin):
    B, N = alpha.shape
    gL = np.empty_like(alpha)
    guarded = np.zeros(B, np.int64)
    singular = np.zeros(B, bool)
    gl = None
    for i in range(N):
        d = alpha[:, i] if i == 0 else alpha[:, i] - beta[:, i - 1] * gl
        if i == N - 1:
            singular |= np.abs(d) < SINGULAR_FACTOR * pivmin
        d, small = _guard_ref(d, pivmin)
        guarded += small
        if i < N - 1:
            singular |= small & (np.abs(beta[:, i]) <= pivmin * pivmin)
        gl = 1.0 / d
        gL[:, i] = gl
    return gL, guarded, singular


def right_pivots_ref(alpha, beta, pivmin):
    B, N = alpha.shape
    gR = np.empty_like(alpha)
    guarded = np.zeros(B, np.int64)
    gr = None
    for i in range(N - 1, -1, -1):
        d = alpha[:, i] if i == N - 1 else alpha[:, i] - beta[:, i] * gr
        d, small = _guard_ref(d, pivmin)
        guarded += small
        gr = 1.0 / d
        gR[:, i] = gr
    return gR, guarded


def resolvent_diagonal_ref(alpha, beta, pivmin):
    gL, gl_guarded, _ = left_pivots_ref(alpha, beta, pivmin)
    gR, gr_guarded = right_pivots_ref(alpha, beta, pivmin)
    gam = alpha.copy()
    gam[:, 1:] -= beta * gL[:, :-1]
    gam[:, :-1] -= beta * gR[:, 1:]
    singular = (np.abs(gam) < SINGULAR_FACTOR * pivmin[:, None]).any(axis=1)
    return 1.0 / gam, gl_guarded + gr_guarded, singular


def logdet_ref(alpha, beta, pivmin):
    """Twin of :func:`logdet_kernel`: the pivoted elimination of :func:`solve_ref` (no
    right-hand side) on the balanced similar matrix (lower ``m = sqrt(|beta|)``, upper
    ``beta / m``, as the kernel), ``log det = sum log U_ii + i pi (exchanges)``."""
    B, N = alpha.shape
    m = np.sqrt(_cabs1_ref(beta))
    safe = np.where(m == 0, 1.0, m)
    b = (beta / safe).astype(alpha.dtype)
    c = m.astype(alpha.dtype)
    u, swaps = _gtsv_factor_ref(alpha, b, c)
    singular = (_cabs1_ref(u) < SINGULAR_FACTOR * np.asarray(pivmin)[:, None]).any(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        logabs = np.log(np.abs(u)).sum(axis=1)
        phase = np.ones(B, alpha.dtype)  # real stays real (a signed zero would flip the angle)
        for i in range(N):  # unit numbers multiplied as the kernel's running product
            phase = phase * (u[:, i] / np.abs(u[:, i]))
            phase = phase / np.abs(phase)
    phase = np.where(swaps % 2 == 1, -phase, phase)
    return _logdet_from_phase(logabs, phase), np.zeros(B, np.int64), singular


def _gtsv_factor_ref(alpha, b, c):
    """U's diagonal (B, N) and the number of row exchanges (B,) of the pivoted elimination
    (:func:`solve_ref`'s, without the right-hand side)."""
    B, N = alpha.shape
    u = np.zeros((B, N), alpha.dtype)
    swaps = np.zeros(B, np.int64)
    di = alpha[:, 0].copy()
    dui = b[:, 0] if N > 1 else np.zeros(B, alpha.dtype)
    for i in range(N - 1):
        dl, dn = c[:, i], alpha[:, i + 1]
        dun = b[:, i + 1] if i < N - 2 else np.zeros(B, alpha.dtype)
        swap = _cabs1_ref(di) < _cabs1_ref(dl)
        piv = np.where(swap, dl, di)
        other = np.where(swap, di, dl)
        with np.errstate(divide="ignore", invalid="ignore"):
            fact = np.where(other == 0, 0, other / np.where(piv == 0, 1, piv))
        u[:, i] = piv
        di, dui = np.where(swap, dui - fact * dn, dn - fact * dui), np.where(swap, -fact * dun, dun)
        swaps += swap
    u[:, N - 1] = di
    return u, swaps


def _cabs1_ref(x):
    return np.abs(x.real) + np.abs(x.imag) if np.iscomplexobj(x) else np.abs(x)


def solve_ref(alpha, b, c, f, pivmin):
    """Twin of :func:`solve_kernel`: Gaussian elimination with partial pivoting (LAPACK
    ``?gtsv``), written as a loop over N vectorised over the batch, the row exchanges as
    ``np.where``; U's diagonal and two superdiagonals stored, then back substitution."""
    B, N = alpha.shape
    dt = np.result_type(alpha, b, c, f)
    x = np.array(f, dtype=dt, copy=True)
    u = np.zeros((B, N), dt)
    u1 = np.zeros((B, N), dt)
    u2 = np.zeros((B, N), dt)
    q = SINGULAR_FACTOR * np.asarray(pivmin)
    di = alpha[:, 0].astype(dt)
    dui = b[:, 0].astype(dt) if N > 1 else np.zeros(B, dt)
    for i in range(N - 1):
        dl = c[:, i].astype(dt)
        dn = alpha[:, i + 1].astype(dt)
        dun = b[:, i + 1].astype(dt) if i < N - 2 else np.zeros(B, dt)
        swap = _cabs1_ref(di) < _cabs1_ref(dl)
        piv = np.where(swap, dl, di)
        other = np.where(swap, di, dl)
        with np.errstate(divide="ignore", invalid="ignore"):
            fact = np.where(other == 0, 0, other / np.where(piv == 0, 1, piv))
        u[:, i] = piv
        u1[:, i] = np.where(swap, dn, dui)
        u2[:, i] = np.where(swap, dun, 0)
        new_d = np.where(swap, dui - fact * dn, dn - fact * dui)
        new_du = np.where(swap, -fact * dun, dun)
        xi, xn = x[:, i].copy(), x[:, i + 1].copy()
        sw = swap[:, None]
        x[:, i] = np.where(sw, xn, xi)
        x[:, i + 1] = np.where(sw, xi - fact[:, None] * xn, xn - fact[:, None] * xi)
        di, dui = new_d, new_du
    u[:, N - 1] = di
    singular = (_cabs1_ref(u) < q[:, None]).any(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(N - 1, -1, -1):
            t = x[:, i]
            if i + 1 < N:
                t = t - u1[:, i][:, None] * x[:, i + 1]
            if i + 2 < N:
                t = t - u2[:, i][:, None] * x[:, i + 2]
            x[:, i] = t / u[:, i][:, None]
    return x, np.zeros(B, np.int64), singular


def woodbury_forward_ref(alpha, b, c, U, V, pivmin, shift=None):
    """Twin of :func:`woodbury_forward_kernel` (pivots from :func:`left_pivots_ref`):
    ``(X, K - I, gL, guarded, singular)`` with ``X = A^{-1} U`` as a (B, N, r) array."""
    if shift is not None:
        alpha = alpha - np.asarray(shift)[:, None]
    b, c = np.asarray(b, alpha.dtype), np.asarray(c, alpha.dtype)
    B, N = alpha.shape
    gL, guarded, singular = left_pivots_ref(alpha, b * c, pivmin)
    if N > 1:  # element growth counts with the guarded pivots (see _forward_sweep)
        cap = np.asarray(pivmin) * (_WOODBURY_GROWTH / np.finfo(alpha.dtype).eps)
        guarded = guarded + (_cabs1_ref((c * gL[:, :-1]) * b) > cap[:, None]).sum(axis=1)
    X = np.array(np.broadcast_to(U, (B,) + U.shape[-2:]), dtype=alpha.dtype)
    for i in range(1, N):
        X[:, i] -= (c[:, i - 1] * gL[:, i - 1])[:, None] * X[:, i - 1]
    X[:, N - 1] *= gL[:, N - 1][:, None]
    for i in range(N - 2, -1, -1):
        X[:, i] = gL[:, i][:, None] * (X[:, i] - b[:, i][:, None] * X[:, i + 1])
    KmI = np.swapaxes(np.broadcast_to(V, (B,) + V.shape[-2:]), -1, -2) @ X
    return X, KmI.astype(alpha.dtype), gL, guarded, singular


def woodbury_correction_ref(gL, b, c, X, V, Kinv):
    """Twin of :func:`woodbury_correction_kernel`: ``W = A^{-T} V K^{-T}`` stored, then
    ``sum_k X_ik W_ik``."""
    N = gL.shape[1]
    b, c = np.asarray(b, gL.dtype), np.asarray(c, gL.dtype)
    P = np.array(np.broadcast_to(V, X.shape) @ np.swapaxes(Kinv, -1, -2), dtype=gL.dtype)
    P[:, 0] *= gL[:, 0][:, None]
    for i in range(1, N):
        P[:, i] = gL[:, i][:, None] * (P[:, i] - b[:, i - 1][:, None] * P[:, i - 1])
    for i in range(N - 2, -1, -1):
        P[:, i] -= (gL[:, i] * c[:, i])[:, None] * P[:, i + 1]
    return (X * P).sum(axis=-1)


# --------------------------------------------------------------------------------------------
# the backend object
# --------------------------------------------------------------------------------------------
def _abs2(x):
    return x.real * x.real + x.imag * x.imag if np.iscomplexobj(x) else x * x


def _singular_at(G, pivmin):
    """The certificate at the gathered positions: some ``|1/G_ii| < SINGULAR_FACTOR pivmin``,
    NaN counting as singular (a zero pivot's ``1/G`` is NaN for complex G); compared without
    squares, which could underflow."""
    with np.errstate(divide="ignore", invalid="ignore"):
        gam = 1.0 / G
    return ~(np.abs(gam) >= SINGULAR_FACTOR * np.asarray(pivmin)[:, None]).all(axis=1)


def _selection_pays(n: int, indices) -> bool:
    """Whether the truncating selected-entry kernel can beat the fused full kernel + gather.

    Measured (benchmarks/bench_sparse.py): with scattered indices the selected kernel costs
    about 1.4x the fused kernel once most positions are kept (it stores gL and visits the
    positions in sorted order), so it is used only when few positions are asked for
    (K <= N/4) or when they cluster so that the two truncated sweeps cover less than N.
    """
    k = len(indices)
    if k == 0:
        return True
    lo, hi = int(np.min(indices)), int(np.max(indices))
    return 4 * k <= n or hi + (n - lo) < n


class NumpyBackend(Backend):
    """CPU backend on NumPy arrays.

    ``method``: ``"sequential"`` (compiled numba sweeps, parallel over the batch) or
    ``"reference"`` (the plain NumPy twins, for tests).  ``"auto"`` is ``"sequential"``.
    """

    name = "numpy"
    methods = ("sequential", "reference")
    linalg = _linalg_ns

    def is_array(self, x: Any) -> bool:
        return isinstance(x, np.ndarray)

    def asarray(self, x: Any, like: Any = None) -> Any:
        return np.asarray(x)

    def result_dtype(self, *xs: Any) -> Any:
        dt = np.result_type(*xs)
        if not np.issubdtype(dt, np.inexact):
            dt = np.result_type(dt, np.float64)
        if dt == np.float16 or dt.itemsize > 16:
            raise TypeError(f"dtype {dt} is not supported; use float32/float64/complex64/complex128")
        return dt

    def astype(self, x: Any, dtype: Any) -> Any:
        return np.asarray(x).astype(dtype, copy=False)

    def zeros(self, shape, dtype, like=None):
        return np.zeros(shape, dtype=dtype)

    def concat(self, xs, axis):
        return np.concatenate(xs, axis=axis)

    def broadcast_to(self, x, shape):
        return np.broadcast_to(x, shape)

    def is_complex(self, dtype) -> bool:
        return np.issubdtype(dtype, np.complexfloating)

    def eps(self, dtype) -> float:
        return float(np.finfo(dtype).eps)

    def all_finite(self, x) -> bool:
        return bool(np.isfinite(x).all())

    def amax_abs(self, x, axis):
        """``max(max|Re x|, max|Im x|)`` along ``axis``: within a factor sqrt(2) below
        ``max|x|`` and free of hypot; the contract asks only for such a scale (pivmin)."""
        if x.shape[axis] == 0:
            shape = list(x.shape)
            del shape[axis]
            return np.zeros(shape, np.finfo(x.dtype).dtype)
        parts = (x.real, x.imag) if np.iscomplexobj(x) else (x,)
        # max|v| = max(max v, -min v): two reductions, no temporary |v| array
        return np.maximum.reduce([np.maximum(v.max(axis=axis), -v.min(axis=axis)) for v in parts])

    def min_max(self, x):
        return x.min(axis=-1), x.max(axis=-1)  # NumPy's SIMD reductions, no temporary

    def maximum(self, a, b):
        return np.maximum(a, b)

    def to_numpy(self, x):
        return np.asarray(x)

    def resolvent_diagonal(self, alpha, beta, pivmin, method="auto"):
        method = self.check_method(method)
        if method == "reference":
            return resolvent_diagonal_ref(alpha, beta, pivmin)
        return resolvent_diagonal_kernel(alpha, beta, pivmin)

    takes_shift = True

    def resolvent_diagonal_shifted(self, diag, shift, beta, pivmin, method="auto"):
        method = self.check_method(method)
        if method == "reference":
            return Backend.resolvent_diagonal_shifted(self, diag, shift, beta, pivmin, method)
        return resolvent_diagonal_shifted_kernel(diag, shift, beta, pivmin)

    def resolvent_diagonal_selected(self, alpha, beta, pivmin, indices, method="auto"):
        method = self.check_method(method)
        if method == "reference":
            G, guarded, _ = resolvent_diagonal_ref(alpha, beta, pivmin)
            G = G[:, indices]
            return G, guarded, _singular_at(G, pivmin)
        if not _selection_pays(alpha.shape[1], indices):
            G, guarded, singular = resolvent_diagonal_kernel(alpha, beta, pivmin)
            G = G[:, indices]
            return G, guarded, _singular_at(G, pivmin)
        return resolvent_diagonal_selected_kernel(alpha, beta, pivmin, indices)

    def logdet(self, alpha, beta, pivmin, method="auto"):
        method = self.check_method(method)
        if method == "reference":
            return logdet_ref(alpha, beta, pivmin)
        return logdet_kernel(alpha, beta, pivmin)

    def solve(self, alpha, b, c, f, pivmin, method="auto"):
        method = self.check_method(method)
        if method == "reference":
            return solve_ref(alpha, b, c, f, pivmin)
        return solve_kernel(alpha, b, c, f, pivmin)

    fused_woodbury = True

    def woodbury_forward(self, alpha, b, c, U, V, pivmin, shift=None):
        """:func:`woodbury_forward_kernel` writing X and P into this thread's scratch buffer:
        they stay valid until the sweeps are passed to :meth:`woodbury_correction` or
        :meth:`woodbury_release`, which recycle it."""
        return woodbury_forward_kernel(alpha, b, c, U, V, pivmin, shift=shift, buffer=_take_scratch())

    def woodbury_correction(self, sweeps, Kinv, subtract_from=None):
        corr = woodbury_correction_kernel(sweeps, Kinv, subtract_from)
        _give_back_scratch(sweeps.buffer)
        return corr

    def woodbury_release(self, sweeps):
        """Keep the sweeps' scratch buffer for the next call."""
        _give_back_scratch(sweeps.buffer)


key_caches_on_constants(globals(), _KERNEL_CONSTANTS)
