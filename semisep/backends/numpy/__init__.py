"""NumPy backend: numba-compiled kernels on ``(B, N)`` arrays, with plain NumPy twins.

The package is split by role:

=====================  ======================================================================
``scalars``            the scalar steps every kernel uses (guarded and checked reciprocals, one
                       sweep step, one combining step, one ``?gtsv`` elimination step, the
                       renormalised pivot product), each a Python function with a numba
                       ``overload``; numba's set-up (threading layer, cache, constants)
``sweeps``             LU / UL pivot sweeps, the resolvent diagonal (full, shifted, selected,
                       with pivots) and its reverse mode
``pivoted``            solve and log-determinant with partial pivoting (LAPACK ``?gtsv``)
``woodbury``           the fused Woodbury sweeps of ``T + U V^T``
``twins``              the plain NumPy twins (``*_ref``) tests compare every kernel with
``quasiseparable``     the quasiseparable LU, solve, matvec and inverse diagonal, the
                       symmetric (LDL^T) forms in ``quasiseparable_symmetric``, the adjoint
                       in ``quasiseparable_grad``, batched NumPy steps on threads in
                       ``quasiseparable_rows``
``kernel_generators``  the compiled assembly of the GP kernels' generators
``chunks``             the chunk kernels of the Dask backend
``linalg``             the dense array namespace (``Backend.linalg``)
``__init__``           :class:`NumpyBackend`, which picks among them
=====================  ======================================================================

Compile time.  numba compiles every kernel once per argument signature (dtype, layout,
read-only flag), and CI starts from a cold cache; ``benchmarks/compile_times.py`` measures the
cold first calls.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .. import SINGULAR_FACTOR, Backend
from . import linalg as _linalg_ns
from .pivoted import (  # noqa: F401  (the package's namespace)
    _logdet_row,
    _solve_row,
    logdet_kernel,
    solve_kernel,
)
from .scalars import (  # noqa: F401  (the package's namespace)
    _JIT,
    _guard,
    _recip,
)
from .sweeps import (  # noqa: F401  (the package's namespace)
    _resolvent_batch,
    _resolvent_pivots_batch,
    _resolvent_pivots_pairs,
    _resolvent_row_twosided,
    _row_pairs,
    left_pivots,
    resolvent_diagonal_backward,
    resolvent_diagonal_kernel,
    resolvent_diagonal_selected_kernel,
    resolvent_diagonal_shifted_kernel,
    resolvent_diagonal_shifted_with_pivots,
    resolvent_diagonal_with_pivots,
    right_pivots,
)
from .twins import (  # noqa: F401  (the package's namespace)
    left_pivots_ref,
    logdet_ref,
    resolvent_diagonal_ref,
    right_pivots_ref,
    solve_ref,
    woodbury_correction_ref,
    woodbury_forward_ref,
)
from .woodbury import (  # noqa: F401  (the package's namespace)
    WoodburySweeps,
    _give_back_scratch,
    _take_scratch,
    release_scratch,
    woodbury_correction_kernel,
    woodbury_forward_kernel,
)

__all__ = [
    "NumpyBackend",
    "select_kernel",
    "left_pivots",
    "right_pivots",
    "resolvent_diagonal_kernel",
    "resolvent_diagonal_shifted_kernel",
    "resolvent_diagonal_selected_kernel",
    "resolvent_diagonal_with_pivots",
    "resolvent_diagonal_backward",
    "logdet_kernel",
    "solve_kernel",
    "WoodburySweeps",
    "woodbury_forward_kernel",
    "woodbury_correction_kernel",
    "release_scratch",
    "left_pivots_ref",
    "right_pivots_ref",
    "resolvent_diagonal_ref",
    "logdet_ref",
    "solve_ref",
    "woodbury_forward_ref",
    "woodbury_correction_ref",
]


# --------------------------------------------------------------------------------------------
# the backend object
# --------------------------------------------------------------------------------------------
def _abs2(x):
    return x.real * x.real + x.imag * x.imag if np.iscomplexobj(x) else x * x


def _singular_at(G, pivmin):
    """The certificate at the gathered positions: some ``|1/G_ii| < SINGULAR_FACTOR pivmin``,
    NaN counting as singular (a zero pivot's ``1/G`` is NaN for complex G); compared without
    squares, which could underflow."""
    with np.errstate(divide="ignore", invalid="ignore"):
        gam = 1.0 / G
    return ~(np.abs(gam) >= SINGULAR_FACTOR * np.asarray(pivmin)[:, None]).all(axis=1)


def select_kernel(operation: str, method: str, n: int = 0, indices: Any = None) -> str:
    """The NumPy backend's kernel for ``operation`` ("resolvent_diagonal",
    "resolvent_diagonal_shifted", "resolvent_diagonal_selected", "logdet", "solve") and
    ``method`` ("auto", "sequential" or "reference", already checked); ``n`` the matrix size
    N and ``indices`` (K,) the selected positions (for "resolvent_diagonal_selected").

    Decision table (the first matching row wins):

    ================================  ===================================  =========================
    ``method``                        condition                            kernel
    ================================  ===================================  =========================
    ``"reference"``                   any                                  ``reference`` (twins)
    ``"auto"`` / ``"sequential"``     ``resolvent_diagonal_selected`` and  ``sequential-selected``
                                      :func:`_selection_pays`
    ``"auto"`` / ``"sequential"``     otherwise                            ``sequential``
    ================================  ===================================  =========================

    ``sequential``: the compiled sweeps (for the selected operation: the full diagonal, then a
    gather); ``sequential-selected``: the selected-entry kernel, which stops the sweeps at the
    outermost positions and combines only at ``indices``; ``reference``: the plain NumPy twins.
    How many rows a sweep kernel runs in pairs (``sweeps._row_pairs``) is a layout inside the
    kernel (same values), not a choice of kernel."""
    if method == "reference":
        return "reference"
    if operation == "resolvent_diagonal_selected" and _selection_pays(n, indices):
        return "sequential-selected"
    return "sequential"


def _selection_pays(n: int, indices) -> bool:
    """Whether the truncating selected-entry kernel can beat the fused full kernel + gather.

    Measured (benchmarks/bench_sparse.py): with scattered indices the selected kernel costs
    about 1.4x the fused kernel once most positions are kept (it stores gL and visits the
    positions in sorted order), so it is used only when few positions are asked for
    (K <= N/4) or when they cluster so that the two truncated sweeps cover less than N.
    """
    k = len(indices)
    if k == 0:
        return True
    lo, hi = int(np.min(indices)), int(np.max(indices))
    return 4 * k <= n or hi + (n - lo) < n


#: ``finfo(dtype).eps`` by dtype (NumpyBackend.eps)
_EPS: dict[Any, float] = {}
#: arrays up to this size take ``max|x|`` from one ``|x|`` temporary (NumpyBackend.amax_abs)
_SMALL = 4096


class NumpyBackend(Backend):
    """CPU backend on NumPy arrays.

    ``method``: ``"sequential"`` (compiled numba sweeps, parallel over the batch) or
    ``"reference"`` (the plain NumPy twins, for tests).  ``"auto"`` is ``"sequential"``;
    :func:`select_kernel` is the whole policy (with ``indices=``, whether the selected-entry
    kernel runs), and ``PivotInfo.method`` reports what it chose (:meth:`kernel_ran`).
    """

    name = "numpy"
    methods = ("sequential", "reference")
    linalg = _linalg_ns

    def __init__(self) -> None:
        self._ran = threading.local()  # the kernel each thread's last call ran (Backend.kernel_ran)

    def _select(self, operation: str, method: str, n: int = 0, indices: Any = None) -> str:
        return self._note_kernel(select_kernel(operation, self.check_method(method), n, indices))

    def is_array(self, x: Any) -> bool:
        return isinstance(x, np.ndarray)

    def asarray(self, x: Any, like: Any = None) -> Any:
        return np.asarray(x)

    def result_dtype(self, *xs: Any) -> Any:
        dt = np.result_type(*xs)
        if not np.issubdtype(dt, np.inexact):
            dt = np.result_type(dt, np.float64)
        if dt == np.float16 or dt.itemsize > 16:
            raise TypeError(f"dtype {dt} is not supported; use float32/float64/complex64/complex128")
        return dt

    def astype(self, x: Any, dtype: Any) -> Any:
        return np.asarray(x).astype(dtype, copy=False)

    def zeros(self, shape, dtype, like=None):
        return np.zeros(shape, dtype=dtype)

    def concat(self, xs, axis):
        return np.concatenate(xs, axis=axis)

    def broadcast_to(self, x, shape):
        """``np.broadcast_to``; ``x`` itself where its shape is already ``shape`` (NumPy's view
        would be read-only, and numba types -- and compiles -- read-only arrays apart from
        writeable ones), and the other shape the operators meet on every call, one new leading
        axis of a C-contiguous array, formed directly (the same read-only view, without NumPy's
        general broadcasting set-up)."""
        if isinstance(x, np.generic):  # a reduction's NumPy scalar
            x = np.asarray(x)
        xs = x.shape
        shape = tuple(shape)
        if type(x) is np.ndarray:
            if xs == shape:
                return x
            if len(shape) == len(xs) + 1 and shape[1:] == xs and x.size and x.flags.c_contiguous:
                v = np.ndarray(shape, x.dtype, x, 0, (0,) + x.strides)
                v.flags.writeable = False
                return v
        return np.broadcast_to(x, shape)

    def is_complex(self, dtype) -> bool:
        return np.issubdtype(dtype, np.complexfloating)

    def eps(self, dtype) -> float:
        eps = _EPS.get(dtype)
        if eps is None:
            eps = _EPS[dtype] = float(np.finfo(dtype).eps)
        return eps

    def all_finite(self, x) -> bool:
        return bool(np.isfinite(x).all())

    def amax_abs(self, x, axis):
        """``max(max|Re x|, max|Im x|)`` along ``axis``: within a factor sqrt(2) below
        ``max|x|`` and free of hypot; the contract asks only for such a scale (pivmin)."""
        if x.shape[axis] == 0:
            shape = list(x.shape)
            del shape[axis]
            return np.zeros(shape, np.finfo(x.dtype).dtype)
        if x.dtype.kind != "c":
            if x.size <= _SMALL:  # one |x| temporary is cheaper than a second reduction here
                return np.abs(x).max(axis=axis)
            # max|v| = max(max v, -min v): two reductions, no temporary |v| array
            return np.maximum(x.max(axis=axis), -x.min(axis=axis))
        parts = (x.real, x.imag)
        return np.maximum.reduce([np.maximum(v.max(axis=axis), -v.min(axis=axis)) for v in parts])

    def shifted_amax_abs(self, diag, shift, batch):
        """:meth:`Backend.shifted_amax_abs` (the same value) in fewer NumPy calls."""
        batch = tuple(batch)
        parts = (diag.real, diag.imag) if diag.dtype.kind == "c" else (diag,)
        shifts = (shift.real, shift.imag) if shift.dtype.kind == "c" else (shift,)
        scale = None
        for k, c in enumerate(shifts):
            if k < len(parts):
                lo, hi = parts[k].min(axis=-1), parts[k].max(axis=-1)
                if lo.shape != batch:
                    lo, hi = np.broadcast_to(lo, batch), np.broadcast_to(hi, batch)
                s = np.maximum(hi.reshape(-1) - c, c - lo.reshape(-1))
            else:  # a real diagonal: Im alpha = -Im z
                s = np.abs(c)
            scale = s if scale is None else np.maximum(scale, s)
        return scale

    def min_max(self, x):
        return x.min(axis=-1), x.max(axis=-1)  # NumPy's SIMD reductions, no temporary

    def maximum(self, a, b):
        return np.maximum(a, b)

    def to_numpy(self, x):
        return np.asarray(x)

    def resolvent_diagonal(self, alpha, beta, pivmin, method="auto"):
        if self._select("resolvent_diagonal", method) == "reference":
            return resolvent_diagonal_ref(alpha, beta, pivmin)
        return resolvent_diagonal_kernel(alpha, beta, pivmin)

    takes_shift = True

    def resolvent_diagonal_shifted(self, diag, shift, beta, pivmin, method="auto"):
        if self._select("resolvent_diagonal_shifted", method) == "reference":
            return Backend.resolvent_diagonal_shifted(self, diag, shift, beta, pivmin, "reference")
        return resolvent_diagonal_shifted_kernel(diag, shift, beta, pivmin)

    def resolvent_diagonal_selected(self, alpha, beta, pivmin, indices, method="auto"):
        kernel = self._select("resolvent_diagonal_selected", method, alpha.shape[1], indices)
        if kernel == "reference":
            G, guarded, _ = resolvent_diagonal_ref(alpha, beta, pivmin)
            G = G[:, indices]
            return G, guarded, _singular_at(G, pivmin)
        if kernel == "sequential":  # the fused full kernel, then a gather
            G, guarded, singular = resolvent_diagonal_kernel(alpha, beta, pivmin)
            G = G[:, indices]
            return G, guarded, _singular_at(G, pivmin)
        return resolvent_diagonal_selected_kernel(alpha, beta, pivmin, indices)

    def logdet(self, alpha, beta, pivmin, method="auto"):
        if self._select("logdet", method) == "reference":
            return logdet_ref(alpha, beta, pivmin)
        return logdet_kernel(alpha, beta, pivmin)

    def solve(self, alpha, upper, lower, f, pivmin, method="auto"):
        if self._select("solve", method) == "reference":
            return solve_ref(alpha, upper, lower, f, pivmin)
        return solve_kernel(alpha, upper, lower, f, pivmin)

    fused_woodbury = True

    def woodbury_forward(self, alpha, upper, lower, U, V, pivmin, shift=None):
        """:func:`woodbury_forward_kernel` writing X and P into this thread's scratch buffer:
        they stay valid until the sweeps are passed to :meth:`woodbury_correction` or
        :meth:`woodbury_release`, which recycle it."""
        self._note_kernel("sequential")
        return woodbury_forward_kernel(alpha, upper, lower, U, V, pivmin, shift=shift, buffer=_take_scratch())

    def woodbury_correction(self, sweeps, Kinv, subtract_from=None):
        corr = woodbury_correction_kernel(sweeps, Kinv, subtract_from)
        _give_back_scratch(sweeps.buffer)
        return corr

    def woodbury_release(self, sweeps):
        """Keep the sweeps' scratch buffer for the next call."""
        _give_back_scratch(sweeps.buffer)
