"""Row-parallel NumPy work for batched quasiseparable calls.

The compiled kernels spread a batch over numba's threads (``prange`` over the batch rows).  The
steps around them that are NumPy expressions -- building a kernel's generators from the
coordinates (``exp``, ``cos``, ``sin`` of the steps: NumPy's vectorised versions), checking
them for finiteness, ``sum_i log|d_i|`` of a log-determinant -- are elementwise or reduce along
the last (N) axis only, so they give the same values, bit for bit, when evaluated on disjoint
chunks of batch rows.  :func:`run_rows` does that on as many Python threads as numba uses
(``numba.get_num_threads()``, the calling thread among them; NumPy releases the GIL in its
loops and the compiled generator kernels are ``nogil``), one chunk of rows at a time per
thread, so that each chunk's temporaries stay in cache.

A batch of one row, or fewer than :data:`MIN_PARALLEL_ELEMENTS` elements, runs in the calling
thread (:func:`plan` returns one chunk): a batch-1 call is never split along N.  Threads are
started per call and joined before it returns (no pool that a forked child could inherit in a
broken state).

Recycled large arrays (:func:`empty`, :func:`zeros`).  glibc maps blocks above its mmap
threshold (at most 32 MiB) freshly and returns them to the system on free, so a large output --
a batch's transitions ``a`` (72 bytes per point at rank 3), its factors -- page-faults on first
touch in every call, which can cost more than the arithmetic.  Arrays of at least
:data:`RECYCLE_MIN_BYTES` are therefore views of buffers this module keeps: a buffer is handed
out again only when no array references it any more (its reference count, which every view of
it raises, is back to the pool's own), so arrays the caller still holds -- an operator's
generators, its factors -- are never overwritten.  At most :data:`RECYCLE_MAX_BYTES` are kept in
all; :func:`release` drops the buffers not in use.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

__all__ = ["MIN_PARALLEL_ELEMENTS", "MIN_CHUNK_ELEMENTS", "RECYCLE_MIN_BYTES", "RECYCLE_MAX_BYTES",
           "threads", "plan", "run_rows", "log_abs_det", "max_abs_rows", "empty", "zeros", "release"]

#: calls with fewer elements (rows x N) run in the calling thread
MIN_PARALLEL_ELEMENTS = 1 << 16
#: rows are grouped into chunks of at least this many elements (one row per chunk at larger N)
MIN_CHUNK_ELEMENTS = 1 << 14


def threads() -> int:
    """The number of threads to use: numba's (``numba.set_num_threads`` lowers it)."""
    return int(numba.get_num_threads())


