"""Benchmark (issue 2): the tridiagonal resolvent diagonal ``diag((T - z I)^{-1})``.

Problem: a batch of 8 disordered chains, ``diag = -2 + uniform(-1, 1)``, off-diagonals 1
(symmetric), ``z = 0.5 + 1e-3j`` (inside the band, close to the real axis); float64 inputs,
complex128 outputs; N = 2^10 .. 2^20 (``--quick``: 2^10 .. 2^17, fewer repeats).

Timed, all in the same run (medians with IQR; semisep, kernel, c64 and copyto round-robin in
warm blocks, so that their ratios compare the same stretch of time on this noisy machine):

* ``semisep``: the public call ``T.resolvent_diagonal(z)`` (validation, the shift, the pivot
  guard threshold and the compiled kernel), and ``kernel``: the compiled shift-form kernel alone
  (``diag``, ``z``, ``off**2`` and a pre-computed ``pivmin``); ``c64``: the public call with float32 inputs (complex64 output);
* (a) the seed-style theta/phi determinant recursion in torch (unstable; we record whether its
  output is finite and its error vs semisep where finite), (b) the NumPy loop over N,
  (c) ``np.copyto`` of the B x N complex128 output (bandwidth floor), (d) dense
  ``scipy.linalg.inv`` per batch element.

Accuracy: vs ``semisep.reference.sequential_resolvent_diagonal`` at N = 2^17, and vs dense
``scipy.linalg.inv`` at N = 2048 on well-conditioned random problems (complex128 and float32).

Run: ``PYTHONPATH=. python benchmarks/bench_tridiagonal.py [--quick]``.  Prints a Markdown table
and the target verdicts, and writes JSON to ``bench-results/``.  ``run(quick) -> dict`` is the
entry point used by ``benchmarks/run_all.py``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

import semisep as ss
from benchmarks import baselines
from benchmarks.common import (
    auto_repeats,
    fmt_ratio,
    fmt_time,
    interleaved_times,
    machine_info,
    median_time,
    write_json,
)
from semisep.backends.numpy import resolvent_diagonal_shifted_kernel
from semisep.reference import dense_resolvent_diagonal, sequential_resolvent_diagonal

NAME = "tridiagonal_resolvent_diagonal"
BATCH = 8
Z = 0.5 + 1e-3j
SEED = 0

# sizes above which the slow baselines are not run (the cell says "skipped")
LOOP_MAX_LOG2 = 17  # theta/phi torch loop and NumPy loop: Python loops over N
LOOP_MAX_LOG2_QUICK = 15
DENSE_MAX_N = 4096
DENSE_MAX_N_QUICK = 2048
DENSE_FULL_BATCH_MAX_N = 1024  # above this, time one element and multiply by the batch size

TARGET_COPY_RATIO = 10.0
TARGET_DENSE_SPEEDUP = 1000.0
TARGET_SCALING = 10.0
TARGET_SEQ_ERR = 1e-9
TARGET_DENSE_ERR_C128 = 1e-12
TARGET_ERR_C64 = 1e-4


# ------------------------------------------------------------------------------------------------
# problems
# ------------------------------------------------------------------------------------------------
def disordered_chain(n: int, batch: int = BATCH, seed: int = SEED, dtype=np.float64):
    """``diag = -2 + uniform(-1, 1)`` (batch, n), off-diagonal ones (n-1,)."""
    rng = np.random.default_rng(seed)
    diag = (-2.0 + rng.uniform(-1.0, 1.0, (batch, n))).astype(dtype)
    off = np.ones(n - 1, dtype)
    return diag, off


def well_conditioned_problems(n: int, seed: int = 1):
    """Random problems with modest condition numbers: [(label, diag, lower, upper, z)].

    * Hermitian: real symmetric T, diag and off-diagonal N(0, 1), z = 0.3 + 1j
      (``||A^{-1}|| <= 1/Im z = 1``, ``||A|| <~ 5``);
    * non-symmetric: diagonally dominant, diag = 4 + U(-1, 1), lower/upper U(-1, 1),
      z = 0.3 + 0.5j.
    """
    rng = np.random.default_rng(seed)
    out = []
    for k in range(2):
        off = rng.standard_normal(n - 1)
        out.append((f"hermitian-{k}", rng.standard_normal(n), off, None, 0.3 + 1j))
    for k in range(2):
        out.append((
            f"nonsymmetric-{k}", 4.0 + rng.uniform(-1, 1, n), rng.uniform(-1, 1, n - 1),
            rng.uniform(-1, 1, n - 1), 0.3 + 0.5j,
        ))
    return out


def _rows(diag: np.ndarray, off: np.ndarray, z: complex):
    """Kernel-layout rows of ``A = T - z I`` for a symmetric chain: alpha, beta, pivmin."""
    cdt = np.result_type(diag.dtype, np.complex64)
    alpha = (diag - np.asarray(z, cdt)).astype(cdt)
    beta = np.ascontiguousarray(np.broadcast_to((off * off).astype(cdt), diag.shape[:-1] + off.shape))
    scale = np.maximum(np.abs(alpha).max(axis=1), np.abs(off).max() if off.size else 0.0)
    pivmin = (scale * np.finfo(cdt).eps).astype(np.finfo(cdt).dtype)
    return alpha, beta, pivmin


def max_rel_err(x: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """``max |x - ref| / |ref|`` (over ``mask`` where given); NaN if nothing to compare."""
    x = np.asarray(x, np.complex128)
    ref = np.asarray(ref, np.complex128)
    err = np.abs(x - ref) / np.abs(ref)
    if mask is not None:
        err = err[mask]
    return float(err.max()) if err.size else float("nan")


# ------------------------------------------------------------------------------------------------
# timings
# ------------------------------------------------------------------------------------------------
def _time_size(n: int, quick: bool, torch_ok: bool) -> dict[str, Any]:
    budget = 0.5 if quick else 2.0
    loop_max = 1 << (LOOP_MAX_LOG2_QUICK if quick else LOOP_MAX_LOG2)
    row: dict[str, Any] = {"n": n, "log2n": int(round(math.log2(n))), "batch": BATCH}
    diag, off = disordered_chain(n)
    T = ss.Tridiagonal(diag, off)
    T32 = ss.Tridiagonal(diag.astype(np.float32), off.astype(np.float32))
    alpha, beta, pivmin = _rows(diag, off, Z)

    G = T.resolvent_diagonal(Z)
    shift = np.full(BATCH, Z, np.complex128)
    beta_real = np.broadcast_to(off * off, (BATCH, n - 1))
    copy = baselines.make_copyto((BATCH, n), np.complex128)
    # round-robin in blocks (semisep x (1 warm + 3 timed), kernel x ..., c64, copyto, semisep,
    # ...): the ratios to np.copyto are judged on timings taken in the same stretch of time, so
    # a slow spell of this shared machine's memory bandwidth falls on both sides alike; the
    # warm call keeps each one's own data in cache, as a repeat loop would (a plain one-call
    # round-robin left np.copyto's 32 MB cold after semisep and timed it 2-3x slower).
    t1 = time.perf_counter()
    T.resolvent_diagonal(Z)
    first = time.perf_counter() - t1
    rounds = int(max(3, min(50, budget / max(10 * first, 1e-9))))
    row.update(interleaved_times({
        "semisep": lambda: T.resolvent_diagonal(Z),
        "kernel": lambda: resolvent_diagonal_shifted_kernel(diag, shift, beta_real, pivmin),
        "c64": lambda: T32.resolvent_diagonal(np.complex64(Z)),
        "copyto": copy,
    }, rounds=rounds, warmup=2, block=3))
    t = row["semisep"]["median_s"]
    row["elements_per_s"] = BATCH * n / t
    row["kernel_elements_per_s"] = BATCH * n / row["kernel"]["median_s"]
    row["ratio_vs_copyto"] = t / row["copyto"]["median_s"]
    row["kernel_ratio_vs_copyto"] = row["kernel"]["median_s"] / row["copyto"]["median_s"]

    # (b) NumPy loop over N
    if n <= loop_max:
        row["numpy_loop"] = auto_repeats(lambda: baselines.numpy_loop(alpha, beta, pivmin),
                                         budget, 1 if n >= 1 << 16 else 3, warmup=1)
        row["speedup_vs_numpy_loop"] = row["numpy_loop"]["median_s"] / t
    else:
        row["numpy_loop"] = {"skipped": f"N > 2^{int(math.log2(loop_max))} (Python loop over N)"}

    # (a) theta/phi determinant recursion, torch loop over N
    if not torch_ok:
        row["theta_phi_torch"] = {"skipped": "torch not importable"}
    elif n <= loop_max:
        import torch

        ta, tb = torch.from_numpy(alpha), torch.from_numpy(beta)
        out = {}

        def theta_phi():
            out["G"] = baselines.theta_phi_torch(ta, tb)

        row["theta_phi_torch"] = auto_repeats(theta_phi, budget, 1 if n >= 1 << 16 else 3,
                                              warmup=1)
        Gt = out["G"].numpy()
        finite = np.isfinite(Gt)
        row["theta_phi_finite_fraction"] = float(finite.mean())
        row["theta_phi_all_finite"] = bool(finite.all())
        row["theta_phi_max_rel_err_where_finite"] = max_rel_err(Gt, G, finite)
        row["speedup_vs_theta_phi"] = row["theta_phi_torch"]["median_s"] / t
    else:
        row["theta_phi_torch"] = {"skipped": f"N > 2^{int(math.log2(loop_max))} (Python loop over N)"}

    # (d) dense scipy.linalg.inv
    dense_max = DENSE_MAX_N_QUICK if quick else DENSE_MAX_N
    if n <= dense_max:
        A = baselines.dense_matrices(alpha, np.broadcast_to(off, (BATCH, n - 1)),
                                     np.broadcast_to(off, (BATCH, n - 1)))
        _quiesce()
        if n <= DENSE_FULL_BATCH_MAX_N:
            tm = auto_repeats(lambda: baselines.dense_inv_diagonal(A), budget, 3, warmup=1)
            row["dense_inv_mode"] = f"all {BATCH} batch elements timed"
            row["dense_inv_batch_s"] = tm["median_s"]
        else:
            # O(N^3): no full-size warm-up (_quiesce warmed LAPACK up on a small matrix)
            reps = 1 if n >= 4096 else 3
            tm = median_time(lambda: baselines.dense_inv_diagonal(A[:1]), repeats=reps, warmup=0)
            row["dense_inv_mode"] = (f"one element timed ({reps} repeat{'s' if reps > 1 else ''}),"
                                     f" batch time = {BATCH} x that")
            row["dense_inv_batch_s"] = BATCH * tm["median_s"]
        row["dense_inv"] = tm
        row["speedup_vs_dense"] = row["dense_inv_batch_s"] / t
        del A
    else:
        row["dense_inv"] = {"skipped": f"N > {dense_max} (O(N^3), O(N^2) memory)"}
    return row


def _quiesce() -> None:
    """Before timing BLAS/LAPACK: warm its thread pool up on a small matrix, then pause.

    numba's OpenMP workers spin for a while after each parallel region; on a 2-core machine
    they steal the cores from OpenBLAS's threads and made dense ``inv`` up to ~7x slower when
    it ran right after a semisep call.  The pause lets them go to sleep first.
    """
    baselines.dense_inv_diagonal(np.eye(256, dtype=np.complex128)[None] * (1 + 1j))
    time.sleep(0.5)


# ------------------------------------------------------------------------------------------------
# accuracy
# ------------------------------------------------------------------------------------------------
def _accuracy(quick: bool) -> dict[str, Any]:
    acc: dict[str, Any] = {}
    # (i) vs the independent sequential reference at N = 2^17, Im z = 1e-3
    n = 1 << 17
    diag, off = disordered_chain(n)
    G = ss.Tridiagonal(diag, off).resolvent_diagonal(Z)
    t0 = time.perf_counter()
    Gs = sequential_resolvent_diagonal(diag, off, None, Z)
    acc["sequential_ref_time_s"] = time.perf_counter() - t0
    acc["vs_sequential_2e17_c128"] = {"n": n, "batch": BATCH, "z": Z,
                                      "max_rel_err": max_rel_err(G, Gs)}
    # complex64 on the same chain (float32-rounded inputs; reference in complex128 on the
    # same rounded inputs).  Im z = 1e-3 inside the band: informational, not a target.
    d32, o32 = diag.astype(np.float32), off.astype(np.float32)
    G32 = ss.Tridiagonal(d32, o32).resolvent_diagonal(np.complex64(Z))
    Gs32 = sequential_resolvent_diagonal(d32.astype(np.float64), o32.astype(np.float64), None,
                                         complex(np.complex64(Z)))
    acc["vs_sequential_2e17_c64_chain"] = {
        "n": n, "dtype": str(G32.dtype), "max_rel_err": max_rel_err(G32, Gs32),
        "note": "disordered chain, Im z = 1e-3 inside the band (ill-conditioned; informational)",
    }
    del G, Gs, G32, Gs32

    # (ii) vs dense scipy.linalg.inv at N = 2048
    m = 2048
    probs = []
    for label, d, lo, up, z in well_conditioned_problems(m):
        Gd = dense_resolvent_diagonal(d, lo, up, z)
        G64 = ss.Tridiagonal(d, lo, up).resolvent_diagonal(z)
        d32, lo32 = d.astype(np.float32), lo.astype(np.float32)
        up32 = None if up is None else up.astype(np.float32)
        z32 = np.complex64(z)
        G32 = ss.Tridiagonal(d32, lo32, up32).resolvent_diagonal(z32)
        Gd32 = dense_resolvent_diagonal(
            d32.astype(np.float64), lo32.astype(np.float64),
            None if up32 is None else up32.astype(np.float64), complex(z32),
        )
        probs.append({
            "problem": label, "n": m, "z": z,
            "c128_max_rel_err": max_rel_err(G64, Gd),
            "c64_dtype": str(G32.dtype),
            "c64_max_rel_err": max_rel_err(G32, Gd32),
        })
    acc["vs_dense_2048_well_conditioned"] = probs
    # the benchmark chain itself at N = 2048 (cond ~ ||A|| / Im z ~ 5e3): informational
    diag, off = disordered_chain(m, batch=1)
    Gd = dense_resolvent_diagonal(diag, off, None, Z)
    acc["vs_dense_2048_chain"] = {
        "n": m, "z": Z,
        "c128_max_rel_err": max_rel_err(ss.Tridiagonal(diag, off).resolvent_diagonal(Z), Gd),
        "note": "disordered chain at Im z = 1e-3 (cond ~ 5e3); informational",
    }
    return acc


# ------------------------------------------------------------------------------------------------
# targets, table
# ------------------------------------------------------------------------------------------------
def _targets(rows: list[dict], acc: dict) -> list[dict[str, Any]]:
    by_n = {r["n"]: r for r in rows}
    out = []

    def add(name, measured, passed, detail):
        out.append({"target": name, "measured": measured,
                    "verdict": "n/a" if passed is None else ("PASS" if passed else "MISS"),
                    "detail": detail})

    r = by_n.get(1 << 17)
    if r:
        ratio = r["ratio_vs_copyto"]
        add("(1) batch 8, N=2^17: time <= 10x np.copyto of the output", ratio,
            ratio <= TARGET_COPY_RATIO,
            f"semisep {fmt_time(r['semisep']['median_s'])} vs copyto "
            f"{fmt_time(r['copyto']['median_s'])}: {ratio:.3g}x (kernel alone: "
            f"{r['kernel_ratio_vs_copyto']:.3g}x)")
    else:
        add("(1) batch 8, N=2^17: time <= 10x np.copyto of the output", None, None, "N=2^17 not run")
    r = by_n.get(2048)
    if r and "speedup_vs_dense" in r:
        sp = r["speedup_vs_dense"]
        add("(2) >= 1000x faster than dense inv at N=2048", sp, sp >= TARGET_DENSE_SPEEDUP,
            f"dense {fmt_time(r['dense_inv_batch_s'])} ({r['dense_inv_mode']}) vs semisep "
            f"{fmt_time(r['semisep']['median_s'])}: {sp:.3g}x")
    else:
        add("(2) >= 1000x faster than dense inv at N=2048", None, None, "N=2048 not run")
    r20, r17 = by_n.get(1 << 20), by_n.get(1 << 17)
    if r20 and r17:
        sc = r20["semisep"]["median_s"] / r17["semisep"]["median_s"]
        add("(3) time(2^20)/time(2^17) < 10", sc, sc < TARGET_SCALING,
            f"{fmt_time(r20['semisep']['median_s'])} / {fmt_time(r17['semisep']['median_s'])} "
            f"= {sc:.3g} (ideal O(N): 8)")
    else:
        add("(3) time(2^20)/time(2^17) < 10", None, None, "N=2^20 not run (--quick)")
    e = acc["vs_sequential_2e17_c128"]["max_rel_err"]
    add("(4a) within 1e-9 of the sequential reference at N=2^17", e, e <= TARGET_SEQ_ERR,
        f"max rel err {e:.2e} (batch 8, z = {Z})")
    probs = acc["vs_dense_2048_well_conditioned"]
    e = max(p["c128_max_rel_err"] for p in probs)
    add("(4b) complex128 within 1e-12 relative of dense (well-conditioned, N=2048)", e,
        e <= TARGET_DENSE_ERR_C128,
        f"max rel err {e:.2e} over {len(probs)} problems ({', '.join(p['problem'] for p in probs)})")
    e = max(p["c64_max_rel_err"] for p in probs)
    add("(4c) float32 (complex64) within 1e-4 (well-conditioned, N=2048)", e,
        e <= TARGET_ERR_C64, f"max rel err {e:.2e} vs dense complex128 on the float32-rounded inputs")
    return out


def _cell_time(d: dict) -> str:
    if "skipped" in d:
        return "skipped"
    return f"{fmt_time(d['median_s'])} ±{fmt_time(d['iqr_s'] / 2)}"


def markdown_table(rows: list[dict]) -> str:
    head = ("| N | semisep (median ±IQR/2) | elements/s | kernel only | complex64 | "
            "np.copyto | semisep / copyto | NumPy loop | speedup | theta/phi torch | speedup | "
            "theta/phi finite | theta/phi err (finite) | dense inv (batch) | speedup |")
    sep = "|" + "---|" * (head.count("|") - 1)
    lines = [head, sep]
    for r in rows:
        def sp(key):
            return fmt_ratio(r[key]) if key in r else "skipped"

        tp = r["theta_phi_torch"]
        if "skipped" in tp:
            fin, err = "skipped", "skipped"
        else:
            fin = f"{100 * r['theta_phi_finite_fraction']:.0f}%"
            e = r["theta_phi_max_rel_err_where_finite"]
            err = "no finite entry" if not math.isfinite(e) else f"{e:.1e}"
        if "skipped" in r["dense_inv"]:
            dense = "skipped"
        else:
            star = "" if r["n"] <= DENSE_FULL_BATCH_MAX_N else " (1 el. x8)"
            dense = fmt_time(r["dense_inv_batch_s"]) + star
        lines.append(
            f"| 2^{r['log2n']} | {_cell_time(r['semisep'])} | {r['elements_per_s']:.3g} | "
            f"{_cell_time(r['kernel'])} | {_cell_time(r['c64'])} | {_cell_time(r['copyto'])} | "
            f"{fmt_ratio(r['ratio_vs_copyto'])} | {_cell_time(r['numpy_loop'])} | "
            f"{sp('speedup_vs_numpy_loop')} | {_cell_time(tp)} | {sp('speedup_vs_theta_phi')} | "
            f"{fin} | {err} | {dense} | {sp('speedup_vs_dense')} |"
        )
    return "\n".join(lines)


def markdown_targets(targets: list[dict]) -> str:
    return "\n".join(f"- **{t['verdict']}** {t['target']}: {t['detail']}" for t in targets)


def markdown_accuracy(acc: dict) -> str:
    lines = [
        f"- vs sequential reference, N=2^17, batch 8, z={Z}: complex128 max rel err "
        f"{acc['vs_sequential_2e17_c128']['max_rel_err']:.2e}; complex64 (same chain, "
        f"informational) {acc['vs_sequential_2e17_c64_chain']['max_rel_err']:.2e}",
    ]
    for p in acc["vs_dense_2048_well_conditioned"]:
        lines.append(f"- vs dense inv, N=2048, {p['problem']} (z={p['z']}): complex128 "
                     f"{p['c128_max_rel_err']:.2e}, complex64 {p['c64_max_rel_err']:.2e}")
    c = acc["vs_dense_2048_chain"]
    lines.append(f"- vs dense inv, N=2048, the benchmark chain (z={Z}, informational): complex128 "
                 f"{c['c128_max_rel_err']:.2e}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# entry points
# ------------------------------------------------------------------------------------------------
def run(quick: bool = False, max_log2n: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the benchmark; returns a JSON-ready dict (see ``benchmarks/run_all.py``)."""
    try:
        import torch  # noqa: F401

        torch_ok = True
    except ImportError:
        torch_ok = False
    top = 17 if quick else 20
    if max_log2n is not None:
        top = min(top, max_log2n)
    sizes = [1 << k for k in range(10, top + 1)]
    # compile every kernel before any timing
    for dt in (np.float64, np.float32):
        d, o = disordered_chain(64, dtype=dt)
        ss.Tridiagonal(d, o).resolvent_diagonal(Z if dt == np.float64 else np.complex64(Z))
    rows = []
    t_start = time.perf_counter()
    for n in sizes:
        t0 = time.perf_counter()
        rows.append(_time_size(n, quick, torch_ok))
        if progress:
            r = rows[-1]
            print(f"  N=2^{r['log2n']:<2d} semisep {fmt_time(r['semisep']['median_s']):>9s} "
                  f"({r['elements_per_s']:.3g} el/s, {r['ratio_vs_copyto']:.3g}x copyto)  "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    if progress:
        print("  accuracy checks ...", flush=True)
    acc = _accuracy(quick)
    targets = _targets(rows, acc)
    result = {
        "name": NAME,
        "quick": quick,
        "config": {
            "batch": BATCH, "z": Z, "seed": SEED, "problem": "diag = -2 + U(-1,1), off = 1",
            "input_dtype": "float64", "output_dtype": "complex128", "sizes": sizes,
            "loop_baselines_max_n": 1 << (LOOP_MAX_LOG2_QUICK if quick else LOOP_MAX_LOG2),
            "dense_max_n": DENSE_MAX_N_QUICK if quick else DENSE_MAX_N, "dense_full_batch_max_n": DENSE_FULL_BATCH_MAX_N,
            "semisep_timed_call": "T.resolvent_diagonal(z) on a pre-built Tridiagonal",
            "kernel_timed_call": "semisep.backends.numpy.resolvent_diagonal_shifted_kernel(diag, z, off**2, pivmin)",
            "c64_timed_call": "float32 inputs, z = complex64: complex64 output",
        },
        "rows": rows,
        "accuracy": acc,
        "targets": targets,
        "elapsed_s": time.perf_counter() - t_start,
        "loadavg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "markdown": {
            "table": markdown_table(rows),
            "accuracy": markdown_accuracy(acc),
            "targets": markdown_targets(targets),
        },
        "plot": {
            "title": f"Resolvent diagonal, batch {BATCH}, complex128 (z = {Z})",
            "x_label": "N",
            "y_label": "median time (s)",
            "x": sizes,
            "series": {
                "semisep (public call)": [r["semisep"]["median_s"] for r in rows],
                "semisep kernel only": [r["kernel"]["median_s"] for r in rows],
                "semisep complex64": [r["c64"]["median_s"] for r in rows],
                "NumPy loop over N": [r["numpy_loop"].get("median_s") for r in rows],
                "theta/phi torch loop (unstable)": [r["theta_phi_torch"].get("median_s")
                                                    for r in rows],
                "dense scipy inv (batch)": [r.get("dense_inv_batch_s") for r in rows],
            },
            "floor": {"np.copyto of output (bandwidth floor)": [r["copyto"]["median_s"]
                                                                for r in rows]},
        },
    }
    return result


