"""torch.compile of the Tridiagonal operations against eager, forward+backward on CPU.

Batch 8, N = 2^17, a random real diagonal requiring grad, a shared off-diagonal U(0.5, 1.5),
a complex tensor z = 0.1 + 0.5j requiring grad.  Two losses: ``sum |G|`` of the resolvent
diagonal alone, and that plus ``Re logdet`` and ``Re sum solve(ones)``.  Timed: eager,
``torch.compile(fullgraph=True)`` with ``backend="aot_eager"`` and with inductor (the default),
best of ``--reps`` steps after two warm-up steps, in rounds interleaved in one process; ratios
are to eager's best.  Under tracing every operation is one opaque custom op whose backward
recomputes the eager forward (semisep/backends/torch/ops.py), so the compiled step costs about
one extra forward.

    PYTHONPATH=. python benchmarks/bench_torch_compile.py [--n 131072] [--reps 7] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time

import torch

import semisep as ss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2 ** 17)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    d0 = torch.randn(args.batch, args.n, dtype=torch.float64)
    off = torch.rand(args.n - 1, dtype=torch.float64) + 0.5
    z0 = torch.tensor(0.1 + 0.5j)

    def loss_resolvent(d, z):
        return ss.Tridiagonal(d, off).resolvent_diagonal(z).abs().sum()

    def loss_all(d, z):
        T = ss.Tridiagonal(d, off)
        return (T.resolvent_diagonal(z).abs().sum() + T.logdet(z).real.sum()
                + T.solve(torch.ones_like(d), z).real.sum())

    def step(fn):
        d = d0.clone().requires_grad_()
        z = z0.clone().requires_grad_()
        fn(d, z).backward()

    def best(fn):
        step(fn)
        step(fn)
        ts = []
        for _ in range(args.reps):
            t = time.perf_counter()
            step(fn)
            ts.append(time.perf_counter() - t)
        return min(ts)

    for name, loss in (("resolvent_diagonal", loss_resolvent), ("all three", loss_all)):
        fns = {"eager": loss,
               "aot_eager": torch.compile(loss, fullgraph=True, backend="aot_eager"),
               "inductor": torch.compile(loss, fullgraph=True)}
        res: dict[str, float] = {}
        for _ in range(args.rounds):
            for k, f in fns.items():
                res[k] = min(res.get(k, float("inf")), best(f))
        base = res["eager"]
        print(f"{name:>18}: " + ", ".join(f"{k} {v * 1e3:.1f} ms ({v / base:.2f}x)"
                                          for k, v in res.items()))


if __name__ == "__main__":
    main()
