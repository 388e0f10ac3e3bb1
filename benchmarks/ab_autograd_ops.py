"""A/B two source trees of semisep on the torch autograd paths: bitwise values and gradients,
and the forward+backward time of the kernel ops and of the operator-level custom op.

    python benchmarks/ab_autograd_ops.py --dump OUT.pt          # in one tree (PYTHONPATH=TREE)
    python benchmarks/ab_autograd_ops.py --compare A.pt B.pt     # every entry torch.equal?
    python benchmarks/ab_autograd_ops.py --time BASE AFTER [--rounds 7] [--n 131072] [--cpu-time]

``--dump`` runs a fixed set of calls (T's dtype float32/float64/complex64/complex128, real
and complex z, methods "sequential" and "chunked", requires_grad on some inputs only:
``Tridiagonal.resolvent_diagonal`` (with and without ``indices``), ``logdet``, ``solve``
in eager mode, under ``torch.func.grad``, ``torch.vmap`` over potentials, and
``torch.compile(backend="aot_eager")``) and saves each value and gradient.  ``--compare``
reports the entries that differ (bitwise, NaN equal to NaN).  ``--time`` alternates fresh
processes between the two trees (``--probe`` mode, that tree first on ``sys.path``) and
prints per call the median over the rounds of ``after / base``: batch 8, N = ``--n``,
forward+backward of the resolvent diagonal (``sum |G|``), eager (the kernel ops) and through
the operator-level custom op (``torch.compile(fullgraph=True, backend="aot_eager")``), and
a small-N eager call (per-call overhead).
"""

# ruff: noqa: B023  (every closure below runs inside its own loop iteration)
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

DTYPES = ("float32", "float64", "complex64", "complex128")


def _cases():
    import torch

    import semisep as ss

    g = torch.Generator().manual_seed(0)
    B, N = 3, 300
    for dname in DTYPES:
        dt = getattr(torch, dname)
        rdt = torch.float32 if dname in ("float32", "complex64") else torch.float64
        d = (torch.rand(B, N, generator=g, dtype=rdt) - 2.5).to(dt)
        lo = (0.5 + torch.rand(N - 1, generator=g, dtype=rdt)).to(dt)
        up = (0.5 + torch.rand(N - 1, generator=g, dtype=rdt)).to(dt)
        b = torch.randn(B, N, 2, generator=g, dtype=rdt).to(dt)
        for zname, z0 in (("zc", 0.3 + 0.2j), ("zr", 0.3)):
            zt = torch.tensor(z0, dtype=torch.complex128 if isinstance(z0, complex) else torch.float64)
            if dt in (torch.float32, torch.complex64):
                zt = zt.to(torch.complex64 if zt.is_complex() else torch.float32)
            for method in ("sequential", "chunked"):
                for grads in ("d", "lo_z", "all"):
                    yield (f"{dname}/{zname}/{method}/{grads}", ss, d, lo, up, b, zt, method, grads)


def _text(exc: Exception):
    """An exception's text as a tensor of bytes, object addresses removed."""
    import re

    import torch

    return torch.tensor(list(re.sub(r" at 0x[0-9a-f]+", "", repr(exc)).encode()))


def dump(path: str) -> None:
    import torch

    torch.manual_seed(0)
    out: dict[str, torch.Tensor] = {}
    for key, ss, d, lo, up, b, zt, method, grads in _cases():
        want = {"d": (0,), "lo_z": (1, 3), "all": (0, 1, 2, 3, 4)}[grads]
        calls = {
            "resolvent": lambda T, z, b: T.resolvent_diagonal(z, method=method),
            "indices": lambda T, z, b: T.resolvent_diagonal(z, method=method, indices=[5, 0, 2]),
            "logdet": lambda T, z, b: T.logdet(z, method=method),
            "solve": lambda T, z, b: T.solve(b, z, method=method),
        }
        for cname, call in calls.items():
            ins = [x.detach().clone().requires_grad_(i in want) for i, x in enumerate((d, lo, up, zt, b))]
            try:
                y = call(ss.Tridiagonal(ins[0], ins[1], ins[2]), ins[3], ins[4])
            except Exception as exc:  # noqa: BLE001 - recorded, compared as text
                out[f"{key}/{cname}/error"] = _text(exc)
                continue
            cot = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(1))
            leaves = [x for x in ins if x.requires_grad]
            gs = torch.autograd.grad(y, leaves, cot, allow_unused=True)
            out[f"{key}/{cname}/value"] = y.detach()
            for i, gr in zip([i for i, x in enumerate(ins) if x.requires_grad], gs, strict=True):
                out[f"{key}/{cname}/grad{i}"] = torch.zeros(0) if gr is None else gr
            if grads == "all" and method == "chunked":  # torch.func and compile: the op-level op
                def loss(d_, lo_, up_, z_, b_, call=call):
                    y = call(ss.Tridiagonal(d_, lo_, up_), z_, b_)
                    return (torch.view_as_real(y) if y.is_complex() else y).sin().sum()

                plain = [x.detach() for x in ins]
                try:
                    fg = torch.func.grad(loss, argnums=(0, 1, 2, 3, 4))(*plain)
                    for i, gr in enumerate(fg):
                        out[f"{key}/{cname}/func_grad{i}"] = gr
                    vm = torch.vmap(lambda dd, call=call: call(ss.Tridiagonal(dd, plain[1], plain[2]),
                                                            plain[3], plain[4][0]))(plain[0])
                    out[f"{key}/{cname}/vmap"] = vm
                    torch._dynamo.reset()
                    cl = torch.compile(loss, fullgraph=True, backend="aot_eager")
                    cins = [x.clone().requires_grad_() for x in plain]
                    val = cl(*cins)
                    val.backward()
                    out[f"{key}/{cname}/compiled"] = val.detach()
                    for i, x in enumerate(cins):
                        out[f"{key}/{cname}/compiled_grad{i}"] = x.grad
                except Exception as exc:  # noqa: BLE001
                    out[f"{key}/{cname}/transform_error"] = _text(exc)
    torch.save(out, path)
    print(f"{len(out)} entries -> {path}")


