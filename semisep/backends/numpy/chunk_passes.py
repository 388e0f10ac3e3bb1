"""Compiled per-chunk passes on a chunk's own blocks: the resolvent diagonal's first pass (both
transfer matrices in one loop), its second pass from carries (no folded copy), and the ratio
sweeps of the boundary repair in either direction or both at once (no reversed copy).

A chunk ``[s, e]`` of a chain ``A = T - z I`` is given as the blocks it already has::

    diag (B, C)      T's diagonal on the chunk (``alpha_i = diag_i - shift``), or A's itself
    shift (B,)       z per row (zero when ``diag`` is A's diagonal)
    b_in (B,)        beta_{s-1}, the coupling into the chunk (zero for the chain's first chunk)
    beta (B, C-1)    the chunk's internal couplings beta_s .. beta_{e-1} (rows may be strided)
    b_out (B,)       beta_e, the coupling out of the chunk (zero for the chain's last chunk)

so that a chain stored as ``diag (B, N)`` and ``beta (B, N-1)`` in aligned chunks needs no
re-layout: ``beta``'s chunk ``k`` is ``[beta_s .. beta_e]``, its view without the last column is
``beta`` here and its last column ``b_out``.  Mathematics as :mod:`.chunks`: the leading-minor
matrices ``S_i = [[alpha_i, -beta_{i-1}], [1, 0]]`` give ``ML = S_e ... S_s`` (left to right);
the trailing-minor matrices ``R_i = [[alpha_i, -beta_i], [1, 0]]`` give ``MR = R_s ... R_e``
(right to left, ``R_e`` applied first); both are accumulated in one left-to-right loop
(``ML <- S_i ML``, ``MR <- MR R_i``), so the chunk is read once.  The ratio recursions are
``gL_i = 1/guard(alpha_i - beta_{i-1} gL_{i-1})`` and ``gR_i = 1/guard(alpha_i - beta_i gR_{i+1})``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .. import SINGULAR_FACTOR  # noqa: F401 - frozen into the kernels calling the resolvent row kernel
from .._numba import key_caches_on_constants
from .chunks import _BIG  # the accumulated matrices are rescaled outside [1/BIG, BIG]
from .chunks import _maxabs as _mx
from .scalars import _JIT, _guarded_recip, _shifted, _times
from .sweeps import resolvent_row_carried  # the whole-chain kernel, carries entering
from .twins import resolvent_diagonal_ref

__all__ = [
    "transfer_pair",
    "resolvent_chunk",
    "pivot_sweep",
    "pivot_sweep_pair",
    "repair_sweep",
    "transfer_pair_ref",
    "resolvent_chunk_ref",
    "pivot_sweep_ref",
    "repair_sweep_ref",
]

@numba.njit(**_JIT)
def _scale_of(m):
    """The power of two that brings ``m > 0`` (finite) to [1, 2); 1 otherwise."""
    if m > 0.0 and m < np.inf:
        _, e = math.frexp(m)
        return math.ldexp(1.0, 1 - e)
    return 1.0


@numba.njit(**_JIT)
def _transfer_pair_row(diag, shift, b_in, beta, b_out, ML, MR):
    n = diag.shape[0]
    one = _shifted(diag[0], shift) * 0 + b_in * 0 + 1.0
    l00, l01, l10, l11 = one, one * 0, one * 0, one
    r00, r01, r10, r11 = one, one * 0, one * 0, one
    for i in range(n):
        a = _shifted(diag[i], shift)
        bl = beta[i - 1] if i > 0 else b_in
        br = beta[i] if i < n - 1 else b_out
        n00 = a * l00 - _times(bl, l10)  # ML <- S_i ML
        n01 = a * l01 - _times(bl, l11)
        l10, l11, l00, l01 = l00, l01, n00, n01
        t0 = r00 * a + r01  # MR <- MR R_i
        t1 = r10 * a + r11
        r01 = -_times(br, r00)
        r11 = -_times(br, r10)
        r00, r10 = t0, t1
        if (i & 7) == 7:
            m = max(max(_mx(l00), _mx(l01)), max(_mx(l10), _mx(l11)))
            if m > _BIG or m < 1.0 / _BIG:
                s = _scale_of(m)
                l00, l01, l10, l11 = l00 * s, l01 * s, l10 * s, l11 * s
            m = max(max(_mx(r00), _mx(r01)), max(_mx(r10), _mx(r11)))
            if m > _BIG or m < 1.0 / _BIG:
                s = _scale_of(m)
                r00, r01, r10, r11 = r00 * s, r01 * s, r10 * s, r11 * s
    s = _scale_of(max(max(_mx(l00), _mx(l01)), max(_mx(l10), _mx(l11))))
    ML[0, 0], ML[0, 1], ML[1, 0], ML[1, 1] = l00 * s, l01 * s, l10 * s, l11 * s
    s = _scale_of(max(max(_mx(r00), _mx(r01)), max(_mx(r10), _mx(r11))))
    MR[0, 0], MR[0, 1], MR[1, 0], MR[1, 1] = r00 * s, r01 * s, r10 * s, r11 * s


@numba.njit(**_JIT)
def _transfer_pair_batch(diag, shift, b_in, beta, b_out, ML, MR):
    for r in range(diag.shape[0]):
        _transfer_pair_row(diag[r], shift[r], b_in[r], beta[r], b_out[r], ML[r], MR[r])


def _inputs(diag, shift, b_in, beta, b_out):
    """``(diag, shift, b_in, beta, b_out, dtype)`` for the kernels: ``dtype`` is
    ``result_type(diag - shift, beta)``; ``beta`` at least one column wide (a one-element chunk
    never reads it); the couplings in ``beta``'s dtype, real when real."""
    diag = np.asarray(diag)
    B, C = diag.shape
    shift = np.zeros(B, diag.dtype) if shift is None else np.asarray(shift)
    beta = np.asarray(beta)
    dtype = np.result_type(diag.dtype, shift.dtype, beta.dtype)
    real = np.finfo(dtype).dtype
    bdt = dtype if np.iscomplexobj(beta) else real  # kept real: two real products, not four
    beta = beta.astype(bdt, copy=False)
    diag = diag.astype(dtype if np.iscomplexobj(diag) else real, copy=False)
    if beta.shape[1] == 0:
        beta = np.zeros((beta.shape[0], 1), bdt)
    if beta.strides[-1] != beta.itemsize:
        beta = np.ascontiguousarray(beta)
    if diag.strides[-1] != diag.itemsize:
        diag = np.ascontiguousarray(diag)
    b_in = np.ascontiguousarray(np.broadcast_to(np.asarray(b_in, dtype=bdt), (B,)))
    b_out = np.ascontiguousarray(np.broadcast_to(np.asarray(b_out, dtype=bdt), (B,)))
    return diag, np.ascontiguousarray(shift, dtype=dtype), b_in, beta, b_out, dtype


