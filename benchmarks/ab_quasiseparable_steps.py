"""A/B of the NumPy backend's quasiseparable kernels in two source trees: timings of the
public operations (and the gradient kernels) that run each kernel, and a bit-for-bit check of
every kernel's outputs.

    python benchmarks/ab_quasiseparable_steps.py BASE_TREE AFTER_TREE [--rounds 5]
        [--log2n 16] [--ranks 1,2,4,8] [--batches 1,8] [--reps 3] [--only SUBSTR,...]
    python benchmarks/ab_quasiseparable_steps.py BASE_TREE AFTER_TREE --check

Each tree is a checkout (``git worktree add --detach /tmp/base <commit>``).  Every round runs
one fresh process per tree (``PYTHONPATH`` = that tree), the order of the two trees alternating
from round to round; a process times each case ``--reps`` times after one warm-up call and
reports the median.  Printed: per case the median over the rounds of each tree, and
``after / base`` (the median of the per-round ratios, with their range).  The cases:

* ``general``: a general-storage operator (``g, h, b`` given): ``matvec``, ``factor``,
  ``solve`` (from the factorization), ``resolvent_diagonal`` (from the factorization);
* ``symmetric``: symmetric storage with transition matrices: ``factor``, ``solve``,
  ``resolvent_diagonal`` (one call: the fused kernel for float64);
* ``diagonal``: symmetric storage with diagonal transitions (rank >= 3): ``factor``,
  ``resolvent_diagonal``;
* ``grad``: ``factor_kernel(store_states=True)`` + ``factor_backward_kernel`` and
  ``bilinear_grad_kernel`` (the torch backend's reverse mode).

``--check`` instead runs, in each tree, every kernel of the engine (factor with guarded pivots,
solves, inverse diagonals, the fused call, products, gradients; float32, float64, complex128;
one and three right-hand sides) on small random problems and compares the outputs of the two
trees exactly (``np.array_equal``, NaN equal to NaN); it exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


# ------------------------------------------------------------------------------------------------
# child side (runs with the tree under test first on sys.path)
# ------------------------------------------------------------------------------------------------
def _generators(rng, B, n, r, dtype=np.float64, diagonal=False):
    """Random well-conditioned generators: ``diag, p, q, a (, g, h, b)``."""
    def rnd(*shape):
        x = rng.standard_normal(shape)
        if np.dtype(dtype).kind == "c":
            x = x + 0.3j * rng.standard_normal(shape)
        return x.astype(dtype)

    diag = (4.0 + 2.0 * r + np.abs(rnd(B, n))).astype(dtype)
    p, q, g, h = (rnd(B, n, r) / np.sqrt(r) for _ in range(4))
    if diagonal:
        a = (0.9 * np.tanh(rnd(B, n, r))).astype(dtype)
        b = a
    else:
        a = rnd(B, n, r, r) * (0.5 / np.sqrt(r))
        b = rnd(B, n, r, r) * (0.5 / np.sqrt(r))
    return diag, p, q, a, g, h, b


def _timed_cases(log2n: int, ranks: list[int], batches: list[int], only: list[str]):
    import semisep as ss
    from semisep.backends.numpy import quasiseparable as K
    from semisep.backends.numpy.quasiseparable_grad import factor_backward_kernel

    rng = np.random.default_rng(0)
    n = 1 << log2n
    cases = {}
    for r in ranks:
        for B in batches:
            tag = f"r={r} B={B}"
            diag, p, q, a, g, h, b = _generators(rng, B, n, r)
            x = rng.standard_normal((B, n))
            gen = ss.Quasiseparable(diag, p, q, a, g, h, b)
            fg = gen.factor()
            cases[f"general matvec {tag}"] = lambda o=gen, x=x: o.matvec(x)
            cases[f"general factor {tag}"] = lambda o=gen: o.factor()
            cases[f"general solve {tag}"] = lambda f=fg, x=x: f.solve(x)
            cases[f"general resolvent_diagonal {tag}"] = (
                lambda o=gen: o.factor().resolvent_diagonal())
            sym = ss.Quasiseparable(diag, p, q, a)
            fs = sym.factor()
            cases[f"symmetric factor {tag}"] = lambda o=sym: o.factor()
            cases[f"symmetric solve {tag}"] = lambda f=fs, x=x: f.solve(x)
            cases[f"symmetric resolvent_diagonal {tag}"] = lambda o=sym: o.resolvent_diagonal()
            if r >= 3:
                ad = 0.9 * np.tanh(rng.standard_normal((B, n, r)))
                dia = ss.Quasiseparable(diag, p, q, ad)
                cases[f"diagonal factor {tag}"] = lambda o=dia: o.factor()
                cases[f"diagonal resolvent_diagonal {tag}"] = lambda o=dia: o.resolvent_diagonal()
            c = [np.ascontiguousarray(t) for t in (diag, p, q, a, g, h, b)]
            bars = (rng.standard_normal((B, n)), rng.standard_normal((B, n, r)),
                    rng.standard_normal((B, n, r)))

            def fwd_bwd(c=c, bars=bars):
                d, qt, ht, _, _, Ms, _ = K.factor_kernel(*c, 1e-300, store_states=True)
                return factor_backward_kernel(c[1], c[3], c[4], c[6], d, qt, ht, Ms, *bars)

            cases[f"grad factor+backward {tag}"] = fwd_bwd
            u3 = rng.standard_normal((B, n, 1))
            v3 = rng.standard_normal((B, n, 1))
            cases[f"grad bilinear {tag}"] = (
                lambda u=u3, v=v3, p=c[1], q=c[2], a=c[3]: K.bilinear_grad_kernel(u, v, p, q, a))
    if only:
        cases = {k: f for k, f in cases.items() if any(s in k for s in only)}
    return cases


def child_time(log2n: int, ranks: list[int], batches: list[int], reps: int,
               only: list[str]) -> dict[str, float]:
    cases = _timed_cases(log2n, ranks, batches, only)
    out = {}
    for name, f in cases.items():
        f()  # warm-up (compilation from the cache, first touch)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        out[name] = float(np.median(ts))
    return out


def child_check() -> dict[str, np.ndarray]:
    """Every engine kernel's outputs on small problems, keyed by a description."""
    from semisep.backends.numpy import quasiseparable as K
    from semisep.backends.numpy.quasiseparable_grad import factor_backward_kernel

    out: dict[str, np.ndarray] = {}

    def put(key, res):
        if res is None:
            out[key + " None"] = np.zeros(0)
            return
        if not isinstance(res, tuple):
            res = (res,)
        for j, v in enumerate(res):
            out[f"{key} [{j}]"] = np.asarray(v) if v is not None else np.zeros(0)

    rng = np.random.default_rng(1)
    for dtype in (np.float64, np.float32, np.complex128):
        for r in (1, 2, 3, 5, 8):
            for n in (1, 2, 37, 300):
                B = 4
                key = f"{np.dtype(dtype).name} r={r} n={n}"
                diag, p, q, a, g, h, b = _generators(rng, B, n, r, dtype)
                # guarded pivots: zero, tiny positive, tiny negative first pivots
                diag[0, 0] = 0
                diag[1, 0] = 1e-30
                diag[2, 0] = -1e-30
                piv = 1e-6
                put(f"factor general {key}", K.factor(diag, p, q, a, g, h, b, piv))
                put(f"factor_kernel states {key}",
                    K.factor_kernel(diag, p, q, a, g, h, b, piv, store_states=True))
                put(f"factor symmetric {key}", K.factor(diag, p, q, a, p, q, a, piv))
                ad = _generators(rng, B, n, r, dtype, diagonal=True)[3]
                put(f"factor diagonal {key}", K.factor(diag, p, q, ad, p, q, ad, piv))
                # shared (one-row) generators and stride-0 q
                q0 = np.broadcast_to(q[:1, :1], (1, n, r))
                put(f"factor shared {key}", K.factor(diag, p[:1], q0, a[:1], g, h[:, :1], b, piv))
                dg, qtg, htg = K.factor(diag, p, q, a, g, h, b, piv)[:3]
                ds, qts, hts = K.factor(diag, p, q, a, p, q, a, piv)[:3]
                dd, qtd, htd = K.factor(diag, p, q, ad, p, q, ad, piv)[:3]
                for kk in (1, 3):
                    f = rng.standard_normal((B, n, kk)).astype(dtype)
                    for tr in (False, True):
                        put(f"solve general k={kk} T={tr} {key}",
                            K.solve(dg, qtg, htg, p, a, g, b, f, tr))
                        put(f"solve symmetric k={kk} T={tr} {key}",
                            K.solve(ds, qts, hts, p, a, p, a, f, tr))
                    put(f"matvec general k={kk} {key}", K.matvec(diag, p, q, a, g, h, b, f))
                    put(f"matvec symmetric k={kk} {key}", K.matvec(diag, p, q, a, p, q, a, f))
                    u = rng.standard_normal((B, n, kk)).astype(dtype)
                    put(f"bilinear k={kk} {key}", K.bilinear_grad_kernel(u, f, p, q, a))
                put(f"inverse_diagonal general {key}", K.inverse_diagonal(dg, qtg, htg, p, a, g, b))
                put(f"inverse_diagonal symmetric {key}",
                    K.inverse_diagonal(ds, qts, hts, p, a, p, a))
                put(f"inverse_diagonal diagonal {key}",
                    K.inverse_diagonal(dd, qtd, htd, p, ad, p, ad))
                d, qt, ht, _, _, Ms, _ = K.factor_kernel(diag, p, q, a, g, h, b, piv,
                                                         store_states=True)
                bars = tuple(rng.standard_normal(s).astype(dtype)
                             for s in ((B, n), (B, n, r), (B, n, r)))
                put(f"factor_backward {key}",
                    factor_backward_kernel(p, a, g, b, d, qt, ht, Ms, *bars))
                if np.dtype(dtype).kind == "f":
                    put(f"pivot_scale {key}", K.pivot_scale(diag, p, q, g, h))
    # the fused call (rows x N >= MIN_PARALLEL_ELEMENTS), float64, incl. a guarded row
    for r in (1, 2, 3, 4):
        for B in (1, 3):
            n = (1 << 16) // B + 5
            key = f"fused r={r} B={B}"
            diag, p, q, a, g, h, b = _generators(rng, B, n, r)
            diag[0, 7] = 1e-300
            put(f"{key} matrix", K.factor_inverse_diagonal(diag, p, q, a, p, q, a))
            ad = _generators(rng, B, n, r, diagonal=True)[3]
            put(f"{key} diagonal", K.factor_inverse_diagonal(diag, p, q, ad, p, q, ad))
    return out


