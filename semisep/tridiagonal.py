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

import math
from typing import Any

import numpy as np

from . import _algebra
from . import _linalg as la
from ._operator import StructuredOperator
from ._validation import as_array, broadcast_shapes, split_rhs
from ._validation import check_finite as _require_finite  # the methods have a check_finite flag
from .backends import Backend, backend_for
from .errors import ShapeError
from .tridiagonal_core import (
    PivotInfo,
    _certify_if_guarded,
    _check_indices,
    _chunk_length_kw,
    _raise_if_singular,
    _run_in_range,
    _scaled_problem,
    _unscale_info,
    _with_info,
    host_reads,
)
from .tridiagonal_core import shifted_rows as _shifted_rows

__all__ = ["Tridiagonal", "PivotInfo", "resolvent_diagonal", "solve", "logdet"]




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
        check_finite: bool = True, return_info: bool = False, chunk_length: int | None = None,
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
        chunk_length : int, optional
            The chunk length ``L`` of the torch backend's chunked kernels (``"chunked"``,
            ``"fused"``; the others run without chunks and ignore it): None (the default) lets
            the kernel choose its N-dependent length
            (:func:`semisep.backends.torch.select.chunk_length_for`).  A positive integer;
            backends without chunked kernels (NumPy, Dask) accept only None (ValueError
            otherwise).  ``PivotInfo.chunk_length`` reports the length that ran.

        Raises
        ------
        SingularMatrixError
            If ``T - z I`` is singular to working precision: some ``|1/G_ii| < pivmin``, which
            (since ``|G_ii| <= ||A^{-1}||``) certifies ``cond(A) > 1/eps``.
        """
        ck = _chunk_length_kw(self._backend, chunk_length)
        if self._backend.tracing():
            return self._backend.traced_call("resolvent_diagonal", self, z=z, indices=indices, method=method,
                                             check_finite=check_finite, return_info=return_info, **ck)
        reads = host_reads(self)
        rows = _shifted_rows(self, z, check_finite, reads=reads)

        def scaled(k):  # entries outside the safe range: solve 2^k A, G = 2^k diag((2^k A)^{-1})
            T, zs, f = _scaled_problem(self, rows, k)
            out = T.resolvent_diagonal(zs, indices=indices, method=method, check_finite=False,
                                       return_info=return_info, **ck)
            res = (out[0] if return_info else out) * f[0][..., None] * f[1][..., None]
            return _unscale_info((res, out[1]) if return_info else res, f, return_info)

        def run(reads):
            return self._resolvent_diagonal(rows, z, indices, method, return_info, reads, ck)

        return _run_in_range(rows, run, scaled, reads)

    def _resolvent_diagonal(self, rows, z, indices, method, return_info, reads, ck=None):
        """:meth:`resolvent_diagonal` on rows in the kernels' safe range; ``ck`` the kernel
        call's ``chunk_length`` keyword (an empty dict or none: the kernel's own)."""
        ck = ck or {}
        if indices is None:
            if self._backend.takes_shift:
                out, guarded, singular = self._backend.resolvent_diagonal_shifted(
                    rows.diag, rows.shift, rows.beta_native, rows.pivmin, method=method, **ck
                )
            else:
                out, guarded, singular = self._backend.resolvent_diagonal(
                    rows.alpha, rows.beta, rows.pivmin, method=method, **ck
                )
            width = self._n
        else:
            idx = _check_indices(indices, self._n)
            out, guarded, singular = self._backend.resolvent_diagonal_selected(
                rows.alpha, rows.beta, rows.pivmin, idx, method=method, **ck
            )
            width = int(idx.shape[0])
        ran, chunk = self._backend.kernel_ran(method), self._backend.chunk_length_ran()
        _raise_if_singular(self._backend, singular, rows.batch, "resolvent_diagonal", z, reads)
        out = out.reshape(rows.batch + (width,))
        return _with_info(out, rows, guarded, method, return_info, ran=ran, chunk_length=chunk)

    def logdet(
        self, z: Any = 0.0, *, method: str = "auto", check_finite: bool = True,
        return_info: bool = False, chunk_length: int | None = None,
    ) -> Any:
        """``log det(T - z I)``, shape ``broadcast(batch_shape, z.shape)``; O(N).

        ``log det A = sum_i log d_i`` over the LU pivots ``d_i = 1/gL_i``; the phase is kept as
        a product of unit numbers, so the imaginary part is in (-pi, pi] as with
        ``numpy.linalg.slogdet``.  For a real matrix and real ``z`` the result is real when
        every determinant in the batch is positive, and complex (imaginary part pi where the
        determinant is negative) otherwise.

        ``chunk_length``: as for :meth:`resolvent_diagonal`.

        Raises :class:`SingularMatrixError` when ``T - z I`` is singular to working precision
        (the last pivot below ``pivmin``, or a guarded pivot in a decoupled block).
        """
        ck = _chunk_length_kw(self._backend, chunk_length)
        if self._backend.tracing():
            return self._backend.traced_call("logdet", self, z=z, method=method, check_finite=check_finite,
                                             return_info=return_info, **ck)
        reads = host_reads(self)
        rows = _shifted_rows(self, z, check_finite, reads=reads)

        def scaled(k):  # entries outside the safe range: log det A = log det(2^k A) - N k log 2
            T, zs, f = _scaled_problem(self, rows, k)
            out = T.logdet(zs, method=method, check_finite=False, return_info=return_info, **ck)
            shift = self._backend.asarray((self._n * math.log(2.0)) * k.astype(np.float64), like=self.diag)
            res = out[0] if return_info else out
            res = res - self._backend.astype(shift, self._backend.result_dtype(res.real))
            return _unscale_info((res, out[1]) if return_info else res, f, return_info)

        return _run_in_range(rows, lambda r: self._logdet(rows, z, method, return_info, r, ck), scaled, reads)

    def _logdet(self, rows, z, method, return_info, reads, ck=None):
        """:meth:`logdet` on rows in the kernels' safe range."""
        bk = self._backend
        ck = ck or {}
        ld, guarded, singular = bk.logdet(rows.alpha, rows.beta, rows.pivmin, method=method, **ck)
        ran, chunk = bk.kernel_ran(method), bk.chunk_length_ran()
        real = not bk.is_complex(rows.dtype) and not bk.lazy
        if reads is not None:  # the three questions below in one read (the kernel's, if it noted them)
            reads.any(guarded, singular, (ld, "imag") if real else None)
        singular = _certify_if_guarded(bk, rows, guarded, singular, method, reads, ck)
        _raise_if_singular(bk, singular, rows.batch, "logdet", z, reads)
        if real:
            if not (reads.any((ld, "imag"))[0] if reads is not None else bool((ld.imag != 0).any())):
                ld = ld.real
        ld = ld.reshape(rows.batch)
        return _with_info(ld, rows, guarded, method, return_info, ran=ran, chunk_length=chunk)

    def solve(
        self, b: Any, z: Any = 0.0, *, method: str = "auto", check_finite: bool = True,
        return_info: bool = False, chunk_length: int | None = None,
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
        ``chunk_length``: as for :meth:`resolvent_diagonal`.
        """
        bk = self._backend
        ck = _chunk_length_kw(bk, chunk_length)
        if bk.tracing():
            return bk.traced_call("solve", self, z=z, b=b, method=method, check_finite=check_finite,
                                  return_info=return_info, **ck)
        if type(b) is not type(self.diag):  # arrays of one type never mix
            backend_for(self.diag, b)  # mixed array types -> BackendError
        b = as_array(bk, "b", b, like=self.diag, scalar_ok=False)
        reads = host_reads(self)
        if check_finite and reads is None:  # else deferred to the call's one read
            _require_finite(bk, b=b)
        is_vec, b_batch, k = split_rhs(b, len(self._batch_shape), self._n)
        rows = _shifted_rows(self, z, check_finite, extra={"b": b_batch}, extra_dtype=b, reads=reads)

        def scaled(ks):  # entries outside the safe range: x = 2^k (2^k A)^{-1} b
            T, zs, f = _scaled_problem(self, rows, ks)
            out = T.solve(b, zs, method=method, check_finite=False, return_info=return_info, **ck)
            tail = (None,) if is_vec else (None, None)
            res = (out[0] if return_info else out) * f[0][(...,) + tail] * f[1][(...,) + tail]
            return _unscale_info((res, out[1]) if return_info else res, f, return_info)

        return _run_in_range(rows, lambda r: self._solve(rows, b, z, is_vec, k, method, return_info, r, ck),
                             scaled, reads, finite={"b": b} if check_finite else None)

    def _solve(self, rows, b, z, is_vec, k, method, return_info, reads, ck=None):
        """:meth:`solve` on rows in the kernels' safe range."""
        bk = self._backend
        ck = ck or {}
        n = self._n
        bb = b[..., None] if is_vec else b
        bb = bk.broadcast_to(bk.astype(bb, rows.dtype), rows.batch + (n, k))
        bb = bb.reshape((rows.count, n, k))
        lower, upper = rows.lower, rows.upper
        x, guarded, singular = bk.solve(rows.alpha, upper, lower, bb, rows.pivmin, method=method, **ck)
        ran, chunk = bk.kernel_ran(method), bk.chunk_length_ran()
        if reads is not None:  # both questions below in one read (the kernel's, if it noted them)
            reads.any(guarded, singular)
        singular = _certify_if_guarded(bk, rows, guarded, singular, method, reads, ck)
        _raise_if_singular(bk, singular, rows.batch, "solve", z, reads)
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
        return _with_info(x, rows, guarded, method, return_info, refinement_steps=steps, ran=ran,
                          chunk_length=chunk)


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
