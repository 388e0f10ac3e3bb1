"""Compiled fused Woodbury sweeps for ``diag((T + U V^T - z I)^{-1})`` on the NumPy backend:
the forward kernel (``X = A^{-1} U`` and ``K - I = V^T X`` in one pass) and the correction kernel
(``G0 - diag(X K^{-1} Y^T)`` without forming ``Y``), threaded over (batch row, column panel),
with a per-thread scratch buffer.
"""

from __future__ import annotations

import threading

import numba
import numpy as np
from numba import prange
from numba.extending import overload

from .. import SINGULAR_FACTOR
from .._blas import single_threaded_blas
from .._numba import jit, key_caches_on_constants
from .pivoted import _prep_rhs
from .scalars import _JIT, _KERNEL_CONSTANTS, _cabs1, _guard, _recip, _small, _times
from .sweeps import _pivmin, _prep


@numba.njit(**_JIT)
def _forward_sweep(alpha, shift, upper, lower, f, pivmin, cap, out, gL):
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
        if n > 1 and abs(upper[0] * lower[0]) <= pivmin * pivmin:
            singular = True
    gl = _recip(d)
    gL[0] = gl
    for j in range(k):
        out[0, j] = f[0, j]
    for i in range(1, n):
        m = lower[i - 1] * gl
        mb = m * upper[i - 1]
        if _cabs1(mb) > cap:
            guarded += 1
        draw = (alpha[i] - shift) - mb
        if i == n - 1 and _small(draw, SINGULAR_FACTOR * pivmin):
            singular = True
        d, g = _guard(draw, pivmin)
        if g:
            guarded += 1
            if i < n - 1 and abs(upper[i] * lower[i]) <= pivmin * pivmin:
                singular = True
        gl = _recip(d)
        gL[i] = gl
        for j in range(k):
            out[i, j] = f[i, j] - m * out[i - 1, j]
    return guarded, singular


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
def _woodbury_forward_panel(alpha, shift, upper, lower, U, V, pivmin, cap, X, gL, K):
    """One panel: ``X = A^{-1} U`` and ``K = V^T X``.

    alpha (N,), shift a scalar (A's diagonal is ``alpha - shift``), b, c (N-1,); U (N, h) this
    panel's columns of U; V (N, r) C-contiguous; X (N, h) C-contiguous, written; gL (N,)
    written with the pivot reciprocals; K (r, h) written.  Returns (guarded, singular) as
    :func:`_forward_sweep`.
    """
    n = alpha.shape[0]
    h = X.shape[1]
    r = V.shape[1]
    guarded, singular = _forward_sweep(alpha, shift, upper, lower, U, pivmin, cap, X, gL)  # X = L^{-1} U
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
            bi = upper[i]
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
def _woodbury_forward_batch(alpha, shift, upper, lower, U, V, pivmin, cap, X, gL, K, guarded, singular):
    """B x nsplit tasks (row k, panel t): X[k]'s panel t, gL[k, t], K[k, t][:, panel t].
    X (B, N r) flat; V (BV, N, r) with BV = 1 (shared) or B."""
    B, n = alpha.shape
    r = U.shape[2]
    nsplit = K.shape[1]
    for task in prange(B * nsplit):
        k, t, j0, j1 = _panel_task(task, nsplit, r)
        g, s = _woodbury_forward_panel(alpha[k], shift[k], upper[k], lower[k], U[k, :, j0:j1],
                                       V[k % V.shape[0]],
                                       pivmin[k], cap[k], _panel(X[k], n, j0, j1), gL[k, t],
                                       K[k, t, :, j0:j1])
        if t == 0:
            guarded[k] = g
            singular[k] = s


