"""``TridiagonalPlusLowRank``: H = T + U V^T, with exact Woodbury algorithms.

Notation (docs/mathematics.md): ``A = T - z I`` (tridiagonal, N x N), ``U, V`` of shape
``(..., N, r)``, ``H - z I = A + U V^T``.  All tridiagonal work goes through
:class:`~semisep.tridiagonal.Tridiagonal` (its O(N) pivot sweeps, one pass for a matrix
right-hand side), so this file is written once for every backend.

Woodbury (exact, never the diag(G) shortcut)::

    X = A^{-1} U                 (N, r)   one tridiagonal solve with an (N, r) right-hand side
    Y = A^{-T} V                 (N, r)   the transpose T.T (swap b and c; z is NOT conjugated)
    K = I_r + V^T X              (r, r)   the capacitance matrix
    (H - zI)^{-1} = A^{-1} - X K^{-1} V^T A^{-1}
    diag((H - zI)^{-1})_i = G_ii - sum_k X_ik W_ik,    K W^T = Y^T   (W: (N, r))
    log det(H - zI) = log det A + log det K             (matrix determinant lemma)

Cost: O(N r) for products, O(N r + r^3) per right-hand side for solves (plus O(N r^2) to form
K), O(N r^2 + r^3) for the resolvent diagonal and the log-determinant.

Conditioning: Woodbury needs ``A = T - zI`` invertible (else :class:`SingularMatrixError` from
the tridiagonal sweeps, even when ``H - zI`` itself is invertible) and is only as accurate as
``K`` is well conditioned.  ``cond_2(K)`` is computed on every call (an r x r SVD); a ``K``
singular to working precision (``cond_2(K) >= 1/(4 eps)``) raises
:class:`SingularMatrixError`; ``cond_2(K) > 1e-3/eps`` emits an :class:`IllConditionedWarning`;
``return_info=True`` returns the condition numbers in :class:`WoodburyInfo`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _algebra
from . import _linalg as la
from ._lowrank_capacitance import CapacitanceChecks, _host_cond, _sub
from ._lowrank_fused import FusedWoodbury
from ._operator import StructuredOperator
from ._validation import as_array, broadcast_shapes, split_rhs
from ._validation import check_finite as _check_finite_arrays
from .backends import Backend, backend_for
from .errors import ShapeError
from .tridiagonal import Tridiagonal
from .tridiagonal_core import _chunk_length_kw, host_reads

__all__ = ["TridiagonalPlusLowRank", "WoodburyInfo"]


@dataclass(frozen=True)
class WoodburyInfo:
    """What a Woodbury computation did, returned with ``return_info=True``.

    Attributes
    ----------
    pivots : dict[str, PivotInfo]
        The tridiagonal sweeps that ran, by role: ``"resolvent_diagonal"`` (G_ii of ``T - zI``),
        ``"solve"`` (``A^{-1}[b, U]``), ``"solve_transpose"`` (``A^{-T} V``; absent when
        ``T`` is stored symmetric and the two solves shared one pass).
    capacitance_cond : numpy.ndarray of float64, shape = the result's batch shape
        ``cond_2(K)``, ``K = I_r + V^T (T - zI)^{-1} U``; ``inf`` never occurs (a singular
        ``K`` raises).  Roughly ``log10(cond)`` digits of the correction are lost.
    rank : int
    """

    pivots: dict = field(default_factory=dict)
    capacitance_cond: Any = None
    rank: int = 0

    @property
    def total_guarded(self) -> int:
        """Guarded pivots over every sweep that ran."""
        return sum(p.total_guarded for p in self.pivots.values())

    @property
    def worst_capacitance_cond(self) -> float:
        return float(np.max(self.capacitance_cond)) if np.size(self.capacitance_cond) else 1.0


class TridiagonalPlusLowRank(CapacitanceChecks, FusedWoodbury, StructuredOperator):
    """A batch of matrices ``H = T + U V^T``: tridiagonal plus rank r, N x N.

    Parameters
    ----------
    T : Tridiagonal
        The tridiagonal part, batch shape ``bT``.
    U, V : arrays (..., N, r)
        The low-rank factors (``U V^T``: transpose, not conjugate transpose); r = 0 allowed,
        in which case every method reduces to ``T``'s.
    check_finite : bool, default True
        Raise :class:`~semisep.errors.NonFiniteError` if ``U`` or ``V`` hold NaN or inf.

    Notes
    -----
    The batch shape is the broadcast of ``T.batch_shape``, ``U.shape[:-2]``, ``V.shape[:-2]``.
    The dtype promotes ``T``'s with ``U``'s and ``V``'s (integers -> float64, float32 stays
    float32); ``T`` is re-cast to it.  NumPy arrays, torch tensors or dask arrays, not mixed
    with torch; on dask arrays :meth:`resolvent_diagonal`, :meth:`logdet` and :meth:`solve`
    return lazy dask arrays (:mod:`semisep.backends.dask._lowrank` says what differs).

    Memory (:attr:`nbytes`): the arrays held, ``T.nbytes + U.nbytes + V.nbytes``; for
    non-symmetric ``T``, ``(3N - 2 + 2 N r) * itemsize``.

    Examples
    --------
    >>> import numpy as np, semisep as ss
    >>> rng = np.random.default_rng(0)
    >>> T = ss.Tridiagonal(np.full(6, 3.0), np.ones(5))
    >>> U, V = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    >>> H = ss.TridiagonalPlusLowRank(T, U, V)
    >>> Hd = T.to_dense() + U @ V.T
    >>> bool(np.allclose(H.resolvent_diagonal(1j), np.diag(np.linalg.inv(Hd - 1j * np.eye(6)))))
    True
    """

    def __init__(self, T: Tridiagonal, U: Any, V: Any, *, check_finite: bool = True):
        if not isinstance(T, Tridiagonal):
            raise TypeError(
                f"T must be a semisep.Tridiagonal, got {type(T).__name__}; "
                "build it with ss.Tridiagonal(diag, lower, upper)"
            )
        bk = backend_for(T.diag, U, V)
        U = as_array(bk, "U", U, like=T.diag, scalar_ok=False)
        V = as_array(bk, "V", V, like=T.diag, scalar_ok=False)
        n = T.n
        for name, x in (("U", U), ("V", V)):
            if x.ndim < 2:
                raise ShapeError(
                    f"{name} has shape {tuple(x.shape)}: it must have shape (..., N, r) with "
                    f"N = {n} (use shape (N, 1) for rank one)"
                )
            if x.shape[-2] != n:
                raise ShapeError(
                    f"{name} has shape {tuple(x.shape)} but T is {n} x {n}: {name} must have "
                    f"shape (..., N, r) with N = {n}"
                )
        if U.shape[-1] != V.shape[-1]:
            raise ShapeError(
                f"U has shape {tuple(U.shape)} and V has shape {tuple(V.shape)}: their last "
                "dimensions (the rank r) must agree"
            )
        self._batch_shape = broadcast_shapes(
            {"T": T.batch_shape, "U": tuple(U.shape[:-2]), "V": tuple(V.shape[:-2])}
        )
        dtype = bk.result_dtype(T.diag, U, V)
        if check_finite:
            _check_finite_arrays(bk, U=U, V=V)
        if T.dtype != dtype:
            T = Tridiagonal(
                bk.astype(T.diag, dtype), bk.astype(T.lower, dtype),
                None if T.upper is None else bk.astype(T.upper, dtype), check_finite=False,
            )
        self._backend: Backend = bk
        self.tridiagonal = T
        self.U = bk.astype(U, dtype)
        self.V = bk.astype(V, dtype)
        self._n = n
        self._dtype = dtype
        #: set by :func:`semisep.factorize` (iterations, residual history); None otherwise
        self.factorization: Any = None  # a FactorizationHistory when built by factorize()

    # -- structure ----------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        """r, the number of columns of U and V."""
        return int(self.U.shape[-1])

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held: the tridiagonal's diagonals plus U and V (as stored, i.e.
        without broadcasting)."""
        return self.tridiagonal.nbytes + la.nbytes(self.U) + la.nbytes(self.V)

    @property
    def dense_nbytes(self) -> int:
        """Bytes of a dense array of :attr:`shape` in :attr:`dtype`."""
        return int(np.prod(self.shape)) * la.itemsize(self.U)

    @property
    def T(self) -> TridiagonalPlusLowRank:
        """The transpose ``T^T + V U^T`` (never the conjugate transpose)."""
        return TridiagonalPlusLowRank(self.tridiagonal.T, self.V, self.U, check_finite=False)

    def __repr__(self) -> str:
        return (
            f"TridiagonalPlusLowRank(shape={self.shape}, rank={self.rank}, dtype={self.dtype}, "
            f"backend={self._backend.name})"
        )

    def to_dense(self) -> Any:
        """``T + U V^T`` as a dense array of shape ``batch_shape + (N, N)``; O(N^2 r)."""
        return self.tridiagonal.to_dense() + self.U @ la.mT(self.V)


    # -- conveniences (semisep/_algebra.py) ---------------------------------------------------
    __array_ufunc__ = None  # numpy scalars and arrays defer to the operator's own operators

    def _arrays(self) -> dict[str, Any]:
        T = self.tridiagonal
        return {"diag": T.diag, "lower": T.lower, "upper": T.upper, "U": self.U, "V": self.V}

    @staticmethod
    def _from(a: dict[str, Any], check_finite: bool = True) -> TridiagonalPlusLowRank:
        T = Tridiagonal(a["diag"], a["lower"], a["upper"], check_finite=check_finite)
        return TridiagonalPlusLowRank(T, a["U"], a["V"], check_finite=check_finite)

    def __getitem__(self, key: Any) -> TridiagonalPlusLowRank:
        """``H[k]``, ``H[1:3]``, ``H[idx]``: the operator of the selected batch entries."""
        nd = {"diag": 1, "lower": 1, "upper": 1, "U": 2, "V": 2}
        return self._from(_algebra.batch_index(self, key, self._arrays(), nd), check_finite=False)

    def to(self, *args: Any, **kwargs: Any) -> TridiagonalPlusLowRank:
        """``torch.Tensor.to`` applied to every array (torch-backed operators only)."""
        return self._from(_algebra.to_device(self, self._arrays(), *args, **kwargs))

    def shift(self, c: Any) -> TridiagonalPlusLowRank:
        """``H - c I``; ``c`` a scalar or an array broadcastable against T's batch shape."""
        return TridiagonalPlusLowRank(self.tridiagonal.shift(c), self.U, self.V)

    def __add__(self, other: Any) -> Any:
        if isinstance(other, (Tridiagonal, _algebra.ScaledIdentity)):
            return TridiagonalPlusLowRank(self.tridiagonal + other, self.U, self.V)
        if isinstance(other, TridiagonalPlusLowRank):
            bk = self._backend
            dt = bk.result_dtype(self.U, other.U)
            batch = broadcast_shapes({"left": self._batch_shape, "right": other.batch_shape})

            def cat(a, b):
                a = bk.broadcast_to(bk.astype(a, dt), batch + tuple(a.shape[-2:]))
                b = bk.broadcast_to(bk.astype(b, dt), batch + tuple(b.shape[-2:]))
                return bk.concat([a, b], axis=-1)

            return TridiagonalPlusLowRank(self.tridiagonal + other.tridiagonal,
                                          cat(self.U, other.U), cat(self.V, other.V))
        return NotImplemented

    __radd__ = __add__

    def __sub__(self, other: Any) -> Any:
        if isinstance(other, (Tridiagonal, TridiagonalPlusLowRank, _algebra.ScaledIdentity)):
            return self + (-1.0) * other
        return NotImplemented

    def __rsub__(self, other: Any) -> Any:
        if isinstance(other, (Tridiagonal, _algebra.ScaledIdentity)):
            return (-1.0) * self + other
        return NotImplemented

    def __mul__(self, c: Any) -> Any:
        if not _algebra.is_scalar(c):
            return NotImplemented
        return TridiagonalPlusLowRank(c * self.tridiagonal, c * self.U, self.V)

    __rmul__ = __mul__

    def __neg__(self) -> TridiagonalPlusLowRank:
        return (-1.0) * self

    def resolvent_entries(self, pairs: Any, z: Any = 0.0, **solve_kwargs: Any) -> Any:
        """``G_ij = [(H - z I)^{-1}]_{ij}`` for integer ``pairs`` (K, 2); shape
        ``broadcast(batch_shape, z.shape) + (K,)``.  One :meth:`solve` with the distinct unit
        columns ``e_j``: O(N r) per distinct ``j``; exact and differentiable."""
        return _algebra.resolvent_entries(self, pairs, z, **solve_kwargs)

    # -- products -----------------------------------------------------------------------------
    def matvec(self, x: Any) -> Any:
        """``H x = T x + U (V^T x)`` for x (..., N) or (..., N, k); O(N r k)."""
        return self._apply(self.tridiagonal.matvec, self.U, self.V, x)

    def rmatvec(self, x: Any) -> Any:
        """``H^T x = T^T x + V (U^T x)`` (transpose, not conjugate transpose)."""
        return self._apply(self.tridiagonal.rmatvec, self.V, self.U, x)

    def _apply(self, tri_apply, left, right, x):
        bk = self._backend
        backend_for(self.U, x)
        x = as_array(bk, "x", x, like=self.U, scalar_ok=False)
        is_vec, _, _ = split_rhs(x, len(self._batch_shape), self._n)
        y = tri_apply(x)  # the tridiagonal part reads x by the same vector/matrix rule
        xx = x[..., None] if is_vec else x  # the low-rank part: (..., N, k)
        dtype = y.dtype
        low = bk.astype(left, dtype) @ (la.mT(bk.astype(right, dtype)) @ bk.astype(xx, dtype))
        return y + (low[..., 0] if is_vec else low)

    # -- Woodbury -----------------------------------------------------------------------------
    def _prepare(self, z: Any, extra: dict | None = None, extra_dtype: Any = None):
        """Full batch shape and dtype of a computation with shift ``z``."""
        bk = self._backend
        backend_for(self.U, z)
        z_arr = as_array(bk, "z", z, like=self.U)
        shapes = {"operator": self._batch_shape, "z": tuple(z_arr.shape)}
        if extra:
            shapes.update(extra)
        batch = broadcast_shapes(shapes)
        args = [self.U, z if isinstance(z, (bool, int, float, complex)) else z_arr]
        if extra_dtype is not None:
            args.append(extra_dtype)
        return batch, bk.result_dtype(*args)

    def _low(self, M: Any, batch: tuple[int, ...], dtype: Any) -> Any:
        bk = self._backend
        return bk.broadcast_to(bk.astype(M, dtype), batch + tuple(M.shape[-2:]))

    def solve(
        self, b: Any, z: Any = 0.0, *, method: str = "auto", check_finite: bool = True,
        return_info: bool = False, chunk_length: int | None = None,
    ) -> Any:
        """``(H - z I)^{-1} b`` by Woodbury; O(N (k + r) + N r^2 + r^3).

        ``b`` is a vector iff ``b.ndim == len(batch_shape) + 1`` (or 1), else a matrix
        ``(..., N, k)`` (torch.linalg.solve's rule); result shape as for
        :meth:`Tridiagonal.solve`.  ``A = T - zI``.  With the backend's fused Woodbury kernels
        (NumPy; torch on CPU tensors none of which needs a gradient; ``method`` "auto" or
        "sequential") and ``k <= r``: ``K = I + V^T A^{-1} U``
        from the fused forward pass (the products taken block by block while the sweeps run),
        then two k-column solves, ``y = A^{-1} b`` and ``x = A^{-1} (b - U K^{-1} V^T y)``.
        Otherwise (and where a pivot was guarded) one tridiagonal pass solves
        ``A [y, X] = [b, U]`` and ``x = y - X K^{-1} (V^T y)``.  ``method`` is passed to the
        tridiagonal kernels, and ``chunk_length`` to those of them that run in chunks (as for
        :meth:`Tridiagonal.resolvent_diagonal`; None on the NumPy and Dask backends).
        """
        bk = self._backend
        backend_for(self.U, b)
        ck = _chunk_length_kw(bk, chunk_length)
        if bk.lazy:  # dask: semisep/backends/dask/_lowrank.py
            return _lazy().solve(self, b, z, method, check_finite, return_info)
        return self._one_read(self._solve, return_info, None, b, z, method, ck, check_finite)

    def _solve(self, b: Any, z: Any, method: str, ck: dict, check_finite: bool,
               return_info: bool) -> Any:
        bk = self._backend
        b = as_array(bk, "b", b, like=self.U, scalar_ok=False)
        is_vec, b_batch, k = split_rhs(b, len(self._batch_shape), self._n)
        batch, dtype = self._prepare(z, extra={"b": b_batch}, extra_dtype=b)
        bb = self._low(b[..., None] if is_vec else b, batch, dtype)
        if self.rank == 0:
            x, pinfo = _sub(return_info, self.tridiagonal.solve, bb, z,
                            method=method, **ck, check_finite=check_finite)
            cond = np.ones(batch)
        else:
            K = None
            if k <= self.rank and self._fusable(method, z):  # K needs no gradient of b
                # K from the fused forward sweeps (no N x r solve), then two k-column solves:
                # y = A^{-1} b, w = K^{-1} V^T y, x = A^{-1} (b - U w)
                y, pinfo = _sub(return_info, self.tridiagonal.solve, bb, z,
                                method=method, **ck, check_finite=check_finite)
                fused = self._fused_capacitance(z, batch, method, "solve")
                if fused is not None:  # else a guarded pivot: the composed path, which refines
                    K, cond, _ = fused
                    w = la.solve(bk, K, la.matmul_mixed(bk, la.mT(self.V), y, dtype))
                    x = self.tridiagonal.solve(
                        bb - la.matmul_mixed(bk, self.U, w, dtype), z, method=method, **ck, check_finite=False
                    )
            if K is None:
                rhs = bk.concat([bb, self._low(self.U, batch, dtype)], axis=-1)
                sol, pinfo = _sub(return_info, self.tridiagonal.solve, rhs, z,
                                  method=method, **ck, check_finite=check_finite)
                y, X = sol[..., :k], sol[..., k:]
                Vt = la.mT(bk.astype(self.V, dtype))
                K, cond, w = self._capacitance(X, "solve", z, Vt @ y)
                x = y - X @ w
        x = x[..., 0] if is_vec else x
        if not return_info:
            return x
        return x, WoodburyInfo({"solve": pinfo}, _host_cond(bk, cond), self.rank)

    def logdet(
        self, z: Any = 0.0, *, method: str = "auto", check_finite: bool = True,
        return_info: bool = False, chunk_length: int | None = None,
    ) -> Any:
        """``log det(H - zI) = log det(T - zI) + log det K`` (matrix determinant lemma).

        Shape ``broadcast(batch_shape, z.shape)``.  Imaginary part in (-pi, pi] as with
        ``numpy.linalg.slogdet``; real when the dtype is real and every determinant in the
        batch is positive, complex (imaginary part pi where negative) otherwise -- the rule of
        :meth:`Tridiagonal.logdet`.  O(N r^2 + r^3).  ``K = I + V^T (T - zI)^{-1} U`` comes
        from the fused forward pass where the backend has it (NumPy; torch on CPU tensors
        none of which needs a gradient; ``method`` "auto" or "sequential"; no guarded pivot),
        else from an r-column solve.  ``method`` and ``chunk_length`` as for :meth:`solve`.
        """
        bk = self._backend
        ck = _chunk_length_kw(bk, chunk_length)
        if bk.lazy:  # dask: semisep/backends/dask/_lowrank.py
            return _lazy().logdet(self, z, method, check_finite, return_info)
        # in one read (r > 0), log det(T - zI) may stay complex with zero imaginary parts: the
        # same sum
        return self._one_read(self._logdet, return_info, {"imag": True}, z, method, ck, check_finite)

    def _logdet(self, z: Any, method: str, ck: dict, check_finite: bool, return_info: bool) -> Any:
        bk = self._backend
        batch, dtype = self._prepare(z)
        ldT, pT = _sub(return_info, self.tridiagonal.logdet, z, method=method, **ck,
                       check_finite=check_finite)
        pivots = {"logdet": pT}
        if self.rank == 0:
            out = ldT + bk.zeros(batch, ldT.dtype, like=ldT)
            cond = np.ones(batch)
        else:
            fused = self._fused_capacitance(z, batch, method, "logdet")
            if fused is not None:  # K = I + V^T X from the fused forward pass alone
                K, cond, pX = fused
            else:  # K checked below, with the sign of the result in the same read
                X, pX = _sub(return_info, self.tridiagonal.solve,
                             self._low(self.U, batch, dtype), z, method=method, **ck, check_finite=False)
                K, cond = self._capacitance_matrix(X), None
            pivots["solve"] = pX
            sign, logabs = la.slogdet(bk, K)
            cdt = la.complex_dtype(bk, logabs.dtype)
            neg = None
            if bk.is_complex(dtype):
                # add the phases and wrap into (-pi, pi], as slogdet does
                phase = la.angle(bk, _expi(bk, ldT.imag + la.angle(bk, sign), cdt))
                out = bk.astype(ldT.real + logabs, cdt) + 1j * bk.astype(phase, cdt)
            else:
                # real: det(T - zI) and det K are real, the phase is exactly 0 or pi
                if bk.is_complex(ldT.dtype):  # a real problem's phase: exactly 0 or pi on every kernel
                    re, negT = ldT.real, ldT.imag != 0
                else:
                    re, negT = ldT, ldT != ldT  # all False
                neg = negT ^ (sign < 0)
                out = re + logabs
            neg_any = None if neg is None else neg.any()
            if cond is None:  # the capacitance check and the sign's test in one read
                K, cond, (neg_h,) = self._check_capacitance(K, "logdet", z, stacklevel=5, flags=(neg_any,))
            else:
                neg_h = neg_any is not None and bool(neg_any)
            if neg_h:
                out = bk.astype(out, cdt) + 1j * np.pi * bk.astype(neg, cdt)
        if not return_info:
            return out
        return out, WoodburyInfo(pivots, _host_cond(bk, cond), self.rank)

    def resolvent_diagonal(
        self, z: Any = 0.0, *, method: str = "auto", check_finite: bool = True,
        return_info: bool = False, chunk_length: int | None = None,
    ) -> Any:
        """``diag((H - zI)^{-1})``, exact, shape ``broadcast(batch_shape, z.shape) + (N,)``.

        ``G_ii`` of ``A = T - zI`` from the O(N) pivot sweeps; ``X = A^{-1} U`` and
        ``Y = A^{-T} V`` (one pass each with an (N, r) right-hand side; one shared pass when
        ``T`` is stored symmetric, since then ``A^T = A``); ``K = I_r + V^T X``; ``K W^T = Y^T``;
        ``diag_i = G_ii - sum_k X_ik W_ik``.  O(N r^2 + r^3).

        With fused Woodbury kernels (NumPy; torch on CPU tensors none of which needs a
        gradient, through the NumPy kernels; ``method`` "auto" or "sequential") the
        same quantities come from one set of LU pivots ``A = L D M`` shared by ``A`` and
        ``A^T``: ``X = A^{-1} U`` with ``K = I_r + V^T X`` summed block by block while the back
        sweep runs, then ``W = A^{-T} (V K^{-T})`` by a forward and a back sweep, the back
        sweep summing ``X_ik W_ik`` without storing ``W``.  The r columns are split over the
        threads.  ``V`` enters the products as it is: a real ``V`` at a complex z costs half
        the multiply-adds of a complex one.  Where a pivot was guarded it
        falls back to the composed path, whose solves take a refinement step.

        Raises :class:`SingularMatrixError` if ``T - zI`` or ``K`` is singular to working
        precision; ``return_info=True`` also returns a :class:`WoodburyInfo` (pivot counts and
        ``cond_2(K)``).  ``method`` and ``chunk_length`` as for :meth:`solve`.
        """
        bk = self._backend
        ck = _chunk_length_kw(bk, chunk_length)
        if bk.lazy:  # dask: semisep/backends/dask/_lowrank.py
            return _lazy().resolvent_diagonal(self, z, method, check_finite, return_info)
        return self._one_read(self._resolvent_diagonal, return_info, None, z, method, ck,
                              check_finite)

    def _resolvent_diagonal(self, z: Any, method: str, ck: dict, check_finite: bool,
                            return_info: bool) -> Any:
        bk = self._backend
        batch, dtype = self._prepare(z)
        r = self.rank
        if r and self._fusable(method, z):
            fused = self._resolvent_diagonal_fused(z, batch, method, check_finite)
            if fused is not None:
                out, pivots, cond = fused
                return (out, WoodburyInfo(pivots, _host_cond(bk, cond), r)) if return_info else out
        G, pG = _sub(return_info, self.tridiagonal.resolvent_diagonal, z,
                     method=method, **ck, check_finite=check_finite)
        pivots = {"resolvent_diagonal": pG}
        if r == 0:
            out = G + bk.zeros(batch + (self._n,), G.dtype, like=G)
            cond = np.ones(batch)
        else:
            T = self.tridiagonal
            Ub, Vb = self._low(self.U, batch, dtype), self._low(self.V, batch, dtype)
            if T.is_symmetric_storage:  # A^T = A: one pass for [U, V]
                XY, pX = _sub(return_info, T.solve,
                              bk.concat([Ub, Vb], axis=-1), z, method=method, **ck, check_finite=False)
                X, Y = XY[..., :r], XY[..., r:]
                pivots["solve"] = pX
            else:
                X, pX = _sub(return_info, T.solve, Ub, z, method=method, **ck, check_finite=False)
                Y, pY = _sub(return_info, T.T.solve, Vb, z, method=method, **ck, check_finite=False)
                pivots["solve"] = pX
                pivots["solve_transpose"] = pY
            # K W^T = Y^T, (..., r, N): factor the r x r K once against I_r and apply K^{-1}
            # with one matmul (cheaper than a LAPACK solve with N right-hand sides)
            K, cond, Kinv = self._capacitance(X, "resolvent_diagonal", z, la.eye(bk, r, X.dtype, like=X))
            Wt = Kinv @ la.mT(Y)
            out = G - la.sum_(bk, X * la.mT(Wt), -1)
        if not return_info:
            return out
        return out, WoodburyInfo(pivots, _host_cond(bk, cond), r)

    def _one_read(self, body: Any, return_info: bool, assume: dict | None, *args: Any) -> Any:
        """``body(*args, return_info)``, the work of a public call.  Where the backend defers
        reads (:meth:`Backend.host_reads`: a GPU) and no ``return_info`` is asked, in one host
        read: the scopes of its tridiagonal calls join one spanning scope
        (:meth:`semisep.backends.torch.reads.HostReads.spanning`), each of their questions is
        answered with the common path's value (every argument finite and in the kernels' range,
        no pivot guarded, nothing singular) and checked at the capacitance check's read (or at
        the end).  Where one is not (a NaN, entries to scale, a guarded pivot, a singular
        ``T - zI``) the results are dropped and ``body`` runs again with each tridiagonal call
        reading as it goes, so that the call decides, raises and warns as they do.  ``assume``:
        questions answered without a check (:meth:`HostReads.spanning`).  With r = 0 the one
        tridiagonal call reads once by itself.  ``body`` runs at the same depth on every path
        (the warnings' ``stacklevel``)."""
        reads = None if return_info or not self.rank else host_reads(self.tridiagonal)
        if reads is None:
            return body(*args, return_info)
        span = reads.spanning(assume)
        try:
            with span:
                out = body(*args, return_info)
                span.settle()
            return out
        except span.Stop:
            pass
        except Exception:  # raised on the common path's answers: the call's own where they hold
            try:
                span.settle()
            except span.Stop:
                pass
            else:
                raise
        return body(*args, return_info)


def _lazy() -> Any:
    """The Woodbury algorithms as dask task graphs (imported only for dask arrays)."""
    from .backends.dask import _lowrank

    return _lowrank


def _expi(bk, phase, cdt):
    """``exp(i phase)`` in the complex dtype ``cdt``."""
    return la.exp(bk, 1j * bk.astype(phase, cdt))
