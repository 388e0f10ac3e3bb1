"""The elementary kernels: Exp, Matern32, Matern52, Cosine, SHO, Celerite.

Parameter names and meanings follow tinygp's ``tinygp.kernels.quasisep``.  Each kernel gives
its closed form ``k(tau)`` (``tau = |t - t'| >= 0``) and its state-space form
``k(tau) = u^T Phi(tau) v`` with a transition ``Phi(dt)`` evaluated from the step ``dt >= 0``
only; the states are scaled so that the stationary covariance is O(1) (dimensionless entries).
See :mod:`semisep.kernels` for how ``(u, v, Phi)`` become the generators ``(p, q, a)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._core import _NS, SQRT3, SQRT5, Kernel, _compiled_parts, _scalars, check_parameter

__all__ = ["Exp", "Matern32", "Matern52", "Cosine", "SHO", "Celerite"]

def _col(x: Any) -> Any:
    return x[..., None, None]


def _first_row(ns: _NS, sig: Any, rows: list[list[Any]]) -> Any:
    """``p = a^T u`` for ``u = sigma e_0``: ``sigma`` times the first row of ``a``, formed from
    the row's entries (never read back from ``a``, which later summands may write next to:
    torch's autograd would see the in-place writes)."""
    return sig[..., None, None] * ns.stack(list(rows[0]), -1)


class Exp(Kernel):
    r"""Exponential (Ornstein-Uhlenbeck) kernel, order ``r = 1``.

    ``k(tau) = sigma^2 exp(-tau / scale)``.

    State-space form: ``Phi(dt) = exp(-dt / scale)`` (1 x 1), ``u = v = sigma``; generators
    ``a_i = exp(-dt_i / scale)``, ``p_i = sigma a_i``, ``q_j = sigma``.

    Parameters
    ----------
    scale : ``> 0``, scalar or array (batch ``...``); the length scale ``ell``.
    sigma : finite, scalar or array, default 1; the amplitude.
    """

    _param_names = ("scale", "sigma")

    def __init__(self, scale: Any, sigma: Any = 1.0) -> None:
        self.scale = check_parameter("scale", scale, "Exp", positive=True)
        self.sigma = check_parameter("sigma", sigma, "Exp")

    @property
    def order(self) -> int:
        return 1

    def _parts(self, dt: Any, ns: _NS, out: Any = None) -> tuple[Any, Any, Any, Any]:
        sig = self._p("sigma", ns)
        e = ns.exp(-dt / self._p("scale", ns, 1))
        a = ns.matrix([[e]], out)
        return sig * sig, (sig[..., None] * e)[..., None], sig[..., None], a

    def _k(self, tau: Any, ns: _NS) -> Any:
        sig = self._p("sigma", ns, 2)
        return sig * sig * ns.exp(-tau / self._p("scale", ns, 2))


class Matern32(Kernel):
    r"""Matern-3/2 kernel, order ``r = 2``.

    ``k(tau) = sigma^2 (1 + f tau) exp(-f tau)``, ``f = sqrt(3) / scale``.

    State-space form (state ``(x, x'/f)``, stationary covariance ``I``), with ``y = f dt``:
    ``Phi(dt) = exp(-y) [[1 + y, y], [-y, 1 - y]]``, ``u = v = (sigma, 0)``.

    Parameters
    ----------
    scale : ``> 0``, scalar or array; the length scale ``ell``.
    sigma : finite, scalar or array, default 1.
    """

    _param_names = ("scale", "sigma")

    def __init__(self, scale: Any, sigma: Any = 1.0) -> None:
        self.scale = check_parameter("scale", scale, "Matern32", positive=True)
        self.sigma = check_parameter("sigma", sigma, "Matern32")

    @property
    def order(self) -> int:
        return 2

    def _parts(self, dt: Any, ns: _NS, out: Any = None) -> tuple[Any, Any, Any, Any]:
        sig = self._p("sigma", ns)
        y = SQRT3 * dt / self._p("scale", ns, 1)
        e = ns.exp(-y)
        fast = _compiled_parts("matern32", ns, self._params(), (e, y), sig, out)
        if fast is not None:
            return sig * sig, fast[1], ns.stack([sig, ns.asarray(0.0)], -1), fast[0]
        ey = e * y
        rows = [[e + ey, ey], [-ey, e - ey]]
        a = ns.matrix(rows, out)
        u = ns.stack([sig, ns.asarray(0.0)], -1)
        return sig * sig, _first_row(ns, sig, rows), u, a

    def _k(self, tau: Any, ns: _NS) -> Any:
        sig = self._p("sigma", ns, 2)
        y = SQRT3 * tau / self._p("scale", ns, 2)
        return sig * sig * (1 + y) * ns.exp(-y)


