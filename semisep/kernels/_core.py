"""The kernel base class, the sum / product / scale combinators and the array plumbing.

Every kernel here is a stationary covariance ``k(tau)``, ``tau = |t - t'|``, of a linear
stochastic differential equation with state ``x(t)`` of order ``r``: for ``tau >= 0``

    k(tau) = u^T Phi(tau) v,        Phi(tau) = exp(F tau),   Phi(t1 + t2) = Phi(t1) Phi(t2),

with ``u`` the observation vector and ``v = P u`` (``P`` the stationary covariance of the
state; some kernels use another factorisation of the same ``k``).  On sorted coordinates
``t_0 <= t_1 <= ... <= t_{N-1}`` with steps ``dt_i = t_i - t_{i-1}`` (``dt_0 = 0``) the
semigroup property turns ``k(t_i - t_j)``, ``i > j``, into the quasiseparable product

    k(t_i - t_j) = u^T Phi(dt_i) Phi(dt_{i-1}) ... Phi(dt_{j+1}) v
                 = p_i . (a_{i-1} ... a_{j+1} q_j),

    a_i = Phi(dt_i),    p_i = Phi(dt_i)^T u,    q_j = v,

which is the strictly lower part of :class:`semisep.Quasiseparable` (``a_0`` is the identity
and never used).  Every transition ``Phi(dt)`` is evaluated from the non-negative step ``dt``
only, as a decaying (or, for :class:`~semisep.kernels.Cosine`, orthogonal) matrix: entries are
bounded by a constant, whatever the span of ``t`` -- never ``e^{c t}``-type generators.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np

from ..backends import backend_for, get_backend
from ..errors import BackendError, NonFiniteError, ShapeError

__all__ = ["Kernel", "Sum", "Product", "Scale"]


# ------------------------------------------------------------------------------------------------
# array plumbing: one code path for NumPy arrays and torch tensors, through the backends
# ------------------------------------------------------------------------------------------------
def _is_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor, as :func:`semisep.backends.backend_for` (the one place
    that inspects array types) classifies it; values it has no backend for count as NumPy's
    (NumPy's conversion then raises its own error)."""
    try:
        return backend_for(x).name == "torch"
    except BackendError:
        return False


#: The array namespace a kernel call computes in: ``backend.linalg.kernel_namespace(...)``
#: of the NumPy or torch backend (:class:`semisep.backends.numpy.linalg.KernelNamespace`).
_NS: TypeAlias = Any


def _namespace(*xs: Any) -> _NS:
    """The torch backend's kernel namespace if any input is a tensor, else the NumPy
    backend's, with the inputs' common floating dtype."""
    name = "torch" if any(_is_tensor(x) for x in xs) else "numpy"
    return get_backend(name).linalg.kernel_namespace(*xs)


def _all_finite(x: Any) -> bool:
    if _is_tensor(x):
        return bool(x.detach().isfinite().all())
    return bool(np.all(np.isfinite(x)))


