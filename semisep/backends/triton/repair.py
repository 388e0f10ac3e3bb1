"""The boundary repair of the fused kernels, in torch ops with shapes fixed by the layout (no
host sync): the measure 2 of :mod:`semisep.backends.torch._boundary` for the fused path.

The second pass (:mod:`.kernels`) runs every chunk from its carried pivot reciprocals and also
stores each chunk's *end* values: ``gL`` at its last position and ``gR`` at its first (the
ratio recursion itself, contracted over the chunk).  A carry into chunk ``k + 1`` (left; right:
into ``k - 1``) that differs from chunk ``k``'s end value by more than ``TOL_TRIGGER eps``
(relative, ``eps`` of the working precision) is the less accurate of the two, as in the chunked
path.  Then:

1. Walk (per direction): each of the first :func:`slot_count` flagged boundaries starts a
   walker at the flagged chunk from the previous chunk's end value, runs the sequential
   recursion chunk by chunk, writes the carry into every chunk it enters while active, and
   stops (merged) where its value at a chunk's end is within the same tolerance of that
   chunk's end value as last written (the stored one, or the value a walker ahead left
   there); at most :func:`walk_chunks` chunks.  Walkers step in lockstep (no two at one chunk
   in one step); a later step overwrites an earlier one, so the walker from further upstream
   wins and goes on until it agrees with what the one ahead wrote, as in ``repair_planar``.
2. Every chunk a walker entered (``dirty``) is run again, both sweeps, from its final carries:
   ``G``, the certificate's count of rejected pivots and ``max(|Re G|, |Im G|)`` replaced.  All
   the walkers' chunk slots are recomputed (a fixed shape); where a chunk is not dirty the old
   values are written back, and every slot of one chunk computes the same values, so repeated
   writes agree.
3. ``pending (R,)``: rows with more flagged boundaries than slots, or with a walker still
   unmerged after its last chunk; the caller declines them (the chunked path runs them).

The arithmetic is complex in the working precision (complex128 for a wide single-precision
call), from ``alpha = diag - z`` formed in the data's precision, as the kernels do.
"""

from __future__ import annotations

import torch

from ..torch import _boundary

__all__ = ["CAPACITY", "WALK_STEPS", "one_step_carries", "repair_slab", "slot_count",
           "walk_chunks"]


def one_step_carries(P: torch.Tensor, carry: torch.Tensor, R: int, nc: int) -> None:
    """The scanned carries made one chunk step deep, in place (the first measure of
    :mod:`semisep.backends.torch._boundary`): the carry into chunk ``k`` (in sweep order) becomes
    ``ratio(P_{k'} (g_{k'}, 1))`` from the chunk ``k'`` before it, its own transfer matrix and its
    scanned carry ``g_{k'}``, instead of the ratio of a product spanning up to the whole row,
    whose entries are accurate only relative to the product's norm.

    ``P (2, 8, R nc)``: per direction the chunks' 2 x 2 complex transfer matrices, component-
    major ``(p00, p01, p10, p11)`` as (re, im) pairs (:func:`.kernels._store_transfer`);
    ``carry (2, R nc, 2)``: per direction the carried pivot reciprocal into every chunk (left:
    from chunk ``k - 1``; right: from ``k + 1``), as (re, im).  Worked in double precision;
    where the step gives no finite ratio the scanned carry stays."""
    if nc <= 2:  # the carry into the second chunk already comes from one chunk matrix
        return
    wdt = torch.complex128
    Pc = torch.complex(P[:, 0::2].double(), P[:, 1::2].double()).view(2, 4, R, nc).to(wdt)
    g = torch.complex(carry[..., 0].double(), carry[..., 1].double()).view(2, R, nc)
    for d, src, dst in ((0, slice(0, nc - 1), slice(1, nc)), (1, slice(1, nc), slice(0, nc - 1))):
        p00, p01, p10, p11 = Pc[d, 0, :, src], Pc[d, 1, :, src], Pc[d, 2, :, src], Pc[d, 3, :, src]
        gk = g[d, :, src]
        num = p00 * gk + p01
        den = p10 * gk + p11
        new = num / den
        keep = torch.isfinite(new.real) & torch.isfinite(new.imag)
        out = torch.where(keep, new, g[d, :, dst])
        cv = carry[d].view(R, nc, 2)[:, dst]
        cv[..., 0] = out.real
        cv[..., 1] = out.imag


#: the fused path re-runs at once up to one in ``CAPACITY`` of the boundaries per direction
#: (at least ``_boundary.MIN_SLOTS``): its chunks are short (L = 4), so there are many more
#: boundaries than in the chunked path, and a row whose flagged boundaries find no slot is
#: declined (the chunked path runs it), never wrong
CAPACITY = 64
#: each walker runs at most this many steps, in whole chunks (the op count of the walk grows
#: with it: one group of torch ops per chunk)
WALK_STEPS = _boundary.BLOCK