# Matern-5/2 in the scaled state (x, x'/f, x''/f^2): F = f M, M nilpotent after the shift by I.
_M52 = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [-1.0, -3.0, -2.0]])
_M52_SQ = _M52 @ _M52


class Matern52(Kernel):
    r"""Matern-5/2 kernel, order ``r = 3``.

    ``k(tau) = sigma^2 (1 + f tau + f^2 tau^2 / 3) exp(-f tau)``, ``f = sqrt(5) / scale``.

    State-space form (state ``(x, x'/f, x''/f^2)``), with ``y = f dt`` and
    ``M = [[1, 1, 0], [0, 1, 1], [-1, -3, -2]]`` (``M^3 = 0``):
    ``Phi(dt) = exp(-y) (I + y M + y^2 M^2 / 2)``, ``u = (sigma, 0, 0)``,
    ``v = P u = sigma (1, 0, -1/3)`` with the stationary covariance
    ``P = [[1, 0, -1/3], [0, 1/3, 0], [-1/3, 0, 1]]``.

    Parameters
    ----------
    scale : ``> 0``, scalar or array; the length scale ``ell``.
    sigma : finite, scalar or array, default 1.
    """

    _param_names = ("scale", "sigma")

    def __init__(self, scale: Any, sigma: Any = 1.0) -> None:
        self.scale = check_parameter("scale", scale, "Matern52", positive=True)
        self.sigma = check_parameter("sigma", sigma, "Matern52")

    @property
    def order(self) -> int:
        return 3

    def _parts(self, dt: Any, ns: _NS, out: Any = None) -> tuple[Any, Any, Any, Any]:
        sig = self._p("sigma", ns)
        zero = ns.asarray(0.0)
        y = SQRT5 * dt / self._p("scale", ns, 1)
        if _scalars(*self._params()):
            fast = _compiled_parts("matern52", ns, self._params(), (ns.exp(-y), y), sig, out)
            if fast is not None:
                return sig * sig, fast[1], ns.stack([sig, zero, -sig / 3], -1), fast[0]
        y = _col(y)
        phi = ns.exp(-y) * (ns.const(np.eye(3)) + y * ns.const(_M52) + (0.5 * y * y) * ns.const(_M52_SQ))
        a = phi
        if out is not None:
            out[...] = phi
            a = out
        v = ns.stack([sig, zero, -sig / 3], -1)
        return sig * sig, sig[..., None, None] * phi[..., 0, :], v, a

    def _k(self, tau: Any, ns: _NS) -> Any:
        sig = self._p("sigma", ns, 2)
        y = SQRT5 * tau / self._p("scale", ns, 2)
        return sig * sig * (1 + y + y * y / 3) * ns.exp(-y)


class Cosine(Kernel):
    r"""Cosine kernel, order ``r = 2`` (positive semidefinite of rank 2: add noise to solve).

    ``k(tau) = sigma^2 cos(2 pi tau / scale)``.

    State-space form: ``Phi(dt)`` the rotation by ``theta = 2 pi dt / scale``,
    ``[[cos theta, -sin theta], [sin theta, cos theta]]`` (orthogonal: no growth),
    ``u = v = (sigma, 0)``.

    Parameters
    ----------
    scale : ``> 0``, scalar or array; the period.
    sigma : finite, scalar or array, default 1.
    """

    _param_names = ("scale", "sigma")

    def __init__(self, scale: Any, sigma: Any = 1.0) -> None:
        self.scale = check_parameter("scale", scale, "Cosine", positive=True)
        self.sigma = check_parameter("sigma", sigma, "Cosine")

    @property
    def order(self) -> int:
        return 2

    def _parts(self, dt: Any, ns: _NS, out: Any = None) -> tuple[Any, Any, Any, Any]:
        sig = self._p("sigma", ns)
        th = (2 * math.pi) * dt / self._p("scale", ns, 1)
        c, s = ns.cos(th), ns.sin(th)
        fast = _compiled_parts("cosine", ns, self._params(), (c, s), sig, out)
        if fast is not None:
            return sig * sig, fast[1], ns.stack([sig, ns.asarray(0.0)], -1), fast[0]
        rows = [[c, -s], [s, c]]
        a = ns.matrix(rows, out)
        u = ns.stack([sig, ns.asarray(0.0)], -1)
        return sig * sig, _first_row(ns, sig, rows), u, a

    def _k(self, tau: Any, ns: _NS) -> Any:
        sig = self._p("sigma", ns, 2)
        return sig * sig * ns.cos((2 * math.pi) * tau / self._p("scale", ns, 2))


