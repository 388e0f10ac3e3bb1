"""Dense -> structured: ``factorize(H)`` finds ``H ~ T + U V^T``; ``check_factorization`` judges it.

The problem: given a dense ``H`` (..., N, N), find a tridiagonal ``T`` and a rank-r ``L = U V^T``
minimising ``||H - T - L||_F``.  Block coordinate descent (an alternating projection):

    T_0 = band(H),          L_0 = svd_r(H - T_0)           (the one-step method)
    T_k = band(H - L_{k-1}), L_k = svd_r(H - T_k)           k = 1, 2, ...

where ``band`` keeps the three central diagonals (the exact minimiser over T for fixed L) and
``svd_r`` is the rank-r truncated SVD (the exact minimiser over L for fixed T, Eckart-Young).
The residual ``rho_k = ||H - T_k - L_k||_F`` therefore never increases (with the exact SVD);
the loop stops when its relative decrease ``(rho_{k-1} - rho_k)/rho_{k-1}`` falls below ``tol``,
when ``rho_k <= 10 eps ||H||_F`` (rounding level), or after ``max_iter`` iterations.  A matrix
that truly is tridiagonal plus rank r is recovered to rounding error (the one-step method
cannot: ``band(H)`` keeps the band of ``U V^T`` in ``T`` and the SVD then sees a matrix of full
rank).  A matrix that is not of this form (e.g. a dense Gaussian matrix) gets the best the
iteration finds, and :func:`check_factorization` reports its error honestly (near 1 for a
Gaussian matrix).

For large N, ``svd_r`` is the randomized range finder of Halko, Martinsson & Tropp (2011,
Alg. 4.4 with Alg. 5.1): ``Y = M Omega`` for a Gaussian ``Omega`` of ``r + oversample`` columns,
``power_iters`` subspace iterations with re-orthonormalisation, ``B = Q^H M``, SVD of ``B``:
O(N^2 (r + p)(2 q + 2)) per iteration instead of the O(N^3) of a dense SVD.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import _linalg as la
from ._validation import as_array, check_int
from ._validation import check_finite as _check_finite_arrays
from .backends import backend_for
from .errors import NonFiniteError, ShapeError
from .lowrank import TridiagonalPlusLowRank
from .tridiagonal import Tridiagonal

__all__ = [
    "factorize", "check_factorization", "FactorizationReport", "FactorizationHistory",
    "RANDOMIZED_THRESHOLD",
]

#: ``method="auto"`` uses the dense SVD for N <= RANDOMIZED_THRESHOLD, the randomized one above.
RANDOMIZED_THRESHOLD = 512


@dataclass(frozen=True)
class FactorizationHistory:
    """How :func:`factorize` ran (stored on the result as ``op.factorization``).

    ``iterations`` counts SVDs (1 = the one-step method); ``residuals`` holds
    ``||H - T_k - L_k||_F / ||H||_F`` for every iteration (the accepted one last, unless the
    last one rose and was discarded); ``stop_reason`` is one of ``"tol"``, ``"rounding"``,
    ``"max_iter"``, ``"increase"`` (randomized SVD noise: the previous iterate is kept),
    ``"rank"`` (rank 0 or rank >= N: one step is already optimal).
    """

    iterations: int
    residuals: list = field(default_factory=list)
    method: str = ""
    stop_reason: str = ""


@dataclass(frozen=True)
class FactorizationReport:
    """How well a structured operator ``op`` represents a dense ``H``.

    Attributes
    ----------
    relative_error : float
        ``||H - op||_F / ||H||_F`` (for a batch: the worst element).  ``0`` if both are zero,
        ``inf`` if ``H = 0`` and ``op != 0``.
    max_abs_error : float
        ``max_ij |H_ij - op_ij|`` over the batch.
    spectral_error : float
        An *estimate* of ``||H - op||_2 / ||H||_2``: each norm by ``power_iters`` steps of the
        power iteration on ``M^H M`` from a fixed random start (each estimate is a lower bound
        of its norm, so the ratio is an estimate, not a bound).  Worst batch element.
    rank : int
    iterations : int or None
        From :func:`factorize` when ``op`` came from it, else None.
    passes : bool
        ``relative_error <= rtol``.
    rtol : float
    """

    relative_error: float
    max_abs_error: float
    spectral_error: float
    rank: int
    iterations: int | None
    passes: bool
    rtol: float

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------
# the factorization
# ------------------------------------------------------------------------------------------------
def factorize(
    H: Any, rank: int | None = None, *, method: str = "auto", max_iter: int = 200,
    tol: float = 1e-4, oversample: int = 10, power_iters: int = 2, seed: int = 0,
    check_finite: bool = True, return_report: bool = False,
) -> Any:
    """Approximate a dense ``H`` (..., N, N) by ``T + U V^T`` (alternating projection).

    Parameters
    ----------
    H : array (..., N, N)
        NumPy array or torch tensor; the result lives on the same backend and in ``H``'s dtype.
    rank : int, optional
        r; default ``ceil(log2 N)`` (0 for N = 1).  ``0 <= r <= N``.
    method : "auto" | "svd" | "randomized"
        The rank-r projection.  ``"auto"``: ``"svd"`` (dense, exact) for
        ``N <= RANDOMIZED_THRESHOLD = 512``, ``"randomized"`` above.
    max_iter : int
        At most this many SVDs (``max_iter = 1`` is the one-step method).
    tol : float
        Stop when the residual's relative decrease in one iteration falls below ``tol``.
    oversample, power_iters, seed
        Randomized SVD: ``r + oversample`` probe vectors, ``power_iters`` subspace iterations,
        Gaussian probes from ``numpy.random.default_rng(seed + k)`` at iteration k.
    return_report : bool
        Also return :func:`check_factorization`'s report (O(N^2) extra work).

    Returns
    -------
    TridiagonalPlusLowRank (and a FactorizationReport).  ``U = U_r sqrt(s)``,
    ``V = conj(Vh_r)^H sqrt(s) = Vh_r^T sqrt(s)`` from the SVD ``U_r diag(s) Vh_r`` (balanced
    factors); ``op.factorization`` is a :class:`FactorizationHistory`.

    Cost per iteration: O(N^3) for ``"svd"``, O(N^2 (r + oversample)(2 power_iters + 2)) for
    ``"randomized"``, plus O(N^2 r) to form the residual.
    """
    bk = backend_for(H)
    H = as_array(bk, "H", H, scalar_ok=False)
    if H.ndim < 2 or H.shape[-1] != H.shape[-2]:
        raise ShapeError(f"H has shape {tuple(H.shape)}: it must be square, (..., N, N)")
    n = int(H.shape[-1])
    if n < 1:
        raise ShapeError(f"H has shape {tuple(H.shape)}: N must be at least 1")
    H = bk.astype(H, bk.result_dtype(H))
    if check_finite:
        _check_finite_arrays(bk, H=H)
    if rank is None:
        rank = math.ceil(math.log2(n)) if n > 1 else 0
    rank = check_int("rank", rank, 0, n, maximum_text=f"N = {n}")
    oversample = check_int("oversample", oversample, 0)
    power_iters = check_int("power_iters", power_iters, 0)
    max_iter = check_int("max_iter", max_iter, 1)
    if method not in ("auto", "svd", "randomized"):
        raise ValueError(f"method={method!r}; choose 'auto', 'svd' or 'randomized'")
    if method == "auto":
        method = "svd" if n <= RANDOMIZED_THRESHOLD else "randomized"
    if max_iter < 1:
        raise ValueError(f"max_iter = {max_iter} must be at least 1")
    k = _range_exponent(bk, H)
    if k:  # entries far from 1: factorize 2^k H (exact), whose norms and products stay in range
        f1 = bk.asarray(np.asarray(math.ldexp(1.0, k // 2), np.finfo(H.dtype).dtype), like=H)
        f2 = bk.asarray(np.asarray(math.ldexp(1.0, k - k // 2), np.finfo(H.dtype).dtype), like=H)
        op_s = factorize(H * f1 * f2, rank, method=method, max_iter=max_iter, tol=tol,
                         oversample=oversample, power_iters=power_iters, seed=seed, check_finite=False)
        Ts = op_s.tridiagonal
        T = Tridiagonal(Ts.diag / f1 / f2, Ts.lower / f1 / f2, Ts.upper_ / f1 / f2, check_finite=False)
        op = TridiagonalPlusLowRank(T, op_s.U / f1 / f2, op_s.V, check_finite=False)
        op.factorization = op_s.factorization
        return (op, check_factorization(H, op)) if return_report else op

    def svd_r(M, k):
        if method == "svd":
            return _svd_truncated(bk, M, rank)
        return _randomized_svd(bk, M, rank, oversample, power_iters, seed + k, like=H)

    norm_h = _total_norm(bk, H)
    floor = 10.0 * bk.eps(H.dtype) * norm_h
    T = _band(bk, H)
    Uf, Vf = svd_r(H - T.to_dense(), 0)
    res = _total_norm(bk, H - T.to_dense() - Uf @ la.mT(Vf))
    rel = [res / norm_h if norm_h > 0 else 0.0]
    it, reason = 1, "max_iter"
    if rank == 0 or rank >= n:
        reason = "rank"  # band only, or a rank that holds all of H - band(H) exactly
    while reason == "max_iter" and it < max_iter:
        if res <= floor:
            reason = "rounding"
            break
        T_new = _band(bk, H - Uf @ la.mT(Vf))
        Td = T_new.to_dense()
        U_new, V_new = svd_r(H - Td, it)
        res_new = _total_norm(bk, H - Td - U_new @ la.mT(V_new))
        it += 1
        rel.append(res_new / norm_h)
        if res_new > res:
            reason = "increase"
            break
        decrease = (res - res_new) / res
        T, Uf, Vf, res = T_new, U_new, V_new, res_new
        if res <= floor:
            reason = "rounding"
        elif decrease < tol:
            reason = "tol"
    op = TridiagonalPlusLowRank(T, Uf, Vf, check_finite=False)
    op.factorization = FactorizationHistory(it, rel, method, reason)
    if return_report:
        return op, check_factorization(H, op)
    return op


def _range_exponent(bk, H: Any) -> int:
    """0 where H's largest entry lies in ``[2^-100, 2^100]`` (or H is zero), else ``k`` with
    ``2^k max|H_ij|`` in ``[1/2, 1)``: the sums of squares and products of the iteration stay
    normal numbers for ``2^k H``."""
    m = np.asarray(bk.to_numpy(bk.amax_abs(H.detach() if hasattr(H, "detach") else H, axis=-1)))
    big = float(np.max(m, initial=0.0))
    if big == 0 or not math.isfinite(big) or 2.0 ** -100 <= big <= 2.0 ** 100:
        return 0
    return -math.frexp(big)[1]


def _band(bk, M: Any) -> Tridiagonal:
    """The tridiagonal part of M (non-symmetric storage)."""
    return Tridiagonal(
        la.diagonal(bk, M, 0), la.diagonal(bk, M, -1), la.diagonal(bk, M, 1), check_finite=False
    )


def _total_norm(bk, M: Any) -> float:
    """Frobenius norm over the whole batch, as a Python float."""
    f = np.asarray(bk.to_numpy(la.norm_fro(bk, M.detach() if hasattr(M, "detach") else M)))
    return float(np.sqrt(np.sum(f.astype(np.float64) ** 2)))


def _balanced(bk, U, s, Vh, r):
    sq = s[..., :r] ** 0.5
    sq = bk.astype(sq, U.dtype)
    return U[..., :, :r] * sq[..., None, :], la.mT(Vh[..., :r, :]) * sq[..., None, :]


def _svd_truncated(bk, M: Any, r: int):
    """Rank-r truncated SVD ``M ~ U V^T`` (exact, dense); balanced factors (N, r)."""
    U, s, Vh = la.svd(bk, M)
    return _balanced(bk, U, s, Vh, r)


def _randomized_svd(bk, M: Any, r: int, oversample: int, power_iters: int, seed: int, like):
    """Halko-Martinsson-Tropp: range finder with subspace iteration, then a small SVD."""
    n = int(M.shape[-1])
    k = min(r + oversample, n)
    Omega = la.randn(bk, (n, k), M.dtype, like=like, seed=seed)
    Q = la.qr(bk, M @ Omega)
    Mh = la.conj(bk, la.mT(M))
    for _ in range(power_iters):
        Q = la.qr(bk, Mh @ Q)
        Q = la.qr(bk, M @ Q)
    B = la.conj(bk, la.mT(Q)) @ M  # (..., k, N)
    Ub, s, Vh = la.svd(bk, B)
    return _balanced(bk, Q @ Ub, s, Vh, r)


def _one_step_factorize(H: Any, rank: int) -> TridiagonalPlusLowRank:
    """The original system's method: ``T = band(H)``, ``U V^T = svd_r(H - band(H))``, once.

    Private, kept only so a test can show what the iteration adds.  It cannot recover a matrix
    that is exactly tridiagonal plus rank r (the band of ``U V^T`` is left in ``T``).
    """
    return factorize(H, rank, method="svd", max_iter=1)


# ------------------------------------------------------------------------------------------------
# the judge
# ------------------------------------------------------------------------------------------------
def check_factorization(
    H: Any, op: Any, rtol: float = 1e-2, *, power_iters: int = 30, seed: int = 0
) -> FactorizationReport:
    """Compare a dense ``H`` (..., N, N) with a structured ``op`` (anything with ``to_dense``).

    Computed in float64 / complex128 NumPy on the dense difference ``D = H - op.to_dense()``
    (O(N^2) memory).  See :class:`FactorizationReport` for the fields; ``passes`` is
    ``relative_error <= rtol`` (never True where an error is NaN).  The norms are taken on
    ``D`` and ``H`` divided by their largest entry (a power of two), so they neither overflow
    nor underflow.  Raises :class:`~semisep.errors.NonFiniteError` if ``H`` or ``op``'s dense
    form holds NaN or inf.
    """
    if not callable(getattr(op, "to_dense", None)):
        raise TypeError(
            f"op must be a structured operator (anything with to_dense(), e.g. the result of "
            f"semisep.factorize), got {type(op).__name__}; for two dense arrays compare "
            "np.linalg.norm(H - M) / np.linalg.norm(H)"
        )
    Hn = _to_numpy(H)
    On = _to_numpy(op.to_dense())
    if Hn.shape[-2:] != On.shape[-2:]:
        raise ShapeError(f"H has shape {Hn.shape} but op has shape {On.shape}")
    dt = np.result_type(Hn, On, np.float64)
    Hn, On = Hn.astype(dt), On.astype(dt)
    for name, M in (("H", Hn), ("op.to_dense()", On)):
        if not np.isfinite(M).all():
            raise NonFiniteError(f"check_factorization: {name} holds NaN or inf entries")
    # one power of two for both (exact): H - op neither overflows nor underflows, and the norms'
    # sums of squares of the scaled entries stay in range; the ratios are unchanged
    big = max(float(np.max(np.abs(Hn), initial=0.0)), float(np.max(np.abs(On), initial=0.0)))
    e = 0 if big == 0 else math.frexp(big)[1]
    Hn, On = _ldexp(Hn, -e), _ldexp(On, -e)
    D = Hn - On
    batch = np.broadcast_shapes(Hn.shape[:-2], On.shape[:-2])
    D = np.broadcast_to(D, batch + D.shape[-2:]).reshape((-1,) + D.shape[-2:])
    Hb = np.broadcast_to(Hn, batch + Hn.shape[-2:]).reshape((-1,) + Hn.shape[-2:])
    rel, spec = 0.0, 0.0
    for d, h in zip(D, Hb, strict=True):
        nd, nh = float(np.linalg.norm(d)), float(np.linalg.norm(h))
        rel = _worse(rel, _ratio(nd, nh))
        sd = _power_norm(d, power_iters, seed)
        sh = _power_norm(h, power_iters, seed)
        spec = _worse(spec, _ratio(sd, sh))
    with np.errstate(over="ignore"):
        max_abs = float(np.ldexp(np.max(np.abs(D)), e)) if D.size else 0.0
    hist = getattr(op, "factorization", None)
    iterations = getattr(hist, "iterations", None)
    rank = int(getattr(op, "rank", 0))
    return FactorizationReport(
        relative_error=float(rel), max_abs_error=max_abs, spectral_error=float(spec),
        rank=rank, iterations=iterations, passes=bool(rel <= rtol), rtol=float(rtol),
    )


def _ldexp(M: np.ndarray, k: int) -> np.ndarray:
    """``M 2^k`` entrywise, exact (no ``2^k`` formed, so any exponent k)."""
    if np.iscomplexobj(M):
        return np.ldexp(M.real, k) + 1j * np.ldexp(M.imag, k)
    return np.ldexp(M, k)


def _worse(acc: float, x: float) -> float:
    """``max(acc, x)`` that keeps a NaN (``max(0.0, nan)`` is 0.0)."""
    return x if (math.isnan(x) or x > acc) else acc


def _ratio(a: float, b: float) -> float:
    if b > 0:
        return float(a / b)
    return 0.0 if a == 0 else float("inf")


def _power_norm(M: np.ndarray, iters: int, seed: int) -> float:
    """Estimate ``||M||_2`` by the power iteration on ``M^H M`` (a lower bound)."""
    n = M.shape[-1]
    rng = np.random.default_rng(seed)
    x: np.ndarray = np.asarray(rng.standard_normal(n))
    if np.iscomplexobj(M):
        x = x + 1j * rng.standard_normal(n)
    nx = np.linalg.norm(x)
    if nx == 0:
        return 0.0
    x = x / nx
    est = 0.0
    for _ in range(max(iters, 1)):
        y = M @ x
        est = float(np.linalg.norm(y))
        w = M.conj().T @ y
        nw = np.linalg.norm(w)
        if nw == 0:
            break
        x = w / nw
    return est


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)