def check_parameter(name: str, value: Any, kernel: str, *, positive: bool = False,
                    nonnegative: bool = False) -> Any:
    """Validate one kernel parameter (a real scalar or array, finite; ``> 0`` / ``>= 0``)."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"{kernel}: parameter {name!r} must be a real number or array, got {value!r}")
    if not _is_tensor(value):
        arr = np.asarray(value)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                       or np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(f"{kernel}: parameter {name!r} must be real, got dtype {arr.dtype}")
        if not isinstance(value, np.ndarray | np.generic):
            value = float(value) if arr.ndim == 0 else arr.astype(np.float64)
        check = arr
    else:
        if value.is_complex():
            raise TypeError(f"{kernel}: parameter {name!r} must be real, got a complex tensor")
        check = value.detach()
    if not _all_finite(check):
        raise NonFiniteError(f"{kernel}: parameter {name!r} must be finite")
    vals = check if _is_tensor(check) else np.asarray(check)
    if positive and not bool((vals > 0).all()):
        raise ValueError(f"{kernel}: parameter {name!r} must be > 0")
    if nonnegative and not bool((vals >= 0).all()):
        raise ValueError(f"{kernel}: parameter {name!r} must be >= 0")
    return value


def _coordinates(t: Any, ns: _NS, name: str = "t", *, sorted_: bool = True) -> Any:
    """``t`` as an ``(..., N)`` real array of ``ns``'s type; finite; non-decreasing if ``sorted_``."""
    if ns.name == "numpy" and not isinstance(t, np.ndarray):
        t = np.asarray(t)
    if ns.name == "numpy" and (t.dtype == object or np.iscomplexobj(t)):
        raise TypeError(f"coordinates {name!r} must be real, got dtype {t.dtype}")
    x = ns.asarray(t)
    if x.ndim < 1:
        raise ShapeError(f"coordinates {name!r} must have shape (..., N), got a scalar")
    if x.shape[-1] < 1:
        raise ShapeError(f"coordinates {name!r} must have at least one point (N >= 1), got shape "
                         f"{tuple(x.shape)}")
    if not _all_finite(x.detach() if ns.name != "numpy" else x):
        raise NonFiniteError(f"coordinates {name!r} must be finite (found NaN or inf)")
    if sorted_ and x.shape[-1] > 1:
        step = x[..., 1:] - x[..., :-1]
        if not bool((step >= 0).all()):
            bad = step < 0
            idx = (bad.nonzero()[0][-1] if ns.name != "numpy" else np.nonzero(bad)[-1][0]) + 1
            raise ValueError(f"coordinates {name!r} must be sorted in non-decreasing order along the "
                             f"last axis: {name}[..., {int(idx)}] < {name}[..., {int(idx) - 1}]")
    return x


def _steps(t: Any, ns: _NS) -> Any:
    """``dt (..., N)``: ``dt_0 = 0``, ``dt_i = t_i - t_{i-1}``."""
    return ns.concat([ns.zeros(tuple(t.shape[:-1]) + (1,)), t[..., 1:] - t[..., :-1]], -1)


def _scalars(*params: Any) -> bool:
    """Whether every parameter is a real scalar (a Python number or a 0-d NumPy value)."""
    return all(isinstance(x, float | int)
               or (isinstance(x, np.ndarray | np.generic) and np.ndim(x) == 0) for x in params)


def _float(x: Any) -> float:
    """A one-element NumPy value (any number of unit axes) or number as a Python float."""
    return float(np.asarray(x).reshape(()))


def _compiled_parts(kind: str, ns: _NS, params: Sequence[Any], fields: Sequence[Any], sig: Any,
                    out: Any, alpha: Any = 0.0) -> Any:
    """``(a, p)`` of an elementary kernel assembled by the compiled generators
    (:func:`semisep.backends.numpy.kernel_generators.fill`) from its NumPy ``fields``, for
    float64 NumPy arrays and scalar ``params``, or None: the caller then assembles them with its
    own NumPy/torch operations (torch, arrays of parameters, other dtypes)."""
    if ns.name != "numpy" or not _scalars(*params):
        return None
    from ..backends.numpy.kernel_generators import fill

    return fill(kind, tuple(fields), _float(sig), out, _float(alpha))


