"""Command line: ``python -m semisep selfcheck | verify FILE.npy | bench | test``."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``semisep <command>: error: ...`` and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_in(lo: int, hi: int | None = None):
    """argparse type: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(
                f"{v} is out of range: needs {lo} <= value" + (f" <= {hi}" if hi is not None else ""))
        return v

    return parse


def _positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (v > 0 and np.isfinite(v)):
        raise argparse.ArgumentTypeError(f"{v} must be a finite number > 0")
    return v


def _fail(command: str, message: str) -> int:
    """Print one line ``semisep <command>: <message>`` to stderr; exit code 2 (invalid input)."""
    print(f"semisep {command}: {message}", file=sys.stderr)
    return 2


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
    except (DeviceUnavailableError, ValueError, ImportError) as exc:
        return _fail("test", str(exc))


#: .npy dtypes verify accepts (what semisep computes in; integers and bools become float64)
_VERIFY_KINDS = "float32, float64, complex64, complex128, integer or bool"


def _read_npy_header(path: str) -> tuple[tuple[int, ...], np.dtype, int] | str:
    """``(shape, dtype, data_bytes_in_file)`` from a .npy header without reading the data, or
    a one-line reason why ``path`` is not a usable .npy matrix file."""
    import os

    from numpy.lib import format as npf

    if os.path.isdir(path):
        return f"cannot read {path!r}: it is a folder, not a .npy file"
    try:
        fh = open(path, "rb")
    except OSError as exc:
        return f"cannot read {path!r}: {exc.strerror or exc}"
    with fh:
        head = fh.read(6)
        if len(head) == 0:
            return f"cannot read {path!r}: the file is empty (a .npy file from np.save is needed)"
        if head[:2] == b"PK":
            return (f"cannot read {path!r}: it is a .npz archive (np.savez); verify takes one "
                    "matrix in a .npy file (np.save)")
        if head != b"\x93NUMPY":
            return (f"cannot read {path!r} as a .npy array: it does not start with the .npy magic "
                    "bytes (a text or other file? save the matrix with np.save)")
        fh.seek(0)
        try:
            version = npf.read_magic(fh)
            reader = npf.read_array_header_1_0 if version == (1, 0) else npf.read_array_header_2_0
            shape, fortran, dtype = reader(fh, max_header_size=100_000)
        except Exception as exc:  # a damaged header: numpy's ValueError, an unknown version...
            return f"cannot read {path!r} as a .npy array: damaged header ({exc})"
        data_bytes = os.fstat(fh.fileno()).st_size - fh.tell()
    return tuple(int(d) for d in shape), np.dtype(dtype), data_bytes


def _load_matrix(path: str) -> np.ndarray | str:
    """The square matrix in the .npy file ``path``, or a one-line reason why not.  The header is
    checked (dtype, shape, size against the file and against memory) before anything is
    allocated."""
    import os

    info = _read_npy_header(path)
    if isinstance(info, str):
        return info
    shape, dtype, data_bytes = info
    if dtype.hasobject:
        return (f"{path!r} holds pickled Python objects (dtype {dtype}), which are not loaded; "
                f"a numeric matrix is needed ({_VERIFY_KINDS})")
    ok_kind = dtype.kind in "biu" or (dtype.kind in "fc" and dtype.itemsize in (4, 8, 16)
                                        and dtype.itemsize // (2 if dtype.kind == "c" else 1) in (4, 8))
    if not ok_kind:
        return f"{path!r} has dtype {dtype}, which semisep does not compute in; use {_VERIFY_KINDS}"
    if len(shape) != 2 or shape[0] != shape[1]:
        return f"{path!r} holds an array of shape {shape}; a square matrix (N, N) is needed"
    if shape[0] == 0:
        return f"{path!r} holds an empty (0, 0) matrix; N >= 1 is needed"
    need = shape[0] * shape[1] * dtype.itemsize
    if data_bytes < need:
        return (f"{path!r} is truncated: its header declares {shape} {dtype} ({need:.4g} bytes) "
                f"but the file holds {data_bytes:.4g} bytes of data")
    try:
        avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        avail = None
    work = 8 * shape[0] * shape[1] * 16  # the matrix in complex128 and a few dense work copies
    if avail is not None and work > avail:
        return (f"{path!r} holds a {shape[0]} x {shape[1]} matrix; verifying it densely needs about "
                f"{work / 2**30:.3g} GiB, more than this machine's {avail / 2**30:.3g} GiB")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, MemoryError) as exc:
        return f"cannot read {path!r} as a .npy array: {exc}"


