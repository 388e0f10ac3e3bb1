"""``Semiseparable``: the generator form ``S = tril(P Q^T, -1) + diag(d) + triu(R S^T, 1)``.

Entries: ``S_ij = P_i . Q_j`` for ``j < i``, ``d_i`` on the diagonal, ``R_i . S_j`` for
``j > i`` (``P, Q``: (..., N, r_l); ``R, S``: (..., N, r_u); ``.`` is the plain, unconjugated
dot product).

Algorithms
----------
``Semiseparable`` is the special case ``a_i = b_i = I`` of :class:`~semisep.Quasiseparable`
(lower form ``(p, q, a) = (P, Q, I)``, upper form ``(g, h, b) = (S, R, I)``), and runs on its
algorithms and kernels (one implementation; docs/mathematics.md, "Quasiseparable operators"):

* ``matvec`` / ``rmatvec``: the state sweeps, O(N r k);
* ``solve`` / ``logdet`` / ``resolvent_diagonal`` (``method="structured"``, the default
  ``"auto"``): the quasiseparable LU of ``S - zI`` without row exchanges (compiled kernels for
  NumPy arrays and CPU tensors), O(N r_l r_u (r_l + r_u)) per element, and for the inverse
  diagonal a backward r_u x r_l state recursion, O(N r^3) -- no N x N array.  The pivot guard
  and the singularity certificate are scaled by the matrix's entries (the diagonal and the
  first off-diagonals), with :class:`~semisep.Tridiagonal`'s semantics: a zero leading minor of
  an invertible matrix is guarded (and ``solve`` refines once), and
  :class:`SingularMatrixError` means singular to working precision.
* ``method="dense"``: form the matrix, pivoted LU, O(N^3); an exactly singular matrix raises
  :class:`SingularMatrixError` (never a bare ``LinAlgError`` or ``-inf``).

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
Use :class:`~semisep.Quasiseparable` with transition matrices (e.g. ``a_i = e^{-c (t_i -
t_{i-1})}``), which keeps every quantity of the size of the entries, when this matters.
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
from .quasiseparable import Quasiseparable

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
        self._qs = Quasiseparable(
            self.diag, self.P, self.Q, _identity_steps(bk, n, self.rank_lower, dtype, self.diag),
            *(() if self.R is None else
              (self.S, self.R, _identity_steps(bk, n, self.rank_upper, dtype, self.diag))),
            check_finite=False,
        )

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
    def matvec(self, x: Any, *, method: str = "auto") -> Any:
        """``S x`` for x (..., N) or (..., N, k), O(N r k), by the state sweeps (``method``:
        a kernel of :meth:`Quasiseparable.factor`)."""
        return self._qs.matvec(x, method=method)

    def rmatvec(self, x: Any, *, method: str = "auto") -> Any:
        """``S^T x`` (transpose, not conjugate transpose)."""
        return self._qs.rmatvec(x, method=method)

    def as_quasiseparable(self) -> Quasiseparable:
        """The same matrices as a :class:`~semisep.Quasiseparable` (identity transitions,
        stored as a stride-0 view)."""
        return self._qs

    # -- solves -------------------------------------------------------------------------------
    def _check_method(self, method: str) -> str:
        """``"dense"``, or the :class:`Quasiseparable` kernel to run (``"structured"`` is its
        ``"auto"``; ``"sequential"``, ``"chunked"``, ``"loop"`` name one of its kernels)."""
        allowed = ("auto", "structured", "dense", "sequential", "chunked", "loop")
        if method not in allowed:
            raise ValueError(f"method={method!r}; choose one of {allowed}")
        return "auto" if method == "structured" else method

    def solve(self, b: Any, z: Any = 0.0, *, method: str = "auto", check_finite: bool = True) -> Any:
        """``(S - zI)^{-1} b``; b (..., N) or (..., N, k) by torch.linalg.solve's rule.

        ``method``: ``"structured"`` (``"auto"``): :meth:`Quasiseparable.solve`,
        O(N r^3 + N r^2 k) (``"sequential"``, ``"chunked"``, ``"loop"``: that kernel of it);
        ``"dense"``: form the matrix, pivoted LU, O(N^3)."""
        if (kernel := self._check_method(method)) != "dense":
            return self._qs.solve(b, z, method=kernel, check_finite=check_finite)
        bk, n = self._backend, self._n
        backend_for(self.diag, b)
        b = bk.asarray(b, like=self.diag)
        if check_finite:
            _check_finite_arrays(bk, b=b)
        is_vec, b_batch, k = split_rhs(b, len(self._batch_shape), n)
        A, batch, dtype = self._dense_shifted(z, {"b": b_batch}, b)
        bb = bk.broadcast_to(bk.astype(b[..., None] if is_vec else b, dtype), batch + (n, k))
        x = _dense_call(lambda: la.solve(bk, A, bb), "solve", z)
        return x[..., 0] if is_vec else x

    def logdet(self, z: Any = 0.0, *, method: str = "auto") -> Any:
        """``log det(S - zI)`` (complex; imaginary part in (-pi, pi]), shape
        ``broadcast(batch_shape, z.shape)``.  Real when the dtype is real and every determinant
        is positive (the rule of :meth:`Tridiagonal.logdet`).

        ``"structured"`` (``"auto"``): :meth:`Quasiseparable.logdet`; ``"dense"``: ``slogdet``
        of the dense matrix, O(N^3) (a zero determinant raises :class:`SingularMatrixError`)."""
        if (kernel := self._check_method(method)) != "dense":
            return self._qs.logdet(z, method=kernel)
        bk = self._backend
        A, _, dtype = self._dense_shifted(z)
        sign, logabs = _dense_call(lambda: la.slogdet(bk, A), "logdet", z)
        if not bool(np.all(np.isfinite(np.asarray(bk.to_numpy(_detach(logabs)))))):
            _raise_singular("logdet", z)
        if not bk.is_complex(dtype):
            neg = sign < 0
            if bool(neg.any()):
                cdt = la.complex_dtype(bk, dtype)
                return bk.astype(logabs, cdt) + 1j * np.pi * bk.astype(neg, cdt)
            return logabs
        return bk.astype(logabs, dtype) + 1j * bk.astype(la.angle(bk, sign), dtype)

    def resolvent_diagonal(self, z: Any = 0.0, *, method: str = "auto") -> Any:
        """``diag((S - zI)^{-1})``, shape ``broadcast(batch_shape, z.shape) + (N,)``.

        ``"structured"`` (``"auto"``): :meth:`Quasiseparable.resolvent_diagonal`, O(N r^3);
        ``"dense"``: the dense matrix solved against the identity, O(N^3)."""
        if (kernel := self._check_method(method)) != "dense":
            return self._qs.resolvent_diagonal(z, method=kernel)
        bk, n = self._backend, self._n
        A, batch, dtype = self._dense_shifted(z)
        eye = bk.broadcast_to(la.eye(bk, n, dtype, like=A), batch + (n, n))
        return la.diagonal(bk, _dense_call(lambda: la.solve(bk, A, eye), "resolvent_diagonal", z), 0)

    def _dense_shifted(self, z: Any, extra: dict | None = None, extra_dtype: Any = None):
        """``(S - zI`` dense, broadcast batch, dtype)."""
        bk, n = self._backend, self._n
        backend_for(self.diag, z)
        z_arr = bk.asarray(z, like=self.diag)
        _check_finite_arrays(bk, z=z_arr)
        shapes = {"operator": self._batch_shape, "z": tuple(z_arr.shape)}
        shapes.update(extra or {})
        batch = broadcast_shapes(shapes)
        args = [self.diag, z if isinstance(z, (bool, int, float, complex)) else z_arr]
        if extra_dtype is not None:
            args.append(extra_dtype)
        dtype = bk.result_dtype(*args)
        eye = la.eye(bk, n, dtype, like=self.diag)
        A = bk.astype(self.to_dense(), dtype) - bk.astype(z_arr, dtype)[..., None, None] * eye
        return bk.broadcast_to(A, batch + (n, n)), batch, dtype


def _identity_steps(bk: Backend, n: int, r: int, dtype: Any, like: Any) -> Any:
    """``I_r`` for every step, (N, r, r), as a stride-0 view (no N r^2 storage)."""
    eye = la.eye(bk, r, dtype, like=like)
    return bk.broadcast_to(eye[None], (n, r, r))


def _dense_call(fn: Any, what: str, z: Any) -> Any:
    """Run a dense LAPACK call; an exactly singular matrix becomes SingularMatrixError."""
    try:
        return fn()
    except SingularMatrixError:
        raise
    except Exception as exc:  # numpy.linalg.LinAlgError, torch.linalg.LinAlgError
        if type(exc).__name__ in ("LinAlgError", "_LinAlgError"):
            _raise_singular(what, z, exc)
        raise


def _raise_singular(what: str, z: Any, cause: Any = None) -> None:
    zs = z if isinstance(z, (bool, int, float, complex)) else "the given z"
    raise SingularMatrixError(
        f"{what} (method='dense'): S - z I is singular (z = {zs})"
    ) from cause


def _detach(x):
    return x.detach() if hasattr(x, "detach") else x
