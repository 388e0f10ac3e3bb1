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
   carry (:func:`semisep.backends.numpy.chunk_passes.pivot_sweep`, nothing of size C stored;
   for the resolvent diagonal its first pass, :mod:`._resolvent`).  Its last ratio is the
   carry the next chunk should have had: the error of the chunk's own carry has been
   contracted over the chunk where the recursion contracts.
2. **Rounds** (``MAX_ROUNDS`` of them, one small task per chunk and round): chunk ``k`` reads its
   predecessor's last ratio (a ``(B,)`` vector: the only data crossing the boundary) and, for the
   rows where it differs from the carry its own run started from by more than
   ``TOL_TRIGGER * eps`` (relative), re-runs its recursion from it beside the stored run
   (:func:`semisep.backends.numpy.chunk_passes.repair_sweep`), checking every ``BLOCK`` steps, until
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

from typing import Any, NamedTuple

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


def _passes():
    from ..numpy import chunk_passes

    return chunk_passes


class State(NamedTuple):
    """A chunk's repair state from one side: ``last (B,)`` the ratio leaving the chunk,
    ``g_used (B,)`` the carry its run started from, and (references to) the chunk's blocks as
    :mod:`semisep.backends.numpy.chunk_passes` takes them, ``reverse`` for the right side.
    logdet's and solve's rounds (:func:`rounds`) pass states between tasks, and a repair task
    that the scheduler places away from the chunk takes the blocks along; the resolvent
    diagonal's graph (:mod:`._resolvent`) builds a state inside each task from the chunk's
    blocks and hands on only its few numbers."""

    last: Any
    g_used: Any
    diag: Any
    shift: Any
    b_in: Any
    beta: Any
    b_out: Any
    reverse: bool
    pm: Any


def sweep_state(alpha, betaL, beta_out, v, pm, side: str) -> State:
    """Step 1 for one chunk from the left (``side`` "L"; logdet and solve): the chunk's
    recursion from the scanned state ``v (B, 2)`` (None at the chain's start: a zero carry,
    whose coupling is zero).  ``betaL (B, C)``: the coupling entering each step (column 0 is
    ``beta_{s-1}``), ``beta_out (B,)``; the state holds views of them, no copy."""
    if side != "L":
        raise ValueError("sweep_state serves the left side; the resolvent's states come from its first pass")
    b_in, beta = betaL[:, 0], betaL[:, 1:]
    g_in = np.zeros(alpha.shape[0], alpha.dtype) if v is None else T.carry_ratio(v, pm)
    last = _passes().pivot_sweep(alpha, None, b_in, beta, beta_out, False, g_in, pm)
    return State(last, g_in.astype(last.dtype), alpha, None, b_in, beta, beta_out, False, pm)


def last_ratio(state: State) -> np.ndarray:
    """The ratio leaving a chunk (``(B,)``: the only data that crosses a boundary)."""
    return state.last


def repair(state: State, g_new: np.ndarray) -> State:
    """Step 2 for one chunk and round: where the state's carry differs from ``g_new (B,)``, the
    neighbour's last ratio, the chunk is re-run from it beside its stored run until the two
    merge (:func:`semisep.backends.numpy.chunk_passes.repair_sweep`): a new state; the same
    state object where no row differs."""
    last, g_used = state.last, state.g_used
    tol = TOL_TRIGGER * float(np.finfo(last.dtype).eps)
    g_new = g_new.astype(last.dtype)
    dist = np.abs(g_new - g_used)
    b0 = state.b_out if state.reverse else state.b_in
    couple = np.broadcast_to(b0, g_new.shape) != 0
    trig = (dist > tol * np.abs(g_used)) & couple  # False where NaN: the second passes see those
    if not np.any(trig):
        return state
    rows = np.flatnonzero(trig)
    with np.errstate(all="ignore"):
        ref = np.where(np.abs(g_used) > 0, dist / np.abs(g_used), np.inf)
    status, _, end = _passes().repair_sweep(state.diag, state.shift, state.b_in, state.beta, state.b_out,
                                            state.reverse, g_used, g_new, state.pm, rows, tol, ref, BLOCK,
                                            STALL)
    last = last.copy()
    last[rows[status == 0]] = end[status == 0]  # merged or stalled: the stored last ratio stands
    return state._replace(last=last, g_used=np.where(trig, g_new, g_used))


def rounds(g: Any, nc: int, st: dict, side: str) -> list:
    """Step 2 and 3 for one block of rows and one side: from the keys ``st[k]`` of the ``nc``
    chunks' states, the keys of their repaired carries from ``side`` (None for the chain's end
    chunk)."""
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
    """The repaired carries of one block of rows from the left (logdet, solve; keys, None for
    the chain's first chunk); ``states``: the scanned states (keys) entering each chunk."""
    if r.nc == 1:
        return [None]
    st = {k: g(sweep_state, r.A[k], r.BL[k], r.bo[k], states[k], r.pm, side) for k in range(r.nc)}
    return rounds(g, r.nc, st, side)


# the task functions as the graph calls them: None (a skipped pass) stays None
def last_ratio_if(state):
    return None if state is None else last_ratio(state)


def repair_if(state, g_new):
    return None if state is None else repair(state, g_new)
