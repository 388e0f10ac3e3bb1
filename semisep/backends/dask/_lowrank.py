"""Woodbury for :class:`~semisep.TridiagonalPlusLowRank` on dask arrays: lazy results.

With ``A = T - z I`` and the factors ``U, V (..., N, r)`` (notation of :mod:`semisep.lowrank`)::

    X = A^{-1} U, Y = A^{-T} V      chunked tridiagonal solves with r right-hand sides
    K = I_r + V^T X                  (..., r, r): per chunk V_c^T X_c, then a tree reduction
    diag((H - zI)^{-1}) = G - rowsum(X * (K^{-1} Y^T)^T)     row-wise per chunk
    log det(H - zI) = log det A + log det K
    (H - zI)^{-1} b = y - X K^{-1} (V^T y),  [y, X] = A^{-1} [b, U]   (one solve, k + r columns)

Every task reads one chunk of ``U``, ``V``, ``X``, ``Y`` (``O(C r)``) or the batch's small
``K`` blocks; nothing of length N is gathered.  The capacitance check of the NumPy path (a ``K``
singular to working precision raises :class:`~semisep.errors.SingularMatrixError`, an
ill-conditioned one warns :class:`~semisep.errors.IllConditionedWarning`) runs in the task that
finalises ``K``: at compute time, and the warning is issued where that task runs (the calling
process under the threaded or synchronous scheduler, a worker's log on a cluster).

Not available on dask arrays: ``return_info=True`` (its :class:`~semisep.lowrank.WoodburyInfo`
holds values, the condition numbers and guard counts, that exist only after compute; compute the
result, or use NumPy arrays), and the fused Woodbury kernels (whole-chain sweeps).  The
results' dtype is that of the NumPy path, except that ``logdet`` is complex (imaginary part 0 or
pi for a real problem), as :meth:`semisep.Tridiagonal.logdet` on dask arrays.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from ...errors import BackendError


def _no_info(return_info: bool, what: str) -> None:
    if return_info:
        raise BackendError(
            f"TridiagonalPlusLowRank.{what}(return_info=True) is not available on dask arrays: "
            "the WoodburyInfo holds values (condition numbers, guard counts) known only after "
            "compute; call it with return_info=False, or on NumPy arrays"
        )


def _checked(K: np.ndarray, what: str, zdesc: str) -> np.ndarray:
    """``K (..., r, r)`` unchanged after the NumPy path's capacitance check (raise where singular
    to working precision, warn where ill-conditioned)."""
    from ..._linalg import condition_number
    from ..._lowrank_capacitance import _relative_capacitance_cond, raise_or_warn
    from ...backends import SINGULAR_FACTOR, backend_for

    nb = backend_for(K)
    cond = condition_number(nb, K)
    rel = _relative_capacitance_cond(nb, K)
    eps = float(np.finfo(K.dtype).eps)
    bad = ~(np.maximum(cond, rel) * eps < 1.0 / SINGULAR_FACTOR)
    raise_or_warn(what, K.shape[-1], bad, cond, rel, eps, zdesc, "", stacklevel=3)
    return K


def _zdesc(z: Any) -> str:
    return str(z) if isinstance(z, (bool, int, float, complex)) else "the given z"


def _bilinear(P: Any, Q: Any) -> Any:
    """``P^T Q`` for ``P (..., N, p)``, ``Q (..., N, q)`` (transpose, no conjugate): per chunk
    of N a ``(p, q)`` block, then dask's tree reduction over the chunks; ``(..., p, q)`` in one
    block per row block."""
    out = (P[..., :, :, None] * Q[..., :, None, :]).sum(axis=-3)
    return out.rechunk({out.ndim - 2: -1, out.ndim - 1: -1})


def _capacitance(H: Any, X: Any, batch: tuple, dtype: Any, what: str, z: Any) -> Any:
    """``K = I_r + V^T X``, checked at compute time."""
    r = H.rank
    Vb = H._low(H.V, batch, dtype)
    K = _bilinear(Vb, X) + np.eye(r, dtype=X.dtype)
    return K.map_blocks(_checked, what, _zdesc(z), dtype=K.dtype)


def _matching(x: Any, like: Any) -> Any:
    """``x`` rechunked along the batch axes as ``like`` (its last two axes whole)."""
    return x.rechunk(like.chunks[:-2] + (-1, -1)) if x.ndim == like.ndim else x


def _times_small(P: Any, M: Any) -> Any:
    """``P @ M`` for ``P (..., N, p)`` chunked along N and a small ``M (..., p, q)``: per chunk
    of N, ``(C, p) @ (p, q)`` (written as a product and a sum over ``p``, so that no task
    reads more than one chunk of ``P``)."""
    return (P[..., :, :, None] * M[..., None, :, :]).sum(axis=-2)


def resolvent_diagonal(H: Any, z: Any, method: str, check_finite: bool, return_info: bool) -> Any:
    """``diag((H - zI)^{-1})`` lazily (see the module docstring)."""
    _no_info(return_info, "resolvent_diagonal")
    batch, dtype = H._prepare(z)
    T, r = H.tridiagonal, H.rank
    G = T.resolvent_diagonal(z, method=method, check_finite=check_finite)
    if r == 0:
        return G + da.zeros(batch + (H._n,), dtype=G.dtype)
    Ub, Vb = H._low(H.U, batch, dtype), H._low(H.V, batch, dtype)
    if T.is_symmetric_storage:  # A^T = A: one pass for [U, V]
        XY = T.solve(da.concatenate([Ub, Vb], axis=-1), z, method=method, check_finite=False)
        X, Y = XY[..., :r], XY[..., r:]
    else:
        X = T.solve(Ub, z, method=method, check_finite=False)
        Y = T.T.solve(Vb, z, method=method, check_finite=False)
    K = _capacitance(H, X, batch, dtype, "resolvent_diagonal", z)
    Kinv = K.map_blocks(np.linalg.inv, dtype=K.dtype)
    W = _times_small(Y, _matching(Kinv, Y).swapaxes(-1, -2))  # W = Y K^{-T}
    return G - (X * W).sum(axis=-1)


def logdet(H: Any, z: Any, method: str, check_finite: bool, return_info: bool) -> Any:
    """``log det(H - zI)`` lazily, complex (see the module docstring)."""
    _no_info(return_info, "logdet")
    batch, dtype = H._prepare(z)
    T, r = H.tridiagonal, H.rank
    ldT = T.logdet(z, method=method, check_finite=check_finite)
    if r == 0:
        return ldT + da.zeros(batch, dtype=ldT.dtype)
    X = T.solve(H._low(H.U, batch, dtype), z, method=method, check_finite=False)
    K = _capacitance(H, X, batch, dtype, "logdet", z)
    cdt = ldT.dtype

    def slogdet(k):
        sign, logabs = np.linalg.slogdet(k)
        return (logabs + 1j * np.angle(sign)).astype(cdt)[..., None, None]

    ldK = K.map_blocks(slogdet, dtype=cdt, chunks=K.chunks[:-2] + ((1,), (1,)))[..., 0, 0]
    phase = np.angle(np.exp(1j * (ldT.imag + ldK.imag)))  # wrapped into (-pi, pi]
    return (ldT.real + ldK.real + 1j * phase).astype(cdt)


def solve(H: Any, b: Any, z: Any, method: str, check_finite: bool, return_info: bool) -> Any:
    """``(H - zI)^{-1} b`` lazily (see the module docstring); ``b`` as in
    :meth:`semisep.TridiagonalPlusLowRank.solve`."""
    from ..._validation import as_array, split_rhs

    _no_info(return_info, "solve")
    bk, T, r = H._backend, H.tridiagonal, H.rank
    b = as_array(bk, "b", b, like=T.diag, scalar_ok=False)  # a NumPy b: chunked along N as T
    is_vec, b_batch, k = split_rhs(b, len(H._batch_shape), H._n)
    batch, dtype = H._prepare(z, extra={"b": b_batch}, extra_dtype=b)
    bb = H._low(b[..., None] if is_vec else b, batch, dtype)
    if r == 0:
        x = T.solve(bb, z, method=method, check_finite=check_finite)
    else:
        sol = T.solve(da.concatenate([bb, H._low(H.U, batch, dtype)], axis=-1), z, method=method,
                      check_finite=check_finite)
        y, X = sol[..., :k], sol[..., k:]
        K = _capacitance(H, X, batch, dtype, "solve", z)
        Vty = _matching(_bilinear(H._low(H.V, batch, dtype), y), K)
        w = da.map_blocks(np.linalg.solve, K, Vty, dtype=np.result_type(K.dtype, Vty.dtype),
                          chunks=Vty.chunks)
        x = y - _times_small(X, _matching(w, X))
    return x[..., 0] if is_vec else x
