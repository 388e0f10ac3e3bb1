"""Accuracy of the chunked torch sweeps at chunk boundaries against the sequential sweep.

The chunked resolvent diagonal (``method="chunked"``, the CUDA path, run here on CPU) carries the
pivot ratio into every chunk from a scan over 2x2 transfer matrices.  Near a dip of the
continuant (a localised state close to ``z``) such a carry can be far less accurate than the
sequential ratio recursion, and single-precision work lost more in the float32 recursion than
the sequential kernels, which keep their state in double.  A tiny chunk length puts a boundary
every 16 sites, so short chains exercise hundreds of them.

Chains (the issue's): a non-symmetric disordered chain (``diag = -2 + U(-1, 1)``, lower and
upper ``U(0.5, 1.5)``), the symmetric disordered chain, and the clean chain (``diag = -2``,
off-diagonals 1), at ``Im z = 1e-4`` (complex128) and ``1e-3`` (complex64), ``z`` inside the band.

Bounds.  complex128: the chunked result within ``1e-12`` relative of the sequential sweep at every
element with ``|G_ii| >= 1e-8 max |G|`` (the issue's target; about 4500 eps, while the two sweeps'
own rounding differs by ~100 eps on these chains), and its error against an extended-precision
reference at most 4x the sequential sweep's (floored at 64 eps).  complex64: the error against a
double-precision reference of the same float32 data within 10x the sequential complex64 sweep's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semisep.backends.torch import TorchBackend, _boundary

L_CHUNK = 16
HAVE_EXTENDED = np.finfo(np.longdouble).eps < 1e-18  # x87 80-bit long double


def _chain(kind: str, B: int, N: int, seed: int = 0):
    """``diag (B, N)``, ``lower``, ``upper (B, N-1)`` (float64)."""
    rng = np.random.default_rng(seed)
    if kind == "clean":
        return np.full((B, N), -2.0), np.ones((B, N - 1)), np.ones((B, N - 1))
    diag = -2.0 + rng.uniform(-1, 1, (B, N))
    if kind == "disordered":
        return diag, np.ones((B, N - 1)), np.ones((B, N - 1))
    return diag, rng.uniform(0.5, 1.5, (B, N - 1)), rng.uniform(0.5, 1.5, (B, N - 1))


def _sweeps_G(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Independent reference: both ratio sweeps in ``alpha``'s dtype (vectorised over the batch),
    ``G_i = 1/(dL_i + dR_i - alpha_i)``."""
    B, N = alpha.shape
    dL = np.empty_like(alpha)
    dR = np.empty_like(alpha)
    dL[:, 0] = alpha[:, 0]
    for i in range(1, N):
        dL[:, i] = alpha[:, i] - beta[:, i - 1] / dL[:, i - 1]
    dR[:, -1] = alpha[:, -1]
    for i in range(N - 2, -1, -1):
        dR[:, i] = alpha[:, i] - beta[:, i] / dR[:, i + 1]
    return 1 / (dL + dR - alpha)


def _rel_err(G, Gref: np.ndarray) -> float:
    """Max elementwise relative error over the elements with ``|Gref| >= 1e-8 max |Gref|``."""
    G = np.asarray(G).astype(Gref.dtype)
    a = np.abs(Gref)
    keep = a >= 1e-8 * a.max(axis=1, keepdims=True)
    return float(np.max((np.abs(G - Gref) / np.where(keep, a, 1))[keep]))


