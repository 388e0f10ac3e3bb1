"""aten ops dispatched by one torch ``Tridiagonal.resolvent_diagonal`` call (not a test).

Counts the non-view ops (a ``TorchDispatchMode``) of a warm chunked call at batch 8, then times
the call (median of 30).  The count does not depend on the machine's load, so two trees can be
compared on a busy machine:

    PYTHONPATH=<tree> python benchmarks/op_counts.py 1024 [--method chunked] [--per-op]
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import semisep as ss


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--method", default="chunked")
    ap.add_argument("--per-op", action="store_true")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    d = torch.tensor(rng.standard_normal((a.batch, a.n)))
    T = ss.Tridiagonal(d, torch.ones(a.n - 1, dtype=torch.float64))
    z = 0.3 + 0.01j
    T.resolvent_diagonal(z, method=a.method)  # warm-up (compilation, caches)
    with _Count() as m:
        T.resolvent_diagonal(z, method=a.method)
    print(f"{sum(m.ops.values())} aten ops (B = {a.batch}, N = {a.n}, method={a.method})")
    if a.per_op:
        for name, k in sorted(m.ops.items()):
            print(f"{k:6d} {name}")
    ts = []
    for _ in range(30):
        t = time.perf_counter()
        T.resolvent_diagonal(z, method=a.method)
        ts.append(time.perf_counter() - t)
    print(f"median {1e3 * float(np.median(ts)):.3f} ms")


if __name__ == "__main__":
    main()
