"""The resolvent diagonal's task graph: five tasks per chunk, each reading the chunk's own blocks
and a few numbers per row; no chunk-sized intermediate.

The couplings ``beta (B, N-1)`` are taken in chunks aligned with the diagonal's (chunk ``k`` of
``beta`` holds ``beta_s .. beta_e``, the last chunk one element shorter; arrays chunked alike,
as ``da.from_array(diag, chunks=C)`` and ``da.from_array(beta, chunks=C)`` are, need no
rechunk), so the kernels read each block as it is
(:mod:`semisep.backends.numpy.chunk_passes`).  For every block of rows:

1. **Transfer pass**, one task per chunk, reading the chunk's blocks only: both transfer
   matrices in one loop, the left one with the coupling into the chunk set to 1
   (``ML = ML1 diag(1, beta_{s-1})``: the scan puts the neighbour's ``beta_{s-1}`` in), and the
   chunk's last coupling ``beta_e``.  A :class:`Summary`: a few numbers per row.
2. **Scan** (:func:`scan`): one task for up to ``FAN`` chunks, else a tree; every chunk gets the
   states entering it from the left and from the right and its ``beta_{s-1}``.
3. **Sweeps**, one task per chunk: the left and right ratio recursions from the scanned
   carries in one loop, giving the ratios leaving the chunk (a :class:`Carries`: ``5 B``
   numbers, no reference to the chunk's blocks).
4. **Boundary repair**, ``MAX_ROUNDS`` tasks per chunk (:mod:`._repair`'s rounds, both sides in
   one task): chunk ``k`` compares its carries with its neighbours' leaving ratios and re-runs
   its recursions from them where they differ.  The tasks read the chunk's blocks (so that they
   run where the chunk lives) and their neighbours' :class:`Carries`.
5. **Resolvent pass**, one task per chunk: the whole-chain two-sided sweep on the chunk with the
   repaired carries entering at its ends, writing its slice of ``G``.  A singular row raises
   :class:`~semisep.errors.SingularMatrixError` here.

``G`` is written in step 5 only, after the repair: a worker holds no chunk of ``G`` while it
waits for its neighbours' rounds (a first pass writing ``G`` from the scanned carries and
updating it afterwards would read each chunk one time less, but holds every chunk's ``G`` from
the scan to the end of the repair: the inputs' and the output's memory at once).  Only step 1's
and step 3-4's small results cross between workers: ``O(B)`` numbers per chunk and step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from . import _repair
from . import _tasks as T


def _passes():
    from ..numpy import chunk_passes

    return chunk_passes


class Summary(NamedTuple):
    """A chunk's (or a group of consecutive chunks') transfer data, ``B`` rows: ``ML1 (B, 2, 2)``
    the left map with the coupling into the chunk set to 1, ``MR (B, 2, 2)`` the right map,
    ``b_out (B,)`` the coupling after the chunk (``beta_e``; zero after the chain's end)."""

    ML1: Any
    MR: Any
    b_out: Any


class Carries(NamedTuple):
    """A chunk's few numbers per row after the sweeps and each repair round, each ``(B,)``:
    ``lastL = gL_e`` and ``lastR = gR_s`` (the ratios leaving the chunk), ``gL``, ``gR`` the
    carries its runs started from, ``b_in = beta_{s-1}``."""

    lastL: Any
    lastR: Any
    gL: Any
    gR: Any
    b_in: Any


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
        return beta_blk[:, : C - 1], np.ascontiguousarray(beta_blk[:, C - 1])
    return beta_blk, np.zeros(beta_blk.shape[0], beta_blk.dtype)


# -- step 1 and 2: the transfer pass and the scan ----------------------------------------------
def transfer(alpha, beta_blk, shift) -> Summary:
    """Step 1 for one chunk (:func:`semisep.backends.numpy.chunk_passes.transfer_pair` with
    ``b_in = 1``): ``S_s = [[alpha_s, -1], [1, 0]]``, so that the true ``ML`` is ``ML1`` with
    its second column times ``beta_{s-1}``."""
    beta, b_out = _split(alpha, beta_blk)
    ML1, MR = _passes().transfer_pair(alpha, shift, 1.0, beta, b_out)
    return Summary(ML1, MR, b_out)


def _left_map(s: Summary, b_in: Any) -> np.ndarray:
    """``ML = ML1 diag(1, b_in)``."""
    M = s.ML1.copy()
    M[:, :, 1] *= np.asarray(b_in)[:, None]
    return M


def compose(*parts: Summary) -> Summary:
    """The summary of consecutive chunks (first to last) as one: ``ML1`` the left maps composed
    with the inner couplings put in, ``MR = MR_first ... MR_last``, ``b_out`` the last one's."""
    ML, MR = parts[0].ML1, parts[0].MR
    for prev, s in zip(parts[:-1], parts[1:], strict=True):
        ML = T._normalise(_left_map(s, prev.b_out) @ ML)
        MR = T._normalise(MR @ s.MR)
    return Summary(ML, MR, parts[-1].b_out)


def _start(s: Summary) -> np.ndarray:
    """The state ``(1, 0)`` per row: ``(p_{-1}, p_{-2})`` at the chain's ends (carry ratio 0)."""
    v = np.zeros(s.ML1.shape[:1] + (2,), s.ML1.dtype)
    v[:, 0] = 1
    return v


def scan_states(outer: Any, j: int, *parts: Summary) -> tuple:
    """Step 2 for consecutive chunks: ``(vL (n, B, 2), vR (n, B, 2), b_in (n, B))``, the states
    entering each of the ``n`` chunks from the left and from the right and their couplings
    ``beta_{s-1}``.  ``outer``: None (the chunks are the whole chain) or the result of the
    group-level scan, whose entry ``j`` holds the group's entering states."""
    if outer is None:
        sL, sR, b0 = _start(parts[0]), _start(parts[0]), np.zeros_like(parts[0].b_out)
    else:
        sL, sR, b0 = outer[0][j], outer[1][j], outer[2][j]
    vL, vR, b_in = [], [], []
    b = b0
    for s in parts:
        vL.append(sL)
        b_in.append(b)
        sL = T._normalise(np.einsum("bij,bj->bi", _left_map(s, b), sL))
        b = s.b_out
    for s in parts[::-1]:
        vR.append(sR)
        sR = T._normalise(np.einsum("bij,bj->bi", s.MR, sR))
    return np.stack(vL), np.stack(vR[::-1]), np.stack(b_in)


def scan(g: Any, parts: list, fan: int) -> list:
    """Step 2 for a block of rows: per chunk ``(key, j)``, the scan task holding its entering
    states at ``j`` (:func:`scan_states`); one task for up to ``fan`` chunks, else a tree
    (groups of ``fan`` composed, the groups scanned, then each group's members)."""
    if len(parts) <= fan:
        key = g(scan_states, None, 0, *parts)
        return [(key, j) for j in range(len(parts))]
    groups = [parts[i:i + fan] for i in range(0, len(parts), fan)]
    outer = scan(g, [g(compose, *grp) for grp in groups], fan)
    out: list = []
    for grp, (okey, oj) in zip(groups, outer, strict=True):
        key = g(scan_states, okey, oj, *grp)
        out.extend((key, j) for j in range(len(grp)))
    return out


# -- step 3 to 5 -------------------------------------------------------------------------------
def sweeps(alpha, beta_blk, states, j: int, pm, shift) -> Carries:
    """Step 3 for one chunk from its scanned states (entry ``j`` of :func:`scan_states`)."""
    beta, b_out = _split(alpha, beta_blk)
    b_in = states[2][j]
    gL, gR = T.carry_ratio(states[0][j], pm), T.carry_ratio(states[1][j], pm)
    lastL, lastR = _passes().pivot_sweep_pair(alpha, shift, b_in, beta, b_out, gL, gR, pm)
    return Carries(lastL, lastR, gL.astype(lastL.dtype), gR.astype(lastR.dtype), b_in)


def repair(alpha, beta_blk, own: Carries, left: Carries | None, right: Carries | None, pm, shift) -> Carries:
    """Step 4 for one chunk and round: the left run re-run where its carry differs from the left
    neighbour's ``lastL`` and the right run where it differs from the right neighbour's
    ``lastR`` (:func:`._repair.repair`; None at the chain's ends: no repair)."""
    beta, b_out = _split(alpha, beta_blk)
    out = own
    if left is not None:
        st = _repair.State(own.lastL, own.gL, alpha, shift, own.b_in, beta, b_out, False, pm)
        st = _repair.repair(st, left.lastL)
        out = out._replace(lastL=st.last, gL=st.g_used)
    if right is not None:
        st = _repair.State(own.lastR, own.gR, alpha, shift, own.b_in, beta, b_out, True, pm)
        st = _repair.repair(st, right.lastR)
        out = out._replace(lastR=st.last, gR=st.g_used)
    return out


def resolvent(alpha, beta_blk, left: Carries | None, own: Carries | None, right: Carries | None, pm,
              row0: int, shift):
    """Step 5: ``(G, guarded, singular)`` of the chunk from the ratios leaving its neighbours
    (None at the chain's ends; :func:`semisep.backends.numpy.chunk_passes.resolvent_chunk`);
    raises :class:`SingularMatrixError` for a singular row."""
    beta, b_out = _split(alpha, beta_blk)
    b_in = np.zeros(alpha.shape[0], beta_blk.dtype) if own is None else own.b_in
    gL = None if left is None else left.lastL
    gR = None if right is None else right.lastR
    G, guarded, singular, _, _ = _passes().resolvent_chunk(alpha, shift, b_in, beta, b_out, gL, gR, pm)
    T._raise("resolvent_diagonal", singular, row0)
    return G, guarded, singular


def block(g: Any, fan: int, A: list, BT: list, pm: Any, row0: int, shift: Any) -> list:
    """The keys of ``(G, guarded, singular)`` per chunk for one block of rows: ``A``, ``BT`` the
    keys of its diagonal and aligned coupling blocks, ``pm`` its pivot guard, ``shift`` its
    shifts (a key or None); ``fan`` the scan's fan-in."""
    nc = len(A)
    if nc == 1:
        return [g(resolvent, A[0], BT[0], None, None, None, pm, row0, shift)]
    states = scan(g, [g(transfer, A[k], BT[k], shift) for k in range(nc)], fan)
    c = [g(sweeps, A[k], BT[k], key, j, pm, shift) for k, (key, j) in enumerate(states)]
    for _ in range(_repair.MAX_ROUNDS):
        c = [g(repair, A[k], BT[k], c[k], c[k - 1] if k else None, c[k + 1] if k < nc - 1 else None, pm,
               shift) for k in range(nc)]
    return [g(resolvent, A[k], BT[k], c[k - 1] if k else None, c[k], c[k + 1] if k < nc - 1 else None, pm,
              row0, shift) for k in range(nc)]
