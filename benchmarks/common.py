"""Shared benchmark utilities: timing, the machine record, JSON output, peak RSS in a subprocess.

Conventions used by every ``benchmarks/bench_*.py``:

* times are medians of ``time.perf_counter`` differences, reported with the inter-quartile
  range (IQR) so that noise on a shared machine is visible; ratios are always taken between
  figures measured in the same run;
* nothing is hard-coded: every number printed or written comes from a measurement made by
  the run that prints it.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench-results"

__all__ = [
    "ROOT",
    "RESULTS_DIR",
    "Timing",
    "median_time",
    "interleaved_times",
    "auto_repeats",
    "machine_info",
    "write_json",
    "peak_rss_in_subprocess",
    "fmt_time",
    "fmt_ratio",
]


class Timing(dict):
    """``{"median_s", "iqr_s", "q1_s", "q3_s", "min_s", "repeats", "warmup"}`` (a dict, JSON-ready)."""

    @property
    def median(self) -> float:
        return self["median_s"]

    @property
    def iqr(self) -> float:
        return self["iqr_s"]


def median_time(fn: Callable[[], Any], repeats: int = 7, warmup: int = 1) -> Timing:
    """Run ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed with ``perf_counter``.

    Returns a :class:`Timing` with the median and the inter-quartile range (q3 - q1) in seconds.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    ts = np.empty(repeats)
    for k in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts[k] = time.perf_counter() - t0
    q1, med, q3 = np.percentile(ts, [25, 50, 75])
    return Timing(
        median_s=float(med), iqr_s=float(q3 - q1), q1_s=float(q1), q3_s=float(q3),
        min_s=float(ts.min()), repeats=int(repeats), warmup=int(warmup),
    )


def interleaved_times(fns: dict[str, Callable[[], Any]], rounds: int = 7, warmup: int = 1,
                      block: int = 1) -> dict[str, Timing]:
    """Time several functions round-robin (``a, b, c, a, b, c, ...``) so that a slow spell of
    a noisy machine falls on all of them alike; one :class:`Timing` per name.  Use it for the
    ratios a target is judged on.

    ``block > 1``: each turn makes one untimed call and then ``block`` timed ones, so that
    every function is timed with its own working set in cache (as a plain repeat loop would)
    rather than cold after a neighbour with a large one -- use it where the functions'
    working sets differ a lot."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    ts: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            if block > 1:
                fn()
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                ts[k].append(time.perf_counter() - t0)
    out = {}
    for k, v in ts.items():
        a = np.asarray(v)
        q1, med, q3 = np.percentile(a, [25, 50, 75])
        out[k] = Timing(median_s=float(med), iqr_s=float(q3 - q1), q1_s=float(q1), q3_s=float(q3),
                        min_s=float(a.min()), repeats=int(a.size), warmup=int(warmup))
    return out


def auto_repeats(fn: Callable[[], Any], budget_s: float, min_repeats: int = 3,
                 max_repeats: int = 50, warmup: int = 1) -> Timing:
    """Time ``fn`` with as many repeats as fit in about ``budget_s`` (within the bounds).

    The first warm-up call is timed to size the run; it is not part of the statistics.
    """
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    reps = int(budget_s / max(first, 1e-9))
    reps = max(min_repeats, min(max_repeats, reps))
    return median_time(fn, repeats=reps, warmup=max(warmup - 1, 0))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(mod: str) -> str | None:
    try:
        m = __import__(mod)
    except Exception:  # noqa: BLE001 - an optional package that fails to import is "absent"
        return None
    return str(getattr(m, "__version__", "unknown"))


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
        if out.returncode != 0:
            return None
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    """Platform, CPU, library versions, thread counts, load average and git commit."""
    info: dict[str, Any] = {
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git_commit": _git_commit(),
        "versions": {m: _version(m) for m in ("numpy", "scipy", "numba", "torch", "matplotlib")},
    }
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        info["memory_bytes"] = int(mem)
    except (ValueError, OSError, AttributeError):
        info["memory_bytes"] = None
    try:
        import numba

        info["numba_num_threads"] = int(numba.get_num_threads())
        try:
            info["numba_threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel function has run yet
            info["numba_threading_layer"] = "not yet initialised"
    except ImportError:
        info["numba_num_threads"] = None
    try:
        import torch

        info["torch_num_threads"] = int(torch.get_num_threads())
    except ImportError:
        info["torch_num_threads"] = None
    env = {k: os.environ[k] for k in sorted(os.environ)
           if k.startswith(("OMP_", "MKL_", "OPENBLAS_", "NUMBA_"))}
    info["thread_env"] = env
    return info


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, complex):
        return {"re": x.real, "im": x.imag}
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(data: dict[str, Any], name: str, directory: Path | str | None = None) -> Path:
    """Write ``data`` to ``<directory>/<name>-<UTC timestamp>.json`` and ``<name>-latest.json``.

    NaN becomes ``null`` and inf ``"inf"`` (strict JSON). Returns the timestamped path.
    """
    d = Path(directory) if directory is not None else RESULTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(_jsonable(data), indent=2, allow_nan=False)
    path = d / f"{name}-{stamp}.json"
    path.write_text(text)
    (d / f"{name}-latest.json").write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# peak resident memory of one call, measured in a fresh process
# --------------------------------------------------------------------------------------------
def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) * (1 if sys.platform == "darwin" else 1024)  # Linux reports KiB, macOS bytes


def _rss_worker(fn: Callable[..., Any], args: tuple, kwargs: dict, keep_result: bool):
    before = _maxrss_bytes()
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    wall = time.perf_counter() - t0
    after = _maxrss_bytes()
    return {
        "maxrss_before_bytes": before,
        "maxrss_after_bytes": after,
        "peak_increase_bytes": after - before,
        "wall_s": wall,
        "result": result if keep_result else None,
    }


def peak_rss_in_subprocess(fn: Callable[..., Any], *args: Any, keep_result: bool = False,
                           **kwargs: Any) -> dict[str, Any]:
    """Run ``fn(*args, **kwargs)`` in a fresh ``spawn`` process and report its peak RSS.

    ``ru_maxrss`` is read before and after the call: ``peak_increase_bytes`` is how far the
    call raised the process's high-water mark above what interpreter + imports + arguments
    already used (an upper bound on transient allocations is *not* visible below that mark,
    so keep setup light in the child: build large inputs inside ``fn``). ``fn`` and its
    arguments must be picklable (a module-level function). The result is returned only with
    ``keep_result=True``.
    """
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_rss_worker, (fn, args, kwargs, keep_result))


# --------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------
def fmt_time(seconds: float | None) -> str:
    """Human time with 3 significant digits: ``12.3 ms``."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def fmt_ratio(r: float | None) -> str:
    if r is None or not math.isfinite(r):
        return "-"
    return f"{r:.3g}x"
