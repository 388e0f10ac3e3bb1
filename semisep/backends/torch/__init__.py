"""The torch backend: chunked parallel pivot sweeps and affine scans, O(N) autograd.

Everything here follows the kernel contract of :mod:`semisep.backends` and the mathematics of
docs/mathematics.md.  Notation for one batch row: ``A = T - z I`` (N x N tridiagonal),
``alpha_i = A[i, i]``, ``b_i = A[i, i+1]``, ``c_i = A[i+1, i]``, ``beta_i = b_i c_i``.

The two building blocks
-----------------------
1. **Pivot sweep** (LU pivots ``d_i``, ``gL_i = 1/d_i``)::

       d_0 = alpha_0,   d_i = alpha_i - beta_{i-1} gL_{i-1}

   With ``betap = [0, beta_0, ..., beta_{N-2}]`` each step is the Moebius map
   ``g -> 1/(alpha_i - betap_i g)``, i.e. the 2x2 matrix ``M_i = [[0, 1], [-betap_i, alpha_i]]``
   acting projectively on ``(num, den)`` with ``gL_i = num/den``.  The UL pivots ``gR`` are the
   same sweep on the reversed sequence.  Functions: :func:`_pivots_chunked` /
   :func:`_pivots_ref`.

2. **First-order affine scan** ``y_i = m_i y_{i-1} + f_i`` (``y_{-1} = 0``), the two sweeps of a
   solve and every backward pass.  Functions: :func:`_affine_scan_chunked` /
   :func:`_affine_scan_ref`.

The chunked form (``method="chunked"``)
---------------------------------------
The sequence is cut into ``nc = ceil(N/L)`` chunks of length ``L``; every loop below is a Python
loop over ``L`` (or over the chunks) whose body is one vectorised torch op over ``batch x chunks``,
so the same code runs on CPU and CUDA.

* Pivots.  (i) In-chunk pass: the chunk transfer matrix ``P_k = M_{e_k} ... M_{s_k}``, computed as
  the three-term recursion on the two unit vectors, renormalised by a power of two (``frexp``)
  every few steps; the problem is first scaled by a power of two ``s`` so that
  ``|alpha/s|, |beta/s^2| < 1`` (exact, and then one step grows the state by at most 2x).
  (ii) Chunk scan: inclusive prefix products ``Q_k = P_k ... P_0`` by a log-depth Hillis-Steele
  scan (``ceil(log2 nc)`` levels of batched 2x2 products, each level renormalised by a power of
  two; projective quantities only need the direction, so no log-scale has to be kept -- the
  log-determinant is the sum of ``log d_i`` of the second pass).  A log-depth scan is used here
  because every level costs a handful of ops whatever ``nc`` is and the renormalisation makes
  it overflow-proof.  (iii) Second in-chunk pass: the ordinary guarded ratio recursion
  ``d = alpha - betap g``, ``g = 1/d`` started from the carried ``g_{s_k-1} = num/den`` of
  ``Q_{k-1} (0, 1)^T``.  Values are therefore produced by at most ``L`` sequential steps from an
  accurate carry, which keeps the accuracy close to the sequential sweep (a full-length scan is
  not: docs/mathematics.md).
* Affine scans.  (i) In-chunk pass with zero carry gives the chunk's end value; the chunk's
  multiplier is ``prod(m)`` over the chunk.  (ii) Chunk scan: a *sequential* loop over the
  ``nc`` chunks (one ``addcmul`` each).  Unlike the pivot matrices, affine maps cannot be
  renormalised, and a log-depth scan would form products of multipliers spanning many chunks,
  which overflow (inf * 0 = nan) in cases where the answer is finite (a mildly non-normal T and
  a right-hand side that vanishes on a prefix); the sequential chunk loop only ever multiplies a
  carry by one chunk's product.  (iii) Second in-chunk pass from the carries.

CPU costs.  On CPU the chunked form is bound less by op count than by passes over ``B x N``
arrays (transposing copies, fresh buffers that page-fault) and by slow complex kernels: the
layout and un-layout are one fused scaled transposing copy each, pass (i) keeps its state
component-major ``(2, B, nc)`` (a trailing size-2 broadcast is ~10x slower in torch's CPU
kernels), and the resolvent backward writes its scan inputs straight into the chunk layout and
scans in place.  Complex pivot sweeps run on real planes (``Re``/``Im`` of ``alpha`` and ``betap``; pass (i)'s
state ``(re/im, component, B, nc)``, pass (iii)'s ``(Re g, -Im g)``): torch's complex CPU kernels
and strided real views of complex tensors cost 2-4x as much as contiguous real ops.  Without
autograd, a real operator at a complex ``z`` writes the layouts straight from ``diag``, the
shift and ``beta`` (``Im alpha`` is one number per row), lays the reversed sweep out
front-padded so that it aligns with the forward one after a flip, and combines ``G`` in the
layout from the two sweeps' pivots (:func:`_resolvent_chunked_shifted`; no ``gL``/``gR``
arrays).  The chunk layouts and second-pass buffers are scratch from a per-thread pool
(:class:`_HostPool`, at most 64 MiB kept; :func:`release_host_pool` frees it), because fresh
large host buffers page-fault on first touch.  ``benchmarks/bench_torch.py`` measures the
result (the performance page has the figures).

Chunk length.  Pivots: ``L = 2^round(log2(sqrt(N)/2))`` clipped to [8, 512]; a step costs ~3.3 ops
in pass (i) (two ops plus a renormalisation every 8 steps, every 4 in single precision) and ~8 small
real ops in pass (iii), a Hillis-Steele level ~14 ops on ``nc/2`` matrices, so the op count ~5.3 L +
14 log2(N/L) favours short chunks while the scan's extra work ~nc log2(nc) favours long ones.
Affine scans: ``L = 2^round(log2(sqrt(N)))`` clipped to [8, 1024], which minimises the op count 2L +
N/L of the two in-chunk passes plus the sequential chunk loop (``benchmarks/bench_torch_kernels.py
--chunk L`` times other choices). ``TorchBackend(chunk_length=L)`` fixes L for both (the tests use
tiny L to exercise many chunks at small N).  On CPU ``"auto"`` uses the compiled sequential kernels
anyway; the chunked form is the CUDA path, where the cost is ~one kernel launch per op, i.e. ~(5.3 L
+ 14 log2(N/L)) launches per pivot sweep pair.  So on CUDA a complex resolvent diagonal without
autograd first runs the same algorithm as fused Triton kernels
(:mod:`semisep.backends._triton_resolvent`, one launch per phase), falling back to these ops when
triton is missing or a pivot needs the guard; autograd, ``logdet`` and ``solve`` use these ops.

The pivot guard (contract): a pivot ``d`` with ``|d| < pivmin`` becomes ``pivmin * d/|d|``
(``pivmin`` if ``d == 0``) and is counted. The chunked second pass first runs unguarded; for complex
data ``g = conj(d)/|d|^2`` in real arithmetic (torch's complex reciprocal is several times slower on
CPU) with a running min/max of ``|d|^2`` as the certificate (no pass over the pivots afterwards). If
some pivot may need the guard (``|d|^2 < pivmin^2 (1 + 8 eps)``, ``|d|^2`` not a normal number, or
NaN) the second pass is re-run with the guard in the loop (torch's exact ``abs`` and
``reciprocal``), which decides exactly. Guards are thus applied exactly where a pivot is formed, as
in the sequential sweep; the projective chunk scan needs none (a zero leading minor is just
``den = 0``). In that guarded re-run, a chunk whose predecessor ended on a guarded pivot (or whose carry had
to be guarded, or disagrees with the predecessor's last pivot by more than sqrt(eps)) restarts from
the predecessor's own last pivot instead of the scan's carry, so the factorization stays consistent
across the boundary (see :func:`_guarded_second_pass`). Elimination without row exchanges is not
backward stable through a tiny or guarded pivot, so the chunked ``solve`` refines iteratively to
LAPACK ``?gtsv``'s backward error and hands rows that do not get there to the pivoted solve
(:func:`_solve_stable`); ``"sequential"`` and ``"reference"`` pivot (``?gtsv``'s elimination).

Autograd
--------
With any input requiring grad the kernels go through ``torch.autograd.Function`` s that save only
O(N) tensors and whose backward is the O(N) recipe of docs/mathematics.md, evaluated with the
chunked affine scan.  torch's complex convention: for a real loss ``L`` torch hands the backward
``grad_output = dL/d conj(y)``-style cotangents; the holomorphic recipe is applied to
``gbar = conj(grad_output)`` and the results are conjugated.  Double backward is not supported:
the backward raises under ``create_graph=True`` (:func:`once_differentiable`), and forward-mode
AD (dual tensors) raises at the call.  ``method="reference"`` instead differentiates through
its plain loop with ordinary autograd, to any order and in forward mode -- slow, but an
independent oracle for the tests.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Any

import numpy as np
import torch
import torch.autograd.forward_ad as _fwad

from .. import SINGULAR_FACTOR, Backend, _triton_resolvent
from . import linalg as _linalg_ns
from .select import FALLBACK, select_kernel

__all__ = ["TorchBackend"]


def once_differentiable(backward):
    """The autograd Functions' backward is first-order only: under ``create_graph=True``
    (double backward, ``torch.autograd.functional.hessian``) it raises instead of returning a
    gradient that carries no graph (which would make every second derivative through it a
    silent zero).  torch's own ``once_differentiable`` raises only when a grad_output requires
    grad, and the first backward of ``loss.sum()`` hands it one that does not."""

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "semisep: double backward (create_graph=True, hessian, a gradient penalty) is not "
                "supported through the O(N) kernels; use method='reference' (plain torch ops, "
                "differentiable to any order) or torch.autograd.functional with create_graph=False"
            )
        return backward(ctx, *grads)

    return wrapper


def _reject_forward_ad(*xs) -> None:
    """Forward-mode AD (``torch.autograd.forward_ad``, ``torch.func.jvp``) is not implemented by
    the O(N) kernels: raise instead of dropping the tangent."""
    for x in xs:
        if isinstance(x, torch.Tensor) and _fwad.unpack_dual(x).tangent is not None:
            raise NotImplementedError(
                "semisep: forward-mode AD (dual tensors) is not supported by the O(N) kernels; "
                "use reverse mode, or method='reference' (plain torch ops, which support it)"
            )



# ==================================================================================================
# small helpers
# ==================================================================================================


class _HostPool(threading.local):
    """Recycled host buffers for the chunked path's internal arrays (one pool per thread).

    torch's CPU allocator hands every tensor straight to ``malloc``, and glibc maps large blocks
    freshly and returns them on free, so each chunk layout of a call page-faults on first touch,
    which on CPU can cost more than the arithmetic.  Buffers given back are kept for the
    next call: at most ``_POOL_KEEP`` of them and ``_POOL_MAX_BYTES`` in all; CUDA tensors come
    from torch's caching allocator and never use the pool.  :func:`release_host_pool` frees it.
    """

    def __init__(self) -> None:
        self.free: list[torch.Tensor] = []


_host_pool = _HostPool()
_POOL_KEEP = 8
_POOL_MAX_BYTES = 1 << 26  # 64 MiB


def release_host_pool() -> None:
    """Free this thread's recycled host buffers of the chunked path (see :class:`_HostPool`)."""
    _host_pool.free = []