def _paths(diag, beta, z, rdt, cdt):
    """The chunked resolvent diagonal by its three torch paths -- the no-grad shift form
    (planar, G combined in the layout), the shift form under autograd, and the complex-alpha
    form -- and the sequential (compiled) sweep, as NumPy arrays."""
    B = diag.shape[0]
    be = TorchBackend()
    d = torch.from_numpy(diag).to(rdt)
    b = torch.from_numpy(beta).to(rdt)
    s = torch.full((B,), z, dtype=cdt)
    pm = torch.full((B,), 1e-30 if rdt == torch.float32 else 1e-300, dtype=torch.float64)
    out = {}
    with torch.no_grad():
        out["shift"] = be.resolvent_diagonal_shifted(d, s, b, pm, method="chunked", chunk_length=L_CHUNK)
        alpha = d.to(cdt) - s[:, None]  # rounded as the shift form forms it
        out["alpha"] = be.resolvent_diagonal(alpha, b.to(cdt), pm, "chunked", chunk_length=L_CHUNK)
        seq = be.resolvent_diagonal_shifted(d, s, b, pm, method="sequential")
    out["autograd"] = be.resolvent_diagonal_shifted(d.clone().requires_grad_(), s, b, pm, method="chunked",
                                                    chunk_length=L_CHUNK)
    for k, (G, guarded, _) in out.items():
        assert G.dtype == cdt and not bool(guarded.any()), k
    return {k: v[0].detach().numpy() for k, v in out.items()}, seq[0].numpy(), alpha


@pytest.fixture(params=["gathered", "fixed"])
def repair(request, monkeypatch):
    """Both forms of the boundary repair: gathered (data-dependent shapes, CPU's) and with fixed
    shapes (no host sync, the accelerators'; where it overflows its slots the exact path runs)."""
    monkeypatch.setattr(_boundary, "fixed_shapes", lambda device: request.param == "fixed")
    return request.param


CASES = [("nonsymmetric", 0.5 + 1e-4j), ("nonsymmetric", -1.3 + 1e-4j), ("disordered", 0.5 + 1e-4j),
         ("disordered", -2.7 + 1e-4j), ("clean", -1.0 + 1e-4j), ("clean", -0.2 + 1e-4j)]


@pytest.mark.parametrize("kind,z", CASES, ids=[f"{k}-{z.real}" for k, z in CASES])
def test_complex128_chunk_boundaries_match_the_sequential_sweep(kind, z, repair):
    diag, lower, upper = _chain(kind, 3, 4096)
    beta = lower * upper
    G, Gs, _ = _paths(diag, beta, z, torch.float64, torch.complex128)
    for path, Gc in G.items():
        assert _rel_err(Gc, Gs) <= 1e-12, path
    if not HAVE_EXTENDED:
        pytest.skip("no extended-precision long double for the reference")
    ld = np.clongdouble
    Gx = _sweeps_G(diag.astype(ld) - ld(z), beta.astype(ld))
    eps = np.finfo(np.float64).eps
    e_seq = _rel_err(Gs, Gx)
    for path, Gc in G.items():
        assert _rel_err(Gc, Gx) <= max(4 * e_seq, 64 * eps), path


CASES64 = [("nonsymmetric", 0.5 + 1e-3j), ("disordered", 0.5 + 1e-3j), ("disordered", -3.9 + 1e-3j),
           ("clean", -1.0 + 1e-3j), ("clean", 0.5 + 1e-3j)]


@pytest.mark.parametrize("kind,z", CASES64, ids=[f"{k}-{z.real}" for k, z in CASES64])
def test_complex64_chunked_within_10x_the_sequential_error(kind, z, repair):
    diag, lower, upper = _chain(kind, 3, 2048)
    diag = diag.astype(np.float32).astype(np.float64)  # the float32 problem, exactly
    beta = (lower.astype(np.float32) * upper.astype(np.float32)).astype(np.float64)
    G, Gs, alpha = _paths(diag, beta, z, torch.float32, torch.complex64)
    # reference: the same float32 problem (alpha as the kernels round it) in double precision
    Gx = _sweeps_G(alpha.numpy().astype(np.complex128), beta.astype(np.complex128))
    e_seq = _rel_err(Gs, Gx)
    for path, Gc in G.items():
        assert _rel_err(Gc, Gx) <= 10 * e_seq, (path, _rel_err(Gc, Gx), e_seq)


