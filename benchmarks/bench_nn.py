"""BirmanSchwingerCore against the original BK-Core algorithm, in one run.

Usage::

    PYTHONPATH=. python benchmarks/bench_nn.py                  # batch 8, N = 2^11 .. 2^17
    PYTHONPATH=. python benchmarks/bench_nn.py --log2n 11 13 --reps 5 --dtype float32
    PYTHONPATH=. python benchmarks/bench_nn.py --threads 0        # torch's default thread count

What is timed (medians of ``--reps`` runs after one warm-up, wall clock, CPU):

* ``semisep fwd``    ``BirmanSchwingerCore(N)(v)`` under ``torch.no_grad()`` (features and all
                     diagnostics, exact Woodbury with r = ceil(log2 N)).
* ``semisep f+b``    forward and ``loss.backward()`` with ``loss = (features * w).sum()``.
* ``orig fwd/f+b``   the original algorithm, re-implemented below: the theta/phi determinant
                     recursion as a sequential Python loop over N in torch (vectorised over the
                     batch, complex128), ``G_ii = theta_i phi_{i+1} / theta_N`` with its
                     non-finite entries replaced by 0 (as the original did), then the
                     "diagonal-only" Woodbury correction that replaces ``A^{-1}`` by ``diag(G)``
                     (the resolvent of a different matrix; DESIGN.md section 3); backward by
                     autograd through the loop.  It is the wrong algorithm: timed for
                     comparison, and its error is reported.

Accuracy (``--dense-max``, default 2048): the max relative error of both against the dense
reference ``diag(inv(H - zI))`` (NumPy, complex128), same U, V, v; for every N the semisep
features must be finite (asserted).  Ratios (orig / semisep) come from the same run.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from semisep.nn import BirmanSchwingerCore


# ------------------------------------------------------------------------------------------------
# the original algorithm (for timing and to show its error; do not use)
# ------------------------------------------------------------------------------------------------
def original_tridiagonal_diag(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, z: complex):
    """theta/phi recursion of the original BK-Core: a (B, N) diag, b, c (N-1) off-diagonals."""
    a = a.to(torch.complex128) - z
    b = b.to(torch.complex128)
    c = c.to(torch.complex128)
    B, n = a.shape
    one = torch.ones(B, dtype=torch.complex128)
    theta = [one, a[:, 0]]
    for i in range(1, n):
        theta.append(a[:, i] * theta[i] - c[i - 1] * b[i - 1] * theta[i - 1])
    phi = [None] * (n + 1)
    phi[n] = one
    phi[n - 1] = a[:, n - 1]
    for i in range(n - 2, -1, -1):
        phi[i] = a[:, i] * phi[i + 1] - c[i] * b[i] * phi[i + 2]
    theta_t = torch.stack(theta[:-1], dim=1)  # theta_0 .. theta_{N-1} (theta_i: leading i x i)
    phi_t = torch.stack(phi[1:], dim=1)  # phi_1 .. phi_N
    det = theta[-1][:, None]
    G = theta_t * phi_t / det
    finite = torch.isfinite(G.real) & torch.isfinite(G.imag)
    return torch.where(finite, G, torch.zeros_like(G))  # the original's NaN/inf "cleaning"


def original_core(v: torch.Tensor, U: torch.Tensor, V: torch.Tensor, z: complex):
    """Original: G = theta/phi diagonal, then Woodbury with diag(G) in place of A^{-1}."""
    n = v.shape[1]
    ones = torch.ones(n - 1, dtype=v.dtype)
    G = original_tridiagonal_diag(v - 2.0, ones, ones, z)
    Uc, Vc = U.to(G.dtype), V.to(G.dtype)
    GU = G[:, :, None] * Uc  # "A^{-1} U" ~ diag(G) U
    GV = G[:, :, None] * Vc
    K = torch.eye(U.shape[1], dtype=G.dtype) + Vc.T @ GU
    W = torch.linalg.solve(K, GV.transpose(1, 2)).transpose(1, 2)
    Gc = G - (GU * W).sum(-1)
    return torch.stack([Gc.real, Gc.imag], dim=-1).to(v.dtype)


# ------------------------------------------------------------------------------------------------
def dense_reference(v, U, V, z):
    v = v.detach().double().numpy()
    U = U.detach().double().numpy()
    V = V.detach().double().numpy()
    n = v.shape[1]
    H0 = np.diag(np.full(n, -2.0)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)
    L = U @ V.T
    return np.stack([np.diag(np.linalg.inv(H0 + np.diag(r) + L - z * np.eye(n))) for r in v])


def median_time(fn, reps):
    fn()  # warm-up (numba compilation, allocator)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--log2n", type=int, nargs=2, default=[11, 17], metavar=("LO", "HI"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--baseline-reps", type=int, default=3)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    ap.add_argument("--dense-max", type=int, default=2048)
    ap.add_argument("--baseline-fb-max", type=int, default=2 ** 13,
                    help="largest N for the original's forward+backward (autograd through its "
                         "Python loop: 2.9 s at N = 4096, 91 s at 8192 on the 2-core machine)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--accuracy-n", type=int, nargs="*", default=[256, 512],
                    help="extra N for an accuracy-only table (no timing)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on a shared machine torch's OpenMP "
                         "pool turns a 0.05 ms elementwise op into 30 ms; 0 keeps torch's default)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dt = getattr(torch, args.dtype)
    z = 1j
    torch.manual_seed(args.seed)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch}, "
          f"{args.dtype}, z = {z}; medians of {args.reps} (semisep) / {args.baseline_reps} "
          f"(original) runs; times in ms")
    hdr = (f"{'N':>7} {'r':>3} {'semisep fwd':>12} {'orig fwd':>10} {'ratio':>7} "
           f"{'semisep f+b':>12} {'orig f+b':>10} {'ratio':>7} {'err semisep':>12} "
           f"{'err orig':>9}")
    print(hdr)
    print("-" * len(hdr))
    for lg in range(args.log2n[0], args.log2n[1] + 1):
        bench_one(2 ** lg, args, dt, z)
    if args.accuracy_n:
        print("\naccuracy only (N below the theta/phi overflow, so the original's error is its "
              "diagonal-only Woodbury's):")
        print(f"{'N':>7} {'r':>3} {'err semisep':>12} {'err orig':>9} {'err orig, U=V=0':>16} "
              f"{'orig corr. err':>15} {'semisep corr. err':>18}")
        for n in args.accuracy_n:
            accuracy_one(n, args, dt, z)


def accuracy_one(n, args, dt, z):
    core = BirmanSchwingerCore(n, dtype=dt, init_scale=1.0 / math.sqrt(n))
    v = torch.rand(args.batch, n, dtype=dt) * 2 - 1
    U, V = core.U.detach(), core.V.detach()
    with torch.no_grad():
        fs = core(v, z)[0]
        fo = original_core(v, U, V, z)
        fo0 = original_core(v, 0 * U, 0 * V, z)
    ref, ref0 = dense_reference(v, U, V, z), dense_reference(v, 0 * U, 0 * V, z)
    corr = np.abs(ref - ref0).max()  # size of the exact low-rank correction of diag(G)

    def err(f, r):
        return np.abs(f[..., 0].double().numpy() + 1j * f[..., 1].double().numpy() - r).max()

    print(f"{n:>7} {core.rank:>3} {err(fs, ref) / np.abs(ref).max():>12.2e} "
          f"{err(fo, ref) / np.abs(ref).max():>9.2e} {err(fo0, ref0) / np.abs(ref0).max():>16.2e} "
          f"{err(fo, ref) / corr:>15.2e} {err(fs, ref) / corr:>18.2e}")


def bench_one(n, args, dt, z):
    """One row of the table."""
    core = BirmanSchwingerCore(n, dtype=dt, init_scale=1.0 / math.sqrt(n))
    v = torch.rand(args.batch, n, dtype=dt) * 2 - 1
    w = torch.randn(args.batch, n, 2, dtype=dt)
    U, V = core.U, core.V

    def ss_fwd():
        with torch.no_grad():
            return core(v, z)[0]

    def ss_fb():
        core.zero_grad()
        vv = v.clone().requires_grad_()
        f, _ = core(vv, z)
        (f * w).sum().backward()

    def orig_fwd():
        with torch.no_grad():
            return original_core(v, U.detach(), V.detach(), z)

    def orig_fb():
        vv = v.clone().requires_grad_()
        Uu, Vv = U.detach().clone().requires_grad_(), V.detach().clone().requires_grad_()
        (original_core(vv, Uu, Vv, z) * w).sum().backward()

    t_sf = median_time(ss_fwd, args.reps)
    t_sb = median_time(ss_fb, args.reps)
    t_of = median_time(orig_fwd, args.baseline_reps)
    t_ob = median_time(orig_fb, args.baseline_reps) if n <= args.baseline_fb_max else float("nan")
    fs, fo = ss_fwd(), orig_fwd()
    assert torch.isfinite(fs).all(), "semisep features not finite"
    es = eo = float("nan")
    if n <= args.dense_max:
        ref = dense_reference(v, U, V, z)
        scale = np.abs(ref).max()
        es = np.abs(fs[..., 0].double().numpy() + 1j * fs[..., 1].double().numpy()
                    - ref).max() / scale
        eo = np.abs(fo[..., 0].double().numpy() + 1j * fo[..., 1].double().numpy()
                    - ref).max() / scale
    print(f"{n:>7} {core.rank:>3} {t_sf * 1e3:>12.2f} {t_of * 1e3:>10.1f} "
          f"{t_of / t_sf:>7.1f} {t_sb * 1e3:>12.2f} {t_ob * 1e3:>10.1f} {t_ob / t_sb:>7.1f} "
          f"{es:>12.2e} {eo:>9.2e}", flush=True)



if __name__ == "__main__":
    main()
