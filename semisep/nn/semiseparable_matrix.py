"""A trainable ``H = T + U V^T`` (tridiagonal plus rank r) as an ``nn.Module``.

``T`` has diagonal ``d`` (N), sub-diagonal ``l`` (N-1, ``T[i+1, i] = l_i``) and super-diagonal
``u`` (N-1, ``T[i, i+1] = u_i``); ``U, V`` are (N, r), ``r = ceil(log2 N)`` by default.

    matvec:   y_i = d_i x_i + u_i x_{i+1} + l_{i-1} x_{i-1} + sum_k U_ik (V^T x)_k     O(N r)
    rmatvec:  y = T^T x + V (U^T x)      (T^T swaps l and u)

Gradients come from autograd through these O(N r) expressions, so the backward of
``matvec`` applies ``H^T = T^T + V U^T`` to the cotangent -- the transpose, which the original
code got wrong (it applied ``T``) -- and is checked with ``gradcheck`` on a non-symmetric ``T``.

Storage is ``(3N - 2 + 2 N r)`` numbers against ``N^2`` dense; :meth:`get_memory_usage`
reports the bytes of the tensors actually held.  :meth:`factorize` fits the parameters to a
dense ``H`` with :func:`semisep.factorize` (alternating projection, docs/mathematics.md) and
:meth:`verify_factorization` reports :func:`semisep.check_factorization`'s honest error -- a
random dense matrix is *not* tridiagonal plus low rank and its relative error is near 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["SemiseparableMatrix", "create_semiseparable_from_dense", "semiseparable_matvec"]


def semiseparable_matvec(diag: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                         U: torch.Tensor, V: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(T + U V^T) x`` for ``x`` (..., N): ``diag`` (N), ``lower``/``upper`` (N-1),
    ``U``/``V`` (N, r).  O(N r); differentiable in every argument by autograd."""
    y = diag * x
    y = y + torch.nn.functional.pad(upper * x[..., 1:], (0, 1))
    y = y + torch.nn.functional.pad(lower * x[..., :-1], (1, 0))
    if U.shape[-1]:
        y = y + (x @ V) @ U.transpose(-1, -2)
    return y


def _to_numpy(H: Any) -> np.ndarray:
    if isinstance(H, torch.Tensor):
        H = H.detach().cpu().numpy()
    return np.asarray(H)


def _field(obj: Any, *names: str) -> Any:
    for nm in names:
        if hasattr(obj, nm):
            return getattr(obj, nm)
    raise AttributeError(f"{type(obj).__name__} has none of the attributes {names}")