class _Arena:
    """Scratch tensors for one call: :meth:`empty` takes a pooled host buffer (CPU) or calls
    ``torch.empty`` (other devices); :meth:`close` gives the host buffers back.  Only arrays that
    never leave the call may come from here -- a pooled buffer is overwritten by the next call.
    Use as a context manager."""

    def __init__(self, device: torch.device) -> None:
        self.host = device.type == "cpu"
        self.device = device
        self.taken: list[torch.Tensor] = []

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        if not self.host:
            return torch.empty(shape, dtype=dtype, device=self.device)
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        free = _host_pool.free
        fits = [i for i, b in enumerate(free) if b.numel() >= nbytes]
        if fits:  # the smallest buffer that fits
            buf = free.pop(min(fits, key=lambda i: free[i].numel()))
        else:
            with torch.inference_mode(False):  # a normal tensor: usable inside and outside
                buf = torch.empty(max(nbytes, 1), dtype=torch.uint8)
        self.taken.append(buf)
        return buf[:nbytes].view(dtype).view(shape)

    def close(self) -> None:
        if not self.host:
            return
        pool = sorted(_host_pool.free + self.taken, key=lambda b: -b.numel())
        self.taken = []
        kept: list[torch.Tensor] = []
        total = 0
        for b in pool:  # keep the largest buffers within the budget
            if len(kept) < _POOL_KEEP and total + b.numel() <= _POOL_MAX_BYTES:
                kept.append(b)
                total += b.numel()
        _host_pool.free = kept

    def __enter__(self) -> _Arena:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.empty((), dtype=dtype).real.dtype if dtype.is_complex else dtype


def _absmax(x: torch.Tensor) -> torch.Tensor:
    """``max(|re|, |im|)`` over the last dimension (of size 2), real: a cheap norm for
    renormalising.  Written elementwise: reductions over tiny inner dimensions are slow in torch
    (and pathologically so under CPU thread contention)."""
    if x.is_complex():
        r = torch.view_as_real(x).abs()
        r = torch.maximum(r[..., 0], r[..., 1])  # over re/im
    else:
        r = x.abs()
    return torch.maximum(r[..., 0], r[..., 1])


def _mm2(A: torch.Tensor, B_: torch.Tensor) -> torch.Tensor:
    """Batched 2x2 products ``A @ B`` over leading dims, written out elementwise (faster than
    ``matmul`` or a broadcast-sum for 2x2 blocks)."""
    a00, a01, a10, a11 = A[..., 0, 0], A[..., 0, 1], A[..., 1, 0], A[..., 1, 1]
    b00, b01, b10, b11 = B_[..., 0, 0], B_[..., 0, 1], B_[..., 1, 0], B_[..., 1, 1]
    row0 = torch.stack((torch.addcmul(a00 * b00, a01, b10), torch.addcmul(a00 * b01, a01, b11)), -1)
    row1 = torch.stack((torch.addcmul(a10 * b00, a11, b10), torch.addcmul(a10 * b01, a11, b11)), -1)
    return torch.stack((row0, row1), -2)


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


def _pivot_chunk_length(n: int) -> int:
    if n <= 8:
        return max(n, 1)
    lg = round(math.log2(math.sqrt(n) / 2.0)) if n >= 16 else 3
    return int(min(max(2 ** lg, 8), 512, n))


def _scan_chunk_length(n: int) -> int:
    if n <= 8:
        return max(n, 1)
    lg = round(math.log2(math.sqrt(n)))
    return int(min(max(2 ** lg, 8), 1024, n))


def _to_chunks(x: torch.Tensor, L: int, pad_value: float) -> torch.Tensor:
    """``(B, N, *rest) -> (L, B, nc, *rest)`` (contiguous), padding the end with ``pad_value``."""
    B, N = x.shape[:2]
    rest = x.shape[2:]
    nc = -(-N // L)
    pad = nc * L - N
    if pad:
        x = torch.cat([x, x.new_full((B, pad) + rest, pad_value)], dim=1)
    x = x.reshape((B, nc, L) + rest)
    return x.movedim(2, 0).contiguous()


def _from_chunks(y: torch.Tensor, N: int) -> torch.Tensor:
    """Inverse of :func:`_to_chunks`: ``(L, B, nc, *rest) -> (B, N, *rest)``."""
    L, B, nc = y.shape[:3]
    rest = y.shape[3:]
    return y.movedim(0, 2).reshape((B, nc * L) + rest)[:, :N]


def _betap(beta: torch.Tensor) -> torch.Tensor:
    """``[0, beta_0, ..., beta_{N-2}]``: the coupling entering step ``i`` of the left sweep."""
    return torch.cat([beta.new_zeros(beta.shape[0], 1), beta], dim=1)


# ==================================================================================================
# pivot sweeps
# ==================================================================================================


def _pivots_ref(alpha: torch.Tensor, beta: torch.Tensor, pivmin: torch.Tensor):
    """Reference twin of :func:`_pivots_chunked`: a plain sequential loop over N.

    ``alpha (B, N)``, ``beta (B, N-1)``, ``pivmin (B,)``.  Returns ``(g, d, guarded_mask)``, each
    ``(B, N)``: the guarded LU pivots ``d_i`` and ``g_i = 1/d_i``.  Written with out-of-place
    torch ops only, so ordinary autograd can differentiate through it (the tests' oracle).
    """
    B, N = alpha.shape
    if N == 0:
        empty = alpha.new_zeros(B, 0)
        return empty, empty, torch.zeros(B, 0, dtype=torch.bool, device=alpha.device)
    pm = pivmin.to(_real_dtype(alpha.dtype))
    a_cols = alpha.unbind(1)
    b_cols = beta.unbind(1)
    ds, gs, masks = [], [], []
    g = None
    for i in range(N):
        d = a_cols[0] if i == 0 else torch.addcmul(a_cols[i], b_cols[i - 1], g, value=-1)
        small = d.abs() < pm
        if small.any():  # the guard: pivmin * d/|d|, pivmin where d == 0
            d = torch.where(small, pm * _sgn1(d), d)
        g = torch.reciprocal(d)
        ds.append(d)
        gs.append(g)
        masks.append(small)
    return torch.stack(gs, 1), torch.stack(ds, 1), torch.stack(masks, 1)


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


def _pivots_chunked(alpha: torch.Tensor, beta: torch.Tensor, pivmin: torch.Tensor, L: int | None = None,
                    renorm_every: int | None = None, both: bool = False, mask_none: bool = False):
    """LU pivots by the chunked Moebius scan (see the module docstring).  Same I/O as
    :func:`_pivots_ref`: ``alpha (B, N)``, ``beta (B, N-1)``, ``pivmin (B,)`` ->
    ``(g, d, guarded_mask)``, each ``(B, N)``.  No autograd (call it under ``no_grad``).

    ``both=True``: also the sweep of the reversed sequence (the UL pivots, in reversed order):
    ``g`` is then the pair ``(g_left, g_right_reversed)`` (separate buffers), the mask has
    rows ``B..2B-1`` for the reversed sweep, and ``d`` is not returned (None).
    ``mask_none=True``: the mask is None when no pivot was guarded (saves a (B, N) pass)."""
    if alpha.is_complex():
        ar, ai = torch.view_as_real(alpha).unbind(-1)
        br, bi = torch.view_as_real(beta).unbind(-1)
        rows = _PlanarRows(ar, ai, br, bi, alpha.dtype)
    else:
        rows = _PlanarRows(alpha, None, beta, None, alpha.dtype)
    return _pivots_chunked_rows(rows, _absmax_rows(alpha), _absmax_rows(beta), pivmin, L, renorm_every,
                                both, mask_none)


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
                               pivmin: torch.Tensor, L: int | None = None):
    """``G = diag((T - zI)^{-1})`` (B, N) by the chunked sweeps for a real ``diag (B, N)``,
    ``beta (B, N-1)`` and a complex ``shift (B,)``, no autograd; None when some pivot may need
    the guard (the caller then runs the general path, which decides exactly).

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
    rdt = _real_dtype(shift.dtype)  # the working precision (a float32 T at a complex128 z: double)
    diag, beta = diag.to(rdt), beta.to(rdt)
    dev = diag.device
    L = _pivot_chunk_length(N) if L is None else max(1, min(int(L), N))
    nc = -(-N // L)
    pad = nc * L - N
    sr, si = shift.real.to(rdt), shift.imag.to(rdt)
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
        if not ok:
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
        out = torch.empty((B0, nc, L), dtype=shift.dtype, device=dev)
        ov = torch.view_as_real(out)
        nt = n.permute(1, 2, 0)
        torch.mul(gr.permute(1, 2, 0), nt, out=ov[..., 0])
        torch.mul(gi.permute(1, 2, 0), nt, out=ov[..., 1]).neg_()
    return out.view(B0, nc * L)[:, :N]


def _pivots_chunked_shifted(diag: torch.Tensor, shift: torch.Tensor, beta: torch.Tensor, pivmin: torch.Tensor,
                            L: int | None = None, mask_none: bool = True):
    """Both pivot sweeps of ``alpha = diag - shift`` (``diag (B, N)`` and ``beta (B, N-1)`` real,
    ``shift (B,)`` complex) without forming ``alpha``: the chunk layouts are written straight
    from ``diag`` (``Re alpha``), ``Im alpha = -Im shift`` is one number per row and ``beta``
    has no imaginary part.  Returns what ``_pivots_chunked(alpha, beta, ..., both=True)`` does."""
    rdt = _real_dtype(shift.dtype)  # the working precision (a float32 T at a complex128 z: double)
    diag, beta = diag.to(rdt), beta.to(rdt)
    sr, si = shift.real.to(rdt), shift.imag.to(rdt)
    rows = _PlanarRows(diag, -si, beta, None, shift.dtype, shift=sr)
    return _pivots_chunked_rows(rows, _shifted_absmax(diag, sr, si), _absmax_rows(beta), pivmin, L, None,
                                True, mask_none)


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


def _pivots_chunked_rows(rows: _PlanarRows, amax_a, amax_b, pivmin, L, renorm_every, both, mask_none):
    """:func:`_pivots_chunked` on :class:`_PlanarRows`; ``amax_a``, ``amax_b (B0,)`` are the rows'
    ``max(|re|, |im|)`` of alpha and beta (for the power-of-two prescaling)."""
    B0, N = rows.re.shape
    B = 2 * B0 if both else B0
    rdt = _real_dtype(rows.dtype)
    dev = rows.re.device
    if N == 0 or B == 0:
        empty = torch.zeros(B, N, dtype=rows.dtype, device=dev)
        mask = torch.zeros(B, N, dtype=torch.bool, device=dev)
        return ((empty[:B0], empty[B0:]), None, mask) if both else (empty, empty, mask)
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
        if rows.is_complex:
            num, den = _chunk_carries_planar(planes, renorm_every)
            Gp, Dp, ok = _second_pass_planar(planes, num, den, pm, keep_d, arena)
        else:
            num, den = _chunk_carries(Ar, Br, renorm_every)
            Gp, Dp, ok = _second_pass_unguarded(Ar, Br, num, den, pm, arena=arena)
        if not ok:  # the guarded re-run, on complex layouts (rare: only problems that need the guard)
            Ac, Bc = (Ar, Br) if not rows.is_complex else (_complex_plane(Ar, Ai), _complex_plane(Br, Bi))
            Gp, Dp, mask = _guarded_second_pass(_guarded_pass_fn(Ac, Bc, pm), num, den, pm, B, nc, Ac, rdt)
            mask = _from_chunks(mask, N)
        else:
            mask = None if mask_none else torch.zeros(B, N, dtype=torch.bool, device=dev)
        if both:  # the two halves as separate buffers, so that gL and gR do not share one
            gl = _from_chunks_scaled(Gp[..., :B0, :], N, inv_s[:B0], rows.dtype)
            gr = _from_chunks_scaled(Gp[..., B0:, :], N, inv_s[B0:], rows.dtype)
            return (gl, gr), None, mask
        g = _from_chunks_scaled(Gp, N, inv_s, rows.dtype)
        d = _from_chunks_scaled(Dp, N, torch.exp2(ea.to(rdt)), rows.dtype, conj=False)
        return g, d, mask


def _complex_plane(re: torch.Tensor, im: torch.Tensor | None) -> torch.Tensor:
    """``re + i im`` as a complex ``(L, B, nc)`` tensor (``im`` may broadcast, or be None)."""
    if im is None:
        return torch.complex(re, torch.zeros_like(re))
    return torch.complex(re, im.expand(re.shape).contiguous() if im.shape != re.shape else im)


def _flipped(x: torch.Tensor, arena: _Arena) -> torch.Tensor:
    """``x.flip(1)`` for ``x (B, n)``, written into one of the arena's scratch tensors."""
    out = arena.empty(tuple(x.shape), x.dtype)
    n = x.shape[1]
    rev = torch.arange(n - 1, -1, -1, device=x.device)
    return torch.index_select(x, 1, rev, out=out)


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
    # rows (prev, cur) of the three-term recursion started on e_0 = (1, 0), e_1 = (0, 1)
    prev = Ac.new_zeros(2, B, nc)
    cur = Ac.new_zeros(2, B, nc)
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
    return Q[0, 1, :, :-1], Q[1, 1, :, :-1]


