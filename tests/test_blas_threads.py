"""BLAS held at one thread while the fused Woodbury kernels call it from numba's threads
(:mod:`semisep.backends._blas`): set inside, the caller's setting restored after, also when
two Python threads overlap."""

from __future__ import annotations

import threading

import numba
import numpy as np
import pytest

from semisep.backends import _blas
from semisep.backends import numpy as nb


def _blas_threads(controller):
    return [info["num_threads"] for info in controller.select(user_api="blas").info()]


@pytest.fixture
def two_blas_threads():
    """Every loaded BLAS at two threads for the test (so that "restored" and "held at one"
    differ), the machine's setting put back afterwards; the BLAS thread counts are yielded."""
    controller = _blas._blas_controller()
    with controller.limit(limits=2, user_api="blas"):
        threads = _blas_threads(controller)
        if not threads or min(threads) < 2:
            pytest.skip(f"no BLAS that runs two threads here (thread counts {threads})")
        yield controller, threads


def test_single_threaded_blas_holds_one_thread_and_restores(two_blas_threads):
    controller, before = two_blas_threads
    with _blas.single_threaded_blas():
        assert _blas_threads(controller) == [1] * len(before)
        with _blas.single_threaded_blas():  # nested
            assert _blas_threads(controller) == [1] * len(before)
        assert _blas_threads(controller) == [1] * len(before)
    assert _blas_threads(controller) == before
    with _blas.single_threaded_blas(active=False):
        assert _blas_threads(controller) == before


class _RecordingController:
    """Stands in for threadpoolctl's controller: one process-wide BLAS thread count, as in
    OpenBLAS's pthreads build (the real library cannot be used for this test: OpenBLAS 0.3.30
    ignores a count set from a non-main thread once the main thread has set one)."""

    def __init__(self, threads):
        self.threads = threads

    def limit(self, limits, user_api):
        assert user_api == "blas"
        controller, original = self, self.threads

        class Limiter:
            def restore_original_limits(self):
                controller.threads = original

        self.threads = limits
        return Limiter()


def test_overlapping_calls_from_two_threads_restore_the_callers_setting(monkeypatch):
    """A enters, B enters, A leaves, B leaves: BLAS stays at one thread until B leaves and then
    returns to the setting from before A (a save and restore per call would have B save A's
    one-thread limit and restore it for good)."""
    fake = _RecordingController(4)
    monkeypatch.setattr(_blas, "_blas_controller", lambda: fake)
    a_inside, b_inside, a_left = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with _blas.single_threaded_blas():
            seen["A inside"] = fake.threads
            a_inside.set()
            assert b_inside.wait(10)
        a_left.set()

    def b():
        assert a_inside.wait(10)
        with _blas.single_threaded_blas():
            b_inside.set()
            assert a_left.wait(10)
            seen["after A left"] = fake.threads

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == {"A inside": 1, "after A left": 1}
    assert fake.threads == 4 and _blas._depth == 0


@pytest.mark.parametrize("B,N,r,hold", [(1, 4096, 16, True), (3, 4096, 16, True),
                                        (1, 1 << 14, 8, False), (2, 64, 16, False)])
def test_woodbury_kernels_hold_blas_at_one_thread_when_they_call_it_concurrently(
    rng, monkeypatch, two_blas_threads, B, N, r, hold
):
    """Both fused kernels call BLAS (one product per block of rows) only above the inline rank
    (8).  Below B N r^2 = 2^20 multiply-adds the products are too small for BLAS to thread and
    the hold is skipped.  With one numba thread nothing runs concurrently and BLAS keeps its
    threads.  The results do not depend on the number of threads (column panels)."""
    controller, before = two_blas_threads
    seen = []

    def recording(active=True):
        seen.append((active, _blas_threads(controller)))
        return _blas.single_threaded_blas(active)

    monkeypatch.setattr(nb.woodbury, "single_threaded_blas", recording)  # where the kernels look it up
    alpha = rng.standard_normal((B, N)) + 4.0
    b, c = rng.standard_normal((B, N - 1)), rng.standard_normal((B, N - 1))
    U, V = rng.standard_normal((B, N, r)), rng.standard_normal((B, N, r))
    shift = np.full(B, 0.2 + 0.1j)
    pivmin = np.full(B, 1e-300)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        concurrent = numba.get_num_threads() > 1
        sw = nb.woodbury_forward_kernel(alpha, b, c, U, V, pivmin, shift=shift)
        Kinv = np.linalg.inv(np.eye(r) + sw.KmI)
        corr = nb.woodbury_correction_kernel(sw, Kinv)
        numba.set_num_threads(1)
        sw1 = nb.woodbury_forward_kernel(alpha, b, c, U, V, pivmin, shift=shift)
        corr1 = nb.woodbury_correction_kernel(sw1, Kinv)
    finally:
        numba.set_num_threads(old)
    assert [a for a, _ in seen] == [concurrent and hold, concurrent and hold, False, False]
    assert _blas_threads(controller) == before
    X, KmI, gL, _, _ = nb.woodbury_forward_ref(alpha, b, c, U, V, pivmin, shift=shift)
    np.testing.assert_allclose(sw.KmI, KmI, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sw1.KmI, KmI, rtol=1e-12, atol=1e-12)
    want = nb.woodbury_correction_ref(gL, b, c, X, V, Kinv)
    np.testing.assert_allclose(corr, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(corr1, want, rtol=1e-10, atol=1e-10)


def test_the_controller_holds_the_blas_numba_calls():
    """numba's ``np.dot`` calls SciPy's ``cython_blas``: SciPy's own BLAS must be among the
    libraries held at one thread (checked where SciPy bundles its OpenBLAS, as its wheels do)."""
    import scipy

    blas = scipy.show_config(mode="dicts")["Build Dependencies"]["blas"]
    if blas["name"] != "scipy-openblas":
        pytest.skip(f"SciPy built against {blas['name']}; its library path is not known here")
    held = _blas._blas_controller().select(user_api="blas").info()
    assert any(info["version"] == blas["version"] and "scipy" in info["filepath"] for info in held), held