# ------------------------------------------------------------------------------------------------
# the base class
# ------------------------------------------------------------------------------------------------
class Kernel:
    """A stationary 1-d covariance kernel ``k(tau)`` with a quasiseparable state-space form.

    Subclasses implement ``_parts(dt, ns, out=None) -> (k0, p, v, A)``: ``k0 = k(0)`` of shape
    ``(...)`` (parameter batch), ``p = A^T u`` ``(..., N, r)``, ``v`` ``(..., r)``,
    ``A = Phi(dt)`` ``(..., N, r, r)`` (written into ``out`` when given), with
    ``k(tau) = u^T Phi(tau) v`` for ``tau >= 0``; and ``_k(tau, ns)``, the closed form on
    ``tau >= 0`` (used by :meth:`__call__`, never by the generators).

    Parameters may be Python numbers, NumPy arrays or torch tensors; arrays broadcast against
    the batch shape ``...`` of the coordinates (a batch of kernels).
    """

    _param_names: tuple[str, ...] = ()

    # -- interface for subclasses ----------------------------------------------------------------
    @property
    def order(self) -> int:
        """The state dimension ``r`` (the quasiseparable order of the kernel matrix)."""
        raise NotImplementedError

    def _parts(self, dt: Any, ns: _NS, out: Any = None) -> tuple[Any, Any, Any, Any]:
        """``(k0, p, v, A)``; ``A`` written into ``out`` when given (a ``(..., N, r, r)`` view)."""
        raise NotImplementedError

    def _batch(self, dt: Any) -> tuple[int, ...]:
        """Shape ``(..., N)`` of the generators: ``dt``'s broadcast with every parameter's."""
        return tuple(np.broadcast_shapes(tuple(dt.shape),
                                         *(tuple(np.shape(x)) + (1,) for x in self._leaves())))

    def _k(self, tau: Any, ns: _NS) -> Any:
        raise NotImplementedError

    def _params(self) -> list[Any]:
        return [getattr(self, n) for n in self._param_names]

    def _leaves(self) -> list[Any]:
        """Every parameter of this kernel and its children (to choose NumPy/torch and dtype)."""
        return self._params()

    def _p(self, name: str, ns: _NS, axes: int = 0) -> Any:
        """Parameter ``name`` as an array of ``ns`` with ``axes`` trailing unit axes."""
        x = ns.asarray(getattr(self, name))
        return x.reshape(tuple(x.shape) + (1,) * axes)

    # -- public API ------------------------------------------------------------------------------
    def to_generators(self, t: Any) -> tuple[Any, Any, Any, Any]:
        """The quasiseparable generators of the kernel matrix ``K[i, j] = k(|t_i - t_j|)``.

        Parameters
        ----------
        t : (..., N) real, sorted non-decreasing along the last axis, finite.

        Returns
        -------
        (diag, p, q, a): ``diag (..., N)`` = ``k(0)``; ``p, q (..., N, r)``; ``a (..., N, r, r)``,
        with ``K[i, j] = p_i . (a_{i-1} ... a_{j+1} q_j)`` for ``i > j`` and ``K`` symmetric.
        ``a_i = Phi(t_i - t_{i-1})`` (``a_0 = I``), ``p_i = a_i^T u``, ``q_j = v``.  NumPy in,
        NumPy out; a torch tensor anywhere (``t`` or a parameter) gives torch tensors, built with
        torch operations (exact gradients for every parameter and ``t``).  ``...`` is the
        broadcast of ``t``'s batch shape and the parameters' shapes.
        """
        ns = _namespace(t, *self._leaves())
        by_rows = self._generators_by_rows(t, ns)
        if by_rows is not None:
            return by_rows[:4]
        x = _coordinates(t, ns)
        dt = _steps(x, ns)
        k0, p, v, a = self._parts(dt, ns)
        batch = np.broadcast_shapes(tuple(a.shape[:-2]), tuple(p.shape[:-1]),
                                    tuple(v.shape[:-1]) + (1,), tuple(k0.shape) + (1,))
        n, r = batch[-1], a.shape[-1]
        a = ns.broadcast_to(a, batch + (r, r))
        p = ns.broadcast_to(p, batch + (r,))
        q = ns.broadcast_to(v[..., None, :], batch + (r,))
        diag = ns.broadcast_to(k0[..., None], batch)
        assert diag.shape[-1] == n
        return diag, p, q, a

    def to_operator(self, t: Any, diag: Any = None) -> Any:
        """The kernel matrix ``K + diag(diag)`` as a symmetric :class:`semisep.Quasiseparable`.

        Parameters
        ----------
        t : (..., N) sorted coordinates (see :meth:`to_generators`).
        diag : None, a scalar or ``(..., N)``: added to the diagonal (white-noise variance).
        """
        import semisep

        Quasiseparable = getattr(semisep, "Quasiseparable", None)
        if Quasiseparable is None:
            raise NotImplementedError("to_operator needs semisep.Quasiseparable, which this build "
                                      "of semisep does not have; use to_generators")
        by_rows = self._generators_by_rows(t, _namespace(t, *self._leaves()), diag, check=True)
        if by_rows is not None and by_rows[4]:  # built and checked (finite) row by row
            return Quasiseparable(*by_rows[:4], check_finite=False)
        kd, p, q, a = self.to_generators(t)
        if diag is not None:
            ns = _namespace(kd, diag)
            if not _all_finite(diag.detach() if _is_tensor(diag) else np.asarray(diag)):
                raise NonFiniteError("to_operator: 'diag' (the white-noise variance) must be finite")
            kd = ns.asarray(kd) + ns.asarray(diag)
            p, q, a = ns.asarray(p), ns.asarray(q), ns.asarray(a)
        return Quasiseparable(kd, p, q, a)

    def _generators_by_rows(self, t: Any, ns: _NS, diag: Any = None,
                            check: bool = False) -> tuple[Any, Any, Any, Any, bool] | None:
        """:meth:`to_generators` (plus ``diag`` added to the diagonal) evaluated on chunks of
        batch rows on several threads (:mod:`semisep.backends.numpy.quasiseparable_rows`), or
        None where that does not apply: then the caller runs the whole-batch code.

        Applies to float64 NumPy coordinates ``t (..., N)`` with more than one batch row, scalar
        parameters and a real ``diag`` of ``t``'s batch shape or smaller; large enough to split
        (:func:`~semisep.backends.numpy.quasiseparable_rows.plan`).  Every step of the
        generators is elementwise or along N within a row, so the result is the whole-batch
        code's, bit for bit (the tests compare them).  Returns ``(diag, p, q, a, ok)``: ``ok``
        is False when some row failed the coordinates' checks (finite, sorted) or, with
        ``check``, holds a non-finite generator or diagonal entry; the caller then runs the
        whole-batch code, which raises the error naming the argument."""
        if ns.name != "numpy" or ns.dtype != np.float64 or not _scalars(*self._leaves()):
            return None
        if not isinstance(t, np.ndarray) or t.ndim < 2 or t.dtype != np.float64 or t.shape[-1] < 2:
            return None
        if diag is not None:  # a real scalar or array of t's batch shape or smaller
            if isinstance(diag, np.ndarray | np.generic):
                if (diag.dtype.kind not in "biuf" or np.promote_types(diag.dtype, np.float64) != np.float64
                        or np.broadcast_shapes(diag.shape, t.shape) != t.shape):
                    return None
            elif not isinstance(diag, float | int):
                return None
            diag = np.asarray(diag, dtype=np.float64)  # as the whole-batch code converts it
        from ..backends.numpy import quasiseparable_rows as buffers
        from ..backends.numpy.quasiseparable_rows import plan, run_rows

        batch, n, r = tuple(t.shape), int(t.shape[-1]), self.order
        rows = int(np.prod(batch[:-1]))
        chunks = plan(rows, n)
        if len(chunks) < 2:
            return None
        x = t.reshape(rows, n)
        a = buffers.empty((rows, n, r, r))
        zero_a = not _writes_every_entry(self)  # a Sum writes its diagonal blocks only
        p = buffers.empty((rows, n, r))
        kd = buffers.empty((rows, n)) if diag is not None else None
        dg = None if diag is None or diag.ndim == 0 else np.broadcast_to(diag, batch).reshape(rows, n)

        def chunk(s: int, e: int) -> tuple[Any, Any, bool]:
            xs = x[s:e]
            if not np.isfinite(xs).all():
                return None, None, False
            dt = _steps(xs, ns)
            if not (dt >= 0).all():
                return None, None, False
            out = a[s:e]
            if zero_a:
                out[...] = 0
            k0, pc, v, ac = self._parts(dt, ns, out)
            if ac is not out:
                out[...] = ac
            p[s:e] = pc
            ok = True
            if kd is not None:
                np.add(k0, diag if dg is None else dg[s:e], out=kd[s:e])
            if check:
                ok = bool(np.isfinite(out).all() and np.isfinite(p[s:e]).all()
                          and (kd is None or np.isfinite(kd[s:e]).all()))
            return k0, v, ok

        res = run_rows(chunk, chunks)
        if not all(ok for _, _, ok in res):
            return None if not check else (None, None, None, None, False)
        k0, v = res[0][0], res[0][1]
        if check and not bool(np.isfinite(v).all() and np.isfinite(k0).all()):
            return None, None, None, None, False
        q = np.broadcast_to(v[..., None, :], batch + (r,))
        d = np.broadcast_to(k0[..., None], batch) if kd is None else kd.reshape(batch)
        # writeable arrays, as the whole-batch code returns them (its broadcast_to keeps an
        # array of the target shape itself; the compiled kernels are specialised on the flag:
        # one set of signatures for both paths)
        p_out = p.reshape(batch + (r,))
        a_out = a.reshape(batch + (r, r))
        return d, p_out, q, a_out, True

    def __call__(self, t1: Any, t2: Any = None) -> Any:
        """The dense kernel matrix ``K[..., i, j] = k(|t1_i - t2_j|)``, from the closed form.

        ``t1 (..., N1)``, ``t2 (..., N2)`` (default ``t1``), any order, finite; returns
        ``(..., N1, N2)``.  For checking and small problems: O(N1 N2) memory.
        """
        ns = _namespace(t1, *([] if t2 is None else [t2]), *self._leaves())
        x1 = _coordinates(t1, ns, "t1", sorted_=False)
        x2 = x1 if t2 is None else _coordinates(t2, ns, "t2", sorted_=False)
        tau = ns.abs(x1[..., :, None] - x2[..., None, :])
        return self._k(tau, ns)

    # -- algebra ---------------------------------------------------------------------------------
    def __add__(self, other: Any) -> Kernel:
        if not isinstance(other, Kernel):
            return NotImplemented
        return Sum(self, other)

    def __radd__(self, other: Any) -> Kernel:
        if isinstance(other, int | float) and other == 0:  # sum([k1, k2, ...]) starts from 0
            return self
        return NotImplemented

    def __mul__(self, other: Any) -> Kernel:
        if isinstance(other, Kernel):
            return Product(self, other)
        if _is_tensor(other) or isinstance(other, int | float | np.ndarray | np.generic):
            return Scale(self, other)
        return NotImplemented

    def __rmul__(self, other: Any) -> Kernel:
        return self.__mul__(other)

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._param_names)
        return f"{type(self).__name__}({args})"


