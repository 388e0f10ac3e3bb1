"""The capacitance matrix of :class:`~semisep.TridiagonalPlusLowRank`,
``K = I_r + V^T (T - zI)^{-1} U`` (batch_shape + (r, r)): its formation, the singularity
certificate and the ill-conditioning warning, read on the host as they go or, where the
backend defers reads (a GPU), computed on the device and read in one host sync.

Certificate: ``K`` is formed with errors of order ``eps (1 + ||V^T X||_2)``, so where
``sigma_min(K) <= SINGULAR_FACTOR eps (1 + ||K - I||_2)`` (or ``cond_2(K) eps`` reaches
``1 / SINGULAR_FACTOR``) it cannot be told from a singular matrix, and neither can ``H - zI``
(``det(H - zI) = det(T - zI) det(K)``): :class:`SingularMatrixError`.  Warning: ``cond_2(K)
eps > 1e-3`` (:class:`IllConditionedWarning`, about ``log10 cond_2(K)`` digits lost in the
low-rank correction).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from . import _linalg as la
from .backends import SINGULAR_FACTOR
from .errors import IllConditionedWarning, SingularMatrixError

__all__ = ["CapacitanceChecks"]


class CapacitanceChecks:
    """The capacitance checks of :class:`~semisep.TridiagonalPlusLowRank` (a mixin: it reads
    the operator's ``_backend``, ``rank`` and ``V``)."""

    _backend: Any
    rank: Any
    V: Any

    def _capacitance(self, X: Any, what: str, z: Any, B: Any):
        """``(K, cond_2(K), K^{-1} B)`` for ``K = I_r + V^T X``; raises if K is singular.

        Where the backend defers reads (a GPU), ``K^{-1} B`` is solved before the capacitance
        check's read, without the solver's own host sync (``bk.linalg.solve_ex``), and its
        error flag is read with the check's flags; where it is set (K passed the check but
        its LU factorization failed), the solve runs again and raises what the solver raises,
        as on the host path, where the check comes first and the solve after it."""
        bk = self._backend
        K = self._capacitance_matrix(X)
        if bk.host_reads(K) is None:
            K, cond = self._check_capacitance(K, what, z, stacklevel=6)
            return K, cond, la.solve(bk, K, B)
        sol, ok = bk.linalg.solve_ex(K, B)
        K, cond, (ok_h,) = self._check_capacitance(K, what, z, stacklevel=6, flags=(ok,))
        return K, cond, sol if ok_h else la.solve(bk, K, B)

    def _capacitance_matrix(self, X: Any) -> Any:
        """``K = I_r + V^T X``, (..., r, r)."""
        bk = self._backend
        return la.eye(bk, self.rank, X.dtype, like=X) + la.matmul_mixed(bk, la.mT(self.V), X, X.dtype)

    def _check_capacitance(self, K: Any, what: str, z: Any, stacklevel: int = 3, flags: tuple = ()):
        """``(K, cond_2(K))``; raises if K is singular to working precision, warns if it is
        ill-conditioned (``stacklevel`` names the public method's caller).

        The singular values are computed on the host (NumPy, float64 results) from a host copy
        of the r x r matrices.  Where the backend defers reads (:meth:`Backend.host_reads`: a
        GPU), that copy travels with the caller's 0-d ``flags`` in one host sync
        (:meth:`HostReads.settle_with`): a singular value decomposition on the device would
        sync by itself (it reads its convergence codes on the host).  Inside a spanning scope
        (a call read once, :meth:`TridiagonalPlusLowRank._one_read`) this read is the call's
        one: it also checks every answer its tridiagonal calls took without a read.  Returns
        ``(K, cond, flag_values)`` where ``flags`` are given (a None flag reads False)."""
        bk = self._backend
        reads = bk.host_reads(K) if K.shape[-1] else None
        if reads is not None:
            with reads:
                Kh, values = reads.settle_with(K, *flags)
        else:
            Kh, values = np.asarray(bk.to_numpy(K)), [bool(f) for f in flags]
        out = self._check_capacitance_host(K, Kh, what, z, stacklevel + 1)
        return (*out, values) if flags else out

    def _check_capacitance_host(self, K: Any, Kh: np.ndarray, what: str, z: Any, stacklevel: int):
        """:meth:`_check_capacitance` on ``Kh``, ``K``'s values on the host: ``(K, cond)``."""
        bk = self._backend
        r = self.rank
        s = _singular_values(Kh)
        cond = _condition_number(s)
        eps = bk.eps(K.dtype)
        # the certificate: K = I + V^T X is formed with errors of order eps (1 + ||V^T X||_2),
        # so where sigma_min(K) <= SINGULAR_FACTOR eps (1 + ||K - I||_2) it cannot be told from
        # a singular matrix, and neither can H - zI (det(H - zI) = det(T - zI) det(K)); this
        # also catches r = 1, where cond_2(K) is always 1
        rel = _relative_cond(Kh, s)
        bad = ~(np.maximum(cond, rel) * eps < 1.0 / SINGULAR_FACTOR)
        batch = tuple(K.shape[:-2])
        loc = ""
        if batch and bad.any():
            idx = tuple(int(i) for i in np.argwhere(np.atleast_1d(bad))[0])
            loc = f" at batch index {idx}"
        zs = z if isinstance(z, (bool, int, float, complex)) else "the given z"
        raise_or_warn(what, r, bad, cond, rel, eps, zs, loc, stacklevel + 1)
        return K, cond


def raise_or_warn(what: str, r: int, bad: Any, cond: Any, rel: Any, eps: float, zdesc: Any,
                  loc: str, stacklevel: int) -> None:
    """The capacitance check's verdict on host values (every backend): raise
    :class:`SingularMatrixError` where ``bad`` (the certificate failed anywhere; ``loc`` names
    where), else warn :class:`IllConditionedWarning` where the worst ``cond_2(K) eps`` exceeds
    1e-3 (``stacklevel`` as :func:`warnings.warn`'s, seen from here).  ``cond``, ``rel``,
    ``bad``: NumPy arrays of the batch shape."""
    if bad.any():
        raise SingularMatrixError(
            f"{what}: the capacitance matrix K = I_r + V^T (T - zI)^{{-1}} U (r = {r}) is "
            f"singular to working precision{loc} (z = {zdesc}, cond_2(K) = "
            f"{float(np.max(cond)):.3g}, (1 + ||K - I||_2) / sigma_min(K) = "
            f"{float(np.max(rel)):.3g}); since det(H - zI) = det(T - zI) det(K), H - zI "
            "is singular (or too close to it for Woodbury in this dtype)"
        )
    worst = float(np.max(cond)) if cond.size else 1.0
    if worst * eps > 1e-3:
        warnings.warn(
            f"{what}: ill-conditioned capacitance matrix, cond_2(K) = {worst:.3g}; expect "
            f"about {np.log10(worst):.0f} lost digits in the low-rank correction",
            IllConditionedWarning, stacklevel=stacklevel,
        )


def _sub(info: bool, fn: Any, /, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``fn(*args, **kwargs)``, a call of the tridiagonal part, as ``(result, PivotInfo)``; the
    :class:`PivotInfo` (a host copy of the pivot counts: a host sync on a GPU) only where the
    caller returns it (``info``), else None."""
    out = fn(*args, return_info=info, **kwargs)
    return out if info else (out, None)


def _host_cond(bk, cond: Any) -> np.ndarray:
    """``cond`` as a NumPy float64 array (from the device where :meth:`_check_capacitance`
    left it there)."""
    return cond if isinstance(cond, np.ndarray) else np.asarray(bk.to_numpy(cond), dtype=np.float64)


def _singular_values(Kh: np.ndarray) -> np.ndarray:
    """The singular values of each r x r matrix of ``Kh`` (NumPy, ``(..., r, r)``), descending,
    as float64 ``(..., r)``; NaN for a matrix with a non-finite entry (LAPACK's SVD does not
    converge on NaN: the certificate then fails, as for a singular matrix)."""
    finite = np.isfinite(Kh).all(axis=(-2, -1))
    safe = np.where(finite[..., None, None], Kh, 0)
    s = np.linalg.svd(safe, compute_uv=False).astype(np.float64)
    return np.where(finite[..., None], s, np.nan)


def _condition_number(s: np.ndarray) -> np.ndarray:
    """``cond_2 = sigma_max / sigma_min`` from the singular values ``s (..., r)``; ``inf``
    where ``sigma_min`` is exactly 0; 1 for r = 0."""
    if s.shape[-1] == 0:
        return np.ones(s.shape[:-1])
    smax, smin = s[..., 0], s[..., -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(smin > 0, smax / np.where(smin > 0, smin, 1.0), np.inf)


def _relative_capacitance_cond(bk, K: Any) -> np.ndarray:
    """:func:`_relative_cond` of ``K`` on the host (NumPy float64; the Dask path's check)."""
    Kh = np.asarray(bk.to_numpy(K))
    return _relative_cond(Kh, _singular_values(Kh))


def _relative_cond(Kh: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``(1 + ||K - I||_2) / sigma_min(K)`` per r x r matrix (float64; inf where K is exactly
    singular) from ``Kh`` and its singular values ``s``: ``sigma_min(K)`` measured against
    the size of what K was formed from.  It bounds ``cond_2(K)`` from above."""
    r = Kh.shape[-1]
    if r == 0:
        return np.ones(Kh.shape[:-2])
    smin = s[..., -1]
    dev = _singular_values(Kh - np.eye(r, dtype=Kh.dtype))[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(smin > 0, (1.0 + dev) / np.where(smin > 0, smin, 1.0), np.inf)
