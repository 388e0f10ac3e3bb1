"""One device check: everything a lent GPU should answer, in one call, into one JSON file.

Run on a machine with a CUDA device (from the repository root)::

    python benchmarks/gpu_check.py --out gpu_check.json [--budget 480]

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
5. ``benchmarks/bench_cuda.py --json`` (the batch-64, N = 2^20 complex64 target against a
   device-to-device copy; chunk-length variants with kernel counts, the fused kernels with and
   without the repair and in single or double precision; the batch-8 forward and
   forward+backward sweep), ``--quick`` when the budget is short.

The JSON holds each step's exit status, wall time, and output tail, so a failed step still
says why.  Without a GPU the script records that and exits 2.
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


def _run(cmd: list[str], timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
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
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                           "environment": _environment()}
    out = Path(args.out)
    if not res["environment"]["cuda_available"]:
        res["skipped"] = "no CUDA device"
        out.write_text(json.dumps(res, indent=1))
        print("gpu_check: no CUDA device; nothing checked")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        res["tests"] = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_cuda.py", "tests/test_triton_resolvent.py",
                             "tests/test_triton_launch.py",
                             f"--junitxml={junit}"], timeout=0.45 * args.budget)
        res["tests"]["summary"] = _junit_summary(junit)
        large_json = Path(tmp) / "large.json"
        res["large"] = _run([sys.executable, "benchmarks/gpu_large.py", "--json", str(large_json)],
                            timeout=0.15 * args.budget)
        if large_json.exists():
            res["large"]["result"] = json.loads(large_json.read_text())
        acc_json = Path(tmp) / "accuracy.json"
        res["accuracy"] = _run([sys.executable, "benchmarks/fused_accuracy.py", "--json",
                                str(acc_json)], timeout=0.1 * args.budget)
        if acc_json.exists():
            res["accuracy"]["result"] = json.loads(acc_json.read_text())
        left = args.budget - (time.perf_counter() - t0)
        bench_json = Path(tmp) / "bench.json"
        cmd = [sys.executable, "benchmarks/bench_cuda.py", "--json", str(bench_json)]
        if left < 300:
            cmd.append("--quick")
        res["bench"] = _run(cmd, timeout=max(left - 10, 30))
        if bench_json.exists():
            res["bench"]["result"] = json.loads(bench_json.read_text())
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    out.write_text(json.dumps(res, indent=1))
    s = res["tests"]["summary"]
    print(f"gpu_check: tests rc={res['tests']['rc']} {s}; large rc={res['large']['rc']}; "
          f"accuracy rc={res['accuracy']['rc']}; bench rc={res['bench']['rc']}; "
          f"{res['wall_s']} s; written to {out}")
    return 0 if all(res[k]["rc"] == 0 for k in ("tests", "large", "accuracy", "bench")) else 1


if __name__ == "__main__":
    sys.exit(main())