def compare(a: str, b: str) -> int:
    import torch

    A, B = torch.load(a), torch.load(b)
    bad = sorted(set(A) ^ set(B))
    for k in sorted(set(A) & set(B)):
        x, y = A[k], B[k]
        if x is None or y is None:  # a gradient that did not reach an input
            if x is not y:
                bad.append(k)
            continue
        same = x.dtype == y.dtype and x.shape == y.shape
        if same:
            xr, yr = (torch.view_as_real(t.resolve_conj()) if t.is_complex() else t for t in (x, y))
            same = bool(((xr == yr) | (xr.isnan() & yr.isnan())).all())
        if not same:
            bad.append(k)
    print(f"{len(set(A) & set(B))} common entries, {len(bad)} differ or are missing")
    for k in bad[:40]:
        print("  ", k)
    return 1 if bad else 0


#: the clock of ``--probe``: wall time, or with ``--cpu-time`` the process's CPU time (all its
#: threads; steadier than wall time on a machine that other jobs load)
_CLOCK = [time.perf_counter]


def _best(fn, reps: int) -> float:
    fn()
    fn()
    ts = []
    for _ in range(reps):
        t0 = _CLOCK[0]()
        fn()
        ts.append(_CLOCK[0]() - t0)
    return sorted(ts)[len(ts) // 2]


def probe(n: int) -> dict[str, float]:
    import torch

    import semisep as ss

    torch.manual_seed(0)
    d0 = torch.randn(8, n, dtype=torch.float64)
    off = torch.rand(n - 1, dtype=torch.float64) + 0.5
    z0 = torch.tensor(0.1 + 0.5j)

    def loss(d, z):
        return ss.Tridiagonal(d, off[: d.shape[-1] - 1]).resolvent_diagonal(z).abs().sum()

    def loss_all(d, z):
        T = ss.Tridiagonal(d, off)
        return (T.resolvent_diagonal(z).abs().sum() + T.logdet(z).real.sum()
                + T.solve(torch.ones_like(d), z).real.sum())

    def step(fn, d0=d0):
        d = d0.clone().requires_grad_()
        z = z0.clone().requires_grad_()
        fn(d, z).backward()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    compiled_all = torch.compile(loss_all, fullgraph=True, backend="aot_eager")
    small = torch.randn(8, 64, dtype=torch.float64)
    out = {
        f"eager resolvent fwd+bwd, batch 8, N = {n}": _best(lambda: step(loss), 7),
        f"custom op resolvent fwd+bwd (compiled), batch 8, N = {n}": _best(lambda: step(compiled), 7),
        f"custom op resolvent+logdet+solve fwd+bwd (compiled), batch 8, N = {n}":
            _best(lambda: step(compiled_all), 5),
        "eager resolvent fwd+bwd, batch 8, N = 64": _best(lambda: step(loss, small), 201),
        "torch.func.grad resolvent, batch 8, N = 64": _best(
            lambda: torch.func.grad(loss, argnums=(0, 1))(small, z0), 201),
    }
    return out


def time_trees(base: str, after: str, rounds: int, n: int, cpu: bool = False) -> None:
    import statistics

    ratios: dict[str, list[float]] = {}
    for r in range(rounds):
        res = {}
        for tree in ((base, after) if r % 2 == 0 else (after, base)):
            env = dict(os.environ, PYTHONPATH=tree)
            cp = subprocess.run([sys.executable, __file__, "--probe", "--n", str(n)]
                                + (["--cpu-time"] if cpu else []), env=env,
                                capture_output=True, text=True, check=True, cwd=tree)
            res[tree] = json.loads(cp.stdout.strip().splitlines()[-1])
        for k in res[base]:
            ratios.setdefault(k, []).append(res[after][k] / res[base][k])
        print(f"round {r}: " + ", ".join(f"{res[after][k] / res[base][k]:.3f}" for k in res[base]),
              flush=True)
    print(f"\nafter / base, median over {rounds} alternating rounds (range):")
    for k, v in ratios.items():
        print(f"  {k}: {statistics.median(v):.3f} ({min(v):.3f} .. {max(v):.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dump")
    ap.add_argument("--compare", nargs=2)
    ap.add_argument("--time", nargs=2, metavar=("BASE", "AFTER"))
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=2 ** 17)
    ap.add_argument("--cpu-time", action="store_true", help="time CPU seconds, not wall seconds")
    args = ap.parse_args()
    if args.dump:
        dump(args.dump)
    elif args.compare:
        sys.exit(compare(*args.compare))
    elif args.time:
        time_trees(*args.time, args.rounds, args.n, args.cpu_time)
    elif args.probe:
        import torch

        torch.set_num_threads(2)
        if args.cpu_time:
            _CLOCK[0] = time.process_time
        print(json.dumps(probe(args.n)))


if __name__ == "__main__":
    main()
