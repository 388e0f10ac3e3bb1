"""Issue 3 on a CUDA device: the chunked torch path where it is meant to run.

Needs a GPU (exits 2 without one); run when one is lent:

    PYTHONPATH=. python benchmarks/bench_cuda.py [--quick] [--json FILE]

Timings are CUDA-event medians after warm-up (host syncs included, as a user sees them).

1. Target: batch 64, N = 2^20, float32 disordered chain, z = 0.5 + 1e-3j -> complex64 G,
   ``T.resolvent_diagonal(z)`` ("auto" = chunked on CUDA) against a device-to-device copy of
   the output (``out.copy_(G)``, 512 MiB read + 512 MiB written), in the same run.
2. The same at several chunk lengths L, for "auto" (the fused Triton kernels, at their
   default chunk length), for the fused kernels
   called directly (tiled or strided, each scan, several L and blocks) and for
   ``method="chunked"`` (plain torch ops, the kernel's ``chunk_length``),
   with the number of CUDA kernels one call launches and their summed GPU time
   (torch.profiler): launch-bound or bandwidth-bound.
3. Batch 8, N = 2^10 .. 2^20, complex128: forward ("auto" and "chunked") and forward+backward
   (loss = sum |G|^2; autograd runs the chunked path), and the NumPy backend's CPU forward of
   the same problem for scale.

The target's forward+backward (float32 ``diag`` needing a gradient, loss = sum |G|^2) is timed
in section 1 too.  ``--counts``: kernel launches (non-view aten ops, the CPU tests' proxy, and
on CUDA the kernels the profiler saw) and host syncs (``torch.cuda.set_sync_debug_mode``'s
warnings) of one public call, forward and backward, at N = 2^14 and 2^20 (batch 4), for the
chunked Tridiagonal calls and the low-rank ones; the target is launches(2^20) <= 1.5
launches(2^14) and at most one sync per call.

``--dry-run``: the same code on CPU tensors at tiny shapes (wall-clock medians, no profiler,
the fused kernels under Triton's interpreter where ``TRITON_INTERPRET=1``): a check that the
script runs end to end before a GPU is lent; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

Z = 0.5 + 1e-3j


#: the device the script runs on ("cuda", or "cpu" for --dry-run)
_DEVICE = {"name": "cuda"}


def _dry() -> bool:
    return _DEVICE["name"] != "cuda"


def _cuda_median(fn, repeats: int = 10, warmup: int = 2) -> float:
    import torch

    if _dry():  # wall-clock, CPU
        fn()
        return statistics.median(_wall(fn) for _ in range(max(1, repeats // 5)))
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times)


def _problem(n: int, batch: int, dtype, seed: int = 0, requires_grad: bool = False):
    import torch

    rng = np.random.default_rng(seed)
    d = torch.tensor(-2.0 + rng.uniform(-1, 1, (batch, n)), dtype=dtype, device=_DEVICE["name"])
    d.requires_grad_(requires_grad)
    off = torch.ones(n - 1, dtype=dtype, device=_DEVICE["name"])
    return d, off


def _kernel_profile(fn) -> tuple[int, float, list[tuple[str, float]]]:
    """(number of CUDA kernels launched by one call, their summed device time in seconds, the
    three kernels that took longest as (name, seconds))."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    if _dry():
        return 0, 0.0, []
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    n, t = 0, 0.0
    per: dict[str, float] = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            dt = (e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time) * 1e-6
            n += 1
            t += dt
            per[e.name[:40]] = per.get(e.name[:40], 0.0) + dt
    top = sorted(per.items(), key=lambda kv: -kv[1])[:3]
    return n, t, top


