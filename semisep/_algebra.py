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
           "resolvent_entries", "tridiagonal_resolvent_entries"]


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


def _check_pairs(pairs: Any, n: int) -> Any:
    """``pairs`` as an integer NumPy array (K, 2) with entries in [0, N)."""
    p = np.asarray(pairs)
    if p.ndim == 1 and p.shape == (2,):
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] != 2 or not (p.size == 0 or np.issubdtype(p.dtype, np.integer)):
        raise ShapeError(f"pairs must be integer pairs of shape (K, 2), got shape {p.shape} "
                         f"dtype {p.dtype}")
    if p.size and (p.min() < 0 or p.max() >= n):
        raise IndexError(f"pairs must lie in 0 <= i, j < N = {n}")
    return p.astype(np.int64).reshape(-1, 2)


def resolvent_entries(op: Any, pairs: Any, z: Any, **solve_kwargs: Any) -> Any:
    """``G_ij = [(A - z I)^{-1}]_{ij}`` for the K pairs ``(i, j)``; shape ``batch + (K,)``.

    One solve with the distinct unit columns ``e_j`` as right-hand sides:
    ``O(N m)`` for ``m`` distinct ``j`` (``O(N)`` per column), exact and differentiable as
    ``solve`` is.  (:func:`tridiagonal_resolvent_entries` is the O(N + K) form for a
    :class:`~semisep.Tridiagonal`; it falls back to this one.)
    """
    n = op.n
    p = _check_pairs(pairs, n)
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
    rows = bk.asarray(p[:, 0], like=like)
    cidx = bk.asarray(inverse.astype(np.int64).reshape(-1), like=like)
    return X[..., rows, cidx]


def _host(x: Any) -> Any:
    """A NumPy view of a NumPy array or a CPU tensor (conjugate / negative bits resolved)."""
    if hasattr(x, "detach"):
        return x.detach().resolve_conj().resolve_neg().numpy()
    return np.asarray(x)


def _wants_grad(*xs: Any) -> bool:
    return any(bool(getattr(x, "requires_grad", False)) for x in xs)


