"""The fused Woodbury path of :class:`~semisep.TridiagonalPlusLowRank`: where the backend has
fused kernels (NumPy; torch on CPU tensors none of which needs a gradient; ``method`` "auto" or
"sequential"), ``X = A^{-1} U`` and ``K = I_r + V^T X`` come from one forward pass over the
LU pivots of ``A = T - zI`` (the products summed block by block while the sweeps run), and the
resolvent diagonal's correction ``sum_k X_ik W_ik`` from one more pair of sweeps, without an
(N, r) solve.  Each helper returns None where the composed path must run instead (a guarded
pivot, entries outside the kernels' safe range, no fused kernels).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _linalg as la
from ._validation import broadcast_shapes
from .tridiagonal_core import _raise_if_singular, _range_scale, _with_info
from .tridiagonal_core import shifted_rows as _shifted_rows

__all__ = ["FusedWoodbury"]


class FusedWoodbury:
    """The fused Woodbury helpers of :class:`~semisep.TridiagonalPlusLowRank` (a mixin: it
    reads the operator's ``_backend``, ``tridiagonal``, ``U``, ``V``, ``rank``, ``_n``,
    ``_batch_shape`` and its capacitance checks)."""

    _backend: Any
    tridiagonal: Any
    U: Any
    V: Any
    rank: Any
    _n: int
    _batch_shape: tuple[int, ...]
    _check_capacitance: Any

    def _resolvent_diagonal_fused(self, z: Any, batch: tuple[int, ...], method: str, check_finite: bool):
        """``(diag, pivots, cond_2(K))`` by the backend's fused Woodbury kernels
        (:mod:`semisep.backends`), diag of shape ``batch + (N,)``; None where a pivot of the
        solves was guarded (the caller then takes the composed path, whose solves refine).
        On a backend that ``takes_shift`` (NumPy) ``T - zI`` is never formed: ``G_ii`` and the
        forward sweeps read T's own diagonal and off-diagonals (real for a real T) and
        subtract z in the kernel (no alpha, no complex copies of b and c).  ``G`` keeps
        ``T``'s own, smaller batch where U or V carry batch dimensions that T and z lack."""
        bk = self._backend
        n, r = self._n, self.rank
        T = self.tridiagonal
        rows = _shifted_rows(T, z, check_finite, extra={"operator": self._batch_shape})
        if rows.batch == broadcast_shapes({"T": T.batch_shape, "z": tuple(np.shape(z))}):
            if bk.takes_shift:  # the shift form, as Tridiagonal.resolvent_diagonal (real products)
                G, guarded, singular = bk.resolvent_diagonal_shifted(
                    rows.diag, rows.shift, rows.beta_native, rows.pivmin, method=method)
            else:
                G, guarded, singular = bk.resolvent_diagonal(
                    rows.alpha, rows.beta, rows.pivmin, method=method)
            ran = bk.kernel_ran(method)
            _raise_if_singular(bk, singular, rows.batch, "resolvent_diagonal", z)
            _, pG = _with_info(None, rows, guarded, method, True, ran=ran)
            G = G.reshape(batch + (n,))
            own_G = True  # the kernel's new array, of the full batch
        else:
            G, pG = T.resolvent_diagonal(z, method=method, check_finite=False, return_info=True)
            own_G = False
        fwd = self._fused_forward(rows, z, batch, method, "solve")
        if fwd is None:
            return None
        sweeps, pS = fwd
        nb = int(np.prod(batch))
        K, cond = self._check_capacitance(
            la.eye(bk, r, sweeps.KmI.dtype, like=sweeps.KmI) + sweeps.KmI.reshape(batch + (r, r)),
            "resolvent_diagonal", z, stacklevel=6,
        )
        Kinv = la.solve(bk, K, la.eye(bk, r, K.dtype, like=K)).reshape((nb, r, r))
        if own_G and G.dtype == sweeps.KmI.dtype:
            # G - sum X W written into G: no new (B, N) array and none of its page faults
            Gb = G.reshape((nb, n))
            out = bk.woodbury_correction(sweeps, Kinv, subtract_from=Gb).reshape(G.shape)
        else:
            out = G - bk.woodbury_correction(sweeps, Kinv).reshape(batch + (n,))
        pivots = {"resolvent_diagonal": pG, "solve": pS}
        if not T.is_symmetric_storage:
            pivots["solve_transpose"] = pS  # A^T has the pivots of A
        return out, pivots, cond

    def _fusable(self, method: str, z: Any) -> bool:
        """Whether the backend's fused Woodbury kernels serve this call (NumPy; torch on CPU
        tensors of which none needs a gradient)."""
        T = self.tridiagonal
        return self._backend.woodbury_fusable(method, T.diag, T.lower, T.upper_, self.U, self.V, z)

    def _fused_forward(self, rows, z: Any, batch: tuple[int, ...], method: str, what: str):
        """The fused forward pass for ``A = T - zI`` on the rows of :func:`_shifted_rows`:
        ``(sweeps, pivot_info)``, ``sweeps`` the backend's state with ``X = A^{-1} U`` and
        ``sweeps.KmI = V^T X`` (B, r, r), ``B = prod(batch)``; None where a pivot was guarded
        (the caller takes its composed path, whose solves refine).  Raises
        :class:`SingularMatrixError` (named ``what``) if ``A`` is singular.  The sweeps hold
        the backend's scratch: the caller passes them to ``woodbury_correction`` or
        ``woodbury_release`` when done."""
        bk = self._backend
        n, r = self._n, self.rank
        nb = int(np.prod(batch))

        def block(M):  # (..., N, r) -> (B, N, r), a view where the batch is broadcast
            return bk.broadcast_to(M, batch + (n, r)).reshape((nb, n, r))

        if _range_scale(rows) is not None:  # entries outside the kernels' safe range: the
            return None                     # composed path, whose tridiagonal calls scale
        if bk.takes_shift:  # T's own diagonal and off-diagonals, z subtracted in the kernel
            sweeps = bk.woodbury_forward(
                rows.diag, rows.upper_native, rows.lower_native, block(self.U), block(self.V),
                rows.pivmin, shift=rows.shift,
            )
        else:
            sweeps = bk.woodbury_forward(
                rows.alpha, rows.upper, rows.lower, block(self.U), block(self.V), rows.pivmin
            )
        ran = bk.kernel_ran(method)
        if bool((sweeps.guarded > 0).any()):
            bk.woodbury_release(sweeps)
            return None
        if bool(sweeps.singular.any()):
            bk.woodbury_release(sweeps)
            _raise_if_singular(bk, sweeps.singular, batch, what, z)
        _, info = _with_info(None, rows, sweeps.guarded, method, True, ran=ran)
        return sweeps, info

    def _fused_capacitance(self, z: Any, batch: tuple[int, ...], method: str, what: str):
        """``(K, cond_2(K), pivot_info)`` from the fused forward pass (``K = I + V^T X``,
        ``X = A^{-1} U`` in the backend's scratch); None where the backend has no fused
        kernels, ``method`` is not "auto" / "sequential", or a pivot was guarded."""
        bk = self._backend
        if not self._fusable(method, z):
            return None
        rows = _shifted_rows(self.tridiagonal, z, False, extra={"operator": self._batch_shape})
        fwd = self._fused_forward(rows, z, batch, method, what)
        if fwd is None:
            return None
        sweeps, info = fwd
        KmI = sweeps.KmI
        bk.woodbury_release(sweeps)
        r = self.rank
        K, cond = self._check_capacitance(
            la.eye(bk, r, KmI.dtype, like=KmI) + KmI.reshape(batch + (r, r)), what, z, stacklevel=6,
        )
        return K, cond, info
