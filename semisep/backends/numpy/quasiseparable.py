"""Compiled (numba) kernels of the quasiseparable algorithms (docs/mathematics.md, section
"Quasiseparable operators").

Notation for one batch row, ``A = S - z I`` of size N::

    A[i, i] = alpha_i = diag_i - z
    A[i, j] = p_i . (a_{i-1} ... a_{j+1} q_j)          (i > j; empty product = identity)
    A[i, j] = g_j . (b_{j-1} ... b_{i+1} h_i)          (i < j)

``p, q`` (.., N, r_l), ``a`` (.., N, r_l, r_l), ``g, h`` (.., N, r_u), ``b`` (.., N, r_u, r_u);
``a_0`` and ``b_0`` never enter.  ``.`` is the unconjugated dot product.

Array convention of every kernel: a leading batch axis of length ``B`` or 1 (1 = shared by
the batch: the kernels index it at 0, nothing is copied); the transitions ``a``, ``b`` and the
input vectors ``q``, ``h`` may also have length 1 on their N axis (one for every step, e.g. the
identity of the generator form, or ``q = v`` of a kernel).  Inputs are C-contiguous and share
one dtype (real or complex, 32 or 64 bit).

The engine interface at the end (``factor``, ``solve``, ``inverse_diagonal``, ``matvec``,
``pivot_scale``) passes stride-0 N axes as length 1 and, for symmetric storage (the upper form
given as the very arrays of the lower one), runs the symmetric kernels of
:mod:`semisep.backends.numpy.quasiseparable_symmetric` (LDL^T: one symmetric r x r state).
The symmetric kernels and the solve sweeps are compiled per rank up to ``MAX_UNROLLED_RANK``.

The kernels (``prange`` over the batch rows; each row is a sequential O(N) sweep):

``factor_kernel(alpha, p, q, a, g, h, b, pivmin, store_states)``
    The LU factorization ``A = L U`` without row exchanges, ``L = I + tril-form(p, qt, a)``,
    ``U = diag(d) + triu-form(g, ht, b)``, by the state recursion (``M_0 = 0``, r_l x r_u)::

        d_i  = alpha_i - p_i . (M_i g_i)
        qt_i = (q_i - a_i M_i g_i) / d_i
        ht_i = h_i - b_i M_i^T p_i
        M_{i+1} = a_i M_i b_i^T + qt_i ht_i^T

    A pivot with ``|d_i| < pivmin`` is replaced by ``pivmin d_i/|d_i|`` and counted.  Returns
    ``(d, qt, ht, guarded, last_small, M)`` with ``last_small`` True where the last pivot,
    before guarding, is below ``SINGULAR_FACTOR * pivmin`` (``1/d_{N-1} = G_{N-1,N-1}``), and
    ``M`` (B, N, r_l, r_u) the states ``M_i`` when ``store_states`` (else an empty array), and
    ``delta`` (B, N) the guard's change of each pivot (zero where none was guarded): the
    factors are exactly those of ``A + diag(delta)``.
``solve_factored_kernel(d, qt, ht, p, a, g, b, f, transpose)``
    ``A x = f`` (or ``A^T x = f``) from the factors: two sweeps with states of size r x k.
``inverse_diagonal_kernel(d, qt, ht, p, a, g, b)``
    ``G_ii = ((A^{-1})_ii) = (1 + ht_i . (Psi_i qt_i)) / d_i`` by the backward recursion
    ``Psi_{N-1} = 0``, ``Psi_{i-1} = g_i p_i^T / d_i + bh_i^T Psi_i ah_i`` with
    ``ah_i = a_i - qt_i p_i^T`` and ``bh_i = b_i - ht_i g_i^T / d_i`` (the transitions of the
    inverse unit-triangular factors).
``matvec_kernel``, ``bilinear_grad_kernel``
    ``A x`` and the gradient of a bilinear form: :mod:`semisep.backends.numpy.quasiseparable_products`
    (re-exported here).

The plain loop twin of the forward algorithms is :mod:`semisep.reference.quasiseparable`.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .. import SINGULAR_FACTOR
from .._numba import cache_option, jit, key_caches_on_constants
from . import quasiseparable_rows as _rows
from .quasiseparable_diagonal import (
    factor_symmetric_diagonal_kernel,
    inverse_diagonal_symmetric_diagonal_kernel,
)
from .quasiseparable_fused import factor_inverse_diagonal_symmetric_kernel
from .quasiseparable_products import bilinear_grad_kernel, matvec_kernel
from .quasiseparable_rows import log_abs_det, max_abs_rows
from .quasiseparable_symmetric import (
    _c,
    _compact,
    _inverse_diagonal_sym_batch,
    _rank,
    _witness,
    factor_symmetric_kernel,
    pivot_scale,
)

__all__ = [
    "factor_kernel",
    "factor_symmetric_kernel",
    "solve_factored_kernel",
    "inverse_diagonal_kernel",
    "matvec_kernel",
    "bilinear_grad_kernel",
    "factor",
    "factor_inverse_diagonal",
    "solve",
    "inverse_diagonal",
    "matvec",
    "pivot_scale",
    "log_abs_det",
    "max_abs_rows",
]

_JIT = dict(nogil=True, cache=cache_option(__file__), fastmath=False, error_model="numpy")

# --------------------------------------------------------------------------------------------
# the factorization
# --------------------------------------------------------------------------------------------
@numba.njit(**_JIT)
def _factor_row(wl, wu, k, alpha, p, q, a, g, h, b, pivmin, d, qt, ht, Ms, store, sing_thr,
                delta):
    n = d.shape[1]
    rl = _rank(wl, p)
    ru = _rank(wu, g)
    ka = k if alpha.shape[0] > 1 else 0
    kp = k if p.shape[0] > 1 else 0
    kq = k if q.shape[0] > 1 else 0
    kA = k if a.shape[0] > 1 else 0
    kg = k if g.shape[0] > 1 else 0
    kh = k if h.shape[0] > 1 else 0
    kB = k if b.shape[0] > 1 else 0
    M = np.zeros((rl, ru), d.dtype)
    T = np.zeros((rl, ru), d.dtype)
    u = np.zeros(rl, d.dtype)
    v = np.zeros(ru, d.dtype)
    zero = np.zeros(1, d.dtype)[0]
    guarded = 0
    last_small = False
    for i in range(n):
        ia = i if a.shape[1] > 1 else 0
        ib = i if b.shape[1] > 1 else 0
        iq = i if q.shape[1] > 1 else 0
        ih = i if h.shape[1] > 1 else 0
        s = alpha[ka, i] * 1
        for r in range(rl):
            acc = zero
            for c in range(ru):
                acc += M[r, c] * g[kg, i, c]
            u[r] = acc
            s -= p[kp, i, r] * acc
        for c in range(ru):
            acc = zero
            for r in range(rl):
                acc += M[r, c] * p[kp, i, r]
            v[c] = acc
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
        for r in range(rl):
            acc = q[kq, iq, r] * 1
            for c in range(rl):
                acc -= a[kA, ia, r, c] * u[c]
            qt[k, i, r] = acc * inv
        for c in range(ru):
            acc = h[kh, ih, c] * 1
            for e in range(ru):
                acc -= b[kB, ib, c, e] * v[e]
            ht[k, i, c] = acc
        if store:
            for r in range(rl):
                for c in range(ru):
                    Ms[k, i, r, c] = M[r, c]
        # M <- a_i M b_i^T + qt_i ht_i^T
        for r in range(rl):
            for c in range(ru):
                acc = zero
                for e in range(rl):
                    acc += a[kA, ia, r, e] * M[e, c]
                T[r, c] = acc
        for r in range(rl):
            for c in range(ru):
                acc = qt[k, i, r] * ht[k, i, c]
                for e in range(ru):
                    acc += T[r, e] * b[kB, ib, c, e]
                M[r, c] = acc
    return guarded, last_small


@jit(parallel=True, **_JIT)
def _factor_batch(wl, wu, alpha, p, q, a, g, h, b, pivmin, d, qt, ht, Ms, store, guarded,
                  last_small, delta):
    for k0 in prange(d.shape[0]):
        k = np.int64(k0)
        thr = pivmin[k] * SINGULAR_FACTOR
        gk, sk = _factor_row(wl, wu, k, alpha, p, q, a, g, h, b, pivmin[k], d, qt, ht, Ms, store,
                             thr, delta)
        guarded[k] = gk
        last_small[k] = sk


def factor_kernel(alpha, p, q, a, g, h, b, pivmin, store_states=False):
    """See the module docstring; ``pivmin`` (B,) real; returns
    ``(d (B, N), qt (B, N, r_l), ht (B, N, r_u), guarded (B,), last_small (B,), M, delta)``."""
    B = max(x.shape[0] for x in (alpha, p, q, a, g, h, b))
    n = alpha.shape[1]
    rl, ru = p.shape[2], g.shape[2]
    dt = alpha.dtype
    d = np.empty((B, n), dt)
    qt = np.empty((B, n, rl), dt)
    ht = np.empty((B, n, ru), dt)
    Ms = np.empty((B, n if store_states else 0, rl, ru), dt)
    guarded = np.zeros(B, np.int64)
    last_small = np.zeros(B, np.bool_)
    piv = np.full(B, pivmin, np.float64)  # writeable, as every kernel input (one signature)
    delta = np.zeros((B, n), dt)  # written where a pivot is guarded only
    _factor_batch((), (), alpha, p, q, a, g, h, b, piv, d, qt, ht, Ms,
                  bool(store_states), guarded, last_small, delta)
    return d, qt, ht, guarded, last_small, Ms, delta


# --------------------------------------------------------------------------------------------
# solves from the factors
# --------------------------------------------------------------------------------------------
@numba.njit(**_JIT)
def _sweeps_row(w, k, d, P1, Q1, A1, div1, P2, Q2, A2, f, x):
    """Forward sweep ``y_i = (f_i - P1_i . phi) [/ d_i]``, ``phi <- A1_i phi + Q1_i y_i``;
    backward sweep ``x_i = (y_i - P2_i . psi) [/ d_i]``, ``psi <- A2_i^T psi + Q2_i x_i``;
    the division by ``d_i`` in the forward sweep when ``div1``, else in the backward one."""
    n = x.shape[1]
    kk = x.shape[2]
    r1 = _rank(w, P1)
    r2 = _rank(w, P2)
    kd = k if d.shape[0] > 1 else 0
    k1p = k if P1.shape[0] > 1 else 0
    k1q = k if Q1.shape[0] > 1 else 0
    k1a = k if A1.shape[0] > 1 else 0
    k2p = k if P2.shape[0] > 1 else 0
    k2q = k if Q2.shape[0] > 1 else 0
    k2a = k if A2.shape[0] > 1 else 0
    kf = k if f.shape[0] > 1 else 0
    phi = np.zeros((r1, kk), x.dtype)
    tmp1 = np.zeros((r1, kk), x.dtype)
    for i in range(n):
        i1 = i if A1.shape[1] > 1 else 0
        inv = 1 / d[kd, i] if div1 else d[kd, i] * 0 + 1
        for c in range(kk):
            acc = f[kf, i, c] * 1
            for r in range(r1):
                acc -= P1[k1p, i, r] * phi[r, c]
            x[k, i, c] = acc * inv
        for r in range(r1):
            for c in range(kk):
                acc = Q1[k1q, i, r] * x[k, i, c]
                for e in range(r1):
                    acc += A1[k1a, i1, r, e] * phi[e, c]
                tmp1[r, c] = acc
        for r in range(r1):
            for c in range(kk):
                phi[r, c] = tmp1[r, c]
    psi = np.zeros((r2, kk), x.dtype)
    tmp2 = np.zeros((r2, kk), x.dtype)
    for i in range(n - 1, -1, -1):
        i2 = i if A2.shape[1] > 1 else 0
        inv = d[kd, i] * 0 + 1 if div1 else 1 / d[kd, i]
        for c in range(kk):
            acc = x[k, i, c] * 1
            for r in range(r2):
                acc -= P2[k2p, i, r] * psi[r, c]
            x[k, i, c] = acc * inv
        for r in range(r2):
            for c in range(kk):
                acc = Q2[k2q, i, r] * x[k, i, c]
                for e in range(r2):
                    acc += A2[k2a, i2, e, r] * psi[e, c]
                tmp2[r, c] = acc
        for r in range(r2):
            for c in range(kk):
                psi[r, c] = tmp2[r, c]


@numba.njit(**_JIT)
def _sweeps_row_vector(w, k, d, P1, Q1, A1, div1, P2, Q2, A2, f, x):
    """:func:`_sweeps_row` for one right-hand side (``k = 1``), with the states as vectors and
    each ``x_i`` kept in a register between its two uses (the same operations, in the same
    order)."""
    n = x.shape[1]
    r1 = _rank(w, P1)
    r2 = _rank(w, P2)
    kd = k if d.shape[0] > 1 else 0
    k1p = k if P1.shape[0] > 1 else 0
    k1q = k if Q1.shape[0] > 1 else 0
    k1a = k if A1.shape[0] > 1 else 0
    k2p = k if P2.shape[0] > 1 else 0
    k2q = k if Q2.shape[0] > 1 else 0
    k2a = k if A2.shape[0] > 1 else 0
    kf = k if f.shape[0] > 1 else 0
    phi = np.zeros(r1, x.dtype)
    tmp1 = np.zeros(r1, x.dtype)
    step1 = A1.shape[1] > 1
    for i in range(n):
        i1 = i if step1 else 0
        inv = 1 / d[kd, i] if div1 else d[kd, i] * 0 + 1
        acc = f[kf, i, 0] * 1
        for r in range(r1):
            acc -= P1[k1p, i, r] * phi[r]
        xi = acc * inv
        x[k, i, 0] = xi
        for r in range(r1):
            acc = Q1[k1q, i, r] * xi
            for e in range(r1):
                acc += A1[k1a, i1, r, e] * phi[e]
            tmp1[r] = acc
        for r in range(r1):
            phi[r] = tmp1[r]
    psi = np.zeros(r2, x.dtype)
    tmp2 = np.zeros(r2, x.dtype)
    step2 = A2.shape[1] > 1
    for i in range(n - 1, -1, -1):
        i2 = i if step2 else 0
        inv = d[kd, i] * 0 + 1 if div1 else 1 / d[kd, i]
        acc = x[k, i, 0] * 1
        for r in range(r2):
            acc -= P2[k2p, i, r] * psi[r]
        xi = acc * inv
        x[k, i, 0] = xi
        for r in range(r2):
            acc = Q2[k2q, i, r] * xi
            for e in range(r2):
                acc += A2[k2a, i2, e, r] * psi[e]
            tmp2[r] = acc
        for r in range(r2):
            psi[r] = tmp2[r]


@jit(parallel=True, **_JIT)
def _sweeps_batch(w, d, P1, Q1, A1, div1, P2, Q2, A2, f, x):
    for k0 in prange(x.shape[0]):
        k = np.int64(k0)
        if x.shape[2] == 1:
            _sweeps_row_vector(w, k, d, P1, Q1, A1, div1, P2, Q2, A2, f, x)
        else:
            _sweeps_row(w, k, d, P1, Q1, A1, div1, P2, Q2, A2, f, x)


def solve_factored_kernel(d, qt, ht, p, a, g, b, f, transpose=False):
    """``A^{-1} f`` (``A^{-T} f`` when ``transpose``) for ``f`` (B or 1, N, k) from the factors
    of :func:`factor_kernel`; returns x (B, N, k).

    ``A = L U``: ``L y = f`` is ``y_i = f_i - p_i . phi_i``, ``phi_{i+1} = a_i phi_i + qt_i y_i``;
    ``U x = y`` is ``x_i = (y_i - ht_i . psi_i)/d_i``, ``psi_{i-1} = b_i^T psi_i + g_i x_i``.
    ``A^T = U^T L^T``: the roles swap, ``(g, ht, b)`` forward with the division, ``(qt, p, a)``
    backward."""
    B = max(x.shape[0] for x in (d, qt, ht, p, a, g, b, f))
    x = _rows.empty((B,) + f.shape[1:], d.dtype)
    w = _witness(p.shape[2]) if p.shape[2] == g.shape[2] else ()
    if transpose:
        _sweeps_batch(w, d, g, ht, b, True, qt, p, a, f, x)
    else:
        _sweeps_batch(w, d, p, qt, a, False, ht, g, b, f, x)
    return x


# --------------------------------------------------------------------------------------------
# the inverse diagonal
# --------------------------------------------------------------------------------------------
@numba.njit(**_JIT)
def _inverse_diagonal_row(wl, wu, k, d, qt, ht, p, a, g, b, out):
    n = d.shape[1]
    rl = _rank(wl, p)
    ru = _rank(wu, g)
    kd = k if d.shape[0] > 1 else 0
    kq = k if qt.shape[0] > 1 else 0
    kh = k if ht.shape[0] > 1 else 0
    kp = k if p.shape[0] > 1 else 0
    kA = k if a.shape[0] > 1 else 0
    kg = k if g.shape[0] > 1 else 0
    kB = k if b.shape[0] > 1 else 0
    Psi = np.zeros((ru, rl), out.dtype)
    T = np.zeros((ru, rl), out.dtype)
    ah = np.zeros((rl, rl), out.dtype)
    bh = np.zeros((ru, ru), out.dtype)
    for i in range(n - 1, -1, -1):
        ia = i if a.shape[1] > 1 else 0
        ib = i if b.shape[1] > 1 else 0
        di = d[kd, i]
        inv = 1 / di
        # G_ii = (1 + ht_i . Psi_i qt_i) / d_i
        s = di * 0 + 1
        for c in range(ru):
            acc = di * 0
            for r in range(rl):
                acc += Psi[c, r] * qt[kq, i, r]
            s += ht[kh, i, c] * acc
        out[k, i] = s * inv
        if i == 0:
            break
        # Psi_{i-1} = g_i p_i^T / d_i + bh_i^T Psi_i ah_i
        for r in range(rl):
            for c in range(rl):
                ah[r, c] = a[kA, ia, r, c] - qt[kq, i, r] * p[kp, i, c]
        for r in range(ru):
            w_r = ht[kh, i, r] * inv
            for c in range(ru):
                bh[r, c] = b[kB, ib, r, c] - w_r * g[kg, i, c]
        for r in range(ru):  # T = Psi ah
            for c in range(rl):
                acc = di * 0
                for e in range(rl):
                    acc += Psi[r, e] * ah[e, c]
                T[r, c] = acc
        for r in range(ru):  # Psi = bh^T T + g p^T / d
            for c in range(rl):
                acc = g[kg, i, r] * p[kp, i, c] * inv
                for e in range(ru):
                    acc += bh[e, r] * T[e, c]
                Psi[r, c] = acc


@jit(parallel=True, **_JIT)
def _inverse_diagonal_batch(wl, wu, d, qt, ht, p, a, g, b, out):
    for k0 in prange(out.shape[0]):
        k = np.int64(k0)
        _inverse_diagonal_row(wl, wu, k, d, qt, ht, p, a, g, b, out)


def inverse_diagonal_kernel(d, qt, ht, p, a, g, b):
    """``diag(A^{-1})`` (B, N) from the factors of :func:`factor_kernel`."""
    B = max(x.shape[0] for x in (d, qt, ht, p, a, g, b))
    out = np.empty((B, d.shape[1]), d.dtype)
    _inverse_diagonal_batch((), (), d, qt, ht, p, a, g, b, out)
    return out


# --------------------------------------------------------------------------------------------
# the engine interface used by semisep.quasiseparable (NumPy arrays in the kernel layout)
# --------------------------------------------------------------------------------------------
def _symmetric(p, q, a, g, h, b):
    """Symmetric storage: the upper form is the lower one (the same arrays)."""
    return p is g and q is h and a is b


#: the engine takes diagonal transitions ``a (rows, N, r)`` in symmetric storage in
#: :func:`factor`, :func:`factor_inverse_diagonal` and :func:`inverse_diagonal` from this rank
#: on (below it the rank-specialised matrix kernels, and at rank 2 the one-call inverse
#: diagonal, are as fast or faster)
DIAGONAL_MIN_RANK = 3


def factor(alpha, p, q, a, g, h, b, pivmin):
    """``(d, qt, ht, guarded, last_small, delta)``; see :func:`factor_kernel` (and
    :func:`factor_symmetric_kernel` when ``(g, h, b)`` are the arrays ``(p, q, a)``;
    ``a (rows, N, r)``: diagonal transitions, symmetric storage only,
    :mod:`~semisep.backends.numpy.quasiseparable_diagonal`)."""
    if a.ndim == 3:
        if not _symmetric(p, q, a, g, h, b):
            raise ValueError("diagonal transitions are taken in symmetric storage only")
        return factor_symmetric_diagonal_kernel(_c(alpha), _c(p), _compact(q), _compact(a),
                                                pivmin)
    if _symmetric(p, q, a, g, h, b):
        return factor_symmetric_kernel(_c(alpha), _c(p), _compact(q), _compact(a), pivmin)
    d, qt, ht, guarded, last_small, _, delta = factor_kernel(
        _c(alpha), _c(p), _compact(q), _compact(a), _c(g), _compact(h), _compact(b), pivmin
    )
    return d, qt, ht, guarded, last_small, delta


def factor_inverse_diagonal(alpha, p, q, a, g, h, b):
    """The factorization and its inverse diagonal in one compiled call
    (:mod:`semisep.backends.numpy.quasiseparable_fused`), pivot threshold included, for
    symmetric storage of real float64 data (``a`` matrices or diagonals) with at least
    ``quasiseparable_rows.MIN_PARALLEL_ELEMENTS`` elements (rows x N; smaller calls are left to
    the separate kernels, which keeps the compiled variants few): ``(d, qt, guarded,
    last_small, delta, G, pivmin, gmax)`` (``delta`` None where no pivot was guarded, ``gmax``
    the rows' ``max |G_ii|``); None otherwise (the caller runs the separate kernels)."""
    rows = max(x.shape[0] for x in (alpha, p, q, a))
    if (rows * alpha.shape[1] < _rows.MIN_PARALLEL_ELEMENTS or not _symmetric(p, q, a, g, h, b)
            or np.result_type(alpha, p, q, a) != np.float64):
        return None
    return factor_inverse_diagonal_symmetric_kernel(_c(alpha), _c(p), _compact(q), _compact(a))


def solve(d, qt, ht, p, a, g, b, f, transpose=False):
    """``A^{-1} f`` (``A^{-T} f``) from the factors; see :func:`solve_factored_kernel`."""
    return solve_factored_kernel(*(_c(x) for x in (d, qt, ht, p)), _compact(a), _c(g),
                                 _compact(b), _c(f), transpose)


def inverse_diagonal(d, qt, ht, p, a, g, b):
    """``diag(A^{-1})``; see :func:`inverse_diagonal_kernel`.  ``(g, b)`` the arrays ``(p, a)``
    means factors of a symmetric-storage matrix (from :func:`factor` with ``(g, h, b)`` the
    arrays ``(p, q, a)``, so ``ht = d qt``): the symmetric recursion runs."""
    if p is g and a is b and a.ndim == 3:  # diagonal transitions
        return inverse_diagonal_symmetric_diagonal_kernel(_c(d), _c(qt), _c(p), _compact(a))
    if p is g and a is b:
        B = max(x.shape[0] for x in (d, qt, p, a))
        out = _rows.empty((B, d.shape[1]), d.dtype)
        _inverse_diagonal_sym_batch(_witness(p.shape[2]), _c(d), _c(qt), _c(p), _compact(a), out)
        return out
    return inverse_diagonal_kernel(*(_c(x) for x in (d, qt, ht, p)), _compact(a), _c(g),
                                   _compact(b))


def matvec(alpha, p, q, a, g, h, b, x):
    """``A x``; see :func:`matvec_kernel`."""
    return matvec_kernel(_c(alpha), _c(p), _compact(q), _compact(a), _c(g), _compact(h),
                         _compact(b), _c(x))


key_caches_on_constants(globals(), ("SINGULAR_FACTOR",))
