"""BLAS held at one thread while compiled kernels call it from their own threads.

The fused Woodbury kernels of the NumPy backend split their work over numba's threads and call
BLAS (``np.dot`` in numba, i.e. SciPy's ``cython_blas``) from each of them.  A BLAS with its own
thread pool (OpenBLAS and MKL start one thread per core by default) then runs
``numba threads x BLAS threads`` threads on the cores, and BLAS's idle threads spin for a
while afterwards, slowing the next compiled kernel too: on two cores the T + U V^T resolvent
diagonal then takes about twice as long as with BLAS at one thread.  One multi-threaded BLAS
call for the capacitance product instead of the split is not better inside the whole call,
where its spinning threads delay the correction kernel.

:func:`single_threaded_blas` sets every loaded BLAS to one thread (via ``threadpoolctl``) for
the duration of a kernel and restores the caller's setting afterwards.  Nested and concurrent
uses from several Python threads share one limit: the first to enter saves the setting, the
last to leave restores it (a per-call save and restore would let two overlapping calls
restore each other's limit and leave BLAS at one thread for good).  The setting is
process-wide for OpenBLAS's pthreads build, so BLAS calls made by *other* Python threads while
a kernel runs also use one thread; code that changes the BLAS thread count concurrently with
a running kernel sees its change undone when the kernel ends.

Known limit: OpenBLAS 0.3.30 (SciPy's wheels) ignores a thread count set from a thread other
than the main one once the main thread has set a count itself (``threadpoolctl`` there, or
``openblas_set_num_threads``).  A kernel called from a worker thread of such a program still
oversubscribes (about twice as slow at r = 32).  Such a program should
hold BLAS at one thread itself (``threadpoolctl.threadpool_limits(1, "blas")`` in the main
thread, or ``OPENBLAS_NUM_THREADS=1``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["single_threaded_blas"]

_lock = threading.Lock()
_depth = 0  # kernels inside single_threaded_blas() now, over all Python threads
_limiter: Any = None  # threadpoolctl's limiter of the outermost entry (restores the setting)
_controller: Any = None


def _blas_controller() -> Any:
    """A ``threadpoolctl.ThreadpoolController`` made once, after SciPy's BLAS is loaded (the
    one numba's ``np.dot`` calls; numpy's own BLAS is loaded with numpy)."""
    global _controller
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library numba binds to)
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


@contextmanager
def single_threaded_blas(active: bool = True) -> Iterator[None]:
    """Every loaded BLAS at one thread inside the block, the caller's setting restored after.

    ``active=False`` makes it a no-op (a kernel that runs on one numba thread lets BLAS use
    its own threads)."""
    global _depth, _limiter
    if not active:
        yield
        return
    controller = _blas_controller()
    with _lock:
        if _depth == 0:
            _limiter = controller.limit(limits=1, user_api="blas")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _limiter.restore_original_limits()
                _limiter = None
