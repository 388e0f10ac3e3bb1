"""Benchmark: ``Tridiagonal.solve`` and ``Tridiagonal.logdet`` against LAPACK, batch 8.

    PYTHONPATH=. python benchmarks/bench_solve_logdet.py [--quick] [--max-log2n K]

For each N (2^10 .. 2^17 quick, .. 2^20 full), real (float64) and complex (complex128, a
complex shift) batch-8 problems of a disordered chain with a non-symmetric pair of
off-diagonals, timed round-robin in the same run (``benchmarks.common.interleaved_times``):

* ``solve``: ``T.solve(F, z)`` for ``F`` (8, N), against LAPACK ``?gtsv`` (SciPy's
  ``lapack.dgtsv`` / ``zgtsv``) called row by row, and ``np.copyto`` of the (8, N) result (the
  memory floor);
* ``logdet``: ``T.logdet(z)`` against LAPACK ``?gttrf`` row by row plus ``sum log|u_ii|`` and the
  sign from the pivots.

Accuracy: the solve's normwise backward error ``|A x - f| / (|A| |x| + |f|)`` against gtsv's,
and the logdet's difference from LAPACK's.  Target (the numerical-reliability issue): the
solve within 1.5x of gtsv at batch 8, N = 2^17, real and complex.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import lapack

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import semisep as ss  # noqa: E402
from benchmarks.common import fmt_ratio, fmt_time, interleaved_times, write_json  # noqa: E402

NAME = "tridiagonal_solve_logdet"
BATCH = 8
SEED = 11
TARGET_N = 1 << 17
TARGET_RATIO = 1.5


def problem(n: int, complex_: bool):
    """``T`` (8 rows), shift ``z`` and the right-hand sides ``F`` (8, N)."""
    rng = np.random.default_rng(SEED + n)
    diag = 2.5 + rng.uniform(-1.0, 1.0, (BATCH, n))
    lower = rng.uniform(0.5, 1.0, n - 1)
    upper = rng.uniform(-1.0, -0.5, n - 1)
    z = 0.3 + 0.2j if complex_ else 0.3
    F = rng.standard_normal((BATCH, n))
    return ss.Tridiagonal(diag, lower, upper), z, F


def _lapack_rows(T, z):
    dt = np.complex128 if isinstance(z, complex) else np.float64
    d = (T.diag - z).astype(dt)
    lo = np.broadcast_to(T.lower, (BATCH, T.n - 1)).astype(dt)
    up = np.broadcast_to(T.upper, (BATCH, T.n - 1)).astype(dt)
    return d, lo, up


def gtsv_rows(d, lo, up, F):
    gtsv = lapack.zgtsv if np.iscomplexobj(d) else lapack.dgtsv
    out = np.empty(F.shape, d.dtype)
    for k in range(d.shape[0]):
        out[k] = gtsv(lo[k], d[k], up[k], F[k], overwrite_dl=False, overwrite_d=False,
                      overwrite_du=False, overwrite_b=False)[3]
    return out


def gttrf_logdet_rows(d, lo, up):
    gttrf = lapack.zgttrf if np.iscomplexobj(d) else lapack.dgttrf
    out = np.empty(d.shape[0], np.complex128)
    for k in range(d.shape[0]):
        _, u, _, _, ipiv, _ = gttrf(lo[k], d[k], up[k])
        swaps = int(np.sum(ipiv[:-1] != np.arange(1, d.shape[1])))
        phase = np.prod(u / np.abs(u)) * (-1) ** swaps
        out[k] = np.sum(np.log(np.abs(u))) + 1j * np.angle(phase)
    return out


def _backward_error(d, lo, up, x, f):
    Ax = d * x
    Ax[:, :-1] += up * x[:, 1:]
    Ax[:, 1:] += lo * x[:, :-1]
    absA_absx = np.abs(d) * np.abs(x)
    absA_absx[:, :-1] += np.abs(up) * np.abs(x[:, 1:])
    absA_absx[:, 1:] += np.abs(lo) * np.abs(x[:, :-1])
    return float(np.max(np.abs(Ax - f) / (absA_absx + np.abs(f))))


def _time_size(n: int, complex_: bool, budget: float) -> dict[str, Any]:
    T, z, F = problem(n, complex_)
    d, lo, up = _lapack_rows(T, z)
    x = T.solve(F, z)
    out = np.empty_like(x)
    rounds = max(3, min(30, int(budget / max(1e-4 * n / 1024, 1e-6))))
    t = interleaved_times({
        "solve": lambda: T.solve(F, z),
        "gtsv": lambda: gtsv_rows(d, lo, up, F),
        "logdet": lambda: T.logdet(z),
        "gttrf": lambda: gttrf_logdet_rows(d, lo, up),
        "copyto": lambda: np.copyto(out, x),
    }, rounds=rounds, warmup=1, block=3)
    ld = np.asarray(T.logdet(z), np.complex128)
    ld_lapack = gttrf_logdet_rows(d, lo, up)
    dphase = np.angle(np.exp(1j * (ld.imag - ld_lapack.imag)))
    row = {"n": n, "log2n": int(round(math.log2(n))), "complex": complex_}
    row.update(t)
    row["solve_vs_gtsv"] = t["solve"].median / t["gtsv"].median
    row["logdet_vs_gttrf"] = t["logdet"].median / t["gttrf"].median
    row["solve_vs_copyto"] = t["solve"].median / t["copyto"].median
    row["backward_error"] = _backward_error(d, lo, up, np.asarray(x), F)
    row["backward_error_gtsv"] = _backward_error(d, lo, up, gtsv_rows(d, lo, up, F), F)
    row["logdet_rel_diff"] = float(np.max((np.abs(ld.real - ld_lapack.real) + np.abs(dphase))
                                         / np.maximum(1.0, np.abs(ld_lapack))))
    return row


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = ("| N | dtype | solve | gtsv (row loop) | solve / gtsv | logdet | gttrf + logs | "
            "logdet / LAPACK | solve / copyto | backward err (gtsv) | logdet rel. diff |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(
            f"| 2^{r['log2n']} | {'complex128' if r['complex'] else 'float64'} | "
            f"{fmt_time(r['solve']['median_s'])} | {fmt_time(r['gtsv']['median_s'])} | "
            f"{fmt_ratio(r['solve_vs_gtsv'])} | {fmt_time(r['logdet']['median_s'])} | "
            f"{fmt_time(r['gttrf']['median_s'])} | {fmt_ratio(r['logdet_vs_gttrf'])} | "
            f"{fmt_ratio(r['solve_vs_copyto'])} | {r['backward_error']:.1e} "
            f"({r['backward_error_gtsv']:.1e}) | {r['logdet_rel_diff']:.1e} |")
    return "\n".join(lines)


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for cplx in (False, True):
        at = [r for r in rows if r["n"] == TARGET_N and r["complex"] == cplx]
        name = f"solve within {TARGET_RATIO}x of LAPACK gtsv, batch {BATCH}, N = 2^17, " + \
            ("complex128" if cplx else "float64")
        if not at:
            out.append({"target": name, "measured": None, "verdict": "n/a",
                        "detail": "N = 2^17 not in this run"})
            continue
        ratio = at[0]["solve_vs_gtsv"]
        out.append({"target": name, "measured": ratio,
                    "verdict": "PASS" if ratio <= TARGET_RATIO else "MISS",
                    "detail": f"{ratio:.2f}x (same run, round-robin medians)"})
        ld = at[0]["logdet_vs_gttrf"]
        out.append({"target": "(for the record) logdet / LAPACK gttrf + logs, batch "
                              f"{BATCH}, N = 2^17, " + ("complex128" if cplx else "float64"),
                    "measured": ld, "verdict": "n/a", "detail": f"{ld:.2f}x"})
    return out


def run(quick: bool = False, max_log2n: int | None = None) -> dict[str, Any]:
    """Run the benchmark; returns a JSON-ready dict (see ``benchmarks/run_all.py``)."""
    top = 17 if quick else 20
    if max_log2n is not None:
        top = min(top, max_log2n)
    sizes = [1 << k for k in range(10, top + 1)]
    for cplx in (False, True):  # compile every kernel before any timing
        T, z, F = problem(64, cplx)
        T.solve(F, z)
        T.logdet(z)
    budget = 0.5 if quick else 2.0
    rows = [_time_size(n, cplx, budget) for n in sizes for cplx in (False, True)]
    targets = _targets(rows)
    real = [r for r in rows if not r["complex"]]  # the figure: the float64 solve
    return {
        "name": NAME,
        "quick": quick,
        "config": {"batch": BATCH, "seed": SEED, "sizes": sizes,
                   "problem": "diag 2.5 + U(-1,1), lower U(0.5,1), upper U(-1,-0.5); z = 0.3 "
                              "(real) or 0.3 + 0.2j (complex)",
                   "solve_timed_call": "T.solve(F, z), F (8, N) float64",
                   "baseline": "scipy.linalg.lapack.?gtsv / ?gttrf per batch row"},
        "rows": rows,
        "targets": targets,
        "loadavg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "markdown": {"table": markdown_table(rows),
                     "targets": "\n".join(f"- {t['target']}: {t['verdict']} ({t['detail']})"
                                          for t in targets)},
        "plot": {
            "title": f"Tridiagonal solve, batch {BATCH}, float64 (logdet: the table)",
            "x_label": "N", "y_label": "median time (s)", "x": sizes,
            "series": {"semisep solve (float64)": [r["solve"]["median_s"] for r in real],
                       "LAPACK gtsv row loop (float64)": [r["gtsv"]["median_s"] for r in real]},
            "floor": {"np.copyto of the solution (float64)": [r["copyto"]["median_s"] for r in real]},
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="N = 2^10..2^17")
    p.add_argument("--max-log2n", type=int, default=None, help="cap the largest N")
    p.add_argument("--no-write", action="store_true", help="do not write JSON")
    args = p.parse_args(argv)
    result = run(quick=args.quick, max_log2n=args.max_log2n)
    print(result["markdown"]["table"])
    print()
    print(result["markdown"]["targets"])
    if not args.no_write:
        print("wrote", write_json(result, NAME + ("-quick" if args.quick else "")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
