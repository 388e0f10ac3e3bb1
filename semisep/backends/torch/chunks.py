"""The chunk layout and the chunked affine scan of the torch backend (plain torch ops).

Notation for one batch row: ``A = T - z I`` (N x N tridiagonal), ``alpha_i = A[i, i]``,
``b_i = A[i, i+1]``, ``c_i = A[i+1, i]``, ``beta_i = b_i c_i``.

The chunked form cuts a length-``N`` sequence into ``nc = ceil(N/L)`` chunks of length ``L``
and lays a ``(B, N)`` batch out as ``(L, B, nc)`` (flat position ``i = k L + t`` at
``[t, :, k]``), so that every step of a loop over ``L`` is one vectorised torch op over
``batch x chunks`` and the same code runs on CPU and CUDA.  The layout and un-layout are one
fused scaled transposing copy each (:func:`_chunk_layout`, :func:`_from_chunks_scaled`).

First-order affine scan ``y_i = m_i y_{i-1} + f_i`` (``y_{-1} = 0``), the two sweeps of a solve
and every backward pass (:func:`_affine_scan_chunked`, twin
:func:`semisep.backends.torch.reference._affine_scan_ref`): (i) an in-chunk pass with zero
carry gives each chunk's end value, and the chunk's multiplier is ``prod(m)`` over the chunk;
(ii) a log-depth (Hillis-Steele) scan over the ``nc`` chunks forms the carries
(:func:`_affine_chunk_carries`); (iii) a second in-chunk pass from the carries.  Unlike the
pivot sweeps' 2 x 2 maps, affine maps cannot be renormalised, and a plain log-depth scan forms
products of multipliers spanning many chunks, which overflow (inf * 0 = nan) where the answer
is finite (a mildly non-normal ``T`` and a right-hand side that vanishes on a prefix); so the
composed multipliers are carried as a mantissa and an integer exponent and applied by exact
multiplications by representable powers of two: ``0 * 2^x = 0`` for every ``x``.

Chunk lengths.  Pivot sweeps: ``L = 2^round(log2(sqrt(N)/2))`` clipped to [8, 64]; a step
costs ~3.3 ops in pass (i) and ~8 small real ops in pass (iii), a Hillis-Steele level ~14 ops
on ``nc/2`` matrices, so the op count ~5.3 L + 14 log2(N/L) favours short chunks while the
scan's extra work ~nc log2(nc) favours long ones.  Affine scans: ``L = 2^round(log2(sqrt(N)))``
clipped to [8, 128]; the op count is ~2L for the in-chunk passes plus ~30 per level of the
chunk scan.  Beyond the caps (N >= 2^14) the chunk count grows instead, so the number of ops
of a call -- one kernel launch each on CUDA -- grows like log2 N (tests/test_launches_syncs.py).
The kernels' per-call ``chunk_length=L`` fixes L for both (the tests use tiny L to exercise
many chunks at small N).
"""

from __future__ import annotations

import math

import torch

from .pool import _Arena


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.empty((), dtype=dtype).real.dtype if dtype.is_complex else dtype


def _absmax_rows(x: torch.Tensor) -> torch.Tensor:
    """``max_j max(|re x_ij|, |im x_ij|)`` per row of a (B, N) tensor (0 for N == 0)."""
    if x.shape[1] == 0:
        return x.new_zeros(x.shape[0], dtype=_real_dtype(x.dtype))
    if x.is_complex():
        return torch.view_as_real(x).abs().amax(dim=(1, 2))
    return x.abs().amax(dim=1)


def _pow2_scale(m: torch.Tensor) -> torch.Tensor:
    """``2^-e`` with ``m = mant * 2^e``, ``mant in [0.5, 1)``; 1 where ``m == 0``.  Exact."""
    e = torch.frexp(m)[1]
    return torch.exp2(-e.to(m.dtype))


def _sgn1(d: torch.Tensor) -> torch.Tensor:
    """``d/|d|``, and 1 where ``d == 0`` (the direction of the pivot guard)."""
    return torch.sgn(d) + (d == 0).to(d.dtype)


