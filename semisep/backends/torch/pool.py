"""Scratch memory of the chunked path: a per-thread pool of host buffers and a per-call arena.

torch's CPU allocator hands every tensor straight to ``malloc``; large blocks are mapped
freshly and page-fault on first touch, which on CPU can cost more than the arithmetic of a
chunk layout.  :class:`_Arena` hands out scratch tensors for one call (pooled host buffers
on CPU, ``torch.empty`` elsewhere) and gives them back to this thread's pool on exit.
"""

from __future__ import annotations

import math
import threading

import torch

__all__ = ["release_host_pool"]


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

