"""The inverse diagonal of a **symmetric-storage** real float64 quasiseparable matrix in one
compiled call per batch: pivot scale, LDL^T factorization, inverse diagonal and the
singularity certificate's ``max |G_ii|``, each batch row in one forward and one backward sweep.

Notation and array conventions: :mod:`semisep.backends.numpy.quasiseparable` (``A = S - z I``,
``alpha_i = A[i, i]``, lower form ``(p, q, a)`` of order r, upper form the same arrays; a
leading batch axis of length B or 1; ``q`` and ``a`` may have length 1 on their N axis).
The recursions are those of :mod:`semisep.backends.numpy.quasiseparable_symmetric`:

* pivot scale ``s = max(max_i |alpha_i|, max_{i>0} |p_i . q_{i-1}|)`` (NaN if any is) and
  ``pivmin = eps s``, raised to the smallest normal number if below it
  (:meth:`semisep._quasiseparable_rows._Rows.pivmin`);
* forward (LDL^T, ``M_0 = 0``, r x r symmetric)::

      u = M_i p_i,  d_i = alpha_i - p_i . u,  w_i = q_i - a_i u,  qt_i = w_i / d_i,
      M_{i+1} = a_i M_i a_i^T + qt_i w_i^T;

* backward (``Psi_{N-1} = 0``, r x r symmetric, ``ah_i = a_i - qt_i p_i^T``)::

      G_ii = 1/d_i + qt_i . Psi_i qt_i,  Psi_{i-1} = p_i p_i^T / d_i + ah_i^T Psi_i ah_i.

**Pivot guard without a separate pass.**  The factorization's guard replaces a pivot with
``|d_i| < pivmin`` by ``pivmin d_i/|d_i|``, and ``pivmin`` depends on the whole row.  The
forward sweep therefore runs unguarded while it accumulates the scale and ``min_i |d_i|``; if
``min_i |d_i| >= pivmin`` (the usual case) no pivot would have been guarded and the factors are
exactly the guarded kernel's.  Otherwise the row is factored again by
``quasiseparable_symmetric._factor_sym_row`` with the guard, and ``delta`` (the guard's change
of each pivot) is written for that row only.

**Rank 2** (Matern-3/2, SHO, Cosine, Celerite terms) has its own forward and backward row
sweeps with the symmetric states as three scalars (registers) instead of r x r arrays, and the
state updates written as quadratic forms of those scalars whose coefficients depend on the
step's generators only: the same terms as the generic rows of ``quasiseparable_symmetric``,
summed in an order that shortens the chain of dependent operations from one step to the next
(the sweeps are latency-bound), so the values agree with those rows to rounding.  Other ranks
run the generic rows, and diagonal transitions ``a (B or 1, N or 1, r)`` the rows of
:mod:`semisep.backends.numpy.quasiseparable_diagonal` (the pivot scale in a first pass, the
factorization always with the guard).  A batch of one row runs in a serial (non-``prange``)
entry point.

``factor_inverse_diagonal_symmetric_kernel(alpha, p, q, a)``
    ``(d (B, N), qt (B, N, r), guarded (B,), last_small (B,), delta (B, N) or None,
    G (B, N), pivmin (B,), gmax (B,))`` with ``gmax_k = max_i |G_ii|`` (NaN if a ``G_ii`` is).
    ``ht = d qt`` of the factorization is not formed (the caller needs the inverse diagonal
    only).  The plain twins are the separate kernels (``pivot_scale``,
    ``factor_symmetric_kernel``, ``_inverse_diagonal_sym_batch``) and
    :mod:`semisep.reference.quasiseparable`.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .. import SINGULAR_FACTOR
from .._numba import cache_option, jit, key_caches_on_constants
from . import quasiseparable_rows as _buf
from .quasiseparable_diagonal import _factor_sym_diag_row, _inverse_diagonal_sym_diag_row
from .quasiseparable_symmetric import (
    _absmax,
    _factor_sym_row,
    _inverse_diagonal_sym_row,
    _offdiag_absmax,
    _witness,
)

__all__ = ["factor_inverse_diagonal_symmetric_kernel"]

_JIT = dict(nogil=True, cache=cache_option(__file__), fastmath=False, error_model="numpy")

_EPS = float(np.finfo(np.float64).eps)
_TINY = float(np.finfo(np.float64).tiny)


@numba.njit(**_JIT)
def _pivmin(scale):
    """``eps * scale``, plus the smallest normal number where below it (``_Rows.pivmin``)."""
    piv = scale * _EPS
    return piv + _TINY if piv < _TINY else piv


@numba.njit(**_JIT)
def _row_scale(k, alpha, p, q):
    """The pivot scale of batch row ``k`` (``pivot_scale``'s value for symmetric storage)."""
    ka = k if alpha.shape[0] > 1 else 0
    s = 0.0
    for i in range(alpha.shape[1]):
        s = _absmax(s, alpha[ka, i])
    return _offdiag_absmax(k, s, p, q)


@numba.njit(**_JIT)
def _forward_row2(k, alpha, p, q, a, d, qt):
    """The unguarded rank-2 forward sweep of row ``k``; returns ``(scale, min_i |d_i|)``.

    The pivot and the next state as quadratic forms of the state's three entries
    ``(m00, m01, m11)`` with coefficients formed from ``p_i`` and ``a_i`` alone
    (``d_i = alpha_i - (p0^2 m00 + 2 p0 p1 m01 + p1^2 m11)``,
    ``M_{i+1} = (a_i M_i a_i^T) + w_i w_i^T / d_i``), so that one step's chain of dependent
    operations is a product, two sums, the division and a product and sum (the same terms as
    the generic row, summed in another order)."""
    n = d.shape[1]
    ka = k if alpha.shape[0] > 1 else 0
    kp = k if p.shape[0] > 1 else 0
    kq = k if q.shape[0] > 1 else 0
    kA = k if a.shape[0] > 1 else 0
    step_a = a.shape[1] > 1
    step_q = q.shape[1] > 1
    m00 = 0.0
    m01 = 0.0
    m11 = 0.0
    scale = 0.0
    min_ad = np.inf
    for i in range(n):
        ia = i if step_a else 0
        iq = i if step_q else 0
        p0 = p[kp, i, 0]
        p1 = p[kp, i, 1]
        al = alpha[ka, i]
        scale = _absmax(scale, al)
        if i > 0:
            iqp = i - 1 if step_q else 0
            v = p0 * q[kq, iqp, 0]
            v = v + p1 * q[kq, iqp, 1]
            scale = _absmax(scale, v)
        a00 = a[kA, ia, 0, 0]
        a01 = a[kA, ia, 0, 1]
        a10 = a[kA, ia, 1, 0]
        a11 = a[kA, ia, 1, 1]
        s = (al - (p1 * p1) * m11) - ((p0 * p0) * m00 + (2.0 * (p0 * p1)) * m01)
        u0 = m00 * p0 + m01 * p1
        u1 = m01 * p0 + m11 * p1
        w0 = q[kq, iq, 0] - (a00 * u0 + a01 * u1)
        w1 = q[kq, iq, 1] - (a10 * u0 + a11 * u1)
        # a M a^T (upper triangle), before the division is needed
        n00 = ((a00 * a00) * m00 + (2.0 * (a00 * a01)) * m01) + (a01 * a01) * m11
        n01 = ((a00 * a10) * m00 + (a00 * a11 + a01 * a10) * m01) + (a01 * a11) * m11
        n11 = ((a10 * a10) * m00 + (2.0 * (a10 * a11)) * m01) + (a11 * a11) * m11
        ad = abs(s)
        if ad < min_ad:
            min_ad = ad
        d[k, i] = s
        inv = 1 / s
        qt[k, i, 0] = w0 * inv
        qt[k, i, 1] = w1 * inv
        m00 = n00 + (w0 * w0) * inv
        m01 = n01 + (w0 * w1) * inv
        m11 = n11 + (w1 * w1) * inv
    return scale, min_ad


@numba.njit(**_JIT)
def _backward_row2(k, d, qt, p, a, out):
    """The rank-2 inverse-diagonal sweep of row ``k``; returns ``max_i |G_ii|``.

    ``Psi_{i-1} = ah_i^T Psi_i ah_i + p_i p_i^T / d_i`` as a quadratic form of ``Psi_i``'s three
    entries with coefficients from ``ah_i`` alone (two levels of sums after one product on the
    chain from ``Psi_i`` to ``Psi_{i-1}``), ``G_ii`` likewise from ``qt_i``."""
    n = d.shape[1]
    kd = k if d.shape[0] > 1 else 0
    kq = k if qt.shape[0] > 1 else 0
    kp = k if p.shape[0] > 1 else 0
    kA = k if a.shape[0] > 1 else 0
    step_a = a.shape[1] > 1
    s00 = 0.0
    s01 = 0.0
    s11 = 0.0
    gmax = 0.0
    for i in range(n - 1, -1, -1):
        inv = 1 / d[kd, i]
        qt0 = qt[kq, i, 0]
        qt1 = qt[kq, i, 1]
        g = inv + (((qt0 * qt0) * s00 + (2.0 * (qt0 * qt1)) * s01) + (qt1 * qt1) * s11)
        out[k, i] = g
        gmax = _absmax(gmax, g)
        if i == 0:
            break
        ia = i if step_a else 0
        p0 = p[kp, i, 0]
        p1 = p[kp, i, 1]
        h00 = a[kA, ia, 0, 0] - qt0 * p0  # ah = a - qt p^T
        h01 = a[kA, ia, 0, 1] - qt0 * p1
        h10 = a[kA, ia, 1, 0] - qt1 * p0
        h11 = a[kA, ia, 1, 1] - qt1 * p1
        n00 = ((h00 * h00) * s00 + (2.0 * (h00 * h10)) * s01) + ((h10 * h10) * s11 + (p0 * p0) * inv)
        n01 = ((h00 * h01) * s00 + (h00 * h11 + h10 * h01) * s01) + ((h10 * h11) * s11
                                                                     + (p0 * p1) * inv)
        n11 = ((h01 * h01) * s00 + (2.0 * (h01 * h11)) * s01) + ((h11 * h11) * s11 + (p1 * p1) * inv)
        s00 = n00
        s01 = n01
        s11 = n11
    return gmax


@numba.njit(**_JIT)
def _gmax_row(k, out):
    g = 0.0
    for i in range(out.shape[1]):
        g = _absmax(g, out[k, i])
    return g


@numba.njit(**_JIT)
def _fused_row(w, k, alpha, p, q, a, d, qt, ht, guarded, last_small, delta, out, pivmins,
               gmax):
    """Batch row ``k``: scale, factorization (guarded if needed), inverse diagonal, max|G|."""
    n = d.shape[1]
    r = len(w) if len(w) > 0 else p.shape[2]
    if r == 2:
        scale, min_ad = _forward_row2(k, alpha, p, q, a, d, qt)
        piv = _pivmin(scale)
        redo = min_ad < piv
    else:
        piv = _pivmin(_row_scale(k, alpha, p, q))
        redo = True
    if redo:
        for i in range(n):
            delta[k, i] = 0.0
        gk, sk = _factor_sym_row(w, k, alpha, p, q, a, piv, d, qt, ht, piv * SINGULAR_FACTOR,
                                 delta)
        guarded[k] = gk
        last_small[k] = sk
    else:
        guarded[k] = 0
        last_small[k] = abs(d[k, n - 1]) < piv * SINGULAR_FACTOR
    pivmins[k] = piv
    if r == 2:
        gmax[k] = _backward_row2(k, d, qt, p, a, out)
    else:
        _inverse_diagonal_sym_row(w, k, d, qt, p, a, out)
        gmax[k] = _gmax_row(k, out)


@jit(parallel=True, **_JIT)
def _fused_batch(w, alpha, p, q, a, d, qt, ht, guarded, last_small, delta, out, pivmins, gmax):
    for k0 in prange(d.shape[0]):
        _fused_row(w, np.int64(k0), alpha, p, q, a, d, qt, ht, guarded, last_small, delta, out,
                   pivmins, gmax)


@numba.njit(**_JIT)
def _fused_one(w, alpha, p, q, a, d, qt, ht, guarded, last_small, delta, out, pivmins, gmax):
    """:func:`_fused_batch` for one row, without a parallel launch."""
    _fused_row(w, np.int64(0), alpha, p, q, a, d, qt, ht, guarded, last_small, delta, out,
               pivmins, gmax)


@numba.njit(**_JIT)
def _fused_diag_row(w, k, alpha, p, q, ad, d, qt, ht, guarded, last_small, delta, out, pivmins,
                    gmax):
    """:func:`_fused_row` for diagonal transitions ``ad`` (the rows of
    :mod:`~semisep.backends.numpy.quasiseparable_diagonal`; the pivot scale in a first pass)."""
    n = d.shape[1]
    piv = _pivmin(_row_scale(k, alpha, p, q))
    for i in range(n):
        delta[k, i] = 0.0
    gk, sk = _factor_sym_diag_row(w, k, alpha, p, q, ad, piv, d, qt, ht, piv * SINGULAR_FACTOR,
                                  delta)
    guarded[k] = gk
    last_small[k] = sk
    pivmins[k] = piv
    _inverse_diagonal_sym_diag_row(w, k, d, qt, p, ad, out)
    gmax[k] = _gmax_row(k, out)


@jit(parallel=True, **_JIT)
def _fused_diag_batch(w, alpha, p, q, ad, d, qt, ht, guarded, last_small, delta, out, pivmins,
                      gmax):
    for k0 in prange(d.shape[0]):
        _fused_diag_row(w, np.int64(k0), alpha, p, q, ad, d, qt, ht, guarded, last_small, delta,
                        out, pivmins, gmax)


@numba.njit(**_JIT)
def _fused_diag_one(w, alpha, p, q, ad, d, qt, ht, guarded, last_small, delta, out, pivmins,
                    gmax):
    _fused_diag_row(w, np.int64(0), alpha, p, q, ad, d, qt, ht, guarded, last_small, delta, out,
                    pivmins, gmax)


def factor_inverse_diagonal_symmetric_kernel(alpha, p, q, a):
    """See the module docstring; ``alpha (B or 1, N)``, ``p (B or 1, N, r)``,
    ``q (B or 1, N or 1, r)``, ``a (B or 1, N or 1, r, r)`` or diagonal transitions
    ``(B or 1, N or 1, r)``, C-contiguous float64."""
    B = max(x.shape[0] for x in (alpha, p, q, a))
    n, r, dt = alpha.shape[1], p.shape[2], np.float64
    d = _buf.empty((B, n), dt)
    qt = _buf.empty((B, n, r), dt)
    ht = _buf.empty((B, n, r), dt)  # scratch of a guarded row's factorization
    delta = _buf.empty((B, n), dt)  # written (zeros first) for rows factored with the guard
    out = _buf.empty((B, n), dt)
    guarded = np.zeros(B, np.int64)
    last_small = np.zeros(B, np.bool_)
    pivmins = np.empty(B, np.float64)
    gmax = np.empty(B, np.float64)
    if a.ndim == 3:  # diagonal transitions
        run = _fused_diag_one if B == 1 else _fused_diag_batch
    else:
        run = _fused_one if B == 1 else _fused_batch
    run(_witness(r), alpha, p, q, a, d, qt, ht, guarded, last_small, delta, out, pivmins, gmax)
    if not guarded.any():
        delta = None
    else:
        delta[guarded == 0] = 0.0  # rows factored without the guard: no pivot changed
    return d, qt, guarded, last_small, delta, out, pivmins, gmax


key_caches_on_constants(globals(), ("SINGULAR_FACTOR", "_EPS", "_TINY"))