def slot_count(n_boundaries: int) -> int:
    """Walkers per direction for ``n_boundaries`` boundaries: one in :data:`CAPACITY`, at
    least ``_boundary.MIN_SLOTS`` (all of them where fewer)."""
    return min(n_boundaries, max(_boundary.MIN_SLOTS, -(-n_boundaries // CAPACITY)))


def walk_chunks(L: int) -> int:
    """Chunks a walker runs at most: :data:`WALK_STEPS` steps in whole chunks of ``L`` (at
    least one)."""
    return max(1, -(-WALK_STEPS // L))


def _cplx(x: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` reals -> complex ``(...)`` of the same precision."""
    return torch.complex(x[..., 0], x[..., 1])


class _Rows:
    """Gathers of ``alpha_i = diag_i - z`` and ``beta_i`` (0 outside ``0 .. N-2``) at index
    tensors ``(b, i)`` of one slab, in the working complex dtype ``wcdt``."""

    def __init__(self, diag, shift, beta, wcdt):
        self.diag, self.shift, self.beta, self.wcdt = diag, shift, beta, wcdt
        self.N = diag.shape[1]

    def alpha(self, b, i):
        i = i.clamp(0, self.N - 1)
        a = self.diag[b, i].to(self.shift.dtype) - self.shift[b]  # in the data's precision
        return a.to(self.wcdt)

    def beta_at(self, b, j):
        ok = (j >= 0) & (j < self.N - 1)
        if self.N < 2:
            return torch.zeros(j.shape, dtype=self.wcdt, device=j.device)
        v = self.beta[b, j.clamp(0, self.N - 2)].to(self.wcdt)
        return torch.where(ok, v, torch.zeros((), dtype=self.wcdt, device=j.device))


def _walk(rows: _Rows, carry: torch.Tensor, ends: torch.Tensor, R: int, nc: int, L: int,
          right: bool, tol: float, walk: int, dirty: torch.Tensor, pending: torch.Tensor):
    """Step 1 for one direction, in place on ``carry (R nc,)`` (complex) and ``dirty (R nc,)``
    (int counts) and ``pending (R,)``; returns the walkers' chunk slots ``(K, walk)`` (flat
    chunk indices, each distinct within a column)."""
    c2 = carry.view(R, nc)
    e2 = ends.view(R, nc)
    if right:  # carry into chunk k (k < nc-1) against chunk k+1's first gR
        trig = (c2[:, :-1] - e2[:, 1:]).abs() > tol * e2[:, 1:].abs()
    else:  # carry into chunk k+1 against chunk k's last gL
        trig = (c2[:, 1:] - e2[:, :-1]).abs() > tol * e2[:, :-1].abs()
    flat = trig.flatten()  # False where NaN: the certificate sees those
    K = slot_count(flat.shape[0])
    sel = _boundary._slots(flat, K)
    active = flat[sel]
    b = torch.div(sel, nc - 1, rounding_mode="floor")
    k = sel - b * (nc - 1)
    taken = torch.zeros_like(flat)
    taken[sel] = True
    pending |= (flat & ~taken).view(R, nc - 1).any(dim=1)  # flagged, but no slot
    c = k if right else k + 1  # the chunk the walker starts at
    g = ends[b * nc + (c + 1 if right else c - 1)]
    dev = carry.device
    steps = torch.arange(walk, device=dev)
    cw = c[:, None] - steps if right else c[:, None] + steps  # (K, walk): the chunk of each step
    valid = (cw >= 0) & (cw < nc)
    nxt = (cw - 1 >= 0) if right else (cw + 1 < nc)
    idx = b[:, None] * nc + torch.remainder(cw, nc)  # wrapped: the walkers' chunks stay distinct
    # every step's coefficients in one gather (right: each chunk from its last position down)
    t = torch.arange(L, device=dev)
    pos = torch.remainder(cw, nc)[:, :, None] * L + (L - 1 - t if right else t)  # (K, walk, L)
    A = rows.alpha(b[:, None, None], pos)
    Bc = rows.beta_at(b[:, None, None], pos if right else pos - 1)
    cur = ends.clone()  # the end values as the walkers leave them (a walker behind compares
    for w in range(walk):  # with what one ahead of it wrote, and overwrites it until they agree)
        iw = idx[:, w]
        on = active & valid[:, w]
        carry[iw] = torch.where(on, g, carry[iw])
        dirty.index_put_((iw,), on.to(dirty.dtype), accumulate=True)
        for s in range(L):  # the sequential recursion (positions past N: never read back)
            g = torch.reciprocal(A[:, w, s] - Bc[:, w, s] * g)
        old = cur[iw]
        merged = (g - old).abs() <= tol * old.abs()
        cur[iw] = torch.where(on, g, old)
        active = on & ~merged & nxt[:, w]
    left = torch.zeros(R, dtype=torch.int32, device=carry.device)
    left.index_put_((b,), active.to(torch.int32), accumulate=True)
    pending |= left > 0  # a walker unmerged after its last chunk
    return idx


def _rerun(rows: _Rows, ids: torch.Tensor, cl: torch.Tensor, cr: torch.Tensor, thr: torch.Tensor,
           nc: int, L: int):
    """Step 2's arithmetic for chunks ``ids (n,)`` (flat ``row nc + k``) from the carries
    ``cl``, ``cr (R nc,)``: ``(G (n, L), bad (n,), gmax (n,), pos (n, L), inb (n, L))``."""
    N = rows.N
    b = torch.div(ids, nc, rounding_mode="floor")
    k = ids - b * nc
    pos = k[:, None] * L + torch.arange(L, device=ids.device)[None, :]
    inb = pos < N
    A = rows.alpha(b[:, None], pos)
    Bk = rows.beta_at(b[:, None], pos)  # beta_i (coupling to i + 1)
    Bp = rows.beta_at(b[:, None], pos - 1)  # beta_{i-1}
    th = thr[b]
    g, h = cl[ids], cr[ids]
    gl = []
    bad = torch.zeros(ids.shape, dtype=torch.int32, device=ids.device)
    for s in range(L):
        d = A[:, s] - Bp[:, s] * g
        n = d.real * d.real + d.imag * d.imag
        bad += (inb[:, s] & ((n < th) | ~torch.isfinite(n))).to(torch.int32)
        g = torch.reciprocal(d)
        gl.append(g)
    G = [None] * L
    for s in range(L - 1, -1, -1):
        G[s] = gl[s] / (1 - Bk[:, s] * gl[s] * h)
        e = A[:, s] - Bk[:, s] * h
        n = e.real * e.real + e.imag * e.imag
        bad += (inb[:, s] & ((n < th) | ~torch.isfinite(n))).to(torch.int32)
        h = torch.reciprocal(e)
    G = torch.stack(G, dim=1)
    ag = torch.maximum(G.real.abs(), G.imag.abs())
    ag = torch.where(inb, ag, torch.zeros((), dtype=ag.dtype, device=ag.device))
    gmax = torch.where(ag.isnan().any(dim=1), torch.nan, ag.amax(dim=1))
    return G, bad, gmax, pos, inb


def repair_slab(diag, shift, beta, carry, ends, thr, G, bad, gmax, L: int):
    """The repair (module docstring) of one slab of ``R`` rows, in place.

    ``diag (R, N)``, ``shift (R,)``, ``beta (R, N-1)``: the slab's inputs (conjugate views
    resolved; a stride-0 batch allowed); ``carry``, ``ends (2, R nc, 2)``: the carries the
    second pass ran from and its end values (working precision, (re, im)); ``thr (R,)``: the
    certificate's threshold on ``|d|^2``; ``G (R, N)`` complex, ``bad (R, nc)`` int32, ``gmax
    (R, nc)``: the second pass's outputs, updated in place.  Returns ``pending (R,)`` bool."""
    R, N = diag.shape
    nc = carry.shape[1] // R
    dev = diag.device
    pending = torch.zeros(R, dtype=torch.bool, device=dev)
    if nc <= 1:
        return pending
    wdt = carry.dtype
    wcdt = torch.complex128 if wdt == torch.float64 else torch.complex64
    tol = _boundary.TOL_TRIGGER * torch.finfo(wdt).eps
    rows = _Rows(diag, shift, beta, wcdt)
    cl, cr = _cplx(carry[0]), _cplx(carry[1])
    el, er = _cplx(ends[0]), _cplx(ends[1])
    dirty = torch.zeros(R * nc, dtype=torch.int32, device=dev)
    walk = min(walk_chunks(L), nc - 1)
    ids = torch.cat([_walk(rows, cl, el, R, nc, L, False, tol, walk, dirty, pending).flatten(),
                     _walk(rows, cr, er, R, nc, L, True, tol, walk, dirty, pending).flatten()])
    Gn, bn, gn, pos, inb = _rerun(rows, ids, cl, cr, thr.to(wdt), nc, L)
    on = dirty[ids] > 0
    b = torch.div(ids, nc, rounding_mode="floor")
    # positions past N write the chunk's first position's value (the same write as its own)
    p = torch.where(inb, pos, pos[:, :1])
    Gn = torch.where(inb, Gn, Gn[:, :1])
    Gf = G.view(-1)
    flat = b[:, None] * N + p
    Gf[flat] = torch.where(on[:, None], Gn.to(G.dtype), Gf[flat])
    bf, gf = bad.view(-1), gmax.view(-1)
    bf[ids] = torch.where(on, bn, bf[ids])
    gf[ids] = torch.where(on, gn.to(gf.dtype), gf[ids])
    return pending
