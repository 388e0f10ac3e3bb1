"""One device check: everything a lent GPU should answer, in one call, into one JSON file.

Run on a machine with a CUDA device (from the repository root)::

    python benchmarks/gpu_check.py --out gpu_check.json [--budget 480]

and, without one, ``--dry-run`` (every step on CPU: tests/test_cuda.py in its CPU imitation, the
Triton tests and benchmarks under Triton's interpreter where triton is importable, the
benchmarks at tiny shapes; no budget): a check that the script and each step run end to end,
so that the first lent GPU does not fail on a typo.  Its figures mean nothing.

Steps, each in a subprocess with its own time limit so that one hang cannot eat the budget:

1. the environment: torch, CUDA, triton, the device name and memory;
2. ``pytest tests/test_cuda.py tests/test_triton_resolvent.py`` (pass/fail/skip counts and the
   failing test ids, from pytest's JUnit XML);
3. ``benchmarks/gpu_large.py --json``: the fused kernels at the shapes past 32-bit offsets
   and the old grid limits (B N = 2^30, 2^31; N = 4e7), against the chunked path on some rows;
4. ``benchmarks/fused_accuracy.py --json``: the fused kernels against the sequential sweep
   near chunk boundaries, complex128 (with and without the boundary repair) and complex64
   (worked in double or in single precision), and ``torch.compile(fullgraph=True)`` of their
   operator ``semisep::fused_resolvent_diagonal`` against its eager values;
5. ``benchmarks/bench_cuda.py --counts --json``: kernel launches and host syncs of one public
   call (chunked Tridiagonal and low-rank calls, forward and backward) at N = 2^14 and 2^20;
6. ``benchmarks/bench_cuda.py --json`` (the batch-64, N = 2^20 complex64 target against a
   device-to-device copy, forward and forward+backward; chunk-length variants with kernel
   counts, the fused kernels with and without the repair and in single or double precision
   ("wide"); the batch-8 forward and forward+backward sweep), ``--quick`` when the budget is
   short.

Budget shares (of ``--budget``, 480 s by default, under 8 minutes with the start-up): tests
45 %, large shapes 15 %, accuracy 10 %, counts 8 %, the benchmark what is left.  The JSON holds
each step's exit status, wall time, and output tail, so a failed step still says why.  Without
a GPU (and without ``--dry-run``) the script records that and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], timeout: float, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra_env or {})
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc = 124
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    return {"cmd": " ".join(cmd), "rc": rc, "wall_s": round(time.perf_counter() - t0, 1),
            "tail": out[-4000:]}


def _environment() -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        prop = torch.cuda.get_device_properties(0)
        env.update(device=prop.name, memory_gib=round(prop.total_memory / 2**30, 1),
                   cuda=torch.version.cuda, device_count=torch.cuda.device_count())
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    return env


def _junit_summary(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"parsed": False}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    summary = {"parsed": True, "tests": 0, "failures": 0, "errors": 0, "skipped": 0, "failed_ids": []}
    for s in suites:
        for key in ("tests", "failures", "errors", "skipped"):
            summary[key] += int(s.get(key, 0))
        for case in s.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                summary["failed_ids"].append(f"{case.get('classname')}::{case.get('name')}")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_check.json")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for all steps together")
    p.add_argument("--dry-run", action="store_true",
                   help="every step on CPU (no GPU needed, no time limit): the script's own check")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                           "environment": _environment(), "dry_run": args.dry_run}
    out = Path(args.out)
    if not res["environment"]["cuda_available"] and not args.dry_run:
        res["skipped"] = "no CUDA device"
        out.write_text(json.dumps(res, indent=1))
        print("gpu_check: no CUDA device; nothing checked")
        return 2
    dry = args.dry_run
    # the dry run: test_cuda.py in its CPU imitation, Triton's interpreter for the fused kernels
    env = {"SEMISEP_CUDA_TESTS_ON": "cpu", "TRITON_INTERPRET": "1"} if dry else {}
    limit = (lambda share: 3600.0) if dry else (lambda share: share * args.budget)
    flag = ["--dry-run"] if dry else []
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        res["tests"] = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_cuda.py", "tests/test_triton_resolvent.py",
                             "tests/test_triton_launch.py",
                             f"--junitxml={junit}"], timeout=limit(0.45), extra_env=env)
        res["tests"]["summary"] = _junit_summary(junit)
        large_json = Path(tmp) / "large.json"
        res["large"] = _run([sys.executable, "benchmarks/gpu_large.py", "--json", str(large_json)],
                            timeout=limit(0.15), extra_env=env)
        if large_json.exists():
            res["large"]["result"] = json.loads(large_json.read_text())
        acc_json = Path(tmp) / "accuracy.json"
        res["accuracy"] = _run([sys.executable, "benchmarks/fused_accuracy.py", "--json", str(acc_json)]
                               + (["--interpret"] if dry else []), timeout=limit(0.1), extra_env=env)
        if acc_json.exists():
            res["accuracy"]["result"] = json.loads(acc_json.read_text())
        counts_json = Path(tmp) / "counts.json"
        res["counts"] = _run([sys.executable, "benchmarks/bench_cuda.py", "--counts", "--json",
                              str(counts_json)] + flag, timeout=limit(0.08), extra_env=env)
        if counts_json.exists():
            res["counts"]["result"] = json.loads(counts_json.read_text())
        left = args.budget - (time.perf_counter() - t0)
        bench_json = Path(tmp) / "bench.json"
        cmd = [sys.executable, "benchmarks/bench_cuda.py", "--json", str(bench_json)] + flag
        if left < 300 and not dry:
            cmd.append("--quick")
        res["bench"] = _run(cmd, timeout=3600.0 if dry else max(left - 10, 30), extra_env=env)
        if bench_json.exists():
            res["bench"]["result"] = json.loads(bench_json.read_text())
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    out.write_text(json.dumps(res, indent=1))
    s = res["tests"]["summary"]
    # without CUDA gpu_large.py exits 2 (it has no CPU form): in a dry run that is its pass
    ok_large = (2,) if dry and not res["environment"]["cuda_available"] else (0,)
    print(f"gpu_check{' (dry run)' if dry else ''}: tests rc={res['tests']['rc']} {s}; "
          f"large rc={res['large']['rc']}; accuracy rc={res['accuracy']['rc']}; "
          f"counts rc={res['counts']['rc']}; bench rc={res['bench']['rc']}; "
          f"{res['wall_s']} s; written to {out}")
    steps_ok = all(res[k]["rc"] == 0 for k in ("tests", "accuracy", "counts", "bench"))
    return 0 if steps_ok and res["large"]["rc"] in ok_large else 1


if __name__ == "__main__":
    sys.exit(main())
