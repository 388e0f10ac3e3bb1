"""The fused Triton resolvent kernels (semisep/backends/triton/) under Triton's CPU
interpreter (``TRITON_INTERPRET=1``), against the NumPy backend.

Skipped where triton is not installed (CI: the CPU build of torch does not bring it).  The same
kernels compiled for a GPU are tested by tests/test_cuda.py.  The interpreter must be chosen
before triton is imported, so each case runs in a fresh subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent('''
    import numpy as np, torch, semisep as ss
    from semisep.backends.triton import resolvent_diagonal_fused
    rng = np.random.default_rng(0)
    worst = 0.0
    for B, N, L, cd, cb, cdt in [(2, 37, 4, 0, 0, "complex128"), (3, 100, 8, 1, 1, "complex128"),
                                 (2, 64, 32, 0, 0, "complex64"), (1, 5, 2, 1, 0, "complex128"),
                                 (2, 33, 1, 0, 1, "complex128"), (2, 50, 64, 0, 0, "complex128"),
                                 (3, 77, 16, 1, 1, "complex64"), (2, 40, 8, 0, 1, "complex128"),
                                 (2, 301, 2, 1, 0, "complex128")]:
        cdt = getattr(torch, cdt)
        rdt = torch.float64 if cdt == torch.complex128 else torch.float32
        d = torch.tensor(-2 + rng.uniform(-1, 1, (B, N)), dtype=rdt)
        lo = torch.tensor(rng.uniform(0.5, 1.5, (B, N - 1)), dtype=rdt)
        up = torch.tensor(rng.uniform(0.5, 1.5, (B, N - 1)), dtype=rdt)
        if cd:
            d = d.to(cdt) + 0.3j
        if cb:
            lo = lo.to(cdt) * (1 + 0.2j)
        z = 0.5 + 0.01j
        ref = torch.as_tensor(ss.Tridiagonal(d.numpy(), lo.numpy(), up.numpy()).resolvent_diagonal(z))
        for tiled, scan in ([(False, "blocked"), (True, "blocked"), (True, "serial")]
                            if L & (L - 1) == 0 and L <= 16 else [(False, "blocked")]):
            G, guarded, singular, declined = resolvent_diagonal_fused(
                d, torch.full((B,), z, dtype=cdt), lo * up,
                torch.full((B,), 1e-30, dtype=rdt), L=L, block=16, tiled=tiled, scan=scan,
                scan_block=4)  # several blocks of chunks, and several passes over the blocks
            assert declined is None
            err = float((G.to(torch.complex128) - ref).abs().max() / ref.abs().max())
            tol = 200 * torch.finfo(rdt).eps
            assert err < tol, (B, N, L, cd, cb, cdt, tiled, err)
            assert int(guarded.sum()) == 0 and not bool(singular.any())
            worst = max(worst, err / tol)
    # a zero leading minor in row 1 of 3: that row is declined (never an unguarded answer),
    # the other rows are results
    d = torch.tensor(-2 + rng.uniform(-1, 1, (3, 20)), dtype=torch.complex128)
    d[1, 3] = 0.0
    lo = torch.zeros(3, 19, dtype=torch.complex128)
    lo[0] = lo[2] = 0.7
    ref = torch.zeros(3, 20, dtype=torch.complex128)
    T02 = ss.Tridiagonal(d[[0, 2]].numpy(), lo[[0, 2]].numpy())
    ref[[0, 2]] = torch.as_tensor(T02.resolvent_diagonal(0.0))
    for tiled, scan in ((False, "blocked"), (True, "blocked"), (True, "serial")):
        G, guarded, singular, declined = resolvent_diagonal_fused(
            d, torch.zeros(3, dtype=torch.complex128), lo * lo,
            torch.full((3,), 1e-12, dtype=torch.float64), L=4, block=16, tiled=tiled, scan=scan,
            scan_block=2)
        assert declined.tolist() == [False, True, False], declined
        assert float((G[[0, 2]] - ref[[0, 2]]).abs().max() / ref[[0, 2]].abs().max()) < 1e-13
        assert int(guarded.sum()) == 0 and not bool(singular[[0, 2]].any())
    # conjugate views of diag, shift and beta read as their values
    d = torch.tensor(-2 + rng.uniform(-1, 1, (2, 33)) + 0.3j, dtype=torch.complex128)
    lo = torch.tensor(rng.uniform(0.5, 1.5, (2, 32)) * (1 + 0.2j), dtype=torch.complex128)
    z = torch.full((2,), 0.5 - 0.01j, dtype=torch.complex128)
    pm = torch.full((2,), 1e-30, dtype=torch.float64)
    want = resolvent_diagonal_fused(d.conj().resolve_conj(), z.conj().resolve_conj(),
                                    (lo * lo).conj().resolve_conj(), pm, L=4, block=16)[0]
    got = resolvent_diagonal_fused(d.conj(), z.conj(), (lo * lo).conj(), pm, L=4, block=16)[0]
    assert torch.equal(got, want)
    # slabs of rows (as where a grid would exceed CUDA's limits): the same values
    import semisep.backends.triton.launch as launch
    d = torch.tensor(-2 + rng.uniform(-1, 1, (5, 40)), dtype=torch.float64)
    lo = torch.tensor(rng.uniform(0.5, 1.5, (5, 39)), dtype=torch.float64)
    args = (d, torch.full((5,), 0.5 + 0.01j, dtype=torch.complex128), lo * lo,
            torch.full((5,), 1e-30, dtype=torch.float64))
    whole = resolvent_diagonal_fused(*args, L=4, block=16, scan_block=4)
    saved = launch.MAX_GRID
    launch.MAX_GRID = (3, 65535, 65535)
    try:
        assert launch.launch_plan(5, 40, 4, block=16, scan_block=4).rows == 1
        slabs = resolvent_diagonal_fused(*args, L=4, block=16, scan_block=4)
    finally:
        launch.MAX_GRID = saved
    assert torch.equal(whole[0], slabs[0]) and slabs[3] is None
    # the int64 index type (chosen where an offset may pass 2^30): the same values
    wide = resolvent_diagonal_fused(*args, L=4, block=16, scan_block=4, index64=True)
    assert torch.equal(whole[0], wide[0]) and wide[3] is None
    wide = resolvent_diagonal_fused(*args, L=7, block=16, scan_block=4, index64=True, scan="serial")
    assert float((wide[0] - whole[0]).abs().max() / whole[0].abs().max()) < 1e-13
    # a shared off-diagonal: beta a stride-0 batch (sb = 0), float32 data, complex64 G
    d = torch.tensor(-2 + rng.uniform(-1, 1, (3, 90)), dtype=torch.float32)
    off = torch.tensor(rng.uniform(0.5, 1.5, 89), dtype=torch.float32)
    T64 = ss.Tridiagonal(d.double().numpy(), off.double().numpy())
    ref = torch.as_tensor(T64.resolvent_diagonal(0.5 + 0.01j))
    for scan in ("blocked", "serial"):
        G, _, _, _ = resolvent_diagonal_fused(d, torch.full((3,), 0.5 + 0.01j, dtype=torch.complex64),
                                           (off * off).expand(3, 89), torch.full((3,), 1e-30), L=4,
                                           block=16, scan=scan, scan_block=4)
        err = float(((G.to(torch.complex128) - ref) / ref).abs().max())
        assert err < 1e-4, (scan, err)  # Im z = 0.01: condition ~ 1e2, float32 eps ~ 1e-7
    # the singularity flag from the per-lane / per-program maxima of |G| (cheap bound, then the
    # exact test): pivots ~ 10, |G_ii| ~ 0.1; pivmin 1 (cheap), 2 (exact: regular), 3 (singular)
    d = torch.tensor(-10 + rng.uniform(-1, 1, (2, 50)), dtype=torch.float64)
    lo = torch.tensor(rng.uniform(0.5, 1.5, (2, 49)), dtype=torch.float64)
    for pmv in (1.0, 2.0, 3.0):
        pm = torch.full((2,), pmv, dtype=torch.float64)
        for tiled, scan in ((True, "blocked"), (False, "blocked")):
            G, guarded, singular, _ = resolvent_diagonal_fused(
                d, torch.full((2,), 0.01j, dtype=torch.complex128), lo * lo, pm, L=4, block=16,
                tiled=tiled, scan=scan, scan_block=4)
            want = (G.abs() * (4 * pm[:, None]) > 1).any(dim=1)
            assert torch.equal(singular, want), (pmv, scan, singular, want)
            assert bool(want.all()) == (pmv == 3.0)
    print("ok", worst)
''')


ACCURACY = textwrap.dedent('''
    # near chunk boundaries, against an extended-precision reference (both ratio sweeps in
    # np.clongdouble) of the problem the kernels see, at the default chunk length (L = 4)
    import numpy as np, torch, semisep as ss
    from semisep.backends.triton import resolvent_diagonal_fused

    def reference(a, b):
        dL, dR = np.empty_like(a), np.empty_like(a)
        dL[:, 0], dR[:, -1] = a[:, 0], a[:, -1]
        for i in range(1, a.shape[1]):
            dL[:, i] = a[:, i] - b[:, i - 1] / dL[:, i - 1]
        for i in range(a.shape[1] - 2, -1, -1):
            dR[:, i] = a[:, i] - b[:, i] / dR[:, i + 1]
        return (1 / (dL + dR - a)).astype(np.complex128)

    def errors(diag, lo, up, z, single, variants):
        rdt, cdt = (torch.float32, torch.complex64) if single else (torch.float64, torch.complex128)
        d, l, u = (torch.from_numpy(x).to(rdt) for x in (diag, lo, up))
        ld = np.clongdouble
        if single:  # alpha as the kernels form it: diag - z in complex64
            alpha = (d.to(cdt) - torch.tensor(z, dtype=cdt)).to(torch.complex128).numpy().astype(ld)
        else:
            alpha = diag.astype(ld) - ld(z)
        Gx = reference(alpha, (l * u).double().numpy().astype(ld))
        rel = lambda G: float((np.abs(G.to(torch.complex128).numpy() - Gx) / np.abs(Gx)).max())
        seq = rel(ss.Tridiagonal(d, l, u).resolvent_diagonal(torch.tensor(z, dtype=cdt),
                                                               method="sequential"))
        B = diag.shape[0]
        out = []
        for kw in variants:
            G, _, _, dec = resolvent_diagonal_fused(d, torch.full((B,), z, dtype=cdt), l * u,
                                                    torch.full((B,), 1e-30, dtype=rdt), **kw)
            assert dec is None, kw
            out.append(rel(G) / seq)
        return out

    rng = np.random.default_rng(1)
    n = 256
    diag = -2.0 + rng.uniform(-1, 1, (2, n))
    lower, upper = rng.uniform(0.5, 1.5, (2, n - 1)), rng.uniform(0.5, 1.5, (2, n - 1))
    plain, repaired = errors(diag, lower, upper, 0.5 + 1e-4j, False,
                             [dict(repair=False), dict(repair=True)])
    assert repaired < 3, (plain, repaired)  # complex128: within a small factor of sequential
    ones = np.ones((1, n - 1))
    narrow, wide = errors(np.full((1, n), -2.0), ones, ones, -1.0 + 1e-3j, True,
                          [dict(wide=False), dict(wide=True)])
    # complex64 worked in double: within 10x of the sequential sweep (in single: hundreds)
    assert wide < 10 < narrow, (narrow, wide)
    d4 = -2.0 + rng.uniform(-1, 1, (2, n))
    (wide,) = errors(d4, np.ones((2, n - 1)), np.ones((2, n - 1)), 0.5 + 1e-3j, True, [{}])
    assert wide < 10, wide
    print("ok", plain, repaired, narrow, wide)
''')

TRACE = textwrap.dedent('''
    # torch.compile(fullgraph=True) traces the operator into its Triton kernels (no graph
    # break); the captured graph is not run (no GPU here)
    import torch
    from torch._dynamo.backends.common import aot_autograd
    from semisep.backends.triton import ops

    graphs = []

    class Seen(Exception):
        pass

    def capture(gm, example_inputs):
        graphs.append(gm.code)
        raise Seen

    def f(d, z, b, thr):
        return ops.FUSED_OP(d, z, b, thr, 4, 16, True, "blocked", 4, -1, False, True)

    B, N = 2, 40
    args = (torch.randn(B, N, dtype=torch.float64), torch.full((B,), 0.5 + 0.01j, dtype=torch.complex128),
            torch.rand(B, N - 1, dtype=torch.float64), torch.full((B,), 1e-60, dtype=torch.float64))
    try:
        torch.compile(f, backend=aot_autograd(fw_compiler=capture), fullgraph=True)(*args)
    except Exception as e:  # the capture's Seen, wrapped by dynamo
        assert "Seen" in repr(e) or isinstance(e, Seen), repr(e)
    assert len(graphs) == 1, graphs
    code = graphs[0]
    assert "triton_kernel_wrapper_functional" in code, code
    assert "fused_resolvent_diagonal" not in code, code  # decomposed into its kernels
    print("ok", code.count("triton_kernel_wrapper_functional"))
''')


PAD = textwrap.dedent('''
    import numpy as np, torch, semisep as ss
    from semisep.backends.triton import resolvent_diagonal_fused
    # z = 1 exactly and N not a multiple of L: the positions past N in the last chunk must not
    # make a zero pivot (1 - z = 0) whose infinity reaches G_{N-1}
    rng = np.random.default_rng(3)
    B, N, L = 2, 13, 4
    d = torch.tensor(-2 + rng.uniform(-1, 1, (B, N)), dtype=torch.float64)
    beta = torch.tensor(rng.uniform(0.5, 1.5, (B, N - 1)), dtype=torch.float64)
    ref = torch.as_tensor(np.stack([ss.Tridiagonal(d[i].numpy(), beta[i].numpy(), np.ones(N - 1))
                                    .resolvent_diagonal(1.0 + 0j) for i in range(B)]))
    for tiled in (False, True):
        G, guarded, singular, declined = resolvent_diagonal_fused(
            d, torch.full((B,), 1.0 + 0j, dtype=torch.complex128), beta,
            torch.full((B,), 1e-30, dtype=torch.float64), L=L, block=16, tiled=tiled)
        assert declined is None, declined
        assert bool(torch.isfinite(G).all()), (tiled, G)
        err = float((G - ref).abs().max() / ref.abs().max())
        assert err < 1e-13, (tiled, err)
    print("ok")
''')

def _run(script: str, interpret: bool = True) -> str:
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                       timeout=1800)  # the interpreter is slow (minutes on a loaded machine)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert r.stdout.startswith("ok")
    return r.stdout


def test_fused_kernels_under_the_triton_interpreter():
    _run(SCRIPT)


def test_fused_accuracy_near_chunk_boundaries_under_the_interpreter():
    """complex128 with the boundary repair within 3x of the sequential sweep's error, complex64
    worked in double within 10x (and in single precision not: the test can tell)."""
    _run(ACCURACY)


def test_fused_operator_traces_into_its_kernels():
    """``semisep::fused_resolvent_diagonal`` under ``torch.compile(fullgraph=True)``: the
    captured graph holds the Triton kernels (``wrap_triton``), not an opaque call."""
    _run(TRACE, interpret=False)


def test_fused_padding_past_the_chain_end_at_z_equal_one():
    """Positions past N in the last partial chunk have alpha = 1 whatever z is."""
    _run(PAD)