# ------------------------------------------------------------------------------------------------
# parent side
# ------------------------------------------------------------------------------------------------
def _run_child(tree: Path, args: list[str]) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree))
    res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *args],
                         cwd=tree, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        raise SystemExit(f"child in {tree} failed")
    return res.stdout


def _check(base: Path, after: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for tree, tag in ((base, "base"), (after, "after")):
            f = Path(tmp) / f"{tag}.npz"
            _run_child(tree, ["--check", "--out", str(f)])
            files.append(np.load(f))
        A, Bf = files
        bad = []
        if set(A.files) != set(Bf.files):
            bad.append(f"keys differ: {sorted(set(A.files) ^ set(Bf.files))[:5]}")
        for k in sorted(set(A.files) & set(Bf.files)):
            x, y = A[k], Bf[k]
            if x.shape != y.shape or x.dtype != y.dtype or not np.array_equal(x, y, equal_nan=True):
                bad.append(k)
        print(f"compared {len(A.files)} outputs: {len(bad)} differ")
        for k in bad[:40]:
            print("  DIFFERS:", k)
        return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="*", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--log2n", type=int, default=16)
    ap.add_argument("--ranks", default="1,2,4,8")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--only", default="")
    ns = ap.parse_args()
    ranks = [int(s) for s in ns.ranks.split(",")]
    batches = [int(s) for s in ns.batches.split(",")]
    only = [s for s in ns.only.split(",") if s]
    if ns.child:
        if ns.check:
            np.savez(ns.out, **child_check())
        else:
            print(json.dumps(child_time(ns.log2n, ranks, batches, ns.reps, only)))
        return 0
    base, after = ns.trees
    if ns.check:
        return _check(base, after)
    args = ["--log2n", str(ns.log2n), "--ranks", ns.ranks, "--batches", ns.batches,
            "--reps", str(ns.reps), "--only", ns.only]
    runs: dict[str, list[dict[str, float]]] = {"base": [], "after": []}
    print(f"load before: {os.getloadavg()}", flush=True)
    for rnd in range(ns.rounds):
        order = [("base", base), ("after", after)]
        if rnd % 2:
            order.reverse()
        for tag, tree in order:
            runs[tag].append(json.loads(_run_child(tree, args).strip().splitlines()[-1]))
        print(f"round {rnd + 1}/{ns.rounds} done, load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"load after: {os.getloadavg()}\n")
    print(f"N = 2^{ns.log2n}, float64, {ns.rounds} rounds x {ns.reps} reps (medians)\n")
    print("| case | base ms | after ms | after/base (range) |")
    print("| --- | ---: | ---: | --- |")
    worst = 0.0
    for k in runs["base"][0]:
        tb = [r[k] for r in runs["base"]]
        ta = [r[k] for r in runs["after"]]
        ratios = [x / y for x, y in zip(ta, tb, strict=True)]
        med = float(np.median(ratios))
        worst = max(worst, med)
        print(f"| {k} | {1e3 * np.median(tb):.2f} | {1e3 * np.median(ta):.2f} | "
              f"{med:.3f} ({min(ratios):.2f}-{max(ratios):.2f}) |")
    print(f"\nlargest median ratio: {worst:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
