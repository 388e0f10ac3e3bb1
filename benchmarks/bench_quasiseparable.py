"""Benchmark: Gaussian-process operations on quasiseparable kernel matrices.

Problems (float64; sorted irregular times ``t = sort(uniform(0, N / 10))``, mean step 0.1;
white noise variance ``NOISE`` on the diagonal):

* **log-likelihood** of a rank-3 celerite kernel, ``Celerite(a=1, b=0.1, c=0.5, d=2) +
  Exp(scale=5, sigma=sqrt(0.5))`` (celerite2: ``ComplexTerm + RealTerm``); ``c * span`` reaches
  ``0.05 N``.  semisep times ``kernel.to_operator(t, diag)`` + ``factor()`` + ``solve(y)`` +
  ``logdet()``; celerite2 times ``GaussianProcess.compute(t, diag=...)`` + ``log_likelihood(y)``
  (both build the generators from ``t`` and factor once; ``to_generators`` alone is timed
  too, to show what the kernel construction costs);
* **inverse diagonal** ``diag((K + NOISE I)^{-1})`` of a Matern-3/2 kernel (``scale = 1``):
  semisep ``kernel.to_operator(t, diag).resolvent_diagonal(0)`` against tinygp's
  ``kernel.to_symm_qsm(t)`` (noise added to its diagonal) ``.inv()`` diagonal, JAX x64, jitted
  and warmed up (batch 8: ``jax.vmap`` of the same function);
* dense SciPy (``cho_factor`` / ``potri``) where it fits.

Batch 8: eight independent time series (different ``t`` and ``y``) in one batched semisep call,
against eight sequential batch-1 semisep calls (ratio ``seq / batch``); celerite2 has no batch
and is timed as eight sequential calls.  All timed pairs a ratio is taken from are measured
round-robin in the same run (:func:`benchmarks.common.interleaved_times`).  The batch pair
(semisep batch 8 against eight semisep batch-1 calls) is a round-robin of its own, and the other
libraries' batch timings another: tinygp's batched (vmapped) call leaves JAX's thread pool busy
after it returns, and in one round-robin with it the batched semisep call that followed lost a
core (``benchmarks/probe_batch_neighbour.py`` measures it; the performance page has the figures).

Accuracy (float64): relative error of the log-likelihood and of the inverse diagonal against
dense SciPy for ``N <= 2048``; solve residuals ``||K x - y|| / (||K||_1 ||x||)`` of semisep's and
celerite2's solves, both measured with celerite2's own ``K @ x`` (``Term.dot``); and a table of
``logdet`` / ``solve`` / inverse-diagonal errors against dense at ``N = 2000`` for the kernels of
the issue at ``c * span`` = 1, 1e2, 1e4.

Run: ``PYTHONPATH=. python benchmarks/bench_quasiseparable.py [--quick]`` (needs the ``bench``
extra: celerite2, tinygp, jax; a missing one is reported as skipped).  Prints Markdown tables
and writes JSON to ``bench-results/``.  ``run(quick) -> dict`` is the entry point used by
``benchmarks/run_all.py``.
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
import scipy.linalg

from benchmarks.common import fmt_ratio, fmt_time, interleaved_times, machine_info, write_json
from semisep import kernels as K

NAME = "quasiseparable_gp"
BATCH = 8
SEED = 0
NOISE = 0.01                       # white-noise variance (yerr = 0.1)
STEP = 0.1                         # mean spacing of t
CEL = {"a": 1.0, "b": 0.1, "c": 0.5, "d": 2.0}
REAL = {"a": 0.5, "c": 0.2}        # Exp(scale = 1/c, sigma = sqrt(a))
DENSE_MAX_N = 4096
DENSE_MAX_N_QUICK = 2048
ACC_DENSE_MAX_N = 2048
SIZES_FULL = list(range(10, 21))
SIZES_QUICK = [10, 12, 14, 17]

TARGET_LL_RATIO = 1.5
TARGET_BATCH_SPEEDUP = 1.6
TARGET_SCALING = 10.0
TARGET_ERR = 1e-12


# ------------------------------------------------------------------------------------------------
# problems and the three libraries
# ------------------------------------------------------------------------------------------------
def times(n: int, batch: int | None = None, seed: int = SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n,) if batch is None else (batch, n)
    return np.sort(rng.uniform(0.0, n * STEP, shape), axis=-1)


def ll_kernel() -> K.Kernel:
    return K.Celerite(**CEL) + K.Exp(scale=1.0 / REAL["c"], sigma=math.sqrt(REAL["a"]))


def inv_kernel() -> K.Kernel:
    return K.Matern32(scale=1.0, sigma=1.0)


def semisep_ll(kern: K.Kernel, t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """GP log-likelihood ``-(y^T K^{-1} y + log det K + N log 2 pi) / 2``, one factorization."""
    f = kern.to_operator(t, diag=NOISE).factor()
    alpha = f.solve(y)
    return -0.5 * (np.sum(y * alpha, axis=-1) + f.logdet() + y.shape[-1] * math.log(2 * math.pi))


def semisep_invdiag(kern: K.Kernel, t: np.ndarray) -> np.ndarray:
    return kern.to_operator(t, diag=NOISE).resolvent_diagonal(0)


def dense_ll(kern: K.Kernel, t: np.ndarray, y: np.ndarray) -> float:
    A = kern(t) + NOISE * np.eye(t.shape[-1])
    c = scipy.linalg.cho_factor(A)
    alpha = scipy.linalg.cho_solve(c, y)
    ld = 2.0 * np.sum(np.log(np.diag(c[0])))
    return float(-0.5 * (y @ alpha + ld + y.size * math.log(2 * math.pi)))


def dense_invdiag(kern: K.Kernel, t: np.ndarray, full: bool = False) -> np.ndarray:
    """``diag((K + NOISE I)^{-1})`` by Cholesky (``potrf`` + ``potri``); ``full``: the inverse."""
    A = kern(t) + NOISE * np.eye(t.shape[-1])
    c, info = scipy.linalg.lapack.dpotrf(A, lower=1)
    inv, info2 = scipy.linalg.lapack.dpotri(c, lower=1)
    if info or info2:
        raise np.linalg.LinAlgError(f"dense potrf/potri failed (info {info}, {info2})")
    if full:
        return np.tril(inv) + np.tril(inv, -1).T
    return np.diag(inv).copy()


def _celerite2():
    try:
        import celerite2
        from celerite2 import terms
    except ImportError:
        return None
    return celerite2, terms


def celerite2_gp(lib):
    celerite2, terms = lib
    k = terms.ComplexTerm(**CEL) + terms.RealTerm(**REAL)
    return celerite2.GaussianProcess(k, mean=0.0), k


def _tinygp():
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from tinygp.kernels import quasisep as tq
        from tinygp.solvers.quasisep.core import DiagQSM, SymmQSM
    except ImportError:
        return None

    def invdiag(t):
        m = tq.Matern32(scale=1.0, sigma=1.0).to_symm_qsm(t)
        m = SymmQSM(diag=DiagQSM(d=m.diag.d + NOISE), lower=m.lower)
        return m.inv().diag.d

    one = jax.jit(invdiag)
    many = jax.jit(jax.vmap(invdiag))
    return jnp, one, many


def rel(x: Any, ref: Any) -> float:
    x, ref = np.asarray(x), np.asarray(ref)
    return float(np.max(np.abs(x - ref)) / np.max(np.abs(ref)))


# ------------------------------------------------------------------------------------------------
# timings
# ------------------------------------------------------------------------------------------------
def _rounds(fn, budget: float) -> int:
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    return int(max(3, min(25, budget / max(4 * first, 1e-9))))


def _time_size(log2n: int, quick: bool, c2, tg) -> dict[str, Any]:
    n = 1 << log2n
    budget = 0.6 if quick else 2.0
    row: dict[str, Any] = {"n": n, "log2n": log2n, "batch": BATCH}
    rng = np.random.default_rng(SEED + log2n)
    kll, kinv = ll_kernel(), inv_kernel()
    t1, tb = times(n), times(n, BATCH, seed=SEED + 1)
    y1, yb = rng.standard_normal(n), rng.standard_normal((BATCH, n))
    row["c_span"] = CEL["c"] * (t1[-1] - t1[0])

    # --- log-likelihood, batch 1: semisep vs celerite2 --------------------------------------
    fns: dict[str, Any] = {"ll_semisep": lambda: semisep_ll(kll, t1, y1),
                           "ll_generators": lambda: kll.to_generators(t1)}
    if c2 is not None:
        gp, term = celerite2_gp(c2)

        def c2_ll(t=t1, y=y1):
            gp.compute(t, diag=np.full(t.shape[-1], NOISE), quiet=True)
            return gp.log_likelihood(y)
        fns["ll_celerite2"] = c2_ll
    row.update(interleaved_times(fns, rounds=_rounds(fns["ll_semisep"], budget), warmup=1))
    ll = semisep_ll(kll, t1, y1)
    if c2 is not None:
        row["ll_ratio_vs_celerite2"] = row["ll_semisep"]["median_s"] / row["ll_celerite2"]["median_s"]
        ll_c2 = c2_ll()
        row["ll_rel_diff_vs_celerite2"] = abs(ll - ll_c2) / abs(ll_c2)
        # solve residuals, both measured with celerite2's K @ x
        diag = np.full(n, NOISE)
        x_ss = kll.to_operator(t1, diag=NOISE).solve(y1)
        gp.compute(t1, diag=diag, quiet=True)
        x_c2 = gp.apply_inverse(y1)
        knorm = _norm1_estimate(term, t1, diag)
        for key, x in (("resid_semisep", x_ss), ("resid_celerite2", x_c2)):
            r = term.dot(t1, diag, x) - y1
            row[key] = float(np.linalg.norm(r) / (knorm * np.linalg.norm(x)))
        row["resid_ratio"] = row["resid_semisep"] / row["resid_celerite2"]
    else:
        row["ll_celerite2"] = {"skipped": "celerite2 not installed"}

    # --- log-likelihood, batch 8 vs 8 sequential calls -----------------------------------------
    # the batch pair is timed in its own round-robin, the other library's batch apart: the ratio
    # is semisep's own batch speedup, and a neighbour whose thread pool spins after its call
    # (JAX's) would take cores from the batched call that follows it (see _batch_pair)
    fns = {"ll_semisep_b8": lambda: semisep_ll(kll, tb, yb),
           "ll_semisep_8seq": lambda: [semisep_ll(kll, tb[k], yb[k]) for k in range(BATCH)]}
    row.update(interleaved_times(fns, rounds=_rounds(fns["ll_semisep_b8"], budget), warmup=1))
    if c2 is not None:
        fns = {"ll_celerite2_8seq": lambda: [c2_ll(tb[k], yb[k]) for k in range(BATCH)]}
        row.update(interleaved_times(fns, rounds=_rounds(fns["ll_celerite2_8seq"], budget), warmup=1))
    row["ll_batch_speedup"] = row["ll_semisep_8seq"]["median_s"] / row["ll_semisep_b8"]["median_s"]
    if c2 is not None:
        row["ll_b8_ratio_vs_celerite2"] = (row["ll_semisep_b8"]["median_s"]
                                           / row["ll_celerite2_8seq"]["median_s"])

    # --- inverse diagonal, batch 1 and 8 ---------------------------------------------------------
    fns = {"inv_semisep": lambda: semisep_invdiag(kinv, t1)}
    if tg is not None:
        jnp, tg_one, tg_many = tg
        jt1, jtb = jnp.asarray(t1), jnp.asarray(tb)
        tg_one(jt1).block_until_ready()                       # compile (jit warm-up)
        tg_many(jtb).block_until_ready()
        fns["inv_tinygp"] = lambda: tg_one(jt1).block_until_ready()
    row.update(interleaved_times(fns, rounds=_rounds(fns["inv_semisep"], budget), warmup=1))
    g1 = semisep_invdiag(kinv, t1)
    if tg is not None:
        row["inv_ratio_vs_tinygp"] = row["inv_semisep"]["median_s"] / row["inv_tinygp"]["median_s"]
        row["inv_rel_diff_vs_tinygp"] = rel(g1, np.asarray(tg_one(jt1)))
    else:
        row["inv_tinygp"] = {"skipped": "tinygp/jax not installed"}
    fns = {"inv_semisep_b8": lambda: semisep_invdiag(kinv, tb),
           "inv_semisep_8seq": lambda: [semisep_invdiag(kinv, tb[k]) for k in range(BATCH)]}
    row.update(interleaved_times(fns, rounds=_rounds(fns["inv_semisep_b8"], budget), warmup=1))
    if tg is not None:  # apart: its thread pool keeps spinning after a batched call
        fns = {"inv_tinygp_b8": lambda: tg_many(jtb).block_until_ready()}
        row.update(interleaved_times(fns, rounds=_rounds(fns["inv_tinygp_b8"], budget), warmup=1))
    row["inv_batch_speedup"] = row["inv_semisep_8seq"]["median_s"] / row["inv_semisep_b8"]["median_s"]

    # --- dense SciPy -----------------------------------------------------------------------------
    dense_max = DENSE_MAX_N_QUICK if quick else DENSE_MAX_N
    if n <= dense_max:
        _quiesce()
        reps = 1 if n >= 4096 else 3
        row.update(interleaved_times({"ll_dense": lambda: dense_ll(kll, t1, y1),
                                      "inv_dense": lambda: dense_invdiag(kinv, t1)},
                                     rounds=reps, warmup=0 if n >= 4096 else 1))
        if n <= ACC_DENSE_MAX_N:
            row["ll_rel_err_vs_dense"] = abs(ll - dense_ll(kll, t1, y1)) / abs(dense_ll(kll, t1, y1))
            row["inv_rel_err_vs_dense"] = rel(g1, dense_invdiag(kinv, t1))
    else:
        row["ll_dense"] = row["inv_dense"] = {"skipped": f"N > {dense_max} (O(N^3), O(N^2) memory)"}
    return row


def _quiesce() -> None:
    """Before timing LAPACK: warm its threads up on a small matrix, then pause, so that numba's
    spinning OpenMP workers (after the semisep calls) go to sleep first (see
    bench_tridiagonal.py: they made dense factorizations several times slower)."""
    scipy.linalg.cho_factor(np.eye(256) * 2.0)
    time.sleep(0.5)


def _norm1_estimate(term, t: np.ndarray, diag: np.ndarray) -> float:
    """``||K 1||_inf`` with ``K`` applied by celerite2: a lower bound of ``||K||_inf`` (so the
    residuals it scales are, if anything, overstated), the same for both solvers."""
    return float(np.max(np.abs(term.dot(t, diag, np.ones_like(t)))))


# ------------------------------------------------------------------------------------------------
# batch 8 vs 8 x batch 1: CPU time per thread (meaningful under load, where wall time is not)
# ------------------------------------------------------------------------------------------------
def _thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each thread of this process (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[tid] = (int(f[11]) + int(f[12])) / tick
    return out


def batch_threads(log2n: int = 17, reps: int = 20) -> str:
    """Wall time, CPU time summed over threads and the busiest thread's CPU time per call, for
    one batch-8 call and eight batch-1 calls of the log-likelihood and the inverse diagonal
    (``--batch-threads``).  The busiest thread's CPU time bounds a quiet machine's wall time
    from below, so ``8 x b1 CPU / busiest`` estimates the batch speedup where other processes
    hold the cores."""
    n = 1 << log2n
    kll, kinv = ll_kernel(), inv_kernel()
    tb = times(n, BATCH, seed=SEED + 1)
    yb = np.random.default_rng(SEED).standard_normal((BATCH, n))
    lines = ["| call | b8 wall | b8 CPU (busiest thread) | 8 x b1 wall | 8 x b1 CPU | wall ratio | "
             "8 x b1 CPU / busiest b8 thread |", "|---|---|---|---|---|---|---|"]

    def measure(fn):
        fn()
        c0, w0 = _thread_cpu(), time.perf_counter()
        for _ in range(reps):
            fn()
        wall, c1 = (time.perf_counter() - w0) / reps, _thread_cpu()
        d = sorted(((c1[k] - c0.get(k, 0.0)) / reps for k in c1), reverse=True)
        return wall, sum(d), d[0]

    for name, one in (("log-likelihood", lambda t, y: semisep_ll(kll, t, y)),
                      ("inverse diagonal", lambda t, y: semisep_invdiag(kinv, t))):
        b8 = measure(lambda one=one: one(tb, yb))
        s8 = measure(lambda one=one: [one(tb[k], yb[k]) for k in range(BATCH)])
        lines.append(f"| {name} | {fmt_time(b8[0])} | {fmt_time(b8[1])} ({fmt_time(b8[2])}) | "
                     f"{fmt_time(s8[0])} | {fmt_time(s8[1])} | {s8[0] / b8[0]:.2f}x | "
                     f"{s8[1] / b8[2]:.2f} |")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return "\n".join(lines) + f"\n\nN = 2^{log2n}, {reps} calls each; load average {load}"


def diagonal_transitions(log2n: int = 16, ranks: tuple[int, ...] = (2, 3, 4, 8),
                         rounds: int = 9) -> str:
    """``resolvent_diagonal(0)`` and ``logdet()`` of a symmetric operator whose transitions are
    diagonal (a sum of ``r`` exponential terms, ``a_i = diag(e^{-c_k dt_i})``), built from the
    diagonals ``(N, r)`` against the same operator built from the matrices ``(N, r, r)``
    (``--diagonal-transitions``); round-robin medians in one process, each turn one untimed call
    and three timed ones (the two operators' working sets differ)."""
    import semisep as ss

    n = 1 << log2n
    t = times(n)
    dt = np.diff(t, prepend=t[0])
    lines = ["| r | inverse diagonal: diagonals | matrices | speedup | logdet: diagonals | "
             "matrices | speedup | max rel diff |", "|---|---|---|---|---|---|---|---|"]
    for r in ranks:
        c = np.geomspace(0.05, 2.0, r)
        ad = np.exp(-c * dt[:, None])
        p, q = ad / r, np.broadcast_to(np.ones(r), (n, r))
        alpha = np.full(n, 1.0 + NOISE)
        op_d = ss.Quasiseparable(alpha, p, q, ad)
        op_m = ss.Quasiseparable(alpha, p, q, np.ascontiguousarray(op_d.a))
        tm = interleaved_times({"inv_d": lambda o=op_d: o.resolvent_diagonal(0),
                                "inv_m": lambda o=op_m: o.resolvent_diagonal(0),
                                "ld_d": lambda o=op_d: o.logdet(), "ld_m": lambda o=op_m: o.logdet()},
                               rounds=rounds, warmup=1, block=3)
        g_d, g_m = op_d.resolvent_diagonal(0), op_m.resolvent_diagonal(0)
        diff = float(np.max(np.abs(g_d - g_m)) / np.max(np.abs(g_m)))
        med = {k: tm[k]["median_s"] for k in tm}
        lines.append(f"| {r} | {fmt_time(med['inv_d'])} | {fmt_time(med['inv_m'])} | "
                     f"{med['inv_m'] / med['inv_d']:.2f}x | {fmt_time(med['ld_d'])} | "
                     f"{fmt_time(med['ld_m'])} | {med['ld_m'] / med['ld_d']:.2f}x | {diff:.1e} |")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return "\n".join(lines) + f"\n\nN = 2^{log2n}, float64, batch 1; load average {load}"


# ------------------------------------------------------------------------------------------------
# peak memory of the torch log-likelihood, forward and forward+backward
# ------------------------------------------------------------------------------------------------
MEM_SIZES = (1 << 17, 1 << 20)


def _rss_bytes() -> tuple[int, int]:
    """``(current, peak)`` resident set size of this process (Linux ``/proc/self/status``)."""
    vals = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                vals[key] = int(rest.split()[0]) * 1024
    return vals["VmRSS"], vals["VmHWM"]


def _torch_memory_child(n: int, backward: bool) -> dict[str, Any]:
    """In a fresh process: the peak resident memory added by one torch log-likelihood of the
    rank-3 celerite kernel (generators built from ``t`` inside, gradients for the kernel's six
    parameters and the noise), forward only or forward+backward.  The peak is Linux's
    ``VmHWM``, reset by ``/proc/self/clear_refs`` after the inputs exist and the kernels are
    compiled; ``added`` is the peak minus the resident size at that moment."""
    import torch

    torch.set_num_threads(1)

    def loglik(t, y, params, grad):
        a, b, c, d, scale, sig, noise = params
        kern = K.Celerite(a, b, c, d) + K.Exp(scale=scale, sigma=sig)
        f = kern.to_operator(t, diag=noise).factor()
        ll = -0.5 * ((y * f.solve(y)).sum() + f.logdet() + y.shape[-1] * math.log(2 * math.pi))
        if grad:
            ll.backward()
        return ll

    def inputs(m):
        vals = [CEL["a"], CEL["b"], CEL["c"], CEL["d"], 1.0 / REAL["c"], math.sqrt(REAL["a"]), NOISE]
        params = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in vals]
        rng = np.random.default_rng(SEED)
        return torch.from_numpy(times(m)), torch.from_numpy(rng.standard_normal(m)), params

    loglik(*inputs(256), backward)      # compile and warm up
    t, y, params = inputs(n)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")                   # reset VmHWM to the current resident size
    before, _ = _rss_bytes()
    if backward:
        loglik(t, y, params, True)
    else:
        with torch.no_grad():
            loglik(t, y, params, False)
    _, peak = _rss_bytes()
    return {"n": n, "backward": backward, "added_bytes": peak - before,
            "bytes_per_element": (peak - before) / n}


