"""Accuracy at chunk boundaries of the chunked pivot sweeps of :mod:`semisep.backends.torch`.

Pass (iii) of the chunked sweep runs the ratio recursion ``d = alpha - betap g``, ``g = 1/d``
through every chunk from the carry ``g_{s_k - 1} = num/den`` of the chunk scan.  That carry comes
from products of 2x2 transfer matrices, whose entries are accurate to ``eps`` relative to the
matrices' norms only: where the continuant (the leading minors) dips inside a span of the product
-- the left and right solutions of the three-term recursion nearly aligned, near a state of
``T`` localised close to ``z`` -- the projective image loses ``1/f`` of its relative accuracy,
``f`` the depth of the dip, while the step-by-step recursion loses nothing there, and the next
few pivots amplify the carry's error as they amplify rounding.  Three measures keep the chunked
sweep within a small factor of the sequential one:

1. After the log-depth scan, one step of the chunk recursion ``v_k = P_k v_{k-1}`` from the
   scanned ``v_{k-1}`` (``_transfer_scan``): the carry then comes from one chunk's matrix
   instead of products spanning up to half the chain.
2. The last pivot of the previous chunk *is* a product of the recursion: the error of that
   chunk's own carry has been contracted over its ``L`` steps (where the recursion contracts).
   So a carry that differs from the previous chunk's last pivot by more than
   ``TOL_TRIGGER * eps`` (relative) is the less accurate of the two, and those chunks are re-run
   from the previous chunk's last pivot -- the sequential sweep across that boundary -- in
   blocks of ``BLOCK`` steps until the new trajectory is within the same tolerance of the stored
   one (from there on the stored values are the sequential sweep's up to that tolerance).  A
   re-run that reaches its chunk's end unmerged goes on into the next chunk, for a bounded
   number of steps (a recursion that does not contract, e.g. a clean chain inside its band,
   passes a changed carry on and on; there the stored and the re-run values are equally
   accurate).  Two forms, the same values:

   * gathered (:func:`repair_exact`, on CPU): the flagged chunks (a few per cent) are gathered
     and the ones still unmerged filtered after every block, at most :data:`MAX_ROUNDS` rounds
     of chunks -- data-dependent shapes, i.e. host syncs on an accelerator, but the least work;
   * fixed shapes (:func:`repair_planar`, on accelerators): up to one in :data:`CAPACITY`
     boundaries re-run at once, each for :func:`walk_steps` steps, masked where merged: no host
     sync and an op count fixed by the layout.  Where more boundaries are flagged than it has
     slots, it reports ``pending``: the pass's ``ok`` flag (read by the caller together with its
     other flags) then fails, and the caller's exact path -- the guarded pass -- runs the
     gathered form (rows with a guarded pivot left alone).
3. Single-precision problems (float32 / complex64) run the chunked sweeps in double, from
   ``alpha`` formed in the data's precision: the float32 ratio recursion loses ``eps |alpha|/|d|``
   at every small pivot, while the sequential kernels keep their state in double.

``tests/test_chunk_accuracy.py`` checks the chunked results against the sequential sweep and an
extended-precision reference at many boundaries.
"""

from __future__ import annotations

import torch

#: a carry is repaired when it differs from the previous chunk's last pivot by more than this many
#: eps (relative): the sequential recursion's own rounding across one step is a few eps
TOL_TRIGGER = 16.0
#: steps re-run between two checks whether the new trajectory has merged with the stored one
BLOCK = 16
#: at most this many rounds of chunks re-run to their end, each handing its new last pivot on to
#: the next chunk (a recursion that does not contract passes a changed carry on and on), in the
#: exact repair (:func:`repair_exact`)
MAX_ROUNDS = 8
#: the fixed-shape repair (:func:`repair_planar`) re-runs at once up to one in ``CAPACITY`` of the
#: boundaries, and at least ``MIN_SLOTS``
CAPACITY = 4
MIN_SLOTS = 64
#: each of its re-runs walks ``WALK_CHUNKS`` chunk lengths, at least ``MIN_WALK`` steps
WALK_CHUNKS = 2
MIN_WALK = 128


def _plane(x: torch.Tensor | None, b: torch.Tensor, k: torch.Tensor) -> torch.Tensor | None:
    """The chunks ``(b, k)`` of a ``(L, B, nc)`` or ``(L, B, 1)`` plane: ``(L, n)``."""
    if x is None:
        return None
    return x[:, b, k] if x.shape[2] > 1 else x[:, b, 0]


