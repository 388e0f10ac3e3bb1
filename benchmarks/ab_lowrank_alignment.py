"""The fused T + U V^T kernels' time against where U's data starts (not a test).

N = 2^16, z = 0.1 + 0.05j, real T, U, V (NumPy backend).  U and V are copied into buffers at
chosen byte offsets from a page boundary (large NumPy arrays start 16 bytes past one; torch's
allocator gives 64-byte-aligned tensors), and ``logdet`` and ``resolvent_diagonal`` are timed,
medians of ``--repeats`` after a warm-up; then the same through the torch backend on
``torch.tensor`` copies and on ``torch.from_numpy`` views.  docs/benchmarks.md (issue 4, stop
18) quotes it.

    PYTHONPATH=. python benchmarks/ab_lowrank_alignment.py [--rank 32] [--repeats 21]

Run it with ``NUMBA_NUM_THREADS=1`` for the one-thread comparison.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OFFSETS = [(16, 16), (8, 8), (32, 32), (48, 48), (80, 80), (16, 0), (0, 16), (0, 0), (64, 64)]


def at_offset(a: np.ndarray, offset: int) -> np.ndarray:
    """A C-contiguous copy of ``a`` whose data starts ``offset`` bytes past a 4096-byte boundary."""
    buf = np.empty(a.nbytes + 2 * 4096, dtype=np.uint8)
    start = (-buf.ctypes.data) % 4096 + offset
    out = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    import semisep as ss

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--n", type=int, default=1 << 16)
    p.add_argument("--repeats", type=int, default=21)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    n, r, z = args.n, args.rank, 0.1 + 0.05j
    d = -2 + rng.uniform(-1, 1, n)
    lo = rng.uniform(0.5, 1.5, n - 1)
    U = rng.standard_normal((n, r)) / np.sqrt(n)
    V = rng.standard_normal((n, r)) / np.sqrt(n)
    T = ss.Tridiagonal(d, lo)
    print(f"N = {n}, r = {r}; offsets of U, V mod 4096 (bytes); medians of {args.repeats}")
    for off_u, off_v in OFFSETS:
        H = ss.TridiagonalPlusLowRank(T, at_offset(U, off_u), at_offset(V, off_v))
        t_ld = _median_ms(lambda H=H: H.logdet(z), args.repeats)
        t_rd = _median_ms(lambda H=H: H.resolvent_diagonal(z), args.repeats)
        print(f"  U {off_u:3d}, V {off_v:3d}: logdet {t_ld:7.2f} ms, resolvent_diagonal {t_rd:7.2f} ms",
              flush=True)
    try:
        import torch
    except ImportError:
        return 0
    # the torch backend runs the same kernels on zero-copy views of its CPU tensors
    for label, make in (("torch.tensor copies", torch.tensor), ("torch.from_numpy views", torch.from_numpy)):
        Ht = ss.TridiagonalPlusLowRank(ss.Tridiagonal(make(d), make(lo)), make(U), make(V))
        t_ld = _median_ms(lambda Ht=Ht: Ht.logdet(z), args.repeats)
        t_rd = _median_ms(lambda Ht=Ht: Ht.resolvent_diagonal(z), args.repeats)
        print(f"  {label} (U at {Ht.U.data_ptr() % 4096}): logdet {t_ld:7.2f} ms, "
              f"resolvent_diagonal {t_rd:7.2f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
