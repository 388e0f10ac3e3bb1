"""Functional pieces of :mod:`semisep.nn`: the resolvent diagonal at per-sample selected positions.

:func:`masked_resolvent_diagonal` computes, for a batch of tridiagonal matrices ``T`` (N x N) and a
per-row keep-mask ``m`` (``m[b, i] = 1``: compute, ``0``: skip),

    G_ii = [(T - z I)^{-1}]_ii = gL_i / (1 - beta_i gL_i gR_{i+1})      (G_{N-1} = gL_{N-1})

exactly at the kept positions, with the LU / UL pivot ratios ``gL``, ``gR`` of docs/mathematics.md
(``alpha_i = a_i - z``, ``beta_i = b_i c_i``).  It returns the kept values **and** the mask
(:class:`MaskedResolvent`); skipped positions get no value at all -- the caller decides what goes
there (SparseBKCore puts the output of its interpolator; ``MaskedResolvent.dense(fill)`` scatters
into an explicit fill).

What skipping can and cannot save
---------------------------------
``G_ii`` at one position needs ``gL_i`` (the left sweep over ``0..i``) and ``gR_{i+1}`` (the right
sweep over ``N-1..i+1``).  The sweeps are first-order recursions: whatever the mask, the pivots
before the last kept position (left) and after the first kept position (right) must be
propagated, so the sweeps stay O(N).  Only two things can be skipped:

1. the **combine** ``G_ii = gL_i / (1 - beta_i gL_i gR_{i+1})`` at skipped positions (every
   method below does this: the combine runs on the gathered kept entries only);
2. in the **chunked** form (``method="chunked"``, the torch backend's parallel scan): the pivots
   inside a chunk of length ``L`` are produced by (i) a pass that builds the chunk's 2x2
   transfer matrix, (ii) a scan over chunks, (iii) a *second in-chunk pass* that materialises
   the ``L`` pivots from the carried value.  Passes (i) and (ii) carry information across the
   chunk and cannot be skipped; pass (iii) is only needed in chunks that contain a position
   whose pivot is used (left sweep: a kept ``i``; right sweep: ``i + 1`` for a kept ``i``).
   Inactive chunks are dropped from pass (iii) by compacting the active ``(row, chunk)`` pairs.
   This saves real work only when whole chunks are skipped, i.e. when the mask is *clustered*
   (blocks of skipped positions at least ``L`` long).  For an unstructured mask at sparsity
   ``s`` a chunk is all-skipped with probability about ``s^L`` -- essentially never for
   ``L >= 8`` -- and the saving is the combine step alone.

With gradients required the O(N) backward of docs/mathematics.md needs *every* pivot
(``SL_j = rho_j SL_{j-1} + s_j`` runs through all ``j`` even when the cotangent vanishes at
skipped positions), so the differentiable path computes the full diagonal with the backend's
autograd kernel and gathers the kept entries: exact gradients, no saving.
``benchmarks/bench_sparse.py`` measures all of this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..backends import SINGULAR_FACTOR, backend_for
from ..errors import ShapeError, SingularMatrixError
from ..tridiagonal import Tridiagonal
from ..tridiagonal_core import shifted_rows

__all__ = ["MaskedResolvent", "masked_resolvent_diagonal", "laplacian_resolvent_diagonal_masked"]


@dataclass
class MaskedResolvent:
    """The resolvent diagonal at the kept positions of a mask.

    Attributes
    ----------
    values : complex tensor, shape ``(K,)``
        ``G_ii`` at the positions ``mask.nonzero()`` in row-major order (``K = mask.sum()``);
        differentiable w.r.t. the operator and ``z`` when they require grad.
    mask : bool tensor, shape ``batch + (N,)``
        True where ``G_ii`` was computed.
    work : dict
        Measured work of the call (counts, not estimates): ``"method"``, ``"combined"`` (combine
        steps run = K), ``"positions"`` (B N), and for ``method="chunked"`` without grad
        ``"second_pass_steps"`` / ``"second_pass_steps_full"`` (pivot-materialisation steps run /
        those a full computation runs, both sweeps, padding included).
    """

    values: torch.Tensor
    mask: torch.Tensor
    work: dict = field(default_factory=dict)

    def dense(self, fill: Any) -> torch.Tensor:
        """``batch + (N,)`` tensor with ``G_ii`` where ``mask`` and ``fill`` elsewhere.

        ``fill`` is required (a number or a tensor broadcastable to ``batch + (N,)``): skipped
        positions have no resolvent value, so the caller names what stands there.
        Differentiable w.r.t. ``values`` (and ``fill`` if it is a tensor)."""
        out = torch.as_tensor(fill, dtype=self.values.dtype, device=self.values.device)
        out = torch.broadcast_to(out, self.mask.shape)
        flat = out.reshape(-1).clone() if not out.requires_grad else out.reshape(-1) * 1
        idx = self.mask.reshape(-1).nonzero().squeeze(1)
        flat = flat.index_put((idx,), self.values)
        return flat.reshape(self.mask.shape)

    def per_row(self) -> torch.Tensor:
        """``values`` as ``batch + (k,)`` when every row keeps the same number ``k`` of
        positions (e.g. a top-k mask); ``ValueError`` otherwise."""
        counts = self.mask.reshape(-1, self.mask.shape[-1]).sum(dim=1)
        if counts.numel() and not bool((counts == counts[0]).all()):
            raise ValueError("rows keep different numbers of positions; use .values with .mask "
                             "or .dense(fill)")
        k = int(counts[0]) if counts.numel() else 0
        return self.values.reshape(tuple(self.mask.shape[:-1]) + (k,))


# ==================================================================================================
# public function
# ==================================================================================================
def masked_resolvent_diagonal(diag: Any, lower: Any, upper: Any = None, z: Any = 1j, mask: Any = None,
                              *, method: str = "auto", chunk_length: int | None = None,
                              check_finite: bool = True) -> MaskedResolvent:
    """``diag((T - z I)^{-1})`` at the positions where ``mask`` is set, per batch row.

    Parameters
    ----------
    diag : tensor ``(..., N)``; lower, upper : tensors ``(..., N-1)`` (``upper=None``: symmetric)
        The tridiagonal ``T`` as in :class:`semisep.Tridiagonal` (torch tensors, CPU or CUDA).
    z : scalar or tensor broadcastable to the batch shape
        The shift (default ``1j``).
    mask : bool or 0/1 tensor, broadcastable to ``batch + (N,)``
        ``1``: compute ``G_ii``; ``0``: skip.  Kept sets may differ between rows.  (A
        straight-through mask whose *values* are 0/1 is accepted; it is read as ``mask > 0.5``
        and not differentiated -- the caller handles the mask's own gradient.)
    method : "auto" | "chunked" | "sequential" | "reference"
        Without gradients: ``"chunked"`` runs the chunked scan and skips the second in-chunk
        pass in chunks that need no pivot (module docstring); ``"sequential"`` (CPU) and
        ``"reference"`` compute the full diagonal with the torch backend's kernel and gather.
        ``"auto"``: ``"sequential"`` for CPU tensors (the compiled fused sweep is faster than the
        chunked scan on CPU, with or without skipping: see ``benchmarks/bench_sparse.py``),
        ``"chunked"`` elsewhere.  With gradients every method computes the full diagonal (the
        O(N) backward needs every pivot) and gathers.
    chunk_length : int, optional
        ``L`` for ``"chunked"`` (default: the torch backend's heuristic ``~sqrt(N)/2``).

    Returns
    -------
    MaskedResolvent
        ``values`` (K,) complex at ``mask.nonzero()`` (row-major), ``mask`` (bool, ``batch +
        (N,)``), ``work`` (measured counts).  Skipped positions carry no value.

    Raises
    ------
    SingularMatrixError
        If ``|1/G_ii| < 4 pivmin`` at some kept position (``T - zI`` singular to working
        precision, the contract of :mod:`semisep.backends`).
    """
    if mask is None:
        raise ValueError("mask is required: a bool/0-1 tensor broadcastable to batch + (N,)")
    T = Tridiagonal(diag, lower, upper, check_finite=check_finite)
    bk = T.backend
    if bk.name != "torch":
        raise TypeError("masked_resolvent_diagonal takes torch tensors; for NumPy arrays with "
                        "indices shared by the batch use Tridiagonal.resolvent_diagonal(z, indices=...)")
    backend_for(T.diag, mask)
    rows = shifted_rows(T, z, check_finite)
    N = T.n
    mask = torch.as_tensor(mask, device=rows.alpha.device)
    if mask.dtype != torch.bool:
        mask = mask.detach() > 0.5
    try:
        mask = torch.broadcast_to(mask, rows.batch + (N,))
    except RuntimeError as exc:
        raise ShapeError(f"mask has shape {tuple(mask.shape)}, which does not broadcast to the "
                         f"batch + (N,) = {rows.batch + (N,)} of the operator and z") from exc
    keep = mask.reshape(-1, N)
    B = keep.shape[0]
    needs_grad = torch.is_grad_enabled() and (rows.alpha.requires_grad or rows.beta.requires_grad)
    if method == "auto":
        method = "sequential" if rows.alpha.device.type == "cpu" else "chunked"
    work: dict = {"method": method, "positions": B * N, "combined": int(keep.sum())}
    if needs_grad or method != "chunked":
        G, _, _ = bk.resolvent_diagonal(rows.alpha, rows.beta, rows.pivmin, method=method)
        values = G[keep]
        work["combined"] = B * N  # the full kernel combines everywhere
        work["gathered"] = True
    else:
        with torch.no_grad():
            L = chunk_length
            values, run, full = bk.resolvent_diagonal_masked(rows.alpha, rows.beta, rows.pivmin, keep, L)
        work["second_pass_steps"] = run
        work["second_pass_steps_full"] = full
    pm = rows.pivmin.to(values.real.dtype)[keep.nonzero(as_tuple=True)[0]]
    bad = ~(values.abs() * (SINGULAR_FACTOR * pm) <= 1.0)
    if bool(bad.any()):
        k = int(bad.nonzero()[0, 0])
        r, i = keep.nonzero()[k].tolist()
        raise SingularMatrixError(
            f"masked_resolvent_diagonal: T - z I is singular to working precision at batch row {r} "
            f"(|1/G_ii| < {SINGULAR_FACTOR:g} pivmin at i = {i}); {int(bad.sum())} kept entries affected")
    return MaskedResolvent(values, mask, work)


def laplacian_resolvent_diagonal_masked(v: torch.Tensor, z: Any, mask: Any, **kwargs: Any) -> MaskedResolvent:
    """:func:`masked_resolvent_diagonal` for ``H = H0 + diag(v)``, ``H0`` the discrete Laplacian
    (diagonal ``-2``, off-diagonals ``1``): ``v (B, N)`` real or complex."""
    ones = torch.ones(v.shape[-1] - 1, dtype=v.dtype if not v.is_complex() else v.real.dtype, device=v.device)
    return masked_resolvent_diagonal(v - 2.0, ones, None, z, mask, **kwargs)

