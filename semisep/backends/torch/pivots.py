"""The chunked pivot sweeps of the torch backend (plain torch ops, the CUDA path).

Pivot sweep (LU pivots ``d_i``, ``gL_i = 1/d_i``)::

    d_0 = alpha_0,   d_i = alpha_i - beta_{i-1} gL_{i-1}

With ``betap = [0, beta_0, ..., beta_{N-2}]`` each step is the Moebius map
``g -> 1/(alpha_i - betap_i g)``, i.e. the 2x2 matrix ``M_i = [[0, 1], [-betap_i, alpha_i]]``
acting projectively on ``(num, den)`` with ``gL_i = num/den``.  The UL pivots ``gR`` are the same
sweep on the reversed sequence.  :func:`_pivots_chunked` (twin
:func:`semisep.backends.torch.reference._pivots_ref`) on the chunk layout of
:mod:`semisep.backends.torch.chunks`:

(i) In-chunk pass: the chunk transfer matrix ``P_k = M_{e_k} ... M_{s_k}``, computed as the
    three-term recursion on the two unit vectors, renormalised by a power of two (``frexp``)
    every few steps; the problem is first scaled by a power of two ``s`` so that
    ``|alpha/s|, |beta/s^2| < 1`` (exact, and then one step grows the state by at most 2x).
(ii) Chunk scan: inclusive prefix products ``Q_k = P_k ... P_0`` by a log-depth Hillis-Steele
    scan (``ceil(log2 nc)`` levels of batched 2x2 products, each level renormalised by a power of
    two; projective quantities only need the direction, so no log-scale is kept -- the
    log-determinant is the sum of ``log d_i`` of the second pass).
(iii) Second in-chunk pass: the ordinary ratio recursion ``d = alpha - betap g``, ``g = 1/d``
    started from the carried ``g_{s_k-1} = num/den`` of ``Q_{k-1} (0, 1)^T``.  Values are thus
    produced by at most ``L`` sequential steps from an accurate carry, which keeps the accuracy
    close to the sequential sweep (a full-length scan is not: docs/mathematics.md).

CPU layout.  Pass (i) keeps its state component-major ``(2, B, nc)`` (a trailing size-2
broadcast is ~10x slower in torch's CPU kernels).  Complex sweeps run on real planes (``Re``/``Im``
of ``alpha`` and ``betap``; pass (i)'s state ``(re/im, component, B, nc)``, pass (iii)'s
``(Re g, -Im g)``), because torch's complex CPU kernels and strided real views of complex tensors
cost 2-4x as much as contiguous real ops.  Without autograd, a real operator at a complex ``z``
writes the layouts straight from ``diag``, the shift and ``beta`` (``Im alpha`` is one number per
row), lays the reversed sweep out front-padded so that it aligns with the forward one after a
flip, and combines ``G`` in the layout (:func:`_resolvent_chunked_shifted`).

The pivot guard (contract): a pivot ``d`` with ``|d| < pivmin`` becomes ``pivmin * d/|d|``
(``pivmin`` if ``d == 0``) and is counted.  Pass (iii) first runs unguarded, with a running
min/max of ``|d|^2`` as the certificate.  If some pivot may need the guard (``|d|^2 < pivmin^2
(1 + 8 eps)``, ``|d|^2`` not a normal number, or NaN) it is re-run with the guard in the loop
(torch's exact ``abs`` and ``reciprocal``), which decides exactly; the projective chunk scan needs
none (a zero leading minor is just ``den = 0``).  In that guarded re-run, a chunk whose
predecessor ended on a guarded pivot (or whose carry had to be guarded, or disagrees with the
predecessor's last pivot by more than sqrt(eps)) restarts from the predecessor's own last pivot
(:func:`_guarded_second_pass`).
"""

from __future__ import annotations

import math

import torch

from . import _boundary
from .chunks import (
    _absmax_pair,
    _absmax_rows,
    _chunk_layout,
    _chunk_write,
    _complex_plane,
    _flipped,
    _from_chunks,
    _from_chunks_scaled,
    _pivot_chunk_length,
    _pow2_scale,
    _real_dtype,
    _sgn1,
    _transpose_into,
)
from .pool import _Arena