def _chunk_carries_planar(planes, renorm_every: int):
    """:func:`_chunk_carries` for a complex problem held as real planes
    ``planes = (Ar, Ai, Br, Bi)`` (see :func:`_second_pass_planar`): pass (i) in real arithmetic
    on the state ``(re/im, component, B, nc)``, then the same scan.  Same ``(num, den)``."""
    Ar, Ai, Br, Bi = planes
    L, B, nc = Ar.shape
    if nc <= 1:
        return None, None
    prev = Ar.new_zeros(2, 2, B, nc)  # [re/im, component]: the rows started on e_0 and e_1
    cur = Ar.new_zeros(2, 2, B, nc)
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
    complex CPU kernels and strided real views cost 2-4x as much).  Returns ``(Gp, Dp, ok)``:
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
    fin = torch.finfo(rdt)
    thr = torch.clamp(pm * pm * (1 + 8 * fin.eps), min=fin.tiny)  # |d| >= pm, |d|^2 normal
    ok = (mn.amin(dim=1) >= thr) & (mx.amax(dim=1) <= fin.max)
    return Gp, Dp, bool(ok.all())


def _absmax_pair(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``max(|re|, |im|)`` over the leading dimension (size 2) of ``x`` and ``y`` (both
    ``(2, B, n)``): ``(B, n)`` real, NaN-propagating."""
    if x.is_complex():
        ax = torch.view_as_real(x).abs()
        ay = torch.view_as_real(y).abs()
        m = torch.maximum(ax, ay).amax(dim=0)  # (B, n, 2)
        return torch.maximum(m[..., 0], m[..., 1])
    return torch.maximum(x.abs(), y.abs()).amax(dim=0)


def _second_pass_unguarded(Ac, Bc, num, den, pm, arena: _Arena | None = None):
    """Pass (iii) of a real problem without the guard: ``d = alpha - betap g``, ``g = 1/d`` in
    every chunk from the carries ``num/den``.  Returns ``(G, D, ok)``, ``G, D (L, B, nc)``; ``ok``
    is True when no pivot needs the guard (then ``G, D`` are the sweep's values) and False when
    some pivot may (``|d| < pm`` or NaN): the caller then re-runs the guarded pass, which decides
    exactly.  ``arena``: ``G`` and ``D`` are its scratch tensors.  Complex problems run
    :func:`_second_pass_planar`."""
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
    return G, D, bool((absd >= pm).all())


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
    if row_scale is None:
        out.copy_(y.permute(1, 2, 0))
    else:
        torch.mul(y.permute(1, 2, 0), row_scale[:, None, None].to(_real_dtype(y.dtype)), out=out)
    return out.view(B, nc * L)[:, :N]


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


def _host_view(t: torch.Tensor) -> np.ndarray | None:
    """A NumPy view of a plain CPU tensor's values (detached; a negated view resolved), or
    None where there is none: a CUDA tensor, or a torch.func wrapper without storage (those
    keep torch's own ops, and torch's own error for the autograd Functions)."""
    if t.device.type != "cpu":
        return None
    try:
        return t.detach().resolve_neg().numpy()
    except (RuntimeError, TypeError):
        return None


def _np_view(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor (conjugation, negation resolved; copied if not strided along N)."""
    t = t.detach().resolve_conj().resolve_neg()
    if t.dim() and t.shape[-1] > 1 and t.stride(-1) != 1:
        t = t.contiguous()
    return t.numpy()


def _pivots_sequential_numpy(alpha: torch.Tensor, beta: torch.Tensor, pivmin: torch.Tensor, right: bool):
    """LU (or UL) pivots from the compiled numpy kernels, zero-copy on CPU tensors.

    Returns ``(g, guarded_count)``; the numpy kernels do not expose the per-pivot guard mask."""
    from .. import numpy as npb

    fn = npb.right_pivots if right else npb.left_pivots
    a = alpha.detach().resolve_conj().resolve_neg().contiguous()
    b = beta.detach().resolve_conj().resolve_neg().contiguous()
    p = pivmin.detach().to(_real_dtype(alpha.dtype)).resolve_neg().contiguous()
    g, guarded = fn(a.numpy(), b.numpy(), p.numpy())
    return torch.from_numpy(np.asarray(g)), torch.from_numpy(np.asarray(guarded, dtype=np.int64))


def _both_pivots(alpha, beta, pivmin, method: str, L: int | None):
    """``(gL, gR, guarded)``: both pivot sweeps and the number of guarded pivots per row (both
    sweeps).  Chunked: left and right sweeps run as one batch of ``2B`` rows (the right sweep is
    the left sweep of the reversed sequence)."""
    B, N = alpha.shape
    if method == "reference":
        a2 = torch.cat([alpha, alpha.flip(1)], dim=0)
        b2 = torch.cat([beta, beta.flip(1)], dim=0)
        g, _, m = _pivots_ref(a2, b2, torch.cat([pivmin, pivmin], dim=0))
        gl, gr = g[:B], g[B:]
    else:
        (gl, gr), _, m = _pivots_chunked(alpha, beta, pivmin, L, both=True, mask_none=True)
    if m is None:
        guarded = torch.zeros(B, dtype=torch.int64, device=alpha.device)
    else:
        guarded = (m[:B].sum(dim=1) + m[B:].sum(dim=1)).to(torch.int64)
    return gl, gr.flip(1), guarded


# ==================================================================================================
# affine scans  y_i = m_i y_{i-1} + f_i
# ==================================================================================================


def _affine_scan_ref(m: torch.Tensor, f: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """Reference twin of :func:`_affine_scan_chunked`: a plain loop over N.

    ``m (B, N)``, ``f (B, N, k)``; ``y_i = m_i y_{i-1} + f_i`` with ``y_{-1} = 0`` (``reverse``:
    ``y_i = m_i y_{i+1} + f_i`` with ``y_N = 0``).  Returns ``y (B, N, k)``."""
    B, N, k = f.shape
    order = range(N - 1, -1, -1) if reverse else range(N)
    ys: list[Any] = [None] * N
    y = torch.zeros(B, k, dtype=torch.result_type(m, f), device=f.device)
    for i in order:
        y = m[:, i, None] * y + f[:, i]
        ys[i] = y
    return torch.stack(ys, 1) if N else f.new_zeros(B, 0, k)


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
    ``[t, :, k]``) and returned.  Padding must be ``m = 0, f = 0`` at the end of a sequence."""
    L, B, nc, k = Fc.shape
    if nc > 1:
        y = Fc[0].clone()
        for t in range(1, L):
            y = torch.addcmul(Fc[t], Mc[t], y)
        pm = torch.prod(Mc, dim=0)  # (B, nc, 1): the chunk's multiplier
        carries = Fc.new_zeros(B, nc, k)
        for j in range(nc - 1):
            torch.addcmul(y[:, j], pm[:, j], carries[:, j], out=carries[:, j + 1])
        y = carries
    else:
        y = Fc.new_zeros(B, nc, k)
    for t in range(L):
        y = torch.addcmul(Fc[t], Mc[t], y, out=Fc[t])
    return Fc


# ==================================================================================================
# forward kernels (no autograd): shared by the Functions and the no-grad paths
# ==================================================================================================


def _combine_resolvent(gL, gR, beta):
    """``G_ii = gL_i / (1 - beta_i gL_i gR_{i+1})`` (``G_{N-1} = gL_{N-1}``), which equals
    ``1/(alpha_i - beta_{i-1} gL_{i-1} - beta_i gR_{i+1})`` and stays finite (0) where an exact
    zero leading minor makes ``gL_i = 0``."""
    if gL.shape[1] <= 1:
        return gL.clone()
    G = torch.empty(gL.shape, dtype=torch.result_type(gL, beta), device=gL.device)
    corr = torch.mul(beta, gL[:, :-1], out=G[:, :-1])  # (in place: G's storage as scratch)
    corr.mul_(gR[:, 1:]).neg_().add_(1.0)
    torch.div(gL[:, :-1], corr, out=G[:, :-1])
    G[:, -1] = gL[:, -1]
    return G


def _resolvent_flags(G, pivmin):
    """Contract: singular where some ``|gamma_i| = |1/G_ii| < SINGULAR_FACTOR * pivmin``
    (NaN-aware: a non-finite G counts as singular)."""
    if G.shape[0] == 0 or G.shape[1] == 0:
        return torch.zeros(G.shape[0], dtype=torch.bool, device=G.device)
    pm = pivmin.to(_real_dtype(G.dtype))[:, None]
    if G.is_complex():  # cheap certificate first: |G| <= sqrt(2) max(|re G|, |im G|) (one reduction)
        m = torch.view_as_real(G).reshape(G.shape[0], -1).abs().amax(dim=1)  # NaN-propagating
        if bool((m * (math.sqrt(2.0) * SINGULAR_FACTOR) * pm[:, 0] <= 1.0).all()):
            return torch.zeros(G.shape[0], dtype=torch.bool, device=G.device)
    return (~(G.abs() * (SINGULAR_FACTOR * pm) <= 1.0)).any(dim=1)


def _left_flags(mask, alpha, beta, gL, pivmin):
    """Contract for logdet / solve: the last pivot *before guarding*,
    ``d_{N-1} = alpha_{N-1} - beta_{N-2} gL_{N-2}``, has ``|d_{N-1}| < SINGULAR_FACTOR * pivmin``,
    or a pivot ``d_k`` (k < N-1) was guarded where ``|beta_k| <= pivmin**2`` (a singular leading
    block decoupled from the rest).  NaN-aware."""
    B, N = mask.shape
    if N == 0:
        return torch.zeros(B, dtype=torch.bool, device=mask.device)
    pm = pivmin.to(_real_dtype(alpha.dtype))
    d_last = alpha[:, -1] - beta[:, -1] * gL[:, -2] if N > 1 else alpha[:, 0]
    sing = ~(d_last.abs() >= SINGULAR_FACTOR * pm)
    if N > 1:
        sing |= (mask[:, :-1] & (beta.abs() <= (pm * pm)[:, None])).any(dim=1)
    return sing


def _logdet_from_pivots(d: torch.Tensor, L: int | None = None) -> torch.Tensor:
    """``sum_i log d_i`` as a complex number with imaginary part in (-pi, pi].

    The angles are summed chunk by chunk and each partial sum reduced mod 2 pi before the chunk
    sums are added, so the rounding error of the imaginary part is ~eps (L + N/L) pi rather than
    ~eps N pi."""
    B, N = d.shape
    cdt = torch.complex64 if _real_dtype(d.dtype) == torch.float32 else torch.complex128
    if N == 0:
        return torch.zeros(B, dtype=cdt, device=d.device)
    mag = torch.log(d.abs()).sum(dim=1)
    if d.is_complex():
        ang = torch.angle(d)
    else:
        ang = (d < 0).to(d.dtype) * math.pi
    L = _scan_chunk_length(N) if L is None else L
    part = _wrap_angle(_to_chunks(ang, L, 0.0).sum(dim=0))  # (B, nc)
    ang = _wrap_angle(part.sum(dim=1))
    return torch.complex(mag, ang).to(cdt)


def _solve_with_pivots(gL, b, c, f, method, L=None):
    """``A x = f`` given the LU pivots: ``y_i = f_i - c_{i-1} gL_{i-1} y_{i-1}``,
    ``x_i = gL_i y_i - gL_i b_i x_{i+1}``.  ``f (B, N, k)`` -> ``x (B, N, k)``."""
    B, N, k = f.shape
    zero = gL.new_zeros(B, 1)
    m1 = torch.cat([zero, -c * gL[:, :-1]], dim=1)  # (B, N)
    m2 = torch.cat([-gL[:, :-1] * b, zero], dim=1)
    def scan(m, f_, reverse):
        if method == "reference":
            return _affine_scan_ref(m, f_, reverse)
        return _affine_scan_chunked(m, f_, reverse, L)

    y = scan(m1, f, reverse=False)
    return scan(m2, gL[:, :, None] * y, reverse=True)


# ==================================================================================================
# autograd Functions (O(N) backward, docs/mathematics.md)
# ==================================================================================================


def _grad_for(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Cast a gradient to its input's dtype: a real input gets the real part."""
    if not x.is_complex() and g.is_complex():
        g = g.real
    return g.to(x.dtype)


def _resolvent_backward(gbar, G, gL, gR, beta, L=None):
    """Holomorphic-convention cotangents of ``G = diag(A^{-1})`` given ``gbar = dL/dG``.

    ``s_i = gbar_i G_ii^2``; ``SL_j = rho_j SL_{j-1} + s_j`` with ``rho_j = beta_{j-1} gR_j^2``;
    ``SR_j = lambda_j SR_{j+1} + s_j`` with ``lambda_j = beta_j gL_j^2``;
    ``dL/dalpha_j = -(SL_j + SR_j - s_j)``, ``dL/dbeta_j = gR_{j+1} SL_j + gL_j SR_{j+1}``.
    The two scans run as one chunked scan over ``2B`` rows (``SR`` as the forward scan of the
    reversed sequence), built directly in the chunk layout and scanned in place; temporaries of
    size ``B x N`` are made one at a time (peak ~ 6 of them besides the inputs)."""
    B, N = G.shape
    if N == 0 or B == 0:
        return G.new_zeros(B, N), G.new_zeros(B, max(N - 1, 0))
    if L is None:
        L = _scan_chunk_length(N)
    L = max(1, min(int(L), N))
    nc = -(-N // L)
    s = torch.mul(gbar, G)
    s.mul_(G)

    def rho():  # rho_j = beta_{j-1} gR_j^2 at j = 1..N-1 (rho_0 = 0: offset 1)
        t = torch.mul(gR[:, 1:], gR[:, 1:])
        return t.mul_(beta)

    def lam_rev():  # lambda reversed: lam_{N-1-i} = beta_{N-1-i} gL_{N-1-i}^2 at i = 1..N-1
        t = torch.mul(gL[:, :-1], gL[:, :-1])
        return t.mul_(beta).flip(1)

    Mc = _chunk_layout([(B, rho), (B, lam_rev)], 1, N, L, nc, 0.0, None)[..., None]
    Fc = _chunk_layout([s, (B, lambda: s.flip(1))], 0, N, L, nc, 0.0, None)[..., None]
    S = _affine_scan_chunks_(Mc, Fc)[..., 0]  # (L, 2B, nc)
    del Mc, Fc
    SL = _from_chunks_scaled(S[:, :B], N, None)
    SR = _from_chunks_scaled(S[:, B:], N, None)
    del S
    SR = SR.flip(1)
    dbeta = torch.mul(gR[:, 1:], SL[:, :-1])
    dbeta.addcmul_(gL[:, :-1], SR[:, 1:])
    dalpha = SL.add_(SR).sub_(s).neg_()
    return dalpha, dbeta


class _ResolventDiagonalFn(torch.autograd.Function):
    """``(alpha, beta) -> G = diag(A^{-1})`` with the O(N) backward; saves beta, G, gL, gR
    (4 N-vectors per row)."""

    @staticmethod
    def forward(ctx, alpha, beta, pivmin, method, L):
        G, guarded, singular, gL, gR = _resolvent_forward(alpha, beta, pivmin, method, L, need_pivots=True)
        ctx.save_for_backward(beta, G, gL, gR)
        ctx.L, ctx.alpha_dtype, ctx.method = L, alpha.dtype, method
        ctx.mark_non_differentiable(guarded, singular)
        return G, guarded, singular

    @staticmethod
    @once_differentiable
    def backward(ctx, gG, _g1, _g2):
        beta, G, gL, gR = ctx.saved_tensors
        gbar = gG.conj() if gG.is_complex() else gG
        if ctx.method == "sequential":  # CPU tensors: the compiled in-place scans
            from .. import numpy as npb

            gb = gbar.to(G.dtype)
            want_db = ctx.needs_input_grad[1]
            da, db = npb.resolvent_diagonal_backward(
                _np_view(gb), _np_view(G), _np_view(gL), _np_view(gR), _np_view(beta.to(G.dtype)),
                want_dbeta=want_db,
            )
            dalpha = torch.from_numpy(da)
            if not want_db:  # the off-diagonals need no gradient: no (B, N-1) array formed
                dalpha = dalpha.conj() if dalpha.is_complex() else dalpha
                if not ctx.alpha_dtype.is_complex and dalpha.is_complex():
                    dalpha = dalpha.real
                return dalpha.to(ctx.alpha_dtype), None, None, None, None
            dbeta = torch.from_numpy(db)
        else:
            dalpha, dbeta = _resolvent_backward(gbar, G, gL, gR, beta, ctx.L)
        if dalpha.is_complex():
            dalpha, dbeta = dalpha.conj(), dbeta.conj()
        if not ctx.alpha_dtype.is_complex and dalpha.is_complex():
            dalpha = dalpha.real
        return dalpha.to(ctx.alpha_dtype), _grad_for(beta, dbeta), None, None, None


class _ResolventShiftedFn(torch.autograd.Function):
    """``(diag, shift, beta) -> G = diag(A^{-1})``, ``A = tridiag(beta; diag - shift)``, on CPU
    tensors with the compiled kernels; the O(N) backward.

    ``diag (B, N)`` real or complex (a stride-0 batch view is fine), ``shift (B,)``, ``beta
    (B, N-1)`` in ``T``'s own dtype (real for a real ``T``).  ``alpha`` is never formed, a real
    ``beta`` costs real products in both directions, and the backward kernel conjugates in
    registers (``conjugate=True``), so no conjugated copy is made.  Gradients: ``dL/ddiag =
    dL/dalpha`` (its real part for a real ``diag``), ``dL/dshift = -sum_i dL/dalpha_i``,
    ``dL/dbeta`` from the kernel.  Saves beta, G, gL, gR (4 N-vectors per row)."""

    @staticmethod
    def forward(ctx, diag, shift, beta, pivmin):
        from .. import numpy as npb

        dtype = torch.promote_types(torch.promote_types(diag.dtype, shift.dtype), beta.dtype)
        p = pivmin.detach().to(_real_dtype(dtype)).resolve_neg().contiguous().numpy()
        out = npb.resolvent_diagonal_shifted_with_pivots(_np_view(diag), _np_view(shift), _np_view(beta), p)
        G, gL, gR, guarded, singular = (torch.from_numpy(np.asarray(x)) for x in out)
        ctx.save_for_backward(beta, G, gL, gR)
        ctx.diag_dtype, ctx.shift_dtype = diag.dtype, shift.dtype
        ctx.mark_non_differentiable(guarded, singular)
        return G, guarded, singular

    @staticmethod
    @once_differentiable
    def backward(ctx, gG, _g1, _g2):
        from .. import numpy as npb

        beta, G, gL, gR = ctx.saved_tensors
        need_diag, need_shift, need_beta = ctx.needs_input_grad[:3]
        # a real diagonal gets the real part written contiguous by the kernel (no strided
        # copy of a complex result's .real in AccumulateGrad); the shift's gradient is the
        # row sum the kernel accumulates
        real_diag = G.is_complex() and not ctx.diag_dtype.is_complex
        da, db, dsum = npb.resolvent_diagonal_backward(
            _np_view(gG.to(G.dtype)), _np_view(G), _np_view(gL), _np_view(gR), _np_view(beta),
            want_dbeta=need_beta, conjugate=True, real_dalpha=real_diag, return_sum=True,
        )
        g_diag = _grad_for(torch.empty(0, dtype=ctx.diag_dtype), torch.from_numpy(da)) if need_diag else None
        g_shift = None
        if need_shift:
            g_shift = _grad_for(torch.empty(0, dtype=ctx.shift_dtype), -torch.from_numpy(dsum))
        g_beta = _grad_for(beta, torch.from_numpy(db)) if need_beta else None
        return g_diag, g_shift, g_beta, None


def _resolvent_shifted_chunked(diag, shift, beta, pivmin, L):
    """``(G, guarded, singular, gL, gR, beta_w)`` for ``alpha = diag - shift`` (real ``diag``
    and ``beta``, complex ``shift``) from both sweeps of :func:`_pivots_chunked_shifted` (the
    guarded pass where a pivot needs it), in the shift's precision; ``beta_w`` is ``beta`` in
    that precision (real)."""
    rdt = _real_dtype(shift.dtype)
    beta_w = beta.to(rdt)
    (gl, grr), _, m = _pivots_chunked_shifted(diag, shift, beta_w, pivmin, L=L)
    gr = grr.flip(1)
    del grr
    B = diag.shape[0]
    guarded = (torch.zeros(B, dtype=torch.int64, device=diag.device) if m is None
               else (m[:B].sum(dim=1) + m[B:].sum(dim=1)).to(torch.int64))
    G = _combine_resolvent(gl, gr, beta_w)
    return G, guarded, _resolvent_flags(G, pivmin.to(rdt)), gl, gr, beta_w


class _ResolventShiftedChunkedFn(torch.autograd.Function):
    """``(diag, shift, beta) -> G = diag(A^{-1})``, ``A = tridiag(beta; diag - shift)``, by the
    chunked sweeps (any device) in the shift form, with the O(N) chunked backward.

    ``diag (B, N)`` and ``beta (B, N-1)`` real (stride-0 batch views are fine), ``shift (B,)``
    complex; the work runs in the shift's precision.  The chunk layouts are written straight
    from ``diag`` and the shift (:func:`_pivots_chunked_shifted`), so ``alpha`` is never formed
    and ``beta`` stays real in both directions (bitwise the same G as the alpha form).
    Gradients (holomorphic convention, as :class:`_ResolventDiagonalFn`): ``dL/ddiag =
    Re dL/dalpha``, ``dL/dshift = -sum_i dL/dalpha_i``, ``dL/dbeta = Re`` of the complex one.
    Saves beta, G, gL, gR."""

    @staticmethod
    def forward(ctx, diag, shift, beta, pivmin, L):
        G, guarded, singular, gl, gr, beta_w = _resolvent_shifted_chunked(diag, shift, beta, pivmin, L)
        ctx.save_for_backward(beta_w, G, gl, gr)
        ctx.L = L
        ctx.dtypes = (diag.dtype, shift.dtype, beta.dtype)
        ctx.mark_non_differentiable(guarded, singular)
        return G, guarded, singular

    @staticmethod
    @once_differentiable
    def backward(ctx, gG, _g1, _g2):
        beta, G, gL, gR = ctx.saved_tensors
        diag_dtype, shift_dtype, beta_dtype = ctx.dtypes
        need_diag, need_shift, need_beta = ctx.needs_input_grad[:3]
        dalpha, dbeta = _resolvent_backward(gG.to(G.dtype).conj(), G, gL, gR, beta, ctx.L)
        dalpha = dalpha.conj()  # dL/dalpha (holomorphic convention); dbeta is made real below
        g_diag = dalpha.real.to(diag_dtype) if need_diag else None
        g_shift = dalpha.sum(dim=1).neg_().to(shift_dtype) if need_shift else None
        g_beta = dbeta.real.to(beta_dtype) if need_beta else None
        return g_diag, g_shift, g_beta, None, None


def _resolvent_forward(alpha, beta, pivmin, method, L, need_pivots=False):
    """``(G, guarded, singular, gL, gR)``.  ``"sequential"``: result and flags from the numpy
    kernel, the saved pivots from its separate left/right sweeps."""
    if method == "sequential":
        if not need_pivots:
            G, guarded, singular = _numpy_kernel("resolvent_diagonal", alpha, beta, pivmin)
            return G, guarded, singular, None, None
        from .. import numpy as npb

        a, b = _np_view(alpha), _np_view(beta)
        p = pivmin.detach().to(_real_dtype(alpha.dtype)).resolve_neg().contiguous().numpy()
        out = npb.resolvent_diagonal_with_pivots(a, b, p)
        G, gL, gR, guarded, singular = (torch.from_numpy(np.asarray(x)) for x in out)
        return G, guarded, singular, gL, gR
    gL, gR, guarded = _both_pivots(alpha, beta, pivmin, method, L)
    G = _combine_resolvent(gL, gR, beta)
    singular = _resolvent_flags(G, pivmin)
    return G, guarded.to(torch.int64), singular, gL, gR


class _LogdetFn(torch.autograd.Function):
    """``(alpha, beta) -> log det A``; backward ``d/dalpha_j = G_jj``,
    ``d/dbeta_j = -gL_j G_{j+1,j+1}`` (from ``d log det/d b_j = G_{j+1,j}`` and
    ``G_{j+1,j} = -c_j gL_j G_{j+1,j+1}``).  Saves alpha, beta, pivmin, gL; the right sweep is
    recomputed in the backward."""

    @staticmethod
    def forward(ctx, alpha, beta, pivmin, method, L):
        ld, guarded, singular, gL = _logdet_forward(alpha, beta, pivmin, method, L)
        ctx.save_for_backward(alpha, beta, pivmin, gL)
        ctx.method, ctx.L = method, L
        ctx.mark_non_differentiable(guarded, singular)
        return ld, guarded, singular

    @staticmethod
    @once_differentiable
    def backward(ctx, gld, _g1, _g2):
        alpha, beta, pivmin, gL = ctx.saved_tensors
        if ctx.method == "sequential":
            gR, _ = _pivots_sequential_numpy(alpha, beta, pivmin, right=True)
        else:
            g, _, _ = _pivots_chunked(alpha.flip(1), beta.flip(1), pivmin, ctx.L)
            gR = g.flip(1)
        G = _combine_resolvent(gL, gR, beta)
        gbar = gld.conj()[:, None]
        dalpha = gbar * G
        dbeta = -gbar * gL[:, :-1] * G[:, 1:]
        return _grad_for(alpha, dalpha.conj()), _grad_for(beta, dbeta.conj()), None, None, None


def _logdet_forward(alpha, beta, pivmin, method, L):
    """``(ld, guarded, singular, gL)``."""
    if method == "sequential":
        ld, guarded, singular = _numpy_kernel("logdet", alpha, beta, pivmin)
        gL, _ = _pivots_sequential_numpy(alpha, beta, pivmin, right=False)
        return ld, guarded, singular, gL
    if method == "reference":
        gL, d, mask = _pivots_ref(alpha, beta, pivmin)
    else:
        gL, d, mask = _pivots_chunked(alpha, beta, pivmin, L)
    ld = _logdet_from_pivots(d)
    singular = _left_flags(mask, alpha, beta, gL, pivmin) | ~torch.isfinite(ld)
    return ld, mask.sum(dim=1).to(torch.int64), singular, gL


def _cabs1(x: torch.Tensor) -> torch.Tensor:
    """``|Re x| + |Im x|`` (LAPACK's CABS1), real dtype; ``|x|`` for real x."""
    return x.real.abs() + x.imag.abs() if x.is_complex() else x.abs()


def _gtsv_ref(alpha, b, c, f, pivmin):
    """``A x = f`` by Gaussian elimination with partial pivoting (LAPACK ``?gtsv``), a plain
    loop over N in out-of-place torch ops (the row exchanges as ``torch.where``), so ordinary
    autograd differentiates it; the reference twin of the numpy backend's ``_solve_row``.

    ``alpha (B, N)``, ``b, c (B, N-1)`` upper and lower, ``f (B, N, k)``, ``pivmin (B,)``.
    Returns ``(x, singular)``: singular where some ``|Re U_ii| + |Im U_ii| < SINGULAR_FACTOR *
    pivmin`` (``cond_2(A) > 1/(8 eps)``)."""
    U, U1, U2, swaps, rows = _gtsv_ref_factor(alpha, b, c, f)
    B, N = alpha.shape
    pm = pivmin.to(_real_dtype(alpha.dtype))
    singular = (_cabs1(U) < SINGULAR_FACTOR * pm[:, None]).any(dim=1)
    xs: list = [None] * N
    for i in range(N - 1, -1, -1):
        t = rows[i]
        if i + 1 < N:
            t = t - U1[:, i, None] * xs[i + 1]
        if i + 2 < N:
            t = t - U2[:, i, None] * xs[i + 2]
        xs[i] = t / U[:, i, None]
    return torch.stack(xs, dim=1), singular


def _gtsv_ref_factor(alpha, b, c, f=None):
    """``P A = L U`` with partial pivoting (LAPACK ``?gtsv``), out-of-place torch ops:
    ``(U_diag (B, N), U_1 (B, N), U_2 (B, N), swaps (B,) int64, rows)``, ``rows`` the N rows of
    ``L^{-1} P f`` ((B, k) each; None without ``f``)."""
    B, N = alpha.shape
    zero = alpha.new_zeros(B)
    di = alpha[:, 0]
    dui = b[:, 0] if N > 1 else zero
    us, u1s, u2s = [], [], []
    swaps = torch.zeros(B, dtype=torch.int64, device=alpha.device)
    rows = None if f is None else [f[:, 0]]
    for i in range(N - 1):
        dl, dn = c[:, i], alpha[:, i + 1]
        dun = b[:, i + 1] if i < N - 2 else zero
        swap = _cabs1(di) < _cabs1(dl)
        piv = torch.where(swap, dl, di)
        other = torch.where(swap, di, dl)
        safe = torch.where(piv == 0, torch.ones_like(piv), piv)
        fact = other / safe  # 0 where both are 0; no where() around it, which would cut the gradient
        us.append(piv)
        u1s.append(torch.where(swap, dn, dui))
        u2s.append(torch.where(swap, dun, zero))
        di, dui = torch.where(swap, dui - fact * dn, dn - fact * dui), torch.where(swap, -fact * dun, dun)
        swaps = swaps + swap.to(torch.int64)
        if rows is not None:
            xi, xn = rows[i], f[:, i + 1]
            sw = swap[:, None]
            rows[i] = torch.where(sw, xn, xi)
            rows.append(torch.where(sw, xi - fact[:, None] * xn, xn - fact[:, None] * xi))
    us.append(di)
    u1s.append(zero)
    u2s.append(zero)
    return torch.stack(us, 1), torch.stack(u1s, 1), torch.stack(u2s, 1), swaps, rows


def _logdet_pivoted_ref(alpha, b, c, pivmin):
    """``log det A`` from the pivoted factorization ``P A = L U``: ``sum_i log U_ii`` plus
    ``i pi`` per row exchange, imaginary part wrapped into (-pi, pi]; out-of-place ops, so
    autograd gives ``d log det / d alpha_j = G_jj`` through any pivot.  Returns
    ``(ld, singular)`` with the certificate of :func:`_gtsv_ref`."""
    U, _, _, swaps, _ = _gtsv_ref_factor(alpha, b, c)
    cdt = torch.complex64 if _real_dtype(alpha.dtype) == torch.float32 else torch.complex128
    ld = torch.log(U.to(cdt)).sum(dim=1)
    ang = ld.imag + math.pi * (swaps % 2).to(ld.real.dtype)
    pm = pivmin.to(_real_dtype(alpha.dtype))
    singular = (_cabs1(U) < SINGULAR_FACTOR * pm[:, None]).any(dim=1) | ~torch.isfinite(ld)
    return torch.complex(ld.real, _wrap_angle(ang)), singular


_REFINE_STEPS = 3  # iterative-refinement steps of the chunked solve before the pivoted fallback
_REFINE_TOL = 8.0  # accept where ||A x - f|| <= _REFINE_TOL eps (||A|| ||x|| + ||f||), per column


def _apply_rows(alpha, b, c, x):
    """``A x`` for ``x (B, N, k)``."""
    y = alpha[:, :, None] * x
    if alpha.shape[1] > 1:
        y = y + torch.nn.functional.pad(b[:, :, None] * x[:, 1:], (0, 0, 0, 1))
        y = y + torch.nn.functional.pad(c[:, :, None] * x[:, :-1], (0, 0, 1, 0))
    return y


def _backward_ok(alpha, b, c, f, x):
    """Per row: every column's normwise backward error ``||A x - f||_inf / (||A||_inf
    ||x||_inf + ||f||_inf)`` is at most ``_REFINE_TOL eps`` (False where NaN); also the
    residual ``f - A x``."""
    r = f - _apply_rows(alpha, b, c, x)
    eps = torch.finfo(_real_dtype(alpha.dtype)).eps
    anorm = _cabs1(alpha)
    if alpha.shape[1] > 1:
        pad = torch.nn.functional.pad
        anorm = anorm + pad(_cabs1(b), (0, 1)) + pad(_cabs1(c), (1, 0))
    anorm = anorm.amax(dim=1)  # (B,), within a factor sqrt(2) above ||A||_inf
    num = _cabs1(r).amax(dim=1)  # (B, k)
    den = anorm[:, None] * _cabs1(x).amax(dim=1) + _cabs1(f).amax(dim=1)
    ok = (num <= _REFINE_TOL * eps * den).all(dim=1)
    return ok, r


def _solve_stable(alpha, b, c, f, pivmin, method, L, gL=None):
    """``A x = f`` backward stable on every path: ``"sequential"`` is the compiled pivoted
    solve (LAPACK ``?gtsv``'s elimination); ``"reference"`` its torch-loop twin
    :func:`_gtsv_ref`; ``"chunked"`` (the CUDA path) cannot exchange rows inside its scans, so
    it solves with the LU pivots ``gL`` (:func:`_solve_with_pivots`), then takes up to
    ``_REFINE_STEPS`` steps of iterative refinement with the residual in working precision
    until the normwise backward error of every column is at most ``_REFINE_TOL eps``; rows
    that do not get there (element growth beyond what refinement repairs) are solved by the
    pivoted solve (the compiled kernel through a host copy where numba is available, else the
    torch loop on the tensor's device).  Returns ``(x, steps)``."""
    if method == "sequential":
        x, _, _ = _numpy_kernel("solve", alpha, b, c, f, pivmin)
        return x.to(f.device), 0
    if method == "reference":
        return _gtsv_ref(alpha, b, c, f, pivmin)[0], 0
    if gL is None:
        gL, _, _ = _pivots_chunked(alpha, b * c, pivmin, L)
    x = _solve_with_pivots(gL, b, c, f, "chunked", L)
    steps = 0
    ok, r = _backward_ok(alpha, b, c, f, x)
    while not bool(ok.all()) and steps < _REFINE_STEPS:
        x = x + _solve_with_pivots(gL, b, c, r, "chunked", L)
        steps += 1
        ok, r = _backward_ok(alpha, b, c, f, x)
    if not bool(ok.all()):
        bad = (~ok).nonzero()[:, 0]
        args = (alpha[bad], b[bad], c[bad], f[bad], pivmin[bad])
        if _numpy_kernels_available():
            xb, _, _ = _numpy_kernel("solve", *(t.cpu() for t in args))
            xb = xb.to(f.device)
        else:
            xb, _ = _gtsv_ref(*args)
        x = x.index_copy(0, bad, xb.to(x.dtype))
    return x, steps


class _SolveFn(torch.autograd.Function):
    """``(alpha, b, c, f) -> x = A^{-1} f``; backward ``r = A^{-T} xbar`` (swap b and c),
    ``da_j = -sum_k r_jk x_jk``, ``db_j = -sum_k r_jk x_{j+1,k}``,
    ``dc_j = -sum_k r_{j+1,k} x_jk``, ``df = r``; both solves backward stable
    (:func:`_solve_stable`).  Saves alpha, b, c, pivmin, x (and the LU pivots on the chunked
    path), O(N k)."""

    @staticmethod
    def forward(ctx, alpha, b, c, f, pivmin, method, L):
        x, guarded, singular, gL = _solve_forward(alpha, b, c, f, pivmin, method, L)
        ctx.save_for_backward(alpha, b, c, pivmin, x, gL)
        ctx.method, ctx.L, ctx.dtypes = method, L, (alpha.dtype, f.dtype)
        ctx.mark_non_differentiable(guarded, singular)
        return x, guarded, singular

    @staticmethod
    @once_differentiable
    def backward(ctx, gx, _g1, _g2):
        alpha_t, b, c, pivmin, x, gL = ctx.saved_tensors
        alpha, f = (torch.empty(0, dtype=dt) for dt in ctx.dtypes)  # dtype carriers only
        xbar = gx.conj() if gx.is_complex() else gx
        xbar = xbar.to(x.dtype)
        aw, bw, cw = (t.to(x.dtype) for t in (alpha_t, b, c))
        # A^T: swap b and c (same LU pivots, which depend on b c only)
        r, _ = _solve_stable(aw, cw, bw, xbar, pivmin, ctx.method, ctx.L, gL if gL.numel() else None)
        da = -(r * x).sum(dim=2)
        db = -(r[:, :-1] * x[:, 1:]).sum(dim=2)
        dc = -(r[:, 1:] * x[:, :-1]).sum(dim=2)
        if r.is_complex():
            da, db, dc, r = da.conj(), db.conj(), dc.conj(), r.conj()
        return (_grad_for(alpha, da), _grad_for(b, db), _grad_for(c, dc), _grad_for(f, r),
                None, None, None)


def _solve_forward(alpha, b, c, f, pivmin, method, L):
    """``(x, guarded, singular, gL)``; ``gL`` the chunked path's LU pivots (an empty tensor
    elsewhere).  ``guarded`` counts the guarded LU pivots of the chunked path (zero for the
    pivoted solves); ``singular`` is the pivoted factorization's certificate
    (:func:`_gtsv_ref`), on the chunked path the LU sweep's (:func:`_left_flags`) or a
    non-finite result."""
    B = alpha.shape[0]
    none = alpha.new_zeros(0)
    if method == "sequential":
        x, guarded, singular = _numpy_kernel("solve", alpha, b, c, f, pivmin)
        return x, guarded, singular, none
    if method == "reference":
        x, singular = _gtsv_ref(alpha, b, c, f, pivmin)
        return x, torch.zeros(B, dtype=torch.int64, device=alpha.device), singular, none
    beta = b * c
    gL, _, mask = _pivots_chunked(alpha, beta, pivmin, L)
    singular = _left_flags(mask, alpha, beta, gL, pivmin)
    if bool(singular.any()):  # the caller raises: no refinement of a singular system
        return _solve_with_pivots(gL, b, c, f, "chunked", L), mask.sum(dim=1).to(torch.int64), singular, gL
    x, _ = _solve_stable(alpha, b, c, f, pivmin, "chunked", L, gL)
    singular = singular | ~torch.isfinite(x).all(dim=2).all(dim=1)
    return x, mask.sum(dim=1).to(torch.int64), singular, gL


# ==================================================================================================
# the backend
# ==================================================================================================


class TorchBackend(Backend):
    """semisep's torch backend (CPU and CUDA tensors).

    Transforms: ``torch.func`` (grad, vmap, jvp) is not supported -- the autograd Functions
    define no ``setup_context``; torch raises a RuntimeError saying so.  ``torch.compile``:
    under tracing, ``Tridiagonal.resolvent_diagonal``, ``logdet`` and ``solve`` become one
    opaque custom op each (:meth:`traced_call`, :mod:`semisep.backends.torch.ops`), with
    the eager results, errors and gradients; the cases listed there break the graph instead.

    Kernels (contract in :mod:`semisep.backends`): ``resolvent_diagonal``, ``logdet``, ``solve``,
    each returning ``(result, guarded, singular)`` and differentiable w.r.t. every tensor input
    except ``pivmin`` (O(N) backward; double backward raises).

    ``method`` (the kernel for each call is chosen by one pure function,
    :func:`semisep.backends.torch.select.select_kernel`, whose docstring is the decision table;
    ``PivotInfo.method`` reports the kernel that ran, :meth:`kernel_ran`):

    * ``"chunked"``: the chunked parallel scan of the module docstring (plain torch ops, same code
      on CPU and CUDA; depth ~ 2L + log(N/L) vectorised steps).
    * ``"sequential"``: CPU tensors only: the compiled (numba) sequential sweeps of the numpy
      backend, called zero-copy; backward uses the chunked affine scans.
    * ``"fused"``: CUDA tensors with triton installed, the shift-form resolvent diagonal at a
      complex shift without autograd only: the fused Triton kernels of
      :mod:`semisep.backends._triton_resolvent` (the chunked scan with the chunks kept in
      registers).  Where a pivot would need the guard they decline and ``"chunked"`` runs
      (and is reported).  Other calls with ``method="fused"`` raise a ValueError.
    * ``"reference"``: a plain sequential torch loop over N (slow; tests only); its gradients come
      from ordinary autograd through the loop.
    * ``"auto"``: ``"sequential"`` on CPU (``"chunked"`` if the numpy backend's compiled kernels
      cannot be imported); on CUDA ``"fused"`` where it applies, else ``"chunked"`` (also on
      other non-CPU devices).  An explicit ``method="chunked"`` always runs the plain torch ops.

    ``chunk_length``: fixed chunk length ``L`` for the chunked form (default: the N-dependent
    heuristic of the module docstring).  ``fused_chunk_length``: the same for the fused kernels
    (default :func:`semisep.backends._triton_resolvent.default_chunk_length`, 4).
    ``fused_scan``: how the fused kernels carry the chunk recursion across chunks, ``"blocked"``
    (default; measured on an H100) or ``"recompute"`` (only block totals go through memory;
    not yet measured on a GPU), see ``resolvent_diagonal_fused``.
    """

    name = "torch"
    methods = ("sequential", "chunked", "fused", "reference")
    linalg = _linalg_ns

    def __init__(self, chunk_length: int | None = None, fused_chunk_length: int | None = None,
                 fused_scan: str = "blocked"):
        for name, v in (("chunk_length", chunk_length), ("fused_chunk_length", fused_chunk_length)):
            if v is not None and int(v) < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if fused_scan not in ("blocked", "serial", "recompute"):
            raise ValueError(f"fused_scan must be 'blocked', 'serial' or 'recompute', got {fused_scan!r}")
        self.chunk_length = None if chunk_length is None else int(chunk_length)
        self.fused_chunk_length = None if fused_chunk_length is None else int(fused_chunk_length)
        self.fused_scan = fused_scan
        self._ran = threading.local()  # the kernel each thread's last call ran (Backend.kernel_ran)

    # -- plumbing ---------------------------------------------------------------------------
    def tracing(self) -> bool:
        return torch.compiler.is_compiling()

    def traced_call(self, which: str, op: Any, **kwargs: Any) -> Any:
        """One opaque custom op per call (:mod:`semisep.backends.torch.ops`)."""
        from .ops import traced_call

        return traced_call(which, op, **kwargs)

    def is_array(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def asarray(self, x: Any, like: Any = None) -> Any:
        """``x`` as a tensor on ``like``'s device (tensors are returned as they are when already
        there); Python and NumPy scalars/lists keep NumPy's dtype (float64, complex128, int64)."""
        device = like.device if isinstance(like, torch.Tensor) else None
        if isinstance(x, torch.Tensor):
            return x if device is None or x.device == device else x.to(device)
        # through NumPy, so that Python floats become float64 (complex128), never torch's
        # default dtype: 0.3 + 0.1j must not be rounded to complex64
        return torch.as_tensor(np.asarray(x), device=device)

    def result_dtype(self, *xs: Any) -> Any:
        """Promote like torch does, except that an integer/bool result becomes float64 (torch's
        default dtype is never consulted).  Tensors take part with their dtype; Python (and
        NumPy) scalars only by kind (bool < int < float < complex), as in torch."""
        dt = None
        scalars = []
        for x in xs:
            if x is None:
                continue
            if isinstance(x, torch.Tensor):
                dt = x.dtype if dt is None else torch.promote_types(dt, x.dtype)
            elif isinstance(x, np.ndarray):
                t = torch.from_numpy(np.ascontiguousarray(x))
                dt = t.dtype if dt is None else torch.promote_types(dt, t.dtype)
            else:
                v = x.item() if isinstance(x, np.generic) else x
                if not isinstance(v, (bool, int, float, complex)):
                    raise TypeError(f"cannot take the dtype of {type(x).__name__}")
                scalars.append(v)
        if dt is None or not (dt.is_floating_point or dt.is_complex):
            dt = torch.float64
        for v in scalars:
            dt = torch.result_type(torch.empty((), dtype=dt), v)
        if dt not in (torch.float32, torch.float64, torch.complex64, torch.complex128):
            raise TypeError(f"dtype {dt} is not supported; use float32/float64/complex64/complex128")
        return dt

    def astype(self, x: Any, dtype: Any) -> Any:
        return x.to(dtype)

    def zeros(self, shape: tuple[int, ...], dtype: Any, like: Any) -> Any:
        device = like.device if isinstance(like, torch.Tensor) else None
        return torch.zeros(tuple(shape), dtype=dtype, device=device)

    def concat(self, xs: list[Any], axis: int) -> Any:
        return torch.cat(list(xs), dim=axis)

    def broadcast_to(self, x: Any, shape: tuple[int, ...]) -> Any:
        return torch.broadcast_to(x, tuple(shape))

    def is_complex(self, dtype: Any) -> bool:
        return bool(dtype.is_complex)

    def eps(self, dtype: Any) -> float:
        return float(torch.finfo(dtype).eps)

    # The three reductions below run on NumPy views for CPU tensors: torch's CPU isfinite/all
    # and aminmax are several times slower than NumPy's on large arrays.
    def all_finite(self, x: Any) -> bool:
        v = _host_view(x.conj() if x.is_conj() else x)  # conj: same finiteness, no copy
        return bool(np.isfinite(v).all()) if v is not None else bool(torch.isfinite(x).all())

    def amax_abs(self, x: Any, axis: int) -> Any:
        if x.shape[axis] == 0:
            shape = list(x.shape)
            del shape[axis]
            return x.new_zeros(shape, dtype=_real_dtype(x.dtype))
        if x.is_complex():
            return x.abs().amax(dim=axis)
        v = _host_view(x)
        if v is not None:  # max|v| = max(max v, -min v), no |v| array
            return torch.from_numpy(np.asarray(np.maximum(v.max(axis=axis), -v.min(axis=axis))))
        lo, hi = torch.aminmax(x, dim=axis)  # one pass, no |x| array (on the device too)
        return torch.maximum(hi, -lo)

    def min_max(self, x: Any) -> tuple[Any, Any]:
        v = _host_view(x)
        if v is not None:
            return torch.from_numpy(np.asarray(v.min(axis=-1))), torch.from_numpy(np.asarray(v.max(axis=-1)))
        return torch.aminmax(x, dim=-1)

    def maximum(self, a: Any, b: Any) -> Any:
        return torch.maximum(a, b)

    def to_numpy(self, x: Any) -> Any:
        return x.detach().resolve_conj().resolve_neg().cpu().numpy()

    # -- the shift form (contract in semisep.backends) ------------------------------------------
    takes_shift = True

    def resolvent_diagonal_shifted(self, diag, shift, beta, pivmin, method="auto"):
        """On CPU (``"sequential"``): the NumPy backend's shift-form kernels on zero-copy views
        (no (B, N) ``alpha``, a shared off-diagonal stays a stride-0 view); under autograd
        through :class:`_ResolventShiftedFn` (its O(N) backward gives ``diag``, ``z`` and the
        off-diagonals their gradients).  ``"chunked"`` without autograd, real ``diag`` and
        ``beta``, complex shift: :func:`_resolvent_chunked_shifted` (then, where a pivot needs
        the guard, the shifted sweeps with the guarded pass); the same under autograd through
        :class:`_ResolventShiftedChunkedFn`.  Otherwise ``alpha = diag - shift`` is formed and
        :meth:`resolvent_diagonal` runs."""
        if method != "reference":
            _reject_forward_ad(diag, shift, beta)
        grad = self._needs_grad(diag, shift, beta)
        kernel = self._select("resolvent_diagonal_shifted", method, diag, needs_grad=grad,
                              complex_shift=shift.is_complex())
        if kernel == "fused":
            with torch.no_grad():  # fused Triton kernels; None: a pivot needs the guard
                out = _triton_resolvent.resolvent_diagonal_fused(
                    diag, shift, beta, pivmin.detach(), L=self.fused_chunk_length,
                    scan=self.fused_scan)
            if out is not None:
                return out
            kernel = self._note_kernel(FALLBACK["fused"])  # declined: the chunked ops run
        if kernel == "sequential" and grad:
            return _ResolventShiftedFn.apply(diag, shift, beta, pivmin.detach())
        if (kernel == "chunked" and grad and shift.is_complex()
                and not diag.is_complex() and not beta.is_complex()):
            return _ResolventShiftedChunkedFn.apply(diag, shift, beta, pivmin.detach(), self.chunk_length)
        if (kernel == "chunked" and not grad and shift.is_complex()
                and not diag.is_complex() and not beta.is_complex()):
            with torch.no_grad():  # the layouts straight from diag, shift and beta (no alpha)
                G = _resolvent_chunked_shifted(diag, shift, beta, pivmin.detach(), L=self.chunk_length)
                if G is not None:  # no pivot needed the guard
                    guarded = torch.zeros(diag.shape[0], dtype=torch.int64, device=diag.device)
                    return G, guarded, _resolvent_flags(G, pivmin.detach().to(diag.dtype))
                return _resolvent_shifted_chunked(diag, shift, beta, pivmin.detach(), self.chunk_length)[:3]
        if kernel == "sequential":
            from .. import get_backend

            p = pivmin.detach().to(_real_dtype(shift.dtype))
            G, guarded, singular = get_backend("numpy").resolvent_diagonal_shifted(
                _np_view(diag), _np_view(shift), _np_view(beta), _np_view(p)
            )
            return (torch.from_numpy(np.asarray(G)), torch.from_numpy(np.asarray(guarded, dtype=np.int64)),
                    torch.from_numpy(np.asarray(singular, dtype=bool)))
        # alpha = diag - shift formed, then resolvent_diagonal with the kernel chosen here
        return Backend.resolvent_diagonal_shifted(self, diag, shift, beta, pivmin, kernel)

    # -- fused Woodbury kernels: the NumPy backend's, on CPU tensors without autograd -------
    fused_woodbury = True

    def woodbury_fusable(self, method: str, *inputs) -> bool:
        """The NumPy backend's fused Woodbury kernels (zero-copy views) serve a call when
        ``method`` is "auto" or "sequential", every tensor among ``inputs`` is a plain CPU
        tensor (not a torch.func wrapper) and none needs a gradient: they have no backward,
        so a call under autograd takes the composed path, whose solves and products do."""
        if method not in ("auto", "sequential") or not _numpy_kernels_available():
            return False
        tensors = [x for x in inputs if isinstance(x, torch.Tensor)]
        if self._needs_grad(*tensors):
            return False
        return all(_host_view(x) is not None for x in tensors)

    def woodbury_forward(self, alpha, b, c, U, V, pivmin, shift=None):
        """:meth:`NumpyBackend.woodbury_forward` on zero-copy views; the sweeps' ``KmI``,
        ``guarded`` and ``singular`` come back as tensors."""
        _reject_forward_ad(alpha, b, c, U, V, shift)
        from .. import get_backend

        self._note_kernel("sequential")
        p = pivmin.detach().to(_real_dtype(alpha.dtype if shift is None else shift.dtype))
        inner = get_backend("numpy").woodbury_forward(
            _np_view(alpha), _np_view(b), _np_view(c), _np_view(U), _np_view(V), _np_view(p),
            shift=None if shift is None else _np_view(shift),
        )
        return _TorchWoodburySweeps(inner)

    def woodbury_correction(self, sweeps, Kinv, subtract_from=None):
        from .. import get_backend

        target = None if subtract_from is None else subtract_from.detach().numpy()
        out = get_backend("numpy").woodbury_correction(sweeps.inner, _np_view(Kinv), subtract_from=target)
        return subtract_from if subtract_from is not None else torch.from_numpy(out)

    def woodbury_release(self, sweeps):
        from .. import get_backend

        get_backend("numpy").woodbury_release(sweeps.inner)

    # -- kernels ----------------------------------------------------------------------------
    def _select(self, operation: str, method: str, x: torch.Tensor, needs_grad: bool = False,
                complex_shift: bool = False) -> str:
        """The kernel for this call by :func:`~semisep.backends.torch.select.select_kernel`
        (the whole policy), recorded for :meth:`kernel_ran`."""
        self.check_method(method)
        kernel = select_kernel(operation, method, device_type=x.device.type, needs_grad=needs_grad,
                               complex_shift=complex_shift, n=int(x.shape[-1]),
                               numba_available=_numpy_kernels_available(),
                               triton_available=_triton_resolvent.HAVE_TRITON)
        return self._note_kernel(kernel)

    @staticmethod
    def _needs_grad(*xs) -> bool:
        return torch.is_grad_enabled() and any(isinstance(x, torch.Tensor) and x.requires_grad for x in xs)

    def resolvent_diagonal(self, alpha, beta, pivmin, method="auto"):
        """``G_ii = [(T - zI)^{-1}]_ii`` for ``alpha (B, N)``, ``beta (B, N-1)``, ``pivmin (B,)``.

        Returns ``(G (B, N), guarded (B,) int64, singular (B,) bool)``; ``guarded`` counts the
        guarded pivots of both sweeps (LU and UL)."""
        if method != "reference":
            _reject_forward_ad(alpha, beta)
        grad = self._needs_grad(alpha, beta)
        method = self._select("resolvent_diagonal", method, alpha, needs_grad=grad)
        pivmin = pivmin.detach().to(_real_dtype(alpha.dtype))
        if method == "reference":  # plain loop, differentiable by ordinary autograd
            gL, _, mL = _pivots_ref(alpha, beta, pivmin)
            gRr, _, mR = _pivots_ref(alpha.flip(1), beta.flip(1), pivmin)
            G = _resolvent_ref_combine(alpha, beta, gL, gRr.flip(1))
            return G, (mL.sum(1) + mR.sum(1)).to(torch.int64), _resolvent_flags(G, pivmin)
        if grad:
            return _ResolventDiagonalFn.apply(alpha, beta, pivmin, method, self.chunk_length)
        with torch.no_grad():
            if method == "sequential":  # fused compiled kernel, no pivots kept
                return _numpy_kernel("resolvent_diagonal", alpha, beta, pivmin)
            G, guarded, singular, _, _ = _resolvent_forward(alpha, beta, pivmin, method, self.chunk_length)
            return G, guarded, singular

    def logdet(self, alpha, beta, pivmin, method="auto"):
        """``log det(T - zI)`` for one matrix per batch row: ``(ld (B,) complex, guarded, singular)``;
        the imaginary part in (-pi, pi] (complex also for real input)."""
        if method != "reference":
            _reject_forward_ad(alpha, beta)
        grad = self._needs_grad(alpha, beta)
        method = self._select("logdet", method, alpha, needs_grad=grad)
        pivmin = pivmin.detach().to(_real_dtype(alpha.dtype))
        if method == "reference":  # plain pivoted loop, differentiable by ordinary autograd
            # det A depends on the products beta_i only: eliminate the balanced similar matrix
            # with lower m_i = sqrt(|beta_i|) and upper beta_i / m_i (as the numpy kernel); m is
            # a constant here, so the gradient reaches beta through beta / m only
            with torch.no_grad():
                m = _cabs1(beta).sqrt()
                c = m.to(beta.dtype)
                m = torch.where(m == 0, torch.ones_like(m), m).to(beta.dtype)
            ld, singular = _logdet_pivoted_ref(alpha, beta / m, c, pivmin)
            return ld, torch.zeros(alpha.shape[0], dtype=torch.int64, device=alpha.device), singular
        if grad:
            return _LogdetFn.apply(alpha, beta, pivmin, method, self.chunk_length)
        with torch.no_grad():
            ld, guarded, singular, _ = _logdet_forward(alpha, beta, pivmin, method, self.chunk_length)
            return ld, guarded, singular

    def solve(self, alpha, b, c, f, pivmin, method="auto"):
        """``x = (T - zI)^{-1} f`` for ``alpha (B, N)``, ``b, c (B, N-1)``, ``f (B, N, k)``:
        ``(x (B, N, k), guarded, singular)``."""
        if method != "reference":
            _reject_forward_ad(alpha, b, c, f)
        grad = self._needs_grad(alpha, b, c, f)
        method = self._select("solve", method, alpha, needs_grad=grad)
        pivmin = pivmin.detach().to(_real_dtype(alpha.dtype))
        if method == "reference":  # plain loops, differentiable by ordinary autograd
            x, guarded, singular, _ = _solve_forward(alpha, b, c, f, pivmin, "reference", None)
            return x, guarded, singular
        if grad:
            return _SolveFn.apply(alpha, b, c, f, pivmin, method, self.chunk_length)
        with torch.no_grad():
            x, guarded, singular, _ = _solve_forward(alpha, b, c, f, pivmin, method, self.chunk_length)
            return x, guarded, singular

    def resolvent_diagonal_masked(self, alpha, beta, pivmin, keep, chunk_length=None):
        """``G_ii`` at the positions where ``keep (B, N)`` is True, by the chunked scan with the
        second in-chunk pass skipped in chunks that need no pivot
        (:func:`semisep.backends.torch.masked.masked_resolvent_chunked`; no autograd).

        Returns ``(values (K,), steps_run, steps_full)`` (row-major kept values, and the
        second-pass steps run / those of a full pass)."""
        from .masked import masked_resolvent_chunked

        L = self.chunk_length if chunk_length is None else chunk_length
        with torch.no_grad():
            return masked_resolvent_chunked(alpha, beta, pivmin.detach(), keep, L)


# ==================================================================================================
# reference-only pieces and the numpy bridge
# ==================================================================================================


def _resolvent_ref_combine(alpha, beta, gL, gR):
    """``G_ii = 1/(alpha_i - beta_{i-1} gL_{i-1} - beta_i gR_{i+1})`` (the formula of
    docs/mathematics.md, kept deliberately different from :func:`_combine_resolvent`)."""
    B, N = alpha.shape
    zero = alpha.new_zeros(B, 1)
    left = torch.cat([zero, beta * gL[:, :-1]], dim=1) if N > 1 else zero[:, :N]
    right = torch.cat([beta * gR[:, 1:], zero], dim=1) if N > 1 else zero[:, :N]
    return 1.0 / (alpha - left - right)


def _logdet_ref(d):
    """``log det = sum_i log d_i``: complex log of every pivot, plain sum, wrapped."""
    cdt = torch.complex64 if _real_dtype(d.dtype) == torch.float32 else torch.complex128
    ld = torch.log(d.to(cdt)).sum(dim=1)
    return torch.complex(ld.real, _wrap_angle(ld.imag))


_NUMPY_OK: bool | None = None


def _numpy_kernels_available() -> bool:
    global _NUMPY_OK
    if _NUMPY_OK is None:
        try:
            from .. import numpy as npb  # noqa: F401

            _NUMPY_OK = all(hasattr(npb, n) for n in ("left_pivots", "right_pivots", "NumpyBackend"))
        except Exception:  # numba or the module missing
            _NUMPY_OK = False
    return _NUMPY_OK


class _TorchWoodburySweeps:
    """The NumPy backend's Woodbury sweeps, with ``KmI``, ``guarded`` and ``singular`` as
    tensors (views of the same memory)."""

    __slots__ = ("inner", "KmI", "guarded", "singular")

    def __init__(self, inner):
        self.inner = inner
        self.KmI = torch.from_numpy(inner.KmI)
        self.guarded = torch.from_numpy(np.asarray(inner.guarded, dtype=np.int64))
        self.singular = torch.from_numpy(np.asarray(inner.singular, dtype=bool))


def _numpy_kernel(name: str, *tensors):
    """Run the numpy backend's kernel ``name`` on CPU tensors zero-copy; results as tensors."""
    from .. import get_backend

    nb = get_backend("numpy")
    args = [t.detach().resolve_conj().resolve_neg().contiguous().numpy() for t in tensors]
    res, guarded, singular = getattr(nb, name)(*args, method="auto")
    return (torch.from_numpy(np.asarray(res)), torch.from_numpy(np.asarray(guarded, dtype=np.int64)),
            torch.from_numpy(np.asarray(singular, dtype=bool)))


#: The instance :func:`semisep.backends.get_backend` returns for "torch".
default_backend = TorchBackend()
