"""The host side of the fused kernels: :func:`resolvent_diagonal_fused` (inputs, buffers,
launches on the inputs' device and its current stream, the certificate).  The mathematics and
the kernels are in :mod:`.kernels`, the launch geometry in :mod:`.launch`."""

from __future__ import annotations

import contextlib
import math

import torch

from .kernels import HAVE_TRITON
from .launch import default_chunk_length
from .ops import _real_view, _resolved  # noqa: F401  (the host side's view rules)

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


def resolvent_diagonal_fused(diag: torch.Tensor, shift: torch.Tensor, beta: torch.Tensor,
                             pivmin: torch.Tensor, L: int | None = None, block: int = 128,
                             tiled: bool | None = None, scan: str = "blocked",
                             scan_block: int | None = None, index64: bool | None = None,
                             wide: bool | None = None, repair: bool = True):
    """``(G (B, N), guarded (B,), singular (B,), declined)``: the resolvent diagonal of
    ``A = T - z I`` per row by the fused kernels, for ``diag (B, N)`` real or complex,
    ``shift (B,)`` complex (the result dtype), ``beta (B, N-1)`` real or complex in ``diag``'s
    precision (a stride-0 batch allowed), ``pivmin (B,)`` real; all on one CUDA device (or the
    CPU under ``TRITON_INTERPRET=1``); conjugate views are resolved.

    ``declined``: None where every row passed the certificate (module docstring of
    :mod:`.kernels`), else a ``(B,)`` bool tensor, True for the rows where a pivot would need
    the guard or the boundary repair could not finish: their ``G`` and ``singular`` entries
    are not results, and the caller runs them through the chunked path.  Rows with
    ``declined`` False (all rows where it is None) hold results, ``guarded = 0``.  ``B = 0``
    and ``N < 2`` run no kernel.  One host sync (two where some row is declined, or the cheap
    singularity bound is inconclusive).  The launches are the operator
    ``semisep::fused_resolvent_diagonal`` of :mod:`.ops` (traceable by ``torch.compile``).

    ``scan``: ``"blocked"`` (two-level scan over the stored chunk matrices) or ``"serial"``
    (one program per row and direction walks them; the plain twin the tests compare with).
    ``block``: lanes per program of the transfer and second passes; ``scan_block``: chunks per
    block of the scan.  ``tiled``: the register-tile kernels (default where L is a power of
    two <= 16) or the strided ones.  ``index64``: index in int64 (default: where an offset may
    pass 2^30, :class:`~.launch.LaunchPlan`).  ``wide``: work in double precision for a
    complex64 ``shift`` (transfer matrices, carries and both recursions; ``alpha`` formed in
    single precision first; ``G`` rounded once at the store) -- the default for complex64
    (no effect for complex128).  ``repair``: the boundary repair of :mod:`.repair` (default).
    Launches run under ``torch.cuda.device(diag.device)``."""
    B, N = diag.shape
    cdt = shift.dtype
    if not cdt.is_complex:
        raise ValueError(f"the fused path needs a complex shift, got {cdt}")
    if scan not in ("blocked", "serial"):
        raise ValueError(f"scan must be 'blocked' or 'serial', got {scan!r}")
    rdt = torch.float32 if cdt == torch.complex64 else torch.float64
    if B == 0 or N < 2:
        return _short(diag, shift, pivmin, rdt)
    from .ops import FUSED_OP

    if FUSED_OP is None:
        raise RuntimeError("the fused path needs triton")
    L = default_chunk_length(N) if L is None else int(L)
    if tiled is None:
        tiled = L & (L - 1) == 0 and L <= 16
    wide = rdt == torch.float32 if wide is None else bool(wide)
    wdt = torch.float64 if wide else rdt
    pm, thr = _thresholds(pivmin, rdt)
    with _device_guard(diag.device):
        G, declined, maxima = FUSED_OP(diag, shift, beta, thr.to(wdt), L, block, bool(tiled),
                                       scan, int(scan_block or 0),
                                       -1 if index64 is None else int(bool(index64)), wide,
                                       bool(repair))
    guarded = torch.zeros(B, dtype=torch.int64, device=diag.device)
    return (G, guarded) + _flags(G, pm, maxima, declined)