@numba.njit(**_JIT)
def _woodbury_correction_panel(gL, upper, lower, X, V, KT, P, out):
    """``out_i = sum_{j in panel} X_ij W_ij`` (see above) for one panel.

    gL (N,), b, c (N-1,); X (N, h) the panel from :func:`_woodbury_forward_panel`; V (N, r)
    C-contiguous; KT (r, h) C-contiguous, this panel's columns of K^{-T}; P (N, h) scratch;
    out (N,).
    """
    n = gL.shape[0]
    h = X.shape[1]
    r = V.shape[1]
    zero = np.zeros(1, X.dtype)[0]
    zero_b = np.zeros(1, upper.dtype)[0]  # b, c may be real (a real T at a complex z)
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
                bi = upper[i - 1]
            for j in range(h):
                pj = g * (Z[i - lo, j] - _times(bi, p[j]))
                p[j] = pj
                P[i, j] = pj
        lo = hi
    w = np.zeros(h, X.dtype)
    for i in range(n - 1, -1, -1):  # descending: W = L^{-T} P and sum_j X_ij W_ij
        gc = zero
        if i < n - 1:
            gc = gL[i] * lower[i]
        s = zero
        for j in range(h - 1, -1, -1):
            wj = P[i, j] - gc * w[j]
            w[j] = wj
            s += X[i, j] * wj
        out[i] = s


@jit(parallel=True, **_JIT)
def _woodbury_correction_batch(gL, upper, lower, X, V, KT, P, out):
    """B x nsplit tasks (row k, panel t) -> out[t, k] (N,); nsplit = out.shape[0]."""
    nsplit, B, n = out.shape
    r = V.shape[2]
    for task in prange(B * nsplit):
        k, t, j0, j1 = _panel_task(task, nsplit, r)
        KTt = np.ascontiguousarray(KT[k, :, j0:j1])
        _woodbury_correction_panel(gL[k], upper[k], lower[k], _panel(X[k], n, j0, j1), V[k % V.shape[0]], KTt,
                                   _panel(P[k], n, j0, j1), out[t, k])


class WoodburySweeps:
    """What :func:`woodbury_forward_kernel` leaves for :func:`woodbury_correction_kernel`.

    ``KmI`` (B, r, r) ``= K - I = V^T A^{-1} U``; ``guarded`` (B,) int, ``singular`` (B,) bool
    with :func:`solve_kernel`'s meaning; ``gL`` (B, N) the LU pivot reciprocals of A (shared by
    ``A^T``).  ``X`` (B, N r) holds ``A^{-1} U`` in ``nsplit`` column panels (panel t: columns
    ``j0:j1``, ``j_t = r t // nsplit``, stored C-contiguous as (N, j1 - j0) at offset ``N j0``);
    :meth:`dense_X` returns it as (B, N, r).  ``P`` (B, N r) and ``parts`` (nsplit, B, N) are
    the correction's scratch, ``upper``, ``lower``, ``V`` the inputs it reads again; ``buffer`` is the
    1-D byte array that X, P, the pivots and ``parts`` are views into.
    """

    __slots__ = ("X", "P", "KmI", "gL", "parts", "guarded", "singular", "nsplit", "upper", "lower", "V",
                 "buffer")

    def __init__(self, X, P, KmI, gL, parts, guarded, singular, nsplit, upper, lower, V, buffer):
        self.X, self.P, self.KmI, self.gL, self.parts = X, P, KmI, gL, parts
        self.guarded, self.singular, self.nsplit = guarded, singular, nsplit
        self.upper, self.lower, self.V, self.buffer = upper, lower, V, buffer

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


def woodbury_forward_kernel(alpha, upper, lower, U, V, pivmin, shift=None, buffer=None):
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
    alpha, upper, lower = _prep(alpha, upper, lower)
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
            _woodbury_forward_batch(alpha, shift, upper, lower, U, V, pm, cap, X, gL, K, guarded, singular)
    return WoodburySweeps(X, P, K.sum(axis=1), gL[:, 0], parts, guarded, singular, nsplit, upper, lower, V,
                          buffer)


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
            _woodbury_correction_batch(s.gL, s.upper, s.lower, s.X, s.V, KT, s.P, parts)
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



key_caches_on_constants(globals(), _KERNEL_CONSTANTS)