def _wrap_angle(x: torch.Tensor) -> torch.Tensor:
    """Reduce an angle to ``(-pi, pi]``."""
    two_pi = 2.0 * math.pi
    return x - two_pi * torch.ceil((x - math.pi) / two_pi)


#: The chunk-length caps (module docstring): beyond them the chunk count grows instead, whose
#: scans are log-depth, so the number of ops per call grows like log N.
_PIVOT_L_MAX = 64
_SCAN_L_MAX = 128


def _pivot_chunk_length(n: int) -> int:
    if n <= 8:
        return max(n, 1)
    lg = round(math.log2(math.sqrt(n) / 2.0)) if n >= 16 else 3
    return int(min(max(2 ** lg, 8), _PIVOT_L_MAX, n))


def _scan_chunk_length(n: int) -> int:
    if n <= 8:
        return max(n, 1)
    lg = round(math.log2(math.sqrt(n)))
    return int(min(max(2 ** lg, 8), _SCAN_L_MAX, n))


def _to_chunks(x: torch.Tensor, L: int, pad_value: float) -> torch.Tensor:
    """``(B, N, *rest) -> (L, B, nc, *rest)`` (contiguous), padding the end with ``pad_value``."""
    B, N = x.shape[:2]
    rest = x.shape[2:]
    nc = -(-N // L)
    pad = nc * L - N
    if pad:
        x = torch.cat([x, x.new_full((B, pad) + rest, pad_value)], dim=1)
    x = x.reshape((B, nc, L) + rest)
    if rest.numel() != 1 or x.is_complex():
        return x.movedim(2, 0).contiguous()
    out = torch.empty((L, B, nc) + rest, dtype=x.dtype, device=x.device)
    if not _transpose_into(out, x, B * nc):
        out.copy_(x.movedim(2, 0))
    return out


def _from_chunks(y: torch.Tensor, N: int) -> torch.Tensor:
    """Inverse of :func:`_to_chunks`: ``(L, B, nc, *rest) -> (B, N, *rest)``."""
    L, B, nc = y.shape[:3]
    rest = y.shape[3:]
    if rest.numel() != 1 or y.is_complex():
        return y.movedim(0, 2).reshape((B, nc * L) + rest)[:, :N]
    out = torch.empty((B, nc, L) + rest, dtype=y.dtype, device=y.device)
    if not _transpose_into(out, y, L):
        out.copy_(y.movedim(0, 2))
    return out.view((B, nc * L) + rest)[:, :N]


def _transpose_into(out: torch.Tensor, src: torch.Tensor, m: int) -> bool:
    """``out[j, i] = src[i, j]`` with ``src`` read as an ``(m, n)`` matrix and ``out`` as
    ``(n, m)`` (e.g. the chunk layout ``(L, B, nc)`` and the rows ``(B, nc, L)``), as one 2D
    transposing copy, which torch runs blocked (cache-friendly) on CPU, where a permuted copy
    of the 3D views reads or writes with a stride of ``L`` or ``B nc`` elements.  Both must be
    contiguous and of one real dtype (complex ones gain nothing: measured on CPU); returns False
    (nothing written) otherwise."""
    if (not (out.is_contiguous() and src.is_contiguous()) or out.dtype != src.dtype or m <= 0
            or src.is_complex()):
        return False
    n = src.numel() // m
    if n * m != src.numel() or out.numel() != src.numel():
        return False
    out.view(n, m).copy_(src.view(m, n).t())
    return True


def _betap(beta: torch.Tensor) -> torch.Tensor:
    """``[0, beta_0, ..., beta_{N-2}]``: the coupling entering step ``i`` of the left sweep."""
    return torch.cat([beta.new_zeros(beta.shape[0], 1), beta], dim=1)


def _chunk_layout(parts, offset, N, L, nc, pad_value, row_scale, arena: _Arena | None = None,
                  row_shift: torch.Tensor | None = None):
    """The ``(L, B, nc)`` chunk layout of the rows ``parts`` (each ``(B_j, n)``, stacked along the
    batch) placed at flat positions ``offset .. offset + n - 1`` of length-``nc L`` sequences,
    multiplied by ``row_scale (B,)`` (None: 1), padded with ``pad_value``.  One pass per part:
    the scaling is fused with the transposing copy into the result (no flat intermediate).
    A part may be a zero-argument callable returning the rows, so that temporaries (a flipped
    copy) are made one at a time.  ``arena``: the result is one of its scratch tensors.
    ``row_shift (B,)``: the rows are ``(p - row_shift) * row_scale`` (one fused pass)."""
    B = sum(p.shape[0] if isinstance(p, torch.Tensor) else p[0] for p in parts)
    out = None
    r0 = 0
    for p in parts:
        if not isinstance(p, torch.Tensor):  # (rows, make)
            p = p[1]()
        if out is None:
            shape = (L, B, nc)
            out = (torch.empty(shape, dtype=p.dtype, device=p.device) if arena is None
                   else arena.empty(shape, p.dtype))
        r1 = r0 + p.shape[0]
        _chunk_write(out[:, r0:r1], p, offset, L, pad_value,
                     None if row_scale is None else row_scale[r0:r1],
                     None if row_shift is None else row_shift[r0:r1])
        r0 = r1
    return out


def _chunk_write(out: torch.Tensor, p: torch.Tensor, offset: int, L: int, pad_value: float, scale,
                 shift=None):
    """Write the rows ``p (b, n)`` (minus ``shift (b,)`` and times ``scale (b,)`` where given) at
    flat positions ``offset .. offset + n - 1`` of the chunk layout ``out (L, b, nc)``,
    ``pad_value`` elsewhere."""
    nc = out.shape[2]
    n = p.shape[1]
    V = out.permute(1, 2, 0)  # (b, nc, L): V[r, k, t] is flat position k L + t of row r
    rdt = _real_dtype(out.dtype)
    sc = None if scale is None else scale.to(rdt)[:, None]
    if shift is not None:  # (p - shift) * sc = p * sc + (-shift * sc)
        sc = torch.ones(p.shape[0], 1, dtype=rdt, device=p.device) if sc is None else sc
        off = -shift.to(rdt)[:, None] * sc
    k0 = -(-offset // L)  # chunks k0 .. k1-1 lie wholly inside the data
    k1 = (offset + n) // L

    def put(src, dst):
        if sc is None:
            dst.copy_(src)
            return
        shape = sc.shape + (1,) * (src.dim() - 2)
        if shift is None:
            torch.mul(src, sc.reshape(shape), out=dst)
        else:
            torch.addcmul(off.reshape(shape), src, sc.reshape(shape), out=dst)

    if k1 > k0:
        put(p[:, k0 * L - offset:k1 * L - offset].reshape(p.shape[0], k1 - k0, L), V[:, k0:k1])
    for k in [*range(min(k0, nc)), *range(max(k1, k0), nc)]:  # partial / padding chunks
        lo, hi = max(k * L, offset), min((k + 1) * L, offset + n)
        V[:, k].fill_(pad_value)
        if hi > lo:
            put(p[:, lo - offset:hi - offset], V[:, k, lo - k * L:hi - k * L])


def _complex_plane(re: torch.Tensor, im: torch.Tensor | None) -> torch.Tensor:
    """``re + i im`` as a complex ``(L, B, nc)`` tensor (``im`` may broadcast, or be None)."""
    if im is None:
        return torch.complex(re, torch.zeros_like(re))
    return torch.complex(re, im.expand(re.shape).contiguous() if im.shape != re.shape else im)


def _flipped(x: torch.Tensor, arena: _Arena) -> torch.Tensor:
    """``x.flip(1)`` for ``x (B, n)``, written into one of the arena's scratch tensors (torch's
    flip of the last, contiguous dimension is a vectorised copy, several times faster on CPU
    than an ``index_select`` with reversed indices)."""
    out = arena.empty(tuple(x.shape), x.dtype)
    return out.copy_(x.flip(1))


def _absmax_pair(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``max(|re|, |im|)`` over the leading dimension (size 2) of ``x`` and ``y`` (both
    ``(2, B, n)``): ``(B, n)`` real, NaN-propagating."""
    if x.is_complex():
        ax = torch.view_as_real(x).abs()
        ay = torch.view_as_real(y).abs()
        m = torch.maximum(ax, ay).amax(dim=0)  # (B, n, 2)
        return torch.maximum(m[..., 0], m[..., 1])
    return torch.maximum(x.abs(), y.abs()).amax(dim=0)


def _from_chunks_scaled(y: torch.Tensor, N: int, row_scale: torch.Tensor | None,
                        dtype: torch.dtype | None = None, conj: bool = True) -> torch.Tensor:
    """``_from_chunks(y, N) * row_scale[:, None]`` in one pass (the transposing copy and the
    scaling fused): ``(L, B, nc) -> (B, N)`` (a view of a ``(B, nc L)`` buffer).  ``row_scale``
    None: no scaling.  ``y`` may also be planar, ``(2, L, B, nc)`` real holding the real part and
    the imaginary part (``conj=False``) or minus it (``conj=True``): the result then has the
    complex ``dtype``."""
    if y.dim() == 4:  # planar
        _, L, B, nc = y.shape
        out = torch.empty((B, nc, L), dtype=dtype, device=y.device)
        ov = torch.view_as_real(out)
        s = (torch.ones(B, dtype=y.dtype, device=y.device) if row_scale is None
             else row_scale.to(y.dtype))[:, None, None]
        torch.mul(y[0].permute(1, 2, 0), s, out=ov[..., 0])
        torch.mul(y[1].permute(1, 2, 0), -s if conj else s, out=ov[..., 1])
        return out.view(B, nc * L)[:, :N]
    L, B, nc = y.shape
    out = torch.empty((B, nc, L), dtype=y.dtype, device=y.device)
    if not y.is_complex():  # scaled in the layout's order, then one blocked transposing copy
        tmp = y.contiguous() if row_scale is None else torch.mul(y, row_scale.to(y.dtype)[None, :, None])
        if _transpose_into(out, tmp, L):
            return out.view(B, nc * L)[:, :N]
    if row_scale is None:
        out.copy_(y.permute(1, 2, 0))
    else:
        torch.mul(y.permute(1, 2, 0), row_scale[:, None, None].to(_real_dtype(y.dtype)), out=out)
    return out.view(B, nc * L)[:, :N]


def _affine_scan_chunked(m: torch.Tensor, f: torch.Tensor, reverse: bool = False, L: int | None = None):
    """First-order affine scan by chunks (module docstring).  Same I/O as :func:`_affine_scan_ref`.
    No autograd (call it under ``no_grad``)."""
    B, N, k = f.shape
    if N == 0 or B == 0 or k == 0:
        return f.new_zeros(B, N, k)
    if reverse:
        return _affine_scan_chunked(m.flip(1), f.flip(1), False, L).flip(1)
    if L is None:
        L = _scan_chunk_length(N)
    L = max(1, min(int(L), N))
    Mc = _to_chunks(m, L, 0.0)[..., None]  # (L, B, nc, 1)
    Fc = _to_chunks(f, L, 0.0)  # (L, B, nc, k)
    if Fc.data_ptr() == f.data_ptr():  # _to_chunks returned a view (L == 1 or nc == 1)
        Fc = Fc.clone()
    return _from_chunks(_affine_scan_chunks_(Mc, Fc), N)


def _affine_scan_chunks_(Mc: torch.Tensor, Fc: torch.Tensor) -> torch.Tensor:
    """The chunked affine scan on the chunk layout, **in place**: ``Mc (L, B, nc, 1 or k)``,
    ``Fc (L, B, nc, k)``; ``Fc`` is overwritten with ``y`` (flat position ``k L + t`` at
    ``[t, :, k]``) and returned.  Padding must be ``m = 0, f = 0`` at the end of a sequence.
    The carries across chunks come from :func:`_affine_chunk_carries` (log depth)."""
    L, B, nc, k = Fc.shape
    if nc > 1:
        y = Fc[0].clone()
        for t in range(1, L):
            y = torch.addcmul(Fc[t], Mc[t], y)
        y = _affine_chunk_carries(torch.prod(Mc, dim=0), y)
    else:
        y = Fc.new_zeros(B, nc, k)
    for t in range(L):
        y = torch.addcmul(Fc[t], Mc[t], y, out=Fc[t])
    return Fc


def _pow2_split(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``p = mant * 2^x`` exactly, with ``max(|re mant|, |im mant|)`` in ``[1/2, 1)`` (``mant = 0,
    x = 0`` where ``p == 0``; NaN and inf stay in ``mant``): ``(mant, x)``, ``x`` int64."""
    if p.is_complex():  # (2^-x itself overflows for a subnormal p: three factors)
        x = torch.frexp(torch.view_as_real(p).abs().amax(dim=-1))[1].to(torch.int64)
        return _times_pow2(p, -x), x
    mant, x = torch.frexp(p)
    return mant, x.to(torch.int64)


#: ``|x|`` beyond which ``v 2^x`` is 0 or inf for every finite nonzero ``v`` with
#: ``max(|re v|, |im v|) < 2`` (subnormal bottom to overflow), by the real dtype; the clamp keeps
#: the three factors of :func:`_times_pow2` representable.
_POW2_CLAMP = {torch.float32: 300, torch.float64: 2200}


def _times_pow2(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``v 2^x`` (``x`` int64, broadcasting against ``v``) as three exact multiplications by
    representable powers of two, so that no intermediate overflows where the result does not
    and ``0 2^x = 0`` for every ``x`` (``torch.ldexp`` forms ``2^x`` itself: ``0 inf = nan``)."""
    rdt = _real_dtype(v.dtype)
    c = _POW2_CLAMP[rdt]
    x = x.clamp(-c, c)
    q = torch.div(x, 3, rounding_mode="floor")
    f = torch.exp2(q.to(rdt))
    out = v * f
    out.mul_(f)
    return out.mul_(torch.exp2((x - 2 * q).to(rdt)))


def _affine_chunk_carries(pm: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The carries of the chunked affine scan by a log-depth (Hillis-Steele) scan over chunks.

    Chunk ``j`` maps its incoming carry ``c`` to its end value ``pm_j c + y_j`` (``pm (B, nc, 1
    or k)`` the product of its multipliers, ``y (B, nc, k)`` its end value from a zero carry).
    Returns ``carries (B, nc, k)``: ``carries_0 = 0``, ``carries_{j+1} = pm_j carries_j + y_j``.

    The composed maps ``(P, E)`` of ``ceil(log2 nc)`` levels, ``(P_j, E_j) <- (P_j P_{j-o},
    P_j E_{j-o} + E_j)``, keep ``P`` as a mantissa and an int64 exponent (:func:`_pow2_split`),
    and apply the exponent to ``mant E`` by :func:`_times_pow2`: a product of multipliers
    spanning many chunks may lie far outside the floating-point range while the offsets it
    multiplies are zero (a right-hand side vanishing on a prefix) or small, and then
    ``0 2^x = 0`` where the plain product would give ``inf * 0 = nan``.  Every ``E_j`` is a
    partial sum of the true recurrence (the end value of chunk ``j`` from the carry of chunk
    ``j - 2o + 1``), so an intermediate overflows only where that true value does."""
    B, nc, k = y.shape
    mant, x = _pow2_split(pm)
    E = y
    mant_n, x_n, E_n = torch.empty_like(mant), torch.empty_like(x), torch.empty_like(E)
    off = 1
    while off < nc:
        mant_n[:, :off] = mant[:, :off]
        x_n[:, :off] = x[:, :off]
        E_n[:, :off] = E[:, :off]
        ma, mb, xa = mant[:, off:], mant[:, :nc - off], x[:, off:]
        torch.add(E[:, off:], _times_pow2(ma * E[:, :nc - off], xa), out=E_n[:, off:])
        m2, x2 = _pow2_split(ma * mb)
        mant_n[:, off:] = m2
        torch.add(xa, x[:, :nc - off], out=x_n[:, off:]).add_(x2)
        mant, mant_n, x, x_n, E, E_n = mant_n, mant, x_n, x, E_n, E
        off *= 2
    carries = torch.zeros_like(E)
    carries[:, 1:] = E[:, :-1]
    return carries


def _cabs1(x: torch.Tensor) -> torch.Tensor:
    """``|Re x| + |Im x|`` (LAPACK's CABS1), real dtype; ``|x|`` for real x."""
    return x.real.abs() + x.imag.abs() if x.is_complex() else x.abs()
