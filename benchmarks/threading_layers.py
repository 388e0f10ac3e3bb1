"""numba threading layers compared: ``omp`` (numba's choice without tbb, not fork-safe),
``tbb`` (semisep's choice: fork- and thread-safe) and ``workqueue`` (semisep's fallback
without tbb, launches serialised by a lock).  Not a test.

Each layer runs in its own subprocess (numba picks the layer once per process); the processes
take turns, ``--rounds`` times, and each times a batch-8, N = 2^17 complex-shift
``resolvent_diagonal`` and ``solve`` (float64 chain, z = 0.3 + 0.01j) as medians of
``--repeats`` warm calls.  The table gives, per layer, the median over rounds and its ratio to
``omp``'s; rounds interleave, so a load change hits every layer alike.

    PYTHONPATH=. python benchmarks/threading_layers.py [--rounds 5 --repeats 15]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("omp", "tbb", "workqueue")

_CHILD = """
import json, time, numpy as np, numba, semisep as ss
rng = np.random.default_rng(0)
B, N, z = 8, 1 << 17, 0.3 + 0.01j
T = ss.Tridiagonal(rng.uniform(-2, 2, (B, N)), np.ones(N - 1))
b = rng.standard_normal((B, N))
def med(fn, k):
    fn(); fn()
    ts = []
    for _ in range(k):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return float(np.median(ts))
out = {"resolvent_diagonal": med(lambda: T.resolvent_diagonal(z), REPEATS),
       "solve": med(lambda: T.solve(b, z), REPEATS), "layer": numba.threading_layer(),
       "threads": numba.get_num_threads()}
print(json.dumps(out))
"""


def run_layer(layer: str, repeats: int) -> dict:
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", _CHILD.replace("REPEATS", str(repeats))],
                         env=env, capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["layer"] == layer, (layer, res)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {k: [] for k in LAYERS}
    for _ in range(args.rounds):
        for layer in LAYERS:
            runs[layer].append(run_layer(layer, args.repeats))
    print(f"numba threads: {runs['omp'][0]['threads']}; batch 8, N = 2^17, medians over "
          f"{args.rounds} rounds of the median of {args.repeats} warm calls")
    print("| layer | resolvent_diagonal (ms) | vs omp | solve (ms) | vs omp |")
    print("|---|---|---|---|---|")
    base = {k: np.median([r[k] for r in runs["omp"]]) for k in ("resolvent_diagonal", "solve")}
    for layer in LAYERS:
        m = {k: np.median([r[k] for r in runs[layer]]) for k in ("resolvent_diagonal", "solve")}
        print(f"| {layer} | {m['resolvent_diagonal'] * 1e3:.2f} | "
              f"{m['resolvent_diagonal'] / base['resolvent_diagonal']:.2f} | "
              f"{m['solve'] * 1e3:.2f} | {m['solve'] / base['solve']:.2f} |")


if __name__ == "__main__":
    main()