def transfer_pair(diag, shift, b_in, beta, b_out):
    """``(ML, MR)``, each ``(B, 2, 2)`` in ``result_type(diag - shift, beta)``: the chunk's left
    and right transfer matrices (module docstring) from one read of the chunk, each scaled by a
    power of two to a largest component in [1, 2).  ``beta (B or 1, C-1)``: rows may be a
    strided or broadcast view."""
    diag, shift, b_in, beta, b_out, dtype = _inputs(diag, shift, b_in, beta, b_out)
    B, C = diag.shape
    ML = np.empty((B, 2, 2), dtype)
    MR = np.empty((B, 2, 2), dtype)
    if B and C:
        _transfer_pair_batch(diag, shift, b_in, np.broadcast_to(beta, (B, beta.shape[1])), b_out, ML, MR)
    else:
        ML[:] = np.eye(2)
        MR[:] = np.eye(2)
    return ML, MR


@numba.njit(**_JIT)
def _resolvent_chunk_batch(diag, shift, b_in, beta, b_out, gLc, gRc, pivmin, G, guarded, singular, lastL,
                           lastR):
    for r in range(diag.shape[0]):
        guarded[r], singular[r], lastL[r], lastR[r] = resolvent_row_carried(
            diag[r], shift[r], b_in[r], beta[r], b_out[r], gLc[r], gRc[r], pivmin[r], G[r])


