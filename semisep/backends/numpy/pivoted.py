"""Compiled solve and log-determinant by Gaussian elimination with partial pivoting (LAPACK
``?gtsv``'s row exchanges), on ``(B, N)`` arrays: backward stable at any pivot, no guard; a
pivot below ``SINGULAR_FACTOR * pivmin`` certifies the matrix singular to working precision.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .. import SINGULAR_FACTOR
from .._numba import jit, key_caches_on_constants
from . import quasiseparable_rows as _buf
from .scalars import (
    _JIT,
    _KERNEL_CONSTANTS,
    _balanced,
    _cabs1,
    _gtsv_factor_step,
    _gtsv_pivot_step,
    _one_wide,
    _recip,
    _times_pivot,
)
from .sweeps import _pivmin, _prep


@numba.njit(**_JIT)
def _logdet_row(alpha, beta, pivmin):
    """``log|det|`` and the phase ``det/|det|`` by Gaussian elimination with partial pivoting
    (LAPACK ``?gtsv``'s, :func:`_gtsv_pivot_step`): ``det A = (-1)^(exchanges) prod U_ii``;
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
        u, swap, di, dui = _gtsv_pivot_step(di, dui, lower, alpha[i + 1], dun)
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
def _solve_row(alpha, upper, lower, f, pivmin, x, v1, v2):
    """``A x = f`` by Gaussian elimination with partial pivoting (row exchanges), LAPACK's
    ``?gtsv``: ``P A = L U`` with ``L`` unit lower bidiagonal up to the exchanges
    (``|L_ij| <= 1``) and ``U`` upper triangular with two superdiagonals (the fill of an
    exchange); backward stable, O(N k).

    The forward pass stores U's rows already divided by their pivots, ``v1_i = U_{i,i+1} /
    U_ii`` and ``v2_i = U_{i,i+2} / U_ii`` (0 where row ``i`` was not exchanged), and
    overwrites ``x_i`` with ``y_i = (L^{-1} P f)_i / U_ii`` as soon as it is final, so the back
    substitution is ``x_i = y_i - v2_i x_{i+2} - v1_i x_{i+1}``: no multiplication by
    ``1/U_ii`` on its dependency chain and no stored reciprocals (the rows of ``D^{-1} U``
    carry a relative rounding error per entry, which keeps the substitution backward stable).

    alpha (N,), b (N-1,) upper, c (N-1,) lower, f, x: (N, k); v1 (N,), v2 (N,): workspace.
    Returns ``(0, singular)``: no pivot is guarded; singular where some
    ``|Re U_ii| + |Im U_ii| < SINGULAR_FACTOR * pivmin``, which certifies
    ``cond_2(A) > 1/(8 eps)`` (``1/|U_ii| <= ||U^{-1}||_2 <= ||L||_2 ||A^{-1}||_2``,
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
        dui = upper[0]
    for i in range(n - 1):
        dunext = zero
        if i < n - 2:
            dunext = upper[i + 1]
        u, ri, a1, a2, fact, swap, di, dui = _gtsv_factor_step(di, dui, lower[i], alpha[i + 1], dunext)
        if _cabs1(u) < q:
            singular = True
        v1[i] = ri * a1
        if swap:
            v2[i] = ri * a2
            for j in range(k):
                t = x[i, j]
                fn = f[i + 1, j]
                x[i, j] = ri * fn
                x[i + 1, j] = t - fact * fn
        else:
            v2[i] = zero
            for j in range(k):
                t = x[i, j]
                x[i, j] = ri * t
                x[i + 1, j] = f[i + 1, j] - fact * t
    if _cabs1(di) < q:
        singular = True
    g = _recip(di)
    # back substitution, the columns downwards too so that memory is read in one descending
    # stream (see the Woodbury kernels' comment)
    for j in range(k - 1, -1, -1):
        x[n - 1, j] = g * x[n - 1, j]
    if n > 1:
        a1 = v1[n - 2]
        for j in range(k - 1, -1, -1):
            x[n - 2, j] = x[n - 2, j] - a1 * x[n - 1, j]
    for i in range(n - 3, -1, -1):
        a1 = v1[i]
        a2 = v2[i]
        for j in range(k - 1, -1, -1):
            x[i, j] = (x[i, j] - a2 * x[i + 2, j]) - a1 * x[i + 1, j]
    return 0, singular


@jit(parallel=True, **_JIT)
def _solve_batch(alpha, upper, lower, f, pivmin, x, v1, v2, guarded, singular):
    for r in prange(alpha.shape[0]):
        guarded[r], singular[r] = _solve_row(alpha[r], upper[r], lower[r], f[r], pivmin[r], x[r],
                                             v1[r], v2[r])


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
    return (logabs + 1j * np.arctan2(phase.imag, phase.real)).astype(cdtype)  # np.angle's formula


def solve_kernel(alpha, upper, lower, f, pivmin):
    """Solution of ``A x = f``, f: (B, N, k) -> x (B, N, k); guarded; singular. Compiled.

    Gaussian elimination with partial pivoting, LAPACK's ``?gtsv`` (:func:`_solve_row`):
    backward stable, no pivot guarded (``guarded`` is zero); ``singular`` where some
    ``|Re U_ii| + |Im U_ii| < SINGULAR_FACTOR * pivmin``.

    Large ``x`` and the workspace ``v1``, ``v2`` (B, N) of U's scaled superdiagonals are
    recycled buffers (:func:`.quasiseparable_rows.empty`: one is handed out again only once no
    array refers to it), so that a repeated call does not map (and page-fault in) fresh memory;
    every entry the kernel reads from them is written earlier in the same call."""
    alpha, upper, lower, f = _prep(alpha, upper, lower, f)
    B, N = alpha.shape
    x = _buf.empty(f.shape, f.dtype)
    v1, v2 = _buf.empty(alpha.shape, alpha.dtype), _buf.empty(alpha.shape, alpha.dtype)
    guarded = np.zeros(B, np.int64)
    singular = np.zeros(B, np.bool_)
    if B and N:
        _solve_batch(alpha, upper, lower, f, _pivmin(pivmin, alpha.dtype), x, v1, v2, guarded, singular)
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



key_caches_on_constants(globals(), _KERNEL_CONSTANTS)
