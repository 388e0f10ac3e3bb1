"""Where a cold test run spends its numba compile time (a pytest plugin and its summary; not a test).

From a cold numba cache almost all of CI's test time is compilation.  This plugin records
every compile numba performs (a cache load is not one): the kernel, the argument types, the
seconds it took including and excluding the kernels it compiled on the way (nested calls),
and the test that triggered it, one JSON line each, to ``$COMPILE_LOG_DIR/<worker>.jsonl``
(``main`` without pytest-xdist, ``gw0``, ``gw1``, ... with it)::

    NUMBA_CACHE_DIR=$(mktemp -d) COMPILE_LOG_DIR=/tmp/clog \\
        python -m pytest -p benchmarks.compile_log tests/test_tridiagonal.py
    python benchmarks/compile_log.py /tmp/clog      # per kernel, per test file, duplicates

The summary lists compile seconds per kernel and per test file, and the signatures that two
xdist workers both compiled.  Seconds are wall time: under load they stretch; the counts do not.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

_STATE: dict[str, Any] = {"test": "<collection>", "stack": [], "out": None}


def pytest_configure(config: Any) -> None:
    folder = os.environ.get("COMPILE_LOG_DIR")
    if not folder:
        return
    from numba.core import event

    class _Listener(event.Listener):
        def on_start(self, ev: Any) -> None:
            _STATE["stack"].append([time.perf_counter(), 0.0])

        def on_end(self, ev: Any) -> None:
            t0, nested = _STATE["stack"].pop()
            took = time.perf_counter() - t0
            if _STATE["stack"]:
                _STATE["stack"][-1][1] += took
            data = ev.data or {}
            func = getattr(data.get("dispatcher"), "py_func", None)
            name = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}"
            _STATE["out"].write(json.dumps({
                "test": _STATE["test"], "kernel": name, "args": str(data.get("args")),
                "seconds": took, "exclusive": took - nested, "depth": len(_STATE["stack"]),
            }) + "\n")
            _STATE["out"].flush()

    Path(folder).mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    _STATE["out"] = open(Path(folder) / f"{worker}.jsonl", "a")  # noqa: SIM115 - the session's
    event.register("numba:compile", _Listener())


def pytest_runtest_setup(item: Any) -> None:
    _STATE["test"] = item.nodeid


def summary(folder: str, top: int = 20) -> str:
    logs = {p.stem: [json.loads(line) for line in p.open()] for p in sorted(Path(folder).glob("*.jsonl"))}
    lines = []
    by_kernel: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    by_file: dict[str, float] = collections.defaultdict(float)
    seen: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    for worker, rows in logs.items():
        lines.append(f"{worker}: {len(rows)} compiles, {sum(r['exclusive'] for r in rows):.1f} s")
        for r in rows:
            by_kernel[r["kernel"]][0] += 1
            by_kernel[r["kernel"]][1] += r["exclusive"]
            by_file[r["test"].split("::")[0]] += r["exclusive"]
            seen[(r["kernel"], r["args"])].add(worker)
    both = [k for k, w in seen.items() if len(w) > 1]
    lines.append(f"signatures compiled by more than one worker: {len(both)} of {len(seen)}")
    lines.append("compiles  seconds  kernel (exclusive of nested compiles)")
    for name, (n, s) in sorted(by_kernel.items(), key=lambda kv: -kv[1][1])[:top]:
        lines.append(f"{n:8d} {s:8.1f}  {name}")
    lines.append(" seconds  test file")
    for name, s in sorted(by_file.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{s:8.1f}  {name}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(sys.argv[1]))
