"""Accurate carries at chunk boundaries: the sequential sweep across each boundary, repaired in
bounded rounds of small per-chunk tasks.

The scan of :mod:`._graph` gives every chunk its carries (``gL_{s-1}`` from the left, ``gR_{e+1}``
from the right) from products of 2 x 2 transfer matrices.  Their entries are accurate to ``eps``
relative to the products' norms only: where the continuant dips inside a chunk (the left and
right solutions of the three-term recursion nearly aligned, near a state of ``T`` localised close
to ``z``), the carry leaving that chunk loses ``1/f`` of its relative accuracy, ``f`` the dip's
depth, and the next pivots amplify its error as they amplify rounding.  The ratio recursion
itself loses nothing there.  So, per direction (the mathematics of the torch chunked path's
repair, :mod:`semisep.backends.torch._boundary`, laid out as tasks):

1. **Sweep** (one task per chunk): the guarded ratio recursion over the chunk from its scanned
   carry (:func:`semisep.backends.numpy.chunks.pivot_sweep`; nothing of size C is stored).  Its
   last ratio is the carry the next chunk should have had: the error of the chunk's own carry
   has been contracted over the chunk where the recursion contracts.
2. **Rounds** (``MAX_ROUNDS`` of them, one small task per chunk and round): chunk ``k`` reads its
   predecessor's last ratio (a ``(B,)`` vector: the only data crossing the boundary) and, for the
   rows where it differs from the carry its own run started from by more than
   ``TOL_TRIGGER * eps`` (relative), re-runs its recursion from it beside the stored run
   (:func:`semisep.backends.numpy.chunks.repair_sweep`), checking every ``BLOCK`` steps, until
   the two are within that tolerance (from there on the stored run is the new one up to that
   tolerance, and so is its last ratio), or stops after ``STALL`` steps that did not shrink their
   distance 16-fold (the recursion does not contract there: the stored values are as accurate
   as the re-run's).  A chunk re-run to its end unmerged has a new last ratio; its successor
   sees it in the next round.  Rows whose boundary coupling is zero never re-run (the carry
   does not enter).
3. The carry into chunk ``k`` is then its predecessor's last ratio after the last round (with no
   round at all: the predecessor's sweep from its scanned carry, already the larger part of the
   gain), and the second passes (resolvent, logdet, solve) run from it.

Cost: one extra guarded ratio sweep per chunk and direction (a division per site, nothing
stored), plus the re-runs, two recursion steps per step re-run: per chunk, round and row at most
``min(C, STALL * (1 + log_16(d / tol)))`` steps for a relative carry distance ``d`` (about
``13 STALL`` for ``d ~ 1``).  Worst case (a recursion that does not contract, e.g. a clean chain
inside its band, may trigger at every boundary): ``MAX_ROUNDS * nc * min(C, STALL)`` re-run
steps per row, since such a run stalls after ``STALL`` steps.  On disordered chains a few per
cent of the chunks re-run a few dozen steps.  Bytes moved: ``B`` numbers per boundary and round.
Tasks: ``2 nc`` per round and direction; latency ``MAX_ROUNDS`` task latencies plus the re-runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _tasks as T

#: a carry is repaired when it differs from the predecessor's last ratio by more than this many
#: eps (relative): the recursion's own rounding across one step is a few eps
TOL_TRIGGER = 16.0
#: steps re-run between two checks whether the new trajectory has merged with the stored one
BLOCK = 16
#: a re-run stops when its distance to the stored trajectory has not shrunk 16-fold over this
#: many steps (the recursion does not contract there)
STALL = 256
#: rounds of boundary repairs: a chunk re-run to its end unmerged hands its new last ratio on to
#: its successor in the next round, so a change travels at most ``MAX_ROUNDS + 1`` chunks (the
#: sweeps of step 1 already hand each chunk's last ratio to its successor)
MAX_ROUNDS = 2


def _chunks():
    from ..numpy import chunks

    return chunks


def oriented(alpha: np.ndarray, betaL: np.ndarray, beta_out: np.ndarray, side: str) -> tuple:
    """``(a, b)`` in sweep order: ``side`` "L" left to right (``b = betaL``), "R" right to left
    (``a = alpha`` reversed, ``b_t = beta_i`` the coupling to site ``i + 1``, ``beta_out`` at the
    chunk's end)."""
    if side == "L":
        return alpha, betaL
    bo = np.broadcast_to(np.asarray(beta_out, dtype=betaL.dtype), (betaL.shape[0],))
    b = np.concatenate([betaL[:, 1:], bo[:, None]], axis=1)
    return alpha[:, ::-1], b[:, ::-1]


def sweep_state(alpha, betaL, beta_out, v, pm, side: str, shift=None) -> tuple:
    """Step 1 for one chunk: the state ``(last (B,), carry (B,), a, b, shift, pm)``: the last
    ratio of the chunk's recursion from the scanned state ``v (B, 2)`` (None at the chain's end:
    a zero carry, whose coupling is zero), the carry it started from, and (references to) the
    chunk's inputs in sweep order, so that the repair tasks depend on the state alone and run
    where it lives."""
    a, b = oriented(alpha, betaL, beta_out, side)
    g_in = np.zeros(alpha.shape[0], alpha.dtype) if v is None else T.carry_ratio(v, pm)
    last = _chunks().pivot_sweep(a, b, shift, g_in, pm)
    return last, g_in.astype(last.dtype), a, b, shift, pm


def sweep_states(alpha, betaL, beta_out, vL, vR, pm, shift=None) -> tuple:
    """:func:`sweep_state` for both sides in one loop
    (:func:`semisep.backends.numpy.chunks.pivot_sweep_pair`): ``(state L, state R)``."""
    aL, bL = oriented(alpha, betaL, beta_out, "L")
    aR, bR = oriented(alpha, betaL, beta_out, "R")
    zero = np.zeros(alpha.shape[0], alpha.dtype)
    gL = zero if vL is None else T.carry_ratio(vL, pm)
    gR = zero if vR is None else T.carry_ratio(vR, pm)
    lastL, lastR = _chunks().pivot_sweep_pair(aL, bL, aR, bR, shift, gL, gR, pm)
    return ((lastL, gL.astype(lastL.dtype), aL, bL, shift, pm),
            (lastR, gR.astype(lastR.dtype), aR, bR, shift, pm))


def last_ratio(state: tuple) -> np.ndarray:
    """The ratio leaving a chunk (``(B,)``: the only data that crosses a boundary)."""
    return state[0]


def repair(state: tuple, g_new: np.ndarray) -> tuple:
    """Step 2 for one chunk and round: where the state's carry differs from ``g_new (B,)``, the
    predecessor's last ratio, the chunk is re-run from it beside its stored run until the two
    merge (:func:`semisep.backends.numpy.chunks.repair_sweep`): a new state; the same state
    object where no row differs."""
    last, g_used, a, b, shift, pm = state
    tol = TOL_TRIGGER * float(np.finfo(last.dtype).eps)
    g_new = g_new.astype(last.dtype)
    dist = np.abs(g_new - g_used)
    couple = np.broadcast_to(b[:, 0], g_new.shape) != 0
    trig = (dist > tol * np.abs(g_used)) & couple  # False where NaN: the second passes see those
    if not np.any(trig):
        return state
    rows = np.flatnonzero(trig)
    with np.errstate(all="ignore"):
        ref = np.where(np.abs(g_used) > 0, dist / np.abs(g_used), np.inf)
    status, _, end = _chunks().repair_sweep(a, b, shift, g_used, g_new, pm, rows, tol, ref, BLOCK, STALL)
    last = last.copy()
    last[rows[status == 0]] = end[status == 0]  # merged or stalled: the stored last ratio stands
    return last, np.where(trig, g_new, g_used), a, b, shift, pm


def rounds(g: Any, r: Any, st: dict, side: str) -> list:
    """Step 2 and 3 for one block of rows and one side: from the keys ``st[k]`` of the chunks'
    sweep states, the keys of their repaired carries from ``side`` (None for the chain's end
    chunk)."""
    nc = r.nc
    order = list(range(nc)) if side == "L" else list(range(nc - 1, -1, -1))
    for _ in range(MAX_ROUNDS):
        last = {k: g(last_ratio_if, st[k]) for k in order[:-1]}
        st = {order[0]: st[order[0]]} | {
            k: g(repair_if, st[k], last[p]) for p, k in zip(order[:-1], order[1:], strict=True)}
    out: list = [None] * nc
    for p, k in zip(order[:-1], order[1:], strict=True):
        out[k] = g(last_ratio_if, st[p])
    return out


def carries(g: Any, r: Any, states: list, side: str) -> list:
    """The repaired carries of one block of rows from one side (keys; None for the chain's end
    chunk); ``states``: the scanned states (keys) entering each chunk from that side."""
    if r.nc == 1:
        return [None]
    st = {k: g(sweep_state, r.A[k], r.BL[k], r.bo[k], states[k], r.pm, side) for k in range(r.nc)}
    return rounds(g, r, st, side)


def both_carries(g: Any, r: Any, vL: list, vR: list, shift: Any = None) -> tuple[list, list]:
    """The repaired carries from both sides (:func:`carries`), the two sweeps of a chunk in one
    task (:func:`sweep_states`)."""
    if r.nc == 1:
        return [None], [None]
    both = [g(sweep_states, r.A[k], r.BL[k], r.bo[k], vL[k], vR[k], r.pm, shift) for k in range(r.nc)]
    return (rounds(g, r, {k: g(T.pick, both[k], 0) for k in range(r.nc)}, "L"),
            rounds(g, r, {k: g(T.pick, both[k], 1) for k in range(r.nc)}, "R"))


# the task functions as the graph calls them: None (a skipped pass) stays None
def last_ratio_if(state):
    return None if state is None else last_ratio(state)


def repair_if(state, g_new):
    return None if state is None else repair(state, g_new)