def run(quick: bool, target_only: bool = False) -> dict[str, Any]:
    import torch

    from semisep.backends import get_backend

    bk = get_backend("torch")
    res: dict[str, Any] = {
        "device": "cpu (dry run)" if _dry() else torch.cuda.get_device_name(), "torch": torch.__version__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    res["target"] = _target(bk, quick)
    if not _dry():
        torch.cuda.empty_cache()
    if target_only:
        return res
    # 3: batch 8 sweep, complex128, forward and forward+backward
    ks = range(8, 11) if _dry() else range(10, 19 if quick else 21, 2 if quick else 1)
    res["sweep"] = [_sweep_row(1 << k) for k in ks]
    res["peak_mem_bytes"] = None if _dry() else torch.cuda.max_memory_allocated()
    return res


def _target(bk, quick: bool) -> dict[str, Any]:
    """Sections 1 and 2: the issue's CUDA target at the default and at each chunk length."""
    import torch

    import semisep as ss

    B, n = (2, 1 << 10) if _dry() else (16, 1 << 18) if quick else (64, 1 << 20)
    d, off = _problem(n, B, torch.float32)
    T = ss.Tridiagonal(d, off)
    with torch.no_grad():
        G = T.resolvent_diagonal(Z)
        out = torch.empty_like(G)
        t_copy = _cuda_median(lambda: out.copy_(G), repeats=20)
        rows = []
        from semisep.backends import triton as tr
        from semisep.tridiagonal_core import shifted_rows

        rows_ = shifted_rows(T, Z, True)
        variants: list[tuple[str, Any]] = [("auto (default)", lambda: T.resolvent_diagonal(Z))]
        if tr.available(d) or (_dry() and _interpreting()):
            args = (rows_.diag, rows_.shift, rows_.beta_native, rows_.pivmin)
            for L, tiled, scan, sblk, kw in (
                    (2, True, "blocked", None, {}), (4, True, "blocked", None, {}),
                    (4, True, "serial", None, {}),
                    (8, True, "blocked", None, {}), (16, True, "blocked", None, {}),
                    (8, False, "blocked", None, {}), (32, False, "blocked", None, {}),
                    (4, True, "blocked", 64, {}), (4, True, "blocked", 512, {}),
                    # the cost of the boundary repair and of working in double (complex64)
                    (4, True, "blocked", None, {"repair": False}),
                    (4, True, "blocked", None, {"wide": False}),
                    (4, True, "blocked", None, {"wide": False, "repair": False})):
                variants.append((
                    f"fused L={L} {'tiled' if tiled else 'strided'} {scan} scan"
                    + (f" blocks of {sblk}" if sblk else "") + (f" {kw}" if kw else ""),
                    lambda L=L, tiled=tiled, scan=scan, sblk=sblk, kw=kw: tr.resolvent_diagonal_fused(
                        *args, L=L, tiled=tiled, scan=scan, scan_block=sblk, **kw)[0]))
        variants += [("chunked", lambda: T.resolvent_diagonal(Z, method="chunked"))]
        G_chunked = T.resolvent_diagonal(Z, method="chunked")
        for label, f in variants:
            Gv = f()
            if isinstance(Gv, tuple):
                Gv = Gv[0]
            rel = ((Gv - G_chunked).abs() / G_chunked.abs()).max().item()
            t = _cuda_median(f, repeats=5 if quick else 10)
            k, gpu, top = _kernel_profile(f)
            rows.append({"variant": label, "fwd_s": t, "ratio_to_copy": t / t_copy,
                         "max_rel_diff_vs_chunked": rel,
                         "kernels": k, "kernel_time_s": gpu, "top_kernels": top})
            print(f"  {label}: fwd {t * 1e3:.3f} ms = {t / t_copy:.1f}x copy (max rel diff vs "
                  f"chunked {rel:.1e}); {k} kernels, "
                  f"{gpu * 1e3:.3f} ms on the GPU; " + ", ".join(f"{n} {v * 1e3:.3f} ms" for n, v in top),
                  flush=True)
    rows.append(_target_fwd_bwd(d, off, t_copy, quick))
    gbps = 2 * G.numel() * G.element_size() / t_copy / 1e9
    print(f"  copy of the output: {t_copy * 1e3:.3f} ms ({gbps:.0f} GB/s read+write)", flush=True)
    return {"batch": B, "n": n, "dtype": "complex64", "copy_s": t_copy, "rows": rows,
            "copy_GBps": gbps}


def _interpreting() -> bool:
    """Triton importable and its interpreter on (``TRITON_INTERPRET=1``): the fused kernels run
    on CPU tensors."""
    import os

    from semisep.backends.triton import HAVE_TRITON

    return HAVE_TRITON and os.environ.get("TRITON_INTERPRET") == "1"


def _target_fwd_bwd(d, off, t_copy: float, quick: bool) -> dict[str, Any]:
    """The target's forward+backward: ``diag`` (float32) needing a gradient, loss
    ``sum |G|^2`` (autograd runs the chunked path), against the same copy."""
    import torch

    import semisep as ss

    dg = d.detach().clone().requires_grad_()

    def fb():
        G = ss.Tridiagonal(dg, off).resolvent_diagonal(Z)
        torch.view_as_real(G).square().sum().backward()
        dg.grad = None

    t = _cuda_median(fb, repeats=3 if quick else 5)
    k, gpu, top = _kernel_profile(fb)
    print(f"  fwd+bwd (auto, diag needs a gradient): {t * 1e3:.3f} ms = {t / t_copy:.1f}x copy; "
          f"{k} kernels, {gpu * 1e3:.3f} ms on the GPU", flush=True)
    return {"variant": "auto fwd+bwd", "fwdbwd_s": t, "ratio_to_copy": t / t_copy,
            "kernels": k, "kernel_time_s": gpu, "top_kernels": top}


def _sweep_row(n: int) -> dict[str, Any]:
    """Section 3 at one N: batch 8, complex128, chunked fwd and fwd+bwd, NumPy CPU fwd."""
    import torch

    import semisep as ss

    d, off = _problem(n, 8, torch.float64, requires_grad=True)
    T = ss.Tridiagonal(d, off)
    with torch.no_grad():
        tf = _cuda_median(lambda: T.resolvent_diagonal(Z), repeats=5)
        tc = _cuda_median(lambda: T.resolvent_diagonal(Z, method="chunked"), repeats=5)

    def fb():
        G = ss.Tridiagonal(d, off).resolvent_diagonal(Z)
        torch.view_as_real(G).square().sum().backward()
        d.grad = None

    tfb = _cuda_median(fb, repeats=5)
    Tn = ss.Tridiagonal(d.detach().cpu().numpy(), np.ones(n - 1))
    tn = statistics.median(_wall(lambda: Tn.resolvent_diagonal(Z)) for _ in range(3))
    print(f"  batch 8, N=2^{int(np.log2(n))}: fwd (auto) {tf * 1e3:.3f} ms, chunked fwd "
          f"{tc * 1e3:.3f} ms, fwd+bwd {tfb * 1e3:.3f} ms, numpy CPU {tn * 1e3:.3f} ms", flush=True)
    return {"n": n, "fwd_s": tf, "chunked_fwd_s": tc, "fwdbwd_s": tfb, "numpy_cpu_fwd_s": tn}


def counts(ns: tuple[int, ...] = (1 << 14, 1 << 20), batch: int = 4) -> dict[str, Any]:
    """Kernel launches and host syncs of one public call, forward and backward, per N.

    Launches: the non-view aten ops dispatched (a ``TorchDispatchMode``, as in
    tests/test_launches_syncs.py) and, on CUDA, the kernels the profiler recorded.  Syncs: on
    CUDA the warnings of ``torch.cuda.set_sync_debug_mode("warn")`` (every synchronising copy,
    ``item``, ``nonzero`` and LAPACK ``info`` read), None on CPU.  Each call runs once first
    (caches, compilation)."""
    import warnings

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += 0 if func.is_view else 1
            return func(*args, **(kwargs or {}))

    def measure(fn) -> dict[str, Any]:
        fn()  # warm-up
        m = Ops()
        with m:
            fn()
        out: dict[str, Any] = {"aten_ops": m.n, "kernels": None, "syncs": None}
        if not _dry():
            torch.cuda.synchronize()
            out["kernels"] = _kernel_profile(fn)[0]
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as rec:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    fn()
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            out["syncs"] = sum("synchroniz" in str(w.message) for w in rec)
        return out

    res: dict[str, Any] = {"batch": batch, "ns": list(ns), "calls": {}}
    for n in ns:
        for name, fn in _count_calls(n, batch).items():
            c = measure(fn)
            res["calls"].setdefault(name, {})[str(n)] = c
            print(f"  counts N={n} {name}: {c}", flush=True)
    lo_n, hi_n = str(ns[0]), str(ns[-1])
    res["launch_ratio"] = {k: v[hi_n]["aten_ops"] / v[lo_n]["aten_ops"] for k, v in res["calls"].items()}
    if not _dry():  # the kernels the profiler saw (the fused path's Triton launches among them)
        res["kernel_ratio"] = {k: v[hi_n]["kernels"] / max(v[lo_n]["kernels"], 1)
                               for k, v in res["calls"].items()}
    res["max_syncs"] = None if _dry() else max(c["syncs"] for v in res["calls"].values() for c in v.values())
    return res


def _count_calls(n: int, batch: int) -> dict[str, Any]:
    """The public calls :func:`counts` measures, on a ``batch x n`` problem (float64, z complex):
    the chunked Tridiagonal calls (and "auto", the fused kernels on CUDA), forward and
    forward+backward, and the low-rank (r = 2) ones."""
    import torch

    import semisep as ss

    dev = _DEVICE["name"]
    z = 0.3 + 0.01j
    rng = np.random.default_rng(0)
    d = torch.tensor(-2.0 + rng.uniform(-1, 1, (batch, n)), device=dev)
    lo = torch.tensor(rng.uniform(0.5, 1, (batch, n - 1)), device=dev)
    b = torch.tensor(rng.standard_normal((batch, n)), device=dev)
    U, V = (torch.tensor(rng.standard_normal((n, 2)) * 0.1, device=dev) for _ in range(2))

    def fwd_bwd(f):
        def run():
            dg = d.clone().requires_grad_()
            out = f(ss.Tridiagonal(dg, lo))
            (out.real if out.is_complex() else out).sum().backward()
        return run

    def low_rank():
        return ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo), U, V)

    return {
        "resolvent chunked": lambda: ss.Tridiagonal(d, lo).resolvent_diagonal(z, method="chunked"),
        "resolvent auto": lambda: ss.Tridiagonal(d, lo).resolvent_diagonal(z),
        "logdet chunked": lambda: ss.Tridiagonal(d, lo).logdet(z, method="chunked"),
        "solve chunked": lambda: ss.Tridiagonal(d, lo).solve(b, z, method="chunked"),
        "resolvent chunked fwd+bwd": fwd_bwd(lambda T: T.resolvent_diagonal(z, method="chunked")),
        "logdet chunked fwd+bwd": fwd_bwd(lambda T: T.logdet(z, method="chunked")),
        "solve chunked fwd+bwd": fwd_bwd(lambda T: T.solve(b, z, method="chunked")),
        "low-rank resolvent chunked": lambda: low_rank().resolvent_diagonal(z, method="chunked"),
        "low-rank logdet chunked": lambda: low_rank().logdet(z, method="chunked"),
        "low-rank solve chunked": lambda: low_rank().solve(b, z, method="chunked"),
    }


