"""The core the tridiagonal-based operators share: the rows of ``A = T - z I`` as the kernels take
them, the range scaling, the certificates and :class:`PivotInfo`.

Every operator built on the tridiagonal kernels (:class:`~semisep.Tridiagonal`,
:class:`~semisep.TridiagonalPlusLowRank`, the quasiseparable operators, :mod:`semisep.nn`) goes
through this module between validating its arguments and calling the backend kernels
(contract in :mod:`semisep.backends`).

**Rows.**  :func:`shifted_rows` broadcasts ``T`` (batch shape ``batch_T``) against ``z`` (and a
right-hand side's batch) to ``batch`` and flattens it to ``B = prod(batch)`` rows:
``alpha = diag - z`` (B, N), ``beta = lower * upper`` (B, N-1), ``lower``, ``upper`` (B, N-1),
all in the result dtype ``result_dtype(T, z[, b])``; the shift form (``diag`` (B, N) and
``beta_native`` in ``T``'s own dtype, ``shift`` (B,)) for backends that take it.  Arrays are
formed on first use and cached per call.

**Guard threshold.**  ``pivmin = eps(dtype) * s`` per row, ``s = max_ij max(|Re A_ij|,
|Im A_ij|)`` (within sqrt(2) of the largest modulus), at least ``sqrt(tiny)`` so that an
all-zero row has a guard and ``pivmin**2`` stays a normal number.

**Range scaling.**  The kernels run on rows with ``s`` in ``[2^-E, 2^E]`` (``E = 20`` single,
``200`` double); a row outside is multiplied by an exact power of two ``2^k`` (``2^k s`` in
``[1/2, 1)``) first: then ``beta <= s^2`` and ``pivmin^2`` stay normal numbers, and
``(2^k A)^{-1} = 2^-k A^{-1}``, ``log det(2^k A) = log det A + N k log 2`` give the results back
exactly (:func:`_range_scale`, :func:`_scaled_problem`).

**Certificates.**  The kernels return per row ``guarded`` (pivots replaced by
``pivmin d/|d|``) and ``singular`` (``T - zI`` singular to working precision, the contract's
test).  :func:`_certify_if_guarded` adds the resolvent's certificate where the left sweep of
``logdet``/``solve`` guarded a pivot; :func:`_raise_if_singular` raises
:class:`~semisep.errors.SingularMatrixError` naming the first singular batch index.
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass
from numbers import Integral
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import as_array, broadcast_shapes, non_finite_error
from ._validation import check_finite as _require_finite
from .backends import Backend, backend_for
from .errors import ShapeError, SingularMatrixError

if TYPE_CHECKING:
    from .tridiagonal import Tridiagonal

__all__ = ["PivotInfo", "ShiftedRows", "shifted_rows"]


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
    chunk_length : int or None
        The chunk length ``L`` of the pivot sweeps that ran (the ``chunk_length`` argument,
        at most N, or the kernel's own N-dependent choice): torch's ``"chunked"`` and
        ``"fused"`` kernels; None for the kernels without chunks (``"sequential"``,
        ``"reference"``, the NumPy and Dask backends).
    """

    pivots_guarded: Any
    pivmin: Any
    method: str
    refinement_steps: int = 0
    requested_method: str | None = None
    chunk_length: int | None = None

    @property
    def total_guarded(self) -> int:
        return int(np.sum(self.pivots_guarded))


class ShiftedRows:
    """``A = T - z I`` broadcast and flattened to ``B = prod(batch)`` rows for the kernels.

    ``diag`` (B, N) and ``beta_native`` (B, N-1) are views of ``T``'s arrays in ``T``'s dtype,
    ``shift`` (B,) is ``z`` per row in the result dtype; ``alpha = diag - shift``, ``beta``,
    ``lower`` and ``upper`` in the result dtype are formed on first use, so a backend that takes
    the shift form (``Backend.takes_shift``) never materialises the (B, N) array ``alpha``.

    Attributes: ``batch`` (tuple), ``count = prod(batch)``, ``n = N``, ``dtype``; ``alpha``
    (B, N), ``beta``, ``lower``, ``upper`` (B, N-1) in ``dtype``; ``diag`` (B, N),
    ``lower_native``, ``upper_native``, ``beta_native`` (B, N-1) in ``T``'s dtype; ``shift``
    (B,); ``pivmin`` (B,) the guard threshold and ``scale`` (B,) the largest entry it came from
    (module docstring).  Built by :func:`shifted_rows`.
    """

    def __init__(self, op: Tridiagonal, z: Any, z_arr: Any, batch: tuple[int, ...], dtype: Any):
        self._op, self._z, self._z_arr = op, z, z_arr
        self.batch, self.dtype = batch, dtype
        self.n = op.n
        self.count = math.prod(batch)
        self._cache: dict[str, Any] = {}
        self.deferred_z_check = False  # z's finiteness check deferred to the call's host read

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


