"""Task graphs of the Dask backend: the chunked sweeps of :mod:`semisep.backends.numpy.chunks`
laid out over the blocks of ``(B, N)`` dask arrays.

For every block of rows (batch chunks are independent) and the ``nc`` chunks along N:

1. a transfer task per chunk (its 2 x 2 matrices, a few numbers per row);
2. an exact scan over those numbers: one task for up to ``FAN`` chunks, else a tree (group
   products, the scan of the groups, then the groups' members), depth ``log_FAN(nc)``;
3. the carries repaired at the chunk boundaries (:mod:`._repair`: a ratio sweep per chunk, then
   bounded rounds of small per-chunk tasks that re-run a chunk from its predecessor's last
   ratio where the two disagree);
4. a second pass per chunk from its carries, producing the chunk's slice of the result.

The resolvent diagonal's graph (:mod:`._resolvent`) merges steps 3 and 4: its second pass runs
from the scanned carries and hands on the ratios leaving the chunk, which the repair checks.

Every task reads one chunk of the inputs (plus O(1) numbers per row from its neighbours and the
scan) and writes one chunk of the result, so per-task memory is O(chunk) and only O(nc) numbers
per row travel between workers for the scans.
"""

from __future__ import annotations

import operator
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from . import _repair, _resolvent
from . import _tasks as T

#: the scan's fan-in: up to FAN chunks' summaries are combined in one task
FAN = 32


class _Graph:
    """A low-level task graph under construction: ``g(fn, *args)`` adds the task
    ``fn(*args)`` (arguments that are keys of this graph or of the inputs are replaced by their
    values) and returns its key."""

    def __init__(self, name: str):
        self.name = name
        self.dsk: dict = {}

    def __call__(self, fn: Any, *args: Any, nout: int | None = None) -> Any:
        key = (f"{getattr(fn, '__name__', 'task')}-{self.name}", len(self.dsk))
        self.dsk[key] = (fn,) + args
        if nout is None:
            return key
        return [self(operator.getitem, key, i) for i in range(nout)]

    def array(self, suffix: str, blocks: dict, chunks: tuple, dtype: Any, inputs: list) -> Any:
        """A dask array whose block ``index`` is the value of ``blocks[index]`` (a key)."""
        name = f"{self.name}-{suffix}"
        dsk = dict(self.dsk)
        for index, key in blocks.items():
            dsk[(name,) + index] = key  # an alias
        hlg = HighLevelGraph.from_collections(name, dsk, dependencies=inputs)
        return da.Array(hlg, name, chunks, dtype=dtype)


def scan(g: _Graph, kind: str, maps: list, reverse: bool = False, fan: int | None = None) -> list:
    """The states entering each of ``maps`` (keys), the first being None (the chain's start);
    ``reverse``: from the last map to the first; ``fan`` default :data:`FAN`."""
    fan = FAN if fan is None else fan
    if reverse:
        return scan(g, kind, maps[::-1], fan=fan)[::-1]
    n = len(maps)
    if n <= fan:
        return g(T.seq_scan, kind, None, *maps, nout=n)
    groups = [maps[i:i + fan] for i in range(0, n, fan)]
    gins = scan(g, kind, [g(T.compose_all, kind, *grp) for grp in groups], fan=fan)
    out: list = []
    for grp, gin in zip(groups, gins, strict=True):
        out.extend(g(T.seq_scan, kind, gin, *grp, nout=len(grp)))
    return out


def reduce(g: _Graph, fn: Any, items: list, fan: int | None = None) -> Any:
    """``fn(*items)`` as a tree of tasks of fan-in ``fan`` (default :data:`FAN`)."""
    fan = FAN if fan is None else fan
    while len(items) > 1:
        items = [g(fn, *items[i:i + fan]) for i in range(0, len(items), fan)]
    return items[0]


def layout(alpha: Any, x: Any) -> Any:
    """``x (B, N-1)`` shifted to ``(B, N)`` with a leading zero column (``out[:, i] = x[:, i-1]``)
    and chunked like ``alpha``."""
    B = alpha.shape[0]
    x = x.rechunk({0: alpha.chunks[0]})
    z = da.zeros((B, 1), dtype=x.dtype, chunks=(alpha.chunks[0], 1))
    return da.concatenate([z, x], axis=1).rechunk(alpha.chunks)


class _Rows:
    """The keys of one block of rows: ``A[k]``, ``BL[k]`` (``betaL``), ``bo[k]`` (the coupling
    after chunk k), ``pm``, the row offset and the chunk sizes."""

    def __init__(self, g: _Graph, A: list, BL: list, pm: Any, row0: int, rows: int, widths: tuple):
        self.A, self.BL, self.pm, self.row0, self.rows, self.widths = A, BL, pm, row0, rows, widths
        nc = len(A)
        self.nc = nc
        self.bo = [g(T.first_column, BL[k + 1]) for k in range(nc - 1)] + [g(T.zero_column, BL[-1])]