def _wall(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--target-only", action="store_true", help="sections 1 and 2 only")
    p.add_argument("--counts", action="store_true", help="launch and sync counts only")
    p.add_argument("--dry-run", action="store_true",
                   help="on CPU at tiny shapes: a check that the script runs (figures meaningless)")
    args = p.parse_args(argv)
    if args.dry_run:
        _DEVICE["name"] = "cpu"
    elif not torch.cuda.is_available():
        print("bench_cuda: no CUDA device (torch.cuda.is_available() is False); nothing measured")
        return 2
    if args.counts:
        res = counts((1 << 10, 1 << 12) if args.dry_run else (1 << 14, 1 << 20))
        print(f"launches N={res['ns'][-1]} / N={res['ns'][0]}: "
              + ", ".join(f"{k} {v:.2f}" for k, v in res["launch_ratio"].items())
              + f"; most syncs in one call: {res['max_syncs']}")
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))
        return 0
    res = run(args.quick, args.target_only)
    tg = res["target"]
    best = min((r for r in tg["rows"] if "fwd_s" in r), key=lambda r: r["fwd_s"])
    default = tg["rows"][0]  # "auto", the default chunk length
    print(f"\n{res['device']}, torch {res['torch']}, {res['started']}")
    print(f"target: batch {tg['batch']}, N = {tg['n']}, complex64 forward <= 10x copy: default L "
          f"{default['ratio_to_copy']:.1f}x ({'PASS' if default['ratio_to_copy'] <= 10 else 'MISS'}); "
          f"best: {best['variant']}: {best['ratio_to_copy']:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