def shifted_rows(
    op: Tridiagonal, z: Any, check: bool = True, extra: dict | None = None, extra_dtype: Any = None,
    reads: Any = None,
) -> ShiftedRows:
    """The rows of ``A = T - z I`` as the kernels take them (:class:`ShiftedRows`).

    Parameters
    ----------
    op : Tridiagonal, batch shape ``batch_T``, N x N
    z : scalar or array broadcastable against ``batch_T``
        Python and NumPy scalars take a short path (no array formed, finiteness on the host).
    check : bool
        Raise :class:`~semisep.errors.NonFiniteError` if ``z`` holds NaN or inf.
    extra : dict of name -> batch shape, optional
        Further batch shapes to broadcast with (a right-hand side's, an outer operator's);
        a :class:`~semisep.errors.ShapeError` names the one that clashes.
    extra_dtype : array, optional
        An array whose dtype takes part in the result dtype (a right-hand side ``b``).
    reads : the call's :meth:`Backend.host_reads` scope, optional
        Where given, an array ``z``'s finiteness check is deferred to it
        (``deferred_z_check``; :func:`_run_in_range` raises where it fails).

    Returns
    -------
    ShiftedRows
        ``batch = broadcast(batch_T, z.shape, *extra)``, ``count = prod(batch)`` rows, ``dtype
        = result_dtype(T, z[, extra_dtype])``; its arrays are formed on first use.
    """
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
        return ShiftedRows(op, z, z_arr, batch, dtype)
    backend_for(op.diag, z)  # mixed array types -> BackendError
    z_arr = as_array(bk, "z", z, like=op.diag)
    deferred = False
    if check and not (_is_python_scalar(z) and cmath.isfinite(z)):  # a finite Python z: no device read
        if reads is not None:  # read with the call's other flags (_run_in_range checks on failure)
            reads.defer_finite("z", z_arr)
            deferred = True
        else:
            _require_finite(bk, z=z_arr)
    shapes = {"operator": op.batch_shape, "z": tuple(z_arr.shape)}
    if extra:
        shapes.update(extra)
    batch = broadcast_shapes(shapes)
    dt_args = [op.diag, z if _is_python_scalar(z) else z_arr]
    if extra_dtype is not None:
        dt_args.append(extra_dtype)
    rows = ShiftedRows(op, z, z_arr, batch, bk.result_dtype(*dt_args))
    rows.deferred_z_check = deferred
    return rows


#: NumPy scalar types that take :func:`shifted_rows`' short path on the NumPy backend
_NUMPY_SCALARS = frozenset((np.float32, np.float64, np.complex64, np.complex128))
#: the least ``pivmin`` by precision (single: True): ``sqrt(tiny)``, see ``ShiftedRows._make_pivmin``
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


