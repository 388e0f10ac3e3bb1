"""A/B two source trees of semisep on the same machine: the public calls whose speed the
no-loss constraints name, timed in fresh processes that alternate between the trees.

    python benchmarks/ab_trees.py BASE_TREE AFTER_TREE [--rounds 4] [--only SUBSTRING]

Each tree is a checkout (e.g. ``git worktree add --detach ../base <commit>``); each round runs
this file's ``--probe`` mode once per tree with that tree first on ``sys.path``, and the table
gives, per call, the median over the rounds of ``after / base`` with the per-round range.
Alternating fresh processes puts a slow spell of a noisy machine on both sides alike.
``--only`` keeps the calls whose name contains one of its ``|``-separated substrings (the
others are not run; the names themselves contain commas).  The last column is the median
number of minor page faults per call (``getrusage``'s ``ru_minflt``) on each side: a count,
not a time, so it does not depend on the machine's load; an allocation that the C library
maps afresh (and returns to the system) on every call shows up there.
"""

# ruff: noqa: B023  (every closure below is timed inside its own loop iteration)
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_FAULTS: dict[str, int] = {}


class _Timings(dict):
    """``{call: median seconds}``; a call not selected by ``--only`` is skipped."""

    def __init__(self, only: list[str]) -> None:
        super().__init__()
        self.only = only

    def __setitem__(self, key: str, fn) -> None:
        if self.only and not any(s in key for s in self.only):
            return
        t, f = _med(*fn) if isinstance(fn, tuple) else _med(fn)
        _FAULTS[key] = f
        super().__setitem__(key, t)


def _med(fn, reps: int = 15) -> tuple[float, int]:
    """Median seconds and median minor page faults of a call (two warm calls first)."""
    fn()
    fn()
    ts, fs = [], []
    for _ in range(reps):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        fs.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return float(np.median(ts)), int(np.median(fs))


def probe(only: list[str] | None = None) -> dict[str, float]:
    """Median seconds of each call, in the tree that is first on sys.path."""
    import torch

    import semisep as ss

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    z = 0.5 + 1e-3j
    out = _Timings(only or [])
    for k in (10, 17):
        n = 1 << k
        T = ss.Tridiagonal(-2 + rng.uniform(-1, 1, (8, n)), np.ones(n - 1))
        out[f"resolvent diagonal, numpy, batch 8, N = 2^{k}"] = lambda: T.resolvent_diagonal(z)
        F = rng.standard_normal((8, n))
        Tn = ss.Tridiagonal(2.5 + rng.uniform(-1, 1, (8, n)), rng.uniform(0.5, 1, n - 1),
                            rng.uniform(-1, -0.5, n - 1))
        out[f"solve real, batch 8, N = 2^{k}"] = lambda: Tn.solve(F, 0.3)
        out[f"solve complex, batch 8, N = 2^{k}"] = lambda: Tn.solve(F, 0.3 + 0.2j)
        out[f"logdet, batch 8, N = 2^{k}"] = lambda: Tn.logdet(0.3 + 0.2j)
    n = 1 << 16
    T = ss.Tridiagonal(-2.0 + rng.uniform(-1, 1, n), np.ones(n - 1), 0.5 * np.ones(n - 1))
    for r in (4, 16, 32):
        U = rng.standard_normal((n, r)) / np.sqrt(n)
        V = rng.standard_normal((n, r)) / np.sqrt(n)
        H = ss.TridiagonalPlusLowRank(T, U, V)
        out[f"T + U V^T resolvent diagonal, N = 2^16, r = {r}"] = lambda: H.resolvent_diagonal(0.1 + 0.05j)
    for k in (14, 16):
        n = 1 << k
        d = torch.from_numpy(-2 + rng.uniform(-1, 1, (8, n)))
        off = torch.ones(n - 1, dtype=torch.float64)
        zt = torch.tensor(z)
        Tt = ss.Tridiagonal(d, off)
        out[f"torch CPU forward, batch 8, N = 2^{k}"] = lambda: Tt.resolvent_diagonal(zt)
        dg = d.clone().requires_grad_()

        def fwd_bwd():
            G = ss.Tridiagonal(dg, off).resolvent_diagonal(zt)
            (G.real.square() + G.imag.square()).sum().backward()

        out[f"torch CPU forward + backward, batch 8, N = 2^{k}"] = (fwd_bwd, 9)
    return dict(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", nargs="?")
    p.add_argument("after", nargs="?")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--only", default="", help="'|'-separated substrings of the calls to run")
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    only = [x.strip() for x in args.only.split("|") if x.strip()]
    if args.probe:
        print(json.dumps({"t": probe(only), "faults": _FAULTS}))
        return 0
    if not (args.base and args.after):
        p.error("give BASE_TREE and AFTER_TREE")
    runs: dict[str, list[dict[str, float]]] = {"base": [], "after": []}
    for _ in range(args.rounds):
        for side, tree in (("base", args.base), ("after", args.after)):
            env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()))
            res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--probe",
                                  "--only", args.only], cwd=tree, env=env, capture_output=True,
                                 text=True, check=True)
            runs[side].append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"| call | base | after | after/base, median of {args.rounds} rounds [range] "
          "| minor faults per call, base / after |")
    print("|---|---|---|---|---|")
    for key in runs["base"][0]["t"]:
        b = np.median([r["t"][key] for r in runs["base"]])
        a = np.median([r["t"][key] for r in runs["after"]])
        per = [ra["t"][key] / rb["t"][key] for ra, rb in zip(runs["after"], runs["base"], strict=True)]
        fb = int(np.median([r["faults"][key] for r in runs["base"]]))
        fa = int(np.median([r["faults"][key] for r in runs["after"]]))
        print(f"| {key} | {b * 1e3:.3f} ms | {a * 1e3:.3f} ms | {np.median(per):.2f} "
              f"[{min(per):.2f}-{max(per):.2f}] | {fb} / {fa} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
