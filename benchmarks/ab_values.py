"""Bit-for-bit comparison of two source trees of semisep: the public NumPy-backend calls whose
kernels a speed change touched, on fixed problems, must give the same bytes in both.

    python benchmarks/ab_values.py BASE_TREE AFTER_TREE

Each tree runs this file's ``--probe`` mode in a fresh process with that tree first on
``sys.path``; the probe prints a SHA-256 digest of every result (values, dtype, shape), and the
two lists are compared.  Problems: real and complex solves with one and several right-hand
sides (batch 1 and 8, N up to 2^17, so that the recycled work arrays are in play, each call
made twice so that the second one reuses them), rows with zero pivots (row exchanges), the
log-determinant and the resolvent diagonal.  Exit status 1 when any digest differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def _digest(x) -> str:
    x = np.asarray(x)
    h = hashlib.sha256(np.ascontiguousarray(x).tobytes())
    h.update(f"{x.dtype}{x.shape}".encode())
    return h.hexdigest()[:16]


def probe() -> dict[str, str]:
    import semisep as ss

    rng = np.random.default_rng(0)
    out: dict[str, str] = {}
    for B, k in ((1, 10), (8, 12), (8, 17), (3, 15)):
        n = 1 << k
        diag = 2.5 + rng.uniform(-1, 1, (B, n))
        diag[:, ::5] = 0.0  # zero leading entries: partial pivoting exchanges rows
        T = ss.Tridiagonal(diag, rng.uniform(0.5, 1, n - 1), rng.uniform(-1, -0.5, n - 1))
        F = rng.standard_normal((B, n))
        F3 = rng.standard_normal((B, n, 3))
        for z in (0.3, 0.3 + 0.2j):
            for name, rhs in (("vector", F), ("3 columns", F3)):
                for rep in (1, 2):  # the second call reuses the first one's work arrays
                    out[f"solve B={B} N=2^{k} z={z} {name} call {rep}"] = _digest(T.solve(rhs, z))
            out[f"logdet B={B} N=2^{k} z={z}"] = _digest(T.logdet(z))
            out[f"resolvent diagonal B={B} N=2^{k} z={z}"] = _digest(T.resolvent_diagonal(z))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", nargs="?")
    p.add_argument("after", nargs="?")
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe:
        print(json.dumps(probe()))
        return 0
    if not (args.base and args.after):
        p.error("give BASE_TREE and AFTER_TREE")
    res = {}
    for side, tree in (("base", args.base), ("after", args.after)):
        env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()))
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--probe"], cwd=tree,
                             env=env, capture_output=True, text=True, check=True)
        res[side] = json.loads(out.stdout.strip().splitlines()[-1])
    differ = [k for k in res["base"] if res["after"].get(k) != res["base"][k]]
    for k in res["base"]:
        print(f"{'DIFFERS' if k in differ else 'same   '}  {k}")
    print(f"{len(res['base']) - len(differ)} of {len(res['base'])} results bit for bit the same")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
