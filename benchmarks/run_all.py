"""Run every benchmark, write one JSON with the machine record and all results, draw plots.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/run_all.py [--quick] [--only NAME ...] [--no-plots]
    PYTHONPATH=. python benchmarks/run_all.py --docs [--quick]     # also write docs/performance/
    PYTHONPATH=. python benchmarks/run_all.py --docs --from-json bench-results/run_all-quick-latest.json

``--docs`` renders the documentation's performance page (``benchmarks/docs_page.py``): figures
of elements/s against N and of the ratios to the memory-copy floor and the best alternative,
with the command, machine and date next to each.  ``--from-json`` re-renders a saved run.
A progress bar (tqdm, when installed) runs over the modules, with an up-front estimate from
the per-module times the last run of the same mode recorded (``module_seconds`` in its JSON).

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
by file name, imported as ``benchmarks.bench_<name>``, and run in sorted order; a module without
``run`` is a script only (run it alone) and is listed as skipped, not as a failure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR, machine_info, write_json  # noqa: E402
from semisep._progress import describe_estimate, estimate_from_history, progress_bar  # noqa: E402

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
        pts = [(xi, yi) for xi, yi in zip(x, ys, strict=True) if yi is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=markers[k % len(markers)], label=label)
    for label, ys in spec.get("floor", {}).items():
        pts = [(xi, yi) for xi, yi in zip(x, ys, strict=True) if yi is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), linestyle="--", color="grey", label=label)
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


def _previous_seconds(quick: bool) -> dict[str, float]:
    """Per-module seconds recorded by the last run of the same mode (empty if none)."""
    path = RESULTS_DIR / f"run_all{'-quick' if quick else ''}-latest.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in (data.get("module_seconds") or {}).items()
            if isinstance(v, (int, float))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run all semisep benchmarks")
    p.add_argument("--quick", action="store_true", help="small sizes, fewer repeats")
    p.add_argument("--only", nargs="*", default=None,
                   help="run only these modules (e.g. bench_tridiagonal)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--docs", action="store_true",
                   help="also write the performance page and its figures to docs/performance/")
    p.add_argument("--from-json", default=None, metavar="PATH",
                   help="with --docs: render a saved run_all JSON instead of running")
    args = p.parse_args(argv)
    command = "python benchmarks/run_all.py " + " ".join(shlex.quote(a) for a in (
        argv if argv is not None else sys.argv[1:]))

    if args.from_json:
        if not args.docs:
            p.error("--from-json needs --docs")
        from benchmarks.docs_page import render

        data = json.loads(Path(args.from_json).read_text())
        run_cmd = data.get("command", "python benchmarks/run_all.py --docs")
        print(f"docs page: {render(data, run_cmd)}")
        return 0

    modules = discover()
    if args.only:
        modules = [m for m in modules if m.rsplit(".", 1)[1] in args.only]
    if not modules:
        print("no benchmark modules found", file=sys.stderr)
        return 1
    machine = machine_info()
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    skipped: list[str] = []
    seconds: dict[str, float] = {}
    t_all = time.perf_counter()
    shorts = [m.rsplit(".", 1)[1] for m in modules]
    est, known, total = estimate_from_history(shorts, _previous_seconds(args.quick))
    print(describe_estimate(est, known, total, f"run_all ({'quick' if args.quick else 'full'})"),
          flush=True)
    bar = progress_bar(total=len(modules), desc="benchmarks", unit="module")
    for k, modname in enumerate(modules, 1):
        short = modname.rsplit(".", 1)[1]
        bar.set_postfix_str(short)
        bar.write(f"[{k}/{len(modules)}] {short} ({'quick' if args.quick else 'full'}) ...")
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(modname)
            if not callable(getattr(mod, "run", None)):
                skipped.append(short)
                bar.write(f"[{k}/{len(modules)}] {short} skipped: a script without run(quick) "
                          f"(run it alone: python benchmarks/{short}.py)")
                bar.update(1)
                continue
            res = mod.run(quick=args.quick)
            name = res.get("name", short)
            results[name] = res
            seconds[short] = time.perf_counter() - t0
            verdicts = [t["verdict"] for t in res.get("targets", [])]
            summary = ", ".join(f"{v} {verdicts.count(v)}" for v in ("PASS", "MISS", "n/a")
                                if v in verdicts)
            bar.write(f"[{k}/{len(modules)}] {short} done in {seconds[short]:.0f} s"
                      + (f" (targets: {summary})" if summary else ""))
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            failures[short] = traceback.format_exc()
            bar.write(f"[{k}/{len(modules)}] {short} FAILED after {time.perf_counter() - t0:.0f} s:"
                      f"\n{failures[short]}")
        bar.update(1)
    bar.close()

    # the numba threading layer is known only after a parallel kernel ran: record it now
    machine["after_run"] = {k: v for k, v in machine_info().items()
                            if k in ("numba_threading_layer", "loadavg_1_5_15")}
    data = {"machine": machine, "quick": args.quick, "elapsed_s": time.perf_counter() - t_all,
            "command": command, "module_seconds": seconds, "skipped": skipped,
            "results": results, "failures": failures}
    path = write_json(data, "run_all" + ("-quick" if args.quick else ""))
    print(f"\nJSON: {path}")

    for name, res in results.items():
        md = res.get("markdown", {})
        if md:
            print(f"\n## {name}\n")
            for part in md.values():
                print(part + "\n")

    if not args.no_plots or args.docs:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("matplotlib is not installed: plots skipped "
                  "(pip install matplotlib, or pip install -e '.[bench]')")
            return 1 if (failures or args.docs) else 0
        if not args.no_plots:
            for res in results.values():
                out = plot_result(res, RESULTS_DIR)
                if out is not None:
                    print(f"plot: {out}")
        if args.docs:
            from benchmarks.docs_page import render

            print(f"docs page: {render(json.loads(path.read_text()), command)}")
    return 1 if failures else 0

if __name__ == "__main__":
    sys.exit(main())
