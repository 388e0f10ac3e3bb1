"""Accuracy of the chunked scan form of the quasiseparable recursions (the torch path off the
CPU, run here on CPU tensors) against the sequential numba kernels, for GP covariances plus
white noise (0.1) at c * span = 1 .. 1e4, N = 2^17 by default, float64.

Prints, per kernel and c * span, the largest relative error (max abs difference over max abs
value) of the pivots, logdet, solve, inverse diagonal and matvec, and the rows the scan handed
to the portable loop.

    PYTHONPATH=. python benchmarks/accuracy_quasiseparable_scan.py [--n 131072]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from semisep.backends.torch import quasiseparable as tq
from semisep.kernels import SHO, Exp, Matern32


def relerr(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


KERNELS = {"exp": lambda c: Exp(1.0 / c), "matern32": lambda c: Matern32(1.0 / c),
           "sho(Q=3)": lambda c: SHO(c, 3.0), "exp+sho(Q=0.3)": lambda c: Exp(1.0 / c) + SHO(c, 0.3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2**17)
    n = ap.parse_args().n
    rng = np.random.default_rng(0)
    loop_rows = []
    orig = tq.factor_loop

    def spy(*args):
        loop_rows.append(args[-1].shape[0])
        return orig(*args)

    tq.factor_loop = spy
    print(f"N = {n}; relative error of the chunked scan against the sequential kernels")
    print("| kernel | c*span | pivots | logdet | solve | inverse diagonal | matvec | rows to loop |")
    print("|---|---|---|---|---|---|---|---|")
    for name, mk in KERNELS.items():
        for cspan in (1.0, 1e2, 1e4):
            t = np.sort(rng.uniform(0, 1.0, n))
            op = mk(cspan).to_operator(torch.tensor(t), diag=0.1)
            y = torch.tensor(rng.standard_normal(n))
            f1 = op.factor()
            want = (f1.pivots, f1.logdet(), f1.solve(y), f1.resolvent_diagonal(), op.matvec(y))
            loop_rows.clear()
            with tq.use_method("chunked"):
                f2 = op.factor()
                got = (f2.pivots, f2.logdet(), f2.solve(y), f2.resolvent_diagonal(), op.matvec(y))
            errs = " | ".join(f"{relerr(a, b):.1e}" for a, b in zip(got, want, strict=True))
            print(f"| {name} | {cspan:.0e} | {errs} | {sum(loop_rows)} |", flush=True)


if __name__ == "__main__":
    main()
