"""The ``Tridiagonal`` operator and its O(N) algorithms, written once for every backend.

Notation (docs/mathematics.md): ``A = T - z I``, ``alpha_i = a_i - z``, ``b_i = A[i, i+1]``
(``upper``), ``c_i = A[i+1, i]`` (``lower``), ``beta_i = b_i c_i``.  The algorithms use the
LU / UL pivot ratios

    gL_0 = 1/alpha_0,          gL_i = 1/(alpha_i - beta_{i-1} gL_{i-1})
    gR_{N-1} = 1/alpha_{N-1},  gR_i = 1/(alpha_i - beta_i gR_{i+1})
    G_ii = 1/(alpha_i - beta_{i-1} gL_{i-1} - beta_i gR_{i+1})

which never overflow (unlike the theta/phi determinant recursion, whose terms grow like
e^{gamma i} and overflow complex128 near N = 900 on a clean chain).
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _algebra
from . import _linalg as la
from ._operator import StructuredOperator
from ._validation import as_array, broadcast_shapes, non_finite_error, split_rhs
from ._validation import check_finite as _require_finite  # the methods have a check_finite flag
from .backends import Backend, backend_for
from .errors import ShapeError, SingularMatrixError

__all__ = ["Tridiagonal", "PivotInfo", "resolvent_diagonal", "solve", "logdet"]


@dataclass(frozen=True)
class PivotInfo:
    """What the pivot sweeps did, returned with ``return_info=True``.

    Attributes
    ----------
    pivots_guarded : numpy.ndarray of int64, shape ``batch_shape``
        How many pivots had ``|d| < pivmin`` and were replaced by ``pivmin * d/|d|`` (a zero
        leading minor of an invertible matrix).  Zero for Hermitian ``T`` with ``Im z != 0``.
    pivmin : numpy.ndarray, shape ``batch_shape``
        The guard threshold used, ``eps(dtype) * s`` with ``s`` the largest entry of
        ``T - z I`` measured as ``max(|Re|, |Im|)`` (within sqrt(2) of the largest modulus).
    method : str
        The kernel that ran, as the backend's selection policy chose it (never ``"auto"`` on the
        NumPy and torch backends): ``"sequential"`` (compiled sweeps), ``"sequential-selected"``
        (NumPy, ``indices=``: the selected-entry kernel), ``"chunked"`` (torch's chunked scan;
        also when the fused kernels declined a call), ``"fused"`` (torch's Triton kernels) or
        ``"reference"``.  The policies: :func:`semisep.backends.torch.select.select_kernel`
        and :func:`semisep.backends.numpy.select_kernel`.  A backend that keeps no record
        (Dask) reports the ``method`` argument as given.  The quasiseparable operators report
        ``"sequential"`` (their compiled kernels) or ``"loop"`` (the portable torch loop: off
        the CPU, and an inverse diagonal that needs a gradient).
    refinement_steps : int
        Iterative-refinement steps taken by the core after ``solve``: 0, since the solves are
        backward stable by themselves (partial pivoting; torch's chunked path refines inside
        the backend).
    requested_method : str or None
        The ``method`` argument as given (e.g. ``"auto"``); None where the caller did not
        record it.
    """

    pivots_guarded: Any
    pivmin: Any
    method: str
    refinement_steps: int = 0
    requested_method: str | None = None

    @property
    def total_guarded(self) -> int:
        return int(np.sum(self.pivots_guarded))


class Tridiagonal(StructuredOperator):
    """A batch of tridiagonal matrices ``T`` (N x N), real or complex, any array backend.

    Parameters
    ----------
    diag : array (..., N)
        Main diagonal, ``T[i, i] = diag[i]``.
    lower : array (..., N-1)
        Sub-diagonal, ``T[i+1, i] = lower[i]`` (LAPACK's ``dl``).
    upper : array (..., N-1) or None
        Super-diagonal, ``T[i, i+1] = upper[i]`` (LAPACK's ``du``).  ``None`` means symmetric
        (``upper = lower``; complex symmetric, not Hermitian, for complex ``lower``).
    check_finite : bool, default True
        Raise :class:`~semisep.errors.NonFiniteError` if any entry is NaN or inf.

    Leading dimensions are batch dimensions and broadcast like NumPy.  The dtype is the
    promotion of the three arrays; integers become float64; float32 stays float32.  NumPy
    arrays and torch tensors are accepted (not mixed); results keep the array type and device.

    Examples
    --------
    >>> import numpy as np, semisep as ss
    >>> T = ss.Tridiagonal(np.full(4, -2.0), np.ones(3))
    >>> T.shape
    (4, 4)
    >>> np.allclose(T.resolvent_diagonal(1j), np.diag(np.linalg.inv(T.to_dense() - 1j * np.eye(4))))
    True
    """

    def __init__(self, diag: Any, lower: Any, upper: Any = None, *, check_finite: bool = True):
        bk = backend_for(diag, lower, upper)
        diag = as_array(bk, "diag", diag, scalar_ok=False)
        lower = as_array(bk, "lower", lower, like=diag, scalar_ok=False)
        upper = None if upper is None else as_array(bk, "upper", upper, like=diag, scalar_ok=False)
        if diag.ndim < 1:
            raise ShapeError(f"diag must have shape (..., N), got a {diag.ndim}-d array")
        n = int(diag.shape[-1])
        if n < 1:
            raise ShapeError(f"diag has shape {tuple(diag.shape)}: N must be at least 1")
        for name, x in (("lower", lower), ("upper", upper)):
            if x is None:
                continue
            if x.ndim < 1 or x.shape[-1] != n - 1:
                raise ShapeError(
                    f"{name} has shape {tuple(x.shape)} but diag has shape {tuple(diag.shape)}: "
                    f"{name} must have shape (..., N-1) = (..., {n - 1})"
                )
        shapes = {"diag": tuple(diag.shape[:-1]), "lower": tuple(lower.shape[:-1])}
        if upper is not None:
            shapes["upper"] = tuple(upper.shape[:-1])
        self._batch_shape = broadcast_shapes(shapes)
        dtype = bk.result_dtype(*(x for x in (diag, lower, upper) if x is not None))
        self._backend: Backend = bk
        self.diag = bk.astype(diag, dtype)
        self.lower = bk.astype(lower, dtype)
        self.upper = None if upper is None else bk.astype(upper, dtype)
        self._n = n
        self._dtype = dtype
        # traced (torch.compile): the check reads values, so it runs in the traced call
        self._deferred_check = bool(check_finite) and bk.tracing()
        if check_finite and not self._deferred_check:
            _require_finite(bk, diag=self.diag, lower=self.lower, upper=self.upper)

    # -- structure ----------------------------------------------------------------------------
    @property
    def is_symmetric_storage(self) -> bool:
        """True when constructed with ``upper=None`` (one off-diagonal array held)."""
        return self.upper is None

    @property
    def upper_(self) -> Any:
        """The super-diagonal, ``lower`` itself for symmetric storage."""
        return self.lower if self.upper is None else self.upper

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays this operator holds (``upper=None`` holds one off-diagonal)."""
        return sum(la.nbytes(x) for x in (self.diag, self.lower, self.upper) if x is not None)

    @property
    def dense_nbytes(self) -> int:
        """Bytes a dense array of ``self.shape`` in ``self.dtype`` would take."""
        return int(np.prod(self.shape)) * la.itemsize(self.diag)

    @property
    def T(self) -> Tridiagonal:
        """The transpose (never the conjugate transpose)."""
        if self.upper is None:
            return self
        out = Tridiagonal(self.diag, self.upper, self.lower, check_finite=False)
        out._deferred_check = getattr(self, "_deferred_check", False)
        return out

    def __repr__(self) -> str:
        sym = ", symmetric" if self.upper is None else ""
        return (
            f"Tridiagonal(shape={self.shape}, dtype={self.dtype}, backend={self._backend.name}{sym})"
        )

    def to_dense(self) -> Any:
        """The dense matrix, shape ``batch_shape + (N, N)``."""
        bk, n = self._backend, self._n
        A = bk.zeros(self.shape, self.dtype, like=self.diag)
        idx = np.arange(n)
        A[..., idx, idx] = bk.broadcast_to(self.diag, self._batch_shape + (n,))
        if n > 1:
            A[..., idx[1:], idx[:-1]] = bk.broadcast_to(self.lower, self._batch_shape + (n - 1,))
            A[..., idx[:-1], idx[1:]] = bk.broadcast_to(self.upper_, self._batch_shape + (n - 1,))
        return A


    # -- conveniences (semisep/_algebra.py) ---------------------------------------------------
    __array_ufunc__ = None  # numpy scalars and arrays defer to the operator's own operators

    def _arrays(self) -> dict[str, Any]:
        return {"diag": self.diag, "lower": self.lower, "upper": self.upper}

    def __getitem__(self, key: Any) -> Tridiagonal:
        """``T[k]``, ``T[1:3]``, ``T[idx]``: the operator of the selected batch entries."""
        a = _algebra.batch_index(self, key, self._arrays(), {"diag": 1, "lower": 1, "upper": 1})
        out = Tridiagonal(a["diag"], a["lower"], a["upper"], check_finite=False)
        out._deferred_check = getattr(self, "_deferred_check", False)  # traced: checked at the call
        return out

    def to(self, *args: Any, **kwargs: Any) -> Tridiagonal:
        """``torch.Tensor.to`` applied to every array (torch-backed operators only)."""
        a = _algebra.to_device(self, self._arrays(), *args, **kwargs)
        return Tridiagonal(a["diag"], a["lower"], a["upper"])

    def shift(self, c: Any) -> Tridiagonal:
        """``T - c I``; ``c`` a scalar or an array broadcastable against the batch shape."""
        bk = self._backend
        c_arr = as_array(bk, "c", c, like=self.diag)
        c_b = c_arr if getattr(c_arr, "ndim", 0) == 0 else c_arr[..., None]
        return Tridiagonal(self.diag - c_b, self.lower, self.upper)

    def __add__(self, other: Any) -> Any:
        if isinstance(other, _algebra.ScaledIdentity):
            return self.shift(-other.scale)
        if isinstance(other, Tridiagonal):
            upper = None if (self.upper is None and other.upper is None) else self.upper_ + other.upper_
            return Tridiagonal(self.diag + other.diag, self.lower + other.lower, upper)
        return NotImplemented

    __radd__ = __add__

    def __sub__(self, other: Any) -> Any:
        if isinstance(other, (Tridiagonal, _algebra.ScaledIdentity)):
            return self + (-1.0) * other
        return NotImplemented

    def __rsub__(self, other: Any) -> Any:
        if isinstance(other, _algebra.ScaledIdentity):
            return (-1.0) * self + other
        return NotImplemented

    def __mul__(self, c: Any) -> Any:
        if not _algebra.is_scalar(c):
            return NotImplemented
        upper = None if self.upper is None else c * self.upper
        return Tridiagonal(c * self.diag, c * self.lower, upper)

    __rmul__ = __mul__

    def __neg__(self) -> Tridiagonal:
        return (-1.0) * self

    def resolvent_entries(self, pairs: Any, z: Any = 0.0, **solve_kwargs: Any) -> Any:
        """``G_ij = [(T - z I)^{-1}]_{ij}`` for integer ``pairs`` (K, 2); shape
        ``broadcast(batch_shape, z.shape) + (K,)``; O(N + K) per batch row.

        ``G_ij = G_jj prod_{k=i}^{j-1} (-b_k gL_k)`` for ``i < j`` and
        ``G_jj prod_{k=j}^{i-1} (-c_k gR_{k+1})`` for ``i > j`` (``b``, ``c`` the upper and lower
        off-diagonals, ``gL`` / ``gR`` the LU / UL pivot reciprocals), each product a difference
        of prefix sums of logarithms: see :func:`semisep._algebra.tridiagonal_resolvent_entries`,
        which also lists where one :meth:`solve` with the distinct unit columns ``e_j`` is used
        instead (a gradient wanted, a GPU tensor, a guarded pivot, ...)."""
        return _algebra.tridiagonal_resolvent_entries(self, pairs, z, **solve_kwargs)

    # -- products -----------------------------------------------------------------------------
    def matvec(self, x: Any) -> Any:
        """``T @ x`` for ``x`` of shape (..., N) (vector) or (..., N, k) (matrix); O(N k)."""
        return _tridiagonal_matvec(self, self.diag, self.lower, self.upper_, x)

    def rmatvec(self, x: Any) -> Any:
        """``T^T @ x`` (transpose, not conjugate transpose)."""
        return _tridiagonal_matvec(self, self.diag, self.upper_, self.lower, x)


    # -- the O(N) algorithms --------------------------------------------------------------------
    def resolvent_diagonal(
        self, z: Any = 0.0, *, indices: Any = None, method: str = "auto",
        check_finite: bool = True, return_info: bool = False,
    ) -> Any:
        """``diag((T - z I)^{-1})``, shape ``broadcast(batch_shape, z.shape) + (N,)``; O(N).

        ``G_ii = 1/(alpha_i - beta_{i-1} gL_{i-1} - beta_i gR_{i+1})`` from the LU / UL pivot
        ratios (module docstring).  For Hermitian ``T`` and ``Im z = eta != 0`` every
        ``|G_ii| <= 1/|eta|`` and no pivot is guarded.

        Parameters
        ----------
        z : scalar or array broadcastable against ``batch_shape``
            The shift; real or complex.  The result dtype promotes ``T``'s dtype with ``z``'s.
        method : "auto" | "sequential" | "reference" | "chunked" (torch) | "fused" (torch, CUDA)
            The kernel.  ``"auto"``: the compiled sequential sweeps for NumPy arrays and CPU
            tensors, the fused Triton kernels or the chunked scan for CUDA tensors (the
            backend's selection policy, see its docstring); ``return_info=True`` reports the
            kernel that ran (``PivotInfo.method``).
        indices : sequence of int, optional
            Compute ``G_ii`` only at these positions (shared by the whole batch; any order,
            repeats allowed); the result then has shape ``batch + (len(indices),)``.  Exact,
            differentiable.  The NumPy backend skips the combine step away from ``indices`` and
            the sweep tails outside ``[min(indices), max(indices)]``; the sweeps themselves stay
            O(N), so expect a modest saving unless the positions cluster at one end.
        return_info : bool
            Also return a :class:`PivotInfo`.

        Raises
        ------
        SingularMatrixError
            If ``T - z I`` is singular to working precision: some ``|1/G_ii| < pivmin``, which
            (since ``|G_ii| <= ||A^{-1}||``) certifies ``cond(A) > 1/eps``.
        """
        if self._backend.tracing():
            return self._backend.traced_call("resolvent_diagonal", self, z=z, indices=indices, method=method,
                                             check_finite=check_finite, return_info=return_info)
        rows = _shifted_rows(self, z, check_finite)
        k = _range_scale(rows)
        if k is not None:  # entries outside the safe range: solve 2^k A, G = 2^k diag((2^k A)^{-1})
            T, zs, f = _scaled_problem(self, rows, k)
            out = T.resolvent_diagonal(zs, indices=indices, method=method, check_finite=False,
                                       return_info=return_info)
            res = (out[0] if return_info else out) * f[0][..., None] * f[1][..., None]
            return _unscale_info((res, out[1]) if return_info else res, f, return_info)
        if indices is None:
            if self._backend.takes_shift:
                out, guarded, singular = self._backend.resolvent_diagonal_shifted(
                    rows.diag, rows.shift, rows.beta_native, rows.pivmin, method=method
                )
            else:
                out, guarded, singular = self._backend.resolvent_diagonal(
                    rows.alpha, rows.beta, rows.pivmin, method=method
                )
            width = self._n
        else:
            idx = _check_indices(indices, self._n)
            out, guarded, singular = self._backend.resolvent_diagonal_selected(
                rows.alpha, rows.beta, rows.pivmin, idx, method=method
            )
            width = int(idx.shape[0])
        ran = self._backend.kernel_ran(method)
        _raise_if_singular(self._backend, singular, rows.batch, "resolvent_diagonal", z)
        out = out.reshape(rows.batch + (width,))
        return _with_info(out, rows, guarded, method, return_info, ran=ran)

    def logdet(
        self, z: Any = 0.0, *, method: str = "auto", check_finite: bool = True,
        return_info: bool = False,
    ) -> Any:
        """``log det(T - z I)``, shape ``broadcast(batch_shape, z.shape)``; O(N).

        ``log det A = sum_i log d_i`` over the LU pivots ``d_i = 1/gL_i``; the phase is kept as
        a product of unit numbers, so the imaginary part is in (-pi, pi] as with
        ``numpy.linalg.slogdet``.  For a real matrix and real ``z`` the result is real when
        every determinant in the batch is positive, and complex (imaginary part pi where the
        determinant is negative) otherwise.

        Raises :class:`SingularMatrixError` when ``T - z I`` is singular to working precision
        (the last pivot below ``pivmin``, or a guarded pivot in a decoupled block).
        """
        if self._backend.tracing():
            return self._backend.traced_call("logdet", self, z=z, method=method, check_finite=check_finite,
                                             return_info=return_info)
        rows = _shifted_rows(self, z, check_finite)
        k = _range_scale(rows)
        if k is not None:  # entries outside the safe range: log det A = log det(2^k A) - N k log 2
            T, zs, f = _scaled_problem(self, rows, k)
            out = T.logdet(zs, method=method, check_finite=False, return_info=return_info)
            shift = self._backend.asarray((self._n * math.log(2.0)) * k.astype(np.float64), like=self.diag)
            res = out[0] if return_info else out
            res = res - self._backend.astype(shift, self._backend.result_dtype(res.real))
            return _unscale_info((res, out[1]) if return_info else res, f, return_info)
        ld, guarded, singular = self._backend.logdet(rows.alpha, rows.beta, rows.pivmin, method=method)
        ran = self._backend.kernel_ran(method)
        singular = _certify_if_guarded(self._backend, rows, guarded, singular, method)
        _raise_if_singular(self._backend, singular, rows.batch, "logdet", z)
        if not self._backend.is_complex(rows.dtype) and not self._backend.lazy:
            if not bool((ld.imag != 0).any()):
                ld = ld.real
        ld = ld.reshape(rows.batch)
        return _with_info(ld, rows, guarded, method, return_info, ran=ran)

    def solve(
        self, b: Any, z: Any = 0.0, *, method: str = "auto", check_finite: bool = True,
        return_info: bool = False,
    ) -> Any:
        """``(T - z I)^{-1} b``; O(N k).

        ``b`` is a vector iff ``b.ndim == len(batch_shape) + 1`` (or ``b.ndim == 1``), else a
        matrix ``(..., N, k)`` -- the rule of ``torch.linalg.solve``.  The result has shape
        ``broadcast(batch_shape, z.shape, b's batch) + (N,)`` or ``+ (N, k)``.

        Gaussian elimination with partial pivoting (row exchanges), LAPACK ``?gtsv``'s
        algorithm: backward stable, O(N k), no pivot guarded.  torch's ``method="chunked"``
        (the CUDA path) solves without row exchanges and refines iteratively to the same
        backward error, falling back to the pivoted solve where refinement does not get there
        (docs/mathematics.md, "The solve: partial pivoting").  Entries far from 1 are scaled
        by a power of two first (exact).

        Raises :class:`SingularMatrixError` when some diagonal entry of the pivoted ``U`` has
        ``|Re u_ii| + |Im u_ii| < 4 pivmin`` (``cond_2(T - zI) > 1/(8 eps)``).
        """
        bk = self._backend
        if bk.tracing():
            return bk.traced_call("solve", self, z=z, b=b, method=method, check_finite=check_finite,
                                  return_info=return_info)
        if type(b) is not type(self.diag):  # arrays of one type never mix
            backend_for(self.diag, b)  # mixed array types -> BackendError
        b = as_array(bk, "b", b, like=self.diag, scalar_ok=False)
        if check_finite:
            _require_finite(bk, b=b)
        is_vec, b_batch, k = split_rhs(b, len(self._batch_shape), self._n)
        rows = _shifted_rows(self, z, check_finite, extra={"b": b_batch}, extra_dtype=b)
        ks = _range_scale(rows)
        if ks is not None:  # entries outside the safe range: x = 2^k (2^k A)^{-1} b
            T, zs, f = _scaled_problem(self, rows, ks)
            out = T.solve(b, zs, method=method, check_finite=False, return_info=return_info)
            tail = (None,) if is_vec else (None, None)
            res = (out[0] if return_info else out) * f[0][(...,) + tail] * f[1][(...,) + tail]
            return _unscale_info((res, out[1]) if return_info else res, f, return_info)
        n = self._n
        bb = b[..., None] if is_vec else b
        bb = bk.broadcast_to(bk.astype(bb, rows.dtype), rows.batch + (n, k))
        bb = bb.reshape((rows.count, n, k))
        lower, upper = rows.lower, rows.upper
        x, guarded, singular = bk.solve(rows.alpha, upper, lower, bb, rows.pivmin, method=method)
        ran = bk.kernel_ran(method)
        singular = _certify_if_guarded(bk, rows, guarded, singular, method)
        _raise_if_singular(bk, singular, rows.batch, "solve", z)
        steps = 0  # the backends' solves are backward stable by themselves
        if bk.lazy:  # the lazy (dask) solve is an unpivoted chunked sweep whose guard is known at
            # compute time only: one step of iterative refinement, x += A^{-1}(f - A x)
            r = bb - _apply_tridiagonal(bk, rows.alpha, lower, upper, x)
            dx, _, _ = bk.solve(rows.alpha, upper, lower, r, rows.pivmin, method=method)
            x = x + dx
            steps = 1
        x = x.reshape(rows.batch + (n, k))
        if is_vec:
            x = x[..., 0]
        return _with_info(x, rows, guarded, method, return_info, refinement_steps=steps, ran=ran)


# ------------------------------------------------------------------------------------------------
# module-level twins
# ------------------------------------------------------------------------------------------------
def resolvent_diagonal(op: Any, z: Any = 0.0, **kwargs: Any) -> Any:
    """``diag((op - z I)^{-1})``; see :meth:`Tridiagonal.resolvent_diagonal`."""
    return op.resolvent_diagonal(z, **kwargs)


def solve(op: Any, b: Any, z: Any = 0.0, **kwargs: Any) -> Any:
    """``(op - z I)^{-1} b``; see :meth:`Tridiagonal.solve`."""
    return op.solve(b, z, **kwargs)


def logdet(op: Any, z: Any = 0.0, **kwargs: Any) -> Any:
    """``log det(op - z I)``; see :meth:`Tridiagonal.logdet`."""
    return op.logdet(z, **kwargs)


# ------------------------------------------------------------------------------------------------
# helpers: the algorithm glue, written once against the backend plumbing
# ------------------------------------------------------------------------------------------------
class _Rows:
    """``A = T - z I`` broadcast and flattened to ``B = prod(batch)`` rows for the kernels.

    ``diag`` (B, N) and ``beta_native`` (B, N-1) are views of ``T``'s arrays in ``T``'s dtype,
    ``shift`` (B,) is ``z`` per row in the result dtype; ``alpha = diag - shift``, ``beta``,
    ``lower`` and ``upper`` in the result dtype are formed on first use, so a backend that takes
    the shift form (``Backend.takes_shift``) never materialises the (B, N) array ``alpha``.
    """

    def __init__(self, op: Tridiagonal, z: Any, z_arr: Any, batch: tuple[int, ...], dtype: Any):
        self._op, self._z, self._z_arr = op, z, z_arr
        self.batch, self.dtype = batch, dtype
        self.n = op.n
        self.count = math.prod(batch)
        self._cache: dict[str, Any] = {}

    def _rows_of(self, x: Any, width: int) -> Any:
        bk = self._op.backend
        return bk.broadcast_to(x, self.batch + (width,)).reshape((self.count, width))

    def _cached(self, key: str, make: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def diag(self) -> Any:
        return self._cached("diag", lambda: self._rows_of(self._op.diag, self.n))

    @property
    def shift(self) -> Any:
        bk = self._op.backend
        z = self._z if _is_python_scalar(self._z) else self._z_arr
        return self._cached("shift", lambda: bk.broadcast_to(
            bk.astype(bk.asarray(z, like=self._op.diag), self.dtype), self.batch
        ).reshape((self.count,)))

    @property
    def alpha(self) -> Any:
        def make() -> Any:
            bk = self._op.backend
            # alpha = diag - z in one pass; a Python scalar z stays weakly typed (float32 stays single)
            shift = self._z if _is_python_scalar(self._z) else self._z_arr[..., None]
            return self._rows_of(bk.astype(self._op.diag - shift, self.dtype), self.n)

        return self._cached("alpha", make)

    @property
    def lower(self) -> Any:
        return self._cached("lower", lambda: self._rows_of(self._off("lower"), self.n - 1))

    @property
    def upper(self) -> Any:
        return self._cached("upper", lambda: self._rows_of(self._off("upper"), self.n - 1))

    @property
    def beta(self) -> Any:
        return self._cached(
            "beta", lambda: self._rows_of(self._off("lower") * self._off("upper"), self.n - 1)
        )

    @property
    def lower_native(self) -> Any:
        """``T``'s lower off-diagonal in its own dtype (no promotion to z's), (B, N-1)."""
        return self._cached("lower_native", lambda: self._rows_of(self._op.lower, self.n - 1))

    @property
    def upper_native(self) -> Any:
        """``T``'s upper off-diagonal in its own dtype (the lower one if stored symmetric), (B, N-1)."""
        return self._cached("upper_native", lambda: self._rows_of(self._op.upper_, self.n - 1))

    @property
    def beta_native(self) -> Any:
        """``lower * upper`` in ``T``'s dtype (real for a real ``T``), (B, N-1)."""
        op = self._op
        return self._cached("beta_native", lambda: self._rows_of(op.lower * op.upper_, self.n - 1))

    def _off(self, which: str) -> Any:
        op, bk = self._op, self._op.backend
        lo = self._cached("lo", lambda: bk.astype(op.lower, self.dtype))
        if which == "lower" or op.upper is None:
            return lo
        return self._cached("up", lambda: bk.astype(op.upper, self.dtype))

    @property
    def pivmin(self) -> Any:
        return self._cached("pivmin", self._make_pivmin)

    def _make_pivmin(self) -> Any:
        """``eps * s`` with ``s`` the largest entry of ``A`` as ``Backend.amax_abs`` measures it
        (at least the smallest normal number, so that an all-zero row has a guard); constant, no
        autograd graph."""
        op, bk = self._op, self._op.backend
        if bk.takes_shift:
            scale = bk.shifted_amax_abs(_detach(op.diag), _detach(self.shift), self.batch)
        else:
            scale = bk.amax_abs(_detach(self.alpha), axis=1)
        if self.n > 1:
            off = bk.amax_abs(_detach(op.lower), axis=-1)
            if op.upper is not None:  # symmetric storage: the lower one is the upper one
                off = bk.maximum(off, bk.amax_abs(_detach(op.upper), axis=-1))
            if tuple(off.shape) != self.batch:
                off = bk.broadcast_to(off, self.batch)
            scale = bk.maximum(scale, off.reshape((self.count,)))
        self._cache["scale"] = scale
        eps = bk.eps(self.dtype)
        # the floor binds only for an all-zero A (a scaled problem has scale >= 2^-_SAFE_EXP):
        # sqrt(tiny), so that the squared thresholds (pivmin**2) stay normal numbers; formed in
        # pivmin's own dtype (a Python float times a bool tensor would be float32)
        floor = _PIVMIN_FLOOR[eps > 1e-10]
        pivmin = scale * eps
        return bk.maximum(pivmin, pivmin * 0 + floor)

    @property
    def scale(self) -> Any:
        """``max(max|Re A_ij|, max|Im A_ij|)`` per row (B,), as ``pivmin`` measured it."""
        self.pivmin  # noqa: B018 - computes the scale on the way
        return self._cache["scale"]


def _shifted_rows(
    op: Tridiagonal, z: Any, check: bool, extra: dict | None = None, extra_dtype: Any = None
) -> _Rows:
    bk = op.backend
    tz = type(z)
    z_arr = None
    if tz is not float and tz is not complex and bk.name == "numpy" and tz in _NUMPY_SCALARS:
        z_arr = np.asarray(z)  # a NumPy scalar: the 0-d array it stands for, by its dtype
    if tz is float or tz is complex or z_arr is not None:  # the common case: the same checks
        if check and not cmath.isfinite(z):  # without the array's machinery
            raise non_finite_error("z")
        batch = op.batch_shape
        if extra and any(v != batch for v in extra.values()):
            batch = broadcast_shapes({"operator": batch, "z": (), **extra})
        # a Python scalar takes part by its kind only, arrays by their dtype: one promotion
        # per (dtypes, kind)
        key = (bk.name, op.diag.dtype, tz, None if extra_dtype is None else extra_dtype.dtype)
        dtype = _SCALAR_PROMOTION.get(key)
        if dtype is None:
            args = (op.diag, z) if extra_dtype is None else (op.diag, z, extra_dtype)
            dtype = bk.result_dtype(*args)
            if not bk.tracing():  # no module-state write inside a traced (torch.compile) call
                _SCALAR_PROMOTION[key] = dtype
        return _Rows(op, z, z_arr, batch, dtype)
    backend_for(op.diag, z)  # mixed array types -> BackendError
    z_arr = as_array(bk, "z", z, like=op.diag)
    if check and not (_is_python_scalar(z) and cmath.isfinite(z)):  # a finite Python z: no device read
        _require_finite(bk, z=z_arr)
    shapes = {"operator": op.batch_shape, "z": tuple(z_arr.shape)}
    if extra:
        shapes.update(extra)
    batch = broadcast_shapes(shapes)
    dt_args = [op.diag, z if _is_python_scalar(z) else z_arr]
    if extra_dtype is not None:
        dt_args.append(extra_dtype)
    return _Rows(op, z, z_arr, batch, bk.result_dtype(*dt_args))


#: NumPy scalar types that take :func:`_shifted_rows`' short path on the NumPy backend
_NUMPY_SCALARS = frozenset((np.float32, np.float64, np.complex64, np.complex128))
#: the least ``pivmin`` by precision (single: True): ``sqrt(tiny)``, see ``_Rows._make_pivmin``
_PIVMIN_FLOOR = {single: math.sqrt(float(np.finfo(np.float32 if single else np.float64).tiny))
                 for single in (True, False)}
#: ``result_dtype(T.diag, z[, b])`` by (backend, T's dtype, type of a Python scalar z, b's dtype)
_SCALAR_PROMOTION: dict[tuple[str, Any, type, Any], Any] = {}


#: The kernels run on rows whose largest entry ``s`` lies in ``[2^-E, 2^E]`` (``E`` by the
#: real dtype); outside, the problem is scaled by an exact power of two first (:func:`_range_scale`):
#: then the products ``beta = b c`` (``<= s^2``) and the squared thresholds (``pivmin^2``,
#: ``pivmin = eps s``) stay normal numbers.
_SAFE_EXP = {"single": 20, "double": 200}
_SAFE_RANGE = {e: (2.0 ** -e, 2.0 ** e) for e in _SAFE_EXP.values()}


def _range_scale(rows: _Rows) -> Any:
    """``None`` where every row's scale ``s`` (:attr:`_Rows.scale`) is 0 or in
    ``[2^-E, 2^E]``; else the exponents ``k`` (int64 NumPy array, shape ``rows.batch``) with
    ``2^k s`` in ``[1/2, 1)`` (0 for a zero row).  Where ``s`` overflowed (``A = T - zI`` with
    entries near the overflow threshold: ``T``'s and ``z``'s own entries are finite) it is
    bounded from the entries of ``T`` and ``z`` taken apart."""
    bk = rows._op.backend
    if bk.lazy:  # no values before compute: lazy (dask) graphs are not rescaled
        return None
    E = _SAFE_EXP["single" if bk.eps(rows.dtype) > 1e-10 else "double"]
    sc = rows.scale
    if type(sc) is not np.ndarray:
        try:
            sc = np.asarray(bk.to_numpy(sc))
        except RuntimeError:  # a torch.func wrapper without storage: no values to look at here
            return None
    sc = sc.reshape(-1)
    lo, hi = _SAFE_RANGE[E]
    if sc.size <= 64:  # the common case, a few rows: compared as Python floats (NaN fails)
        if all(lo <= s <= hi for s in sc.tolist()):
            return None
    elif sc.min() >= lo and sc.max() <= hi:  # the common case
        return None
    sc = sc.astype(np.float64)
    if bool(((sc == 0) | ((sc >= 2.0 ** -E) & (sc <= 2.0 ** E))).all()):
        return None
    if not np.isfinite(sc).all():
        sc = _entry_bound(rows)
        if not np.isfinite(sc).all():
            return None  # NaN or inf entries (check_finite=False): nothing to scale
    k = np.where(sc > 0, -np.frexp(sc)[1], 0).astype(np.int64)
    return np.broadcast_to(k.reshape(rows.batch), rows.batch)


def _entry_bound(rows: _Rows) -> Any:
    """``max(|T_ij| parts, |Re z|, |Im z|)`` per row (B,), float64: ``s / 2 <= this``."""
    op, bk = rows._op, rows._op.backend

    def rowmax(x):
        m = np.asarray(bk.to_numpy(bk.amax_abs(_detach(x), axis=-1)), dtype=np.float64)
        return np.broadcast_to(m, rows.batch).reshape(-1)

    out = rowmax(op.diag)
    if rows.n > 1:
        out = np.maximum(out, rowmax(op.upper_))
        out = np.maximum(out, rowmax(op.lower))
    z = np.asarray(bk.to_numpy(_detach(bk.asarray(rows._z if _is_python_scalar(rows._z) else rows._z_arr,
                                                  like=op.diag))))
    zm = np.maximum(np.abs(z.real), np.abs(np.imag(z))).astype(np.float64)
    return np.maximum(out, np.broadcast_to(zm, rows.batch).reshape(-1))


def _pow2_factors(bk: Backend, k: Any, rows: _Rows) -> tuple[Any, Any]:
    """``2^k`` as two factors ``2^(k//2)``, ``2^(k - k//2)`` (each representable in the real
    dtype, where ``2^k`` alone may not be), backend arrays of shape ``rows.batch``."""
    k1 = k // 2
    real = np.float32 if bk.eps(rows.dtype) > 1e-10 else np.float64
    like = rows._op.diag
    f1 = bk.asarray(np.ldexp(1.0, k1).astype(real), like=like)
    f2 = bk.asarray(np.ldexp(1.0, k - k1).astype(real), like=like)
    return f1, f2


def _scaled_problem(op: Tridiagonal, rows: _Rows, k: Any) -> tuple[Tridiagonal, Any, Any]:
    """``(2^k T, 2^k z, (f1, f2))``: every row multiplied by its power of two (exact), so
    ``(2^k A)^{-1} = 2^-k A^{-1}`` and ``log det(2^k A) = log det A + N k log 2``."""
    bk = op.backend
    f1, f2 = _pow2_factors(bk, k, rows)
    g1, g2 = f1[..., None], f2[..., None]
    T = Tridiagonal(op.diag * g1 * g2, op.lower * g1 * g2,
                    None if op.upper is None else op.upper * g1 * g2, check_finite=False)
    z = rows._z if _is_python_scalar(rows._z) else rows._z_arr
    z = bk.astype(bk.asarray(z, like=op.diag), rows.dtype)
    with np.errstate(over="ignore"):  # NumPy's complex product warns spuriously near the range's end
        zs = z * f1 * f2
    return T, zs, (f1, f2)


def _unscale_info(out: Any, factors: Any, return_info: bool) -> Any:
    """A scaled call's ``PivotInfo`` with ``pivmin`` given back in the caller's scale."""
    if not return_info:
        return out
    from dataclasses import replace

    res, info = out
    f = np.asarray(_to_numpy(factors[0]), np.float64) * np.asarray(_to_numpy(factors[1]), np.float64)
    return res, replace(info, pivmin=np.asarray(info.pivmin) / f.reshape(np.shape(info.pivmin)))


def _is_python_scalar(z: Any) -> bool:
    return isinstance(z, (bool, int, float, complex))


def _certify_if_guarded(bk: Backend, rows: _Rows, guarded: Any, singular: Any, method: str) -> Any:
    """Where the left sweep guarded a pivot, add resolvent_diagonal's certificate: the guard
    can turn a singular matrix into a regular-looking neighbour for the left sweep alone.
    A lazy backend's kernels include the certificate."""
    if bk.lazy or not bool((guarded > 0).any()):
        return singular
    _, _, sing_g = bk.resolvent_diagonal(
        _detach(rows.alpha), _detach(rows.beta), rows.pivmin, method=method
    )
    return singular | sing_g


def _detach(x: Any) -> Any:
    return x.detach() if hasattr(x, "detach") else x


def _check_indices(indices: Any, n: int) -> Any:
    """``indices`` as an int64 NumPy array in [0, N); IndexError naming the bad entry."""
    if hasattr(indices, "detach"):
        indices = indices.detach().cpu().numpy()
    idx = np.asarray(indices)
    if idx.ndim != 1:
        raise ShapeError(f"indices must be 1-d (shared by the batch), got shape {idx.shape}")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        j = int(np.argmax(bad))
        raise IndexError(f"indices[{j}] = {int(idx[j])} is out of range for N = {n}")
    return idx


def _raise_if_singular(bk: Backend, singular: Any, batch: tuple[int, ...], what: str, z: Any) -> None:
    if bk.lazy:  # a lazy backend's results raise when computed
        return
    sing = singular if type(singular) is np.ndarray else np.asarray(bk.to_numpy(singular))
    if sing.any():
        sing = sing.reshape(batch if batch else ())
        where = tuple(int(i) for i in np.argwhere(sing)[0]) if batch else ()
        loc = f" at batch index {where}" if batch else ""
        zs = z if _is_python_scalar(z) else "the given z"
        raise SingularMatrixError(
            f"{what}: T - z I is singular to working precision{loc} (z = {zs}); "
            f"{int(sing.sum())} of {sing.size} matrices in the batch are singular"
        )


def _with_info(out, rows: _Rows, guarded, method, return_info, refinement_steps: int = 0,
               ran: str | None = None):
    """``(out, PivotInfo)`` with ``return_info``, else ``out``; ``method`` is the argument as
    given, ``ran`` the kernel that ran (the backend's ``kernel_ran`` read right after the
    kernel call; ``method`` if None)."""
    if not return_info:
        return out
    bk_np = np.asarray
    info = PivotInfo(
        pivots_guarded=bk_np(_to_numpy(guarded)).reshape(rows.batch),
        pivmin=bk_np(_to_numpy(rows.pivmin)).reshape(rows.batch),
        method=method if ran is None else ran,
        refinement_steps=refinement_steps,
        requested_method=method,
    )
    return out, info


def _to_numpy(x: Any) -> Any:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _apply_tridiagonal(bk: Backend, diag, lower, upper, x):
    """``y_i = diag_i x_i + upper_i x_{i+1} + lower_{i-1} x_{i-1}`` for x (..., N, k)."""
    y = diag[..., None] * x
    if diag.shape[-1] > 1:
        up = upper[..., None] * x[..., 1:, :]  # rows 0..N-2
        lo = lower[..., None] * x[..., :-1, :]  # rows 1..N-1
        pad = bk.zeros(tuple(up.shape[:-2]) + (1, up.shape[-1]), up.dtype, like=up)
        y = y + bk.concat([up, pad], axis=-2) + bk.concat([pad, lo], axis=-2)
    return y


def _tridiagonal_matvec(op: Tridiagonal, diag, lower, upper, x):
    bk = op.backend
    backend_for(op.diag, x)
    x = as_array(bk, "x", x, like=op.diag, scalar_ok=False)
    is_vec, _, _ = split_rhs(x, len(op.batch_shape), op.n)
    xx = x[..., None] if is_vec else x
    dtype = bk.result_dtype(diag, xx)
    y = _apply_tridiagonal(
        bk, bk.astype(diag, dtype), bk.astype(lower, dtype), bk.astype(upper, dtype),
        bk.astype(xx, dtype),
    )
    return y[..., 0] if is_vec else y
