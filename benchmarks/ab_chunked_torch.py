"""A/B of the torch backend's ``method="chunked"`` path (the CUDA algorithm, here on CPU)
between source trees: forward (no grad) and forward+backward of ``resolvent_diagonal`` on
bench_torch.py's problem (batch 8, a disordered chain, z = 0.5 + 1e-3j, complex128 G).

    python benchmarks/ab_chunked_torch.py BASE_TREE OTHER_TREE [...] [--rounds 10] [--n 14,16]

One persistent worker process per tree (that tree first on ``sys.path``, one torch thread)
times each call in turn, the trees alternating call by call (the order reversed every other
round), so that a busy spell of a shared machine falls on all trees alike.  Each sample is the
least CPU time (``time.process_time``) of 3 calls after one warm-up; CPU time is less
affected than wall time by waiting for a core on a loaded machine (cache and memory-bandwidth
contention remain).  Printed per call: each tree's median sample and the median over the
rounds of its ratio to the first tree's sample of the same round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def worker(tree: str) -> None:
    sys.path.insert(0, tree)
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import semisep as ss

    assert ss.__file__.startswith(tree), ss.__file__
    z, batch = 0.5 + 1e-3j, 8
    problems: dict[int, tuple] = {}

    def problem(n):
        if n not in problems:
            rng = np.random.default_rng(0)
            d = torch.tensor(-2.0 + rng.uniform(-1, 1, (batch, n)), requires_grad=True)
            problems[n] = (d, torch.ones(n - 1, dtype=torch.float64))
        return problems[n]

    def fwd(n):
        d, off = problem(n)
        with torch.no_grad():
            ss.Tridiagonal(d, off).resolvent_diagonal(z, method="chunked")

    def fwdbwd(n):
        d, off = problem(n)
        G = ss.Tridiagonal(d, off).resolvent_diagonal(z, method="chunked")
        (torch.linalg.vector_norm(torch.view_as_real(G)) ** 2).backward()
        d.grad = None

    calls = {"fwd": fwd, "fwdbwd": fwdbwd}
    print("ready", flush=True)
    for line in sys.stdin:
        name, n = line.split()
        f = calls[name]
        f(int(n))
        ts = []
        for _ in range(3):
            t0 = time.process_time()
            f(int(n))
            ts.append(time.process_time() - t0)
        print(json.dumps(min(ts)), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("trees", nargs="+")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--n", default="14,16", help="log2 N, comma-separated")
    a = p.parse_args()
    cases = [(c, 1 << int(k)) for k in a.n.split(",") for c in ("fwd", "fwdbwd")]
    ws = {t: subprocess.Popen([sys.executable, __file__, "--worker", t], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for t in a.trees}
    for w in ws.values():
        assert w.stdout.readline().strip() == "ready"
    res: dict = {}
    for r in range(a.rounds):
        for case in cases:
            for t in (a.trees if r % 2 == 0 else a.trees[::-1]):
                ws[t].stdin.write(f"{case[0]} {case[1]}\n")
                ws[t].stdin.flush()
                res.setdefault(case, {}).setdefault(t, []).append(json.loads(ws[t].stdout.readline()))
    for w in ws.values():
        w.stdin.close()
        w.wait()
    base = a.trees[0]
    for (name, n), d in res.items():
        cells = []
        for t in a.trees:
            ratio = statistics.median([x / y for x, y in zip(d[t], d[base], strict=True)])
            label = t.rstrip("/").split("/")[-1]
            cells.append(f"{label} {statistics.median(d[t]) * 1e3:7.2f} ms ({ratio:.2f}x)")
        print(f"{name:7s} N = 2^{n.bit_length() - 1}: " + "  ".join(cells))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        main()
