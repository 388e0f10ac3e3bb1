"""Registers and spills of the fused Triton resolvent kernels compiled for a Hopper GPU, without
one (not a test; needs triton installed).

Each tiled kernel of ``semisep/backends/triton/resolvent.py`` is compiled for sm_90 (real
float32 diag and beta, 4 warps) by ``triton.compile`` with a ``GPUTarget``, and the PTX is
assembled by the ptxas that ships with triton (``ptxas -v``), which reports registers per
thread and spill bytes; ``cuobjdump -sass`` gives the static instruction count.  Compile times
are 0 where triton's cache already holds the kernel.

    PYTHONPATH=. python benchmarks/triton_registers.py

(``TRITON_REGISTERS_MODULE=name`` compiles the kernels of another module, e.g. an older copy.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _signature(kern, consts: dict) -> dict:
    sig = {}
    for a in kern.arg_names:
        if a in consts:
            sig[a] = "constexpr"
        elif a.endswith("_ptr"):
            sig[a] = "*i32" if a == "bad_ptr" else "*fp32"
        else:
            sig[a] = "fp32" if a == "fmax" else "i32"  # (fmax: older copies)
    return sig


def compile_report(kern, consts: dict) -> dict:
    """``{"registers", "spill_stores", "spill_loads", "sass", "compile_s"}`` for one kernel."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    t = time.perf_counter()
    src = ASTSource(fn=kern, signature=_signature(kern, consts),
                    constexprs={(kern.arg_names.index(k),): v for k, v in consts.items()})
    cc = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    seconds = time.perf_counter() - t
    bindir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    with tempfile.TemporaryDirectory() as tmp:
        ptx, cubin = os.path.join(tmp, "k.ptx"), os.path.join(tmp, "k.cubin")
        Path(ptx).write_text(cc.asm["ptx"])
        for ptxas in ("ptxas", "ptxas-blackwell"):  # the first that reads triton's PTX version
            run = subprocess.run([str(bindir / ptxas), "-v", "--gpu-name=sm_90a", ptx, "-o", cubin],
                                 capture_output=True, text=True)
            if run.returncode == 0:
                break
        run.check_returncode()
        log = run.stderr
        sass = subprocess.run([str(bindir / "cuobjdump"), "-sass", cubin],
                              capture_output=True, text=True, check=True).stdout
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    return {"registers": int(regs.group(1)) if regs else None,
            "spill_stores": int(spills.group(1)) if spills else None,
            "spill_loads": int(spills.group(2)) if spills else None,
            "sass": sum(1 for line in sass.splitlines() if line.strip().startswith("/*") and ";" in line),
            "compile_s": seconds}


def main() -> int:
    try:
        import triton  # noqa: F401
    except ImportError:
        print("triton_registers: triton is not installed; nothing compiled")
        return 2
    import importlib

    tr = importlib.import_module(os.environ.get("TRITON_REGISTERS_MODULE",
                                                "semisep.backends.triton.kernels"))
    tt = importlib.import_module("semisep.backends.triton.tiled")  # the register-tile kernels

    flags = dict(DIAG_COMPLEX=False, BETA_COMPLEX=False)
    print(f"{'kernel':36s} {'L':>3s} {'lanes':>5s} {'regs':>5s} {'spill st/ld':>12s} {'sass':>6s} "
          f"{'compile':>8s}")
    for L in (4, 8):
        rows = [(getattr(tr, "_transfer_tiled_kernel", tt._transfer_tiled_kernel),
                 dict(L=L, BLOCK=128, **flags), 128),
                (getattr(tr, "_second_pass_tiled_kernel", tt._second_pass_tiled_kernel),
                 dict(L=L, BLOCK=128, **flags), 128)]
        if L == 4:
            rows += [(tr._transfer_kernel, dict(L=L, BLOCK=128, **flags), 128),
                     (tr._second_pass_kernel, dict(L=L, BLOCK=128, **flags), 128),
                     (tr._block_total_kernel, dict(SB=256), 256),
                     (tr._block_carry_kernel, dict(SB=256), 256),
                     (tr._chunk_carry_kernel, dict(SB=256), 256),
                     (tr._scan_kernel, dict(BLOCK=256), 256)]
        for kern, consts, lanes in rows:
            for idx64 in ((False, True) if "IDX64" in kern.arg_names else (None,)):
                if idx64 is not None:
                    consts = dict(consts, IDX64=idx64)
                r = compile_report(kern, consts)
                name = kern.fn.__name__ + {None: "", False: "", True: " (int64)"}[idx64]
                print(f"{name:36s} {L:3d} {lanes:5d} {r['registers']:5d} "
                      f"{r['spill_stores']:5d}/{r['spill_loads']:<6d} {r['sass']:6d} "
                      f"{r['compile_s']:7.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
