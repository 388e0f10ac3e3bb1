"""``Semiseparable``: the generator form ``S = tril(P Q^T, -1) + diag(d) + triu(R S^T, 1)``.

Entries: ``S_ij = P_i . Q_j`` for ``j < i``, ``d_i`` on the diagonal, ``R_i . S_j`` for
``j > i`` (``P, Q``: (..., N, r_l); ``R, S``: (..., N, r_u); ``.`` is the plain, unconjugated
dot product).

Algorithms
----------
* ``matvec``: ``y_i = d_i x_i + P_i . f_i + R_i . g_i`` with the exclusive prefix / suffix sums
  ``f_i = sum_{j<i} Q_j x_j`` and ``g_i = sum_{j>i} S_j x_j`` (cumulative sums, O(N r)).  The
  suffix sum is a cumulative sum of the reversed sequence, never ``total - prefix``.
* ``solve`` / ``logdet`` (``method="structured"``, O(N r_l r_u) plus O(N (r_l + r_u) k) per
  solve): Gaussian elimination without pivoting keeps the generators.  With
  ``A = S - zI = Lt Ut``, ``Lt = I + tril(P Wl^T, -1)``, ``Ut = diag(u) + triu(Wu S^T, 1)`` and the
  state ``M_i = sum_{k<i} Wl_k Wu_k^T`` (r_l x r_u, ``M_0 = 0``)::

      u_i  = (d_i - z) - P_i^T M_i S_i
      Wu_i = R_i - M_i^T P_i
      Wl_i = (Q_i - M_i S_i) / u_i
      M_{i+1} = M_i + Wl_i Wu_i^T

  (derived by matching ``(Lt Ut)_ij`` with ``A_ij`` below, on and above the diagonal).  Then
  ``log det A = sum_i log u_i``; ``Lt y = b``: ``y_i = b_i - P_i . sum_{j<i} Wl_j y_j``;
  ``Ut x = y``: ``x_i = (y_i - Wu_i . sum_{j>i} S_j x_j) / u_i``.  This is the quasiseparable
  (state-space) LU; like the Thomas algorithm it breaks down on a zero leading minor
  (``|u_i| <= eps * scale``), which raises :class:`SingularMatrixError` -- pass
  ``method="dense"`` for a pivoted O(N^3) LU when the matrix is invertible but not strongly
  regular.  The loop over N is a Python loop (vectorised over the batch): O(N) steps of
  small-matrix work, correct on every backend and differentiable in torch, but with a large
  constant (no compiled kernel yet).
* ``resolvent_diagonal``: **dense O(N^3) fallback only** (``method="dense"``): the dense matrix
  is formed and inverted.  An O(N r^2) algorithm exists (the inverse of a strongly regular
  semiseparable matrix is semiseparable of the same ranks); it is not implemented yet.

Cancellation and range
----------------------
The structured products compute ``P_i . (sum_{j<i} Q_j x_j)`` instead of
``sum_{j<i} (P_i . Q_j) x_j``.  The rounding error of the first is about
``eps * sum_k |P_ik| sum_{j<i} |Q_jk x_j|``, of the second ``eps * sum_j |P_i . Q_j| |x_j|``.
They agree when the generator components do not cancel, but when the generators grow or decay
exponentially while the entries stay moderate they do not.  Example (tested): the lower part
``cosh(g (i - j)) = cosh(g i) cosh(g j) - sinh(g i) sinh(g j)``, i.e. ``P_i = (cosh g i,
sinh g i)``, ``Q_j = (cosh g j, -sinh g j)``: each term is ~ e^{2 g j}/4 and the relative error of
row i grows like ``eps e^{g i}``, total at ``g i ~ 36`` in float64.  Rank-one generators
``P_i = e^{-g i}``, ``Q_j = e^{g j}`` (decaying entries ``e^{-g (i-j)}``) have no such
cancellation but leave the floating-point range: ``Q_j`` overflows at ``g j ~ 709`` (float64) /
``88`` (float32) although every entry is <= 1; the constructor's finiteness check then raises
:class:`NonFiniteError` (tested).
Use balanced or normalised generators (or the ``Tridiagonal`` / ``TridiagonalPlusLowRank``
forms) when this matters.  The structured solve inherits the same limitation through ``M_i``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _linalg as la
from ._operator import StructuredOperator
from ._validation import broadcast_shapes, split_rhs
from ._validation import check_finite as _check_finite_arrays
from .backends import Backend, backend_for
from .errors import ShapeError, SingularMatrixError

__all__ = ["Semiseparable"]


class Semiseparable(StructuredOperator):
    """A batch of semiseparable matrices in generator form, N x N.

    ``S = tril(P Q^T, -1) + diag(d) + triu(R S^T, 1)``: ``S_ij = P_i . Q_j`` (j < i),
    ``S_ii = d_i``, ``S_ij = R_i . S_j`` (j > i); transposes, never conjugates.

    Parameters
    ----------
    diag : array (..., N)
    P, Q : arrays (..., N, r_l)
        Generators of the strictly lower triangle.
    R, S : arrays (..., N, r_u), or both None
        Generators of the strictly upper triangle.  ``R = S = None`` means **symmetric**:
        ``R = Q`` and ``S = P``, so the upper triangle is ``triu(Q P^T, 1) = tril(P Q^T, -1)^T``
        and ``S^T = S`` (complex symmetric, not Hermitian, for complex generators); only
        ``P, Q`` are stored.  Passing only one of ``R``, ``S`` is an error.
    check_finite : bool, default True

    Batch shape: the broadcast of all leading dimensions; dtype: their promotion (integers ->
    float64).  See the module docstring for the algorithms, their cost and the cancellation
    that exponentially growing or decaying generators cause.
    """

    def __init__(self, diag: Any, P: Any, Q: Any, R: Any = None, S: Any = None, *,
                 check_finite: bool = True):
        if (R is None) != (S is None):
            raise ValueError(
                "pass both R and S (general upper triangle triu(R S^T, 1)) or neither "
                "(symmetric: R = Q, S = P); got only " + ("R" if S is None else "S")
            )
        bk = backend_for(diag, P, Q, R, S)
        diag = bk.asarray(diag)
        if diag.ndim < 1 or diag.shape[-1] < 1:
            raise ShapeError(f"diag has shape {tuple(diag.shape)}: it must be (..., N), N >= 1")
        n = int(diag.shape[-1])
        arrs = {"P": P, "Q": Q, "R": R, "S": S}
        for name in list(arrs):
            x = arrs[name]
            if x is None:
                continue
            x = bk.asarray(x, like=diag)
            if x.ndim < 2 or x.shape[-2] != n:
                raise ShapeError(
                    f"{name} has shape {tuple(x.shape)} but diag has shape {tuple(diag.shape)}:"
                    f" {name} must have shape (..., N, r) with N = {n}"
                )
            arrs[name] = x
        P, Q, R, S = arrs["P"], arrs["Q"], arrs["R"], arrs["S"]
        for a, b in (("P", "Q"), ("R", "S")):
            if arrs[a] is not None and arrs[a].shape[-1] != arrs[b].shape[-1]:
                raise ShapeError(
                    f"{a} has shape {tuple(arrs[a].shape)} and {b} has shape "
                    f"{tuple(arrs[b].shape)}: their ranks (last dimensions) must agree"
                )
        shapes = {"diag": tuple(diag.shape[:-1])}
        shapes.update({k: tuple(v.shape[:-2]) for k, v in arrs.items() if v is not None})
        self._batch_shape = broadcast_shapes(shapes)
        dtype = bk.result_dtype(*(x for x in (diag, P, Q, R, S) if x is not None))
        if check_finite:
            _check_finite_arrays(bk, diag=diag, P=P, Q=Q, R=R, S=S)
        self._backend: Backend = bk
        self.diag = bk.astype(diag, dtype)
        self.P = bk.astype(P, dtype)
        self.Q = bk.astype(Q, dtype)
        self.R = None if R is None else bk.astype(R, dtype)
        self.S = None if S is None else bk.astype(S, dtype)
        self._n = n
        self._dtype = dtype

    # -- structure ----------------------------------------------------------------------------
    @property
    def is_symmetric_storage(self) -> bool:
        """True when constructed with ``R = S = None`` (upper triangle = lower transposed)."""
        return self.R is None

    @property
    def R_(self) -> Any:
        """Left generator of the upper triangle (``Q`` for symmetric storage)."""
        return self.Q if self.R is None else self.R

    @property
    def S_(self) -> Any:
        """Right generator of the upper triangle (``P`` for symmetric storage)."""
        return self.P if self.S is None else self.S

    @property
    def rank_lower(self) -> int:
        return int(self.P.shape[-1])

    @property
    def rank_upper(self) -> int:
        return int(self.R_.shape[-1])

    @property
    def rank(self) -> int:
        """``max(r_l, r_u)``."""
        return max(self.rank_lower, self.rank_upper)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held (``d, P, Q`` and, unless symmetric, ``R, S``)."""
        return sum(la.nbytes(x) for x in (self.diag, self.P, self.Q, self.R, self.S))

    @property
    def dense_nbytes(self) -> int:
        return int(np.prod(self.shape)) * la.itemsize(self.diag)

    @property
    def T(self) -> Semiseparable:
        """The transpose: ``tril(S R^T, -1) + diag(d) + triu(Q P^T, 1)``."""
        if self.is_symmetric_storage:
            return self
        return Semiseparable(self.diag, self.S, self.R, self.Q, self.P, check_finite=False)

    def __repr__(self) -> str:
        sym = ", symmetric" if self.is_symmetric_storage else ""
        return (
            f"Semiseparable(shape={self.shape}, ranks=({self.rank_lower}, {self.rank_upper}), "
            f"dtype={self.dtype}, backend={self._backend.name}{sym})"
        )

    def to_dense(self) -> Any:
        """The dense matrix ``batch_shape + (N, N)``; O(N^2 r)."""
        bk, n = self._backend, self._n
        low = np.tril(np.ones((n, n)), -1)
        lo = bk.astype(bk.asarray(low, like=self.diag), self._dtype)
        up = bk.astype(bk.asarray(low.T.copy(), like=self.diag), self._dtype)
        eye = la.eye(bk, n, self._dtype, like=self.diag)
        return (
            (self.P @ la.mT(self.Q)) * lo + self.diag[..., :, None] * eye
            + (self.R_ @ la.mT(self.S_)) * up
        )


    # -- products -----------------------------------------------------------------------------
    def matvec(self, x: Any) -> Any:
        """``S x`` for x (..., N) or (..., N, k), O(N r k), by exclusive cumulative sums."""
        return self._apply(self.P, self.Q, self.R_, self.S_, x)

    def rmatvec(self, x: Any) -> Any:
        """``S^T x`` (transpose, not conjugate transpose)."""
        return self._apply(self.S_, self.R_, self.Q, self.P, x)

    def _apply(self, P, Q, R, S, x):
        bk = self._backend
        backend_for(self.diag, x)
        x = bk.asarray(x, like=self.diag)
        is_vec, _, _ = split_rhs(x, len(self._batch_shape), self._n)
        xx = x[..., None] if is_vec else x
        dtype = bk.result_dtype(self.diag, xx)
        xx = bk.astype(xx, dtype)
        P, Q, R, S = (bk.astype(a, dtype) for a in (P, Q, R, S))
        y = bk.astype(self.diag, dtype)[..., :, None] * xx
        y = y + _lower_apply(bk, P, Q, xx)
        # upper triangle: reverse the order, then it is a lower-triangle product
        y = y + la.flip(bk, _lower_apply(
            bk, la.flip(bk, R, -2), la.flip(bk, S, -2), la.flip(bk, xx, -2)), -2)
        return y[..., 0] if is_vec else y

    # -- solves -------------------------------------------------------------------------------
    def _check_method(self, method: str, allowed=("auto", "structured", "dense")) -> str:
        if method not in allowed:
            raise ValueError(f"method={method!r}; choose one of {allowed}")
        return "structured" if method == "auto" else method

    def _shifted(self, z: Any, extra: dict | None = None, extra_dtype: Any = None):
        bk = self._backend
        backend_for(self.diag, z)
        z_arr = bk.asarray(z, like=self.diag)
        _check_finite_arrays(bk, z=z_arr)
        shapes = {"operator": self._batch_shape, "z": tuple(z_arr.shape)}
        if extra:
            shapes.update(extra)
        batch = broadcast_shapes(shapes)
        args = [self.diag, z if isinstance(z, (bool, int, float, complex)) else z_arr]
        if extra_dtype is not None:
            args.append(extra_dtype)
        dtype = bk.result_dtype(*args)
        alpha = bk.astype(self.diag, dtype) - bk.astype(z_arr, dtype)[..., None]
        return bk.broadcast_to(alpha, batch + (self._n,)), batch, dtype

    def _lu(self, alpha, batch, dtype, what, z):
        """The generator LU (module docstring): ``u`` (..., N), ``Wl`` (..., N, r_l),
        ``Wu`` (..., N, r_u), with every generator broadcast to ``batch``."""
        bk, n = self._backend, self._n
        P, Q, R, S = (
            bk.broadcast_to(bk.astype(a, dtype), batch + tuple(a.shape[-2:]))
            for a in (self.P, self.Q, self.R_, self.S_)
        )
        rl, ru = int(P.shape[-1]), int(R.shape[-1])
        eps = bk.eps(dtype)
        scale = float(np.max(np.abs(bk.to_numpy(_detach(alpha))))) if n else 0.0
        for a in (P, Q, R, S):
            if a.shape[-1]:
                scale = max(scale, float(np.max(np.abs(bk.to_numpy(_detach(a))))) ** 2)
        pivmin = max(eps * scale, np.finfo(np.float64).tiny)
        M = bk.zeros(batch + (rl, ru), dtype, like=alpha)
        us, wls, wus = [], [], []
        for i in range(n):
            p, q, r, s = P[..., i, :], Q[..., i, :], R[..., i, :], S[..., i, :]
            Ms = (M @ s[..., :, None])[..., 0]  # (..., rl)
            u = alpha[..., i] - la.sum_(bk, p * Ms, -1)
            small = np.abs(bk.to_numpy(_detach(u))) <= pivmin
            if np.any(small):
                zs = z if isinstance(z, (bool, int, float, complex)) else "the given z"
                raise SingularMatrixError(
                    f"{what}: zero pivot at row {i} of the generator LU of S - zI (z = {zs}): "
                    "a leading minor vanishes to working precision, so S - zI is singular or "
                    "needs pivoting; use method='dense' (pivoted LU, O(N^3))"
                )
            wu = r - (la.mT(M) @ p[..., :, None])[..., 0]
            wl = (q - Ms) / u[..., None]
            M = M + wl[..., :, None] * wu[..., None, :]
            us.append(u)
            wls.append(wl)
            wus.append(wu)
        return la.stack(bk, us, -1), la.stack(bk, wls, -2), la.stack(bk, wus, -2), P, S

    def solve(self, b: Any, z: Any = 0.0, *, method: str = "auto", check_finite: bool = True) -> Any:
        """``(S - zI)^{-1} b``; b (..., N) or (..., N, k) by torch.linalg.solve's rule.

        ``method``: ``"structured"`` (``"auto"``): the generator LU, O(N r_l r_u + N r k);
        ``"dense"``: form the matrix, pivoted LU, O(N^3).
        """
        bk, n = self._backend, self._n
        method = self._check_method(method)
        backend_for(self.diag, b)
        b = bk.asarray(b, like=self.diag)
        if check_finite:
            _check_finite_arrays(bk, b=b)
        is_vec, b_batch, k = split_rhs(b, len(self._batch_shape), n)
        alpha, batch, dtype = self._shifted(z, extra={"b": b_batch}, extra_dtype=b)
        bb = bk.broadcast_to(bk.astype(b[..., None] if is_vec else b, dtype), batch + (n, k))
        if method == "dense":
            x = la.solve(bk, self._dense_shifted(alpha, batch, dtype), bb)
        else:
            u, Wl, Wu, P, S = self._lu(alpha, batch, dtype, "solve", z)
            # Lt y = b (forward), Ut x = y (backward); h, g: (..., r, k) running sums
            h = bk.zeros(batch + (int(Wl.shape[-1]), k), dtype, like=alpha)
            ys = []
            for i in range(n):
                y = bb[..., i, :] - (P[..., i, None, :] @ h)[..., 0, :]
                h = h + Wl[..., i, :, None] * y[..., None, :]
                ys.append(y)
            g = bk.zeros(batch + (int(Wu.shape[-1]), k), dtype, like=alpha)
            xs = [None] * n
            for i in range(n - 1, -1, -1):
                xi = (ys[i] - (Wu[..., i, None, :] @ g)[..., 0, :]) / u[..., i, None]
                g = g + S[..., i, :, None] * xi[..., None, :]
                xs[i] = xi
            x = la.stack(bk, xs, -2)
        return x[..., 0] if is_vec else x

    def logdet(self, z: Any = 0.0, *, method: str = "auto") -> Any:
        """``log det(S - zI)`` (complex; imaginary part in (-pi, pi]), shape
        ``broadcast(batch_shape, z.shape)``.  Real when the dtype is real and every determinant
        is positive (the rule of :meth:`Tridiagonal.logdet`).

        ``"structured"`` (``"auto"``): ``sum_i log u_i`` over the generator-LU pivots, O(N r^2);
        ``"dense"``: ``slogdet`` of the dense matrix, O(N^3).
        """
        bk = self._backend
        method = self._check_method(method)
        alpha, batch, dtype = self._shifted(z)
        if method == "dense":
            sign, logabs = la.slogdet(bk, self._dense_shifted(alpha, batch, dtype))
            if not bk.is_complex(dtype):
                neg = sign < 0
                if bool(neg.any()):
                    cdt = la.complex_dtype(bk, dtype)
                    return bk.astype(logabs, cdt) + 1j * np.pi * bk.astype(neg, cdt)
                return logabs
            cdt = dtype
            return bk.astype(logabs, cdt) + 1j * bk.astype(la.angle(bk, sign), cdt)
        u, *_ = self._lu(alpha, batch, dtype, "logdet", z)
        logabs = la.sum_(bk, la.log(bk, abs(u)), -1)
        if not bk.is_complex(dtype):
            neg = la.sum_(bk, bk.astype(u < 0, dtype), -1) % 2 == 1
            if bool(neg.any()):
                cdt = la.complex_dtype(bk, dtype)
                return bk.astype(logabs, cdt) + 1j * np.pi * bk.astype(neg, cdt)
            return logabs
        # phase: product of unit numbers, kept on the unit circle
        phase = la.angle(bk, _prod_unit(bk, u / bk.astype(abs(u), dtype)))
        return bk.astype(logabs, dtype) + 1j * bk.astype(phase, dtype)

    def resolvent_diagonal(self, z: Any = 0.0, *, method: str = "auto") -> Any:
        """``diag((S - zI)^{-1})`` -- **dense O(N^3) fallback**: the dense matrix is formed and
        solved against the identity (``method="dense"``, the only one; ``"auto"`` means it).
        Shape ``broadcast(batch_shape, z.shape) + (N,)``."""
        bk, n = self._backend, self._n
        self._check_method(method, allowed=("auto", "dense"))
        alpha, batch, dtype = self._shifted(z)
        A = self._dense_shifted(alpha, batch, dtype)
        eye = bk.broadcast_to(la.eye(bk, n, dtype, like=alpha), batch + (n, n))
        return la.diagonal(bk, la.solve(bk, A, eye), 0)

    def _dense_shifted(self, alpha, batch, dtype):
        bk, n = self._backend, self._n
        A = bk.astype(self.to_dense(), dtype)
        eye = la.eye(bk, n, dtype, like=alpha)
        A = A - bk.astype(self.diag, dtype)[..., :, None] * eye + alpha[..., :, None] * eye
        return bk.broadcast_to(A, batch + (n, n))


def _lower_apply(bk, P, Q, x):
    """``tril(P Q^T, -1) x`` for x (..., N, k) by an exclusive prefix sum; O(N r k)."""
    terms = Q[..., :, :, None] * x[..., :, None, :]  # (..., N, r, k)
    if terms.shape[-3] == 0:
        return x * 0
    C = la.cumsum(bk, terms, -3)
    pad = bk.zeros(tuple(C.shape[:-3]) + (1,) + tuple(C.shape[-2:]), C.dtype, like=C)
    excl = bk.concat([pad, C[..., :-1, :, :]], axis=-3)
    return la.sum_(bk, P[..., :, :, None] * excl, -2)


def _prod_unit(bk, w):
    """Product of unit complex numbers along the last axis, renormalised each step."""
    out = w[..., 0]
    for i in range(1, int(w.shape[-1])):
        out = out * w[..., i]
        out = out / abs(out)
    return out


def _detach(x):
    return x.detach() if hasattr(x, "detach") else x
