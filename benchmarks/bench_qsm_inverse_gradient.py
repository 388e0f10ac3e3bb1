"""The inverse diagonal of a Gaussian-process covariance with gradients on CPU tensors: the
portable Python loop (``method="loop"``) against the chunked scan form (what ``"auto"`` runs
there), for a Matern-3/2 kernel plus white noise; the gradient of the kernel's scale.

    PYTHONPATH=. python benchmarks/bench_qsm_inverse_gradient.py

Prints, per N, the best of 3 calls (forward + backward) of each path, their ratio and the
largest relative difference of the two inverse diagonals.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from semisep.kernels import Matern32


def main() -> None:
    rng = np.random.default_rng(0)
    for n in (1024, 4096, 16384):
        t = torch.tensor(np.sort(rng.uniform(0, n / 10, n)))
        out = {}
        for method in ("loop", "chunked"):
            scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)

            def call(method=method, scale=scale, t=t):
                G = Matern32(scale=scale).to_operator(t, diag=0.1).resolvent_diagonal(method=method)
                G.sum().backward()
                return G

            call()
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                G = call()
                ts.append(time.perf_counter() - t0)
            out[method] = (min(ts), G.detach())
        (tl, Gl), (tc, Gc) = out["loop"], out["chunked"]
        diff = float((Gl - Gc).abs().max() / Gl.abs().max())
        print(f"N = {n}: loop {tl * 1e3:.0f} ms, chunked {tc * 1e3:.0f} ms ({tl / tc:.0f}x), "
              f"max rel diff of G {diff:.1e}")


if __name__ == "__main__":
    main()