def _verify(args: argparse.Namespace) -> int:
    """Factorize a dense matrix from a .npy file and report how well T + U V^T fits it."""
    import json

    import semisep as ss

    H = _load_matrix(args.file)
    if isinstance(H, str):
        return _fail("verify", H)
    n = int(H.shape[0])
    if not np.isfinite(H).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(H))[0])
        return _fail("verify", f"{args.file!r} holds NaN or inf (first at index {bad})")
    if args.rank is not None and args.rank > n:
        return _fail("verify", f"--rank {args.rank} is larger than N = {n}; use 0 <= rank <= {n}")
    from ._progress import verify_progress  # a bar and an estimate for large N (stderr)

    t0 = time.perf_counter()
    with verify_progress(H, args.rank):
        try:
            op = ss.factorize(H, rank=args.rank, max_iter=args.max_iter, tol=args.tol)
        except (ValueError, TypeError) as exc:
            return _fail("verify", str(exc))
        report = ss.check_factorization(H, op, rtol=args.rtol)
    elapsed = time.perf_counter() - t0
    if args.json:
        out = report.as_dict()
        out.update(file=args.file, n=n, seconds=elapsed)
        print(json.dumps(out, indent=2, default=float))
    else:
        print(f"semisep verify {args.file}: N = {n}, dtype {H.dtype}")
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
    parser = _Parser(prog="semisep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("selfcheck", help="accuracy check on built-in data, with timings")
    p.add_argument("--log2n", type=_int_in(1, 30), default=16,
                   help="log2 of the chain length, 1..30 (default 16)")
    p.add_argument("--batch", type=_int_in(1), default=8, help="batch size, >= 1 (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_selfcheck)
    p = sub.add_parser(
        "verify", help="factorize a dense matrix from a .npy file into T + U V^T and report",
        description="Load a square matrix from FILE.npy, factorize it as tridiagonal plus rank "
        "r (semisep.factorize) and print the FactorizationReport. Exit code 0 if the relative "
        "Frobenius error is within --rtol, 1 if not, 2 for unreadable or invalid input.",
    )
    p.add_argument("file", help="a .npy file holding a square (N, N) matrix")
    p.add_argument("--rank", type=_int_in(0), default=None,
                   help="rank r, 0 <= r <= N (default ceil(log2 N))")
    p.add_argument("--rtol", type=_positive_float, default=1e-2,
                   help="relative tolerance (default 1e-2)")
    p.add_argument("--max-iter", type=_int_in(1), default=200,
                   help="alternating-projection iterations at most (default 200)")
    p.add_argument("--tol", type=_positive_float, default=1e-4,
                   help="stop when the residual's relative decrease is below this (default 1e-4)")
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
    p.add_argument("--dtype", default=None,
                   help="draw property examples only in this dtype (float32, float64, complex64, "
                   "complex128; comma-separated); a selection that runs no example fails")
    p.add_argument("--seed", type=int, default=None, help="hypothesis seed")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments")
    p.set_defaults(func=_test)
    args = parser.parse_args(argv)
    if getattr(args, "pytest_args", None) and args.pytest_args[:1] == ["--"]:
        args.pytest_args = args.pytest_args[1:]
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