def torch_memory(sizes: tuple[int, ...] = MEM_SIZES) -> list[dict[str, Any]]:
    """:func:`_torch_memory_child` for each size, forward and forward+backward, each in its own
    process (``python benchmarks/bench_quasiseparable.py --torch-memory N [--backward]``);
    empty where torch or ``/proc/self/clear_refs`` is missing."""
    import json
    import subprocess

    if not os.path.exists("/proc/self/clear_refs"):
        return []
    try:
        import torch  # noqa: F401
    except ImportError:
        return []
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    out = []
    for n in sizes:
        for backward in (False, True):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--torch-memory", str(n)]
            res = subprocess.run(cmd + (["--backward"] if backward else []), capture_output=True,
                                 text=True, env=env, check=True)
            out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def markdown_memory(mem: list[dict[str, Any]]) -> str:
    if not mem:
        return "(not measured: needs torch and Linux /proc/self/clear_refs)"
    head = "| N | forward: peak added | bytes / element | forward+backward: peak added | bytes / element |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for n in sorted({m["n"] for m in mem}):
        f = next(m for m in mem if m["n"] == n and not m["backward"])
        b = next(m for m in mem if m["n"] == n and m["backward"])
        lines.append(f"| 2^{n.bit_length() - 1} | {f['added_bytes'] / 2**20:.1f} MiB | "
                     f"{f['bytes_per_element']:.0f} | {b['added_bytes'] / 2**20:.1f} MiB | "
                     f"{b['bytes_per_element']:.0f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# accuracy vs dense, N = 2000, the kernels
# ------------------------------------------------------------------------------------------------
ACC_KERNELS = [
    ("Exp", K.Exp(scale=1.0), 1.0),
    ("Matern32", K.Matern32(scale=1.0), math.sqrt(3)),
    ("Matern52", K.Matern52(scale=1.0), math.sqrt(5)),
    ("SHO(Q=3)", K.SHO(omega=1.0, quality=3.0), 1.0 / 6.0),
    ("SHO(Q=0.3)", K.SHO(omega=1.0, quality=0.3), 1.0 / 0.6),
    ("Exp+SHO", K.Exp(scale=1.0) + K.SHO(omega=2.0, quality=3.0, sigma=0.5), 1.0),
    ("Matern32*Cosine", K.Matern32(scale=2.0) * K.Cosine(scale=3.0), math.sqrt(3) / 2.0),
]


def _refined_solution(A: np.ndarray, b: np.ndarray, cho: Any, steps: int = 6) -> np.ndarray:
    """``A^{-1} b`` by iterative refinement of the Cholesky solve, residuals in long double."""
    AL, bl = A.astype(np.longdouble), b.astype(np.longdouble)
    x = scipy.linalg.cho_solve(cho, b).astype(np.longdouble)
    for _ in range(steps):
        r = bl - AL @ x
        x = x + scipy.linalg.cho_solve(cho, r.astype(np.float64)).astype(np.longdouble)
    return x.astype(np.float64)


def _accuracy(quick: bool) -> list[dict[str, Any]]:
    n = 2000
    out = []
    rng = np.random.default_rng(7)
    b = rng.standard_normal(n)
    for label, kern, rate in ACC_KERNELS:
        for c_span in (1.0, 1e2, 1e4):
            t = np.sort(rng.uniform(0.0, c_span / rate, n))
            rec: dict[str, Any] = {"kernel": label, "c_span": c_span, "n": n}
            A = kern(t) + NOISE * np.eye(n)
            try:
                op = kern.to_operator(t, diag=NOISE)
                f = op.factor()
                x = f.solve(b)
                ld = f.logdet()
                g = op.resolvent_diagonal(0)
            except Exception as e:  # recorded, never hidden: a failure is a result here
                rec["error"] = f"{type(e).__name__}: {e}"
                out.append(rec)
                continue
            c = scipy.linalg.cho_factor(A)
            xd = scipy.linalg.cho_solve(c, b)
            ldd = 2.0 * np.sum(np.log(np.diag(c[0])))
            rec["solve_rel_err"] = float(np.linalg.norm(x - xd) / np.linalg.norm(xd))
            # backward errors ||A x - b|| / (||A|| ||x||) of both solves, in extended precision:
            # they separate semisep's rounding from the conditioning both answers share
            anorm = np.linalg.norm(A, 1)
            for key, sol in (("resid_semisep", x), ("resid_dense", xd)):
                r = A.astype(np.longdouble) @ sol.astype(np.longdouble) - b
                rec[key] = float(np.linalg.norm(r.astype(np.float64), 1) / (anorm * np.linalg.norm(sol, 1)))
            # the exact solution to ~cond * 1e-19: dense Cholesky refined with residuals in long
            # double (80-bit); dense's own error against it bounds what "against dense" can show
            xt = _refined_solution(A, b, c)
            rec["solve_err_exact"] = float(np.linalg.norm(x - xt) / np.linalg.norm(xt))
            rec["dense_err_exact"] = float(np.linalg.norm(xd - xt) / np.linalg.norm(xt))
            rec["logdet_rel_err"] = float(abs(ld - ldd) / abs(ldd))
            Ainv = dense_invdiag(kern, t, full=True)
            rec["invdiag_rel_err"] = rel(g, np.diag(Ainv))
            rec["cond"] = float(np.linalg.norm(A, 1) * np.linalg.norm(Ainv, 1))      # 1-norm
            out.append(rec)
    return out


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------
def _cell(d: dict) -> str:
    if "skipped" in d:
        return "skipped"
    return f"{fmt_time(d['median_s'])} ±{fmt_time(d['iqr_s'] / 2)}"


def _e(r: dict, key: str) -> str:
    return f"{r[key]:.1e}" if key in r else "-"


def markdown_tables(rows: list[dict]) -> str:
    ll_head = ("| N | c*span | semisep b1 | (generators alone) | celerite2 b1 | ratio | semisep b8 | "
               "8 x semisep b1 | b8 speedup | 8 x celerite2 | dense SciPy b1 | LL err vs dense | "
               "LL vs celerite2 | residual semisep | residual celerite2 |")
    lines = ["**Log-likelihood** (rank-3 celerite kernel + white noise)", "", ll_head,
             "|" + "---|" * (ll_head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| 2^{r['log2n']} | {r['c_span']:.3g} | {_cell(r['ll_semisep'])} | {_cell(r['ll_generators'])} "
            f"| {_cell(r['ll_celerite2'])} "
            f"| {fmt_ratio(r.get('ll_ratio_vs_celerite2'))} | {_cell(r['ll_semisep_b8'])} | "
            f"{_cell(r['ll_semisep_8seq'])} | {fmt_ratio(r['ll_batch_speedup'])} | "
            f"{_cell(r.get('ll_celerite2_8seq', {'skipped': 1}))} | {_cell(r['ll_dense'])} | "
            f"{_e(r, 'll_rel_err_vs_dense')} | {_e(r, 'll_rel_diff_vs_celerite2')} | "
            f"{_e(r, 'resid_semisep')} | {_e(r, 'resid_celerite2')} |")
    inv_head = ("| N | semisep b1 | tinygp b1 | ratio | semisep b8 | 8 x semisep b1 | b8 speedup | "
                "tinygp b8 (vmap) | dense SciPy b1 | err vs dense | rel diff vs tinygp |")
    lines += ["", "**Inverse diagonal** diag((K + noise I)^{-1}) (Matern-3/2 + white noise)", "",
              inv_head, "|" + "---|" * (inv_head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| 2^{r['log2n']} | {_cell(r['inv_semisep'])} | {_cell(r['inv_tinygp'])} | "
            f"{fmt_ratio(r.get('inv_ratio_vs_tinygp'))} | {_cell(r['inv_semisep_b8'])} | "
            f"{_cell(r['inv_semisep_8seq'])} | {fmt_ratio(r['inv_batch_speedup'])} | "
            f"{_cell(r.get('inv_tinygp_b8', {'skipped': 1}))} | {_cell(r['inv_dense'])} | "
            f"{_e(r, 'inv_rel_err_vs_dense')} | {_e(r, 'inv_rel_diff_vs_tinygp')} |")
    return "\n".join(lines)


def markdown_accuracy(acc: list[dict]) -> str:
    head = ("| kernel | c*span | cond_1 | logdet rel err | solve rel err | inverse diagonal rel err | "
            "solve backward err semisep | dense Cholesky | solve err vs exact: semisep | dense |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for a in acc:
        if "error" in a:
            lines.append(f"| {a['kernel']} | {a['c_span']:.0e} | - | {a['error']} | | |")
            continue
        lines.append(f"| {a['kernel']} | {a['c_span']:.0e} | {a['cond']:.1e} | {a['logdet_rel_err']:.1e} "
                     f"| {a['solve_rel_err']:.1e} | {a['invdiag_rel_err']:.1e} | {a['resid_semisep']:.1e} "
                     f"| {a['resid_dense']:.1e} | {a['solve_err_exact']:.1e} | {a['dense_err_exact']:.1e} |")
    return "\n".join(lines)


def _targets(rows: list[dict], acc: list[dict], mem: list[dict] | None = None) -> list[dict[str, Any]]:
    by_n = {r["n"]: r for r in rows}
    out: list[dict[str, Any]] = []

    def add(name, measured, passed, detail):
        out.append({"target": name, "measured": measured,
                    "verdict": "n/a" if passed is None else ("PASS" if passed else "MISS"),
                    "detail": detail})

    r = by_n.get(1 << 17)
    if r and "ll_ratio_vs_celerite2" in r:
        x = r["ll_ratio_vs_celerite2"]
        add("log-likelihood at N=2^17 <= 1.5x celerite2 (batch 1)", x, x <= TARGET_LL_RATIO,
            f"{fmt_time(r['ll_semisep']['median_s'])} vs {fmt_time(r['ll_celerite2']['median_s'])}")
    else:
        add("log-likelihood at N=2^17 <= 1.5x celerite2 (batch 1)", None, None, "not measured")
    if r and "inv_ratio_vs_tinygp" in r:
        x = r["inv_ratio_vs_tinygp"]
        add("inverse diagonal at N=2^17 <= tinygp's time", x, x <= 1.0,
            f"{fmt_time(r['inv_semisep']['median_s'])} vs {fmt_time(r['inv_tinygp']['median_s'])}")
    else:
        add("inverse diagonal at N=2^17 <= tinygp's time", None, None, "not measured")
    if r:
        x = min(r["ll_batch_speedup"], r["inv_batch_speedup"])
        add("batch 8 >= 1.6x faster than 8 sequential calls (N=2^17)", x, x >= TARGET_BATCH_SPEEDUP,
            f"log-likelihood {r['ll_batch_speedup']:.3g}x, inverse diagonal {r['inv_batch_speedup']:.3g}x")
        if "resid_ratio" in r:
            x = r["resid_ratio"]
            add("solve residual within 3x celerite2's (N=2^17)", x, x <= 3.0,
                f"{r['resid_semisep']:.1e} vs {r['resid_celerite2']:.1e}")
    r20 = by_n.get(1 << 20)
    if r and r20:
        x = r20["ll_semisep"]["median_s"] / r["ll_semisep"]["median_s"]
        add("time(2^20) / time(2^17) < 10 (log-likelihood)", x, x < TARGET_SCALING, f"{x:.3g} (ideal 8)")
    else:
        add("time(2^20) / time(2^17) < 10 (log-likelihood)", None, None, "N=2^20 not run (--quick)")
    fb = sorted((m for m in mem or [] if m["backward"]), key=lambda m: m["n"])
    name = "peak memory of torch forward+backward O(N) (bytes per element within 25% from N=2^17 to 2^20)"
    if len(fb) >= 2:
        lo, hi = fb[0], fb[-1]
        x = hi["bytes_per_element"] / lo["bytes_per_element"]
        add(name, x, x <= 1.25,
            f"{lo['bytes_per_element']:.0f} B/element at N=2^{lo['n'].bit_length() - 1}, "
            f"{hi['bytes_per_element']:.0f} at N=2^{hi['n'].bit_length() - 1} (r = 3: "
            f"{hi['bytes_per_element'] / 9:.0f} B per element per r^2)")
    else:
        add(name, None, None, "not measured")
    errs = [max(a["logdet_rel_err"], a["solve_rel_err"]) for a in acc if "error" not in a]
    failed = [f"{a['kernel']} c*span={a['c_span']:.0e}: {a['error']}" for a in acc if "error" in a]
    if not acc:
        add("logdet/solve within 1e-12 of dense, N=2000, every kernel and c*span, no error", None,
            None, "not measured")
        return out
    worst = max(errs) if errs else float("nan")
    ok = [a for a in acc if "error" not in a]
    wc = max(ok, key=lambda a: max(a["logdet_rel_err"], a["solve_rel_err"])) if ok else None
    detail = f"worst {worst:.1e}"
    if wc is not None:
        detail += (f" ({wc['kernel']}, c*span {wc['c_span']:.0e}, cond {wc['cond']:.1e}; solve backward "
                   f"error {wc['resid_semisep']:.1e} vs dense Cholesky's {wc['resid_dense']:.1e})")
    add("logdet/solve within 1e-12 of dense, N=2000, every kernel and c*span, no error", worst,
        (not failed) and worst <= TARGET_ERR,
        detail + (f"; failed: {'; '.join(failed)}" if failed else ""))
    # where dense itself is further than 1e-12 from the exact solution (ill-conditioned cases),
    # "against dense" cannot show 1e-12: semisep's solve is judged against the exact solution,
    # within 1e-12 or no further from it than dense Cholesky
    name = ("solve within 1e-12 of the exact solution, or no further from it than dense "
            "Cholesky, N=2000, every kernel and c*span")
    if ok:
        bad = [a for a in ok if a["solve_err_exact"] > max(TARGET_ERR, a["dense_err_exact"])]
        we = max(ok, key=lambda a: a["solve_err_exact"])
        add(name, we["solve_err_exact"], not bad and not failed,
            f"worst {we['solve_err_exact']:.1e} ({we['kernel']}, c*span {we['c_span']:.0e}; dense "
            f"Cholesky {we['dense_err_exact']:.1e} there)")
    return out


def markdown_targets(targets: list[dict]) -> str:
    return "\n".join(f"- **{t['verdict']}** {t['target']}: {t['detail']}" for t in targets)


# ------------------------------------------------------------------------------------------------
# entry points
# ------------------------------------------------------------------------------------------------
def run(quick: bool = False, max_log2n: int | None = None) -> dict[str, Any]:
    t_start = time.perf_counter()
    load0 = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    sizes = SIZES_QUICK if quick else SIZES_FULL
    if max_log2n is not None:
        sizes = [s for s in sizes if s <= max_log2n]
    c2, tg = _celerite2(), _tinygp()
    # compile semisep's kernels (numba) before any timing
    semisep_ll(ll_kernel(), times(64), np.ones(64))
    semisep_ll(ll_kernel(), times(64, BATCH), np.ones((BATCH, 64)))
    semisep_invdiag(inv_kernel(), times(64, BATCH))
    semisep_invdiag(inv_kernel(), times(64))
    rows = []
    for s in sizes:
        print(f"  N = 2^{s} ...", flush=True)
        rows.append(_time_size(s, quick, c2, tg))
    print("  accuracy vs dense, N = 2000 ...", flush=True)
    acc = _accuracy(quick)
    print("  torch peak memory ...", flush=True)
    mem = torch_memory()
    targets = _targets(rows, acc, mem)
    return {
        "name": NAME,
        "quick": quick,
        "batch": BATCH,
        "noise": NOISE,
        "baselines": {"celerite2": c2 is not None, "tinygp": tg is not None},
        "rows": rows,
        "accuracy": acc,
        "torch_memory": mem,
        "targets": targets,
        "elapsed_s": time.perf_counter() - t_start,
        "loadavg_at_start": load0,
        "loadavg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "markdown": {"table": markdown_tables(rows), "accuracy": markdown_accuracy(acc),
                     "memory": markdown_memory(mem),
                     "targets": markdown_targets(targets)},
        "plot": {
            "title": "GP log-likelihood, batch 1, float64 (inverse diagonal: the targets)",
            "x_label": "N", "y_label": "median time (s)",
            "x": [r["n"] for r in rows],
            "series": {
                "semisep log-likelihood": [r["ll_semisep"]["median_s"] for r in rows],
                "celerite2 log-likelihood": [r["ll_celerite2"].get("median_s") for r in rows],
                "dense SciPy log-likelihood": [r["ll_dense"].get("median_s") for r in rows],
            },
        },
    }


def report(result: dict[str, Any]) -> str:
    md = result["markdown"]
    mode = "quick" if result["quick"] else "full"
    return (f"### Quasiseparable GP operations, float64, noise {result['noise']} ({mode} run)\n\n"
            f"{md['table']}\n\nTimes are medians ±IQR/2; ratios are semisep / baseline (below 1: "
            "semisep faster) and 'b8 speedup' is (8 sequential batch-1 calls) / (one batch-8 call), "
            "all from the same run. Residuals are ||K x - y|| / (||K 1||_inf ||x||) with K applied "
            f"by celerite2.\n\n#### Accuracy vs dense SciPy, N = 2000\n\n{md['accuracy']}\n\n"
            "#### Peak memory of the torch log-likelihood (float64, rank 3, gradients for the "
            "kernel's parameters and the noise; resident memory added, fresh process each)\n\n"
            f"{md['memory']}\n\n"
            f"#### Targets\n\n{md['targets']}\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help=f"N = 2^{SIZES_QUICK} only, fewer repeats")
    p.add_argument("--max-log2n", type=int, default=None, help="cap the largest N (for testing)")
    p.add_argument("--no-write", action="store_true", help="do not write JSON")
    p.add_argument("--torch-memory", type=int, default=None, metavar="N",
                   help="(internal) print the torch log-likelihood's peak memory at N as JSON")
    p.add_argument("--backward", action="store_true", help="(with --torch-memory) forward+backward")
    p.add_argument("--diagonal-transitions", action="store_true",
                   help="only the table of diagonal transitions (N, r) against matrices (N, r, r)")
    p.add_argument("--batch-threads", action="store_true",
                   help="only the batch-8 / 8 x batch-1 CPU-time table at N = 2^17 (see batch_threads)")
    args = p.parse_args(argv)
    if args.diagonal_transitions:
        print(diagonal_transitions())
        return 0
    if args.batch_threads:
        print(batch_threads())
        return 0
    if args.torch_memory is not None:
        import json

        print(json.dumps(_torch_memory_child(args.torch_memory, args.backward)))
        return 0
    print(f"bench_quasiseparable ({'quick' if args.quick else 'full'}) ...", flush=True)
    result = run(quick=args.quick, max_log2n=args.max_log2n)
    data = {"machine": machine_info(), "results": {NAME: result}}
    print()
    print(report(result))
    if not args.no_write:
        path = write_json(data, "bench_quasiseparable" + ("-quick" if args.quick else ""))
        print(f"JSON written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
