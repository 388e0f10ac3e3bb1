"""The fused kernels' launches as one torch operator, ``semisep::fused_resolvent_diagonal``
(``torch.library.triton_op``, every kernel launched through ``torch.library.wrap_triton``), so
that ``torch.compile`` and ``make_fx`` trace the Triton kernels themselves instead of stopping at
an opaque call.

The operator's body (:func:`fused_launches`) is torch ops and kernel launches only: no host
sync, no data-dependent shape (the boundary repair of :mod:`.repair` has fixed shapes), so it
is also its own fake (meta) implementation.  The host side (:mod:`.resolvent`) reads its
outputs with one sync.

Importable without triton: :data:`FUSED_OP` is then None and nothing is registered; where torch
has no ``triton_op``, :data:`FUSED_OP` is the plain function.  Under Triton's interpreter
(``TRITON_INTERPRET=1``) ``wrap_triton`` hands the interpreted kernels back unchanged, so the
operator runs eagerly (tracing then needs compiled kernels).
"""

import torch

from . import kernels as K
from . import tiled as T
from .kernels import HAVE_TRITON
from .launch import launch_plan
from .repair import one_step_carries, repair_slab

__all__ = ["FUSED_OP", "OP_NAME", "fused_launches"]

OP_NAME = "semisep::fused_resolvent_diagonal"


def _k(kernel):
    """``kernel`` as launched: through ``torch.library.wrap_triton`` where torch has it."""
    wrap = getattr(torch.library, "wrap_triton", None)
    return kernel if wrap is None else wrap(kernel)


def _resolved(x: torch.Tensor) -> torch.Tensor:
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


def fused_launches(diag: torch.Tensor, shift: torch.Tensor, beta: torch.Tensor,
                   thr: torch.Tensor, L: int, block: int, tiled: bool, scan: str,
                   scan_block: int, index64: int, wide: bool,
                   repair: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(G (B, N), declined (B,) bool, gmax (B,))`` for ``B >= 1``, ``N >= 2``: the kernels of
    :mod:`.kernels` / :mod:`.tiled` (transfer, chunk scan, one-step carries, second pass), then
    where ``repair`` the boundary repair of :mod:`.repair`.  ``declined``: a pivot failed the
    certificate, or the repair could not finish (the row is not a result); ``gmax``: per row the
    largest ``max(|Re G_ii|, |Im G_ii|)`` (NaN where some is NaN).

    Arguments as :func:`.resolvent.resolvent_diagonal_fused`, resolved: ``thr (B,)`` the
    certificate's threshold on ``|d|^2`` (working precision), ``scan_block`` 0 for the
    default, ``index64`` -1 for the plan's choice, ``wide``: the working precision is double
    (P, carries, the recursions) for a single-precision ``shift``."""
    B, N = diag.shape
    cdt = shift.dtype
    rdt = torch.float32 if cdt == torch.complex64 else torch.float64
    wdt = torch.float64 if wide else rdt
    dev = diag.device
    dv, sd = _real_view(diag, B, N)
    bv, sb = _real_view(beta, B, N - 1)
    plan = launch_plan(B, N, L, block=block, scan_block=scan_block or None,
                       single=wdt == torch.float32, sd=sd, sb=sb,
                       diag_complex=diag.is_complex(), beta_complex=beta.is_complex())
    z = torch.view_as_real(_resolved(shift).contiguous())
    G = torch.empty(B, N, dtype=cdt, device=dev)
    Gv = torch.view_as_real(G)
    nc, nb, sblk = plan.nc, plan.nb, plan.sblk
    bad = torch.empty(B, nc, dtype=torch.int32, device=dev)
    gmax = torch.empty(B, nc, dtype=rdt, device=dev)
    pending = torch.zeros(B, dtype=torch.bool, device=dev)
    flags = dict(DIAG_COMPLEX=diag.is_complex(), BETA_COMPLEX=beta.is_complex())
    idx64 = plan.index64 if index64 < 0 else bool(index64)
    transfer, second = ((T._transfer_tiled_kernel, T._second_pass_tiled_kernel) if tiled
                        else (K._transfer_kernel, K._second_pass_kernel))
    for r0, r1 in plan.slabs():  # one slab unless a grid would exceed CUDA's limits
        R = r1 - r0
        g = plan.grids_for(R)
        d_s, b_s, z_s, thr_s = dv[r0:r1], bv[r0:r1], z[r0:r1], thr[r0:r1]
        P = torch.empty(2, 8, R * nc, dtype=wdt, device=dev)  # left, right chunk transfers
        carry = torch.empty(2, R * nc, 2, dtype=wdt, device=dev)
        ends = torch.empty(2, R * nc, 2, dtype=wdt, device=dev)
        _k(transfer)[g["transfer"]](d_s, b_s, z_s, P, R, N, nc, sd, sb, L=L, BLOCK=block,
                                    IDX64=idx64, **flags)
        if scan == "serial":  # one program per (row, direction) walks all chunks
            _k(K._scan_kernel)[g["serial_scan"]](P, carry, R, nc, BLOCK=sblk, IDX64=idx64)
        else:  # two levels: block totals, a short walk over the blocks, every block at once
            tot = torch.empty(2, 8, R * nb, dtype=wdt, device=dev)
            cin = torch.empty(2, 4, R * nb, dtype=wdt, device=dev)
            _k(K._block_total_kernel)[g["block_total"]](P, tot, R, nc, nb, SB=sblk, IDX64=idx64)
            _k(K._block_carry_kernel)[g["block_carry"]](tot, cin, R, nb, SB=plan.carry_block,
                                                        IDX64=idx64)
            _k(K._chunk_carry_kernel)[g["chunk_carry"]](P, cin, carry, R, nc, nb, SB=sblk,
                                                        IDX64=idx64)
        one_step_carries(P, carry, R, nc)
        _k(second)[g["second_pass"]](d_s, b_s, z_s, carry, thr_s, Gv[r0:r1], bad[r0:r1],
                                     gmax[r0:r1], ends, R, N, nc, sd, sb, L=L, BLOCK=block,
                                     IDX64=idx64, **flags)
        if repair:
            pending[r0:r1] = repair_slab(_resolved(diag[r0:r1]), _resolved(shift[r0:r1]),
                                         _resolved(beta[r0:r1]), carry, ends, thr_s,
                                         G[r0:r1], bad[r0:r1], gmax[r0:r1], L)
    return G, bad.any(dim=1) | pending, gmax.amax(dim=1)  # (amax propagates NaN)


def _register():
    """The operator (module docstring), or None without triton."""
    if not HAVE_TRITON:
        return None
    triton_op = getattr(torch.library, "triton_op", None)
    if triton_op is None:  # an older torch: the launches as a plain function
        return fused_launches
    return triton_op(OP_NAME, mutates_args=())(fused_launches)


#: ``semisep::fused_resolvent_diagonal`` (callable as :func:`fused_launches`), or None
FUSED_OP = _register()
