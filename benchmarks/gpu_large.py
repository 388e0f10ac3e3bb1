"""The fused Triton kernels at the shapes where 32-bit offsets or CUDA's grid limits used to
fail (needs a GPU; a step of benchmarks/gpu_check.py).

    PYTHONPATH=. python benchmarks/gpu_large.py [--json FILE]

Cases (each skipped where the device's free memory is short):

1. complex128, B = 1, N = 4e7: ``nb = N / (4 * 128)`` > 65535 blocks per row (a ``(B, nb, 2)``
   grid failed to launch);
2. complex64, B = 1024, N = 2^20 (``B N = 2^30``: ``8 * B * nc`` past int32), shared
   off-diagonal (a stride-0 batch);
3. complex64, B = 2048, N = 2^20 (``B N = 2^31``), where about 70 GiB are free.

Each compares some rows with the chunked torch path on those rows alone (max relative
difference), and records the wall time of the fused call, or the error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

Z = 0.5 + 1e-3j


def _case(B: int, N: int, single: bool, need_gib: float, rows: list[int]) -> dict[str, Any]:
    import torch

    from semisep.backends import get_backend
    from semisep.backends import triton as tr

    res: dict[str, Any] = {"B": B, "N": N, "dtype": "complex64" if single else "complex128"}
    free = torch.cuda.mem_get_info()[0] / 2**30
    if free < need_gib:
        res["skipped"] = f"{free:.0f} GiB free, needs about {need_gib:.0f}"
        return res
    real = torch.float32 if single else torch.float64
    cdt = torch.complex64 if single else torch.complex128
    gen = torch.Generator(device="cuda").manual_seed(0)
    diag = torch.rand(B, N, generator=gen, device="cuda", dtype=real).mul_(2).sub_(3)  # -2 +- 1
    beta = torch.ones(1, N - 1, device="cuda", dtype=real).expand(B, N - 1)  # shared, stride 0
    shift = torch.full((B,), Z, dtype=cdt, device="cuda")
    pm = torch.full((B,), float(np.finfo(np.float32 if single else np.float64).tiny), device="cuda",
                    dtype=real)
    try:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        G, guarded, singular, declined = tr.resolvent_diagonal_fused(diag, shift, beta, pm)
        torch.cuda.synchronize()
        res["fused_s"] = round(time.perf_counter() - t0, 3)
        res["declined_rows"] = 0 if declined is None else int(declined.sum())
        bk = get_backend("torch")
        worst = 0.0
        for r in rows:
            Gc = bk.resolvent_diagonal_shifted(diag[r:r + 1], shift[r:r + 1], beta[r:r + 1],
                                               pm[r:r + 1], "chunked")[0]
            worst = max(worst, float(((G[r] - Gc[0]).abs() / Gc[0].abs()).max()))
        res["max_rel_diff_vs_chunked"] = worst
        res["rows_compared"] = rows
        res["ok"] = res["declined_rows"] == 0 and worst < (1e-3 if single else 1e-9)
    except Exception as exc:  # noqa: BLE001 - recorded, not raised: the JSON says why
        res["error"] = f"{type(exc).__name__}: {exc}"
        res["ok"] = False
    finally:
        torch.cuda.empty_cache()
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_large: no CUDA device")
        return 2
    cases = [_case(1, 40_000_000, False, 8, [0]),
             _case(1024, 1 << 20, True, 40, [0, 511, 1023]),
             _case(2048, 1 << 20, True, 72, [0, 2047])]
    for c in cases:
        print(json.dumps(c), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(cases, indent=1))
    return 0 if all(c.get("ok", True) for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
