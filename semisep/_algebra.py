"""Operator conveniences shared by :class:`~semisep.Tridiagonal` and
:class:`~semisep.TridiagonalPlusLowRank`: batch indexing, ``.to``, sums, scalar multiples,
shifts by multiples of the identity, and off-diagonal resolvent entries.

Algebra (every result is again an operator of the same structure, never a dense matrix):

* ``T1 + T2`` (tridiagonal): the diagonals add; symmetric storage stays symmetric when both are.
* ``(T1 + U1 V1^T) + (T2 + U2 V2^T) = (T1 + T2) + [U1, U2] [V1, V2]^T`` (the ranks add);
  ``(T + U V^T) + T2 = (T + T2) + U V^T``.
* ``c * T``: every diagonal times ``c``; ``c (T + U V^T) = c T + (c U) V^T``.
* ``T - c * I`` with ``I = semisep.identity``: the diagonal minus ``c``; ``op.shift(c)`` does the
  same for a batch of shifts ``c`` (an array broadcastable against the batch).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .errors import ShapeError

__all__ = ["ScaledIdentity", "identity", "is_scalar", "batch_index", "to_device",
           "resolvent_entries"]


def is_scalar(c: Any) -> bool:
    """A Python / NumPy real or complex number (bools excluded), or a 0-d array or tensor."""
    if isinstance(c, bool):
        return False
    if isinstance(c, numbers.Number):
        return True
    return getattr(c, "ndim", None) == 0


class ScaledIdentity:
    """``c I`` of any size; ``semisep.identity`` is ``I`` (``c = 1``).  Only for adding to or
    subtracting from an operator: ``T - z * I`` is ``T`` with ``z`` taken off its diagonal."""

    __array_ufunc__ = None  # numpy scalars defer to __rmul__

    def __init__(self, scale: Any = 1.0):
        if not is_scalar(scale):
            raise TypeError(f"the identity's scale must be a scalar, got {type(scale).__name__}; "
                            "for a batch of shifts use op.shift(z)")
        self.scale = scale

    def __mul__(self, c: Any) -> ScaledIdentity:
        if not is_scalar(c):
            return NotImplemented
        return ScaledIdentity(self.scale * c)

    __rmul__ = __mul__

    def __neg__(self) -> ScaledIdentity:
        return ScaledIdentity(-self.scale)

    def __repr__(self) -> str:
        return "I" if self.scale == 1 else f"{self.scale!r} * I"


identity = ScaledIdentity(1.0)


def batch_index(op: Any, key: Any, arrays: dict[str, Any], core_ndim: dict[str, int]) -> dict[str, Any]:
    """``arrays`` (name -> array with ``core_ndim[name]`` trailing non-batch dimensions)
    broadcast to ``op.batch_shape`` and indexed by ``key`` along the batch dimensions only."""
    batch = tuple(op.batch_shape)
    if not batch:
        raise IndexError(f"{type(op).__name__} has no batch dimension to index (shape {op.shape})")
    keys = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis or k is None for k in keys):
        raise IndexError("batch indexing takes integers, slices and index arrays (no ... or None)")
    if len(keys) > len(batch):
        raise IndexError(f"index {key!r} has {len(keys)} entries but the operator has "
                         f"{len(batch)} batch dimension(s) {batch}")
    bk = op.backend
    out: dict[str, Any] = {}
    for name, x in arrays.items():
        if x is None:
            out[name] = None
            continue
        tail = tuple(x.shape[x.ndim - core_ndim[name]:])
        out[name] = bk.broadcast_to(x, batch + tail)[keys]
    return out


def to_device(op: Any, arrays: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``x.to(*args, **kwargs)`` for each torch tensor of a torch-backed operator."""
    if op.backend.name != "torch":
        raise TypeError(f"{type(op).__name__}.to() moves torch tensors; this operator holds "
                        f"{op.backend.name} arrays (build it from torch.from_numpy(...) first)")
    return {k: (None if x is None else x.to(*args, **kwargs)) for k, x in arrays.items()}


def resolvent_entries(op: Any, pairs: Any, z: Any, **solve_kwargs: Any) -> Any:
    """``G_ij = [(A - z I)^{-1}]_{ij}`` for the K pairs ``(i, j)``; shape ``batch + (K,)``.

    One solve with the distinct unit columns ``e_j`` as right-hand sides:
    ``O(N m)`` for ``m`` distinct ``j`` (``O(N)`` per column), exact and differentiable as
    ``solve`` is.
    """
    p = np.asarray(pairs)
    if p.ndim == 1 and p.shape == (2,):
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] != 2 or not (p.size == 0 or np.issubdtype(p.dtype, np.integer)):
        raise ShapeError(f"pairs must be integer pairs of shape (K, 2), got shape {p.shape} "
                         f"dtype {p.dtype}")
    n = op.n
    if p.size and (p.min() < 0 or p.max() >= n):
        raise IndexError(f"pairs must lie in 0 <= i, j < N = {n}")
    cols, inverse = np.unique(p[:, 1], return_inverse=True)
    bk = op.backend
    like = getattr(op, "diag", None)
    if like is None:
        like = op.tridiagonal.diag
    E = np.zeros((n, max(len(cols), 1)))
    E[cols, np.arange(len(cols))] = 1.0
    # broadcast to batch + (N, m): a matrix right-hand side whatever the batch rank
    Eb = np.broadcast_to(E, tuple(op.batch_shape) + E.shape)
    Eb = bk.astype(bk.asarray(np.ascontiguousarray(Eb), like=like), op.dtype)
    X = op.solve(Eb, z, **solve_kwargs)  # (..., N, m): the columns e_j of G
    rows = bk.asarray(p[:, 0].astype(np.int64), like=like)
    cidx = bk.asarray(inverse.astype(np.int64).reshape(-1), like=like)
    return X[..., rows, cidx]
