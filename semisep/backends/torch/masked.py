"""The resolvent diagonal at per-row selected positions, with the chunked scan's second pass
skipped where no pivot is needed (the kernel behind :func:`semisep.nn.masked_resolvent_diagonal`).

For a batch of rows ``alpha (B, N)``, ``beta (B, N-1)`` and a keep-mask ``keep (B, N)``::

    G_ii = gL_i / (1 - beta_i gL_i gR_{i+1})      (G_{N-1} = gL_{N-1})

at the kept positions only.  The LU / UL pivot reciprocals ``gL``, ``gR`` come from the chunked
Moebius scan of this backend (power-of-two prescaling, chunk transfer matrices renormalised by
``frexp``, Hillis-Steele scan over the chunks -- :func:`~semisep.backends.torch.pivots._chunk_carries`),
except that the second in-chunk pass runs only on the ``(row, chunk)`` pairs that contain a
needed position (left sweep: a kept ``i``; right sweep: ``i + 1`` for a kept ``i``).  Passes (i)
and (ii) carry information across the chunk and always run, so this saves work only for
clustered masks (runs of skipped positions at least ``L`` long); see
:mod:`semisep.nn.functional` for what skipping can and cannot save.
"""

from __future__ import annotations

import torch

from .chunks import _betap, _from_chunks, _pivot_chunk_length, _real_dtype, _sgn1, _to_chunks
from .pivots import _chunk_carries

__all__ = ["masked_resolvent_chunked"]

def _pivots_chunked_needed(alpha: torch.Tensor, beta: torch.Tensor, pivmin: torch.Tensor,
                           need: torch.Tensor, L: int | None = None):
    """LU pivot reciprocals ``gL`` where ``need`` (B, N) is True, by the chunked Moebius scan.

    Same algorithm and numbers as :func:`semisep.backends.torch.pivots._pivots_chunked` (power-of-two
    prescaling, chunk transfer matrices renormalised by ``frexp``, Hillis-Steele scan over the
    chunks -- passes (i) and (ii) are the backend's ``_chunk_carries`` -- guarded ratio recursion
    in the second pass), except that the second in-chunk pass
    runs only on the ``(row, chunk)`` pairs containing a needed position.

    Returns ``(g, steps_run, steps_full)``: ``g (B, N)`` with the pivot reciprocals in every
    active chunk and NaN in the chunks that were skipped (internal: never returned to users),
    and the number of second-pass steps run / a full pass would run (``L * active``,
    ``L * B * nc``).
    """
    B, N = alpha.shape
    rdt = _real_dtype(alpha.dtype)
    if L is None:
        L = _pivot_chunk_length(N)
    L = max(1, min(int(L), N))
    renorm_every = 4 if rdt == torch.float32 else 8

    ea = torch.frexp(alpha.abs().amax(dim=1))[1]
    if N > 1:
        eb = torch.frexp(beta.abs().amax(dim=1))[1]
        ea = torch.maximum(ea, torch.div(eb + 1, 2, rounding_mode="floor"))
    inv_s = torch.exp2(-ea.to(rdt))
    a = alpha * inv_s[:, None]
    bp = _betap(beta) * (inv_s * inv_s)[:, None]
    pm = pivmin.to(rdt) * inv_s

    Ac = _to_chunks(a, L, 1.0)  # (L, B, nc)
    Bc = _to_chunks(bp, L, 0.0)
    nc = Ac.shape[2]
    g0 = Ac.new_zeros(B, nc)
    if nc > 1:  # (i) transfer matrices and (ii) their prefix products: every chunk (shared code)
        num, den = _chunk_carries(Ac, Bc, renorm_every)
        smallc = den.abs() < pm[:, None] * num.abs()
        dc = pm[:, None] * _sgn1(den * num.conj())
        g0[:, 1:] = torch.where(smallc, 1.0 / dc, num / torch.where(smallc, torch.ones_like(den), den))

    # (iii) second pass on the active (row, chunk) pairs only
    active = _to_chunks(need, L, False).any(dim=0)  # (B, nc)
    rows, chunks = active.nonzero(as_tuple=True)
    n_act = int(rows.shape[0])
    Aa = Ac[:, rows, chunks]  # (L, n_act)
    Ba = Bc[:, rows, chunks]
    pma = pm[rows]
    ga = g0[rows, chunks]

    def second_pass(guard: bool):
        G = torch.empty_like(Aa)
        g = ga
        for t in range(L):
            d = torch.addcmul(Aa[t], Ba[t], g, value=-1)
            if guard:
                d = torch.where(d.abs() < pma, pma * _sgn1(d), d)
            g = torch.reciprocal(d, out=G[t])
        return G

    Ga = second_pass(False)
    # 1/|g| = |d| < pivmin somewhere (or non-finite): re-run with the guard in the loop
    if n_act and not bool((Ga.abs() * pma <= 1.0).all()):
        Ga = second_pass(True)
    Gc = torch.full_like(Ac, float("nan"))
    Gc[:, rows, chunks] = Ga
    g = _from_chunks(Gc, N) * inv_s[:, None]
    return g, L * n_act, L * B * nc


def masked_resolvent_chunked(alpha, beta, pivmin, keep, L=None):
    """``G_ii`` at the kept positions, with skippable second passes (module docstring).

    ``alpha (B, N)``, ``beta (B, N-1)``, ``pivmin (B,)``, ``keep (B, N)`` bool; ``L`` the chunk
    length (default: the backend's pivot heuristic).  Returns ``(values (K,), steps_run,
    steps_full)``: the kept ``G_ii`` in row-major order (``K = keep.sum()``) and the number of
    second-pass steps run / a full pass would run (both sweeps, padding included).  No autograd
    (the O(N) backward needs every pivot: differentiable callers take the full kernel)."""
    B, N = alpha.shape
    needL = keep
    needR = torch.zeros_like(keep)
    if N > 1:
        needR[:, 1:] = keep[:, :-1]  # G_i needs gR_{i+1}
    a2 = torch.cat([alpha, alpha.flip(1)], dim=0)
    b2 = torch.cat([beta, beta.flip(1)], dim=0)
    p2 = torch.cat([pivmin, pivmin], dim=0)
    n2 = torch.cat([needL, needR.flip(1)], dim=0)
    g, run, full = _pivots_chunked_needed(a2, b2, p2, n2, L)
    gL, gR = g[:B], g[B:].flip(1)
    return _combine_at(gL, gR, beta, keep), run, full


def _combine_at(gL, gR, beta, keep):
    """``G_ii = gL_i / (1 - beta_i gL_i gR_{i+1})`` on the kept entries only (``G_{N-1} = gL_{N-1}``)."""
    B, N = gL.shape
    r, i = keep.nonzero(as_tuple=True)
    gl = gL[r, i]
    if N == 1:
        return gl
    last = i == N - 1
    j = torch.where(last, torch.zeros_like(i), i)  # a valid index for beta; masked out below
    corr = beta[r, j] * gl * gR[r, torch.where(last, torch.zeros_like(i), i + 1)]
    corr = torch.where(last, torch.zeros_like(corr), corr)
    return gl / (1.0 - corr)
