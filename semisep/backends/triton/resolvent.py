"""The host side of the fused kernels: :func:`resolvent_diagonal_fused` (inputs, buffers,
launches on the inputs' device and its current stream, the certificate).  The mathematics and
the kernels are in :mod:`.kernels`, the launch geometry in :mod:`.launch`."""

from __future__ import annotations

import contextlib
import math

import torch

from .kernels import HAVE_TRITON
from .launch import default_chunk_length, launch_plan

__all__ = ["HAVE_TRITON", "available", "default_chunk_length", "resolvent_diagonal_fused"]


def available(x: torch.Tensor) -> bool:
    """Whether the fused path can run on ``x``'s device (CUDA and triton importable)."""
    return HAVE_TRITON and x.device.type == "cuda"


def _device_guard(device: torch.device) -> contextlib.AbstractContextManager:
    """The context the launches run in: ``torch.cuda.device(device)`` for a CUDA device, so
    that tensors on ``cuda:1`` get their kernels on device 1 and in its current stream (Triton
    launches on the current device's current stream); nothing on other devices (the CPU under
    Triton's interpreter)."""
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def _resolved(x: torch.Tensor) -> torch.Tensor:
    """``x`` with a lazy conjugation or negation applied (the kernels read raw memory, and
    ``torch.view_as_real`` refuses conjugate views)."""
    return x.resolve_conj().resolve_neg()


def _real_view(x: torch.Tensor, rows: int, n: int) -> tuple[torch.Tensor, int]:
    """``(tensor whose data pointer the kernel reads, row stride in elements of x)`` for an
    ``x (rows, n)`` whose last dimension is contiguous (a stride-0 batch is kept); the kernels
    address a complex element ``j`` as the reals ``2 j``, ``2 j + 1``.  Conjugate and negative
    views are resolved first."""
    x = _resolved(x)
    if n > 0 and x.stride(-1) != 1:
        x = x.contiguous()
    stride = x.stride(0) if rows > 1 else 0
    if x.is_complex():
        return torch.view_as_real(x), stride
    return x, stride


def _thresholds(pivmin: torch.Tensor, rdt: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pm, thr)``: ``pivmin`` in ``rdt`` and the certificate's threshold on ``|d|^2``,
    ``pivmin^2 (1 + 8 eps)`` (at least the smallest normal number)."""
    pm = _resolved(pivmin).to(rdt)
    eps = torch.finfo(rdt).eps
    return pm, torch.clamp(pm * pm * (1 + 8 * eps), min=torch.finfo(rdt).tiny).contiguous()


def _flags(G: torch.Tensor, pm: torch.Tensor, maxima: torch.Tensor,
           declined: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(singular, declined or None)`` with one host sync.  ``singular``: the kernel
    contract's flag, some ``|G_ii| > 1 / (4 pivmin)``, per row of ``G (B, N)``, from
    ``maxima (B,)`` of ``max(|Re G|, |Im G|)``: the cheap bound ``sqrt(2) m 4 pivmin <= 1``
    settles a row as regular, and ``|G|`` is formed only if some row that was not
    ``declined (B,)`` is not settled.  ``declined`` comes back as None where no row was."""
    from .. import SINGULAR_FACTOR

    cheap = (maxima * (math.sqrt(2.0) * SINGULAR_FACTOR) * pm <= 1.0) | declined
    any_declined, all_cheap = torch.stack([declined.any(), cheap.all()]).tolist()  # one sync
    if all_cheap:
        singular = torch.zeros(G.shape[0], dtype=torch.bool, device=G.device)
    else:
        singular = (~(G.abs() * (SINGULAR_FACTOR * pm[:, None]) <= 1.0)).any(dim=1)
    return singular, (declined if any_declined else None)


def _short(diag: torch.Tensor, shift: torch.Tensor, pivmin: torch.Tensor, rdt: torch.dtype):
    """:func:`resolvent_diagonal_fused` for ``B = 0`` or ``N < 2`` in torch ops (no launch):
    ``G_00 = 1 / (diag_0 - z)`` for N = 1, declined where ``|diag_0 - z|^2`` is below the
    threshold or not finite."""
    B, N = diag.shape
    dev = diag.device
    guarded = torch.zeros(B, dtype=torch.int64, device=dev)
    if B == 0 or N == 0:
        G = torch.empty(B, N, dtype=shift.dtype, device=dev)
        return G, guarded, torch.zeros(B, dtype=torch.bool, device=dev), None
    pm, thr = _thresholds(pivmin, rdt)
    a = _resolved(diag)[:, 0].to(shift.dtype) - _resolved(shift)
    n = a.real * a.real + a.imag * a.imag
    declined = ~((n >= thr) & torch.isfinite(n))
    G = (1.0 / a)[:, None]
    m = torch.maximum(G.real.abs(), G.imag.abs())[:, 0]
    return (G, guarded) + _flags(G, pm, m, declined)


def _one_step_carries(P: torch.Tensor, carry: torch.Tensor, R: int, nc: int) -> None:
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