def tridiagonal_resolvent_entries(op: Any, pairs: Any, z: Any, **solve_kwargs: Any) -> Any:
    """``G_ij = [(T - z I)^{-1}]_{ij}`` for a :class:`~semisep.Tridiagonal` in O(N + K).

    With ``A = T - z I`` (upper ``b_k = A[k, k+1]``, lower ``c_k = A[k+1, k]``), LU pivot
    reciprocals ``gL_k = 1/d_k`` (``d_0 = A_00``, ``d_k = A_kk - b_{k-1} c_{k-1} gL_{k-1}``) and UL
    ones ``gR_k`` (the same sweep from the bottom), the rows of ``A x = e_j`` away from ``j`` give::

        G_ij = G_jj prod_{k=i}^{j-1} (-b_k gL_k)          (i < j)
        G_ij = G_jj prod_{k=j}^{i-1} (-c_k gR_{k+1})      (i > j)

    ``G_jj``, ``gL`` and ``gR`` come from one call of the NumPy backend's
    ``resolvent_diagonal_with_pivots`` (both sweeps, O(N) per batch row); every product is then
    a difference of prefix sums of ``log|factor|`` (float64) with its phase (prefix sums of
    angles, complex) or sign (parity of negative factors, real), so nothing overflows or
    underflows before the final ``exp``; a zero factor (a zero off-diagonal: the chain
    decouples) is counted exactly and gives ``G_ij = 0`` across it.  Relative error about
    ``eps * max_k |sum_{m<k} log|factor_m|| `` beyond that of ``resolvent_diagonal``.

    Falls back to :func:`resolvent_entries` (one :meth:`solve`, exact and differentiable) where
    the formula is not used: a torch tensor that needs a gradient or is not on the CPU, another
    backend, an explicit ``method`` or ``return_info``, entries outside the kernels' safe range,
    a guarded pivot, or ``A`` singular to working precision (the solve then raises).

    Parameters
    ----------
    op : Tridiagonal with batch shape ``batch_op``
    pairs : integer array-like (K, 2), rows ``(i, j)`` with ``0 <= i, j < N``
    z : scalar or array broadcastable against ``batch_op``

    Returns
    -------
    array or tensor ``broadcast(batch_op, z.shape) + (K,)`` in the dtype of ``T - z I``.
    Cost O(B (N + K)) for B batch rows.
    """
    from . import tridiagonal_core as _tri
    from .backends import numpy as _npb

    n = op.n
    p = _check_pairs(pairs, n)
    bk = op.backend
    plain = set(solve_kwargs) <= {"method", "check_finite"} and solve_kwargs.get("method", "auto") == "auto"
    arrays = [x for x in (op.diag, op.lower, op.upper, z) if x is not None]
    on_cpu = all(getattr(getattr(x, "device", None), "type", "cpu") == "cpu" for x in arrays)
    if not (plain and bk.name in ("numpy", "torch") and on_cpu and not _wants_grad(*arrays)):
        return resolvent_entries(op, p, z, **solve_kwargs)
    rows = _tri.shifted_rows(op, z, solve_kwargs.get("check_finite", True))
    if rows.count == 0 or n < 2 or _tri._range_scale(rows) is not None:
        return resolvent_entries(op, p, z, **solve_kwargs)
    alpha, beta = _host(rows.alpha), _host(rows.beta)
    pivmin = _host(rows.pivmin).astype(np.abs(np.zeros((), alpha.dtype)).dtype)
    G, gL, gR, guarded, singular = _npb.resolvent_diagonal_with_pivots(alpha, beta, pivmin)
    if bool(np.any(guarded)) or bool(np.any(singular)):
        return resolvent_entries(op, p, z, **solve_kwargs)
    upper, lower = _host(rows.upper), _host(rows.lower)
    cdt = np.complex128 if np.iscomplexobj(G) else np.float64
    uL = -(upper.astype(cdt) * gL[:, :-1].astype(cdt))        # (B, N-1): G_ij = G_jj prod uL[i:j]
    uR = -(lower.astype(cdt) * gR[:, 1:].astype(cdt))         # (B, N-1): G_ij = G_jj prod uR[j:i]
    i, j = p[:, 0], p[:, 1]
    lo, hi, below = np.minimum(i, j), np.maximum(i, j), i > j
    out = _range_products(uL, uR, lo, hi, below, G[:, j].astype(cdt))
    out = out.astype(np.result_type(G.dtype)).reshape(tuple(rows.batch) + (len(p),))
    if bk.name == "torch":
        return bk.asarray(np.ascontiguousarray(out), like=op.diag)
    return out


def _range_products(uL: Any, uR: Any, lo: Any, hi: Any, below: Any, g: Any) -> Any:
    """``g * prod_{k=lo}^{hi-1} u_k`` per pair, ``u = uR`` where ``below`` else ``uL``; (B, K).

    Prefix sums (B, N) of ``log|u|``, of the zero count and of the phase (angle, or the count of
    negative factors for real ``u``); every range product is one difference of two of them."""
    B = uL.shape[0]
    zero_col = np.zeros((B, 1))
    out = np.empty((B, len(lo)), dtype=g.dtype)
    for sel, u in ((~below, uL), (below, uR)):
        if not sel.any():
            continue
        a, b = lo[sel], hi[sel]
        mag = np.abs(u)
        zero = mag == 0
        logm = np.log(np.where(zero, 1.0, mag))
        L = np.concatenate([zero_col, np.cumsum(logm, axis=1)], axis=1)
        Z = np.concatenate([zero_col, np.cumsum(zero, axis=1)], axis=1)
        with np.errstate(divide="ignore", under="ignore", over="ignore"):
            gs = g[:, sel]
            logabs = np.log(np.abs(gs)) + (L[:, b] - L[:, a])
            if np.iscomplexobj(u):
                ph = np.concatenate([zero_col, np.cumsum(np.angle(u), axis=1)], axis=1)
                val = np.exp(logabs + 1j * (np.angle(gs) + ph[:, b] - ph[:, a]))
            else:
                neg = np.concatenate([zero_col, np.cumsum(u < 0, axis=1)], axis=1)
                val = np.exp(logabs) * np.sign(gs) * (1.0 - 2.0 * ((neg[:, b] - neg[:, a]) % 2))
        out[:, sel] = np.where(Z[:, b] - Z[:, a] > 0, 0.0, val)
    return out