def row_blocks(g: _Graph, alpha: Any, beta: Any, pivmin: Any, *extra: Any) -> tuple[list, list, list]:
    """``(rows, extras, inputs)``: a :class:`_Rows` per block of rows; for each array of
    ``extra`` (``(B, N-1)`` off-diagonals laid out like ``betaL``, or ``(B, N, k)`` right-hand
    sides) its block keys ``[row block][chunk]``; the dask arrays the graph reads."""
    betaL = layout(alpha, beta)
    pm = pivmin.rechunk((alpha.chunks[0],))
    A, BL, P = alpha.__dask_keys__(), betaL.__dask_keys__(), pm.__dask_keys__()
    out, row0 = [], 0
    for i, rows in enumerate(alpha.chunks[0]):
        out.append(_Rows(g, list(A[i]), list(BL[i]), P[i], row0, rows, alpha.chunks[1]))
        row0 += rows
    inputs = [alpha, betaL, pm]
    extras = []
    for x in extra:
        if x.ndim == 3:
            xb = x.rechunk((alpha.chunks[0], alpha.chunks[1], -1))
            keys = xb.__dask_keys__()
            extras.append([[keys[i][k][0] for k in range(len(alpha.chunks[1]))] for i in range(len(out))])
        else:
            xb = layout(alpha, x)
            keys = xb.__dask_keys__()
            extras.append([list(keys[i]) for i in range(len(out))])
        inputs.append(xb)
    return out, extras, inputs


def left_carries(g: _Graph, r: _Rows) -> list:
    """The carry ratios ``gL_{s-1}`` (keys, None for the first chunk): scanned, then repaired
    (:mod:`._repair`)."""
    tr = [g(T.transfer, r.A[k], r.BL[k], r.bo[k], "L") for k in range(r.nc)]
    vL = scan(g, "moebius", [g(T.pick, t, 0) for t in tr])
    return _repair.carries(g, r, vL, "L")


def scanned_carries(g: _Graph, r: _Rows, active: Any) -> tuple[list, list]:
    """The scanned carry ratios ``gL_{s-1}``, ``gR_{e+1}`` of every chunk (keys; None at the
    chain's ends), not repaired (the certificate's threshold is far above their rounding);
    ``active``: the certificate's rows (the transfer tasks skip their work when none is)."""
    tr = [g(T.transfer, r.A[k], r.BL[k], r.bo[k], "LR", active) for k in range(r.nc)]
    vL = scan(g, "moebius", [g(T.pick, t, 0) for t in tr])
    vR = scan(g, "moebius", [g(T.pick, t, 1) for t in tr], reverse=True)
    return [g(T.ratio, v, r.pm) for v in vL], [g(T.ratio, v, r.pm) for v in vR]


def certificate(g: _Graph, r: _Rows, active: Any) -> Any:
    """resolvent_diagonal's singularity certificate ``(B,)`` for the ``active`` rows (the tasks
    do no work when no row is active).  Its carries are the scanned ones: the certificate's
    threshold (``|1/G_ii| < 4 pm``) is far above their rounding."""
    vL, vR = scanned_carries(g, r, active)
    flags = [g(T.certificate_chunk, r.A[k], r.BL[k], r.bo[k], vL[k], vR[k], r.pm, active)
             for k in range(r.nc)]
    return reduce(g, T.any_of, flags)


def _name(what: str, *xs: Any) -> str:
    return f"semisep-{what}-{tokenize(*xs)}"


def last_axis_reduce(what: str, x: Any, chunk: Any, combine: Any, dtypes: tuple) -> tuple:
    """``len(dtypes)`` lazy arrays of shape ``x.shape[:-1]``: ``chunk(block)`` per block of ``x``
    (a tuple of ``(...)``-shaped arrays, one per output), combined over the blocks along the
    last axis by ``combine(*parts)`` in a tree of fan-in :data:`FAN`.  One task per block, each
    reading its block once (the pivot guard's maxima: no temporaries, no second pass)."""
    g = _Graph(_name(what, x))
    keys = x.__dask_keys__()
    out: list = [{} for _ in dtypes]
    for idx in np.ndindex(*x.numblocks[:-1]):
        row = keys
        for i in idx:
            row = row[i]
        total = reduce(g, combine, [g(chunk, k) for k in row])
        for j, o in enumerate(out):
            o[idx] = g(T.pick, total, j)
    return tuple(g.array(f"out{j}", o, x.chunks[:-1], dt, [x]) for j, (o, dt) in enumerate(zip(out, dtypes,
                                                                                                strict=True)))


