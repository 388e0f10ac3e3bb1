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
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numba

__all__ = ["MIN_PARALLEL_ELEMENTS", "MIN_CHUNK_ELEMENTS", "threads", "plan", "run_rows"]

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
