"""The operator side of :mod:`semisep.quasiseparable` that is not the operator: its arrays in
the kernels' row layout (:class:`_Rows`: a leading axis of ``prod(batch)`` rows, or 1 where an
array is shared by the batch, never copied), the pivot threshold ``pivmin`` per row, the
transitions' shapes (``(..., N, r, r)`` matrices or ``(..., N, r)`` diagonals) and the choice of
engine (NumPy kernels or torch).

``pivmin = eps * s`` per row, ``s`` the largest ``max(|Re|, |Im|)`` over the diagonal of
``S - z I`` and the first sub- and super-diagonals ``p_i . q_{i-1}``, ``g_i . h_{i-1}``, raised
to the smallest normal number where below it (mathematics: "Quasiseparable operators").
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _linalg as la
from .backends import Backend
from .errors import ShapeError

if TYPE_CHECKING:
    from .quasiseparable import Quasiseparable

__all__ = ["_Rows", "_transitions", "_is_diagonal_form", "_distinct", "_detach", "_engine"]


def _is_diagonal_form(x: Any, n: int, r: int) -> bool:
    """Whether transitions ``x`` are given as diagonals ``(..., N, r)`` (not matrices)."""
    shape = tuple(x.shape)
    return not (x.ndim >= 3 and shape[-3:] == (n, r, r)) and x.ndim >= 2 and shape[-2:] == (n, r)


def _transitions(bk: Backend, name: str, x: Any, n: int, r: int) -> Any:
    """``x`` as (..., N, r, r); diagonal transitions (..., N, r) are expanded."""
    shape = tuple(x.shape)
    if x.ndim >= 3 and shape[-3:] == (n, r, r):
        return x
    if x.ndim >= 2 and shape[-2:] == (n, r):
        eye = la.eye(bk, r, bk.result_dtype(x), like=x)
        return x[..., :, :, None] * eye
    raise ShapeError(
        f"{name} has shape {shape}: it must be (..., N, r, r) = (..., {n}, {r}, {r}) "
        f"(transition matrices) or (..., N, r) = (..., {n}, {r}) (diagonal transitions)"
    )


class _Rows:
    """The operator's arrays in the kernels' layout for a batch ``batch``: a leading axis of
    length ``prod(batch)``, or 1 where an array is shared by the whole batch (no copy)."""

    def __init__(self, op: Quasiseparable, batch: tuple[int, ...], dtype: Any):
        self.op, self.batch, self.dtype = op, batch, dtype
        self.count = int(np.prod(batch))

    def take(self, x: Any, tail: int, cast: bool = True) -> Any:
        bk = self.op.backend
        if cast:
            x = bk.astype(x, self.dtype)
        core = tuple(x.shape[len(x.shape) - tail:])
        own = tuple(x.shape[:len(x.shape) - tail])
        if int(np.prod(own)) == 1:
            return x.reshape((1,) + core)
        return bk.broadcast_to(x, self.batch + core).reshape((self.count,) + core)

    def forms(self) -> tuple[tuple[Any, Any, Any], tuple[Any, Any, Any]]:
        op = self.op
        lower = (self.take(op.p, 2), self.take(op.q, 2), self._trans(op.a))
        if op.is_symmetric_storage:
            return lower, lower
        return lower, (self.take(op.g, 2), self.take(op.h, 2), self._trans(op.b))

    def diagonal_transitions(self, ad: Any) -> Any:
        """Diagonal transitions ``(..., N, r)`` in the rows' layout (a stride-0 N axis as 1)."""
        stride = ad.stride(-2) if callable(getattr(ad, "stride", None)) else ad.strides[-2]
        if stride == 0 and ad.shape[-2] > 1:
            ad = ad[..., :1, :]
        return self.take(ad, 2)

    def _trans(self, a: Any) -> Any:
        """Transitions; a stride-0 N axis (one matrix for every step) is passed as length 1."""
        stride = a.stride(-3) if callable(getattr(a, "stride", None)) else a.strides[-3]
        if stride == 0 and a.shape[-3] > 1:
            a = a[..., :1, :, :]
        return self.take(a, 3)

    def pivmin(self, alpha: Any) -> Any:
        """``eps * s`` per row, ``s`` the largest entry of the diagonal and the first sub- and
        super-diagonals (``max(|Re|, |Im|)``), at least the smallest normal number."""
        op, bk = self.op, self.op.backend
        eng = _engine(bk)
        scale = None
        if hasattr(eng, "pivot_scale"):  # one compiled pass (NumPy engine, real data)
            lo = tuple(self.take(x, 2, cast=False) for x in (op.p, op.q))
            up = lo if op.is_symmetric_storage else tuple(
                self.take(x, 2, cast=False) for x in (op.g, op.h))
            scale = eng.pivot_scale(alpha, *lo, *up)
        if scale is None:
            scale = self._scale(alpha)
        eps = bk.eps(self.dtype)
        tiny = float(np.finfo(np.float32 if eps > 1e-10 else np.float64).tiny)
        piv = scale * eps
        return piv + (piv < tiny) * tiny

    def _scale(self, alpha: Any) -> Any:
        op, bk = self.op, self.op.backend
        scale = bk.amax_abs(_detach(alpha), axis=1)
        if op.n > 1:
            for left, right in ((op.p, op.q), op.upper_form[:2]):
                if left.shape[-1] == 0:
                    continue
                lo, hi = _detach(left)[..., 1:, :], _detach(right)[..., :-1, :]
                off = lo[..., 0] * hi[..., 0]  # p_i . q_{i-1}, a loop over the (small) rank
                for k in range(1, int(left.shape[-1])):
                    off = off + lo[..., k] * hi[..., k]
                off = self.take(bk.amax_abs(off, axis=-1), 0, cast=False)
                scale = bk.maximum(scale, bk.broadcast_to(off, (self.count,)))
        return scale


