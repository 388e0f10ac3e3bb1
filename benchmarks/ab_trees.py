"""A/B two source trees of semisep on the same machine: the public calls whose speed the
no-loss constraints name, timed in fresh processes that alternate between the trees.

    python benchmarks/ab_trees.py BASE_TREE AFTER_TREE [--rounds 4]

Each tree is a checkout (e.g. ``git worktree add --detach ../base <commit>``); each round runs
this file's ``--probe`` mode once per tree with that tree first on ``sys.path``, and the table
gives, per call, the median over the rounds of ``after / base`` with the per-round range.
Alternating fresh processes puts a slow spell of a noisy machine on both sides alike.
"""

# ruff: noqa: B023  (every closure below is timed inside its own loop iteration)
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _med(fn, reps: int = 15) -> float:
    fn()
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def probe() -> dict[str, float]:
    """Median seconds of each call, in the tree that is first on sys.path."""
    import torch

    import semisep as ss

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    z = 0.5 + 1e-3j
    out: dict[str, float] = {}
    for k in (10, 17):
        n = 1 << k
        T = ss.Tridiagonal(-2 + rng.uniform(-1, 1, (8, n)), np.ones(n - 1))
        out[f"resolvent diagonal, numpy, batch 8, N = 2^{k}"] = _med(lambda: T.resolvent_diagonal(z))
        F = rng.standard_normal((8, n))
        Tn = ss.Tridiagonal(2.5 + rng.uniform(-1, 1, (8, n)), rng.uniform(0.5, 1, n - 1),
                            rng.uniform(-1, -0.5, n - 1))
        out[f"solve real, batch 8, N = 2^{k}"] = _med(lambda: Tn.solve(F, 0.3))
        out[f"solve complex, batch 8, N = 2^{k}"] = _med(lambda: Tn.solve(F, 0.3 + 0.2j))
        out[f"logdet, batch 8, N = 2^{k}"] = _med(lambda: Tn.logdet(0.3 + 0.2j))
    n = 1 << 16
    T = ss.Tridiagonal(-2.0 + rng.uniform(-1, 1, n), np.ones(n - 1), 0.5 * np.ones(n - 1))
    for r in (4, 16, 32):
        U = rng.standard_normal((n, r)) / np.sqrt(n)
        V = rng.standard_normal((n, r)) / np.sqrt(n)
        H = ss.TridiagonalPlusLowRank(T, U, V)
        out[f"T + U V^T resolvent diagonal, N = 2^16, r = {r}"] = _med(
            lambda: H.resolvent_diagonal(0.1 + 0.05j))
    for k in (14, 16):
        n = 1 << k
        d = torch.from_numpy(-2 + rng.uniform(-1, 1, (8, n)))
        off = torch.ones(n - 1, dtype=torch.float64)
        zt = torch.tensor(z)
        Tt = ss.Tridiagonal(d, off)
        out[f"torch CPU forward, batch 8, N = 2^{k}"] = _med(lambda: Tt.resolvent_diagonal(zt))
        dg = d.clone().requires_grad_()

        def fwd_bwd():
            G = ss.Tridiagonal(dg, off).resolvent_diagonal(zt)
            (G.real.square() + G.imag.square()).sum().backward()

        out[f"torch CPU forward + backward, batch 8, N = 2^{k}"] = _med(fwd_bwd, 9)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", nargs="?")
    p.add_argument("after", nargs="?")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe:
        print(json.dumps(probe()))
        return 0
    if not (args.base and args.after):
        p.error("give BASE_TREE and AFTER_TREE")
    runs: dict[str, list[dict[str, float]]] = {"base": [], "after": []}
    for _ in range(args.rounds):
        for side, tree in (("base", args.base), ("after", args.after)):
            env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()))
            res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--probe"],
                                 cwd=tree, env=env, capture_output=True, text=True, check=True)
            runs[side].append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"| call | base | after | after/base, median of {args.rounds} rounds [range] |")
    print("|---|---|---|---|")
    for key in runs["base"][0]:
        b = np.median([r[key] for r in runs["base"]])
        a = np.median([r[key] for r in runs["after"]])
        per = [ra[key] / rb[key] for ra, rb in zip(runs["after"], runs["base"], strict=True)]
        print(f"| {key} | {b * 1e3:.3f} ms | {a * 1e3:.3f} ms | {np.median(per):.2f} "
              f"[{min(per):.2f}-{max(per):.2f}] |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
