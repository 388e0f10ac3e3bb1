"""Task graphs of the Dask backend: the chunked sweeps of :mod:`semisep.backends.numpy.chunks`
laid out over the blocks of ``(B, N)`` dask arrays.

For every block of rows (batch chunks are independent) and the ``nc`` chunks along N:

1. a transfer task per chunk (its 2 x 2 matrices, a few numbers per row);
2. an exact scan over those numbers: one task for up to ``FAN`` chunks, else a tree (group
   products, the scan of the groups, then the groups' members), depth ``log_FAN(nc)``;
3. a second pass per chunk from its carries, producing the chunk's slice of the result.

Every task reads one chunk of the inputs (plus O(1) numbers per row from its neighbours and the
scan) and writes one chunk of the result, so per-task memory is O(chunk) and only O(nc) numbers
per row travel between workers for the scans.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from dask import delayed

from . import _tasks as T

#: the scan's fan-in: up to FAN chunks' summaries are combined in one task
FAN = 32


def _d(fn: Any, *args: Any, nout: int | None = None) -> Any:
    return delayed(fn, pure=True, nout=nout)(*args)


def scan(kind: str, maps: list, reverse: bool = False, fan: int = FAN) -> list:
    """The states entering each of ``maps`` (delayed), the first being None (the chain's
    start); ``reverse``: from the last map to the first."""
    if reverse:
        return scan(kind, maps[::-1], fan=fan)[::-1]
    n = len(maps)
    if n <= fan:
        return list(_d(T.seq_scan, kind, None, *maps, nout=n))
    groups = [maps[i:i + fan] for i in range(0, n, fan)]
    gins = scan(kind, [_d(T.compose_all, kind, *g) for g in groups], fan=fan)
    out: list = []
    for g, gin in zip(groups, gins):
        out.extend(_d(T.seq_scan, kind, gin, *g, nout=len(g)))
    return out


def reduce(fn: Any, items: list, fan: int = FAN) -> Any:
    """``fn(*items)`` as a tree of tasks of fan-in ``fan``."""
    while len(items) > 1:
        items = [_d(fn, *items[i:i + fan]) for i in range(0, len(items), fan)]
    return items[0]


def layout(alpha: Any, x: Any) -> Any:
    """``x (B, N-1)`` shifted to ``(B, N)`` with a leading zero column (``out[:, i] = x[:, i-1]``)
    and chunked like ``alpha``."""
    B = alpha.shape[0]
    x = x.rechunk({0: alpha.chunks[0]})
    z = da.zeros((B, 1), dtype=x.dtype, chunks=(alpha.chunks[0], 1))
    return da.concatenate([z, x], axis=1).rechunk(alpha.chunks)


class _Rows:
    """The delayed blocks of one block of rows: ``A[k]``, ``BL[k]`` (``betaL``), ``bo[k]`` (the
    coupling after chunk k), ``pm``, the row offset and the chunk sizes."""

    def __init__(self, A: list, BL: list, pm: Any, row0: int, rows: int, widths: tuple):
        self.A, self.BL, self.pm, self.row0, self.rows, self.widths = A, BL, pm, row0, rows, widths
        nc = len(A)
        self.nc = nc
        self.bo = [_d(T.first_column, BL[k + 1]) for k in range(nc - 1)] + [_d(T.zero_column, BL[-1])]


def row_blocks(alpha: Any, beta: Any, pivmin: Any, *extra: Any) -> tuple[list, list]:
    """``(rows, extras)``: a :class:`_Rows` per block of rows, and for each array of ``extra``
    (``(B, N-1)`` off-diagonals laid out like ``betaL``, or ``(B, N, k)`` right-hand sides) its
    delayed blocks ``[row block][chunk]``."""
    alpha = alpha.rechunk({1: alpha.chunks[1]})
    betaL = layout(alpha, beta)
    pm = pivmin.rechunk((alpha.chunks[0],))
    A = alpha.to_delayed(optimize_graph=False)
    BL = betaL.to_delayed(optimize_graph=False)
    P = pm.to_delayed(optimize_graph=False)
    out, row0 = [], 0
    for i, rows in enumerate(alpha.chunks[0]):
        out.append(_Rows(list(A[i]), list(BL[i]), P[i], row0, rows, alpha.chunks[1]))
        row0 += rows
    extras = []
    for x in extra:
        if x.ndim == 3:
            blocks = x.rechunk((alpha.chunks[0], alpha.chunks[1], -1)).to_delayed(optimize_graph=False)
            extras.append([list(blocks[i, :, 0]) for i in range(len(out))])
        else:
            blocks = layout(alpha, x).to_delayed(optimize_graph=False)
            extras.append([list(blocks[i]) for i in range(len(out))])
    return out, extras


def left_carries(r: _Rows, active: Any = None) -> list:
    tr = [_d(T.transfer, r.A[k], r.BL[k], r.bo[k], "L", active) for k in range(r.nc)]
    return scan("moebius", [_d(T.pick, t, 0) for t in tr])


def both_carries(r: _Rows, active: Any = None) -> tuple[list, list]:
    tr = [_d(T.transfer, r.A[k], r.BL[k], r.bo[k], "LR", active) for k in range(r.nc)]
    vL = scan("moebius", [_d(T.pick, t, 0) for t in tr])
    vR = scan("moebius", [_d(T.pick, t, 1) for t in tr], reverse=True)
    return vL, vR


def certificate(r: _Rows, active: Any) -> Any:
    """resolvent_diagonal's singularity certificate ``(B,)`` for the ``active`` rows (the tasks
    do no work when no row is active)."""
    vL, vR = both_carries(r, active)
    flags = [_d(T.certificate_chunk, r.A[k], r.BL[k], r.bo[k], vL[k], vR[k], r.pm, active)
             for k in range(r.nc)]
    return reduce(T.any_of, flags)


def _stack_rows(parts: list, shape_of: Any, dtype: Any) -> Any:
    return da.concatenate([da.from_delayed(p, shape=shape_of(i), dtype=dtype) for i, p in enumerate(parts)],
                          axis=0)


def resolvent_diagonal(alpha: Any, beta: Any, pivmin: Any) -> tuple[Any, Any, Any]:
    """``(G (B, N), guarded (B,), singular (B,))`` lazily; a singular row raises
    :class:`~semisep.errors.SingularMatrixError` when its chunk is computed."""
    dtype = np.result_type(alpha.dtype, beta.dtype)
    rows, _ = row_blocks(alpha, beta, pivmin)
    grid, flags = [], []
    for r in rows:
        vL, vR = both_carries(r)
        res = [_d(T.resolvent_chunk, r.A[k], r.BL[k], r.bo[k], vL[k], vR[k], r.pm, r.row0, True)
               for k in range(r.nc)]
        grid.append([da.from_delayed(_d(T.pick, res[k], 0), shape=(r.rows, r.widths[k]), dtype=dtype)
                     for k in range(r.nc)])
        flags.append(reduce(T.any_flags, [_d(T.flags_of, x) for x in res]))
    G = da.block(grid)
    guarded = _stack_rows([_d(T.pick, f, 0) for f in flags], lambda i: (rows[i].rows,), np.int64)
    singular = _stack_rows([_d(T.pick, f, 1) for f in flags], lambda i: (rows[i].rows,), bool)
    return G, guarded, singular


def logdet(alpha: Any, beta: Any, pivmin: Any) -> tuple[Any, Any, Any]:
    """``(log det A (B,) complex, guarded, singular)`` lazily, certified as the core does
    where a pivot was guarded; a singular row raises when the result is computed."""
    dtype = np.result_type(alpha.dtype, beta.dtype, np.complex64)
    rows, _ = row_blocks(alpha, beta, pivmin)
    lds, gds, sgs = [], [], []
    for r in rows:
        vL = left_carries(r)
        parts = [_d(T.logdet_partial, r.A[k], r.BL[k], r.bo[k], vL[k], r.pm, k == r.nc - 1)
                 for k in range(r.nc)]
        summary = reduce(T.sum_partials, parts)
        cert = certificate(r, _d(T.needs_certificate, summary))
        lds.append(_d(T.logdet_final, summary, cert, r.row0))
        gds.append(_d(T.summary_field, summary, 2))
        sgs.append(_d(T.or_, _d(T.summary_field, summary, 3), cert))
    shape = lambda i: (rows[i].rows,)  # noqa: E731
    return _stack_rows(lds, shape, dtype), _stack_rows(gds, shape, np.int64), _stack_rows(sgs, shape, bool)


def solve(alpha: Any, b: Any, c: Any, f: Any, pivmin: Any) -> tuple[Any, Any, Any]:
    """``(x (B, N, k), guarded, singular)`` for ``A x = f`` lazily (the Thomas algorithm with
    carried pivots and two affine scans); a singular row raises when ``x`` is computed."""
    dtype = np.result_type(alpha.dtype, b.dtype, c.dtype, f.dtype)
    k_rhs = f.shape[2]
    rows, (CL, BU, F) = row_blocks(alpha, b * c, pivmin, c, b, f)
    grid, gds, sgs = [], [], []
    for i, r in enumerate(rows):
        vL = left_carries(r)
        stA = [_d(T.solve_forward, r.A[k], r.BL[k], r.bo[k], CL[i][k], F[i][k], vL[k], r.pm, k == r.nc - 1)
               for k in range(r.nc)]
        yin = scan("affine", [_d(T.get, s, "summary") for s in stA])
        b_out = [_d(T.first_column, BU[i][k + 1]) for k in range(r.nc - 1)] + [_d(T.zero_column, BU[i][-1])]
        stB = [_d(T.solve_backward, stA[k], yin[k], BU[i][k], b_out[k]) for k in range(r.nc)]
        xin = scan("affine", [_d(T.get, s, "summary") for s in stB], reverse=True)
        flags = reduce(T.any_flags, [_d(T.get, s, "flags") for s in stA])
        cert = certificate(r, _d(T.needs_certificate_flags, flags))
        sing = _d(T.or_, _d(T.pick, flags, 1), cert)
        grid.append([[da.from_delayed(_d(T.solve_final, stB[k], xin[k], sing, r.row0),
                                      shape=(r.rows, r.widths[k], k_rhs), dtype=dtype)]
                     for k in range(r.nc)])
        gds.append(_d(T.pick, flags, 0))
        sgs.append(sing)
    x = da.block(grid)
    shape = lambda i: (rows[i].rows,)  # noqa: E731
    return x, _stack_rows(gds, shape, np.int64), _stack_rows(sgs, shape, bool)
