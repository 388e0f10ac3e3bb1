"""The no-speed-loss comparison: the three benchmarks the constraint names, run in two source
trees of semisep on the same machine, alternating, with a table of per-row ratios.

    python benchmarks/ab_benchmarks.py BASE_TREE AFTER_TREE [--only tridiagonal,torch,lowrank]
                                       [--rounds 1] [--json OUT.json]
                                       [--torch-quick] [--tridiagonal-max-log2n K]

Each tree is a checkout (``git worktree add --detach ../base <commit>``).  Per round and per
benchmark, each tree runs its **own** copy of the benchmark (``bench_tridiagonal.py --quick``,
``bench_torch.py``, ``bench_lowrank.py``; the measuring code of a tree goes with its library) in
a fresh process with that tree first on ``sys.path``; the order of the two trees alternates
from round to round, so a slow spell of a noisy machine falls on both sides alike.  Printed per
benchmark: each tree's own Markdown table(s) (from its last round), then every timed row of
both with ``after / base`` (the median over the rounds and, with several rounds, the range).
``--only`` runs a subset.  For a quick check of the script itself (not the constraint's
figures): ``--torch-quick`` runs ``bench_torch.py --quick`` (N = 2^10 .. 2^16 by fours) and
``--tridiagonal-max-log2n K`` stops ``bench_tridiagonal`` at N = 2^K.

The per-row ratios are what the constraint reads (within 10%); the rows of baselines (loops,
dense inverses, ``np.copyto``) are listed too and show how quiet the machine was: the library
does not change them, so their ratios are the noise floor.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCHES = ("tridiagonal", "torch", "lowrank")


# ------------------------------------------------------------------------------------------------
# child: one benchmark in one tree
# ------------------------------------------------------------------------------------------------
def _flat_tridiagonal(res: dict[str, Any]) -> dict[str, float]:
    out = {}
    for row in res["rows"]:
        for key, v in row.items():
            if isinstance(v, dict) and isinstance(v.get("median_s"), (int, float)):
                out[f"N = 2^{row['log2n']}: {key}"] = float(v["median_s"])
    return out


def _flat_torch(res: dict[str, Any]) -> dict[str, float]:
    out = {}
    for row in res["rows"]:
        for key, v in row.items():
            if key != "n" and isinstance(v, (int, float)):
                out[f"N = 2^{int(np.log2(row['n']))}: {key}"] = float(v)
    return out


def _flat_lowrank(rows: list) -> dict[str, float]:
    out = {}
    for case, t, base, tb, *_ in rows:
        out[case] = float(t)
        out[f"{case}: baseline {base}"] = float(tb)
    return out


def child(bench: str, torch_quick: bool, tri_max: int | None) -> dict[str, Any]:
    """Run ``bench`` of the tree first on ``sys.path`` (the working directory); the timed rows
    flattened to ``{row: seconds}`` and its Markdown output."""
    t0 = time.perf_counter()
    if bench == "tridiagonal":
        from benchmarks import bench_tridiagonal as m

        res = m.run(quick=True, max_log2n=tri_max, progress=False)
        flat, text = _flat_tridiagonal(res), m.report(res)
    elif bench == "torch":
        from benchmarks import bench_torch as m

        res = m.run(quick=torch_quick)
        flat = _flat_torch(res)
        text = "\n\n".join(res["markdown"][p] for p in ("table", "memory", "targets"))
    else:
        from benchmarks import bench_lowrank as m

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            if hasattr(m, "run"):
                rows = m.run()["rows"]
            else:  # a tree whose script has main() only: record the rows it appends
                rows = []

                class Recorder(m.Rows):
                    def append(self, row):
                        super().append(row)
                        rows.append(row)

                m.Rows = Recorder
                argv, sys.argv = sys.argv, [m.__file__]
                try:
                    m.main()
                finally:
                    sys.argv = argv
        flat, text = _flat_lowrank(rows), buf.getvalue()
    import semisep

    return {"rows": flat, "text": text, "elapsed_s": time.perf_counter() - t0,
            "semisep": str(Path(semisep.__file__).resolve().parent)}


# ------------------------------------------------------------------------------------------------
# parent
# ------------------------------------------------------------------------------------------------
def _run_child(tree: Path, bench: str, torch_quick: bool, tri_max: int | None) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "semisep_ab_numba"))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", bench]
    if torch_quick:
        cmd.append("--torch-quick")
    if tri_max is not None:
        cmd += ["--tridiagonal-max-log2n", str(tri_max)]
    res = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{bench} in {tree} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if Path(out["semisep"]) != tree / "semisep":
        raise RuntimeError(f"{bench} in {tree} imported semisep from {out['semisep']}")
    return out


def _ratio_table(base_runs: list[dict], after_runs: list[dict]) -> str:
    rounds = len(base_runs)
    head = "after/base" + (f", median of {rounds} rounds [range]" if rounds > 1 else "")
    lines = [f"| row | base | after | {head} |", "|---|---|---|---|"]
    keys = [k for k in base_runs[0]["rows"] if k in after_runs[0]["rows"]]
    for k in keys:
        b = [r["rows"][k] for r in base_runs]
        a = [r["rows"][k] for r in after_runs]
        per = [x / y for x, y in zip(a, b, strict=True) if y > 0]
        rng = f" [{min(per):.2f}-{max(per):.2f}]" if rounds > 1 and per else ""
        med = f"{np.median(per):.2f}" if per else "-"
        lines.append(f"| {k} | {np.median(b) * 1e3:.4g} ms | {np.median(a) * 1e3:.4g} ms | {med}{rng} |")
    only = sorted(set(base_runs[0]["rows"]) ^ set(after_runs[0]["rows"]))
    if only:
        lines.append(f"\nrows in one tree only: {', '.join(only)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", nargs="?")
    p.add_argument("after", nargs="?")
    p.add_argument("--only", default=",".join(BENCHES),
                   help=f"comma-separated subset of {', '.join(BENCHES)}")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--torch-quick", action="store_true", help="bench_torch.py --quick (not the constraint's)")
    p.add_argument("--tridiagonal-max-log2n", type=int, default=None,
                   help="bench_tridiagonal up to N = 2^K only (not the constraint's)")
    p.add_argument("--json", default=None, help="also write every round's rows here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.torch_quick, args.tridiagonal_max_log2n)))
        return 0
    if not (args.base and args.after):
        p.error("give BASE_TREE and AFTER_TREE")
    benches = [b.strip() for b in args.only.split(",") if b.strip()]
    bad = [b for b in benches if b not in BENCHES]
    if bad:
        p.error(f"unknown benchmark(s) {bad}; choose from {BENCHES}")
    trees = {"base": Path(args.base).resolve(), "after": Path(args.after).resolve()}
    runs: dict[str, dict[str, list]] = {b: {"base": [], "after": []} for b in benches}
    t_start = time.perf_counter()
    for rnd in range(args.rounds):
        order = ("base", "after") if rnd % 2 == 0 else ("after", "base")
        for bench in benches:
            for side in order:
                t0 = time.perf_counter()
                runs[bench][side].append(_run_child(trees[side], bench, args.torch_quick,
                                                       args.tridiagonal_max_log2n))
                print(f"[round {rnd + 1}] {bench} in {side}: {time.perf_counter() - t0:.0f} s",
                      file=sys.stderr, flush=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"# A/B: base {trees['base']} vs after {trees['after']}, {args.rounds} round(s), "
          f"{time.perf_counter() - t_start:.0f} s in all; load average at the end {load}\n")
    for bench in benches:
        for side in ("base", "after"):
            print(f"## bench_{bench}: {side} ({trees[side]})\n\n{runs[bench][side][-1]['text']}\n")
        print(f"## bench_{bench}: after / base per row\n\n"
              f"{_ratio_table(runs[bench]['base'], runs[bench]['after'])}\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"trees": {k: str(v) for k, v in trees.items()},
                                               "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
