"""``Quasiseparable``: the state-space (Eidelman-Gohberg) form with transition matrices.

For one batch element (N x N)::

    S[i, i] = diag_i
    S[i, j] = p_i . (a_{i-1} a_{i-2} ... a_{j+1} q_j)      i > j   (empty product = identity)
    S[i, j] = g_j . (b_{j-1} b_{j-2} ... b_{i+1} h_i)      i < j

i.e. the strictly lower part is the form ``(p, q, a)`` of order r_l (tinygp's
``StrictLowerTriQSM(p, q, a)``) and the strictly upper part is the *transpose* of the strictly
lower form ``(g, h, b)`` of order r_u.  ``a_0`` and ``b_0`` never enter (any value, e.g. the
identity).  ``.`` is the unconjugated dot product: complex data give complex symmetric (not
Hermitian) matrices in symmetric storage.  With ``a_i = I`` this is the generator form of
:class:`~semisep.Semiseparable`; with ``a_i = e^{-c (t_i - t_{i-1})}`` (Gaussian-process
kernels) every quantity stays of the size of the matrix entries, whatever the time span.

Algorithms (docs/mathematics.md, section "Quasiseparable operators"; every recursion is one
O(N) sweep per batch element, written once in the kernels of
:mod:`semisep.backends.numpy.quasiseparable`, mirrored op for op in torch by
:mod:`semisep.backends.torch.quasiseparable`):

* ``matvec`` / ``rmatvec``: a forward and a backward state sweep, O(N r^2 k);
* :meth:`Quasiseparable.factor`: the LU factorization of ``S - z I`` without row exchanges,
  ``L = I + (p, qt, a)``, ``U = diag(d) + (g, ht, b)^T``, by the state recursion
  ``d_i = alpha_i - p_i . M_i g_i``, ``qt_i = (q_i - a_i M_i g_i)/d_i``,
  ``ht_i = h_i - b_i M_i^T p_i``, ``M_{i+1} = a_i M_i b_i^T + qt_i ht_i^T``: O(N (r_l^2 r_u +
  r_l r_u^2)) per element;
* ``logdet = sum_i log d_i``; ``solve``: two sweeps on the factors;
* ``resolvent_diagonal``: ``G_ii = (1 + ht_i . Psi_i qt_i)/d_i`` with a backward r_u x r_l
  state recursion over the transitions of the inverse factors, O(N r^3), no N x N array.

Pivot guard and singularity certificate (the semantics of :class:`~semisep.Tridiagonal`):
``pivmin = eps(dtype) * s`` with ``s`` the largest of ``|Re|, |Im|`` over the diagonal of
``S - z I`` and the first sub- and super-diagonals ``p_i . q_{i-1}``, ``g_i . h_{i-1}`` --
entries of the matrix, so ``s <= ||S - zI||_2``, whatever the size of the generators.  A pivot
with ``|d_i| < pivmin`` is replaced by ``pivmin d_i/|d_i|`` and counted (a zero leading minor of
an invertible matrix); :class:`~semisep.SingularMatrixError` is raised only when some
``|1/G_ii| < 4 pivmin`` (``G_{N-1,N-1} = 1/d_{N-1}``; since ``|G_ii| <= ||(S - zI)^{-1}||_2``
this certifies ``cond_2 > 1/(4 eps)``), checked on the last pivot always and on the whole
inverse diagonal whenever a pivot was guarded.  Unlike the tridiagonal sweeps, the unpivoted
quasiseparable LU does not recover accurately from a guarded pivot: ``solve`` refines
iteratively (with ``S - z I``) until the correction is at rounding level, while ``logdet`` and
``resolvent_diagonal`` raise :class:`~semisep.SemisepError` for such a matrix (a vanishing
leading minor of a matrix that is not singular; it never happens for positive-definite or
shifted-Hermitian matrices with ``Im z != 0``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _linalg as la
from ._operator import StructuredOperator
from ._quasiseparable_rows import _detach, _distinct, _engine, _is_diagonal_form, _Rows, _transitions
from ._validation import broadcast_shapes, split_rhs
from ._validation import check_finite as _require_finite
from .backends import SINGULAR_FACTOR, Backend, backend_for
from .errors import SemisepError, ShapeError, SingularMatrixError
from .tridiagonal_core import PivotInfo, _check_indices, _is_python_scalar

__all__ = ["Quasiseparable", "QuasiseparableFactorization"]

_NAMES = ("p", "q", "a", "g", "h", "b")
#: the most iterative-refinement steps ``solve`` takes after a guarded pivot
_MAX_REFINEMENT = 10


class Quasiseparable(StructuredOperator):
    """A batch of quasiseparable matrices in state-space form, N x N (module docstring).

    Parameters
    ----------
    diag : array (..., N)
        The diagonal.
    p, q : arrays (..., N, r_l)
        Output and input vectors of the strictly lower part.
    a : array (..., N, r_l, r_l), or (..., N, r_l) for diagonal transitions
        Transition matrices of the strictly lower part; ``a_0`` is not used.  Diagonal
        transitions are expanded to matrices on construction (``self.a`` is always
        ``(..., N, r, r)``); the diagonals are kept too, and in symmetric storage the NumPy
        engine's factorization and inverse diagonal use them from rank 3 on (O(r^2) per step
        instead of O(r^3); the products and solves use the matrices).
    g, h : arrays (..., N, r_u), or None
    b : array (..., N, r_u, r_u) or (..., N, r_u), or None
        The strictly lower form whose transpose is the strictly upper part; ``b_0`` is not
        used.  ``g = h = b = None`` means **symmetric** (``g, h, b = p, q, a``; complex
        symmetric, not Hermitian, for complex data); pass all three or none.
    check_finite : bool, default True
        Raise :class:`~semisep.NonFiniteError` naming the argument that holds NaN or inf.

    Leading dimensions broadcast (batch shape: their broadcast); the dtype is the promotion of
    all arrays (integers -> float64); NumPy arrays or torch tensors (not mixed).

    Examples
    --------
    >>> import numpy as np, semisep as ss
    >>> t = np.sort(np.random.default_rng(0).uniform(0, 100, 50))
    >>> a = np.exp(-np.diff(t, prepend=t[0]))[:, None, None]      # e^{-(t_i - t_{i-1})}
    >>> K = ss.Quasiseparable(np.full(50, 1.1), a[:, :, 0], np.ones((50, 1)), a)
    >>> bool(np.allclose(K.to_dense(), np.exp(-abs(t[:, None] - t)) + 0.1 * np.eye(50)))
    True
    """

    def __init__(self, diag: Any, p: Any, q: Any, a: Any, g: Any = None, h: Any = None,
                 b: Any = None, *, check_finite: bool = True):
        given = [x is not None for x in (g, h, b)]
        if any(given) and not all(given):
            missing = ", ".join(n for n, x in zip(("g", "h", "b"), given, strict=True) if not x)
            raise ValueError(
                "pass all of g, h, b (general upper part) or none of them (symmetric); "
                f"missing: {missing}"
            )
        bk = backend_for(diag, p, q, a, g, h, b)
        diag = bk.asarray(diag)
        if diag.ndim < 1 or diag.shape[-1] < 1:
            raise ShapeError(f"diag has shape {tuple(diag.shape)}: it must be (..., N), N >= 1")
        n = int(diag.shape[-1])
        arrs: dict[str, Any] = {}
        diagonal: dict[str, Any] = {}  # transitions given as diagonals (..., N, r)
        for name, x in zip(_NAMES, (p, q, a, g, h, b), strict=True):
            if x is None:
                continue
            x = bk.asarray(x, like=diag)
            if name in ("p", "q", "g", "h") and (x.ndim < 2 or x.shape[-2] != n):
                raise ShapeError(
                    f"{name} has shape {tuple(x.shape)} but diag has shape "
                    f"{tuple(diag.shape)}: {name} must have shape (..., N, r) with N = {n}"
                )
            arrs[name] = x
        for left, right, trans in (("p", "q", "a"), ("g", "h", "b")):
            if left not in arrs:
                continue
            r = int(arrs[left].shape[-1])
            if int(arrs[right].shape[-1]) != r:
                raise ShapeError(
                    f"{left} has shape {tuple(arrs[left].shape)} and {right} has shape "
                    f"{tuple(arrs[right].shape)}: their ranks (last dimensions) must agree"
                )
            if _is_diagonal_form(arrs[trans], n, r):
                diagonal[trans] = arrs[trans]
            arrs[trans] = _transitions(bk, trans, arrs[trans], n, r)
        shapes = {"diag": tuple(diag.shape[:-1])}
        for name, x in arrs.items():
            shapes[name] = tuple(x.shape[:-3 if name in ("a", "b") else -2])
        self._batch_shape = broadcast_shapes(shapes)
        dtype = bk.result_dtype(diag, *arrs.values())
        if check_finite:  # repeated (stride-0) entries read once: q = v of a kernel
            _require_finite(bk, diag=_distinct(diag), **{k: _distinct(x) for k, x in arrs.items()})
        self._backend: Backend = bk
        self._n = n
        self._dtype = dtype
        self.diag = bk.astype(diag, dtype)
        self.p, self.q, self.a = (bk.astype(arrs[k], dtype) for k in ("p", "q", "a"))
        self.g = self.h = self.b = None
        if "g" in arrs:
            self.g, self.h, self.b = (bk.astype(arrs[k], dtype) for k in ("g", "h", "b"))
        #: the diagonals ``(..., N, r)`` of ``a`` where it was given diagonal, else None
        self._a_diag = bk.astype(diagonal["a"], dtype) if "a" in diagonal else None

    # -- structure ----------------------------------------------------------------------------
    @property
    def is_symmetric_storage(self) -> bool:
        """True when constructed with ``g = h = b = None``."""
        return self.g is None

    @property
    def upper_form(self) -> tuple[Any, Any, Any]:
        """``(g, h, b)``, or ``(p, q, a)`` for symmetric storage."""
        if self.g is None:
            return self.p, self.q, self.a
        return self.g, self.h, self.b

    @property
    def rank_lower(self) -> int:
        return int(self.p.shape[-1])

    @property
    def rank_upper(self) -> int:
        return int(self.upper_form[0].shape[-1])

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held (``diag, p, q, a`` and, unless symmetric, ``g, h, b``)."""
        return sum(la.nbytes(x) for x in (self.diag, self.p, self.q, self.a, self.g, self.h,
                                           self.b) if x is not None)

    @property
    def dense_nbytes(self) -> int:
        return int(np.prod(self.shape)) * la.itemsize(self.diag)

    @property
    def T(self) -> Quasiseparable:
        """The transpose (never the conjugate transpose): lower and upper forms swap."""
        if self.is_symmetric_storage:
            return self
        return Quasiseparable(self.diag, self.g, self.h, self.b, self.p, self.q, self.a,
                              check_finite=False)

    def __repr__(self) -> str:
        sym = ", symmetric" if self.is_symmetric_storage else ""
        return (
            f"Quasiseparable(shape={self.shape}, ranks=({self.rank_lower}, {self.rank_upper}), "
            f"dtype={self.dtype}, backend={self._backend.name}{sym})"
        )

    def to_dense(self) -> Any:
        """The dense matrix ``batch_shape + (N, N)``, as ``S @ I`` (O(N^2 r^2))."""
        bk, n = self._backend, self._n
        eye = la.eye(bk, n, self._dtype, like=self.diag)
        return self.matvec(bk.broadcast_to(eye, self.shape))

    # -- products -----------------------------------------------------------------------------
    def matvec(self, x: Any, *, method: str = "auto") -> Any:
        """``S x`` for x (..., N) or (..., N, k) (torch.linalg.solve's rule); O(N r^2 k).
        ``method``: as :meth:`factor`."""
        return self._apply(x, transpose=False, method=method)

    def rmatvec(self, x: Any, *, method: str = "auto") -> Any:
        """``S^T x`` (transpose, not conjugate transpose)."""
        return self._apply(x, transpose=True, method=method)

    def _apply(self, x: Any, transpose: bool, method: str = "auto") -> Any:
        bk, n = self._backend, self._n
        backend_for(self.diag, x)
        x = bk.asarray(x, like=self.diag)
        is_vec, x_batch, k = split_rhs(x, len(self._batch_shape), n)
        batch = broadcast_shapes({"operator": self._batch_shape, "x": x_batch})
        dtype = bk.result_dtype(self.diag, x)
        rows = _Rows(self, batch, dtype)
        xx = rows.take(x[..., None] if is_vec else x, 2)
        lower, upper = rows.forms()
        if transpose:
            lower, upper = upper, lower
        y = _engine(bk, method).matvec(rows.take(self.diag, 1), *lower, *upper, xx)
        y = y.reshape(batch + (n, k))
        return y[..., 0] if is_vec else y

    # -- factorization and the O(N) algorithms --------------------------------------------------
    def factor(self, z: Any = 0.0, *, method: str = "auto",
               check_finite: bool = True) -> QuasiseparableFactorization:
        """The LU factorization of ``S - z I`` (module docstring), shared by
        :meth:`QuasiseparableFactorization.solve`, ``.logdet`` and ``.resolvent_diagonal``.

        ``z``: scalar or array broadcastable against ``batch_shape``; the factorization's batch
        shape is their broadcast.  Raises :class:`SingularMatrixError` if ``S - z I`` is
        singular to working precision.

        ``method`` (every operation takes it; the factorization keeps it for its solves and
        inverse diagonal): ``"auto"``; ``"sequential"``, the compiled kernels (NumPy arrays,
        CPU tensors); ``"chunked"``, the scan form in torch ops (what ``"auto"`` runs off the
        CPU); ``"loop"``, the portable torch loop.  The decision table is
        :func:`semisep.backends.torch.select.select_quasiseparable_kernel`;
        ``return_info`` reports the kernel that ran."""
        return self._factor(z, check_finite, {}, None, "factor", method)

    def _factor(self, z, check, extra, extra_dtype, what, method) -> QuasiseparableFactorization:
        bk = self._backend
        _engine(bk, method)  # the method's name checked before any work
        backend_for(self.diag, z)
        z_arr = bk.asarray(z, like=self.diag)
        if check:
            _require_finite(bk, z=z_arr)
        shapes = {"operator": self._batch_shape, "z": tuple(z_arr.shape)}
        shapes.update(extra)
        batch = broadcast_shapes(shapes)
        dt_args = [self.diag, z if _is_python_scalar(z) else z_arr]
        if extra_dtype is not None:
            dt_args.append(extra_dtype)
        dtype = bk.result_dtype(*dt_args)
        return QuasiseparableFactorization(self, z, z_arr, batch, dtype, what, method)

    def solve(self, b: Any, z: Any = 0.0, *, method: str = "auto", check_finite: bool = True,
              return_info: bool = False) -> Any:
        """``(S - z I)^{-1} b``; b (..., N) or (..., N, k) by torch.linalg.solve's rule.

        One factorization (O(N r^3)) and two sweeps (O(N r^2 k)).  Where a pivot was guarded
        (a zero leading minor of an invertible matrix) the factors are those of a neighbour of
        ``S - z I`` and iterative refinement with ``S - z I`` follows, until the correction is
        at rounding level (at most 10 steps; the count is ``PivotInfo.refinement_steps``)."""
        bk = self._backend
        backend_for(self.diag, b)
        b = bk.asarray(b, like=self.diag)
        if check_finite:
            _require_finite(bk, b=b)
        _, b_batch, _ = split_rhs(b, len(self._batch_shape), self._n)
        fac = self._factor(z, check_finite, {"b": b_batch}, b, "solve", method)
        return fac.solve(b, return_info=return_info)

    def logdet(self, z: Any = 0.0, *, method: str = "auto", check_finite: bool = True,
               return_info: bool = False) -> Any:
        """``log det(S - z I)``, shape ``broadcast(batch_shape, z.shape)``; the imaginary part
        in (-pi, pi]; real when the dtype is real and every determinant is positive (the rule
        of :meth:`Tridiagonal.logdet`)."""
        fac = self._factor(z, check_finite, {}, None, "logdet", method)
        return fac.logdet(return_info=return_info)

    def resolvent_diagonal(self, z: Any = 0.0, *, indices: Any = None, method: str = "auto",
                           check_finite: bool = True, return_info: bool = False) -> Any:
        """``diag((S - z I)^{-1})``, shape ``broadcast(batch_shape, z.shape) + (N,)``; O(N r^3).

        ``indices``: positions (shared by the batch) to return; the whole diagonal is computed
        and gathered (no saving).  ``return_info``: also return a :class:`PivotInfo`.
        Raises :class:`SingularMatrixError` when some ``|1/G_ii| < 4 pivmin``."""
        fac = self._factor(z, check_finite, {}, None, "resolvent_diagonal", method)
        return fac.resolvent_diagonal(indices=indices, return_info=return_info)