def plan(rows: int, n: int) -> list[tuple[int, int]]:
    """Chunks ``[(start, stop), ...]`` of ``range(rows)`` for rows of ``n`` elements: one chunk
    (the whole batch) when the work is too small to split or only one thread is available,
    else chunks of ``ceil(MIN_CHUNK_ELEMENTS / n)`` rows (at least one)."""
    if rows < 2 or rows * n < MIN_PARALLEL_ELEMENTS or threads() < 2:
        return [(0, rows)]
    size = max(1, -(-MIN_CHUNK_ELEMENTS // max(n, 1)))
    return [(s, min(s + size, rows)) for s in range(0, rows, size)]


def run_rows(fn: Callable[[int, int], Any], chunks: list[tuple[int, int]]) -> list[Any]:
    """``[fn(start, stop) for (start, stop) in chunks]``, the calls spread over
    ``min(numba.get_num_threads(), len(chunks))`` threads (the calling thread is one of them);
    results in chunk order.  ``fn`` must only write to disjoint rows of shared outputs.  An
    exception raised by a call is re-raised here (the first one in chunk order) after every
    thread has stopped."""
    workers = min(threads(), len(chunks))
    if workers < 2:
        return [fn(s, e) for s, e in chunks]
    results: list[Any] = [None] * len(chunks)
    errors: list[BaseException | None] = [None] * len(chunks)
    lock = threading.Lock()
    nxt = [0]

    def work() -> None:
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(chunks):
                return
            try:
                results[i] = fn(*chunks[i])
            except BaseException as e:  # re-raised by the caller's thread below
                errors[i] = e

    helpers = [threading.Thread(target=work, daemon=True) for _ in range(workers - 1)]
    for t in helpers:
        t.start()
    work()
    for t in helpers:
        t.join()
    for e in errors:
        if e is not None:
            raise e
    return results


# ------------------------------------------------------------------------------------------------
# row-parallel reductions of the factorization object
# ------------------------------------------------------------------------------------------------
def log_abs_det(d):
    """``(sum_i log|d_i|, odd number of d_i < 0)`` per row of real pivots ``d (B, N)``: the
    NumPy expressions ``np.log(np.abs(d)).sum(-1)`` and ``(d < 0).sum(-1) % 2 == 1``, bit for
    bit, evaluated on chunks of rows in parallel (:func:`run_rows`)."""
    B, n = d.shape
    logabs = np.empty(B, d.dtype)
    neg = np.empty(B, np.bool_)

    def chunk(s, e):
        ds = d[s:e]
        logabs[s:e] = np.log(np.abs(ds)).sum(axis=-1)
        neg[s:e] = np.count_nonzero(ds < 0, axis=-1) % 2 == 1

    run_rows(chunk, plan(B, n))
    return logabs, neg


def max_abs_rows(x):
    """``max_i |x_i|`` per row of ``x (B, N)`` (NaN if a row holds one), ``np.max(np.abs(x),
    -1)`` evaluated on chunks of rows in parallel."""
    B, n = x.shape
    out = np.empty(B, np.abs(x[:0]).dtype)

    def chunk(s, e):
        out[s:e] = np.max(np.abs(x[s:e]), axis=-1)

    run_rows(chunk, plan(B, n))
    return out


# ------------------------------------------------------------------------------------------------
# recycled large arrays
# ------------------------------------------------------------------------------------------------
#: arrays smaller than this come from ``np.empty`` / ``np.zeros`` (a row's pivots at N = 2^15);
#: freed heap blocks above glibc's trim threshold are returned to the system too, so the 1-4 MB
#: arrays of one row at N ~ 2^17 would page-fault on every call
RECYCLE_MIN_BYTES = 1 << 18
#: the most bytes of buffers kept (in use or free)
RECYCLE_MAX_BYTES = 1 << 28

_lock = threading.Lock()
_buffers: list[np.ndarray] = []       # 1-d uint8 owners, oldest first
_buffers.append(np.empty(1, np.uint8))
#: the reference count of a buffer nothing else refers to, as :func:`_free` reads it
_FREE_REFS = sys.getrefcount(_buffers[0])
_buffers.clear()


def _after_fork_in_child() -> None:
    """A child forked while another thread held the lock starts with a fresh one."""
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _free(i: int) -> bool:
    return sys.getrefcount(_buffers[i]) <= _FREE_REFS


def empty(shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
    """``np.empty(shape, dtype)`` (C order), from a recycled buffer when it is large (module
    docstring)."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < RECYCLE_MIN_BYTES:
        return np.empty(shape, dtype)
    with _lock:
        best = -1
        for i in range(len(_buffers)):  # the smallest free buffer that fits, at most 2x the size
            size = _buffers[i].nbytes
            if nbytes <= size <= 2 * nbytes and _free(i) and (best < 0 or size < _buffers[best].nbytes):
                best = i
        if best >= 0:
            return _buffers[best][:nbytes].view(dtype).reshape(shape)
        total = sum(b.nbytes for b in _buffers)
        i = 0
        while total + nbytes > RECYCLE_MAX_BYTES and i < len(_buffers):
            if _free(i):  # drop the oldest free buffers to make room
                total -= _buffers.pop(i).nbytes
            else:
                i += 1
        buf = np.empty(nbytes, np.uint8)
        if total + nbytes <= RECYCLE_MAX_BYTES:
            _buffers.append(buf)
        return buf.view(dtype).reshape(shape)


def zeros(shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
    """``np.zeros(shape, dtype)``; large arrays from :func:`empty`, then filled with zeros."""
    dtype = np.dtype(dtype)
    if math.prod(shape) * dtype.itemsize < RECYCLE_MIN_BYTES:
        return np.zeros(shape, dtype)
    x = empty(shape, dtype)
    x.fill(0)
    return x


def release() -> None:
    """Drop the recycled buffers that no array uses (their memory goes back to the system)."""
    with _lock:
        busy = [i for i in range(len(_buffers)) if not _free(i)]
        _buffers[:] = [_buffers[i] for i in busy]
