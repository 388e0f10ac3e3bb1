"""Run every benchmark, write one JSON with the machine record and all results, draw plots.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/run_all.py [--quick] [--only NAME ...] [--no-plots]

The benchmark-module convention
-------------------------------
A benchmark is a module ``benchmarks/bench_<name>.py`` that exposes

``run(quick: bool) -> dict``
    Runs the benchmark and returns a JSON-ready dict (NumPy scalars, NaN and inf are
    converted on writing).  ``quick=True`` must finish in a minute or two (smaller sizes,
    fewer repeats).  All ratios in the dict must come from figures measured in that same call;
    nothing hard-coded.  Recognised keys (all optional except ``name``):

    ``name``      a stable identifier, used as the JSON key and plot file name;
    ``targets``   a list of ``{"target", "measured", "verdict": "PASS"|"MISS"|"n/a", "detail"}``;
    ``markdown``  a dict of Markdown fragments (``"table"``, ``"targets"``, ...), printed;
    ``plot``      ``{"title", "x_label", "y_label", "x": [...], "series": {label: [y or None]},
                  "floor": {label: [y or None]}}``: drawn log-log, one line per series (None
                  = not measured), ``floor`` lines dashed (e.g. the memory-bandwidth floor).

A module may also have a ``main()`` for running it alone as a script.  Modules are discovered
by file name, imported as ``benchmarks.bench_<name>``, and run in sorted order.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR, machine_info, write_json  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent


def discover() -> list[str]:
    """Module names ``benchmarks.bench_*`` found next to this file, sorted."""
    return [f"benchmarks.{p.stem}" for p in sorted(BENCH_DIR.glob("bench_*.py"))]


def plot_result(result: dict[str, Any], directory: Path) -> Path | None:
    """Draw ``result["plot"]`` log-log into ``<directory>/<name>.png``; None if no plot data.

    Raises ImportError when matplotlib is missing (the caller reports it).
    """
    spec = result.get("plot")
    if not spec:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = spec["x"]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    markers = "osD^v<>ph*"
    for k, (label, ys) in enumerate(spec.get("series", {}).items()):
        pts = [(xi, yi) for xi, yi in zip(x, ys) if yi is not None]
        if pts:
            ax.plot(*zip(*pts), marker=markers[k % len(markers)], label=label)
    for label, ys in spec.get("floor", {}).items():
        pts = [(xi, yi) for xi, yi in zip(x, ys) if yi is not None]
        if pts:
            ax.plot(*zip(*pts), linestyle="--", color="grey", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(spec.get("x_label", "N"))
    ax.set_ylabel(spec.get("y_label", "time (s)"))
    ax.set_title(spec.get("title", result.get("name", "")))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.get('name', 'benchmark')}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run all semisep benchmarks")
    p.add_argument("--quick", action="store_true", help="small sizes, fewer repeats")
    p.add_argument("--only", nargs="*", default=None,
                   help="run only these modules (e.g. bench_tridiagonal)")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)

    modules = discover()
    if args.only:
        modules = [m for m in modules if m.rsplit(".", 1)[1] in args.only]
    if not modules:
        print("no benchmark modules found", file=sys.stderr)
        return 1
    machine = machine_info()
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    t_all = time.perf_counter()
    for k, modname in enumerate(modules, 1):
        short = modname.rsplit(".", 1)[1]
        print(f"[{k}/{len(modules)}] {short} ({'quick' if args.quick else 'full'}) ...", flush=True)
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(modname)
            if not callable(getattr(mod, "run", None)):
                raise TypeError(f"{modname} has no run(quick) -> dict")
            res = mod.run(quick=args.quick)
            name = res.get("name", short)
            results[name] = res
            verdicts = [t["verdict"] for t in res.get("targets", [])]
            summary = ", ".join(f"{v} {verdicts.count(v)}" for v in ("PASS", "MISS", "n/a")
                                if v in verdicts)
            print(f"[{k}/{len(modules)}] {short} done in {time.perf_counter() - t0:.0f} s"
                  + (f" (targets: {summary})" if summary else ""), flush=True)
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            failures[short] = traceback.format_exc()
            print(f"[{k}/{len(modules)}] {short} FAILED after {time.perf_counter() - t0:.0f} s:\n"
                  f"{failures[short]}", flush=True)

    # the numba threading layer is known only after a parallel kernel ran: record it now
    machine["after_run"] = {k: v for k, v in machine_info().items()
                            if k in ("numba_threading_layer", "loadavg_1_5_15")}
    data = {"machine": machine, "quick": args.quick, "elapsed_s": time.perf_counter() - t_all,
            "results": results, "failures": failures}
    path = write_json(data, "run_all" + ("-quick" if args.quick else ""))
    print(f"\nJSON: {path}")

    for name, res in results.items():
        md = res.get("markdown", {})
        if md:
            print(f"\n## {name}\n")
            for part in md.values():
                print(part + "\n")

    if not args.no_plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("matplotlib is not installed: plots skipped "
                  "(pip install matplotlib, or pip install -e '.[bench]')")
        else:
            for name, res in results.items():
                out = plot_result(res, RESULTS_DIR)
                if out is not None:
                    print(f"plot: {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