class QuasiseparableFactorization:
    """``S - z I = L U`` (no row exchanges) for a batch; made by :meth:`Quasiseparable.factor`.

    Attributes: ``batch_shape``, ``dtype``, ``pivots`` (``batch_shape + (N,)``, the ``d_i``),
    ``pivmin`` and ``pivots_guarded`` (NumPy, ``batch_shape``).  The arrays are held flattened
    to ``prod(batch_shape)`` rows."""

    def __init__(self, op: Quasiseparable, z: Any, z_arr: Any, batch: tuple[int, ...],
                 dtype: Any, what: str, method: str = "auto"):
        bk = op.backend
        self._op, self._z, self.batch_shape, self.dtype = op, z, batch, dtype
        self._bk, self._method = bk, method
        rows = _Rows(op, batch, dtype)
        if type(z) in (int, float) and z == 0 and bk.name == "numpy":
            alpha = op.diag  # diag - 0 is diag, bit for bit (-0.0 - 0 = -0.0): no copy
        else:
            alpha = op.diag - (z if _is_python_scalar(z) else z_arr[..., None])
        self._alpha = rows.take(bk.astype(alpha, dtype), 1)
        self._alpha = bk.broadcast_to(self._alpha, (rows.count, op.n))
        self._lower, self._upper = rows.forms()
        self._rows = rows
        eng = _engine(bk, self._method)
        p, _, a = self._lower
        g, _, b = self._upper
        self._G = None
        self._Gmax = None  # max_i |G_ii| per row where the engine gives it with G
        # the forms the factorization and inverse diagonal read: diagonal transitions
        # (..., N, r) where given so, in symmetric storage, for an engine that takes them
        lower_f, upper_f = self._lower, self._upper
        self._inverse_factors = (p, a, g, b)
        if (op._a_diag is not None and op.is_symmetric_storage
                and op.rank_lower >= getattr(eng, "DIAGONAL_MIN_RANK", np.inf)):
            lower_f = upper_f = (p, self._lower[1], rows.diagonal_transitions(op._a_diag))
            self._inverse_factors = (p, lower_f[2], p, lower_f[2])
        fused = None
        if what == "resolvent_diagonal" and hasattr(eng, "factor_inverse_diagonal"):
            # one compiled call: pivot threshold, factors, inverse diagonal (NumPy engine)
            fused = eng.factor_inverse_diagonal(self._alpha, *lower_f, *upper_f)
        if fused is not None:
            d, qt, guarded, last_small, delta, self._G, self.pivmin, self._Gmax = fused
            ht = None  # not formed: this factorization serves the inverse diagonal only
        else:
            self.pivmin = rows.pivmin(self._alpha)
            d, qt, ht, guarded, last_small, delta = eng.factor(self._alpha, *lower_f, *upper_f,
                                                               self.pivmin)
        self._delta = delta
        self._d, self._qt, self._ht = d, qt, ht
        self.pivots_guarded = np.asarray(guarded).reshape(batch)
        singular = np.asarray(last_small, dtype=bool)
        if bool(np.any(guarded)):
            singular = singular | self._certificate(self._inverse_diagonal())
        _raise_if_singular(singular, batch, what, z)

    @property
    def pivots(self) -> Any:
        return self._d.reshape(self.batch_shape + (self._op.n,))

    def _inverse_diagonal(self) -> Any:
        if self._G is None:
            self._G = _engine(self._bk, self._method).inverse_diagonal(self._d, self._qt, self._ht,
                                                          *self._inverse_factors)
        return self._G

    def _certificate(self, G: Any) -> np.ndarray:
        """Rows with some ``|G_ii| * 4 pivmin > 1`` (or a non-finite ``G_ii``)."""
        # max_i |G_ii| * c > 1 iff some |G_ii| * c > 1 (rounded products are monotone); the
        # maximum is NaN if any entry is
        eng = _engine(self._bk, self._method)
        if G is self._G and self._Gmax is not None:
            g = self._Gmax  # computed with G by the engine
        else:
            G = np.asarray(self._bk.to_numpy(_detach(G)))
            g = eng.max_abs_rows(G) if hasattr(eng, "max_abs_rows") else np.max(np.abs(G), axis=-1)
        piv = np.asarray(self._bk.to_numpy(_detach(self.pivmin))).reshape(-1)
        with np.errstate(invalid="ignore", over="ignore"):
            return ~(g * (SINGULAR_FACTOR * piv) <= 1.0)

    def _info(self, out: Any, return_info: bool, steps: int = 0, operation: str = "factor") -> Any:
        if not return_info:
            return out
        if self._bk.name == "torch":
            from .backends.torch.quasiseparable import kernel_ran

            tensors = (self._d, self._qt, self._ht, *(x for x in self._inverse_factors if x is not None))
            ran = kernel_ran(operation, *tensors, method=self._method)
        else:
            ran = "sequential"
        info = PivotInfo(
            pivots_guarded=self.pivots_guarded,
            pivmin=np.asarray(self._bk.to_numpy(_detach(self.pivmin))).reshape(self.batch_shape),
            method=ran, refinement_steps=steps, requested_method=self._method,
        )
        return out, info

    def logdet(self, *, return_info: bool = False) -> Any:
        """``log det(S - z I) = sum_i log d_i``, shape ``batch_shape``."""
        bk, d = self._bk, self._d
        eng = _engine(bk, self._method)
        real = not bk.is_complex(self.dtype)
        if real and hasattr(eng, "log_abs_det"):
            logabs, neg = eng.log_abs_det(d)  # row-parallel, the expressions below bit for bit
        else:
            logabs = la.sum_(bk, la.log(bk, abs(d)), -1)
            neg = la.sum_(bk, bk.astype(d < 0, self.dtype), -1) % 2 == 1 if real else None
        if real:
            if bool(neg.any()):
                cdt = la.complex_dtype(bk, self.dtype)
                out = bk.astype(logabs, cdt) + 1j * np.pi * bk.astype(neg, cdt)
            else:
                out = logabs
        else:
            ang = la.sum_(bk, la.angle(bk, d), -1)
            ang = np.pi - (np.pi - ang) % (2 * np.pi)  # into (-pi, pi]
            out = bk.astype(logabs, self.dtype) + 1j * bk.astype(ang, self.dtype)
        self._refuse_if_guarded("logdet")
        return self._info(out.reshape(self.batch_shape), return_info)

    def _refuse_if_guarded(self, what: str) -> None:
        """A guarded pivot (a vanishing leading minor of a matrix that is not singular) makes
        the unpivoted factors those of a nearby matrix with entries of size ``1/pivmin``:
        ``solve`` recovers through iterative refinement, but ``log det`` and the inverse
        diagonal cannot be recovered from them, so they refuse instead of returning digits
        that are not there."""
        if bool(np.any(self.pivots_guarded)):
            raise SemisepError(
                f"{what}: S - z I has a vanishing leading minor ({int(self.pivots_guarded.sum())}"
                " guarded pivot(s)) but is not singular to working precision; the structured LU "
                "without row exchanges cannot give it accurately (solve can: it refines).  "
                "Shift z slightly, or use a dense pivoted method (Semiseparable: method='dense')"
            )

    def solve(self, b: Any, *, return_info: bool = False) -> Any:
        """``(S - z I)^{-1} b``; ``b`` (..., N) or (..., N, k) whose batch broadcasts to
        ``batch_shape``."""
        bk, op = self._bk, self._op
        backend_for(op.diag, b)
        b = bk.asarray(b, like=op.diag)
        n = op.n
        is_vec, b_batch, k = split_rhs(b, len(self.batch_shape), n)
        full = broadcast_shapes({"factorization": self.batch_shape, "b": b_batch})
        if full != self.batch_shape:
            raise ShapeError(
                f"b has batch shape {b_batch}, which does not broadcast to the factorization's "
                f"batch shape {self.batch_shape}"
            )
        bb = b[..., None] if is_vec else b
        f = self._rows.take(bk.astype(bb, self.dtype), 2)
        eng = _engine(bk, self._method)
        p, _, g, _ = self._inverse_factors
        a, b_ = self._lower[2], self._upper[2]  # the transition matrices (the sweeps take them)
        x = eng.solve(self._d, self._qt, self._ht, p, a, g, b_, f, False)
        steps = 0
        if bool(np.any(self.pivots_guarded)):
            # iterative refinement with S - zI until the correction is at rounding level
            eps = bk.eps(self.dtype)
            while steps < _MAX_REFINEMENT:
                r = f - eng.matvec(self._alpha, *self._lower, *self._upper, x)
                dx = eng.solve(self._d, self._qt, self._ht, p, a, g, b_, r, False)
                x = x + dx
                steps += 1
                size = float(np.max(np.abs(bk.to_numpy(_detach(x)))))
                if float(np.max(np.abs(bk.to_numpy(_detach(dx))))) <= 4 * eps * size:
                    break
            else:
                raise SemisepError(
                    f"solve: iterative refinement after {steps} guarded pivot(s) did not "
                    f"converge in {_MAX_REFINEMENT} steps (S - z I has a vanishing leading minor "
                    "and is badly conditioned); use a dense pivoted solve"
                )
        x = x.reshape(self.batch_shape + (n, k))
        return self._info(x[..., 0] if is_vec else x, return_info, steps, operation="solve")

    def resolvent_diagonal(self, *, indices: Any = None, return_info: bool = False) -> Any:
        """``diag((S - z I)^{-1})``, ``batch_shape + (N,)`` (or ``+ (len(indices),)``)."""
        G = self._inverse_diagonal()
        sing = self._certificate(G)
        _raise_if_singular(sing, self.batch_shape, "resolvent_diagonal", self._z)
        self._refuse_if_guarded("resolvent_diagonal")
        G = G.reshape(self.batch_shape + (self._op.n,))
        if indices is not None:
            G = G[..., _check_indices(indices, self._op.n)]
        return self._info(G, return_info, operation="inverse_diagonal")


def _raise_if_singular(sing: np.ndarray, batch: tuple[int, ...], what: str, z: Any) -> None:
    sing = np.asarray(sing).reshape(batch if batch else ())
    if sing.any():
        where = tuple(int(i) for i in np.argwhere(sing)[0]) if batch else ()
        loc = f" at batch index {where}" if batch else ""
        zs = z if _is_python_scalar(z) else "the given z"
        raise SingularMatrixError(
            f"{what}: S - z I is singular to working precision{loc} (z = {zs}); "
            f"{int(sing.sum())} of {sing.size} matrices in the batch are singular"
        )
