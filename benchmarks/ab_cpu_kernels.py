"""A/B of the CPU kernel choices quoted in docs/benchmarks.md and in the kernels' comments.

Batch 8, N = 2^17, the disordered chain of bench_tridiagonal, z = 0.5 + 1e-3j; every pair is
timed round-robin in warm blocks (:func:`benchmarks.common.interleaved_times`), medians in ms:

* the no-grad resolvent kernel (rows one by one; the paired variant was dropped on 2026-11-23,
  not confirmed faster and three times the compile time);
* the with-pivots (autograd forward) kernel, likewise;
* the backward kernel one row per task (the only variant kept; pairs measured no faster);
* torch's CPU ``isfinite().all()`` and ``aminmax`` against NumPy's on the same memory.

    PYTHONPATH=. python benchmarks/ab_cpu_kernels.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_tridiagonal import BATCH, Z, disordered_chain  # noqa: E402
from benchmarks.common import interleaved_times  # noqa: E402
from semisep.backends import numpy as nb  # noqa: E402


def main() -> None:
    n = 1 << 17
    diag, off = disordered_chain(n)
    shift = np.full(BATCH, Z, np.complex128)
    beta = np.broadcast_to(off * off, (BATCH, n - 1))
    piv = np.full(BATCH, 1e-300)
    G, gL, gR = (np.empty((BATCH, n), complex) for _ in range(3))
    g, s = np.zeros(BATCH, np.int64), np.zeros(BATCH, bool)
    pairs = BATCH // 2
    fns = {
        "no-grad, rows one by one": lambda: nb._resolvent_batch(diag, shift, beta, piv, G, g, s),
        "with pivots, one by one": lambda: nb._resolvent_pivots_batch(
            diag, shift, beta, piv, G, gL, gR, g, s, 0),
        "with pivots, in pairs": lambda: nb._resolvent_pivots_pairs(
            diag, shift, beta, piv, G, gL, gR, g, s, pairs),
    }
    for k, t in interleaved_times(fns, rounds=10, block=3).items():
        print(f"{k:32s} {t.median * 1e3:7.2f} ms")
    Gs, gLs, gRs, _, _ = nb.resolvent_diagonal_shifted_with_pivots(diag, shift, beta, piv)
    gbar = np.random.default_rng(0).standard_normal((BATCH, n)) + 1j
    t = interleaved_times({"backward": lambda: nb.resolvent_diagonal_backward(
        gbar, Gs, gLs, gRs, beta, want_dbeta=False, conjugate=True)}, rounds=10, block=3)
    print(f"{'backward, one row per task':32s} {t['backward'].median * 1e3:7.2f} ms")
    try:
        import torch
    except ImportError:
        return
    x = torch.from_numpy(diag)
    red = {
        "torch isfinite().all()": lambda: bool(torch.isfinite(x).all()),
        "numpy isfinite().all()": lambda: bool(np.isfinite(diag).all()),
        "torch aminmax": lambda: torch.aminmax(x, dim=-1),
        "numpy min, max": lambda: (diag.min(-1), diag.max(-1)),
    }
    for k, t in interleaved_times(red, rounds=10, block=3).items():
        print(f"{k:32s} {t.median * 1e3:7.2f} ms")


if __name__ == "__main__":
    main()