def _sho_cs(s: Any, alpha: Any, ns: _NS) -> tuple[Any, Any]:
    """``(e^{-alpha s} C, e^{-alpha s} S)`` for ``exp(s G) = e^{-alpha s} (C I + S K)``.

    ``beta^2 = alpha^2 - 1``; ``C = cosh(beta s)``, ``S = sinh(beta s) / beta`` (both analytic in
    ``beta^2``: ``cos``/``sin`` for ``beta^2 < 0``, ``1``/``s`` at ``beta^2 = 0``).  Evaluated
    without overflow for any ``s >= 0``: for ``beta^2 > 0`` the slow rate
    ``alpha - beta = 1 / (alpha + beta)`` is formed without cancellation and
    ``sinh`` via ``expm1``.  At ``beta^2 = 0`` exactly the first-order Taylor term in ``beta^2``
    is kept (it vanishes in value) so that first derivatives in ``alpha`` are exact there too.
    Unused branches see safe arguments (no inf/NaN in any gradient).
    """
    b2 = alpha * alpha - 1
    over = b2 > 0
    under = b2 < 0
    one = ns.asarray(1.0)
    # one regime for every parameter (the usual case): evaluate that branch only
    all_over, all_under = bool(over.all()), bool(under.all())
    all_crit = not bool(over.any()) and not bool(under.any())

    def overdamped():
        b = ns.sqrt(ns.where(over, b2, one))
        slow = ns.exp(-s / (alpha + b))
        em = ns.expm1(-2 * b * s)
        return slow * (1 + 0.5 * em), slow * (-0.5 * em) / b

    def underdamped():
        g = ns.sqrt(ns.where(under, -b2, one))
        e = ns.exp(-alpha * s)
        return e * ns.cos(g * s), e * ns.sin(g * s) / g

    def critical():
        e = ns.exp(-alpha * s)
        return e * (1 + b2 * s * s / 2), e * s * (1 + b2 * s * s / 6)

    if all_over:
        return overdamped()
    if all_under:
        return underdamped()
    if all_crit:
        return critical()
    (ec_o, es_o), (ec_u, es_u), (ec_c, es_c) = overdamped(), underdamped(), critical()
    ec = ns.where(over, ec_o, ns.where(under, ec_u, ec_c))
    es = ns.where(over, es_o, ns.where(under, es_u, es_c))
    return ec, es


class SHO(Kernel):
    r"""Stochastically driven, damped simple harmonic oscillator, order ``r = 2``.

    With ``x = omega tau / (2 Q)``:

    * ``Q < 1/2`` (overdamped), ``f = sqrt(1 - 4 Q^2)``:
      ``k(tau) = sigma^2 exp(-x) (cosh(f x) + sinh(f x) / f)``;
    * ``Q = 1/2`` (critically damped): ``k(tau) = sigma^2 exp(-omega tau) (1 + omega tau)``;
    * ``Q > 1/2`` (underdamped), ``g = sqrt(4 Q^2 - 1)``:
      ``k(tau) = sigma^2 exp(-x) (cos(g x) + sin(g x) / g)``.

    State-space form (state ``(x, x'/omega)``, stationary covariance ``I``): with
    ``s = omega dt``, ``alpha = 1 / (2 Q)``, ``beta^2 = alpha^2 - 1``,
    ``Phi(dt) = e^{-alpha s} (C I + S K)``, ``K = [[alpha, 1], [-1, -alpha]]`` (``K^2 = beta^2 I``),
    ``C = cosh(beta s)``, ``S = sinh(beta s) / beta`` (``cos``/``sin`` for ``Q > 1/2``,
    ``1``/``s`` at ``Q = 1/2``); ``u = v = (sigma, 0)``.  The three regimes are evaluated in
    decaying form (the overdamped slow rate is ``1 / (alpha + beta)``, never ``alpha - beta``).

    Parameters
    ----------
    omega : ``> 0``, scalar or array; the undamped angular frequency.
    quality : ``> 0``, scalar or array; the quality factor ``Q``.
    sigma : finite, scalar or array, default 1.
    """

    _param_names = ("omega", "quality", "sigma")

    def __init__(self, omega: Any, quality: Any, sigma: Any = 1.0) -> None:
        self.omega = check_parameter("omega", omega, "SHO", positive=True)
        self.quality = check_parameter("quality", quality, "SHO", positive=True)
        self.sigma = check_parameter("sigma", sigma, "SHO")

    @property
    def order(self) -> int:
        return 2

    def _parts(self, dt: Any, ns: _NS, out: Any = None) -> tuple[Any, Any, Any, Any]:
        sig = self._p("sigma", ns)
        alpha = 0.5 / self._p("quality", ns, 1)
        ec, es = _sho_cs(self._p("omega", ns, 1) * dt, alpha, ns)
        fast = _compiled_parts("sho", ns, self._params(), (ec, es), sig, out, alpha)
        if fast is not None:
            return sig * sig, fast[1], ns.stack([sig, ns.asarray(0.0)], -1), fast[0]
        aes = alpha * es
        rows = [[ec + aes, es], [-es, ec - aes]]
        a = ns.matrix(rows, out)
        u = ns.stack([sig, ns.asarray(0.0)], -1)
        return sig * sig, _first_row(ns, sig, rows), u, a

    def _k(self, tau: Any, ns: _NS) -> Any:
        # The closed forms above, written term by term (independent of the generators).
        sig = self._p("sigma", ns, 2)
        w, q = self._p("omega", ns, 2), self._p("quality", ns, 2)
        one = ns.asarray(1.0)
        x = w * tau / (2 * q)
        over, under = q < 0.5, q > 0.5
        # overdamped: e^{-x} cosh(fx) = (e^{-(1-f) x} + e^{-(1+f) x}) / 2 and
        #   e^{-x} sinh(fx) / f = e^{-(1-f) x} (1 - e^{-2fx}) / (2f),  1 - f = 4 Q^2 / (1 + f)
        f = ns.sqrt(ns.where(over, 1 - 4 * q * q, one))
        slow = ns.exp(-(4 * q * q / (1 + f)) * x)
        k_o = 0.5 * (slow + ns.exp(-(1 + f) * x)) - slow * ns.expm1(-2 * f * x) / (2 * f)
        g = ns.sqrt(ns.where(under, 4 * q * q - 1, one))
        k_u = ns.exp(-x) * (ns.cos(g * x) + ns.sin(g * x) / g)
        # critical: exp(-x) (1 + x) at Q = 1/2, plus the first-order term in f^2 = 1 - 4 Q^2 of
        # the series cosh(fx) + sinh(fx)/f (zero in value, it carries the exact d/dQ there)
        f2 = 1 - 4 * q * q
        k_c = ns.exp(-x) * (1 + x + f2 * (x * x / 2 + x * x * x / 6))
        return sig * sig * ns.where(over, k_o, ns.where(under, k_u, k_c))