class _OpsAndReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the non-view aten ops (~ kernel launches on CUDA) and the ops whose output size
    depends on values (host syncs on CUDA) dispatched inside the ``with`` block."""

    def __init__(self):
        super().__init__()
        self.ops = 0
        self.value_shaped = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.ops += 1
        if func.name().split(".")[0] in ("aten::nonzero", "aten::masked_select", "aten::nonzero_static"):
            self.value_shaped += 1
        return func(*args, **(kwargs or {}))


def _fixed_repair_counts(N: int, monkeypatch):
    """Ops, host reads and results of each fixed-shape repair call on the non-symmetric
    disordered chain of length N (chunk length 16; a few per cent of the boundaries flagged),
    and the results of both forms of the repair."""
    seen: dict = {}
    real = _boundary.repair_planar

    def counted(*a):
        mode = _OpsAndReads()
        reads = {"n": 0}
        def counting(f):
            def read(self, *x, **k):
                reads["n"] += 1
                return f(self, *x, **k)
            return read

        with monkeypatch.context() as m:
            for name in ("__bool__", "item", "tolist", "cpu", "numpy", "__int__", "__float__", "__index__"):
                m.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
            with mode:
                out = real(*a)
        seen.setdefault("calls", []).append((mode.ops, mode.value_shaped, reads["n"], out))
        return out

    diag, lower, upper = _chain("nonsymmetric", 3, N)
    with monkeypatch.context() as m:
        m.setattr(_boundary, "fixed_shapes", lambda device: False)
        G0, _, _ = _paths(diag, lower * upper, 0.5 + 1e-4j, torch.float64, torch.complex128)
    monkeypatch.setattr(_boundary, "repair_planar", counted)
    monkeypatch.setattr(_boundary, "fixed_shapes", lambda device: True)
    G, _, _ = _paths(diag, lower * upper, 0.5 + 1e-4j, torch.float64, torch.complex128)
    return seen["calls"], G, G0


def test_fixed_repair_has_no_host_sync_and_ops_independent_of_n(monkeypatch):
    """The fixed-shape repair (the accelerators' form): no host read and no value-shaped op, the
    same number of ops at N = 2^12 and 2^14 (shapes fixed by the layout, not by the data), and on
    this chain it completes without the exact path (``pending`` False) with the gathered form's
    results (which the tests above check against the sequential sweep)."""
    counts = {}
    for N in (1 << 12, 1 << 14):
        calls, G, G0 = _fixed_repair_counts(N, monkeypatch)
        assert calls, "the repair did not run"
        for _ops, value_shaped, reads, out in calls:
            assert value_shaped == 0 and reads == 0, (value_shaped, reads)
            assert out is not None and not bool(out[2]), "the repair overflowed (exact path)"
        counts[N] = [c[0] for c in calls]
        for path, Gc in G.items():
            assert _rel_err(Gc, G0[path]) <= 1e-14, path
    assert counts[1 << 12] == counts[1 << 14], counts


def _real_rows(N: int, dtype):
    """Four rows of ``T - zI`` for real symmetric chains at real shifts: determinants of both
    signs (the sign of a row is ``(-1)^(negative pivots)``) and, in the last two rows, every
    pivot negative (``diag`` in ``[-3.3, -1.3]``, off-diagonals in ``[0.5, 1]``)."""
    rng = np.random.default_rng(N)
    diag = np.stack([rng.uniform(-1, 1, N), 2.0 + rng.uniform(-1, 1, N),
                     -2.3 + rng.uniform(-1, 1, N), -2.3 + rng.uniform(-1, 1, N)])
    beta = rng.uniform(0.5, 1, (4, N - 1)) ** 2
    return torch.from_numpy(diag).to(dtype), torch.from_numpy(beta).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("N", [300, 301, 4097, 1 << 16])
def test_real_logdet_phase_exact(N, dtype):
    """A real problem's chunked log-determinant (the CUDA path) has the sequential kernel's
    phase exactly: 0 where the determinant is positive and pi where it is negative, with no
    chunked phase sum's rounding (which left ``-pi + 2e-13`` where the answer is ``pi``, and
    ``~1e-13`` where it is 0).  The torch.func path ("reference", a pivoted loop) too, at the
    smaller N.  Real parts within ``1e4 eps`` relative."""
    be = TorchBackend()
    alpha, beta = _real_rows(N, dtype)
    pm = torch.full((4,), 1e-30 if dtype == torch.float32 else 1e-300, dtype=torch.float64)
    seq, _, _ = be.logdet(alpha, beta, pm, method="sequential")
    methods = ["chunked", "reference"] if N <= 301 else ["chunked"]
    for method in methods:
        ld, _, singular = be.logdet(alpha, beta, pm, method=method)
        assert not bool(singular.any())
        assert torch.equal(ld.imag, seq.imag), (method, ld.imag.tolist(), seq.imag.tolist())
        torch.testing.assert_close(ld.real, seq.real, rtol=1e4 * torch.finfo(dtype).eps, atol=0)
    assert set(seq.imag.tolist()) <= {0.0, float(np.float32(np.pi)) if dtype == torch.float32 else np.pi}
    if N in (300, 301):  # rows of both signs among the cases
        assert {0.0} < set(seq.imag.tolist())


def test_the_issue_chain_at_full_size():
    """The issue's case as it met it: the non-symmetric disordered chain, B = 7, N = 2^17,
    ``Im z = 1e-4``, the public call at the default chunk length.  complex128: the chunked error
    against an extended-precision reference at most 4x the sequential sweep's (one element was
    1500x worse before the boundary repair).  The issue's target "within 1e-12 of the
    sequential sweep" is not what this checks: at this size the sequential sweep itself is
    ~2e-12 off the reference (|G| up to ~4e3), and the two differ by ~3e-12 to 6e-12.
    complex64 (the float32 problem, ``Im z = 1e-3``): within 10x the sequential complex64
    sweep's error against the same problem in double precision."""
    import semisep as ss

    if not HAVE_EXTENDED:
        pytest.skip("no extended-precision long double for the reference")
    diag, lower, upper = _chain("nonsymmetric", 7, 1 << 17, seed=26)
    z = 0.5 + 1e-4j
    T = ss.Tridiagonal(torch.from_numpy(diag), torch.from_numpy(lower), torch.from_numpy(upper))
    Gc = T.resolvent_diagonal(z, method="chunked").numpy()
    Gs = T.resolvent_diagonal(z, method="sequential").numpy()
    ld = np.clongdouble
    Gx = _sweeps_G(diag.astype(ld) - ld(z), (lower * upper).astype(ld))
    e_seq = _rel_err(Gs, Gx)
    assert _rel_err(Gc, Gx) <= 4 * max(e_seq, 64 * np.finfo(np.float64).eps), (_rel_err(Gc, Gx), e_seq)
    d32, l32, u32 = (torch.from_numpy(x).to(torch.float32) for x in (diag, lower, upper))
    T32 = ss.Tridiagonal(d32, l32, u32)
    z32 = 0.5 + 1e-3j
    G32 = T32.resolvent_diagonal(z32, method="chunked").numpy()
    S32 = T32.resolvent_diagonal(z32, method="sequential").numpy()
    alpha = (d32.to(torch.complex64) - torch.tensor(z32, dtype=torch.complex64)).numpy().astype(np.complex128)
    Gx32 = _sweeps_G(alpha, (l32 * u32).double().numpy().astype(np.complex128))
    assert _rel_err(G32, Gx32) <= 10 * _rel_err(S32, Gx32), (_rel_err(G32, Gx32), _rel_err(S32, Gx32))
