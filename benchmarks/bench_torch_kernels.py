"""Benchmark of the torch backend's chunked kernels (not a test).

Batch 8, complex128, N = 2^10 .. 2^17, a disordered chain ``diag = -2 + U(-1, 1)``, off-diagonals
1, ``z = 0.3 + 1e-3 j``.  Prints the median wall time of

* the chunked forward of ``resolvent_diagonal``,
* forward + backward (``G.abs().sum().backward()``-style loss through the O(N) backward),
* the reference loop (``method="reference"``, small N only),
* for scale, the compiled sequential CPU kernels (``method="sequential"``, forward),

and the ratio (fwd+bwd)/fwd.  Usage::

    python benchmarks/bench_torch_kernels.py [--threads T] [--repeat R] [--chunk L] [--kernel K]
                                             [--clock wall|process]

``--kernel`` is one of resolvent_diagonal (default), logdet, solve.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from semisep.backends.torch import TorchBackend
from semisep.backends.torch.bridge import _numpy_kernels_available

CLOCK = time.perf_counter


def _median_time(fn, repeat: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        t0 = CLOCK()
        fn()
        ts.append(CLOCK() - t0)
    return statistics.median(ts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--chunk", type=int, default=None)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--kernel", default="resolvent_diagonal",
                   choices=["resolvent_diagonal", "logdet", "solve"])
    p.add_argument("--max-log2n", type=int, default=17)
    p.add_argument("--clock", choices=["wall", "process"], default="wall",
                   help="process: CPU time of this process (robust on a shared machine; with "
                        "--threads 1 it is the compute time)")
    args = p.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "process" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    be = TorchBackend()
    B = args.batch
    dt = torch.complex128
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {B}, {dt}, "
          f"kernel {args.kernel}, clock {args.clock}")
    print(f"{'N':>8} {'fwd ms':>9} {'fwd+bwd ms':>11} {'ratio':>6} {'ref ms':>9} {'Melem/s fwd':>12} "
          f"{'seq fwd ms':>11}")
    for lg in range(10, args.max_log2n + 1):
        _bench_one(be, args, 2 ** lg, B, dt, g)


def _bench_one(be, args, N, B, dt, g) -> None:
    """One line of the table: problem size N."""
    v = torch.rand(B, N, generator=g, dtype=torch.float64) * 2 - 1
    alpha = (-2.0 + v - (0.3 + 1e-3j)).to(dt)
    b = torch.ones(B, N - 1, dtype=dt)
    c = torch.ones(B, N - 1, dtype=dt)
    f = torch.randn(B, N, 1, generator=g, dtype=torch.float64).to(dt)
    pm = torch.full((B,), 1e-13, dtype=torch.float64)

    def call(a, bb, cc, ff, method):
        if args.kernel == "resolvent_diagonal":
            return be.resolvent_diagonal(a, bb * cc, pm, method, chunk_length=args.chunk)[0]
        if args.kernel == "logdet":
            return be.logdet(a, bb * cc, pm, method, chunk_length=args.chunk)[0]
        return be.solve(a, bb, cc, ff, pm, method, chunk_length=args.chunk)[0]

    def fwd():
        with torch.no_grad():
            call(alpha, b, c, f, "chunked")

    def fwdbwd():
        a = alpha.detach().requires_grad_()
        bb = b.detach().requires_grad_()
        out = call(a, bb, c, f, "chunked")
        out.real.sum().backward()

    tf = _median_time(fwd, args.repeat)
    tb = _median_time(fwdbwd, args.repeat)
    if N <= 2 ** 12:
        def ref():
            with torch.no_grad():
                call(alpha, b, c, f, "reference")
        tr = f"{_median_time(ref, 1) * 1e3:9.1f}"
    else:
        tr = f"{'-':>9}"
    if _numpy_kernels_available():  # the compiled sequential kernels, for scale (CPU only)
        def seq():
            with torch.no_grad():
                call(alpha, b, c, f, "sequential")
        ts = f"{_median_time(seq, args.repeat) * 1e3:11.2f}"
    else:
        ts = f"{'-':>11}"
    print(f"{N:>8} {tf * 1e3:9.2f} {tb * 1e3:11.2f} {tb / tf:6.2f} {tr} {B * N / tf / 1e6:12.1f} {ts}")


if __name__ == "__main__":
    main()
