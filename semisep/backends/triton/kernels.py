"""The fused Triton kernels for the resolvent diagonal (complex results, no autograd).

Why.  The ``"chunked"`` torch path is the same algorithm in plain torch ops: every step of every
in-chunk loop is one kernel launch over ``batch x chunks``, so one forward at N = 2^20 is
~1000-7000 launches.  Here the same phases are a handful of Triton kernels that keep each
chunk's recursion in registers (``benchmarks/bench_cuda.py`` times both against a
device-to-device copy of the output; the performance page has the figures).

Notation as in :mod:`semisep.backends.torch`: one batch row, ``alpha_i = diag_i - z``,
``beta_i = lower_i upper_i`` (real or complex), ``betap_i = beta_{i-1}`` (``betap_0 = 0``).

1. Transfer (``_transfer_tiled_kernel``; ``_transfer_kernel`` is its plain twin) -- one lane
   per (row, chunk ``k``), chunk ``s_k .. e_k`` of length L.  Left:
   ``P_k = M_{e_k} ... M_{s_k}`` with ``M_i = [[0, 1], [-betap_i, alpha_i]]`` (the Moebius map
   ``g -> 1/(alpha_i - betap_i g)`` on ``(num, den)``).  Right (the UL sweep
   ``h_i = 1/(alpha_i - beta_i h_{i+1})``): ``R_k = M'_{s_k} ... M'_{e_k}`` with
   ``M'_i = [[0, 1], [-beta_i, alpha_i]]`` (``beta_{N-1} = 0``).  The two columns are carried
   as vectors and renormalised by their largest component every second step (a scalar factor:
   the pivots are projective quantities).  The tiled kernel loads each program's ``BLOCK x L``
   slab of diag and beta with one coalesced access and takes columns out of the register tile
   (L a power of two <= 16); the plain twin reads element by element with stride L between
   lanes.
2. Chunk scan: the carried pivot reciprocal into each chunk, ``gL_{s_k - 1}`` (left) and
   ``gR_{e_k + 1}`` (right), as ``num / den`` of the product of the earlier chunks' matrices
   applied to ``(0, 1)``.  Two levels (``_block_total_kernel``, ``_block_carry_kernel``,
   ``_chunk_carry_kernel``): every block of ``SB`` chunks forms its product with
   ``tl.associative_scan`` (each 2 x 2 complex product renormalised), one program per (row,
   direction) walks the block products, then every block scans again from its carried-in
   vector.  ``_scan_kernel``, one program per (row, direction) walking all chunks, is the
   plain twin (both are bound by reading the 16 reals per chunk of ``P``).
3. Second pass (``_second_pass_tiled_kernel``; ``_second_pass_kernel`` is its twin) -- one lane
   per (row, chunk) again: the ordinary ratio recursion ``d = alpha - betap g``,
   ``g = conj(d) / |d|^2`` forward through the chunk from the left carry (gL kept in a register
   tile), then the UL recursion backward from the right carry, writing
   ``G_ii = gL_i / (1 - beta_i gL_i gR_{i+1})``; G is stored once, coalesced.  Each lane
   also stores its chunk's end values, ``gL`` at the last position and ``gR`` at the first
   (``ends``, laid out as the carries), which the boundary repair (:mod:`.repair`) compares
   with the neighbours' carries.  Between the scan and this pass every carry is made one chunk
   step deep in double precision (:func:`.repair.one_step_carries`).

Working precision.  The transfer matrices, the scans, the carries and both recursions run in
the element type of ``P`` / the carries: the data's precision, or double for a *wide*
complex64 call (``alpha = diag - z`` formed in single precision first, then widened; ``G``
rounded to complex64 once, at the store).  The strided twin of the second pass keeps ``gL``
in ``G``'s memory between its two sweeps, so in a wide call it is rounded there once.

Certificate (no guard is ever applied here).  Every pivot of both sweeps is checked: a lane
counts the pivots with ``|d|^2 < pivmin^2 (1 + 8 eps)``, ``|d|^2`` above the largest finite
number, or NaN, and records ``max(|Re G|, |Im G|)`` (NaN-aware).  A row with a counted pivot
is declined: the caller runs the ``"chunked"`` path, which applies the pivot guard exactly, for
that row only; for the other rows ``guarded = 0`` and ``singular`` follows the kernel contract
from the recorded maxima (the exact ``|G_ii|`` test only where the cheap bound is
inconclusive).  So every row this path returns is one the guarded sweep would also have
produced without a guard.

Indexing.  Every offset is formed in the index type (:func:`_pid`, :func:`_ix` on the program
ids and the integer arguments before any product): int64 where some offset of the call may
pass 2^30 (``IDX64``, from :mod:`.launch`), so ``B N`` is bounded by memory, not by 2^31, and
int32 otherwise (fewer registers and no 64-bit divisions on the common shapes); the
grids put rows, chunks and blocks on the grid's x dimension and only the sweep direction on
y (:mod:`.launch` computes them and the slabs of rows when even x would overflow).  No float
argument is passed (Triton would type a Python float as float32): the overflow test is
``n - n != 0`` (infinite or NaN ``|d|^2``).

This module holds the shared ``triton.jit`` helpers, the strided per-chunk kernels and the
scan kernels; the register-tile kernels are in :mod:`.tiled` (which imports the helpers:
Triton resolves them by name among a kernel's module globals).  :mod:`.ops` launches them all
as one torch operator.

Triton is optional (it ships with CUDA builds of torch); ``semisep.backends.triton.available``
says whether this path can run.  The kernels are checked on CPU by Triton's interpreter
(``TRITON_INTERPRET=1``, tests/test_triton_resolvent.py: tiled vs plain, two-level vs serial
scan, against the NumPy backend and, near chunk boundaries, the sequential sweep) and on a GPU
by tests/test_cuda.py and benchmarks/fused_accuracy.py.
"""

