"""Compiled LU / UL pivot sweeps on ``(B, N)`` arrays: pivots, the resolvent diagonal (full,
shifted, at selected positions, with the pivots kept) and its reverse mode.

The sweeps are the recursions of docs/mathematics.md for ``A = T - z I``::

    gL_0 = 1/alpha_0,          gL_i = 1/(alpha_i - beta_{i-1} gL_{i-1})
    gR_{N-1} = 1/alpha_{N-1},  gR_i = 1/(alpha_i - beta_i gR_{i+1})
    G_ii = 1/(alpha_i - beta_{i-1} gL_{i-1} - beta_i gR_{i+1})

Kernels run over the batch with ``prange``.  Each sweep is latency-bound (every step waits for
the previous reciprocal), so the resolvent diagonal runs the left and the right sweep of a row
interleaved on one thread, meeting in the middle (:func:`_resolvent_row_twosided`): two
independent recursions in flight cost little more than one.  Its shift form takes ``diag`` and
``z`` apart and forms ``alpha`` in registers, so the only ``B x N`` array it writes is the
result.  Complex reciprocals use ``conj(x) / |x|^2`` with one real division (``|x|^2`` also
serves the pivot guard), falling back to ``1/x`` where ``|x|^2`` would overflow or underflow.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .. import SINGULAR_FACTOR
from .._numba import jit, key_caches_on_constants
from .scalars import (
    _JIT,
    _KERNEL_CONSTANTS,
    _checked_recip,
    _combine_step,
    _conj_if,
    _guard,
    _pivot_step,
    _recip,
    _shifted,
    _small,
    _times,
)


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


@numba.njit(**_JIT)
def _combine_row(diag, shift, beta, pivmin, G, gL, gR):
    """``G_ii = 1/(alpha_i - beta_{i-1} gL_{i-1} - beta_i gR_{i+1})`` into G from stored
    pivots; returns singular (some ``|1/G_ii| < SINGULAR_FACTOR * pivmin``).

    The two corrections are subtracted in the order :func:`_resolvent_row_twosided` uses
    (the left one first for ``i >= N // 2``, the right one first below), so that the kernels
    with and without stored pivots return the same ``G`` bit for bit."""
    n = diag.shape[0]
    singular = False
    q = SINGULAR_FACTOR * pivmin
    h = n // 2
    zg = diag[0] * 0 + shift * 0
    zb = beta.dtype.type(0)
    for i in range(n):
        bl = beta[i - 1] if i > 0 else zb
        gl = gL[i - 1] if i > 0 else zg
        br = beta[i] if i < n - 1 else zb
        gr = gR[i + 1] if i < n - 1 else zg
        if i >= h:
            gam = (_shifted(diag[i], shift) - _times(bl, gl)) - _times(br, gr)
        else:
            gam = (_shifted(diag[i], shift) - _times(br, gr)) - _times(bl, gl)
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
    """``G_ii`` of one row with ``alpha_i = diag_i - shift``; returns (guarded, singular):
    :func:`resolvent_row_carried` with nothing entering at the chain's ends."""
    zg = diag[0] * 0 + shift * 0  # a zero typed like alpha
    zb = beta.dtype.type(0)
    guarded, singular, _, _ = resolvent_row_carried(diag, shift, zb, beta, zb, zg, zg, pivmin, G)
    return guarded, singular


@numba.njit(**_JIT)
def resolvent_row_carried(diag, shift, b_in, beta, b_out, gLc, gRc, pivmin, G):
    """``G_ii`` of one row with ``alpha_i = diag_i - shift`` and carries entering at its ends:
    returns (guarded, singular, gL_last, gR_first).

    The row is a whole chain (``b_in = b_out = 0``, ``gLc = gRc = 0``: :func:`_resolvent_row_twosided`)
    or a chunk of one (the Dask backend's resolvent pass): the left sweep starts from the carry
    ``gLc = gL_{s-1}`` through the coupling ``b_in = beta_{s-1}``, the right one from
    ``gRc = gR_{e+1}`` through ``b_out = beta_e``, and the end elements combine with them.
    The LU sweep (from the left) and the UL sweep (from the right) are independent
    recursions, each latency-bound on its reciprocal; they run interleaved so that the CPU
    overlaps them.  Phase 1 (:func:`_pivot_step`): both sweeps up to the middle,
    ``G[:h] = gL``, ``G[h:] = gR`` (``h = N // 2``).  Phase 2 (:func:`_combine_step`): the
    left sweep continues over ``[h, N)`` combining as it goes (``gR_{i+1}`` is still in
    ``G[i+1]``), the right sweep over ``[0, h)`` likewise with ``gL_{j-1}`` in ``G[j-1]``.
    Every pivot of both sweeps is formed and guard-counted, as in the reference; each element
    costs three reciprocals, one row reads ``diag`` twice and ``G`` once and writes ``G``
    twice.  The steps take scalars (the coupling and carry at the ends).  The last two
    results are the ratios leaving the row: ``gL`` at its last element, ``gR`` at its first.
    """
    n = diag.shape[0]
    q = SINGULAR_FACTOR * pivmin
    h = n // 2
    guarded = 0
    singular = False
    gl = gLc
    gr = gRc
    for k in range(h):
        j = n - 1 - k
        gl, g1 = _pivot_step(diag[k], shift, beta[k - 1] if k > 0 else b_in, gl, pivmin)
        gr, g2 = _pivot_step(diag[j], shift, beta[j] if j < n - 1 else b_out, gr, pivmin)
        guarded += g1 + g2
        G[k] = gl
        G[j] = gr
    if n - h > h:  # odd N: the middle position is one more right-sweep step
        gr, g2 = _pivot_step(diag[h], shift, beta[h] if h < n - 1 else b_out, gr, pivmin)
        guarded += g2
        G[h] = gr
    for k in range(h):  # i = h .. N-1 (left sweep), j = h-1 .. 0 (right sweep)
        i = h + k
        j = h - 1 - k
        more = i < n - 1
        x, gl, g1, s1 = _combine_step(diag[i], shift, beta[i - 1], gl, beta[i] if more else b_out,
                                      G[i + 1] if more else gRc, pivmin, q)
        y, gr, g2, s2 = _combine_step(diag[j], shift, beta[j], gr, beta[j - 1] if j > 0 else b_in,
                                      G[j - 1] if j > 0 else gLc, pivmin, q)
        G[i] = x
        G[j] = y
        guarded += g1 + g2
        singular |= s1 | s2
    if n - h > h:  # odd N: the last position, gamma_{N-1} = t_{N-1}
        i = n - 1
        x, gl, g1, s1 = _combine_step(diag[i], shift, beta[i - 1] if i > 0 else b_in, gl, b_out, gRc,
                                      pivmin, q)
        G[i] = x
        guarded += g1
        singular |= s1
    return guarded, singular, gl, gr


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


def _shift_form_inputs(diag, shift, beta):
    """``(diag, shift, beta, dtype)`` ready for the shift-form kernels: ``dtype`` is
    ``result_type(diag, shift, beta)``, ``shift`` contiguous in it, ``diag`` and ``beta`` in its
    precision (kept real if real)."""
    diag, beta = _prep(diag, beta)
    shift = np.asarray(shift)
    dtype = np.result_type(diag.dtype, shift.dtype, beta.dtype)
    return (_like_precision(diag, dtype), np.ascontiguousarray(shift, dtype=dtype),
            _like_precision(beta, dtype), dtype)


def resolvent_diagonal_shifted_kernel(diag, shift, beta, pivmin):
    """``diag(A^{-1})`` for ``A = tridiag(beta; diag - shift)`` without forming ``alpha``.

    ``diag``: (B, N) real or complex (a stride-0 batch axis is fine), ``shift``: (B,),
    ``beta``: (B, N-1) real or complex, ``pivmin``: (B,).  ``alpha_i = diag_i - shift`` is formed
    in registers, so the call reads ``diag`` and writes ``G`` and nothing else of size B x N.
    Returns ``(G, guarded, singular)`` as :func:`resolvent_diagonal_kernel`, with ``G`` in
    ``result_type(diag, shift, beta)``.
    """
    diag, shift, beta, dtype = _shift_form_inputs(diag, shift, beta)
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
    diag, shift, beta, dtype = _shift_form_inputs(diag, shift, beta)
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



key_caches_on_constants(globals(), _KERNEL_CONSTANTS)
