"""Counted (not timed) FLOPs of learned sparsity for G_ii, for docs/sparsity.md.  Not a test.

* the exact diagonal: :func:`semisep.cost.resolvent_diagonal_flops` (the fused pivot sweeps);
* the importance predictor of ``LearnedSparsityG_ii`` / ``SparseBKCore``: its matmul and conv
  FLOPs as ``torch.utils.flop_counter.FlopCounterMode`` counts them (nonlinearities excluded,
  so the ratio is a lower bound);
* the selected-entries kernel (the only path that skips work: NumPy / CPU, no gradient) on an
  unstructured random mask and on a contiguous block: :func:`semisep.nn._flops.selected_resolvent_flops`.

    PYTHONPATH=. python benchmarks/sparsity_flops.py
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from semisep.cost import resolvent_diagonal_flops
from semisep.nn import LearnedSparsityG_ii, SparseBKCore
from semisep.nn._flops import selected_resolvent_flops


def predictor_flops(module, d_model: int, n: int) -> int:
    x = torch.randn(1, n, d_model)
    with FlopCounterMode(display=False) as fc:
        module.predictor(x)
    return int(fc.get_total_flops())


def main() -> None:
    rng = np.random.default_rng(0)
    print("| d_model | N | module | predictor FLOPs / row | exact G_ii FLOPs / row | ratio |")
    print("|---|---|---|---|---|---|")
    for d_model, n in ((64, 512), (256, 2048)):
        exact = resolvent_diagonal_flops(n, complex=True)
        for name, mod in (("LearnedSparsityG_ii (context_kernel=5)", LearnedSparsityG_ii(d_model, n)),
                          ("SparseBKCore (position-wise MLP)", SparseBKCore(d_model, n))):
            p = predictor_flops(mod, d_model, n)
            print(f"| {d_model} | {n} | {name} | {p:,} | {exact:,} | {p / exact:.0f}x |")
    print()
    print("| N | kept | mask | selected-kernel FLOPs / row | vs full diagonal |")
    print("|---|---|---|---|---|")
    for n in (512, 2048):
        full = resolvent_diagonal_flops(n, complex=True)
        for keep in (0.5, 0.1):
            k = int(keep * n)
            rand = np.sort(rng.choice(n, k, replace=False))
            block = np.arange(n // 2 - k // 2, n // 2 - k // 2 + k)
            for mask, idx in (("unstructured (random)", rand), ("one contiguous block", block)):
                f = selected_resolvent_flops(n, idx)
                print(f"| {n} | {keep:.0%} | {mask} | {f:,} | {f / full:.2f} |")


if __name__ == "__main__":
    main()