def _pivots_chunked(alpha: torch.Tensor, beta: torch.Tensor, pivmin: torch.Tensor, L: int | None = None,
                    renorm_every: int | None = None, both: bool = False, mask_none: bool = False,
                    guard: str = "auto"):
    """LU pivots by the chunked Moebius scan (see the module docstring).  Same I/O as
    :func:`_pivots_ref`: ``alpha (B, N)``, ``beta (B, N-1)``, ``pivmin (B,)`` ->
    ``(g, d, guarded_mask)``, each ``(B, N)``.  No autograd (call it under ``no_grad``).

    ``both=True``: also the sweep of the reversed sequence (the UL pivots, in reversed order):
    ``g`` is then the pair ``(g_left, g_right_reversed)`` (separate buffers), the mask has
    rows ``B..2B-1`` for the reversed sweep, and ``d`` is not returned (None).
    ``mask_none=True``: the mask is None when no pivot was guarded (saves a (B, N) pass).

    ``guard`` (when the pivot guard runs): ``"auto"`` reads the unguarded pass's certificate
    (one host sync) and re-runs with the guard where it fails; ``"defer"`` does not read it and
    returns a fourth element ``ok`` (0-d bool tensor; False: the results are void and the call
    must be repeated with ``"force"``), with no guard applied (the mask as for no guarded
    pivot); ``"force"`` runs the guarded pass straight away (no host sync here)."""
    if alpha.is_complex():
        ar, ai = torch.view_as_real(alpha).unbind(-1)
        br, bi = torch.view_as_real(beta).unbind(-1)
        rows = _PlanarRows(ar, ai, br, bi, alpha.dtype)
    else:
        rows = _PlanarRows(alpha, None, beta, None, alpha.dtype)
    return _pivots_chunked_rows(rows, _absmax_rows(alpha), _absmax_rows(beta), pivmin, L, renorm_every,
                                both, mask_none, guard)


def _prescale_exponent(amax_a: torch.Tensor, amax_b: torch.Tensor, N: int, rdt: torch.dtype) -> torch.Tensor:
    """The exponent ``e (B,)`` of the pivot sweeps' exact power-of-two prescaling ``s = 2^e``,
    from the rows' ``m(alpha)``, ``m(beta)`` with ``m(x) = max(|re x|, |im x|)``: ``m(alpha/s) < 1``
    and ``m(beta/s^2) < 1``, so ``|alpha/s|, |beta/s^2| < sqrt 2`` and one step of the three-term
    recursion grows the state by less than 3 (a zero row keeps ``s = 1``)."""
    ea = torch.frexp(amax_a.to(rdt))[1]
    if N > 1:
        eb = torch.frexp(amax_b.to(rdt))[1]
        ea = torch.maximum(ea, torch.div(eb + 1, 2, rounding_mode="floor"))
    return ea


def _shifted_absmax(diag: torch.Tensor, sr: torch.Tensor, si: torch.Tensor) -> torch.Tensor:
    """``max(|Re alpha|, |Im alpha|)`` per row of ``alpha = diag - (sr + i si)`` without forming
    it: ``max(max d - sr, sr - min d, |si|)`` (rounding is monotone)."""
    if not diag.shape[1]:
        return diag.new_zeros(diag.shape[0])
    lo, hi = torch.aminmax(diag, dim=1)
    return torch.maximum(torch.maximum(hi - sr, sr - lo), si.abs())