def _stored(Gp, Dp, t, b: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """What the pass stored at step(s) ``t`` of chunks ``(b, k)``, complex: the pivots ``d``
    where ``Dp`` is kept, else the pivot reciprocals ``g``.  (The relative distance between two
    pivots and between their reciprocals agree to first order.)"""
    if Dp is not None:
        return torch.complex(Dp[0, t, b, k], Dp[1, t, b, k])
    return torch.complex(Gp[0, t, b, k], Gp[1, t, b, k].neg())


def _rerun(planes, Gp, Dp, b, k, g, tol: float, lo, hi):
    """Re-run chunks ``k`` of rows ``b`` (index tensors, ``n`` of them) from the carried pivot
    reciprocals ``g (n,)`` (complex) in blocks of :data:`BLOCK` steps, writing ``Gp``/``Dp`` in
    place, until each chunk's new trajectory is within ``tol`` (relative) of the stored one at
    the end of a block (from there on the stored values are the re-run's up to that).  Returns
    the chunks that reached their end without merging, their new last pivot reciprocals, and
    the running ``(min, max)`` of the re-run ``|d|``."""
    Ar, Ai, Br, Bi = planes
    L = Ar.shape[0]
    cdt = torch.complex128 if Ar.dtype == torch.float64 else torch.complex64
    t0 = 0
    while b.numel():
        t1 = min(t0 + BLOCK, L)
        # this block's coefficients of the chunks still running (most merge in the first block)
        ar = Ar[t0:t1, b, k]
        A = torch.complex(ar, _plane(Ai[t0:t1], b, k) if Ai is not None else torch.zeros_like(ar))
        Bp = Br[t0:t1, b, k].to(cdt) if Bi is None else torch.complex(Br[t0:t1, b, k], Bi[t0:t1, b, k])
        D = torch.empty((t1 - t0,) + tuple(b.shape), dtype=cdt, device=A.device)
        G = torch.empty_like(D)
        rows = zip(A.unbind(0), Bp.unbind(0), D.unbind(0), G.unbind(0), strict=True)
        for a, bp, d, gt in rows:  # the sequential recursion d = alpha - betap g, g = 1/d
            g = torch.reciprocal(torch.addcmul(a, bp, g, value=-1, out=d), out=gt)
        old = _stored(Gp, Dp, t1 - 1, b, k)
        new = D[-1] if Dp is not None else g
        if Gp is not None:
            Gp[0, t0:t1, b, k] = G.real
            Gp[1, t0:t1, b, k] = G.imag.neg()
        if Dp is not None:
            Dp[0, t0:t1, b, k] = D.real
            Dp[1, t0:t1, b, k] = D.imag
        lo1, hi1 = torch.aminmax(D.abs())
        lo, hi = torch.minimum(lo, lo1), torch.maximum(hi, hi1)
        # not merged (NaN: not merged); as indices, so that each filter below is one gather
        keep = (~((new - old).abs() <= tol * old.abs())).nonzero().squeeze(1)
        if keep.numel() == b.numel():  # nothing merged: no filtering
            if t1 == L:
                break
            t0 = t1
            continue
        b, k, g = b[keep], k[keep], g[keep]
        if t1 == L:
            break
        t0 = t1
    return b, k, g, lo, hi


def _slots(trig: torch.Tensor, K: int) -> torch.Tensor:
    """``K`` distinct flat indices into ``trig (M,)``: the first flagged entries (in order of
    index), then unflagged ones -- a fixed-size selection, no data-dependent shape."""
    M = trig.shape[0]
    if K >= M:
        return torch.arange(M, device=trig.device)
    flat = torch.arange(M, device=trig.device)
    key = torch.where(trig, flat, flat + M)
    return torch.topk(key, K, largest=False, sorted=False).indices


def slot_count(n_boundaries: int) -> int:
    """The number of boundaries :func:`repair_planar` re-runs at once (fixed by the shape):
    :data:`CAPACITY` of them, at least :data:`MIN_SLOTS`."""
    return min(n_boundaries, max(MIN_SLOTS, -(-n_boundaries // CAPACITY)))


def walk_steps(L: int) -> int:
    """The number of steps each re-run walks (a multiple of :data:`BLOCK`): :data:`WALK_CHUNKS`
    chunk lengths, at least :data:`MIN_WALK` steps."""
    return -(-max(WALK_CHUNKS * L, MIN_WALK) // BLOCK) * BLOCK


def repair_planar(planes, num: torch.Tensor, den: torch.Tensor, Gp: torch.Tensor | None,
                  Dp: torch.Tensor | None):
    """Re-run the chunks whose scanned carry disagrees with the previous chunk's last pivot
    (module docstring), in place, with shapes and op counts fixed by the layout (no host sync).

    ``planes = (Ar, Ai, Br, Bi)`` as in ``_second_pass_planar`` (``Ar, Br (L, B, nc)`` real;
    ``Ai`` the same, ``(L, B, 1)`` or None; ``Bi`` the same or None); ``num, den (B, nc-1)``
    complex: the carries into chunks ``1 .. nc-1``; ``Gp (2, L, B, nc)`` = ``(Re g, -Im g)`` and/or
    ``Dp (2, L, B, nc)`` = ``(Re d, Im d)`` (at least one given) are the pass's results, updated
    in place.

    The first :func:`slot_count` flagged boundaries each start a walker at the flagged chunk's
    first step from the previous chunk's last pivot; walkers step in lockstep (so that no two
    touch the same site in one block: their positions differ by multiples of ``L``), through
    the following chunks while unmerged, for :func:`walk_steps` steps, and write only while
    active.  Returns None when there is nothing to check, else ``(lo, hi, pending)``: ``min |d|``,
    ``max |d|`` over the re-run pivots (0-d, NaN-propagating) for the caller's certificate, and
    ``pending`` (0-d bool): more boundaries flagged than slots, or a walker still unmerged after
    its last step -- the repair is then incomplete and the caller must take the exact path
    (:func:`repair_exact`)."""
    Ar = planes[0]
    L, B, nc = Ar.shape
    if nc <= 1 or num is None or (Gp is None and Dp is None):
        return None
    rdt = Ar.dtype
    dev = Ar.device
    tol = TOL_TRIGGER * torch.finfo(rdt).eps
    every = slice(None, -1)
    last = _stored(Gp, Dp, L - 1, slice(None), every)  # the previous chunk's last, (B, nc-1)
    carry = (den / num if Dp is not None else num / den).to(last.dtype)
    trig = ((carry - last).abs() > tol * last.abs()).flatten()  # False where NaN (certificate)
    M = trig.shape[0]
    K = slot_count(M)
    sel = _slots(trig, K)
    active = trig[sel]
    pending = trig.sum() > K
    g = last.flatten()[sel]
    if Dp is not None:
        g = g.reciprocal()
    b = torch.div(sel, nc - 1, rounding_mode="floor")
    k = sel - b * (nc - 1) + 1  # chunk k + 1 starts from chunk k's last pivot
    # every walker's sites for all steps at once: row position q = k L + s, wrapped past the row's
    # end (those sites are not written) so that the sites of one step stay distinct
    S = walk_steps(L)
    q = (k * L)[None, :] + torch.arange(S, device=dev)[:, None]  # (S, K)
    valid = q < nc * L
    q = torch.where(valid, q, q - nc * L)
    kk = torch.div(q, L, rounding_mode="floor")
    idx = (q - kk * L) * (B * nc) + (b * nc)[None, :] + kk  # flat into (L, B, nc)
    cdt = torch.complex128 if rdt == torch.float64 else torch.complex64
    Ai, Br, Bi = planes[1], planes[2], planes[3]
    if Ai is None:
        A = Ar.take(idx).to(cdt)
    elif Ai.shape[2] == 1:  # one number per row
        A = torch.complex(Ar.take(idx), Ai[0, :, 0][b].expand(S, K))
    else:
        A = torch.complex(Ar.take(idx), Ai.take(idx))
    Bp = Br.take(idx).to(cdt) if Bi is None else torch.complex(Br.take(idx), Bi.take(idx))
    D = torch.empty((S, K), dtype=cdt, device=dev)
    G = torch.empty_like(D)
    wrote = torch.empty((S, K), dtype=torch.bool, device=dev)
    for t0 in range(0, S, BLOCK):
        t1 = t0 + BLOCK
        for t in range(t0, t1):  # the sequential recursion d = alpha - betap g, g = 1/d
            g = torch.reciprocal(torch.addcmul(A[t], Bp[t], g, value=-1, out=D[t]), out=G[t])
        ix = idx[t0:t1]
        w = torch.logical_and(valid[t0:t1], active, out=wrote[t0:t1])
        if Dp is not None:
            o0, o1 = Dp[0].take(ix), Dp[1].take(ix)
            old = torch.complex(o0[-1], o1[-1])
            new = D[t1 - 1]
            Dp[0].put_(ix, torch.where(w, D[t0:t1].real, o0))
            Dp[1].put_(ix, torch.where(w, D[t0:t1].imag, o1))
        if Gp is not None:
            o0, o1 = Gp[0].take(ix), Gp[1].take(ix)
            if Dp is None:
                old = torch.complex(o0[-1], o1[-1].neg())
                new = g
            Gp[0].put_(ix, torch.where(w, G[t0:t1].real, o0))
            Gp[1].put_(ix, torch.where(w, G[t0:t1].imag.neg(), o1))
        # merged with the stored trajectory (NaN: not merged), or at the row's end: done
        merged = (new - old).abs() <= tol * old.abs()
        active = active & ~merged & valid[t1 - 1]
    absd = D.abs()
    lo = torch.where(wrote, absd, torch.inf).amin()
    hi = torch.where(wrote, absd, 0.0).amax()
    return lo, hi, pending


def repair_exact(planes, num: torch.Tensor, den: torch.Tensor, Gp: torch.Tensor | None,
                 Dp: torch.Tensor | None, skip_rows: torch.Tensor | None = None):
    """The repair with data-dependent shapes (host syncs): the flagged chunks are gathered and
    re-run in blocks of :data:`BLOCK` steps until they merge, for at most :data:`MAX_ROUNDS`
    rounds of chunks re-run to their end.  Same arguments as :func:`repair_planar`, in place;
    ``skip_rows (B,)`` bool: rows left alone (rows with guarded pivots, which the re-run does
    not guard).  Returns None when nothing was re-run, else ``(min |d|, max |d|)`` over the
    re-run pivots (0-d tensors, NaN-propagating)."""
    Ar = planes[0]
    L, B, nc = Ar.shape
    if nc <= 1 or num is None or (Gp is None and Dp is None):
        return None
    rdt = Ar.dtype
    tol = TOL_TRIGGER * torch.finfo(rdt).eps
    every = slice(None, -1)
    last = _stored(Gp, Dp, L - 1, slice(None), every)  # the previous chunk's last, (B, nc-1)
    carry = (den / num if Dp is not None else num / den).to(last.dtype)
    trig = (carry - last).abs() > tol * last.abs()  # False where NaN: the certificate sees those
    if skip_rows is not None:
        trig &= ~skip_rows[:, None]
    b, k = trig.nonzero(as_tuple=True)
    if b.numel() == 0:
        return None
    g = last[b, k]
    if Dp is not None:
        g = g.reciprocal()
    k = k + 1  # chunk k + 1 starts from chunk k's last pivot
    lo = torch.full((), float("inf"), dtype=rdt, device=Ar.device)
    hi = torch.zeros((), dtype=rdt, device=Ar.device)
    for _ in range(MAX_ROUNDS):
        b, k, g, lo, hi = _rerun(planes, Gp, Dp, b, k, g, tol, lo, hi)
        if not b.numel():
            break
        # a chunk re-run to its end unmerged: its last pivot moved, and its successor started
        # from the old one
        nxt = (k + 1 < nc).nonzero().squeeze(1)
        b, k, g = b[nxt], k[nxt] + 1, g[nxt]
        if not b.numel():
            break
    return lo, hi


def fixed_shapes(device: torch.device) -> bool:
    """Whether the repair runs with fixed shapes (:func:`repair_planar`, no host sync: on
    accelerators, where a sync stalls the queue of launches) or gathers the flagged chunks
    (:func:`repair_exact`: on CPU, where reading a value costs nothing and the gathered
    re-run does the least work)."""
    return device.type != "cpu"


def repair_extrema(planes, num, den, Gp, Dp, mn: torch.Tensor, mx: torch.Tensor):
    """:func:`repair_planar`, then the pass's running ``(min |d|^2, max |d|^2)`` ``mn, mx``
    widened by the re-run pivots' (unchanged where nothing was re-run): ``(mn, mx, pending)``,
    ``pending`` a 0-d bool tensor (not read here) or None."""
    fixed = fixed_shapes(planes[0].device)
    rep = repair_planar(planes, num, den, Gp, Dp) if fixed else repair_exact(planes, num, den, Gp, Dp)
    if rep is None:
        return mn, mx, None
    return torch.minimum(mn, rep[0] * rep[0]), torch.maximum(mx, rep[1] * rep[1]), rep[2] if fixed else None
