"""Cold numba compile time of the main CPU kernels, one signature each (not a test).

Each kernel is compiled in a fresh subprocess with an empty ``NUMBA_CACHE_DIR``, on complex128
rows (a real diagonal and off-diagonal with a complex shift, the autograd-path types), and
the first call's wall time is reported.  CI starts with a cold cache and compiles every
signature the tests use, so this time, times the number of signatures, is CI's compile bill
(docs/design.md, "Compile time").

    PYTHONPATH=. python benchmarks/compile_times.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SNIPPET = """
import time, numpy as np
import semisep.backends.numpy as nb
B, N = 4, 64
d = np.random.rand(B, N); b = np.random.rand(B, N - 1)
s = np.full(B, 0.1 + 0.2j); p = np.full(B, 1e-300)
calls = {{
    "resolvent (no grad, one row per task)": lambda: nb.resolvent_diagonal_shifted_kernel(d, s, b, p),
    "resolvent with pivots, rows in pairs": lambda: nb._resolvent_pivots_pairs(
        d, s, b, p, *(np.empty((B, N), complex) for _ in range(3)), np.zeros(B, np.int64),
        np.zeros(B, bool), 2),
    "resolvent with pivots, one row per task": lambda: nb._resolvent_pivots_batch(
        d, s, b, p, *(np.empty((B, N), complex) for _ in range(3)), np.zeros(B, np.int64),
        np.zeros(B, bool), 0),
    "logdet": lambda: nb.logdet_kernel(d - s[:, None], b.astype(complex), p),
}}
t = time.perf_counter()
calls[{name!r}]()
print(time.perf_counter() - t)
"""

NAMES = ["resolvent (no grad, one row per task)", "resolvent with pivots, rows in pairs",
         "resolvent with pivots, one row per task", "logdet"]


def main() -> int:
    for name in NAMES:
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
            out = subprocess.run([sys.executable, "-c", _SNIPPET.format(name=name)], env=env,
                                 capture_output=True, text=True, check=True)
        print(f"{name:42s} {float(out.stdout.strip().splitlines()[-1]):6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