def _stack_last(ns: _NS, xs: Sequence[Any]) -> Any:
    """``[x1, x2, ...]`` along the last axis, the other axes broadcast."""
    shape = np.broadcast_shapes(*(tuple(x.shape[:-1]) for x in xs))
    out = ns.zeros(tuple(shape) + (sum(x.shape[-1] for x in xs),))
    o = 0
    for x in xs:
        out[..., o:o + x.shape[-1]] = x
        o += x.shape[-1]
    return out


def _writes_every_entry(k: Kernel) -> bool:
    """Whether ``k._parts(dt, ns, out)`` writes every entry of ``out`` (a sum writes its
    diagonal blocks only)."""
    if isinstance(k, Scale):
        return _writes_every_entry(k.kernel)
    return not isinstance(k, Sum)


def _terms(k: Kernel) -> list[Kernel]:
    """The summands of nested sums, flattened: ``(k1 + k2) + k3 -> [k1, k2, k3]``."""
    return _terms(k.kernel1) + _terms(k.kernel2) if isinstance(k, Sum) else [k]


class Sum(Kernel):
    """``k(tau) = k1(tau) + k2(tau)``: states stacked, ``a = blockdiag(a1, a2)``,
    ``u = [u1, u2]``, ``v = [v1, v2]`` (order ``r1 + r2``).  Built by ``k1 + k2``."""

    def __init__(self, kernel1: Kernel, kernel2: Kernel) -> None:
        if not (isinstance(kernel1, Kernel) and isinstance(kernel2, Kernel)):
            raise TypeError("Sum: 'kernel1' and 'kernel2' must be semisep.kernels kernels")
        self.kernel1, self.kernel2 = kernel1, kernel2

    @property
    def order(self) -> int:
        return self.kernel1.order + self.kernel2.order

    def _leaves(self) -> list[Any]:
        return self.kernel1._leaves() + self.kernel2._leaves()

    def _parts(self, dt: Any, ns: _NS, out: Any = None) -> tuple[Any, Any, Any, Any]:
        # every summand writes its transition straight into its diagonal block of one array
        terms = _terms(self)
        r = self.order
        if out is None:
            out = ns.zeros(self._batch(dt) + (r, r))
        k0, ps, vs, o = None, [], [], 0
        for term in terms:
            rk = term.order
            kk, pk, vk, _ = term._parts(dt, ns, out[..., o:o + rk, o:o + rk])
            k0 = kk if k0 is None else k0 + kk
            ps.append(pk)
            vs.append(vk)
            o += rk
        return k0, _stack_last(ns, ps), _stack_last(ns, vs), out

    def _k(self, tau: Any, ns: _NS) -> Any:
        return self.kernel1._k(tau, ns) + self.kernel2._k(tau, ns)

    def __repr__(self) -> str:
        return f"({self.kernel1!r} + {self.kernel2!r})"