class Celerite(Kernel):
    r"""The celerite term (Foreman-Mackey et al. 2017), order ``r = 2``.

    ``k(tau) = exp(-c tau) (a cos(d tau) + b sin(d tau))``; a covariance (positive
    semidefinite) iff ``a c >= |b d|``, which is not enforced.

    State-space form: ``Phi(dt) = exp(-c dt) R(d dt)`` with the rotation
    ``R(theta) = [[cos theta, -sin theta], [sin theta, cos theta]]``, ``u = (1, 0)``,
    ``v = (a, -b)`` (so ``u^T Phi(tau) v = e^{-c tau} (a cos d tau + b sin d tau)``).

    Parameters
    ----------
    a, b, d : finite, scalars or arrays.
    c : ``>= 0``, scalar or array; the decay rate.
    """

    _param_names = ("a", "b", "c", "d")

    def __init__(self, a: Any, b: Any, c: Any, d: Any) -> None:
        self.a = check_parameter("a", a, "Celerite")
        self.b = check_parameter("b", b, "Celerite")
        self.c = check_parameter("c", c, "Celerite", nonnegative=True)
        self.d = check_parameter("d", d, "Celerite")

    @property
    def order(self) -> int:
        return 2

    def _parts(self, dt: Any, ns: _NS, out: Any = None) -> tuple[Any, Any, Any, Any]:
        av, bv = self._p("a", ns), self._p("b", ns)
        e = ns.exp(-self._p("c", ns, 1) * dt)
        th = self._p("d", ns, 1) * dt
        if _scalars(*self._params()):
            fast = _compiled_parts("celerite", ns, self._params(), (e, ns.cos(th), ns.sin(th)),
                                   1.0, out)
            if fast is not None:
                return av, fast[1], ns.stack([av, -bv], -1), fast[0]
        ec, es = e * ns.cos(th), e * ns.sin(th)
        rows = [[ec, -es], [es, ec]]
        a = ns.matrix(rows, out)
        v = ns.stack([av, -bv], -1)
        return av, ns.stack(rows[0], -1), v, a

    def _k(self, tau: Any, ns: _NS) -> Any:
        av, bv = self._p("a", ns, 2), self._p("b", ns, 2)
        c, d = self._p("c", ns, 2), self._p("d", ns, 2)
        return ns.exp(-c * tau) * (av * ns.cos(d * tau) + bv * ns.sin(d * tau))
