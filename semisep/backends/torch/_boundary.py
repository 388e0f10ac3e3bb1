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
   ``TOL_TRIGGER * eps`` (relative) is the less accurate of the two, and :func:`repair_planar`
   re-runs those chunks (gathered; a few per cent of them) from the previous chunk's last pivot
   -- the sequential sweep across that boundary -- in blocks of ``BLOCK`` steps until the new
   trajectory is within the same tolerance of the stored one (from there on the stored values
   are the sequential sweep's up to that tolerance).  A chunk re-run to its end without merging
   has a new last pivot, so its successor is re-run from it in turn, for at most ``MAX_ROUNDS``
   rounds (a recursion that does not contract, e.g. a clean chain inside its band, passes a
   changed carry on and on; there the stored and the re-run values are equally accurate).
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
#: the next chunk (a recursion that does not contract passes a changed carry on and on)
MAX_ROUNDS = 8


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
    A = torch.complex(Ar[:, b, k], _plane(Ai, b, k) if Ai is not None else torch.zeros_like(Ar[:, b, k]))
    Bp = Br[:, b, k].to(cdt) if Bi is None else torch.complex(Br[:, b, k], Bi[:, b, k])
    t0 = 0
    while b.numel():
        t1 = min(t0 + BLOCK, L)
        D = torch.empty((t1 - t0,) + tuple(b.shape), dtype=cdt, device=A.device)
        G = torch.empty_like(D)
        rows = zip(A[t0:t1].unbind(0), Bp[t0:t1].unbind(0), D.unbind(0), G.unbind(0), strict=True)
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
        A, Bp = A[:, keep], Bp[:, keep]
        t0 = t1
    return b, k, g, lo, hi


def repair_planar(planes, num: torch.Tensor, den: torch.Tensor, Gp: torch.Tensor | None,
                  Dp: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Re-run the chunks whose scanned carry disagrees with the previous chunk's last pivot
    (module docstring), in place.

    ``planes = (Ar, Ai, Br, Bi)`` as in ``_second_pass_planar`` (``Ar, Br (L, B, nc)`` real;
    ``Ai`` the same, ``(L, B, 1)`` or None; ``Bi`` the same or None); ``num, den (B, nc-1)``
    complex: the carries into chunks ``1 .. nc-1``; ``Gp (2, L, B, nc)`` = ``(Re g, -Im g)`` and/or
    ``Dp (2, L, B, nc)`` = ``(Re d, Im d)`` (at least one given) are the pass's results, updated
    in place.  Returns None when nothing was re-run, else ``(min |d|, max |d|)`` over the
    re-run pivots (0-d tensors, NaN-propagating) for the caller's pivot certificate."""
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


def repair_extrema(planes, num, den, Gp, Dp, mn: torch.Tensor, mx: torch.Tensor):
    """:func:`repair_planar`, then the pass's running ``(min |d|^2, max |d|^2)`` ``mn, mx``
    widened by the re-run pivots' (unchanged where nothing was re-run)."""
    rep = repair_planar(planes, num, den, Gp, Dp)
    if rep is None:
        return mn, mx
    return torch.minimum(mn, rep[0] * rep[0]), torch.maximum(mx, rep[1] * rep[1])