def report(result: dict[str, Any]) -> str:
    md = result["markdown"]
    mode = "quick" if result["quick"] else "full"
    return (f"### Resolvent diagonal, batch {BATCH}, float64 in / complex128 out, z = {Z} "
            f"({mode} run)\n\n{md['table']}\n\n"
            "Speedup columns are (baseline time) / (semisep time), same run. 'semisep / copyto' is "
            "semisep's time over np.copyto of the B x N complex128 output. Dense cells marked "
            "'(1 el. x8)' time one batch element and multiply by 8. theta/phi 'finite' is the "
            "fraction of finite G_ii it returned; its error is vs semisep, over finite entries.\n\n"
            f"#### Accuracy\n\n{md['accuracy']}\n\n#### Targets\n\n{md['targets']}\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="N = 2^10..2^17, fewer repeats")
    p.add_argument("--max-log2n", type=int, default=None, help="cap the largest N (for testing)")
    p.add_argument("--no-write", action="store_true", help="do not write JSON")
    args = p.parse_args(argv)
    print(f"bench_tridiagonal ({'quick' if args.quick else 'full'}) ...", flush=True)
    result = run(quick=args.quick, max_log2n=args.max_log2n)
    data = {"machine": machine_info(), "results": {NAME: result}}
    print()
    print(report(result))
    if not args.no_write:
        path = write_json(data, "bench_tridiagonal" + ("-quick" if args.quick else ""))
        print(f"JSON written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