def _bshape(x1: Any, x2: Any) -> tuple[int, ...]:
    return tuple(np.broadcast_shapes(tuple(x1.shape[:-1]), tuple(x2.shape[:-1])))


class Product(Kernel):
    """``k(tau) = k1(tau) k2(tau)``: Kronecker products ``a = a1 (x) a2``, ``u = u1 (x) u2``,
    ``v = v1 (x) v2`` (order ``r1 r2``), since ``(u1^T A1 v1)(u2^T A2 v2) =
    (u1 (x) u2)^T (A1 (x) A2) (v1 (x) v2)`` and the Kronecker product of products is the
    product of Kronecker products.  Built by ``k1 * k2``."""

    def __init__(self, kernel1: Kernel, kernel2: Kernel) -> None:
        if not (isinstance(kernel1, Kernel) and isinstance(kernel2, Kernel)):
            raise TypeError("Product: 'kernel1' and 'kernel2' must be semisep.kernels kernels")
        self.kernel1, self.kernel2 = kernel1, kernel2

    @property
    def order(self) -> int:
        return self.kernel1.order * self.kernel2.order

    def _leaves(self) -> list[Any]:
        return self.kernel1._leaves() + self.kernel2._leaves()

    def _parts(self, dt: Any, ns: _NS, out: Any = None) -> tuple[Any, Any, Any, Any]:
        k1, p1, v1, a1 = self.kernel1._parts(dt, ns)
        k2, p2, v2, a2 = self.kernel2._parts(dt, ns)
        r1, r2 = a1.shape[-1], a2.shape[-1]
        a = a1[..., :, None, :, None] * a2[..., None, :, None, :]
        a = a.reshape(tuple(a.shape[:-4]) + (r1 * r2, r1 * r2))
        p = p1[..., :, None] * p2[..., None, :]            # (a1 (x) a2)^T (u1 (x) u2) = p1 (x) p2
        v = v1[..., :, None] * v2[..., None, :]
        p = p.reshape(tuple(p.shape[:-2]) + (r1 * r2,))
        v = v.reshape(tuple(v.shape[:-2]) + (r1 * r2,))
        if out is not None:
            out[...] = a
            a = out
        return k1 * k2, p, v, a

    def _k(self, tau: Any, ns: _NS) -> Any:
        return self.kernel1._k(tau, ns) * self.kernel2._k(tau, ns)

    def __repr__(self) -> str:
        return f"({self.kernel1!r} * {self.kernel2!r})"


