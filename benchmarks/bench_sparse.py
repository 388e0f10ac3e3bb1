"""Learned sparsity and multi-scale BK layers: what skipping and downsampling really save.

Usage::

    PYTHONPATH=. python benchmarks/bench_sparse.py            # full run (a few minutes)
    PYTHONPATH=. python benchmarks/bench_sparse.py --quick    # smaller sizes, fewer steps

Every timing is the median of interleaved repeats in this one run, reported as a ratio to the
full computation timed in the same loop (the machine is shared and noisy; absolute times are
printed for reference only).  FLOPs are counted by the pure functions of
``semisep.cost`` / ``semisep.nn._flops`` for the work the kernels actually do (for the chunked
path: the second-pass steps the call measured).

Sections
--------
1. NumPy sequential kernel, indices shared by the batch: full fused kernel vs
   ``resolvent_diagonal_selected_kernel`` at sparsity 0.3 / 0.5 / 0.7 (random indices, and a
   contiguous block of kept indices).
2. torch, per-row masks: full kernel vs ``masked_resolvent_diagonal`` (sequential = full +
   gather; chunked = skip second passes of inactive chunks + combine at kept), random masks and
   block masks (kept positions in 4 random contiguous blocks per row).
3. MultiScaleBKLayer vs BKLayer (forward, and forward+backward), time and counted FLOPs.
4. Synthetic regression: predict ``[Re G_ii, Im G_ii]`` of ``H0 + diag(v)`` at ``z = 1j`` for
   random smooth-plus-rough potentials with a tiny model around ``SparseBKCore``; test error
   (relative L2, all positions and skipped positions only) per sparsity and interpolation.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from semisep.backends.numpy import resolvent_diagonal_kernel, resolvent_diagonal_selected_kernel
from semisep.cost import resolvent_diagonal_flops
from semisep.nn import BKLayer, MultiScaleBKLayer, SparseBKCore, masked_resolvent_diagonal
from semisep.nn._flops import (
    bk_layer_flops,
    chunked_masked_resolvent_flops,
    multiscale_bk_layer_flops,
    selected_resolvent_flops,
)
from semisep.nn.sparse import laplacian_resolvent_diagonal

SPARSITIES = (0.3, 0.5, 0.7)


def interleaved_medians(fns: dict, repeats: int) -> dict:
    """Run each callable once per round, ``repeats`` rounds (after one warm-up call each).

    Returns, per callable, the median seconds; and for every callable but the first the
    per-round ratio to the first callable summarised as ``(median, q25, q75)`` under the key
    ``"<name>/<first>"`` -- paired ratios are what survives a noisy shared machine."""
    names = list(fns)
    times = {k: [] for k in names}
    for f in fns.values():
        f()  # warm-up (numba compile, allocator)
    for _ in range(repeats):
        for k in names:
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    out = {k: statistics.median(v) for k, v in times.items()}
    base = np.array(times[names[0]])
    for k in names[1:]:
        r = np.array(times[k]) / base
        out[f"{k}/{names[0]}"] = tuple(float(q) for q in np.quantile(r, [0.5, 0.25, 0.75]))
    return out


def fmt(r) -> str:
    """``median [q25, q75]`` of paired ratios."""
    return f"{r[0]:.2f} [{r[1]:.2f}, {r[2]:.2f}]"


def block_mask(rng, B, N, keep_frac, nblocks=4):
    """Per row: ``round(N keep_frac)`` kept positions in ``nblocks`` contiguous runs at random
    places (non-overlapping)."""
    k = int(round(N * keep_frac))
    m = np.zeros((B, N), bool)
    for b in range(B):
        sizes = np.full(nblocks, k // nblocks)
        sizes[: k % nblocks] += 1
        free = N - k
        gaps = np.sort(rng.choice(free + 1, nblocks, replace=True))
        pos = 0
        prev_gap = 0
        for s, g in zip(sizes, gaps):
            pos += g - prev_gap
            prev_gap = g
            m[b, pos: pos + s] = True
            pos += s
    return m


def section_numpy(rng, B, N, repeats):
    print(f"\n## 1. NumPy sequential kernel, shared indices (B={B}, N={N}, complex128, z=1j)")
    alpha = (rng.uniform(-1, 1, (B, N)) - 2.0) - 1j
    beta = np.ones((B, N - 1), complex)
    pm = np.full(B, 1e-14)
    print("| sparsity | indices | time ratio selected/full, median [q25, q75] | FLOP ratio | full ms | selected ms |")
    print("|---|---|---|---|---|---|")
    full_fl = resolvent_diagonal_flops(N)
    for s in SPARSITIES:
        k = int(round(N * (1 - s)))
        cases = {
            "random": np.sort(rng.choice(N, k, replace=False)),
            "block (kept = one run at the start)": np.arange(k),
        }
        for name, idx in cases.items():
            t = interleaved_medians({
                "full": lambda: resolvent_diagonal_kernel(alpha, beta, pm),
                "sel": lambda: resolvent_diagonal_selected_kernel(alpha, beta, pm, idx),
            }, repeats)
            fl = selected_resolvent_flops(N, idx) / full_fl
            print(f"| {s} | {name} | {fmt(t['sel/full'])} | {fl:.2f} | {t['full'] * 1e3:.2f} | {t['sel'] * 1e3:.2f} |")
    idx = np.arange(N)
    t = interleaved_medians({
        "full": lambda: resolvent_diagonal_kernel(alpha, beta, pm),
        "sel": lambda: resolvent_diagonal_selected_kernel(alpha, beta, pm, idx),
    }, repeats)
    print(f"| 0.0 | all (overhead of the selected kernel) | {fmt(t['sel/full'])} | "
          f"{selected_resolvent_flops(N, idx) / full_fl:.2f} | {t['full'] * 1e3:.2f} | {t['sel'] * 1e3:.2f} |")


def section_torch(rng, B, N, repeats):
    print(f"\n## 2. torch, per-row masks (B={B}, N={N}, float64 -> complex128, z=1j, no grad)")
    v = torch.from_numpy(rng.uniform(-1, 1, (B, N)))
    ones = torch.ones(N - 1, dtype=torch.float64)
    d = v - 2.0
    from semisep import Tridiagonal
    T = Tridiagonal(d, ones)
    from semisep.backends.torch.chunks import _pivot_chunk_length
    L = _pivot_chunk_length(N)
    print(f"chunk length L = {L}")
    print("| sparsity | mask | method | time ratio masked/full (same method), median [q25, q75] | second-pass steps run | FLOP ratio (chunked count) | full ms | masked ms |")
    print("|---|---|---|---|---|---|---|---|")
    full_fl = chunked_masked_resolvent_flops(B, N, L, 2 * B * (-(-N // L)), B * N)["total"]
    with torch.no_grad():
        for s in SPARSITIES:
            masks = {"random": torch.from_numpy(rng.random((B, N)) >= s),
                     "4 blocks/row": torch.from_numpy(block_mask(rng, B, N, 1 - s))}
            for mname, m in masks.items():
                for method in ("sequential", "chunked"):
                    res = masked_resolvent_diagonal(d, ones, None, 1j, m, method=method)
                    t = interleaved_medians({
                        "full": lambda: T.resolvent_diagonal(1j, method=method),
                        "masked": lambda: masked_resolvent_diagonal(d, ones, None, 1j, m, method=method),
                    }, repeats)
                    if method == "chunked":
                        run, tot = res.work["second_pass_steps"], res.work["second_pass_steps_full"]
                        fl = chunked_masked_resolvent_flops(B, N, L, run // L, int(m.sum()))["total"] / full_fl
                        steps, fls = f"{run / tot:.2f}", f"{fl:.2f}"
                    else:
                        steps, fls = "1.00 (full kernel + gather)", "1.00"
                    print(f"| {s} | {mname} | {method} | {fmt(t['masked/full'])} | {steps} | {fls} | "
                          f"{t['full'] * 1e3:.2f} | {t['masked'] * 1e3:.2f} |")
        t = interleaved_medians({"sequential": lambda: T.resolvent_diagonal(1j, method="sequential"),
                                 "chunked": lambda: T.resolvent_diagonal(1j, method="chunked")}, repeats)
        print(f"\nfull diagonal, chunked / sequential time on this CPU: {fmt(t['chunked/sequential'])} "
              f"({t['sequential'] * 1e3:.2f} ms vs {t['chunked'] * 1e3:.2f} ms)")


def section_multiscale(B, N, D, repeats):
    print(f"\n## 3. MultiScaleBKLayer vs BKLayer (B={B}, N={N}, d_model={D}, hidden={2 * D}, float32)")
    torch.manual_seed(0)
    full, ms = BKLayer(D, N), MultiScaleBKLayer(D, N)
    x = torch.randn(B, N, D)
    with torch.no_grad():
        t = interleaved_medians({"full": lambda: full(x), "ms": lambda: ms(x)}, repeats)

    def fb(layer):
        def run():
            layer.zero_grad(set_to_none=True)
            out, _ = layer(x)
            out.square().mean().backward()
        return run

    tb = interleaved_medians({"full": fb(full), "ms": fb(ms)}, repeats)
    _, st = ms(x)
    fl_full = bk_layer_flops(B, N, D, 2 * D)["total"]
    fl_ms = multiscale_bk_layer_flops(B, N, D, 2 * D)["total"]
    print("| quantity | full | multi-scale | ratio ms/full, median [q25, q75] of paired rounds |")
    print("|---|---|---|---|")
    print(f"| counted forward FLOPs | {fl_full} | {fl_ms} | {fl_ms / fl_full:.3f} |")
    print(f"| forward time (ms, median) | {t['full'] * 1e3:.2f} | {t['ms'] * 1e3:.2f} | {fmt(t['ms/full'])} |")
    print(f"| forward+backward time (ms, median) | {tb['full'] * 1e3:.2f} | {tb['ms'] * 1e3:.2f} | {fmt(tb['ms/full'])} |")
    print(f"stats['flops_saved_ratio'] = {st['flops_saved_ratio']:.3f}")


class TinyModel(torch.nn.Module):
    """x = Conv1d_5(v) (local context of the potential) -> SparseBKCore(x, v) -> the features."""

    def __init__(self, d, n, s, interp):
        super().__init__()
        self.embed = torch.nn.Conv1d(1, d, 5, padding=2)
        self.core = SparseBKCore(d, n, target_sparsity=s, interpolation_method=interp)

    def forward(self, v):
        x = torch.relu(self.embed(v[:, None, :])).transpose(1, 2)
        return self.core(x, v)


def potentials(rng, B, N):
    """Smooth random potential (8 random Fourier modes, amplitude ~1) plus 0.2 uniform noise."""
    t = np.linspace(0, 1, N)
    k = np.arange(1, 9)
    c = rng.standard_normal((B, 8)) / k
    smooth = (c[:, :, None] * np.sin(np.pi * k[None, :, None] * t[None, None, :] + rng.uniform(0, 2 * np.pi, (B, 8, 1)))).sum(1)
    return torch.from_numpy(smooth + 0.2 * rng.uniform(-1, 1, (B, N))).float()


def section_regression(rng, N, steps, repeats):
    print(f"\n## 4. Synthetic regression: G_ii features of H0 + diag(v) at z = 1j, N = {N}")
    print("(train: Adam 1e-2, batch 32, MSE + 1.0 * sparsity loss; test: 256 held-out potentials, eval mode = top-k)")
    vtest = potentials(rng, 256, N)
    ytest = torch.view_as_real(laplacian_resolvent_diagonal(vtest.double(), 1j)).float()
    print("| target sparsity | interpolation | measured test sparsity | rel. L2 error (all) | rel. L2 error (skipped) | "
          "train-mode sparsity (last 10 steps) | eval forward ms (median) | time ratio vs s=0 (separate loops: noisy) |")
    print("|---|---|---|---|---|---|---|---|")
    base_t = None
    for s in (0.0,) + SPARSITIES:
        for interp in ("linear", "learned"):
            if s == 0.0 and interp == "learned":
                continue
            torch.manual_seed(0)
            model = TinyModel(16, N, s, interp)
            opt = torch.optim.Adam(model.parameters(), lr=1e-2)
            tr = []
            for it in range(steps):
                v = potentials(rng, 32, N)
                y = torch.view_as_real(laplacian_resolvent_diagonal(v.double(), 1j)).float()
                f, m, ratio = model(v)
                loss = (f - y).square().mean() + 1.0 * model.core.sparsity_loss()
                opt.zero_grad()
                loss.backward()
                opt.step()
                if it >= steps - 10:
                    tr.append(ratio.item())
            model.eval()
            with torch.no_grad():
                f, m, ratio = model(vtest)
                err = (f - ytest).norm() / ytest.norm()
                sk = ~m.bool()
                err_sk = ((f - ytest)[sk].norm() / ytest[sk].norm()).item() if sk.any() else float("nan")
                t = interleaved_medians({"fwd": lambda: model(vtest)}, repeats)["fwd"]
            base_t = t if base_t is None else base_t
            print(f"| {s} | {interp if s > 0 else '(none needed)'} | {ratio.item():.3f} | {err.item():.2e} | "
                  f"{err_sk:.2e} | {np.mean(tr):.3f} | {t * 1e3:.2f} | {t / base_t:.2f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if args.quick:
        section_numpy(rng, 16, 1 << 14, 15)
        section_torch(rng, 16, 1 << 12, 11)
        section_multiscale(8, 512, 64, 15)
        section_regression(rng, 64, 60, 5)
    else:
        section_numpy(rng, 32, 1 << 15, 15)
        section_torch(rng, 32, 1 << 13, 11)
        section_multiscale(16, 1024, 64, 11)
        section_regression(rng, 128, 200, 9)


if __name__ == "__main__":
    main()