def resolvent_diagonal_fused(diag: torch.Tensor, shift: torch.Tensor, beta: torch.Tensor,
                             pivmin: torch.Tensor, L: int | None = None, block: int = 128,
                             tiled: bool | None = None, scan: str = "blocked",
                             scan_block: int | None = None, index64: bool | None = None):
    """``(G (B, N), guarded (B,), singular (B,), declined)``: the resolvent diagonal of
    ``A = T - z I`` per row by the fused kernels, for ``diag (B, N)`` real or complex,
    ``shift (B,)`` complex (the result dtype), ``beta (B, N-1)`` real or complex in ``diag``'s
    precision (a stride-0 batch allowed), ``pivmin (B,)`` real; all on one CUDA device (or the
    CPU under ``TRITON_INTERPRET=1``); conjugate views are resolved.

    ``declined``: None where every row passed the certificate (module docstring of
    :mod:`.kernels`), else a ``(B,)`` bool tensor, True for the rows where a pivot would need
    the guard: their ``G`` and ``singular`` entries are not results, and the caller runs them
    through the chunked path.  Rows with ``declined`` False (all rows where it is None) hold
    results, ``guarded = 0``.  ``B = 0`` and ``N < 2`` run no kernel.  One host sync (two
    where some row is declined, or the cheap singularity bound is inconclusive).

    ``scan``: ``"blocked"`` (two-level scan over the stored chunk matrices) or ``"serial"``
    (one program per row and direction walks them; the plain twin the tests compare with).
    ``block``: lanes per program of the transfer and second passes; ``scan_block``: chunks per
    block of the scan.  ``tiled``: the register-tile kernels (default where L is a power of
    two <= 16) or the strided ones.  ``index64``: index in int64 (default: where an offset may
    pass 2^30, :class:`~.launch.LaunchPlan`).  Launches run under
    ``torch.cuda.device(diag.device)``."""
    B, N = diag.shape
    cdt = shift.dtype
    if not cdt.is_complex:
        raise ValueError(f"the fused path needs a complex shift, got {cdt}")
    if scan not in ("blocked", "serial"):
        raise ValueError(f"scan must be 'blocked' or 'serial', got {scan!r}")
    rdt = torch.float32 if cdt == torch.complex64 else torch.float64
    if B == 0 or N < 2:
        return _short(diag, shift, pivmin, rdt)
    from . import kernels as K

    L = default_chunk_length(N) if L is None else int(L)
    if tiled is None:
        tiled = L & (L - 1) == 0 and L <= 16
    dev = diag.device
    dv, sd = _real_view(diag, B, N)
    bv, sb = _real_view(beta, B, N - 1)
    plan = launch_plan(B, N, L, block=block, scan_block=scan_block, single=rdt == torch.float32,
                       sd=sd, sb=sb, diag_complex=diag.is_complex(), beta_complex=beta.is_complex())
    z = torch.view_as_real(_resolved(shift).contiguous())
    pm, thr = _thresholds(pivmin, rdt)
    G = torch.empty(B, N, dtype=cdt, device=dev)
    Gv = torch.view_as_real(G)
    nc, nb, sblk = plan.nc, plan.nb, plan.sblk
    bad = torch.empty(B, nc, dtype=torch.int32, device=dev)
    gmax = torch.empty(B, nc, dtype=rdt, device=dev)
    flags = dict(DIAG_COMPLEX=diag.is_complex(), BETA_COMPLEX=beta.is_complex())
    idx64 = plan.index64 if index64 is None else bool(index64)
    transfer, second = ((K._transfer_tiled_kernel, K._second_pass_tiled_kernel) if tiled
                        else (K._transfer_kernel, K._second_pass_kernel))
    with _device_guard(dev):
        for r0, r1 in plan.slabs():  # one slab unless a grid would exceed CUDA's limits
            R = r1 - r0
            g = plan.grids_for(R)
            d_s, b_s, z_s, thr_s = dv[r0:r1], bv[r0:r1], z[r0:r1], thr[r0:r1]
            P = torch.empty(2, 8, R * nc, dtype=rdt, device=dev)  # left, right chunk transfers
            carry = torch.empty(2, R * nc, 2, dtype=rdt, device=dev)
            transfer[g["transfer"]](d_s, b_s, z_s, P, R, N, nc, sd, sb, L=L, BLOCK=block,
                                    IDX64=idx64, **flags)
            if scan == "serial":  # one program per (row, direction) walks all chunks
                K._scan_kernel[g["serial_scan"]](P, carry, R, nc, BLOCK=sblk, IDX64=idx64)
            else:  # two levels: block totals, a short walk over the blocks, every block at once
                tot = torch.empty(2, 8, R * nb, dtype=rdt, device=dev)
                cin = torch.empty(2, 4, R * nb, dtype=rdt, device=dev)
                K._block_total_kernel[g["block_total"]](P, tot, R, nc, nb, SB=sblk, IDX64=idx64)
                K._block_carry_kernel[g["block_carry"]](tot, cin, R, nb, SB=plan.carry_block,
                                                        IDX64=idx64)
                K._chunk_carry_kernel[g["chunk_carry"]](P, cin, carry, R, nc, nb, SB=sblk,
                                                        IDX64=idx64)
                del tot, cin
            _one_step_carries(P, carry, R, nc)
            del P
            second[g["second_pass"]](d_s, b_s, z_s, carry, thr_s, Gv[r0:r1], bad[r0:r1],
                                     gmax[r0:r1], R, N, nc, sd, sb, L=L, BLOCK=block,
                                     IDX64=idx64, **flags)
            del carry
    guarded = torch.zeros(B, dtype=torch.int64, device=dev)
    return (G, guarded) + _flags(G, pm, gmax.amax(dim=1), bad.any(dim=1))
