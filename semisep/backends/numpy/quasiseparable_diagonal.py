"""Compiled (numba) kernels for **diagonal transitions** ``a_i = diag(ad_i)`` in symmetric
storage: the LDL^T factorization and the inverse diagonal in O(r^2) per step instead of
O(r^3).

Notation and array conventions: :mod:`semisep.backends.numpy.quasiseparable`; here ``ad``
is ``(B or 1, N or 1, r)``, the diagonals of the transitions (``a_i = diag(ad_i)``).  The
recursions are those of :mod:`semisep.backends.numpy.quasiseparable_symmetric` with the
products by ``a_i`` taken entrywise:

* factorization (``M_0 = 0``, r x r symmetric)::

      u = M_i p_i,  d_i = alpha_i - p_i . u,  w_i[e] = q_i[e] - ad_i[e] u[e],
      qt_i = w_i / d_i,  ht_i = w_i,
      M_{i+1}[e, c] = ad_i[e] M_i[e, c] ad_i[c] + qt_i[e] w_i[c];

* inverse diagonal (``Psi_{N-1} = 0``): with ``v = Psi_i qt_i`` and ``c = qt_i . v``,
  ``G_ii = 1/d_i + c`` and, since ``ah_i = a_i - qt_i p_i^T`` is diagonal plus rank one,
  ``Psi_{i-1} = ah_i^T Psi_i ah_i + p_i p_i^T / d_i`` expands to::

      Psi_{i-1}[e, c] = ad[e] Psi[e, c] ad[c] - ad[e] v[e] p[c] - p[e] v[c] ad[c]
                        + (c + 1/d_i) p[e] p[c].

The pivot guard is the general kernels' (``|d_i| < pivmin`` replaced by ``pivmin d_i/|d_i|``,
counted, its change in ``delta``).  The plain twins: the same kernels of
``quasiseparable_symmetric`` on the expanded transitions ``diag(ad_i)``, and
:mod:`semisep.reference.quasiseparable`.

``factor_symmetric_diagonal_kernel(alpha, p, q, ad, pivmin)``
    ``(d, qt, ht, guarded, last_small, delta)`` as ``factor_symmetric_kernel``.
``inverse_diagonal_symmetric_diagonal_kernel(d, qt, p, ad)``
    ``G (B, N)``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .. import SINGULAR_FACTOR
from .._numba import cache_option, jit, key_caches_on_constants
from . import quasiseparable_rows as _buf
from .quasiseparable_symmetric import _factor_outputs, _rank, _witness

__all__ = ["factor_symmetric_diagonal_kernel", "inverse_diagonal_symmetric_diagonal_kernel",
           "expand"]

_JIT = dict(nogil=True, cache=cache_option(__file__), fastmath=False, error_model="numpy")


def expand(ad):
    """The transition matrices ``diag(ad_i)`` ``(..., N, r, r)`` of diagonals ``ad (..., N, r)``."""
    r = ad.shape[-1]
    return ad[..., :, None] * np.eye(r, dtype=ad.dtype)


@numba.njit(**_JIT)
def _factor_sym_diag_row(w, k, alpha, p, q, ad, pivmin, d, qt, ht, sing_thr, delta):
    n = d.shape[1]
    r = _rank(w, p)
    ka = k if alpha.shape[0] > 1 else 0
    kp = k if p.shape[0] > 1 else 0
    kq = k if q.shape[0] > 1 else 0
    kA = k if ad.shape[0] > 1 else 0
    M = np.zeros((r, r), d.dtype)
    u = np.zeros(r, d.dtype)
    wv = np.zeros(r, d.dtype)
    zero = np.zeros(1, d.dtype)[0]
    guarded = 0
    last_small = False
    step_a = ad.shape[1] > 1
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
        ab = abs(s)
        if ab < pivmin:
            guarded += 1
            raw = s
            if ab == 0:
                s = s * 0 + pivmin
            else:
                s = s * (pivmin / ab)
            delta[k, i] = s - raw
        d[k, i] = s
        inv = 1 / s
        for e in range(r):
            x = q[kq, iq, e] - ad[kA, ia, e] * u[e]
            wv[e] = x
            qt[k, i, e] = x * inv
            ht[k, i, e] = x
        for e in range(r):
            ae = ad[kA, ia, e]
            qe = qt[k, i, e]
            for c in range(e, r):
                x = ae * M[e, c] * ad[kA, ia, c] + qe * wv[c]
                M[e, c] = x
                M[c, e] = x
    return guarded, last_small


@jit(parallel=True, **_JIT)
def _factor_sym_diag_batch(w, alpha, p, q, ad, pivmin, d, qt, ht, guarded, last_small, delta):
    for k0 in prange(d.shape[0]):
        k = np.int64(k0)
        gk, sk = _factor_sym_diag_row(w, k, alpha, p, q, ad, pivmin[k], d, qt, ht,
                                      pivmin[k] * SINGULAR_FACTOR, delta)
        guarded[k] = gk
        last_small[k] = sk


def factor_symmetric_diagonal_kernel(alpha, p, q, ad, pivmin):
    """See the module docstring (``ad`` the transitions' diagonals)."""
    d, qt, ht, guarded, last_small, delta, piv = _factor_outputs(alpha, p, q, ad, pivmin)
    _factor_sym_diag_batch(_witness(p.shape[2]), alpha, p, q, ad, piv, d, qt, ht, guarded,
                           last_small, delta)
    return d, qt, ht, guarded, last_small, delta


@numba.njit(**_JIT)
def _inverse_diagonal_sym_diag_row(w, k, d, qt, p, ad, out):
    n = d.shape[1]
    r = _rank(w, p)
    kd = k if d.shape[0] > 1 else 0
    kq = k if qt.shape[0] > 1 else 0
    kp = k if p.shape[0] > 1 else 0
    kA = k if ad.shape[0] > 1 else 0
    Psi = np.zeros((r, r), out.dtype)
    v = np.zeros(r, out.dtype)
    zero = np.zeros(1, out.dtype)[0]
    step_a = ad.shape[1] > 1
    for i in range(n - 1, -1, -1):
        di = d[kd, i]
        inv = 1 / di
        c = zero
        for e in range(r):
            acc = zero
            for f in range(r):
                acc += Psi[e, f] * qt[kq, i, f]
            v[e] = acc
            c += qt[kq, i, e] * acc
        out[k, i] = inv + c
        if i == 0:
            break
        ia = i if step_a else 0
        cp = c + inv
        for e in range(r):
            ae = ad[kA, ia, e]
            pe = p[kp, i, e]
            ave = ae * v[e]
            for f in range(e, r):
                af = ad[kA, ia, f]
                pf = p[kp, i, f]
                x = ae * Psi[e, f] * af - ave * pf - pe * (v[f] * af) + cp * (pe * pf)
                Psi[e, f] = x
                Psi[f, e] = x


@jit(parallel=True, **_JIT)
def _inverse_diagonal_sym_diag_batch(w, d, qt, p, ad, out):
    for k0 in prange(out.shape[0]):
        _inverse_diagonal_sym_diag_row(w, np.int64(k0), d, qt, p, ad, out)


def inverse_diagonal_symmetric_diagonal_kernel(d, qt, p, ad):
    """``diag(A^{-1}) (B, N)`` from the factors of :func:`factor_symmetric_diagonal_kernel`."""
    B = max(x.shape[0] for x in (d, qt, p, ad))
    out = _buf.empty((B, d.shape[1]), d.dtype)
    _inverse_diagonal_sym_diag_batch(_witness(p.shape[2]), d, qt, p, ad, out)
    return out


key_caches_on_constants(globals(), ("SINGULAR_FACTOR",))