def resolvent_chunk(diag, shift, b_in, beta, b_out, gL, gR, pivmin):
    """The chunk's slice of ``diag(A^{-1})`` from its carries, and the ratios leaving it.

    ``gL (B,)``: the carry ``gL_{s-1}`` (None or anything with ``b_in = 0`` at the chain's
    start), ``gR (B,)``: ``gR_{e+1}`` (likewise with ``b_out``); other arguments as the module
    docstring.  Returns ``(G (B, C), guarded (B,), singular (B,), lastL (B,), lastR (B,))``:
    ``G_ii = 1/(alpha_i - beta_{i-1} gL_{i-1} - beta_i gR_{i+1})`` with the chain's sweeps
    restricted to the chunk (the whole-chain kernel's arithmetic, the carries entering where
    the neighbours' ratios would), the pivots of both sweeps guard-counted, ``singular`` where
    some ``|1/G_ii| < SINGULAR_FACTOR pivmin``, and ``lastL = gL_e``, ``lastR = gR_s``."""
    diag, shift, b_in, beta, b_out, dtype = _inputs(diag, shift, b_in, beta, b_out)
    B, C = diag.shape
    zero = np.zeros(B, dtype)
    gL = zero if gL is None else np.ascontiguousarray(gL, dtype=dtype)
    gR = zero if gR is None else np.ascontiguousarray(gR, dtype=dtype)
    G = np.empty((B, C), dtype)
    guarded = np.zeros(B, np.int64)
    singular = np.zeros(B, np.bool_)
    lastL, lastR = gL.copy(), gR.copy()
    if B and C:
        _resolvent_chunk_batch(diag, shift, b_in, np.broadcast_to(beta, (B, beta.shape[1])), b_out, gL, gR,
                               np.ascontiguousarray(pivmin, dtype=np.finfo(dtype).dtype), G, guarded,
                               singular, lastL, lastR)
    return G, guarded, singular, lastL, lastR


@numba.njit(**_JIT)
def _coupling(beta, b_in, b_out, n, i, reverse):
    """The coupling multiplying the previous ratio at site ``i`` of a sweep."""
    if reverse:
        return beta[i] if i < n - 1 else b_out
    return beta[i - 1] if i > 0 else b_in


@numba.njit(**_JIT)
def _sweep_row(diag, shift, b_in, beta, b_out, reverse, g, pm):
    n = diag.shape[0]
    for t in range(n):
        i = n - 1 - t if reverse else t
        b = _coupling(beta, b_in, b_out, n, i, reverse)
        g, _ = _guarded_recip(_shifted(diag[i], shift) - _times(b, g), pm)
    return g


@numba.njit(**_JIT)
def _sweep_batch(diag, shift, b_in, beta, b_out, reverse, g_in, pm, out):
    for r in range(diag.shape[0]):
        out[r] = _sweep_row(diag[r], shift[r], b_in[r], beta[r], b_out[r], reverse, g_in[r], pm[r])


def pivot_sweep(diag, shift, b_in, beta, b_out, reverse, g_in, pm):
    """The guarded ratio recursion over the chunk, left to right (``reverse=False``, from
    ``g_in = gL_{s-1}``: returns ``gL_e``) or right to left (from ``gR_{e+1}``: returns
    ``gR_s``), ``(B,)``; nothing of size C is written."""
    diag, shift, b_in, beta, b_out, dtype = _inputs(diag, shift, b_in, beta, b_out)
    out = np.array(np.broadcast_to(np.asarray(g_in, dtype=dtype), (diag.shape[0],)))
    if diag.shape[0] and diag.shape[1]:
        _sweep_batch(diag, shift, b_in, np.broadcast_to(beta, (diag.shape[0], beta.shape[1])), b_out,
                     bool(reverse), out.copy(), np.ascontiguousarray(pm, dtype=np.finfo(dtype).dtype), out)
    return out


