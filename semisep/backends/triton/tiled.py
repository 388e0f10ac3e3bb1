"""The register-tile forms of the fused kernels' per-chunk passes (L a power of two <= 16):
:func:`_transfer_tiled_kernel` and :func:`_second_pass_tiled_kernel`, each program loading its
``BLOCK x L`` slab of diag and beta with one coalesced access and taking columns out of the
register tile.  Their plain twins (element-by-element loads, the same arithmetic) and the
mathematics are in :mod:`.kernels`; the ``triton.jit`` helpers shared with them are imported
from there (Triton resolves a kernel's helpers among its module's globals)."""

from __future__ import annotations

from .kernels import HAVE_TRITON

__all__: list[str] = []

if HAVE_TRITON:
    import triton
    import triton.language as tl

    from .kernels import (  # noqa: F401  (helpers the tiled kernels call by name)
        _absmax_g,
        _alpha,
        _beta,
        _carry,
        _combine,
        _lanes,
        _pivot_step,
        _renorm8,
        _step_columns,
        _store8,
        _store_end,
    )

    @triton.jit
    def _col(tile, cols, t):
        """Column ``t`` of a ``(BLOCK, L)`` register tile (a masked row sum: the tile was loaded
        with one coalesced access, and L is small)."""
        return tl.sum(tl.where(cols == t, tile, 0.0), axis=1)

    @triton.jit
    def _tile(ptr, off2, mask2, other, COMPLEX: tl.constexpr, like):
        """Real and imaginary ``(BLOCK, L)`` tiles at element offsets ``off2``."""
        if COMPLEX:
            re = tl.load(ptr + 2 * off2, mask=mask2, other=other).to(like.dtype)
            im = tl.load(ptr + 2 * off2 + 1, mask=mask2, other=0.0).to(like.dtype)
            return re, im
        re = tl.load(ptr + off2, mask=mask2, other=other).to(like.dtype)
        return re, tl.zeros_like(re)

    @triton.jit
    def _chunk_tiles(diag_ptr, beta_ptr, row, k, live, zr, zi, N, sd, sb, cols,
                     L: tl.constexpr, DIAG_COMPLEX: tl.constexpr, BETA_COMPLEX: tl.constexpr):
        """One chunk per lane (chunk ``k`` of row ``row``, positions ``k L .. k L + L - 1``):
        ``(BLOCK, L)`` tiles of ``alpha_i = diag_i - z`` (1 for ``i >= N``) and ``beta_i`` (0 at
        ``i >= N - 1``),
        each loaded with one coalesced access, and ``beta_{k L - 1}`` per lane (the coupling into
        the chunk's first position from the left; 0 for the first chunk).  Returns
        ``(Ar, Ai, Br, Bi, bpr0, bpi0)``."""
        i2 = k[:, None] * L + cols
        in2 = live[:, None] & (i2 < N)
        Dr, Di = _tile(diag_ptr, row[:, None] * sd + i2, in2, 1.0, DIAG_COMPLEX, zr)
        Br, Bi = _tile(beta_ptr, row[:, None] * sb + i2, in2 & (i2 < N - 1), 0.0, BETA_COMPLEX, zr)
        bpr0, bpi0 = _beta(beta_ptr, row * sb + k * L - 1, live & (k > 0), zr, BETA_COMPLEX)
        # alpha is exactly 1 past the end of the chain, whatever z is (1 - z is 0 at z = 1)
        return (tl.where(in2, Dr - zr[:, None], 1.0), tl.where(in2, Di - zi[:, None], 0.0),
                Br, Bi, bpr0, bpi0)

    @triton.jit
    def _wide(WDT: tl.constexpr, tiles):
        """:func:`_chunk_tiles`' ``(Ar, Ai, Br, Bi, bpr0, bpi0)`` in the working precision
        ``WDT`` (the element type of the call's carries: double for a wide single-precision
        call, where ``alpha`` was formed in the data's precision first)."""
        return (tiles[0].to(WDT), tiles[1].to(WDT), tiles[2].to(WDT), tiles[3].to(WDT),
                tiles[4].to(WDT), tiles[5].to(WDT))

    @triton.jit
    def _chunk_transfer(Ar, Ai, Br, Bi, bpr0, bpi0, k, live, N, cols, L: tl.constexpr,
                        RIGHT: tl.constexpr):
        """Each lane's chunk transfer matrix from :func:`_chunk_tiles`' tiles, renormalised, as
        the 8 reals ``(p00, p01, p10, p11)`` (re, im each): left (``RIGHT = 0``)
        ``P_k = M_{e_k} ... M_{s_k}``, right ``R_k = M'_{s_k} ... M'_{e_k}`` (module docstring);
        the identity where the lane is not live."""
        one = tl.full(bpr0.shape, 1.0, bpr0.dtype)
        zero = tl.zeros_like(one)
        uxr, uxi, uyr, uyi = one, zero, zero, zero
        wxr, wxi, wyr, wyi = zero, zero, one, zero
        for tt in range(L):
            t = tt + RIGHT * (L - 1 - 2 * tt)  # right: L-1 .. 0
            inb = live & (k * L + t < N)
            ar, ai = _col(Ar, cols, t), _col(Ai, cols, t)
            if RIGHT:  # coupled by beta_i
                br, bi = _col(Br, cols, t), _col(Bi, cols, t)
            else:  # coupled by beta_{i-1}: column t-1, or the previous chunk's last
                br = tl.where(t == 0, bpr0, _col(Br, cols, t - 1))
                bi = tl.where(t == 0, bpi0, _col(Bi, cols, t - 1))
            uxr, uxi, uyr, uyi, wxr, wxi, wyr, wyi = _step_columns(
                uxr, uxi, uyr, uyi, wxr, wxi, wyr, wyi, ar, ai, br, bi, inb)
            if tt % 2 == 1:
                uxr, uxi, uyr, uyi, wxr, wxi, wyr, wyi = _renorm8(
                    uxr, uxi, uyr, uyi, wxr, wxi, wyr, wyi)
        return _renorm8(uxr, uxi, wxr, wxi, uyr, uyi, wyr, wyi)

    @triton.jit
    def _chunk_resolvent(Ar, Ai, Br, Bi, bpr0, bpi0, k, live, N, cols, L: tl.constexpr,
                         gr, gi, hr, hi, thr):
        """The second pass over each lane's chunk from its carries ``g = gL_{s_k - 1}`` (left)
        and ``h = gR_{e_k + 1}`` (right): ``d_i = alpha_i - betap_i gL_{i-1}``,
        ``gL_i = 1 / d_i`` forward (kept in a register tile), then backward
        ``G_ii = gL_i / (1 - beta_i gL_i gR_{i+1})`` and ``gR_i = 1 / (alpha_i - beta_i gR_{i+1})``.
        Returns ``(Gr, Gi)`` tiles, the count of pivots the certificate rejects (below ``thr``,
        infinite or NaN), ``max(|Re G|, |Im G|)`` (NaN-aware) per lane, and the chunk's end
        pivot reciprocals ``gL`` at its last position and ``gR`` at its first (re, im each)."""
        bad = tl.zeros(gr.shape, tl.int32)
        gmax = tl.zeros_like(gr)
        Lr = tl.zeros_like(Ar)
        Li = tl.zeros_like(Ar)
        for t in range(L):
            inb = live & (k * L + t < N)
            ar, ai = _col(Ar, cols, t), _col(Ai, cols, t)
            br = tl.where(t == 0, bpr0, _col(Br, cols, t - 1))
            bi = tl.where(t == 0, bpi0, _col(Bi, cols, t - 1))
            gr, gi, bad = _pivot_step(ar, ai, br, bi, gr, gi, inb, thr, bad)
            Lr = tl.where(cols == t, gr[:, None], Lr)
            Li = tl.where(cols == t, gi[:, None], Li)
        Gtr = tl.zeros_like(Ar)
        Gti = tl.zeros_like(Ar)
        for tt in range(L):
            t = L - 1 - tt
            inb = live & (k * L + t < N)
            ar, ai = _col(Ar, cols, t), _col(Ai, cols, t)
            br, bi = _col(Br, cols, t), _col(Bi, cols, t)
            lr, li = _col(Lr, cols, t), _col(Li, cols, t)
            Gr, Gi = _combine(lr, li, br, bi, hr, hi)
            Gtr = tl.where(cols == t, Gr[:, None], Gtr)
            Gti = tl.where(cols == t, Gi[:, None], Gti)
            gmax = _absmax_g(Gr, Gi, inb, gmax)
            hr, hi, bad = _pivot_step(ar, ai, br, bi, hr, hi, inb, thr, bad)
        return Gtr, Gti, bad, gmax, gr, gi, hr, hi

    @triton.jit
    def _transfer_tiled_kernel(diag_ptr, beta_ptr, z_ptr, p_ptr, B, N, nc, sd, sb,
                               L: tl.constexpr, DIAG_COMPLEX: tl.constexpr,
                               BETA_COMPLEX: tl.constexpr, BLOCK: tl.constexpr, IDX64: tl.constexpr):
        """``_transfer_kernel`` with each program's ``BLOCK x L`` slab of diag and beta loaded
        once, coalesced, and both directions run from registers (L a power of two)."""
        nc, M, lane, live, row, k, zr, zi = _lanes(z_ptr, B, nc, BLOCK, IDX64)
        cols = tl.arange(0, L)[None, :]
        Ar, Ai, Br, Bi, bpr0, bpi0 = _wide(p_ptr.dtype.element_ty, _chunk_tiles(
            diag_ptr, beta_ptr, row, k, live, zr, zi, N, sd, sb, cols, L, DIAG_COMPLEX, BETA_COMPLEX))
        for right in tl.static_range(2):
            _store8(p_ptr + right * (8 * M), M, lane, live,
                    _chunk_transfer(Ar, Ai, Br, Bi, bpr0, bpi0, k, live, N, cols, L, right))

    @triton.jit
    def _second_pass_tiled_kernel(diag_ptr, beta_ptr, z_ptr, carry_ptr, thr_ptr, g_ptr, bad_ptr,
                                  gmax_ptr, ends_ptr, B, N, nc, sd, sb,
                                  L: tl.constexpr, DIAG_COMPLEX: tl.constexpr,
                                  BETA_COMPLEX: tl.constexpr, BLOCK: tl.constexpr, IDX64: tl.constexpr):
        """``_second_pass_kernel`` from register tiles: diag and beta loaded once (coalesced),
        ``gL`` kept in a register tile, ``G`` stored once (coalesced)."""
        nc, M, lane, live, row, k, zr, zi = _lanes(z_ptr, B, nc, BLOCK, IDX64)
        cols = tl.arange(0, L)[None, :]
        thr = tl.load(thr_ptr + row, mask=live, other=0.0)
        Ar, Ai, Br, Bi, bpr0, bpi0 = _wide(carry_ptr.dtype.element_ty, _chunk_tiles(
            diag_ptr, beta_ptr, row, k, live, zr, zi, N, sd, sb, cols, L, DIAG_COMPLEX, BETA_COMPLEX))
        gr, gi = _carry(carry_ptr, lane, live)
        hr, hi = _carry(carry_ptr + 2 * M, lane, live)
        Gtr, Gti, bad, gmax, gr, gi, hr, hi = _chunk_resolvent(
            Ar, Ai, Br, Bi, bpr0, bpi0, k, live, N, cols, L, gr, gi, hr, hi, thr)
        off2 = 2 * (row[:, None] * N + k[:, None] * L + cols)
        in2 = live[:, None] & (k[:, None] * L + cols < N)
        tl.store(g_ptr + off2, Gtr, mask=in2)
        tl.store(g_ptr + off2 + 1, Gti, mask=in2)
        _store_end(ends_ptr, lane, gr, gi, live)
        _store_end(ends_ptr + 2 * M, lane, hr, hi, live)
        tl.store(bad_ptr + lane, bad, mask=live)
        tl.store(gmax_ptr + lane, gmax, mask=live)