class SemiseparableMatrix(nn.Module):
    """``H = T + U V^T`` with trainable ``T`` (diag, lower, upper) and ``U, V`` (N, r).

    Parameters
    ----------
    n_seq : int
        N.
    rank : int or None
        r; default ``ceil(log2 N)`` (at least 1).
    dtype, device
        Parameter dtype (default float32) and device.

    Notes
    -----
    Initialisation: ``T = 0``; ``U, V ~ (1e-2 / sqrt(N)) randn`` (small but nonzero, so that
    both factors receive gradients); :meth:`factorize` overwrites all of them.
    """

    def __init__(self, n_seq: int, rank: int | None = None, dtype: torch.dtype = torch.float32,
                 device: Any = None):
        super().__init__()
        if n_seq < 2:
            raise ValueError(f"n_seq must be at least 2, got {n_seq}")
        r = max(1, math.ceil(math.log2(n_seq))) if rank is None else int(rank)
        if r < 0:
            raise ValueError(f"rank must be >= 0, got {rank}")
        self.n_seq, self.rank = int(n_seq), r
        kw = {"dtype": dtype, "device": device}
        self.diag = nn.Parameter(torch.zeros(n_seq, **kw))
        self.lower = nn.Parameter(torch.zeros(n_seq - 1, **kw))
        self.upper = nn.Parameter(torch.zeros(n_seq - 1, **kw))
        scale = 1e-2 / math.sqrt(n_seq)
        self.U = nn.Parameter(scale * torch.randn(n_seq, r, **kw))
        self.V = nn.Parameter(scale * torch.randn(n_seq, r, **kw))
        self.use_checkpointing = False

    # ------------------------------------------------------------------------------------------
    def factorize(self, H: Any, **kwargs: Any) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Fit ``T + U V^T`` to the dense ``H`` (N, N) with :func:`semisep.factorize` at this
        module's rank, copy the result into the parameters and return ``(T, U, V)``: ``T`` a
        :class:`semisep.Tridiagonal` over the (live) parameter tensors, ``U``, ``V`` the
        parameters.  ``kwargs`` go to :func:`semisep.factorize` (``max_iter``, ``tol``,
        ``method``, ...)."""
        import semisep as ss

        Hn = _to_numpy(H)
        if Hn.shape != (self.n_seq, self.n_seq):
            raise ValueError(f"H must have shape ({self.n_seq}, {self.n_seq}), got {Hn.shape}")
        op = ss.factorize(Hn, rank=self.rank, **kwargs)
        T = _field(op, "tridiagonal", "base", "T_part")
        with torch.no_grad():
            kw = {"dtype": self.diag.dtype, "device": self.diag.device}
            self.diag.copy_(torch.as_tensor(np.asarray(T.diag), **kw))
            self.lower.copy_(torch.as_tensor(np.asarray(T.lower), **kw))
            self.upper.copy_(torch.as_tensor(np.asarray(T.upper_), **kw))
            U, V = np.asarray(op.U), np.asarray(op.V)
            if U.shape[-1] != self.rank:
                raise RuntimeError(f"factorize returned rank {U.shape[-1]}, expected {self.rank}")
            self.U.copy_(torch.as_tensor(U, **kw))
            self.V.copy_(torch.as_tensor(V, **kw))
        return self.tridiagonal(), self.U, self.V

    def tridiagonal(self):
        """``T`` as a :class:`semisep.Tridiagonal` over the parameter tensors."""
        import semisep as ss

        return ss.Tridiagonal(self.diag, self.lower, self.upper)

    def to_operator(self):
        """``H`` as a :class:`semisep.TridiagonalPlusLowRank` over the parameter tensors
        (differentiable: its solves, log-dets and resolvent diagonals train the parameters)."""
        import semisep as ss

        return ss.TridiagonalPlusLowRank(self.tridiagonal(), self.U, self.V)

    def resolvent_diagonal(self, z: Any = 0.0, **kwargs: Any) -> torch.Tensor:
        """``diag((H - zI)^{-1})``, exact (Woodbury), differentiable; see
        :meth:`semisep.TridiagonalPlusLowRank.resolvent_diagonal`."""
        return self.to_operator().resolvent_diagonal(z, **kwargs)

    def solve(self, b: torch.Tensor, z: Any = 0.0, **kwargs: Any) -> torch.Tensor:
        """``(H - zI)^{-1} b``, differentiable; see :meth:`semisep.TridiagonalPlusLowRank.solve`."""
        return self.to_operator().solve(b, z, **kwargs)

    def logdet(self, z: Any = 0.0, **kwargs: Any) -> torch.Tensor:
        """``log det(H - zI)`` (determinant lemma), differentiable."""
        return self.to_operator().logdet(z, **kwargs)

    def to_dense(self) -> torch.Tensor:
        """The dense (N, N) matrix (O(N^2); for tests and small N)."""
        H = torch.diag(self.diag) + torch.diag(self.upper, 1) + torch.diag(self.lower, -1)
        return H + self.U @ self.V.T

    # ------------------------------------------------------------------------------------------
    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """``H x`` for ``x`` (..., N); O(N r)."""
        self._check_x(x)
        return semiseparable_matvec(self.diag, self.lower, self.upper, self.U, self.V, x)

    def rmatvec(self, x: torch.Tensor) -> torch.Tensor:
        """``H^T x = T^T x + V (U^T x)`` (transpose, not conjugate transpose)."""
        self._check_x(x)
        return semiseparable_matvec(self.diag, self.upper, self.lower, self.V, self.U, x)

    def _check_x(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.n_seq:
            raise ValueError(f"x must have shape (..., {self.n_seq}), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.checkpoint_forward(x) if self.use_checkpointing else self.matvec(x)

    def enable_checkpointing(self) -> None:
        self.use_checkpointing = True

    def disable_checkpointing(self) -> None:
        self.use_checkpointing = False

    def checkpoint_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``H x``; with checkpointing enabled (and grad on) only the inputs are kept for
        backward (``torch.utils.checkpoint``, non-reentrant) and the O(N r) product is recomputed
        there -- it saves the intermediate ``V^T x`` and the per-term products.  Gradients equal
        those of :meth:`matvec`."""
        self._check_x(x)
        if not (self.use_checkpointing and torch.is_grad_enabled()):
            return self.matvec(x)
        return checkpoint(semiseparable_matvec, self.diag, self.lower, self.upper, self.U,
                          self.V, x, use_reentrant=False)

    # ------------------------------------------------------------------------------------------
    def get_memory_usage(self) -> dict:
        """Bytes of the parameter tensors held, against a dense (N, N) matrix in their dtype."""
        tri = sum(int(p.numel() * p.element_size()) for p in (self.diag, self.lower, self.upper))
        low = sum(int(p.numel() * p.element_size()) for p in (self.U, self.V))
        dense = self.n_seq * self.n_seq * self.diag.element_size()
        total = tri + low
        return {
            "tridiagonal_bytes": tri,
            "lowrank_bytes": low,
            "total_bytes": total,
            "dense_bytes": dense,
            "memory_reduction": 1.0 - total / dense,
            "rank": self.rank,
        }

    def verify_factorization(self, H: Any, tolerance: float = 1e-2) -> dict:
        """Compare the module's ``T + U V^T`` with the dense ``H`` by
        :func:`semisep.check_factorization`; ``passes_tolerance`` is
        ``relative_error <= tolerance`` (relative Frobenius error)."""
        import semisep as ss

        Hn = _to_numpy(H).astype(np.float64)
        with torch.no_grad():
            T = ss.Tridiagonal(self.diag.detach().cpu().double().numpy(),
                               self.lower.detach().cpu().double().numpy(),
                               self.upper.detach().cpu().double().numpy())
            op = ss.TridiagonalPlusLowRank(T, self.U.detach().cpu().double().numpy(),
                                           self.V.detach().cpu().double().numpy())
        report = ss.check_factorization(Hn, op, rtol=tolerance)
        out = dict(report.as_dict())
        out["tolerance"] = float(tolerance)
        out["passes_tolerance"] = bool(report.relative_error <= tolerance)
        return out


def create_semiseparable_from_dense(H: Any, rank: int | None = None) -> SemiseparableMatrix:
    """A :class:`SemiseparableMatrix` fitted to the dense ``H`` (N, N) (torch or NumPy) by
    :meth:`SemiseparableMatrix.factorize`; parameters in ``H``'s floating dtype (float32 for
    anything else)."""
    dt = H.dtype if isinstance(H, torch.Tensor) and H.is_floating_point() else None
    if dt is None and isinstance(H, np.ndarray) and H.dtype == np.float64:
        dt = torch.float64
    dev = H.device if isinstance(H, torch.Tensor) else None
    m = SemiseparableMatrix(int(np.shape(H)[-1]), rank, dtype=dt or torch.float32, device=dev)
    m.factorize(H)
    return m
