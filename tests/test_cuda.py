"""The torch backend on a CUDA device: the same code as on CPU, checked where it runs.

Skipped (with the reason printed) on machines without CUDA -- CI has none.  On a machine with a
GPU: ``python -m pytest tests/test_cuda.py``.  What is checked:

* every operator (Tridiagonal, T + U V^T, Semiseparable) on CUDA tensors returns CUDA tensors
  whose values match the NumPy backend on the same (rounded) data, for all four dtypes, with the
  tolerances of the CPU tests (eps times a conditioning bound);
* no host round trip: with ``Tensor.cpu``/``Tensor.numpy`` patched to raise on anything larger
  than the ``(B,)`` singular flags (which come to the host to raise an error) and the low-rank
  operator's ``(B, r, r)`` capacitance matrices, the CUDA calls
  (Tridiagonal, T + U V^T) still run (scalar ``bool()`` syncs for the guard certificate are
  allowed); in the CPU imitation with the backend's NumPy host views off, as on CUDA;
* ``torch.autograd.gradcheck`` in complex128 on the device for the resolvent diagonal, solve and
  log det with respect to diag, both off-diagonals and a tensor z;
* ``"chunked"`` on CUDA against the compiled sequential sweep on CPU on a disordered chain at
  N = 2^17, the issue's tolerances (complex128 1e-10, complex64 1e-4 median relative);
* the torch modules' forward and backward on CUDA against the same module on CPU.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
# SEMISEP_CUDA_TESTS_ON=cpu runs this module on CPU tensors: a check of the tests themselves
DEV = os.environ.get("SEMISEP_CUDA_TESTS_ON", "cuda")
if DEV.startswith("cuda") and not torch.cuda.is_available():  # pragma: no cover - machine
    pytest.skip("no CUDA device (torch.cuda.is_available() is False)", allow_module_level=True)

import semisep as ss  # noqa: E402

DTYPES = [torch.float32, torch.float64, torch.complex64, torch.complex128]


def _tol(dtype, factor=200.0):
    return factor * torch.finfo(dtype).eps


def _chain(n, batch, dtype, seed=0, nonsym=False):
    rng = np.random.default_rng(seed)
    d = 4.0 + rng.uniform(-1, 1, (batch, n))
    lo = rng.uniform(-1, 1, (batch, n - 1))
    up = rng.uniform(-1, 1, (batch, n - 1)) if nonsym else None
    if dtype.is_complex:
        d = d + 1j * rng.uniform(-1, 1, (batch, n))
        lo = lo + 0.5j * rng.uniform(-1, 1, (batch, n - 1))
    to = lambda x: None if x is None else torch.as_tensor(x).to(dtype)  # noqa: E731
    return to(d), to(lo), to(up)


def _rel(a, b):
    a = a.detach().cpu().to(torch.complex128)
    b = torch.as_tensor(np.asarray(b)).to(torch.complex128)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("nonsym", [False, True], ids=["sym", "nonsym"])
def test_tridiagonal_ops_on_cuda_match_numpy(dtype, nonsym):
    d, lo, up = _chain(300, 3, dtype, nonsym=nonsym)
    z = 0.3 + 0.2j
    Tc = ss.Tridiagonal(*(None if x is None else x.to(DEV) for x in (d, lo, up)))
    Tn = ss.Tridiagonal(*(None if x is None else x.numpy() for x in (d, lo, up)))
    b = torch.as_tensor(np.random.default_rng(1).standard_normal((3, 300))).to(dtype)
    for name, gc, gn in [
        ("resolvent", Tc.resolvent_diagonal(z), Tn.resolvent_diagonal(z)),
        ("solve", Tc.solve(b.to(DEV), z), Tn.solve(b.numpy(), z)),
        ("logdet", Tc.logdet(z), Tn.logdet(z)),
        ("matvec", Tc.matvec(b.to(DEV)), Tn.matvec(b.numpy())),
        ("indices", Tc.resolvent_diagonal(z, indices=[0, 7, 299]),
         Tn.resolvent_diagonal(z, indices=[0, 7, 299])),
    ]:
        assert gc.device.type == torch.device(DEV).type, name
        assert _rel(gc, gn) < _tol(dtype), (name, _rel(gc, gn))


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex64, torch.complex128], ids=str)
def test_lowrank_and_semiseparable_on_cuda_match_numpy(dtype):
    d, lo, _ = _chain(200, 2, dtype)
    rng = np.random.default_rng(3)
    U = torch.as_tensor(0.3 * rng.standard_normal((2, 200, 3))).to(dtype)
    V = torch.as_tensor(0.3 * rng.standard_normal((2, 200, 3))).to(dtype)
    z = 0.1 + 0.4j
    Hc = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d.to(DEV), lo.to(DEV)), U.to(DEV), V.to(DEV))
    Hn = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d.numpy(), lo.numpy()), U.numpy(), V.numpy())
    b = torch.as_tensor(rng.standard_normal((2, 200))).to(dtype)
    for name, gc, gn in [
        ("resolvent", Hc.resolvent_diagonal(z), Hn.resolvent_diagonal(z)),
        ("solve", Hc.solve(b.to(DEV), z), Hn.solve(b.numpy(), z)),
        ("logdet", Hc.logdet(z), Hn.logdet(z)),
    ]:
        assert gc.device.type == torch.device(DEV).type, name
        assert _rel(gc, gn) < _tol(dtype, 2000.0), (name, _rel(gc, gn))
    P, Q = U[..., :2] * 0.5, V[..., :2] * 0.5
    Sc = ss.Semiseparable(d.to(DEV), P.to(DEV), Q.to(DEV))
    Sn = ss.Semiseparable(d.numpy(), P.numpy(), Q.numpy())
    for name, gc, gn in [
        ("matvec", Sc.matvec(b.to(DEV)), Sn.matvec(b.numpy())),
        ("solve", Sc.solve(b.to(DEV)), Sn.solve(b.numpy())),
        ("logdet", Sc.logdet(), Sn.logdet()),
    ]:
        assert gc.device.type == torch.device(DEV).type, name
        assert _rel(gc, gn) < _tol(dtype, 2000.0), (name, _rel(gc, gn))


def test_no_host_round_trip(monkeypatch):
    d, lo, up = (x.to(DEV) for x in _chain(4096, 4, torch.complex64, nonsym=True))
    T = ss.Tridiagonal(d, lo, up)
    b = torch.ones(4, 4096, dtype=torch.complex64, device=DEV)
    rng = np.random.default_rng(4)
    U, V = (torch.as_tensor(0.1 * rng.standard_normal((4096, 2))).to(torch.complex64).to(DEV)
            for _ in range(2))
    H = ss.TridiagonalPlusLowRank(T, U, V)
    if not DEV.startswith("cuda"):
        # the CPU imitation: CPU tensors have NumPy host views (a zero-copy Tensor.numpy(), not
        # a copy), which decide the host path and which a CUDA tensor lacks; off, as on CUDA
        import semisep.backends.torch as tb

        monkeypatch.setattr(tb, "_host_view", lambda t: None)

    # the (B,) singular/guard flags may come to the host to raise an error, and H's (B, r, r)
    # capacitance matrices with them (the host computes their singular values: on the device
    # an SVD syncs by itself); N-sized data may not
    cpu, numpy_ = torch.Tensor.cpu, torch.Tensor.numpy
    small = 4 * 2 * 2 * 2 + 16  # B r^2 complex entries as reals, and the flags

    def guard(orig):
        def refuse(self, *a, **k):
            if self.numel() > small:
                raise AssertionError(f"a {tuple(self.shape)} tensor was copied to the host")
            return orig(self, *a, **k)
        return refuse

    monkeypatch.setattr(torch.Tensor, "cpu", guard(cpu))
    monkeypatch.setattr(torch.Tensor, "numpy", guard(numpy_))
    m = "auto" if DEV.startswith("cuda") else "chunked"  # auto is chunked on CUDA
    G = T.resolvent_diagonal(0.5 + 0.01j, method=m)
    x = T.solve(b, 0.5 + 0.01j, method=m)
    ld = T.logdet(0.5 + 0.01j, method=m)
    outs = [G, x, ld]
    for real_z in (False, True):  # real z: a real T's logdet is real or complex by its signs
        zz = 0.5 if real_z else 0.5 + 0.01j
        outs += [H.resolvent_diagonal(zz, method=m), H.solve(b, zz, method=m), H.logdet(zz, method=m)]
    assert {t.device.type for t in outs} == {torch.device(DEV).type}


@pytest.mark.parametrize("what", ["resolvent", "solve", "logdet"])
def test_gradcheck_complex128_on_cuda(what):
    n = 12
    d, lo, up = _chain(n, 2, torch.complex128, seed=5, nonsym=True)
    leaves = [x.to(DEV).requires_grad_() for x in (d, lo, up)]
    z = torch.tensor(0.3 + 0.4j, dtype=torch.complex128, device=DEV, requires_grad=True)
    b = torch.as_tensor(np.random.default_rng(2).standard_normal((2, n))).to(torch.complex128).to(DEV)

    def f(d_, lo_, up_, z_):
        T = ss.Tridiagonal(d_, lo_, up_)
        if what == "resolvent":
            return T.resolvent_diagonal(z_, method="chunked")
        if what == "solve":
            return T.solve(b, z_, method="chunked")
        return T.logdet(z_, method="chunked")

    assert torch.autograd.gradcheck(f, (*leaves, z), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradcheck_real_inputs_complex_z_on_cuda():
    n = 10
    d, lo, _ = _chain(n, 2, torch.float64, seed=6)
    d = d.to(DEV).requires_grad_()
    lo = lo.to(DEV).requires_grad_()
    z = torch.tensor(0.2 + 0.3j, dtype=torch.complex128, device=DEV, requires_grad=True)

    def f(d_, lo_, z_):
        return ss.Tridiagonal(d_, lo_).resolvent_diagonal(z_, method="chunked")

    assert torch.autograd.gradcheck(f, (d, lo, z), eps=1e-6, atol=1e-7, rtol=1e-5)
    G = f(d, lo, z)
    torch.view_as_real(G).square().sum().backward()
    assert d.grad.dtype == torch.float64 and lo.grad.dtype == torch.float64


@pytest.mark.parametrize("dtype,tol", [(torch.complex128, 1e-10), (torch.complex64, 1e-4)], ids=str)
def test_chunked_on_cuda_vs_sequential_cpu_disordered_n2_17(dtype, tol):
    n = 1 << 17
    rng = np.random.default_rng(7)
    d = -2.0 + rng.uniform(-1, 1, (2, n))
    off = np.ones(n - 1)
    z = 0.5 + 1e-3j
    ref = ss.Tridiagonal(d, off).resolvent_diagonal(z)  # NumPy, complex128, compiled sweep
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    Gc = ss.Tridiagonal(torch.as_tensor(d).to(real).to(DEV), torch.as_tensor(off).to(real).to(DEV)
                        ).resolvent_diagonal(z, method="chunked")
    assert Gc.device.type == torch.device(DEV).type and Gc.dtype == dtype
    rel = (Gc.cpu().to(torch.complex128) - torch.as_tensor(ref)).abs() / torch.as_tensor(ref).abs()
    if dtype == torch.complex128:
        assert float(rel.max()) < tol, float(rel.max())
    else:
        # complex64 data are rounded to float32 first; the median is the measure
        d32 = torch.as_tensor(d).to(torch.float32).double().numpy()
        ref32 = torch.as_tensor(ss.Tridiagonal(d32, off).resolvent_diagonal(z))
        rel = (Gc.cpu().to(torch.complex128) - ref32).abs() / ref32.abs()
        assert float(rel.median()) < tol, float(rel.median())


def test_chunked_backward_on_cuda_matches_cpu_sequential():
    n = 1 << 14
    rng = np.random.default_rng(8)
    d0 = -2.0 + rng.uniform(-1, 1, (3, n))
    off0 = rng.uniform(0.5, 1.5, n - 1)
    grads = {}
    for dev, method in (("cpu", "sequential"), (DEV, "chunked")):
        d = torch.tensor(d0, device=dev, requires_grad=True)
        off = torch.tensor(off0, device=dev, requires_grad=True)
        z = torch.tensor(0.5 + 0.05j, dtype=torch.complex128, device=dev, requires_grad=True)
        G = ss.Tridiagonal(d, off).resolvent_diagonal(z, method=method)
        torch.view_as_real(G).square().sum().backward()
        grads[dev] = [x.grad.cpu() for x in (d, off, z)]
    for a, b in zip(grads["cpu"], grads[DEV], strict=True):
        assert float((a - b).abs().max() / a.abs().max()) < 1e-9


def test_birman_schwinger_core_on_cuda_matches_cpu():
    from semisep.nn.birman_schwinger import BirmanSchwingerCore

    torch.manual_seed(0)
    v = torch.randn(2, 256, dtype=torch.float64)
    outs = {}
    torch.manual_seed(1)
    base = BirmanSchwingerCore(256, dtype=torch.float64)
    for dev in ("cpu", DEV):
        core = copy.deepcopy(base).to(dev)  # the same parameters (CPU and CUDA RNGs differ)
        vv = v.detach().to(dev).requires_grad_()
        feats, _ = core(vv)
        feats.square().sum().backward()
        assert feats.device.type == torch.device(dev).type
        outs[dev] = (feats.detach().cpu(), vv.grad.cpu())
    for a, b in zip(outs["cpu"], outs[DEV], strict=True):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10), float((a - b).abs().max())


# -- the fused Triton kernels ("auto" on CUDA for a complex resolvent diagonal without autograd) --

def _fused():
    from semisep.backends import triton as tr

    if not tr.available(torch.empty(0, device=DEV)):
        pytest.skip("triton is not installed, or the device is not CUDA")
    return tr


_FUSED_LAYOUTS = ([(L, "blocked", None) for L in (1, 2, 4, 7, 8, 16, 32, 100)]
                  # several blocks of chunks per row; the serial scan as the twin
                  + [(L, scan, 4) for L in (4, 7) for scan in ("blocked", "serial")])


@pytest.mark.parametrize("L,scan,scan_block", _FUSED_LAYOUTS, ids=str)
@pytest.mark.parametrize("cplx", [False, True], ids=["real T", "complex T"])
def test_fused_matches_numpy(L, scan, scan_block, cplx):
    tr = _fused()
    B, n = 3, 1000
    dtype = torch.complex128 if cplx else torch.float64
    d, lo, up = (x.to(DEV) for x in _chain(n, B, dtype, seed=11, nonsym=True))
    z = 0.3 + 0.05j
    shift = torch.full((B,), z, dtype=torch.complex128, device=DEV)
    pm = torch.full((B,), 1e-300, dtype=torch.float64, device=DEV)
    G, guarded, singular, declined = tr.resolvent_diagonal_fused(d, shift, lo * up, pm, L=L,
                                                                 scan=scan, scan_block=scan_block)
    assert declined is None
    ref = ss.Tridiagonal(*(x.cpu().numpy() for x in (d, lo, up))).resolvent_diagonal(z)
    assert _rel(G, ref) < _tol(torch.complex128)
    assert int(guarded.sum()) == 0 and not bool(singular.any())


def test_fused_shared_offdiagonal_stride0_and_auto_uses_it(monkeypatch):
    tr = _fused()
    n = 5000
    rng = np.random.default_rng(12)
    d = torch.tensor(-2.0 + rng.uniform(-1, 1, (4, n)), dtype=torch.float32, device=DEV)
    off = torch.ones(n - 1, dtype=torch.float32, device=DEV)  # shared: a stride-0 batch
    calls = []
    real = tr.resolvent_diagonal_fused
    monkeypatch.setattr(tr, "resolvent_diagonal_fused", lambda *a, **k: calls.append(1) or real(*a, **k))
    G, info = ss.Tridiagonal(d, off).resolvent_diagonal(0.5 + 1e-3j, return_info=True)
    assert calls, "method='auto' on CUDA did not try the fused kernels"
    assert info.method == "fused" and info.requested_method == "auto"
    Gf = ss.Tridiagonal(d, off).resolvent_diagonal(0.5 + 1e-3j, method="fused")  # by name
    assert len(calls) == 2 and torch.allclose(G, Gf, rtol=1e-6, atol=0)
    ref = ss.Tridiagonal(d.cpu().double().numpy(), off.cpu().double().numpy()).resolvent_diagonal(0.5 + 1e-3j)
    rel = (G.cpu().to(torch.complex128) - torch.as_tensor(ref)).abs() / torch.as_tensor(ref).abs()
    assert G.dtype == torch.complex64 and float(rel.median()) < 1e-4


def test_fused_declines_the_row_whose_pivot_needs_the_guard():
    tr = _fused()
    n = 300
    d, lo, _ = _chain(n, 2, torch.complex128, seed=13)
    z = 0.25 + 0.5j
    d[0, 0] = z  # alpha_0 = 0 exactly: the first LU pivot needs the guard
    d, lo = d.to(DEV), lo.to(DEV)
    shift = torch.full((2,), z, dtype=torch.complex128, device=DEV)
    pm = torch.full((2,), 1e-12, dtype=torch.float64, device=DEV)
    for scan in ("blocked", "serial"):
        declined = tr.resolvent_diagonal_fused(d, shift, lo * lo, pm, scan=scan)[3]
        assert declined.tolist() == [True, False]  # row 0 only
    T = ss.Tridiagonal(d, lo)
    Gc, infoc = T.resolvent_diagonal(z, method="chunked", return_info=True)
    for method in ("auto", "fused"):
        G, info = T.resolvent_diagonal(z, method=method, return_info=True)
        assert torch.equal(G[0], Gc[0])  # the declined row ran the chunked kernel alone
        assert _rel(G[1], Gc[1].cpu().numpy()) < _tol(torch.complex128)  # the fused row
        assert info.pivots_guarded.tolist() == infoc.pivots_guarded.tolist()
        assert int(info.pivots_guarded[0]) > 0
        assert info.method == "chunked" and info.requested_method == method


@pytest.mark.skipif(not DEV.startswith("cuda") or torch.cuda.device_count() < 2,
                    reason="needs two CUDA devices")
def test_fused_on_the_second_device():
    """Tensors on cuda:1 run their kernels on device 1 (the launches' device guard)."""
    tr = _fused()
    d, lo, _ = _chain(2000, 3, torch.complex128, seed=14)
    shift = torch.full((3,), 0.3 + 0.05j, dtype=torch.complex128)
    pm = torch.full((3,), 1e-300, dtype=torch.float64)
    outs = []
    for dev in ("cuda:0", "cuda:1"):
        with torch.cuda.device(0):  # the current device stays 0
            G = tr.resolvent_diagonal_fused(d.to(dev), shift.to(dev), (lo * lo).to(dev), pm.to(dev))[0]
        assert G.device == torch.device(dev)
        outs.append(G.cpu())
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("dtype,tol", [(torch.complex128, 1e-10), (torch.complex64, 1e-4)], ids=str)
def test_auto_fused_vs_sequential_cpu_disordered_n2_17(dtype, tol):
    _fused()
    n = 1 << 17
    rng = np.random.default_rng(7)
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    d = torch.as_tensor(-2.0 + rng.uniform(-1, 1, (2, n))).to(real)
    off = torch.ones(n - 1, dtype=real)
    z = 0.5 + 1e-3j
    ref = torch.as_tensor(ss.Tridiagonal(d.double().numpy(), off.double().numpy()).resolvent_diagonal(z))
    G = ss.Tridiagonal(d.to(DEV), off.to(DEV)).resolvent_diagonal(z)
    rel = (G.cpu().to(torch.complex128) - ref).abs() / ref.abs()
    stat = rel.max() if dtype == torch.complex128 else rel.median()
    assert float(stat) < tol, float(stat)
