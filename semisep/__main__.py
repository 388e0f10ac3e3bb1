"""Command line: ``python -m semisep selfcheck | verify FILE.npy | bench | test``."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _median_time(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls (the caller warms up first)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _selfcheck(args: argparse.Namespace) -> int:
    import scipy.linalg as sla

    import semisep as ss
    from semisep import reference as ref

    rng = np.random.default_rng(args.seed)
    n, batch = 1 << args.log2n, args.batch
    z = 0.5 + 1e-3j
    diag = -2.0 + rng.uniform(-1.0, 1.0, (batch, n))
    off = np.ones(n - 1)
    T = ss.Tridiagonal(diag, off)
    G = T.resolvent_diagonal(z)  # compile / warm up
    t_fast = _median_time(lambda: T.resolvent_diagonal(z), repeats=5)
    ok = True
    print(f"semisep {ss.__version__} selfcheck: disordered chain, batch {batch}, N = {n}, z = {z}")
    print(f"  resolvent_diagonal (median of 5): {t_fast * 1e3:.1f} ms ({batch * n / t_fast:.3g} elements/s)")

    # (1) a sample of full-length rows against the independent sequential reference
    rows = rng.choice(batch, size=min(2, batch), replace=False)
    G_seq = ref.sequential_resolvent_diagonal(diag[rows], off, None, z)
    err_seq = float(np.max(np.abs(G[rows] - G_seq) / np.abs(G_seq)))
    ok_seq = err_seq < 1e-9
    ok &= ok_seq
    print(f"  vs sequential reference (rows {rows.tolist()}, N = {n}): max rel err {err_seq:.2e}"
          f"  [{'ok' if ok_seq else 'FAIL'} < 1e-9]")

    # (2) the leading block at a size dense can do, against scipy.linalg.inv, with timings
    m = min(n, 2048)
    Tm = ss.Tridiagonal(diag[0, :m], off[: m - 1])
    Gm = Tm.resolvent_diagonal(z)  # compile / warm up this (unbatched) path before timing it
    t_small = _median_time(lambda: Tm.resolvent_diagonal(z), repeats=5)
    A = ref.tridiagonal_to_dense(diag[0, :m], off[: m - 1], None, z)
    t0 = time.perf_counter()
    Ginv = np.diag(sla.inv(A))
    t_dense = time.perf_counter() - t0
    err_dense = float(np.max(np.abs(Gm - Ginv) / np.abs(Ginv)))
    ok_dense = err_dense < 1e-9
    ok &= ok_dense
    print(f"  vs dense scipy.linalg.inv (N = {m}): max rel err {err_dense:.2e}  "
          f"[{'ok' if ok_dense else 'FAIL'} < 1e-9]; time {t_small * 1e3:.2f} ms vs dense "
          f"{t_dense * 1e3:.1f} ms ({t_dense / t_small:.0f}x)")

    # (3) solve and log det against the reference at the dense size
    b = rng.standard_normal(m)
    x = Tm.solve(b, z)
    xr = ref.solve_banded_tridiagonal(diag[0, :m], off[: m - 1], None, b, z)
    err_x = float(np.linalg.norm(x - xr) / np.linalg.norm(xr))
    ld = Tm.logdet(z)
    ldr = ref.dense_logdet(diag[0, :m], off[: m - 1], None, z)
    err_ld = float(abs(ld - ldr) / abs(ldr))
    ok_x, ok_ld = err_x < 1e-9, err_ld < 1e-9
    ok &= ok_x and ok_ld
    print(f"  solve vs solve_banded: rel err {err_x:.2e} [{'ok' if ok_x else 'FAIL'}];"
          f" logdet vs lu_factor: rel err {err_ld:.2e} [{'ok' if ok_ld else 'FAIL'}]")
    print("selfcheck " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


def _test(args: argparse.Namespace) -> int:
    from ._runner import DeviceUnavailableError, test

    try:
        return test(device=args.device, profile=args.profile, dtype=args.dtype,
                    extra_args=args.pytest_args, seed=args.seed)
    except DeviceUnavailableError as exc:
        print(f"semisep test: {exc}", file=sys.stderr)
        return 2


def _verify(args: argparse.Namespace) -> int:
    """Factorize a dense matrix from a .npy file and report how well T + U V^T fits it."""
    import json

    import semisep as ss

    try:
        H = np.load(args.file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        print(f"semisep verify: cannot read {args.file!r} as a .npy array: {exc}", file=sys.stderr)
        return 2
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        print(f"semisep verify: {args.file!r} holds an array of shape {H.shape}; "
              "a square matrix (N, N) is needed", file=sys.stderr)
        return 2
    if not np.issubdtype(H.dtype, np.number) or np.issubdtype(H.dtype, np.bool_):
        print(f"semisep verify: {args.file!r} has dtype {H.dtype}; a numeric matrix is needed",
              file=sys.stderr)
        return 2
    if not np.isfinite(H).all():
        bad = np.argwhere(~np.isfinite(H))[0]
        print(f"semisep verify: {args.file!r} holds NaN or inf (first at index {tuple(bad)})",
              file=sys.stderr)
        return 2
    from ._progress import verify_progress  # a bar and an estimate for large N (stderr)

    t0 = time.perf_counter()
    with verify_progress(H, args.rank):
        op = ss.factorize(H, rank=args.rank)
        report = ss.check_factorization(H, op, rtol=args.rtol)
    elapsed = time.perf_counter() - t0
    if args.json:
        out = report.as_dict()
        out.update(file=args.file, n=int(H.shape[0]), seconds=elapsed)
        print(json.dumps(out, indent=2, default=float))
    else:
        print(f"semisep verify {args.file}: N = {H.shape[0]}, dtype {H.dtype}")
        for key, value in report.as_dict().items():
            print(f"  {key:>16}: {value}")
        print(f"  {'time':>16}: {elapsed:.3f} s")
        print("verify " + ("passed" if report.passes else
                           f"FAILED: relative error {report.relative_error:.3g} > rtol {args.rtol}"))
    return 0 if report.passes else 1


def _bench(args: argparse.Namespace) -> int:
    """Run the repository's benchmark suite (benchmarks/run_all.py)."""
    import subprocess
    from pathlib import Path

    candidates = [Path.cwd() / "benchmarks", Path(__file__).resolve().parent.parent / "benchmarks"]
    for folder in candidates:
        if (folder / "run_all.py").is_file():
            cmd = [sys.executable, str(folder / "run_all.py")] + (["--quick"] if args.quick else [])
            return subprocess.call(cmd, cwd=str(folder.parent))
    print("semisep bench: the benchmark suite lives in the repository's benchmarks/ folder, "
          "which is not installed with the package; run this from a checkout of semisep",
          file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="semisep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("selfcheck", help="accuracy check on built-in data, with timings")
    p.add_argument("--log2n", type=int, default=16, help="log2 of the chain length (default 16)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_selfcheck)
    p = sub.add_parser(
        "verify", help="factorize a dense matrix from a .npy file into T + U V^T and report",
        description="Load a square matrix from FILE.npy, factorize it as tridiagonal plus rank "
        "r (semisep.factorize) and print the FactorizationReport. Exit code 0 if the relative "
        "Frobenius error is within --rtol, 1 if not, 2 for unreadable or invalid input.",
    )
    p.add_argument("file", help="a .npy file holding a square (N, N) matrix")
    p.add_argument("--rank", type=int, default=None, help="rank r (default ceil(log2 N))")
    p.add_argument("--rtol", type=float, default=1e-2, help="relative tolerance (default 1e-2)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_verify)
    p = sub.add_parser(
        "bench", help="run the benchmark suite (from a repository checkout)",
        description="Run benchmarks/run_all.py: every comparison, medians as JSON, a Markdown "
        "table and log-log PNG plots in bench-results/.",
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    p.set_defaults(func=_bench)
    p = sub.add_parser(
        "test", help="run semisep's property and conformance suite on this machine",
        description="Run the shipped test suite with pytest; the exit code is pytest's "
        "(2 if the requested device is missing). Arguments after -- go to pytest.",
    )
    p.add_argument("--device", default=None, help="cpu (default), cuda or cuda:N")
    p.add_argument("--profile", default="quick", choices=["quick", "thorough", "deep"])
    p.add_argument("--dtype", default=None, help="only tests whose id mentions this dtype")
    p.add_argument("--seed", type=int, default=None, help="hypothesis seed")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments")
    p.set_defaults(func=_test)
    args = parser.parse_args(argv)
    if getattr(args, "pytest_args", None) and args.pytest_args[:1] == ["--"]:
        args.pytest_args = args.pytest_args[1:]
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