class Scale(Kernel):
    """``k(tau) = scale * kernel(tau)`` (``v`` and ``k(0)`` multiplied by ``scale``; finite,
    any sign -- a negative scale is not a covariance).  Built by ``scale * kernel``."""

    _param_names = ("scale",)

    def __init__(self, kernel: Kernel, scale: Any) -> None:
        if not isinstance(kernel, Kernel):
            raise TypeError("Scale: 'kernel' must be a semisep.kernels kernel")
        self.kernel = kernel
        self.scale = check_parameter("scale", scale, "Scale")

    @property
    def order(self) -> int:
        return self.kernel.order

    def _leaves(self) -> list[Any]:
        return [self.scale] + self.kernel._leaves()

    def _parts(self, dt: Any, ns: _NS, out: Any = None) -> tuple[Any, Any, Any, Any]:
        k0, p, v, a = self.kernel._parts(dt, ns, out)
        s = ns.asarray(self.scale)
        return s * k0, p, s[..., None] * v, a

    def _k(self, tau: Any, ns: _NS) -> Any:
        return ns.asarray(self.scale)[..., None, None] * self.kernel._k(tau, ns)

    def __repr__(self) -> str:
        return f"({self.scale!r} * {self.kernel!r})"


SQRT3 = math.sqrt(3.0)
SQRT5 = math.sqrt(5.0)
