"""The Dask backend class: plumbing on ``dask.array`` and the three kernels as task graphs."""

from __future__ import annotations

import functools
from typing import Any

import dask.array as da
import numpy as np

from .. import Backend
from . import _graph
from . import _tasks as T


def _is_dask(x: Any) -> bool:
    return isinstance(x, da.Array)


class DaskBackend(Backend):
    """Backend on ``dask.array`` arrays: every kernel returns lazy dask arrays.

    The chain is processed in the chunks its arrays already have along N (rechunk ``diag`` to
    choose them) and in independent blocks of rows along the batch.  Per chunk, a task computes
    the chunk's transfer matrices with the compiled kernels of
    :mod:`semisep.backends.numpy.chunks`; an exact scan over those few numbers (a tree of tasks
    beyond ``_graph.FAN`` chunks) gives every chunk its carries; a second task per chunk runs the
    whole-chain sweeps on the chunk from its carries (the resolvent diagonal: from the scanned
    ones, then updated where the boundary repair moved a carry, :mod:`._resolvent`).  See
    ``docs/distributed.md`` for the cost model.

    Differences from the NumPy backend, all because nothing is known before compute time:
    a singular matrix raises :class:`~semisep.errors.SingularMatrixError` when the result is
    computed (not when the method is called); ``logdet`` of a real matrix comes back complex
    (imaginary part 0 or pi) since the determinant's sign is not known; ``solve`` always takes
    one step of iterative refinement; the certificate that logdet and solve add where a pivot
    was guarded is part of every graph, and its tasks return at once for rows without a guarded
    pivot.  ``check_finite=True`` (the default of the operator) computes ``isfinite`` over the
    inputs eagerly, one pass; pass ``check_finite=False`` to keep construction lazy.
    ``return_info=True`` computes the guard counts.
    """

    name = "dask"
    methods = ("chunked",)
    lazy = True

    # -- plumbing ---------------------------------------------------------------------------
    def is_array(self, x: Any) -> bool:
        return _is_dask(x)

    def asarray(self, x: Any, like: Any = None) -> Any:
        """A dask array; a NumPy array (or scalar, list) is wrapped, chunked like ``like``'s last
        axis (N) along its own last axis, or along its second last where that one has ``like``'s
        length and the last does not (``U (N, r)`` of a low-rank term)."""
        if _is_dask(x):
            return x
        x = np.asarray(x)
        chunks: Any = "auto"
        if like is not None and _is_dask(like) and x.ndim >= 1 and like.ndim >= 1:
            c = max(max(like.chunks[-1]) if like.chunks[-1] else 1, 1)
            axis = x.ndim - 1
            if x.ndim >= 2 and x.shape[-1] != like.shape[-1] and x.shape[-2] == like.shape[-1]:
                axis = x.ndim - 2
            chunks = tuple(c if i == axis else -1 for i in range(x.ndim))
        return da.from_array(x, chunks=chunks)

    def result_dtype(self, *xs: Any) -> Any:
        dt = np.result_type(*(x.dtype if _is_dask(x) else x for x in xs))
        if not np.issubdtype(dt, np.inexact):
            dt = np.result_type(dt, np.float64)
        if dt == np.float16 or dt.itemsize > 16:
            raise TypeError(f"dtype {dt} is not supported; use float32/float64/complex64/complex128")
        return dt

    def astype(self, x: Any, dtype: Any) -> Any:
        x = self.asarray(x)
        return x if x.dtype == dtype else x.astype(dtype)

    def zeros(self, shape: tuple[int, ...], dtype: Any, like: Any) -> Any:
        return da.zeros(shape, dtype=dtype)

    def concat(self, xs: list[Any], axis: int) -> Any:
        return da.concatenate([self.asarray(x) for x in xs], axis=axis)

    def broadcast_to(self, x: Any, shape: tuple[int, ...]) -> Any:
        return da.broadcast_to(self.asarray(x), shape)

    def is_complex(self, dtype: Any) -> bool:
        return bool(np.issubdtype(dtype, np.complexfloating))

    def eps(self, dtype: Any) -> float:
        return float(np.finfo(dtype).eps)

    def all_finite(self, x: Any) -> bool:
        """Computed now: one pass over ``x`` (see the class docstring)."""
        return bool(da.isfinite(x).all().compute())

    def amax_abs(self, x: Any, axis: int) -> Any:
        """``max(max|Re x|, max|Im x|)`` along ``axis``, a lazy tree reduction; along the last
        axis one task per block computes it in one read, without forming ``|x|``."""
        if x.shape[axis] == 0:
            shape = tuple(s for i, s in enumerate(x.shape) if i != axis % x.ndim)
            return da.zeros(shape, dtype=np.finfo(x.dtype).dtype)
        if axis % x.ndim == x.ndim - 1:
            return _graph.last_axis_reduce("amax", x, T.amax_parts, T.max_of, (np.finfo(x.dtype).dtype,))[0]
        parts = (x.real, x.imag) if np.iscomplexobj(x._meta) else (x,)
        return functools.reduce(da.maximum, [abs(v).max(axis=axis) for v in parts])

    def min_max(self, x: Any) -> tuple[Any, Any]:
        """``(min, max)`` along the last axis from one task per block."""
        if x.shape[-1] == 0:
            return x.min(axis=-1), x.max(axis=-1)
        return _graph.last_axis_reduce("minmax", x, T.lo_hi, T.lo_hi_of, (x.dtype, x.dtype))

    def maximum(self, a: Any, b: Any) -> Any:
        return da.maximum(a, b)

    def to_numpy(self, x: Any) -> Any:
        return np.asarray(x.compute() if _is_dask(x) else x)

    # -- kernels ----------------------------------------------------------------------------
    def resolvent_diagonal(self, alpha, beta, pivmin, method="auto"):
        self.check_method(method)
        return _graph.resolvent_diagonal(alpha, beta, pivmin)

    takes_shift = True

    def resolvent_diagonal_shifted(self, diag, shift, beta, pivmin, method="auto"):
        """The shift form: ``diag`` and ``beta`` in ``T``'s own dtype, ``alpha = diag - shift``
        formed inside each chunk's tasks (no (B, N) array ``alpha`` in the graph).  The rows are
        split as finely as ``shift``'s or ``diag``'s blocks are (a sweep over a chunked array of
        shifts keeps its chunks)."""
        self.check_method(method)
        if len(shift.chunks[0]) > len(diag.chunks[0]):
            diag = diag.rechunk({0: shift.chunks[0]})
        return _graph.resolvent_diagonal(diag, beta, pivmin, shift=shift)

    def logdet(self, alpha, beta, pivmin, method="auto"):
        self.check_method(method)
        return _graph.logdet(alpha, beta, pivmin)

    def solve(self, alpha, upper, lower, f, pivmin, method="auto"):
        self.check_method(method)
        return _graph.solve(alpha, upper, lower, f, pivmin)