def _range_scale(rows: ShiftedRows) -> Any:
    """``None`` where every row's scale ``s`` (:attr:`ShiftedRows.scale`) is 0 or in
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


def _in_range_flag(rows: ShiftedRows) -> Any:
    """0-d bool array: every row's scale is 0 or in ``[2^-E, 2^E]``, so that
    :func:`_range_scale` returns None (False also where a scale is NaN or inf)."""
    lo, hi = _SAFE_RANGE[_SAFE_EXP["single" if rows._op.backend.eps(rows.dtype) > 1e-10 else "double"]]
    sc = rows.scale
    return ((sc == 0) | ((sc >= lo) & (sc <= hi))).all()


def host_reads(op: Any) -> Any:
    """The host-read scope of one call on ``op``'s arrays (:meth:`Backend.host_reads`; None
    where reads cost no host sync, and for lazy backends)."""
    bk = op.backend
    return None if bk.lazy else bk.host_reads(op.diag)


def _run_in_range(rows: ShiftedRows, run: Any, scaled: Any, reads: Any, finite: dict | None = None) -> Any:
    """``run(reads)`` where every row's entries are in the kernels' safe range, else
    ``scaled(k)`` with the exponents of :func:`_range_scale`.

    Where the backend defers reads (:meth:`Backend.host_reads`: a tensor on a GPU) the range
    test is not read up front: it is deferred to the call's one host read (the kernel's own,
    or the operator's after it), with the finiteness of the arrays in ``finite`` (name ->
    array: the argument checks); ``run`` receives the scope for its own questions.  Where a
    deferred test fails, the results are dropped and the call decides on the host as
    elsewhere: the argument check raises, or the problem is scaled (or, for non-finite scales,
    run as it is).  ``reads``: :func:`host_reads` of the operator (``finite`` is checked by
    the caller where it is None)."""
    bk = rows._op.backend
    if reads is not None:
        for name, x in (finite or {}).items():
            reads.defer_finite(name, x)
        reads.defer("in_range", _in_range_flag(rows), stop=True)
        try:
            with reads:
                out = run(reads)
                reads.any()  # what is still deferred (nothing where the kernel read it)
            return out
        except reads.Stop:  # the argument checks first (b before z, as read as they go)
            if finite:
                _require_finite(bk, **finite)
            if rows.deferred_z_check:
                _require_finite(bk, z=rows._z_arr)
    k = _range_scale(rows)
    return run(None) if k is None else scaled(k)


def _entry_bound(rows: ShiftedRows) -> Any:
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


def _pow2_factors(bk: Backend, k: Any, rows: ShiftedRows) -> tuple[Any, Any]:
    """``2^k`` as two factors ``2^(k//2)``, ``2^(k - k//2)`` (each representable in the real
    dtype, where ``2^k`` alone may not be), backend arrays of shape ``rows.batch``."""
    k1 = k // 2
    real = np.float32 if bk.eps(rows.dtype) > 1e-10 else np.float64
    like = rows._op.diag
    f1 = bk.asarray(np.ldexp(1.0, k1).astype(real), like=like)
    f2 = bk.asarray(np.ldexp(1.0, k - k1).astype(real), like=like)
    return f1, f2


def _scaled_problem(op: Tridiagonal, rows: ShiftedRows, k: Any) -> tuple[Tridiagonal, Any, Any]:
    """``(2^k T, 2^k z, (f1, f2))``: every row multiplied by its power of two (exact), so
    ``(2^k A)^{-1} = 2^-k A^{-1}`` and ``log det(2^k A) = log det A + N k log 2``."""
    bk = op.backend
    f1, f2 = _pow2_factors(bk, k, rows)
    g1, g2 = f1[..., None], f2[..., None]
    T = type(op)(op.diag * g1 * g2, op.lower * g1 * g2,
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


def _certify_if_guarded(bk: Backend, rows: ShiftedRows, guarded: Any, singular: Any, method: str,
                        reads: Any = None, ck: dict | None = None) -> Any:
    """Where the left sweep guarded a pivot, add resolvent_diagonal's certificate: the guard
    can turn a singular matrix into a regular-looking neighbour for the left sweep alone.
    A lazy backend's kernels include the certificate.  ``reads``: the call's
    :meth:`Backend.host_reads` scope (``guarded`` counts are non-negative: any nonzero is
    any positive); ``ck`` the call's ``chunk_length`` keyword (:func:`_chunk_length_kw`)."""
    if bk.lazy:
        return singular
    if not (reads.any(guarded)[0] if reads is not None else bool((guarded > 0).any())):
        return singular
    _, _, sing_g = bk.resolvent_diagonal(
        _detach(rows.alpha), _detach(rows.beta), rows.pivmin, method=method, **(ck or {})
    )
    return singular | sing_g


def _chunk_length_kw(bk: Backend, chunk_length: Any) -> dict:
    """The ``chunk_length`` argument of a public call as the kernels' keyword: ``{}`` for None
    (every backend's kernels choose), ``{"chunk_length": L}`` for a positive integer on a
    backend with chunked kernels (``Backend.takes_chunk_length``); ValueError otherwise."""
    if chunk_length is None:
        return {}
    if isinstance(chunk_length, bool) or not isinstance(chunk_length, Integral) or chunk_length < 1:
        raise ValueError(f"chunk_length must be a positive integer or None, got {chunk_length!r}")
    if not bk.takes_chunk_length:
        raise ValueError(
            f"chunk_length={chunk_length!r}: the {bk.name} backend's kernels have no chunks (the "
            "chunk length is a parameter of the torch backend's 'chunked' and 'fused' kernels); "
            "pass chunk_length=None")
    return {"chunk_length": int(chunk_length)}


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


def _raise_if_singular(bk: Backend, singular: Any, batch: tuple[int, ...], what: str, z: Any,
                       reads: Any = None) -> None:
    """Raise :class:`SingularMatrixError` naming the first batch index where ``singular``
    (B,) is True; ``reads``: the call's :meth:`Backend.host_reads` scope (None: read here)."""
    if bk.lazy:  # a lazy backend's results raise when computed
        return
    if reads is not None and not reads.any(singular)[0]:
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


def _with_info(out, rows: ShiftedRows, guarded, method, return_info, refinement_steps: int = 0,
               ran: str | None = None, chunk_length: int | None = None):
    """``(out, PivotInfo)`` with ``return_info``, else ``out``; ``method`` is the argument as
    given, ``ran`` the kernel that ran (the backend's ``kernel_ran`` read right after the
    kernel call; ``method`` if None), ``chunk_length`` its chunk length
    (``chunk_length_ran``)."""
    if not return_info:
        return out
    bk_np = np.asarray
    info = PivotInfo(
        pivots_guarded=bk_np(_to_numpy(guarded)).reshape(rows.batch),
        pivmin=bk_np(_to_numpy(rows.pivmin)).reshape(rows.batch),
        method=method if ran is None else ran,
        refinement_steps=refinement_steps,
        requested_method=method,
        chunk_length=chunk_length,
    )
    return out, info


def _to_numpy(x: Any) -> Any:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)
