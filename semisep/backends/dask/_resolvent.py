"""The resolvent diagonal's task graph: three reads of every chunk, no copies, no re-layout.

The couplings ``beta (B, N-1)`` are taken in chunks aligned with the diagonal's (chunk ``k`` of
``beta`` holds ``beta_s .. beta_e``, the last chunk one element shorter; arrays chunked alike,
as ``da.from_array(diag, chunks=C)`` and ``da.from_array(beta, chunks=C)`` are, need no
rechunk), so the kernels read each block as it is
(:mod:`semisep.backends.numpy.chunk_passes`); only ``beta_{s-1}``, one column per row, crosses
into chunk ``k``.  For every block of rows:

1. **Transfer pass**, one task per chunk: both transfer matrices in one read of the chunk.
2. **Scans** of the left and right maps (:func:`._graph.scan`): the scanned carries.
3. **Sweeps**, one task per chunk: the left and right ratio recursions from the scanned carries
   in one loop, giving the ratios leaving the chunk (``gL_e``, ``gR_s``; nothing of size C).
4. **Boundary repair** (:func:`._repair.rounds`): a chunk's carry is checked against its
   neighbour's leaving ratio and re-run where the two differ (bounded rounds).
5. **Resolvent pass**, one task per chunk: the whole-chain two-sided sweep on the chunk with the
   repaired carries entering at its ends (no folded copy of the chunk), writing its slice of
   ``G``.  A singular row raises :class:`~semisep.errors.SingularMatrixError` here.

``G`` is written in step 5 only, after the repair: a worker holds no chunk of ``G`` while it
waits for its neighbours' rounds (a first pass writing ``G`` from the scanned carries and
updating it afterwards would read each chunk one time less, but holds every chunk's ``G`` from
the scan to the end of the repair: the inputs' and the output's memory at once).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _repair
from . import _tasks as T


def _passes():
    from ..numpy import chunk_passes

    return chunk_passes


def aligned(alpha: Any, beta: Any) -> Any:
    """``beta (B, N-1)`` chunked like ``alpha (B, N)``, its last chunk one element shorter."""
    widths = list(alpha.chunks[1])
    widths[-1] -= 1
    return beta.rechunk((alpha.chunks[0], tuple(widths)))


def _split(alpha: np.ndarray, beta_blk: np.ndarray) -> tuple:
    """``(beta (B, C-1) view, b_out (B,))`` of a chunk's coupling block ``[beta_s .. beta_e]``
    (``[beta_s .. beta_{e-1}]`` for the chain's last chunk, where ``b_out = 0``)."""
    C = alpha.shape[1]
    if beta_blk.shape[1] == C:
        return beta_blk[:, : C - 1], beta_blk[:, C - 1]
    return beta_blk, np.zeros(beta_blk.shape[0], beta_blk.dtype)


def last_column(beta_blk: np.ndarray) -> np.ndarray:
    """``beta_e`` of a chunk: ``b_in`` of the next one."""
    return np.ascontiguousarray(beta_blk[:, -1])


def _b_in(b_in: Any, beta_blk: np.ndarray) -> np.ndarray:
    return np.zeros(beta_blk.shape[0], beta_blk.dtype) if b_in is None else b_in


def transfer(alpha, b_in, beta_blk, shift):
    """``(ML, MR)`` of the chunk (:func:`semisep.backends.numpy.chunk_passes.transfer_pair`)."""
    beta, b_out = _split(alpha, beta_blk)
    return _passes().transfer_pair(alpha, shift, _b_in(b_in, beta_blk), beta, b_out)


def sweeps(alpha, b_in, beta_blk, vL, vR, pm, shift):
    """``(state L, state R)`` of :mod:`._repair` for the chunk: the ratios leaving it from the
    scanned states ``vL``, ``vR`` (None at the chain's ends: a zero carry, whose coupling is
    zero), both recursions in one loop over one read of the chunk, and the carries they
    started from; the states hold references to the chunk's blocks, no copy."""
    beta, b_out = _split(alpha, beta_blk)
    b_in = _b_in(b_in, beta_blk)
    zero = np.zeros(alpha.shape[0], np.result_type(alpha.dtype, beta.dtype,
                                                   *(() if shift is None else (shift.dtype,))))
    gL = zero if vL is None else T.carry_ratio(vL, pm)
    gR = zero if vR is None else T.carry_ratio(vR, pm)
    lastL, lastR = _passes().pivot_sweep_pair(alpha, shift, b_in, beta, b_out, gL, gR, pm)
    common = (alpha, shift, b_in, beta, b_out)
    return (_repair.State(lastL, gL.astype(lastL.dtype), *common, False, pm),
            _repair.State(lastR, gR.astype(lastR.dtype), *common, True, pm))


def resolvent(alpha, b_in, beta_blk, gL, gR, pm, row0: int, shift):
    """``(G, guarded, singular)`` of the chunk from its repaired carries ``gL``, ``gR`` (None at
    the chain's ends; :func:`semisep.backends.numpy.chunk_passes.resolvent_chunk`); raises
    :class:`SingularMatrixError` for a singular row."""
    beta, b_out = _split(alpha, beta_blk)
    G, guarded, singular, _, _ = _passes().resolvent_chunk(alpha, shift, _b_in(b_in, beta_blk), beta, b_out,
                                                           gL, gR, pm)
    T._raise("resolvent_diagonal", singular, row0)
    return G, guarded, singular


def block(g: Any, scan: Any, A: list, BT: list, pm: Any, row0: int, shift: Any) -> list:
    """The keys of ``(G, guarded, singular)`` per chunk for one block of rows: ``A``, ``BT`` the
    keys of its diagonal and aligned coupling blocks, ``pm`` its pivot guard, ``shift`` its
    shifts (a key or None); ``scan`` is :func:`._graph.scan`."""
    nc = len(A)
    if nc == 1:
        return [g(resolvent, A[0], None, BT[0], None, None, pm, row0, shift)]
    b_in = [None] + [g(last_column, BT[k - 1]) for k in range(1, nc)]
    tr = [g(transfer, A[k], b_in[k], BT[k], shift) for k in range(nc)]
    vL = scan(g, "moebius", [g(T.pick, t, 0) for t in tr])
    vR = scan(g, "moebius", [g(T.pick, t, 1) for t in tr], reverse=True)
    st = [g(sweeps, A[k], b_in[k], BT[k], vL[k], vR[k], pm, shift) for k in range(nc)]
    cL = _repair.rounds(g, nc, {k: g(T.pick, st[k], 0) for k in range(nc)}, "L")
    cR = _repair.rounds(g, nc, {k: g(T.pick, st[k], 1) for k in range(nc)}, "R")
    return [g(resolvent, A[k], b_in[k], BT[k], cL[k], cR[k], pm, row0, shift) for k in range(nc)]