def resolvent_diagonal(alpha: Any, beta: Any, pivmin: Any, shift: Any = None) -> tuple[Any, Any, Any]:
    """``(G (B, N), guarded (B,), singular (B,))`` lazily (:mod:`._resolvent`); a singular row
    raises :class:`~semisep.errors.SingularMatrixError` when its chunk is computed.
    ``shift (B,)``: ``alpha`` is ``T``'s diagonal (its own dtype) and ``A``'s diagonal is
    ``alpha - shift``, formed inside the tasks."""
    dtype = np.result_type(alpha.dtype, beta.dtype, *(() if shift is None else (shift.dtype,)))
    g = _Graph(_name("resolvent", alpha, beta, pivmin, shift))
    bt = _resolvent.aligned(alpha, beta)
    pm = pivmin.rechunk((alpha.chunks[0],))
    inputs = [alpha, bt, pm]
    S: list = [None] * len(alpha.chunks[0])
    if shift is not None:
        shift = shift.rechunk((alpha.chunks[0],))
        S = shift.__dask_keys__()
        inputs.append(shift)
    AK, BK, PK = alpha.__dask_keys__(), bt.__dask_keys__(), pm.__dask_keys__()
    Gb, gb, sb = {}, {}, {}
    row0 = 0
    for i, rows in enumerate(alpha.chunks[0]):
        res = _resolvent.block(g, FAN, list(AK[i]), list(BK[i]), PK[i], row0, S[i])
        for k, key in enumerate(res):
            Gb[(i, k)] = g(T.pick, key, 0)
        flags = reduce(g, T.any_flags, [g(T.flags_of, x) for x in res])
        gb[(i,)], sb[(i,)] = g(T.pick, flags, 0), g(T.pick, flags, 1)
        row0 += rows
    rc = (alpha.chunks[0],)
    return (g.array("G", Gb, alpha.chunks, dtype, inputs), g.array("guarded", gb, rc, np.int64, inputs),
            g.array("singular", sb, rc, bool, inputs))


def logdet(alpha: Any, beta: Any, pivmin: Any) -> tuple[Any, Any, Any]:
    """``(log det A (B,) complex, guarded, singular)`` lazily, certified as the core does
    where a pivot was guarded; a singular row raises when the result is computed."""
    dtype = np.result_type(alpha.dtype, beta.dtype, np.complex64)
    g = _Graph(_name("logdet", alpha, beta, pivmin))
    rows, _, inputs = row_blocks(g, alpha, beta, pivmin)
    lb, gb, sb = {}, {}, {}
    for i, r in enumerate(rows):
        vL = left_carries(g, r)
        parts = [g(T.logdet_partial, r.A[k], r.BL[k], r.bo[k], vL[k], r.pm, k == r.nc - 1)
                 for k in range(r.nc)]
        summary = reduce(g, T.sum_partials, parts)
        cert = certificate(g, r, g(T.needs_certificate, summary))
        lb[(i,)] = g(T.logdet_final, summary, cert, r.row0)
        gb[(i,)] = g(T.summary_field, summary, 2)
        sb[(i,)] = g(T.or_, g(T.summary_field, summary, 3), cert)
    rc = (alpha.chunks[0],)
    return (g.array("ld", lb, rc, dtype, inputs), g.array("guarded", gb, rc, np.int64, inputs),
            g.array("singular", sb, rc, bool, inputs))


def solve(alpha: Any, upper: Any, lower: Any, f: Any, pivmin: Any) -> tuple[Any, Any, Any]:
    """``(x (B, N, k), guarded, singular)`` for ``A x = f`` lazily (the Thomas algorithm with
    carried pivots and two affine scans); a singular row raises when ``x`` is computed."""
    dtype = np.result_type(alpha.dtype, upper.dtype, lower.dtype, f.dtype)
    g = _Graph(_name("solve", alpha, upper, lower, f, pivmin))
    rows, (CL, BU, F), inputs = row_blocks(g, alpha, upper * lower, pivmin, lower, upper, f)
    xb, gb, sb = {}, {}, {}
    for i, r in enumerate(rows):
        vL = left_carries(g, r)
        stA = [g(T.solve_forward, r.A[k], r.BL[k], r.bo[k], CL[i][k], F[i][k], vL[k], r.pm, k == r.nc - 1)
               for k in range(r.nc)]
        yin = scan(g, "affine", [g(T.get, s, "summary") for s in stA])
        b_out = [g(T.first_column, BU[i][k + 1]) for k in range(r.nc - 1)] + [g(T.zero_column, BU[i][-1])]
        stB = [g(T.solve_backward, stA[k], yin[k], BU[i][k], b_out[k]) for k in range(r.nc)]
        xin = scan(g, "affine", [g(T.get, s, "summary") for s in stB], reverse=True)
        flags = reduce(g, T.any_flags, [g(T.get, s, "flags") for s in stA])
        cert = certificate(g, r, g(T.needs_certificate_flags, flags))
        sing = g(T.or_, g(T.pick, flags, 1), cert)
        for k in range(r.nc):
            xb[(i, k, 0)] = g(T.solve_final, stB[k], xin[k], sing, r.row0)
        gb[(i,)], sb[(i,)] = g(T.pick, flags, 0), sing
    rc = (alpha.chunks[0],)
    return (g.array("x", xb, alpha.chunks + ((f.shape[2],),), dtype, inputs),
            g.array("guarded", gb, rc, np.int64, inputs), g.array("singular", sb, rc, bool, inputs))