@numba.njit(**_JIT)
def _sweep_pair_row(diag, shift, b_in, beta, b_out, gl, gr, pm):
    n = diag.shape[0]
    for t in range(n):  # two independent recursions: their latencies overlap
        i = n - 1 - t
        bl = _coupling(beta, b_in, b_out, n, t, False)
        br = _coupling(beta, b_in, b_out, n, i, True)
        gl, _ = _guarded_recip(_shifted(diag[t], shift) - _times(bl, gl), pm)
        gr, _ = _guarded_recip(_shifted(diag[i], shift) - _times(br, gr), pm)
    return gl, gr


@numba.njit(**_JIT)
def _sweep_pair_batch(diag, shift, b_in, beta, b_out, gL, gR, pm, outL, outR):
    for r in range(diag.shape[0]):
        outL[r], outR[r] = _sweep_pair_row(diag[r], shift[r], b_in[r], beta[r], b_out[r], gL[r], gR[r], pm[r])


def pivot_sweep_pair(diag, shift, b_in, beta, b_out, gL, gR, pm):
    """:func:`pivot_sweep` left to right from ``gL`` and right to left from ``gR`` in one loop
    (each step's division waits on the previous one, so two independent recursions side by
    side cost little more than one): ``(gL_e, gR_s)``, each ``(B,)``."""
    diag, shift, b_in, beta, b_out, dtype = _inputs(diag, shift, b_in, beta, b_out)
    B = diag.shape[0]
    outL = np.array(np.broadcast_to(np.asarray(gL, dtype=dtype), (B,)))
    outR = np.array(np.broadcast_to(np.asarray(gR, dtype=dtype), (B,)))
    if B and diag.shape[1]:
        _sweep_pair_batch(diag, shift, b_in, np.broadcast_to(beta, (B, beta.shape[1])), b_out, outL.copy(),
                          outR.copy(), np.ascontiguousarray(pm, dtype=np.finfo(dtype).dtype), outL, outR)
    return outL, outR

@numba.njit(**_JIT)
def _repair_row(diag, shift, b_in, beta, b_out, reverse, g_old, g_new, pm, tol, ref, block, stall):
    n = diag.shape[0]
    next_stall = stall
    for t in range(n):
        i = n - 1 - t if reverse else t
        a = _shifted(diag[i], shift)
        b = _coupling(beta, b_in, b_out, n, i, reverse)
        g_old, _ = _guarded_recip(a - _times(b, g_old), pm)
        g_new, _ = _guarded_recip(a - _times(b, g_new), pm)
        if (t + 1) % block == 0 or t == n - 1:
            diff = abs(g_new - g_old)
            if diff <= tol * abs(g_old):
                return 1, t + 1, g_new
            if t + 1 >= next_stall:
                r = diff / abs(g_old)
                if not r <= ref / 16.0:
                    return 2, t + 1, g_new
                ref = r
                next_stall += stall
    return 0, n, g_new


@numba.njit(**_JIT)
def _repair_batch(diag, shift, b_in, beta, b_out, reverse, g_old, g_new, pm, rows, tol, ref, block, stall,
                  status, steps, last):
    for j in range(rows.shape[0]):
        r = rows[j]
        st, ns, g = _repair_row(diag[r], shift[r], b_in[r], beta[r], b_out[r], reverse, g_old[r], g_new[r],
                                pm[r], tol, ref[r], block, stall)
        status[j] = st
        steps[j] = ns
        last[j] = g