from __future__ import annotations

try:  # optional: CUDA builds of torch bring triton
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except ImportError:  # pragma: no cover - depends on the installation
    HAVE_TRITON = False

__all__ = ["HAVE_TRITON"]


if HAVE_TRITON:

    @triton.jit
    def _ix(x, IDX64: tl.constexpr):
        """``x`` (an integer argument, possibly specialised to a constant) in the index type:
        int64 where ``IDX64`` (some offset of the call may pass 2^30), else int32."""
        if IDX64:  # (one return: the compiler types every return statement)
            y = tl.cast(x, tl.int64)
        else:
            y = tl.cast(x, tl.int32)
        return y

    @triton.jit
    def _pid(AXIS: tl.constexpr, IDX64: tl.constexpr):
        """The program id on ``AXIS`` in the index type (:func:`_ix`)."""
        return _ix(tl.program_id(AXIS), IDX64)

    @triton.jit
    def _rejected(n):
        """A squared pivot modulus the certificate rejects where not already below the
        threshold: infinite or NaN (``n - n`` is 0 exactly for finite ``n``)."""
        return n - n != 0

    @triton.jit
    def _alpha(diag_ptr, off, zr, zi, live, DIAG_COMPLEX: tl.constexpr):
        """alpha = diag - z on live positions; exactly 1 past the end of the chain (a padded
        position must not make a zero pivot, whatever z is: z = 1 would give 1 - z = 0)."""
        if DIAG_COMPLEX:
            ar = tl.load(diag_ptr + 2 * off, mask=live, other=0.0)
            ai = tl.load(diag_ptr + 2 * off + 1, mask=live, other=0.0)
            return (tl.where(live, ar.to(zr.dtype) - zr, 1.0),
                    tl.where(live, ai.to(zr.dtype) - zi, 0.0))
        ar = tl.load(diag_ptr + off, mask=live, other=0.0)
        return tl.where(live, ar.to(zr.dtype) - zr, 1.0), tl.where(live, -zi, 0.0)

    @triton.jit
    def _beta(beta_ptr, off, live, like, BETA_COMPLEX: tl.constexpr):
        if BETA_COMPLEX:
            br = tl.load(beta_ptr + 2 * off, mask=live, other=0.0)
            bi = tl.load(beta_ptr + 2 * off + 1, mask=live, other=0.0)
            return br.to(like.dtype), bi.to(like.dtype)
        br = tl.load(beta_ptr + off, mask=live, other=0.0)
        return br.to(like.dtype), tl.zeros_like(like)

    @triton.jit
    def _step(xr, xi, yr, yi, ar, ai, br, bi):
        """(x, y) -> (y, alpha y - beta x), complex."""
        nr = ar * yr - ai * yi - (br * xr - bi * xi)
        ni = ar * yi + ai * yr - (br * xi + bi * xr)
        return yr, yi, nr, ni

    @triton.jit
    def _absmax8(a, b, c, d, e, f, g, h):
        m1 = tl.maximum(tl.maximum(tl.abs(a), tl.abs(b)), tl.maximum(tl.abs(c), tl.abs(d)))
        m2 = tl.maximum(tl.maximum(tl.abs(e), tl.abs(f)), tl.maximum(tl.abs(g), tl.abs(h)))
        m = tl.maximum(m1, m2)
        return tl.where(m > 0, 1.0 / m, 1.0)

    @triton.jit
    def _step_columns(uxr, uxi, uyr, uyi, wxr, wxi, wyr, wyi, ar, ai, br, bi, inb):
        """One step ``M_i`` applied to both columns ``u``, ``w`` of a chunk's transfer matrix
        where ``inb`` (positions past N leave them unchanged)."""
        a, b, c, d = _step(uxr, uxi, uyr, uyi, ar, ai, br, bi)
        e, f, g, h = _step(wxr, wxi, wyr, wyi, ar, ai, br, bi)
        return (tl.where(inb, a, uxr), tl.where(inb, b, uxi), tl.where(inb, c, uyr),
                tl.where(inb, d, uyi), tl.where(inb, e, wxr), tl.where(inb, f, wxi),
                tl.where(inb, g, wyr), tl.where(inb, h, wyi))

    @triton.jit
    def _renorm8(a, b, c, d, e, f, g, h):
        s = _absmax8(a, b, c, d, e, f, g, h)
        return a * s, b * s, c * s, d * s, e * s, f * s, g * s, h * s

    @triton.jit
    def _store8(ptr, M, idx, mask, e):
        """Store the 8 reals ``e`` of 2 x 2 complex matrices component-major at ``ptr + c M + idx``
        (the layout :func:`_load8` reads)."""
        for c in tl.static_range(8):
            tl.store(ptr + c * M + idx, e[c], mask=mask)

    @triton.jit
    def _store_transfer(base, M, lane, live, uxr, uxi, uyr, uyi, wxr, wxi, wyr, wyi):
        """Store the renormalised matrix ``[[p00, p01], [p10, p11]] = [u | w]`` component-major:
        ``p00 = ux, p01 = wx, p10 = uy, p11 = wy`` at ``base + c M + lane``, c = 0..7."""
        _store8(base, M, lane, live, _renorm8(uxr, uxi, wxr, wxi, uyr, uyi, wyr, wyi))

    @triton.jit
    def _lanes(z_ptr, B, nc, BLOCK: tl.constexpr, IDX64: tl.constexpr):
        """The prologue of the per-chunk kernels (one chunk per lane, ``BLOCK`` lanes per
        program on the grid's x): ``(nc, M, lane, live, row, k, zr, zi)`` -- ``nc`` and
        ``M = B nc`` in the index type, the lanes' flat chunk index ``lane = row nc + k``, which
        lanes hold a chunk, and each lane's row, chunk and shift ``z`` (re, im; 0 where not
        live).  Inlined by Triton: the same loads as written out in each kernel."""
        nc = _ix(nc, IDX64)
        M = _ix(B, IDX64) * nc
        lane = _pid(0, IDX64) * BLOCK + tl.arange(0, BLOCK)
        live = lane < M
        row = lane // nc
        k = lane % nc
        zr = tl.load(z_ptr + 2 * row, mask=live, other=0.0)
        zi = tl.load(z_ptr + 2 * row + 1, mask=live, other=0.0)
        return nc, M, lane, live, row, k, zr, zi

    @triton.jit
    def _carry(ptr, lane, live):
        """A lane's carried pivot reciprocal (complex) at ``ptr + 2 lane`` (re, im; 0 where not
        live): the loads :func:`_store_end` and :func:`_store_ratio` store."""
        return (tl.load(ptr + 2 * lane, mask=live, other=0.0),
                tl.load(ptr + 2 * lane + 1, mask=live, other=0.0))

    @triton.jit
    def _transfer_kernel(diag_ptr, beta_ptr, z_ptr, p_ptr, B, N, nc, sd, sb,
                         L: tl.constexpr, DIAG_COMPLEX: tl.constexpr, BETA_COMPLEX: tl.constexpr,
                         BLOCK: tl.constexpr, IDX64: tl.constexpr):
        nc, M, lane, live, row, k, zr, zi = _lanes(z_ptr, B, nc, BLOCK, IDX64)
        WDT = p_ptr.dtype.element_ty  # the working precision (double for a wide call)
        one = tl.full(zr.shape, 1.0, WDT)
        zero = tl.zeros_like(one)
        for right in tl.static_range(2):
            # columns u = P e0, w = P e1 as (x, y) pairs; left: positions s_k .. e_k coupled
            # by beta_{i-1}; right: e_k .. s_k coupled by beta_i (0 at i = N-1)
            uxr, uxi, uyr, uyi = one, zero, zero, zero
            wxr, wxi, wyr, wyi = zero, zero, one, zero
            for tt in range(L):  # a loop, not unrolled: unrolling L = 32 took ~70 s to compile
                i = k * L + tt + right * (L - 1 - 2 * tt)
                inb = live & (i < N)
                ar, ai = _alpha(diag_ptr, row * sd + i, zr, zi, inb, DIAG_COMPLEX)
                j = i - 1 + right  # the coupling's index
                br, bi = _beta(beta_ptr, row * sb + j, inb & (j >= 0) & (j < N - 1), zr, BETA_COMPLEX)
                ar, ai, br, bi = ar.to(WDT), ai.to(WDT), br.to(WDT), bi.to(WDT)
                uxr, uxi, uyr, uyi, wxr, wxi, wyr, wyi = _step_columns(
                    uxr, uxi, uyr, uyi, wxr, wxi, wyr, wyi, ar, ai, br, bi, inb)
                if tt % 2 == 1:
                    uxr, uxi, uyr, uyi, wxr, wxi, wyr, wyi = _renorm8(
                        uxr, uxi, uyr, uyi, wxr, wxi, wyr, wyi)
            _store_transfer(p_ptr + right * (8 * M), M, lane, live,
                            uxr, uxi, uyr, uyi, wxr, wxi, wyr, wyi)

    @triton.jit
    def _cm(ar, ai, br, bi):
        return ar * br - ai * bi, ar * bi + ai * br

    @triton.jit
    def _matmul_combine(a00r, a00i, a01r, a01i, a10r, a10i, a11r, a11i,
                        b00r, b00i, b01r, b01i, b10r, b10i, b11r, b11i):
        """``B @ A`` (A earlier in the scan order), renormalised by its largest component."""
        x1r, x1i = _cm(b00r, b00i, a00r, a00i)
        x2r, x2i = _cm(b01r, b01i, a10r, a10i)
        c00r, c00i = x1r + x2r, x1i + x2i
        x1r, x1i = _cm(b00r, b00i, a01r, a01i)
        x2r, x2i = _cm(b01r, b01i, a11r, a11i)
        c01r, c01i = x1r + x2r, x1i + x2i
        x1r, x1i = _cm(b10r, b10i, a00r, a00i)
        x2r, x2i = _cm(b11r, b11i, a10r, a10i)
        c10r, c10i = x1r + x2r, x1i + x2i
        x1r, x1i = _cm(b10r, b10i, a01r, a01i)
        x2r, x2i = _cm(b11r, b11i, a11r, a11i)
        c11r, c11i = x1r + x2r, x1i + x2i
        s = _absmax8(c00r, c00i, c01r, c01i, c10r, c10i, c11r, c11i)
        return (c00r * s, c00i * s, c01r * s, c01i * s, c10r * s, c10i * s, c11r * s, c11i * s)

    @triton.jit
    def _load8(ptr, M, idx, live):
        """The 2 x 2 complex matrices stored component-major at ``ptr + c M + idx`` (identity
        where not live)."""
        e0 = tl.load(ptr + 0 * M + idx, mask=live, other=1.0)
        e1 = tl.load(ptr + 1 * M + idx, mask=live, other=0.0)
        e2 = tl.load(ptr + 2 * M + idx, mask=live, other=0.0)
        e3 = tl.load(ptr + 3 * M + idx, mask=live, other=0.0)
        e4 = tl.load(ptr + 4 * M + idx, mask=live, other=0.0)
        e5 = tl.load(ptr + 5 * M + idx, mask=live, other=0.0)
        e6 = tl.load(ptr + 6 * M + idx, mask=live, other=1.0)
        e7 = tl.load(ptr + 7 * M + idx, mask=live, other=0.0)
        return e0, e1, e2, e3, e4, e5, e6, e7

    @triton.jit
    def _pick(x, sel):
        return tl.sum(tl.where(sel, x, 0.0), 0)

    @triton.jit
    def _matvec(s00r, s00i, s01r, s01i, s10r, s10i, s11r, s11i, cxr, cxi, cyr, cyi):
        """``v = S c`` for 2 x 2 complex ``S`` and the 2-vector ``c = (cx, cy)``."""
        x1r, x1i = _cm(s00r, s00i, cxr, cxi)
        x2r, x2i = _cm(s01r, s01i, cyr, cyi)
        y1r, y1i = _cm(s10r, s10i, cxr, cxi)
        y2r, y2i = _cm(s11r, s11i, cyr, cyi)
        return x1r + x2r, x1i + x2i, y1r + y2r, y1i + y2i

    @triton.jit
    def _renorm4(a, b, c, d):
        m = tl.maximum(tl.maximum(tl.abs(a), tl.abs(b)), tl.maximum(tl.abs(c), tl.abs(d)))
        sc = tl.where(m > 0, 1.0 / m, 1.0)
        return a * sc, b * sc, c * sc, d * sc

    @triton.jit
    def _ratio(vxr, vxi, vyr, vyi):
        """``g = vx / vy`` (complex): the pivot reciprocal a state vector (num, den) carries."""
        inv = 1.0 / (vyr * vyr + vyi * vyi)
        return (vxr * vyr + vxi * vyi) * inv, (vxi * vyr - vxr * vyi) * inv

    @triton.jit
    def _store_ratio(ptr, vxr, vxi, vyr, vyi, mask):
        """:func:`_ratio` stored at ``ptr``, ``ptr + 1``: the carried pivot reciprocal."""
        gr, gi = _ratio(vxr, vxi, vyr, vyi)
        tl.store(ptr, gr, mask=mask)
        tl.store(ptr + 1, gi, mask=mask)

    @triton.jit
    def _store_end(ptr, lane, gr, gi, live):
        """A chunk's end pivot reciprocal (complex) at ``ptr + 2 lane`` (layout of the carries):
        the left sweep's ``gL`` at the chunk's last position, or the right sweep's ``gR`` at its
        first (the boundary repair compares them with the neighbours' carries)."""
        tl.store(ptr + 2 * lane, gr, mask=live)
        tl.store(ptr + 2 * lane + 1, gi, mask=live)

    @triton.jit
    def _scan_kernel(p_all_ptr, carry_ptr, B, nc, BLOCK: tl.constexpr, IDX64: tl.constexpr):
        """Program (row, direction).  carry[dir, row * nc + k] (complex, 2 reals): the pivot
        reciprocal carried into chunk k (0 for the first chunk in sweep order)."""
        nc = _ix(nc, IDX64)
        M = _ix(B, IDX64) * nc
        row = _pid(0, IDX64)
        right = _pid(1, IDX64)
        p_ptr = p_all_ptr + right * (8 * M)
        out_ptr = carry_ptr + right * (2 * M)
        # running carry vector (x, y) = (num, den); start (0, 1): g = 0
        cxr = tl.zeros((), dtype=p_all_ptr.dtype.element_ty)
        cxi = cxr
        cyr = cxr + 1.0
        cyi = cxr
        first = tl.where(right == 1, nc - 1, 0)
        tl.store(out_ptr + 2 * (row * nc + first), cxr)
        tl.store(out_ptr + 2 * (row * nc + first) + 1, cxi)
        j0 = nc * 0
        while j0 < nc:  # (a while loop: Triton's interpreter cannot range() over an argument)
            p = j0 + tl.arange(0, BLOCK)  # position in sweep order
            live = p < nc
            k = tl.where(right == 1, nc - 1 - p, p)
            idx = row * nc + k
            s00r, s00i, s01r, s01i, s10r, s10i, s11r, s11i = tl.associative_scan(
                _load8(p_ptr, M, idx, live), 0, _matmul_combine)
            # v = S c, the carry after position p, i.e. into the next chunk in sweep order
            vxr, vxi, vyr, vyi = _matvec(s00r, s00i, s01r, s01i, s10r, s10i, s11r, s11i,
                                         cxr, cxi, cyr, cyi)
            kn = tl.where(right == 1, k - 1, k + 1)
            _store_ratio(out_ptr + 2 * (row * nc + kn), vxr, vxi, vyr, vyi, live & (p + 1 < nc))
            # the carry for the next block: v at the block's last live position, renormalised
            sel = tl.arange(0, BLOCK) == tl.minimum(nc - 1 - j0, BLOCK - 1)
            cxr, cxi, cyr, cyi = _renorm4(_pick(vxr, sel), _pick(vxi, sel), _pick(vyr, sel),
                                          _pick(vyi, sel))
            j0 += BLOCK

    @triton.jit
    def _block_total_kernel(p_all_ptr, tot_ptr, B, nc, nb, SB: tl.constexpr, IDX64: tl.constexpr):
        """Program (row x block, direction), ``row * nb + block`` on the grid's x: the product of
        the block's ``SB`` chunk matrices in sweep order (``tot[dir, :, row * nb + block]``,
        renormalised)."""
        nc = _ix(nc, IDX64)
        nb = _ix(nb, IDX64)
        M = _ix(B, IDX64) * nc
        pid = _pid(0, IDX64)
        row = pid // nb
        blk = pid % nb
        right = _pid(1, IDX64)
        p = blk * SB + tl.arange(0, SB)
        live = p < nc
        k = tl.where(right == 1, nc - 1 - p, p)
        e = _load8(p_all_ptr + right * (8 * M), M, row * nc + k, live)
        s = tl.associative_scan(e, 0, _matmul_combine)
        sel = tl.arange(0, SB) == SB - 1  # dead positions hold the identity: the last is the total
        Mb = _ix(B, IDX64) * nb
        base = tot_ptr + right * (8 * Mb) + row * nb + blk
        tl.store(base + 0 * Mb, _pick(s[0], sel))
        tl.store(base + 1 * Mb, _pick(s[1], sel))
        tl.store(base + 2 * Mb, _pick(s[2], sel))
        tl.store(base + 3 * Mb, _pick(s[3], sel))
        tl.store(base + 4 * Mb, _pick(s[4], sel))
        tl.store(base + 5 * Mb, _pick(s[5], sel))
        tl.store(base + 6 * Mb, _pick(s[6], sel))
        tl.store(base + 7 * Mb, _pick(s[7], sel))

    @triton.jit
    def _block_carry_kernel(tot_ptr, cin_ptr, B, nb, SB: tl.constexpr, IDX64: tl.constexpr):
        """Program (row, direction): the state vector (num, den) carried into each block
        (``cin[dir, :, row * nb + block]``, 4 reals, renormalised), from (0, 1)."""
        nb = _ix(nb, IDX64)
        Mb = _ix(B, IDX64) * nb
        row = _pid(0, IDX64)
        right = _pid(1, IDX64)
        tp = tot_ptr + right * (8 * Mb)
        cp = cin_ptr + right * (4 * Mb)
        cxr = tl.zeros((), dtype=tot_ptr.dtype.element_ty)
        cxi = cxr
        cyr = cxr + 1.0
        cyi = cxr
        tl.store(cp + 0 * Mb + row * nb, cxr)
        tl.store(cp + 1 * Mb + row * nb, cxi)
        tl.store(cp + 2 * Mb + row * nb, cyr)
        tl.store(cp + 3 * Mb + row * nb, cyi)
        j0 = nb * 0
        while j0 < nb:  # (a while loop: Triton's interpreter cannot range() over an argument)
            p = j0 + tl.arange(0, SB)
            live = p < nb
            s00r, s00i, s01r, s01i, s10r, s10i, s11r, s11i = tl.associative_scan(
                _load8(tp, Mb, row * nb + p, live), 0, _matmul_combine)
            vxr, vxi, vyr, vyi = _matvec(s00r, s00i, s01r, s01i, s10r, s10i, s11r, s11i,
                                         cxr, cxi, cyr, cyi)
            vxr, vxi, vyr, vyi = _renorm4(vxr, vxi, vyr, vyi)
            nxt = live & (p + 1 < nb)
            tl.store(cp + 0 * Mb + row * nb + p + 1, vxr, mask=nxt)
            tl.store(cp + 1 * Mb + row * nb + p + 1, vxi, mask=nxt)
            tl.store(cp + 2 * Mb + row * nb + p + 1, vyr, mask=nxt)
            tl.store(cp + 3 * Mb + row * nb + p + 1, vyi, mask=nxt)
            sel = tl.arange(0, SB) == SB - 1
            cxr, cxi, cyr, cyi = _pick(vxr, sel), _pick(vxi, sel), _pick(vyr, sel), _pick(vyi, sel)
            j0 += SB

    @triton.jit
    def _chunk_carry_kernel(p_all_ptr, cin_ptr, carry_ptr, B, nc, nb, SB: tl.constexpr, IDX64: tl.constexpr):
        """Program (row x block, direction), as :func:`_block_total_kernel`: the pivot
        reciprocal carried into each chunk of the block, ``carry[dir, row * nc + k]``
        (complex), from the block's carried-in vector."""
        nc = _ix(nc, IDX64)
        nb = _ix(nb, IDX64)
        M = _ix(B, IDX64) * nc
        Mb = _ix(B, IDX64) * nb
        pid = _pid(0, IDX64)
        row = pid // nb
        blk = pid % nb
        right = _pid(1, IDX64)
        p = blk * SB + tl.arange(0, SB)
        live = p < nc
        k = tl.where(right == 1, nc - 1 - p, p)
        s00r, s00i, s01r, s01i, s10r, s10i, s11r, s11i = tl.associative_scan(
            _load8(p_all_ptr + right * (8 * M), M, row * nc + k, live), 0,
            _matmul_combine)
        cp = cin_ptr + right * (4 * Mb) + row * nb + blk
        cxr = tl.load(cp + 0 * Mb)
        cxi = tl.load(cp + 1 * Mb)
        cyr = tl.load(cp + 2 * Mb)
        cyi = tl.load(cp + 3 * Mb)
        vxr, vxi, vyr, vyi = _matvec(s00r, s00i, s01r, s01i, s10r, s10i, s11r, s11i,
                                     cxr, cxi, cyr, cyi)
        out = carry_ptr + right * (2 * M)
        kn = tl.where(right == 1, k - 1, k + 1)
        _store_ratio(out + 2 * (row * nc + kn), vxr, vxi, vyr, vyi, live & (p + 1 < nc))
        if blk == 0:  # the first chunk in sweep order: g = 0 (its first coupling is 0)
            first = tl.where(right == 1, nc - 1, 0)
            tl.store(out + 2 * (row * nc + first), 0.0)
            tl.store(out + 2 * (row * nc + first) + 1, 0.0)

    @triton.jit
    def _pivot_step(ar, ai, br, bi, gr, gi, inb, thr, bad):
        """One step of a pivot sweep of the second pass: the pivot ``d = alpha - beta g`` from
        the previous reciprocal ``g`` (``gL_{i-1}`` left, ``gR_{i+1}`` right), and its
        reciprocal ``1/d`` (re, im); ``bad`` counts the live pivots the certificate rejects
        (``|d|^2`` below ``thr``, infinite or NaN).  Returns ``(re 1/d, im 1/d, bad)``."""
        dr = ar - (br * gr - bi * gi)
        di = ai - (br * gi + bi * gr)
        n = dr * dr + di * di
        bad += (inb & ((n < thr) | _rejected(n))).to(tl.int32)
        r = 1.0 / n
        return dr * r, -di * r, bad

    @triton.jit
    def _combine(lr, li, br, bi, hr, hi):
        """``G_i = gL_i / (1 - beta_i gL_i gR_{i+1})`` from ``gL_i = (lr, li)`` and
        ``gR_{i+1} = (hr, hi)`` (re, im)."""
        pr = br * lr - bi * li
        pi = br * li + bi * lr
        qr = 1.0 - (pr * hr - pi * hi)
        qi = -(pr * hi + pi * hr)
        qinv = 1.0 / (qr * qr + qi * qi)
        return (lr * qr + li * qi) * qinv, (li * qr - lr * qi) * qinv

    @triton.jit
    def _absmax_g(Gr, Gi, inb, gmax):
        """The running ``max(|Re G|, |Im G|)`` over the live positions, NaN-propagating."""
        ag = tl.maximum(tl.abs(Gr), tl.abs(Gi))
        return tl.where(inb & ((ag > gmax) | (ag != ag)), ag, gmax)

    @triton.jit
    def _second_pass_kernel(diag_ptr, beta_ptr, z_ptr, carry_ptr, thr_ptr, g_ptr, bad_ptr, gmax_ptr,
                            ends_ptr, B, N, nc, sd, sb,
                            L: tl.constexpr, DIAG_COMPLEX: tl.constexpr, BETA_COMPLEX: tl.constexpr,
                            BLOCK: tl.constexpr, IDX64: tl.constexpr):
        nc, M, lane, live, row, k, zr, zi = _lanes(z_ptr, B, nc, BLOCK, IDX64)
        thr = tl.load(thr_ptr + row, mask=live, other=0.0)
        gr, gi = _carry(carry_ptr, lane, live)
        WDT = carry_ptr.dtype.element_ty  # the working precision (double for a wide call)
        bad = tl.zeros(zr.shape, tl.int32)
        gmax = tl.zeros_like(gr)
        for t in range(L):  # a loop, not unrolled: unrolling L = 32 took ~70 s to compile
            i = k * L + t
            inb = live & (i < N)
            ar, ai = _alpha(diag_ptr, row * sd + i, zr, zi, inb, DIAG_COMPLEX)
            br, bi = _beta(beta_ptr, row * sb + i - 1, inb & (i > 0), zr, BETA_COMPLEX)
            ar, ai, br, bi = ar.to(WDT), ai.to(WDT), br.to(WDT), bi.to(WDT)
            gr, gi, bad = _pivot_step(ar, ai, br, bi, gr, gi, inb, thr, bad)
            tl.store(g_ptr + 2 * (row * N + i), gr, mask=inb)
            tl.store(g_ptr + 2 * (row * N + i) + 1, gi, mask=inb)
        _store_end(ends_ptr, lane, gr, gi, live)
        hr, hi = _carry(carry_ptr + 2 * M, lane, live)
        for tt in range(L):
            i = k * L + (L - 1 - tt)
            inb = live & (i < N)
            ar, ai = _alpha(diag_ptr, row * sd + i, zr, zi, inb, DIAG_COMPLEX)
            br, bi = _beta(beta_ptr, row * sb + i, inb & (i < N - 1), zr, BETA_COMPLEX)
            ar, ai, br, bi = ar.to(WDT), ai.to(WDT), br.to(WDT), bi.to(WDT)
            lr = tl.load(g_ptr + 2 * (row * N + i), mask=inb, other=0.0).to(WDT)
            li = tl.load(g_ptr + 2 * (row * N + i) + 1, mask=inb, other=0.0).to(WDT)
            # G_i = gL_i / (1 - beta_i gL_i gR_{i+1}), gR_{i+1} = h (before this step)
            Gr, Gi = _combine(lr, li, br, bi, hr, hi)
            tl.store(g_ptr + 2 * (row * N + i), Gr, mask=inb)
            tl.store(g_ptr + 2 * (row * N + i) + 1, Gi, mask=inb)
            gmax = _absmax_g(Gr, Gi, inb, gmax)
            # the UL pivot e_i = alpha_i - beta_i gR_{i+1}, gR_i = 1/e_i
            hr, hi, bad = _pivot_step(ar, ai, br, bi, hr, hi, inb, thr, bad)
        _store_end(ends_ptr + 2 * M, lane, hr, hi, live)
        tl.store(bad_ptr + lane, bad, mask=live)
        tl.store(gmax_ptr + lane, gmax, mask=live)
