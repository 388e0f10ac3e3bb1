"""Scalar steps of the compiled kernels (the NumPy backend's innermost layer).

Each helper is a plain Python function (what runs under ``NUMBA_DISABLE_JIT=1``, and what the
FLOP tests count) with a numba ``overload`` that replaces it in compiled code; both compute the
same thing.  The guarded reciprocal (``1/guard(t)`` with the pivot guard of
docs/mathematics.md), the checked reciprocal (the singularity certificate's test), one sweep
step and one combining step of the two-sided resolvent sweep, the pivoted elimination step of
LAPACK ``?gtsv`` and the renormalised product of the logdet live here, written once and used by
every kernel module.  Only the hot paths' fast halves are inlined in numba's IR; the rare
guarded / tiny / huge pivot branches are separate compiled functions that LLVM leaves out of
line (inlining them multiplies the compile time per signature for the same machine code).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.extending import overload

from .._numba import cache_option, configure_threading

configure_threading()  # numba's threading layer: fork- and thread-safe (backends/_numba.py)
_JIT = dict(nogil=True, cache=cache_option(__file__), fastmath=False, error_model="numpy")
#: Globals the kernels read that are defined in another file.  numba freezes a global's value
#: into the compiled code, and its on-disk cache is keyed on the source file's time stamp and
#: each function's bytecode only: a cached kernel would keep an old value while the NumPy twins
#: read the new one.  These values are part of every kernel's cache key (see each module's end).
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
    rows were exchanged, and what is left of row ``i+1`` at columns ``i+1, i+2``.

    Without an exchange the new pivot is ``dnext - (dl dui) rinv``: the product ``dl dui``
    does not wait for the reciprocal, so the chain from one pivot to the next is the
    reciprocal and one multiply-subtract (the multiplier ``fact = dl rinv``, which only the
    right-hand sides need, is formed beside it)."""
    zero = dnext * 0
    if _cabs1(di) >= _cabs1(dl):
        rinv = _recip(di)
        if dl != 0:
            return di, rinv, dui, zero, dl * rinv, False, dnext - (dl * dui) * rinv, dunext
        return di, rinv, dui, zero, zero, False, dnext - zero * dui, dunext
    rinv = _recip(dl)
    fact = di * rinv
    return dl, rinv, dnext, dunext, fact, True, dui - fact * dnext, -fact * dunext


@numba.njit(**_JIT)
def _gtsv_pivot_step(di, dui, dl, dnext, dunext):
    """:func:`_gtsv_factor_step` without what only a solve needs (``rinv``, U's row, the
    multiplier): ``(u, swap, dnext', dunext')``, the same values (the log-determinant's
    elimination)."""
    zero = dnext * 0
    if _cabs1(di) >= _cabs1(dl):
        if dl != 0:
            return di, False, dnext - (dl * dui) * _recip(di), dunext
        return di, False, dnext - zero * dui, dunext
    fact = di * _recip(dl)
    return dl, True, dui - fact * dnext, -fact * dunext