def repair_sweep(diag, shift, b_in, beta, b_out, reverse, g_old, g_new, pm, rows, tol, ref, block, stall):
    """Re-run :func:`pivot_sweep` for the ``rows (n,)`` from new carries ``g_new (B,)`` beside the
    stored run from ``g_old (B,)`` until the two trajectories merge: ``(status, steps, last)``,
    each ``(n,)``.  Every ``block`` steps (and at the chunk's end) the two ratios are compared:
    within ``tol`` relative the row stops (status 1).  Every ``stall`` steps their relative
    distance must have shrunk 16-fold since the last such check (since ``ref (B,)`` at the
    first), else the recursion does not contract and the row stops (status 2).  Status 0: the
    chunk's end reached unmerged, ``last`` its new last ratio.  ``steps``: steps re-run."""
    diag, shift, b_in, beta, b_out, dtype = _inputs(diag, shift, b_in, beta, b_out)
    B = diag.shape[0]
    g_new = np.ascontiguousarray(np.broadcast_to(np.asarray(g_new, dtype=dtype), (B,)))
    g_old = np.ascontiguousarray(np.broadcast_to(np.asarray(g_old, dtype=dtype), (B,)))
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    status = np.zeros(rows.shape[0], np.int64)
    steps = np.zeros(rows.shape[0], np.int64)
    last = g_new[rows].copy()
    if rows.shape[0] and diag.shape[1]:
        _repair_batch(diag, shift, b_in, np.broadcast_to(beta, (B, beta.shape[1])), b_out, bool(reverse),
                      g_old, g_new, np.ascontiguousarray(pm, dtype=np.finfo(dtype).dtype), rows, float(tol),
                      np.ascontiguousarray(ref, dtype=np.float64), int(block), int(stall), status, steps,
                      last)
    return status, steps, last


# --------------------------------------------------------------------------------------------
# plain NumPy twins (a loop over the chunk vectorised over the rows, or the whole-chain twin on
# the chunk with the carries folded in), for the tests
# --------------------------------------------------------------------------------------------
def _plain(diag, shift, b_in, beta, b_out):
    """``(alpha (B, C), b_in (B,), beta (B, C-1), b_out (B,))``, formed with NumPy."""
    diag = np.asarray(diag)
    B, C = diag.shape
    alpha = diag if shift is None else diag - np.asarray(shift)[:, None]
    beta = np.broadcast_to(beta, (B, beta.shape[1])) if C > 1 else np.zeros((B, 0))
    return (alpha, np.broadcast_to(np.asarray(b_in), (B,)), beta, np.broadcast_to(np.asarray(b_out), (B,)))


def _normalised(M):
    m = np.maximum(np.abs(M.real), np.abs(M.imag)).max(axis=(1, 2))
    return M * np.ldexp(1.0, 1 - np.frexp(m)[1])[:, None, None]


def transfer_pair_ref(diag, shift, b_in, beta, b_out):
    """Twin of :func:`transfer_pair`: the products as 2 x 2 matrix products, left one with the
    matrices applied left to right, right one right to left (the two agree up to rounding)."""
    alpha, b_in, beta, b_out = _plain(diag, shift, b_in, beta, b_out)
    B, C = alpha.shape
    b_full = np.concatenate([b_in[:, None], beta, b_out[:, None]], axis=1)  # beta_{s-1} .. beta_e
    dtype = np.result_type(alpha.dtype, b_full.dtype)
    out = []
    for side in ("L", "R"):
        M = np.broadcast_to(np.eye(2, dtype=dtype), (B, 2, 2)).copy()
        for i in (range(C) if side == "L" else range(C - 1, -1, -1)):
            S = np.zeros((B, 2, 2), dtype)
            S[:, 0, 0] = alpha[:, i]
            S[:, 0, 1] = -(b_full[:, i] if side == "L" else b_full[:, i + 1])
            S[:, 1, 0] = 1.0
            M = _normalised(S @ M)
        out.append(_normalised(M))
    return tuple(out)