#: the ``method=`` values of the quasiseparable operations (the torch engine's policy,
#: :func:`semisep.backends.torch.select.select_quasiseparable_kernel`)
METHODS = ("auto", "sequential", "chunked", "loop")


def _engine(bk: Backend, method: str = "auto") -> Any:
    """The engine module of ``bk`` with the operation's ``method`` bound: NumPy arrays run
    the compiled sequential kernels (``"auto"`` or ``"sequential"``); the torch engine takes
    every method of :data:`METHODS` and decides per call and device."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}; choose one of {METHODS}")
    if bk.name == "torch":
        from .backends.torch import quasiseparable as eng

        return eng if method == "auto" else _Bound(eng, method)
    if method not in ("auto", "sequential"):
        raise ValueError(f"method={method!r} runs torch tensors only; NumPy arrays run the "
                         f"compiled sequential kernels (method='auto' or 'sequential')")
    from .backends.numpy import quasiseparable as np_eng

    return np_eng


class _Bound:
    """An engine module whose four dispatching functions get ``method=`` from the call."""

    _DISPATCH = ("factor", "solve", "inverse_diagonal", "matvec", "kernel_ran")

    def __init__(self, module: Any, method: str):
        self._module, self._method = module, method

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._module, name)
        if name in self._DISPATCH:
            return functools.partial(attr, method=self._method)
        return attr


def _distinct(x: Any) -> Any:
    """``x`` with every axis of stride 0 (a broadcast) cut to length 1: the same values, each
    stored entry once."""
    strides = x.stride() if callable(getattr(x, "stride", None)) else x.strides
    if all(st != 0 or n <= 1 for st, n in zip(strides, x.shape, strict=True)):
        return x
    return x[tuple(slice(0, 1) if st == 0 else slice(None)
                   for st, n in zip(strides, x.shape, strict=True))]


def _detach(x: Any) -> Any:
    return x.detach() if hasattr(x, "detach") else x