def _resolvent_chunked_shifted(diag: torch.Tensor, shift: torch.Tensor, beta: torch.Tensor,
                               pivmin: torch.Tensor, L: int | None = None, defer: bool = False):
    """``G = diag((T - zI)^{-1})`` (B, N) by the chunked sweeps for a real ``diag (B, N)``,
    ``beta (B, N-1)`` and a complex ``shift (B,)``, no autograd; None when some pivot may need
    the guard (the caller then runs the general path, which decides exactly).  ``defer=True``:
    ``(G, ok)`` instead, ``ok`` a 0-d bool tensor (False: ``G`` is void, a pivot may need the
    guard), so that the caller reads it together with its other flags in one host sync.

    Both sweeps run as one planar problem of ``2B`` rows (:func:`_pivots_chunked_rows`), but the
    reversed rows are laid out *front*-padded: flat position ``q`` of the reversed layout then
    holds original index ``nc L - 1 - q``, so flipping that layout in (step, chunk) aligns it
    element for element with the forward layout, and ``G`` is combined in the layout from the
    two pivots: ``G_i = 1/(dL_i + dR_i - alpha_i)`` (``dL_i = alpha_i - beta_{i-1} gL_{i-1}``,
    ``dR_i = alpha_i - beta_i gR_{i+1}``; the same denominator as :func:`_combine_resolvent`'s),
    written straight into the complex result: no ``gL``/``gR`` arrays, no flipped complex copy."""
    B0, N = diag.shape
    if N < 2 or B0 == 0:
        return None
    # the working precision: double, also for a complex64 z (:mod:`._boundary`), from
    # alpha = diag - shift rounded as the shift's precision forms it
    rdt = _real_dtype(shift.dtype)
    sr, si = shift.real.to(rdt), shift.imag.to(rdt)
    diag, beta = diag.to(rdt), beta.to(rdt)
    if rdt == torch.float32:
        rdt = torch.float64
        diag, beta, si = (diag - sr[:, None]).to(rdt), beta.to(rdt), si.to(rdt)
        sr = torch.zeros_like(si)
    dev = diag.device
    L = _pivot_chunk_length(N) if L is None else max(1, min(int(L), N))
    nc = -(-N // L)
    pad = nc * L - N
    ea = _prescale_exponent(_shifted_absmax(diag, sr, si), _absmax_rows(beta), N, rdt)
    inv_s = torch.exp2(-ea.to(rdt))  # (B0,)
    s2 = inv_s * inv_s
    B = 2 * B0
    pm = torch.cat([pivmin, pivmin]).to(rdt) * torch.cat([inv_s, inv_s])
    renorm_every = 4 if rdt == torch.float32 else 8
    with _Arena(dev) as arena:
        Ar = arena.empty((L, B, nc), rdt)
        Br = arena.empty((L, B, nc), rdt)
        # forward rows at offset 0 (end-padded); reversed rows at offset pad (front-padded);
        # padding alpha = 1, betap = 0, and betap = 0 where each real sequence starts
        _chunk_write(Ar[:, :B0], diag, 0, L, 1.0, inv_s, sr)
        _chunk_write(Br[:, :B0], beta, 1, L, 0.0, s2)
        _chunk_write(Ar[:, B0:], _flipped(diag, arena), pad, L, 1.0, inv_s, sr)
        _chunk_write(Br[:, B0:], _flipped(beta, arena), pad + 1, L, 0.0, s2)
        Ai = (-si * inv_s).repeat(2)[None, :, None].expand(L, B, 1)
        planes = (Ar, Ai, Br, None)
        num, den = _chunk_carries_planar(planes, renorm_every)
        _, Dp, ok = _second_pass_planar(planes, num, den, pm, True, arena, keep_g=False)
        if not defer and not bool(ok):
            return None
        # gamma = dL + dR - alpha (scaled by 1/s), in the forward layout
        gam = Dp[:, :, B0:].flip((1, 3))  # (2, L, B0, nc), fresh
        gam.add_(Dp[:, :, :B0])
        gam[0].sub_(Ar[:, :B0])
        gam[1].sub_(Ai[:, :B0])
        gr, gi = gam[0], gam[1]
        n = torch.mul(gr, gr)
        n.addcmul_(gi, gi)
        n.reciprocal_().mul_(inv_s[None, :, None])  # G = conj(gamma/s) / |gamma/s|^2 / s
        # G in the layout's order (contiguous reads), then one transposing copy into the rows
        # (the products written straight through the permuted view read three arrays with a
        # stride of B nc: about 2.5x slower on CPU)
        Gl = torch.empty((L, B0, nc), dtype=shift.dtype, device=dev)
        gv = torch.view_as_real(Gl)
        torch.mul(gr, n, out=gv[..., 0])
        torch.mul(gi, n, out=gv[..., 1]).neg_()
        out = torch.empty((B0, nc, L), dtype=shift.dtype, device=dev)
        if not _transpose_into(out, Gl, L):
            out.copy_(Gl.permute(1, 2, 0))
    G = out.view(B0, nc * L)[:, :N]
    return (G, ok) if defer else G


def _pivots_chunked_shifted(diag: torch.Tensor, shift: torch.Tensor, beta: torch.Tensor, pivmin: torch.Tensor,
                            L: int | None = None, mask_none: bool = True, guard: str = "auto"):
    """Both pivot sweeps of ``alpha = diag - shift`` (``diag (B, N)`` and ``beta (B, N-1)`` real,
    ``shift (B,)`` complex) without forming ``alpha``: the chunk layouts are written straight
    from ``diag`` (``Re alpha``), ``Im alpha = -Im shift`` is one number per row and ``beta``
    has no imaginary part.  Returns what ``_pivots_chunked(alpha, beta, ..., both=True,
    guard=guard)`` does."""
    rdt = _real_dtype(shift.dtype)  # the working precision (a float32 T at a complex128 z: double)
    diag, beta = diag.to(rdt), beta.to(rdt)
    sr, si = shift.real.to(rdt), shift.imag.to(rdt)
    rows = _PlanarRows(diag, -si, beta, None, shift.dtype, shift=sr)
    return _pivots_chunked_rows(rows, _shifted_absmax(diag, sr, si), _absmax_rows(beta), pivmin, L, None,
                                True, mask_none, guard)


class _PlanarRows:
    """The rows of one pivot-sweep problem as real planes: ``Re alpha = re - shift`` (``re (B, N)``,
    ``shift (B,)`` or None), ``Im alpha = im`` (``(B, N)``, ``(B,)`` -- one number per row -- or
    None), ``Re beta = bre (B, N-1)``, ``Im beta = bim`` (``(B, N-1)`` or None); ``dtype`` is the
    problem's (complex or real) dtype.  Real problems have ``im`` and ``bim`` None."""

    def __init__(self, re, im, bre, bim, dtype, shift=None):
        self.re, self.im, self.bre, self.bim, self.dtype, self.shift = re, im, bre, bim, dtype, shift

    @property
    def is_complex(self) -> bool:
        return self.dtype.is_complex


def _pivots_chunked_rows(rows: _PlanarRows, amax_a, amax_b, pivmin, L, renorm_every, both, mask_none,
                         guard: str = "auto"):
    """:func:`_pivots_chunked` on :class:`_PlanarRows`; ``amax_a``, ``amax_b (B0,)`` are the rows'
    ``max(|re|, |im|)`` of alpha and beta (for the power-of-two prescaling)."""
    out = _pivots_chunked_rows_(rows, amax_a, amax_b, pivmin, L, renorm_every, both, mask_none, guard)
    return out if guard == "defer" else out[:3]


def _pivots_chunked_rows_(rows, amax_a, amax_b, pivmin, L, renorm_every, both, mask_none, guard):
    """:func:`_pivots_chunked_rows` returning ``(g, d, mask, ok)`` (``ok`` None unless deferred)."""
    B0, N = rows.re.shape
    B = 2 * B0 if both else B0
    rdt = _real_dtype(rows.dtype)
    if rdt == torch.float32:  # single-precision problems run in double (:mod:`._boundary`),
        rdt = torch.float64  # from alpha = re - shift rounded as the data's precision forms it
        re = rows.re if rows.shift is None else rows.re - rows.shift[:, None]
        rows = _PlanarRows(re.to(rdt), None if rows.im is None else rows.im.to(rdt), rows.bre.to(rdt),
                           None if rows.bim is None else rows.bim.to(rdt), rows.dtype)
    dev = rows.re.device
    if N == 0 or B == 0:
        empty = torch.zeros(B, N, dtype=rows.dtype, device=dev)
        mask = torch.zeros(B, N, dtype=torch.bool, device=dev)
        ok0 = torch.ones((), dtype=torch.bool, device=dev)
        return ((empty[:B0], empty[B0:]), None, mask, ok0) if both else (empty, empty, mask, ok0)
    if L is None:
        L = _pivot_chunk_length(N)
    L = max(1, min(int(L), N))
    if renorm_every is None:
        renorm_every = 4 if rdt == torch.float32 else 8

    ea = _prescale_exponent(amax_a, amax_b, N, rdt)
    if both:
        ea = torch.cat([ea, ea])
    inv_s = torch.exp2(-ea.to(rdt))  # (B,)
    pm = (torch.cat([pivmin, pivmin]) if both else pivmin).to(rdt) * inv_s

    # chunk layouts (L, B, nc), position i = k L + t; padding: alpha = 1, betap = 0 (d = 1, harmless);
    # every (L, B, nc) array is scratch of the arena, the results are fresh tensors
    nc = -(-N // L)
    with _Arena(dev) as arena:
        def layout(x, offset, pad, scale, shift=None):
            parts = [x, (B0, lambda: _flipped(x, arena))] if both else [x]
            return _chunk_layout(parts, offset, N, L, nc, pad, scale, arena, row_shift=shift)

        s2 = inv_s * inv_s
        Ar = layout(rows.re, 0, 1.0, inv_s, None if rows.shift is None else
                    (torch.cat([rows.shift, rows.shift]) if both else rows.shift))
        Br = layout(rows.bre, 1, 0.0, s2) if N > 1 else torch.zeros_like(Ar)  # betap_i = beta_{i-1}
        Ai = Bi = None
        if rows.im is not None and rows.im.dim() == 1:  # one number per row: a (B, 1) plane
            Ai = ((torch.cat([rows.im, rows.im]) if both else rows.im) * inv_s)[None, :, None].expand(L, B, 1)
        elif rows.im is not None:
            Ai = layout(rows.im, 0, 0.0, inv_s)
        if rows.bim is not None and N > 1:
            Bi = layout(rows.bim, 1, 0.0, s2)
        planes = (Ar, Ai, Br, Bi)

        keep_d = not both
        ok = None
        if rows.is_complex:
            num, den = _chunk_carries_planar(planes, renorm_every)
            if guard != "force":
                Gp, Dp, ok = _second_pass_planar(planes, num, den, pm, keep_d, arena)
        else:
            num, den = _chunk_carries(Ar, Br, renorm_every)
            if guard != "force":
                Gp, Dp, ok = _second_pass_unguarded(Ar, Br, num, den, pm, arena=arena)
        if guard == "force" or (guard == "auto" and not bool(ok)):
            # the guarded re-run, on complex layouts (rare: only problems that need the guard)
            Ac, Bc = (Ar, Br) if not rows.is_complex else (_complex_plane(Ar, Ai), _complex_plane(Br, Bi))
            Gp, Dp, mask = _guarded_second_pass(_guarded_pass_fn(Ac, Bc, pm), num, den, pm, B, nc, Ac, rdt)
            if rows.is_complex and num is not None:  # the boundary repair without limits
                Gp, Dp = _repair_exact_complex(planes, num, den, Gp, Dp, mask.any(dim=(0, 2)))
            mask = _from_chunks(mask, N)
        else:
            mask = None if mask_none else torch.zeros(B, N, dtype=torch.bool, device=dev)
        if both:  # the two halves as separate buffers, so that gL and gR do not share one
            gl = _from_chunks_scaled(Gp[..., :B0, :], N, inv_s[:B0], rows.dtype).to(rows.dtype)
            gr = _from_chunks_scaled(Gp[..., B0:, :], N, inv_s[B0:], rows.dtype).to(rows.dtype)
            return (gl, gr), None, mask, ok
        g = _from_chunks_scaled(Gp, N, inv_s, rows.dtype).to(rows.dtype)
        d = _from_chunks_scaled(Dp, N, torch.exp2(ea.to(rdt)), rows.dtype, conj=False).to(rows.dtype)
        return g, d, mask, ok


def _repair_exact_complex(planes, num, den, G, D, skip_rows):
    """:func:`._boundary.repair_exact` on the guarded pass's complex ``G, D (L, B, nc)`` (rows
    with a guarded pivot left alone): the new ``(G, D)``."""
    Gp = torch.stack((G.real, G.imag.neg()))
    Dp = torch.stack((D.real, D.imag))
    _boundary.repair_exact(planes, num, den, Gp, Dp, skip_rows)
    return torch.complex(Gp[0], Gp[1].neg()), torch.complex(Dp[0], Dp[1])


def _chunk_carries(Ac: torch.Tensor, Bc: torch.Tensor, renorm_every: int):
    """Passes (i) and (ii) of the chunked pivot sweep on the chunk layout ``Ac, Bc (L, B, nc)``
    (prescaled, ``Bc`` holding ``betap``): ``(num, den)``, each ``(B, nc-1)``, with
    ``Q_{k-1} (0, 1)^T = (num_k, den_k)`` up to a power of two, i.e. the carried pivot
    reciprocal into chunk ``k >= 1`` is ``num/den`` (``None, None`` when ``nc == 1``).

    State layout ``(2, B, nc)`` (component-major) so that every step is two in-place ops whose
    broadcast runs over the leading dimension (a trailing size-2 dimension makes torch's CPU
    kernels an order of magnitude slower).  Shared with :mod:`semisep.nn.functional`."""
    L, B, nc = Ac.shape
    if nc <= 1:
        return None, None
    # rows (prev, cur) of the three-term recursion started on e_0 = (1, 0), e_1 = (0, 1), in
    # double precision for single-precision data (see :mod:`._boundary`)
    wdt = {torch.float32: torch.float64, torch.complex64: torch.complex128}.get(Ac.dtype, Ac.dtype)
    prev = Ac.new_zeros(2, B, nc, dtype=wdt)
    cur = Ac.new_zeros(2, B, nc, dtype=wdt)
    new = torch.empty_like(cur)
    prev[0] = 1.0
    cur[1] = 1.0
    for t in range(L):
        torch.mul(cur, Ac[t], out=new)
        new.addcmul_(Bc[t], prev, value=-1)
        prev, cur, new = cur, new, prev
        if (t + 1) % renorm_every == 0 or t == L - 1:
            sc = _pow2_scale(_absmax_pair(prev, cur))
            prev.mul_(sc)
            cur.mul_(sc)
    return _transfer_scan(prev, cur)


def _transfer_scan(prev: torch.Tensor, cur: torch.Tensor):
    """Pass (ii): from the chunk transfer matrices ``P_k`` with rows ``prev, cur (2, B, nc)``
    (``P_k[i, j] = (prev, cur)[i][j]``), the carries ``(num, den)`` of :func:`_chunk_carries`."""
    nc = prev.shape[-1]
    # Q[i, j] = (prev, cur)[i][j]: (2, 2, B, nc); inclusive prefix products Q_k = P_k ... P_0 by a
    # Hillis-Steele scan, every level renormalised by a power of two
    Q = torch.stack((prev, cur), dim=0)
    Qn = torch.empty_like(Q)
    off = 1
    while off < nc:
        Qn[..., :off] = Q[..., :off]
        a, b_ = Q[..., off:], Q[..., : nc - off]
        o = Qn[..., off:]
        # the four entries at once: o[i, j] = a[i, 0] b[0, j] + a[i, 1] b[1, j] (broadcast over
        # i and j; two ops per level instead of eight, which at nc ~ 512 are launch-bound)
        torch.mul(a[:, 0:1], b_[0:1], out=o)
        o.addcmul_(a[:, 1:2], b_[1:2])
        o.mul_(_pow2_scale(_absmax_pair(o[0], o[1])))
        Q, Qn = Qn, Q
        off *= 2
    num, den = Q[0, 1, :, :-1], Q[1, 1, :, :-1]
    if nc > 2:  # one step of the chunk recursion v_k = P_k v_{k-1} from the scanned v_{k-1}
        vn = torch.cat([torch.zeros_like(num[:, :1]), num[:, :-1]], dim=1)  # v_{-1} = (0, 1)
        vd = torch.cat([torch.ones_like(den[:, :1]), den[:, :-1]], dim=1)
        rn = torch.mul(prev[0, :, :-1], vn).addcmul_(prev[1, :, :-1], vd)
        rd = torch.mul(cur[0, :, :-1], vn).addcmul_(cur[1, :, :-1], vd)
        keep = torch.isfinite(rn) & torch.isfinite(rd) & ((rn != 0) | (rd != 0))
        num, den = torch.where(keep, rn, num), torch.where(keep, rd, den)
    return num, den


def _chunk_carries_planar(planes, renorm_every: int):
    """:func:`_chunk_carries` for a complex problem held as real planes
    ``planes = (Ar, Ai, Br, Bi)`` (see :func:`_second_pass_planar`): pass (i) in real arithmetic
    on the state ``(re/im, component, B, nc)``, then the same scan.  Same ``(num, den)``."""
    Ar, Ai, Br, Bi = planes
    L, B, nc = Ar.shape
    if nc <= 1:
        return None, None
    wdt = torch.float64 if Ar.dtype == torch.float32 else Ar.dtype  # double for single (_boundary)
    prev = Ar.new_zeros(2, 2, B, nc, dtype=wdt)  # [re/im, component]: the rows started on e_0 and e_1
    cur = Ar.new_zeros(2, 2, B, nc, dtype=wdt)
    new = torch.empty_like(cur)
    prev[0, 0] = 1.0
    cur[0, 1] = 1.0
    for t in range(L):  # new = alpha cur - betap prev, alpha = Ar + i Ai, betap = Br + i Bi
        torch.mul(cur, Ar[t], out=new)
        if Ai is not None:
            new[0].addcmul_(cur[1], Ai[t], value=-1)
            new[1].addcmul_(cur[0], Ai[t])
        new.addcmul_(Br[t], prev, value=-1)
        if Bi is not None:
            new[0].addcmul_(prev[1], Bi[t])
            new[1].addcmul_(prev[0], Bi[t], value=-1)
        prev, cur, new = cur, new, prev
        if (t + 1) % renorm_every == 0 or t == L - 1:
            m = torch.maximum(prev.abs().amax(dim=(0, 1)), cur.abs().amax(dim=(0, 1)))  # NaN-propagating
            sc = _pow2_scale(m)
            prev.mul_(sc)
            cur.mul_(sc)
    return _transfer_scan(torch.complex(prev[0], prev[1]), torch.complex(cur[0], cur[1]))


def _second_pass_planar(planes, num, den, pm, keep_d: bool, arena: _Arena, keep_g: bool = True):
    """Pass (iii) without the guard for a complex problem held as real planes, as
    :func:`_second_pass_unguarded` (same certificate, same ``ok``).

    ``planes = (Ar, Ai, Br, Bi)``: ``Re alpha``, ``Re betap`` ``(L, B, nc)`` real; ``Im alpha`` the
    same or ``(L, B, 1)`` (one number per row), ``Im betap`` the same or None (zero).  Per step,
    in real arithmetic: ``d = alpha - betap g``, ``|d|^2``, ``g = conj(d)/|d|^2``; the state is
    kept as ``(Re g, -Im g)`` so that every step is a handful of contiguous real ops (torch's
    complex CPU kernels and strided real views cost 2-4x as much).  Returns ``(Gp, Dp, ok)``
    (``ok`` a 0-d bool tensor, not read here):
    ``Gp (2, L, B, nc)`` = ``(Re g, -Im g)`` or None (``keep_g=False``), ``Dp`` = ``(Re d, Im d)``
    or None (``keep_d=False``), scratch of ``arena``."""
    Ar, Ai, Br, Bi = planes
    L, B, nc = Ar.shape
    rdt = Ar.dtype
    gr = Ar.new_zeros(B, nc)  # g_{-1}: anything finite (betap_0 = 0)
    gc = Ar.new_zeros(B, nc)
    if num is not None:
        g0 = num / den
        gr[:, 1:] = g0.real
        gc[:, 1:] = g0.imag
        gc[:, 1:].neg_()
    Gp = arena.empty((2, L, B, nc), rdt) if keep_g else None
    Dp = arena.empty((2, L, B, nc), rdt) if keep_d else None
    dr_buf = torch.empty_like(gr)
    di_buf = torch.empty_like(gr)
    n = torch.empty_like(gr)
    r = torch.empty_like(gr)
    mn = torch.full_like(n, math.inf)
    mx = torch.zeros_like(n)
    zero_im = Ai is None
    for t in range(L):
        dr = torch.addcmul(Ar[t], Br[t], gr, value=-1, out=dr_buf if Dp is None else Dp[0, t])
        di_out = di_buf if Dp is None else Dp[1, t]
        if zero_im:
            di = torch.mul(Br[t], gc, out=di_out)
        else:
            di = torch.addcmul(Ai[t], Br[t], gc, out=di_out)  # Im d = Ai - Br Im g = Ai + Br gc
        if Bi is not None:  # betap g = (Br gr + Bi gc) + i (Bi gr - Br gc)
            dr.addcmul_(Bi[t], gc, value=-1)
            di.addcmul_(Bi[t], gr, value=-1)
        torch.mul(dr, dr, out=n)
        n.addcmul_(di, di)
        torch.minimum(mn, n, out=mn)  # NaN-propagating
        torch.maximum(mx, n, out=mx)
        torch.reciprocal(n, out=r)
        # (without Gp the state is overwritten in place: dr, di no longer depend on it)
        gr = torch.mul(dr, r, out=gr if Gp is None else Gp[0, t])
        gc = torch.mul(di, r, out=gc if Gp is None else Gp[1, t])
    # chunks whose scanned carry disagrees with the previous chunk's last pivot: re-run from it
    mn, mx, pending = _boundary.repair_extrema(planes, num, den, Gp, Dp, mn, mx)
    fin = torch.finfo(rdt)
    thr = torch.clamp(pm * pm * (1 + 8 * fin.eps), min=fin.tiny)  # |d| >= pm, |d|^2 normal
    ok = ((mn.amin(dim=1) >= thr) & (mx.amax(dim=1) <= fin.max)).all()
    # a repair left incomplete (more flagged boundaries than its slots, or unmerged re-runs)
    # voids the results like a pivot that may need the guard: the caller takes the exact path
    return Gp, Dp, ok if pending is None else ok & ~pending


def _second_pass_unguarded(Ac, Bc, num, den, pm, arena: _Arena | None = None):
    """Pass (iii) of a real problem without the guard: ``d = alpha - betap g``, ``g = 1/d`` in
    every chunk from the carries ``num/den``.  Returns ``(G, D, ok)``, ``G, D (L, B, nc)``; ``ok``
    (a 0-d bool tensor, not read here) is True when no pivot needs the guard (then ``G, D`` are
    the sweep's values) and False when some pivot may (``|d| < pm`` or NaN): the caller then
    re-runs the guarded pass, which decides exactly.  ``arena``: ``G`` and ``D`` are its scratch
    tensors.  Complex problems run :func:`_second_pass_planar`."""
    L, B, nc = Ac.shape
    g = Ac.new_zeros(B, nc)  # g_{-1}: anything finite (betap_0 = 0)
    if num is not None:
        torch.div(num, den, out=g[:, 1:])

    def scratch() -> torch.Tensor:
        return torch.empty_like(Ac) if arena is None else arena.empty(tuple(Ac.shape), Ac.dtype)

    D = scratch()
    G = scratch()
    for t in range(L):
        torch.addcmul(Ac[t], Bc[t], g, value=-1, out=D[t])
        g = torch.reciprocal(D[t], out=G[t])
    absd = D.abs().amin(dim=(0, 2))
    return G, D, (absd >= pm).all()


def _guarded_pass_fn(Ac, Bc, pm):
    """The guarded ratio recursion inside every chunk from carries ``g (B, nc)`` (torch's exact
    ``abs`` and ``reciprocal``): ``(G, D, mask)``, each ``(L, B, nc)``."""
    def second_pass(g, guard: bool = True):
        L = Ac.shape[0]
        D = torch.empty_like(Ac)
        G = torch.empty_like(Ac)
        mask = torch.zeros(Ac.shape, dtype=torch.bool, device=Ac.device)
        pmb = pm[:, None]
        for t in range(L):
            d = torch.addcmul(Ac[t], Bc[t], g, value=-1)
            small = d.abs() < pmb
            d = torch.where(small, pmb * _sgn1(d), d)
            D[t] = d
            mask[t] = small
            g = torch.reciprocal(d, out=G[t])
        return G, D, mask
    return second_pass


def _guarded_second_pass(second_pass, num, den, pm, B, nc, Ac, rdt):
    """The guarded second pass, with carries made consistent with the sweep near guard events.

    A carried ``g = num/den`` is guarded like any pivot (``d = den/num``).  Near a (nearly) zero
    leading minor the scan's projective carry and the previous chunk's own last pivot can differ
    by O(1) (e.g. both guarded, with different phases), and a factorization mixing the two is
    inconsistent (the solve's iterative refinement then converges slowly).  So wherever the
    previous chunk ended on a guarded pivot, the carry was guarded, or the two differ by more than
    sqrt(eps) relatively, the carry is replaced by the previous chunk's last pivot and the pass is
    re-run -- exactly the sequential sweep across that boundary.  Only guarded problems get here;
    it takes one or two extra passes unless guards cascade over many chunks (at most nc)."""
    carries = Ac.new_zeros(B, nc)
    if nc == 1:
        return second_pass(carries, guard=True)
    pmb = pm[:, None]
    small = den.abs() < pmb * num.abs()
    dc = pmb * _sgn1(den * num.conj())  # the carried pivot d = den/num, guarded
    carries[:, 1:] = torch.where(small, 1.0 / dc, num / torch.where(small, torch.ones_like(den), den))
    fixable = small.clone()
    tol = math.sqrt(torch.finfo(rdt).eps)
    for _ in range(nc):
        G, D, mask = second_pass(carries, guard=True)
        last = G[-1, :, :-1]  # the previous chunk's last pivot reciprocal, (B, nc-1)
        cur = carries[:, 1:]
        fix = fixable | mask[-1, :, :-1] | ((cur - last).abs() > tol * last.abs())
        new = torch.where(fix, last, cur)
        if torch.equal(new, cur):
            break
        carries = torch.cat([carries[:, :1], new], dim=1)
        fixable = fixable & ~fix
    return G, D, mask