def resolvent_chunk_ref(diag, shift, b_in, beta, b_out, gL, gR, pivmin):
    """Twin of :func:`resolvent_chunk`: the whole-chain twin
    (:func:`semisep.backends.numpy.twins.resolvent_diagonal_ref`) on the chunk with the carries
    folded into its end entries (``alpha_s - beta_{s-1} gL``, ``alpha_e - beta_e gR``), and the
    last ratios by :func:`pivot_sweep_ref`."""
    alpha, b_in, beta, b_out = _plain(diag, shift, b_in, beta, b_out)
    B, C = alpha.shape
    dtype = np.result_type(alpha.dtype, beta.dtype, *(g.dtype for g in (gL, gR) if g is not None))
    gL = np.zeros(B, dtype) if gL is None else gL
    gR = np.zeros(B, dtype) if gR is None else gR
    ap = alpha.astype(dtype)
    ap[:, 0] -= b_in * gL
    ap[:, -1] -= b_out * gR
    G, guarded, singular = resolvent_diagonal_ref(ap, beta.astype(dtype), np.asarray(pivmin))
    lastL = pivot_sweep_ref(diag, shift, b_in, beta, b_out, False, gL, pivmin)
    lastR = pivot_sweep_ref(diag, shift, b_in, beta, b_out, True, gR, pivmin)
    return G, guarded, singular, lastL, lastR


def _guard_ref(t, pm):
    a = np.abs(t)
    small = a < pm
    if np.iscomplexobj(t):
        gd = pm * np.where(a == 0, 1.0, t / np.where(a == 0, 1.0, a))
    else:
        gd = np.where(t < 0, -pm, pm)
    return np.where(small, gd, t)


def _trajectory_ref(diag, shift, b_in, beta, b_out, reverse, g, pm):
    """The ratios of the recursion in sweep order, ``(C, B)``."""
    alpha, b_in, beta, b_out = _plain(diag, shift, b_in, beta, b_out)
    b_full = np.concatenate([b_in[:, None], beta, b_out[:, None]], axis=1)
    C = alpha.shape[1]
    out = []
    with np.errstate(all="ignore"):
        for t in range(C):
            i = C - 1 - t if reverse else t
            b = b_full[:, i + 1] if reverse else b_full[:, i]
            g = 1.0 / _guard_ref(alpha[:, i] - b * g, np.asarray(pm))
            out.append(g)
    return np.array(out)


def pivot_sweep_ref(diag, shift, b_in, beta, b_out, reverse, g_in, pm):
    """Twin of :func:`pivot_sweep`."""
    alpha = _plain(diag, shift, b_in, beta, b_out)[0]
    dtype = np.result_type(alpha.dtype, np.asarray(beta).dtype)
    g = np.broadcast_to(np.asarray(g_in).astype(np.result_type(dtype, np.asarray(g_in).dtype)),
                        (alpha.shape[0],))
    if alpha.shape[1] == 0:
        return g.copy()
    return _trajectory_ref(diag, shift, b_in, beta, b_out, reverse, g, pm)[-1]


def repair_sweep_ref(diag, shift, b_in, beta, b_out, reverse, g_old, g_new, pm, rows, tol, ref, block, stall):
    """Twin of :func:`repair_sweep`: both whole trajectories, then the checks on them."""
    old = _trajectory_ref(diag, shift, b_in, beta, b_out, reverse, np.asarray(g_old), pm)
    new = _trajectory_ref(diag, shift, b_in, beta, b_out, reverse, np.asarray(g_new), pm)
    C = old.shape[0]
    status, steps, last = [], [], []
    for r in rows:
        rf, nxt, st, n, g = ref[r], stall, 0, C, new[-1, r]
        for t in range(C):
            if (t + 1) % block and t != C - 1:
                continue
            d = abs(new[t, r] - old[t, r])
            if d <= tol * abs(old[t, r]):
                st, n, g = 1, t + 1, new[t, r]
                break
            if t + 1 >= nxt:
                if not d / abs(old[t, r]) <= rf / 16.0:
                    st, n, g = 2, t + 1, new[t, r]
                    break
                rf, nxt = d / abs(old[t, r]), nxt + stall
        status.append(st)
        steps.append(n)
        last.append(g)
    return np.array(status, np.int64), np.array(steps, np.int64), np.array(last, new.dtype)


key_caches_on_constants(globals(), ("SINGULAR_FACTOR",))
