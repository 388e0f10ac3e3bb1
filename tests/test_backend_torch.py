"""Tests of the torch backend (semisep/backends/torch/).

Three independent ways of computing everything are compared: ``method="chunked"`` (the parallel
scan), ``method="reference"`` (a plain sequential torch loop, differentiated by ordinary
autograd) and dense ``torch.linalg`` in float64/complex128; ``method="sequential"`` (the numba
kernels, zero-copy) too where the numpy backend is importable.

Tolerances (dense comparisons).  The pivot recursions are backward stable in the sense of
Gaussian elimination without pivoting on these (Hermitian with Im z != 0, or diagonally
dominant) matrices, so the normwise relative forward error of G and x is O(eps * cond_2(A));
measured worst case over all the cases below: 0.9 eps cond_2.  ``cond`` in the tests is the cheap
upper bound sqrt(||A||_1 ||A||_inf ||A^-1||_1 ||A^-1||_inf) >= cond_2.  We assert 50 eps cond (a factor
~50 of margin, still far below anything a wrong formula produces).  log det is a sum of N pivot
logs, each with a relative error O(eps cond): the absolute error accumulates at most linearly,
so we assert 20 eps cond N (measured worst: 1.8 eps cond N, at N = 1).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from semisep.backends import get_backend  # noqa: E402
from semisep.backends.torch import TorchBackend  # noqa: E402
from semisep.backends.torch.bridge import _numpy_kernels_available  # noqa: E402
from semisep.backends.torch.chunks import _affine_scan_chunked  # noqa: E402
from semisep.backends.torch.pivots import _pivots_chunked  # noqa: E402
from semisep.backends.torch.reference import _affine_scan_ref, _pivots_ref, _resolvent_ref_combine  # noqa: E402

HAVE_NUMBA = _numpy_kernels_available()
METHODS = ["chunked", "reference"] + (["sequential"] if HAVE_NUMBA else [])
DTYPES = [torch.float32, torch.float64, torch.complex64, torch.complex128]


def _eps(dtype):
    return torch.finfo(dtype).eps


def _pivmin(B, dtype):
    # tiny: these well-conditioned problems never need the guard
    return torch.full((B,), 1e-30 if _eps(dtype) > 1e-10 else 1e-300, dtype=torch.float64)


def problem(kind, N, B, dtype, seed=0, with_dense=True):
    """``alpha, b (upper), c (lower)`` in ``dtype`` and the dense ``A`` in 64-bit from the same
    (rounded) entries.  kind: "hermitian" (Hermitian T, complex z with Im z = 0.5 -- symmetric
    T with z outside the spectrum for real dtypes) or "nonsym" (non-symmetric, diagonally
    dominant, c = 2 * U(-1, 1) independent of b)."""
    g = torch.Generator().manual_seed(seed)
    cplx = dtype.is_complex

    def r(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1

    if kind == "hermitian":
        diag = 2 * r(B, N)
        up = r(B, N - 1) + (1j * r(B, N - 1) if cplx else 0)
        lo = up.conj() if cplx else up
        z = 0.3 + 0.5j if cplx else 3.5
    else:
        diag = 4 + r(B, N) + (1j * r(B, N) if cplx else 0)
        up = r(B, N - 1) + (1j * r(B, N - 1) if cplx else 0)
        lo = 2 * r(B, N - 1)
        z = 0.1 + 0.2j if cplx else 0.1
    hi = torch.complex128 if cplx else torch.float64
    alpha = torch.as_tensor(diag - z).to(dtype)
    b = torch.as_tensor(up).to(dtype)
    c = torch.as_tensor(lo).to(dtype)
    A = dense(alpha.to(hi), b.to(hi), c.to(hi)) if with_dense else None
    return alpha, b, c, A


def dense(alpha, b, c):
    return torch.diag_embed(alpha) + torch.diag_embed(b, 1) + torch.diag_embed(c, -1)


def _cond_bound(A, Ainv):
    """An upper bound on cond_2(A), max over the batch: ||X||_2 <= sqrt(||X||_1 ||X||_inf)
    (an SVD of the 300 x 300 matrices would dominate the test time)."""
    def n2(X):
        return torch.sqrt(torch.linalg.matrix_norm(X, 1) * torch.linalg.matrix_norm(X, float("inf")))
    return float((n2(A) * n2(Ainv)).max())


def _angle_diff(a, b):
    return torch.remainder(a - b + math.pi, 2 * math.pi) - math.pi


# ------------------------------------------------------------------------------------------------
# plumbing
# ------------------------------------------------------------------------------------------------
def test_plumbing():
    be = get_backend("torch")
    assert isinstance(be, TorchBackend) and be.name == "torch"
    assert be.methods == ("sequential", "chunked", "fused", "reference")
    x = torch.ones(3, dtype=torch.float32)
    assert be.is_array(x) and not be.is_array(np.ones(3))
    # Python scalars keep 64-bit precision (never torch's default float32)
    z = be.asarray(0.3 + 0.1j, like=x)
    assert z.dtype == torch.complex128 and complex(z) == 0.3 + 0.1j
    assert be.asarray([1.5, 2.0]).dtype == torch.float64
    assert be.asarray(x, like=x) is x
    assert be.asarray(0.5, like=torch.ones(1, device="meta")).device.type == "meta"
    # promotion: torch's rules, integers -> float64
    assert be.result_dtype(torch.ones(2, dtype=torch.int64)) == torch.float64
    assert be.result_dtype(torch.ones(2, dtype=torch.int64), 1.5) == torch.float64
    assert be.result_dtype(torch.ones(2, dtype=torch.int32), 1j) == torch.complex128
    assert be.result_dtype(torch.ones(2, dtype=torch.float32), 1j) == torch.complex64
    assert be.result_dtype(torch.ones(2, dtype=torch.float32), 2.0) == torch.float32
    assert be.result_dtype(x, torch.ones(2, dtype=torch.complex128)) == torch.complex128
    assert be.result_dtype(True, 3) == torch.float64
    with pytest.raises(TypeError):
        be.result_dtype(torch.ones(2, dtype=torch.float16))
    assert be.eps(torch.complex64) == pytest.approx(1.1920929e-07)
    assert be.eps(torch.float64) == np.finfo(np.float64).eps
    assert be.is_complex(torch.complex64) and not be.is_complex(torch.float64)
    assert be.all_finite(x) and not be.all_finite(torch.tensor([1.0, float("nan")]))
    m = be.amax_abs(torch.tensor([[3 + 4j, 1.0]]), axis=1)
    assert m.dtype == torch.float32 and float(m[0]) == 5.0
    e = be.amax_abs(torch.zeros(4, 0, dtype=torch.complex128), axis=1)
    assert e.shape == (4,) and e.dtype == torch.float64 and not e.any()
    # a real tensor without a host view (CUDA, torch.func): one aminmax pass, no |x| array
    import semisep.backends.torch as tb

    r = torch.tensor([[-7.0, 2.0, 3.0], [1.0, -0.5, 0.25], [float("nan"), 1.0, -9.0]])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tb, "_host_view", lambda t: None)
        dev = be.amax_abs(r, axis=1)
        dev0 = be.amax_abs(r[:2], axis=0)
    assert dev[:2].tolist() == [7.0, 1.0] and bool(dev[2].isnan())
    assert torch.equal(dev0, r[:2].abs().amax(dim=0))
    assert torch.equal(be.amax_abs(r[:2], axis=1), dev[:2])  # the host-view branch agrees
    w = torch.ones(2, requires_grad=True) * 2
    assert isinstance(be.to_numpy(w), np.ndarray) and be.to_numpy(w).tolist() == [2.0, 2.0]
    assert be.to_numpy(torch.tensor([1j]).conj())[0] == -1j
    assert be.zeros((2, 3), torch.complex64, like=x).dtype == torch.complex64
    assert be.concat([x, x], axis=0).shape == (6,)
    assert be.broadcast_to(x, (2, 3)).shape == (2, 3)
    assert be.astype(x, torch.float64).dtype == torch.float64


def test_method_errors():
    be = TorchBackend()
    a = torch.ones(1, 3)
    bb = torch.ones(1, 2)
    pm = torch.full((1,), 1e-6)
    for kernel in (lambda m: be.resolvent_diagonal(a, bb, pm, m), lambda m: be.logdet(a, bb, pm, m),
                   lambda m: be.solve(a, bb, bb, a[..., None], pm, m)):
        with pytest.raises(ValueError, match="not available on the torch backend"):
            kernel("bogus")
    with pytest.raises(ValueError, match="needs CPU tensors"):
        be.resolvent_diagonal(a.to("meta"), bb.to("meta"), pm.to("meta"), "sequential")
    for bad in (0, -3, 2.5, True):  # chunk_length is a per-call keyword, checked at the call
        with pytest.raises(ValueError, match="chunk_length"):
            be.resolvent_diagonal(a, bb, pm, "chunked", chunk_length=bad)


# ------------------------------------------------------------------------------------------------
# values against dense torch.linalg
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("N", [1, 2, 3, 7, 64, 300])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", ["hermitian", "nonsym"])
def test_against_dense(N, dtype, kind):
    B = 3
    alpha, b, c, A = problem(kind, N, B, dtype, seed=N)
    eps = _eps(dtype)
    Ainv = torch.linalg.inv(A)
    cond = _cond_bound(A, Ainv)
    tol = 50 * eps * cond
    pm = _pivmin(B, dtype)
    Gd = Ainv.diagonal(dim1=-2, dim2=-1)
    sgn, lab = torch.linalg.slogdet(A)
    f = torch.randn(B, N, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    xd = torch.linalg.solve(A, f.to(A.dtype))
    be = TorchBackend()
    for L in (None, 3):
        for method in METHODS:
            G, gu, si = be.resolvent_diagonal(alpha, b * c, pm, method, chunk_length=L)
            assert G.dtype == dtype and G.shape == (B, N)
            assert gu.dtype == torch.int64 and not gu.any() and si.dtype == torch.bool and not si.any()
            err = float((G.to(Gd.dtype) - Gd).abs().max() / Gd.abs().max())
            assert err <= tol, (method, err, tol)

            ld, gu, si = be.logdet(alpha, b * c, pm, method, chunk_length=L)
            cdt = torch.complex64 if eps > 1e-10 else torch.complex128
            assert ld.dtype == cdt and ld.shape == (B,) and not si.any()
            ldc = ld.to(torch.complex128)
            assert float((ldc.real - lab).abs().max()) <= 20 * eps * cond * N
            ang = torch.angle(sgn.to(torch.complex128))
            assert float(_angle_diff(ldc.imag, ang).abs().max()) <= 20 * eps * cond * N
            pi = float(torch.tensor(math.pi, dtype=ld.real.dtype))  # pi rounded to the precision
            assert float(ld.imag.max()) <= pi and float(ld.imag.min()) > -pi

            x, gu, si = be.solve(alpha, b, c, f, pm, method, chunk_length=L)
            assert x.dtype == dtype and x.shape == (B, N, 3) and not si.any()
            err = float((x.to(xd.dtype) - xd).abs().max() / xd.abs().max())
            assert err <= tol, (method, err, tol)


def test_noncontiguous_and_batch_rows():
    """Inputs may be non-contiguous views; every batch row is independent."""
    alpha, b, c, A = problem("nonsym", 40, 4, torch.complex128)
    pm = _pivmin(4, torch.complex128)
    be = TorchBackend()
    at = alpha.t().contiguous().t()  # same values, transposed strides
    G, _, _ = be.resolvent_diagonal(at, (b * c)[:, :], pm, "chunked", chunk_length=5)
    G1 = torch.stack([be.resolvent_diagonal(alpha[i:i + 1], (b * c)[i:i + 1], pm[:1], "chunked",
                                            chunk_length=5)[0][0] for i in range(4)])
    assert torch.allclose(G, G1, rtol=1e-14, atol=0)


def test_chunked_primitives_against_twins():
    g = torch.Generator().manual_seed(3)
    for N, L in [(1, 1), (5, 2), (17, 4), (100, 7), (256, 16)]:
        m = (torch.randn(2, N, generator=g, dtype=torch.float64) * 0.9).to(torch.complex128)
        f = torch.randn(2, N, 3, generator=g, dtype=torch.complex128)
        for rev in (False, True):
            y = _affine_scan_chunked(m, f, rev, L)
            yr = _affine_scan_ref(m, f, rev)
            assert torch.allclose(y, yr, rtol=1e-12, atol=1e-12)
        alpha, b, c, _ = problem("hermitian", N, 2, torch.complex128, seed=N)
        pm = _pivmin(2, torch.complex128)
        gch, dch, mch = _pivots_chunked(alpha, b * c, pm, L)
        gr, dr, mr = _pivots_ref(alpha, b * c, pm)
        assert torch.allclose(gch, gr, rtol=1e-12) and torch.allclose(dch, dr, rtol=1e-12)
        assert torch.equal(mch, mr)


@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64], ids=str)
@pytest.mark.parametrize("kind", ["hermitian", "nonsym"])
def test_planar_pivot_sweeps_against_the_reference_loop(dtype, kind):
    """Complex problems run the chunked sweeps on real planes (Re/Im of alpha and betap, state
    (Re g, -Im g)); "nonsym" has Im betap != 0 (the Bi plane), "hermitian" a real-valued betap
    stored as complex.  Both the one-sweep form (g and the pivots d) and the two-sweep form
    (both=True: gL and the reversed sweep) are checked against the plain loop."""
    tol = 1e-12 if dtype == torch.complex128 else 2e-5
    for N, L in [(1, 1), (2, 1), (9, 4), (64, 8), (257, 16), (300, 300)]:
        alpha, b, c, _ = problem(kind, N, 3, dtype, seed=N)
        beta = b * c
        assert kind == "hermitian" or float(beta.imag.abs().max() if N > 1 else 1) > 0
        pm = _pivmin(3, dtype)
        gch, dch, mch = _pivots_chunked(alpha, beta, pm, L)
        gr, dr, mr = _pivots_ref(alpha, beta, pm)
        torch.testing.assert_close(gch, gr, rtol=tol, atol=0)
        torch.testing.assert_close(dch, dr, rtol=tol, atol=0)
        assert torch.equal(mch, mr)
        (gl, grr), none, m2 = _pivots_chunked(alpha, beta, pm, L, both=True)
        assert none is None and gl.data_ptr() != grr.data_ptr()
        gr2, _, _ = _pivots_ref(alpha.flip(1), beta.flip(1), pm)
        torch.testing.assert_close(gl, gr, rtol=tol, atol=0)
        torch.testing.assert_close(grr, gr2, rtol=tol, atol=0)
        assert not m2.any()


@pytest.mark.parametrize("rdt", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("L", [None, 1, 3, 16])
def test_shifted_chunked_sweeps_match_the_formed_alpha(rdt, L):
    """``_pivots_chunked_shifted`` writes the layouts straight from the real diagonal, the
    per-row complex shift and the real couplings (no ``alpha = diag - shift``); it must agree
    with the sweeps of the formed ``alpha`` to rounding (the shift is subtracted before the
    power-of-two scaling in both)."""
    from semisep.backends.torch.pivots import _pivots_chunked_shifted

    cdt = torch.complex128 if rdt == torch.float64 else torch.complex64
    tol = 1e-12 if rdt == torch.float64 else 2e-5
    g = torch.Generator().manual_seed(8)
    for N in (1, 2, 7, 100, 513):
        diag = (-2.0 + 2 * torch.rand(4, N, generator=g, dtype=torch.float64)).to(rdt)
        beta = (0.5 + torch.rand(4, N - 1, generator=g, dtype=torch.float64)).to(rdt)
        shift = torch.tensor([0.3 + 1e-3j, -1.0 + 0.5j, 2.5 + 1e-6j, 0.0 + 2.0j], dtype=cdt)
        pm = _pivmin(4, cdt)
        (gl, grr), _, m = _pivots_chunked_shifted(diag, shift, beta, pm, L=L, mask_none=False)
        alpha = diag.to(cdt) - shift[:, None]
        (gl2, grr2), _, m2 = _pivots_chunked(alpha, beta.to(cdt), pm, L, both=True)
        torch.testing.assert_close(gl, gl2, rtol=tol, atol=0)
        torch.testing.assert_close(grr, grr2, rtol=tol, atol=0)
        assert torch.equal(m, m2) and not m.any()


@pytest.mark.parametrize("rdt", [torch.float64, torch.float32], ids=str)
def test_fused_shifted_chunked_resolvent_against_the_reference_loop(rdt):
    """``_resolvent_chunked_shifted`` (reversed rows front-padded, G combined in the layout from
    the two sweeps' pivots) against the plain loops, for chunk lengths with and without padding,
    one chunk, and L = 1; it declines (None) a problem whose pivot needs the guard."""
    from semisep.backends.torch.pivots import _resolvent_chunked_shifted

    cdt = torch.complex128 if rdt == torch.float64 else torch.complex64
    g = torch.Generator().manual_seed(12)
    # Im z >= 0.1 keeps cond <= ~10 / 0.1, so elementwise errors stay near eps * cond
    tol = 1e-12 if rdt == torch.float64 else 5e-4
    for N in (2, 3, 17, 100, 257):
        for L in (None, 1, 2, 3, 16, 64, N, 3 * N):
            diag = (-2 + 2 * torch.rand(3, N, generator=g, dtype=torch.float64)).to(rdt)
            beta = (0.5 + torch.rand(3, N - 1, generator=g, dtype=torch.float64)).to(rdt)
            shift = torch.tensor([0.3 + 0.1j, -1.0 + 0.5j, 2.5 + 1.0j], dtype=cdt)
            pm = _pivmin(3, cdt)
            G = _resolvent_chunked_shifted(diag, shift, beta, pm, L=L)
            assert G is not None and G.dtype == cdt and G.shape == (3, N)
            alpha = diag.double() - shift.to(torch.complex128)[:, None]
            Gr = _reference_G_batch(alpha, beta.to(torch.complex128), pm)
            assert float(_rel(G, Gr).max()) < tol, (N, L)
    alpha, b, _, _ = _guard_case(rdt)  # vanishing leading minors at z = 0
    z0 = torch.zeros(1, dtype=cdt)
    pm = torch.full((1,), 7 * _eps(rdt), dtype=torch.float64)
    for L in (None, 2, 3):
        assert _resolvent_chunked_shifted(alpha, z0, b * b, pm, L=L) is None


def test_chunked_shift_form_autograd_full_gradcheck():
    """The chunked path under autograd with a real operator and a complex shift
    (``RESOLVENT_DIAGONAL_SHIFTED_CHUNKED``: layouts from diag and the shift, no alpha): full gradcheck
    in diag, the shift and beta, with chunks of 3 (padding and several chunks at N = 7), a
    shared (stride-0) beta, and only some inputs requiring grad; real leaves get real
    gradients."""
    be = TorchBackend()
    g = torch.Generator().manual_seed(31)
    B, N = 3, 7
    diag = (torch.rand(B, N, generator=g, dtype=torch.float64) * 2 + 2).requires_grad_()
    beta = (torch.rand(B, N - 1, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    shift = torch.tensor([0.3 + 0.5j, -0.2 + 0.4j, 1.0 + 0.1j], dtype=torch.complex128, requires_grad=True)
    pm = _pivmin(B, torch.complex128)

    def res(d, s, b):
        return be.resolvent_diagonal_shifted(d, s, b, pm, method="chunked", chunk_length=3)[0]

    assert torch.autograd.gradcheck(res, (diag, shift, beta))
    shared = (torch.rand(N - 1, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda d, s, b: res(d, s, b.expand(B, N - 1)), (diag, shift, shared))
    assert torch.autograd.gradcheck(lambda d: res(d, shift.detach(), beta.detach()), (diag,))
    assert torch.autograd.gradcheck(lambda s: res(diag.detach(), s, beta.detach()), (shift,))
    gd, gs, gb = torch.autograd.grad(res(diag, shift, beta).abs().sum(), (diag, shift, beta))
    assert (gd.dtype, gs.dtype, gb.dtype) == (torch.float64, torch.complex128, torch.float64)


@pytest.mark.parametrize("rdt", [torch.float64, torch.float32], ids=str)
def test_chunked_shift_form_autograd_matches_the_formed_alpha(rdt):
    """``RESOLVENT_DIAGONAL_SHIFTED_CHUNKED`` against the alpha-form chunked op
    (``RESOLVENT_DIAGONAL``): the same G (bitwise: the same sweeps), guard counts, flags and
    gradients at N = 2000 with a batch of shifts; on the guard case (vanishing leading minors at
    z = 0 + 0j) the guarded counts and G agree too.  A float32 operator at a complex128 shift
    works in double."""
    from semisep.backends.torch.autograd import RESOLVENT_DIAGONAL_SHIFTED_CHUNKED as shifted_chunked

    cdt = torch.complex128 if rdt == torch.float64 else torch.complex64
    g = torch.Generator().manual_seed(32)
    B, N = 3, 2000
    diag0 = (-2 + 2 * torch.rand(B, N, generator=g, dtype=torch.float64)).to(rdt)
    beta0 = (0.5 + torch.rand(B, N - 1, generator=g, dtype=torch.float64)).to(rdt)
    shift0 = torch.tensor([0.3 + 1e-2j, -0.5 + 0.2j, 1.0 + 1.0j], dtype=cdt)
    be = TorchBackend()
    pm = _pivmin(B, cdt)
    gbar = torch.randn(B, N, generator=g, dtype=torch.float64).to(cdt)
    out = {}
    for form in ("shift", "alpha"):
        d, s, b = (x.clone().requires_grad_() for x in (diag0, shift0, beta0))
        if form == "shift":
            G, guarded, singular = shifted_chunked(d, s, b, pm, None)
        else:
            G, guarded, singular = be.resolvent_diagonal((d - s[:, None]).to(cdt), b.to(cdt), pm, "chunked")
        G.backward(gbar)
        out[form] = (G.detach(), guarded, singular, d.grad, s.grad, b.grad)
    (G1, g1, s1, dd1, ds1, db1), (G2, g2, s2, dd2, ds2, db2) = out["shift"], out["alpha"]
    assert torch.equal(G1, G2) and torch.equal(g1, g2) and torch.equal(s1, s2)
    tol = 1e-12 if rdt == torch.float64 else 1e-4  # the backward's products in another order
    for a, b in ((dd1, dd2), (ds1, ds2), (db1, db2)):
        assert a.dtype == b.dtype
        assert float((a - b).abs().max() / b.abs().max()) < tol
    alpha, bb, _, _ = _guard_case(rdt)
    z0 = torch.zeros(1, dtype=cdt)
    pmg = torch.full((1,), 7 * _eps(rdt), dtype=torch.float64)
    d = alpha.clone().requires_grad_()
    Gs, gs_, _ = shifted_chunked(d, z0, bb * bb, pmg, 3)
    Ga, ga_, _ = TorchBackend().resolvent_diagonal(
        d.detach().to(cdt), (bb * bb).to(cdt), pmg, "chunked", chunk_length=3)
    assert int(gs_[0]) == int(ga_[0]) > 0
    assert torch.equal(Gs.detach(), Ga)
    d32 = diag0.float().requires_grad_()
    G64, _, _ = shifted_chunked(d32, shift0.to(torch.complex128), beta0.float(), pm, None)
    assert G64.dtype == torch.complex128
    G64.abs().sum().backward()
    assert d32.grad.dtype == torch.float32


@pytest.mark.parametrize("method", METHODS)
def test_float32_operator_at_a_complex128_z_runs_in_double(method):
    """A float32 T at a complex128 tensor z promotes to complex128: every method must then
    compute in double precision (the chunked shift form once ran in T's float32)."""
    import semisep as ss

    g = torch.Generator().manual_seed(6)
    d = (-2 + 2 * torch.rand(2, 500, generator=g, dtype=torch.float64)).float()
    off = torch.ones(499, dtype=torch.float32)
    z = torch.tensor(0.3 + 0.1j, dtype=torch.complex128)
    with torch.no_grad():
        G = ss.Tridiagonal(d, off).resolvent_diagonal(z, method=method)
    Gr = ss.Tridiagonal(d.double(), off.double()).resolvent_diagonal(0.3 + 0.1j, method="reference")
    assert G.dtype == torch.complex128
    assert float(_rel(G, Gr).max()) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_shifted_chunked_resolvent_through_the_public_api(dtype):
    """The no-grad chunked path with a real operator and a complex z (the shift form, planar
    sweeps) against the reference method and dense inverse; a guarded case (z = 0 + 0j on a
    matrix with vanishing leading minors: the shifted planar sweep must hand over to the guarded
    pass) and a batch of z."""
    import semisep as ss

    cdt = torch.complex128 if dtype == torch.float64 else torch.complex64
    eps = _eps(dtype)
    g = torch.Generator().manual_seed(2)
    d = (-2.0 + 2 * torch.rand(3, 400, generator=g, dtype=torch.float64)).to(dtype)
    off = torch.ones(399, dtype=dtype)
    z = torch.tensor([0.3 + 1e-2j, -0.5 + 0.2j, 1.0 + 1.0j], dtype=cdt)
    T = ss.Tridiagonal(d, off)
    with torch.no_grad():
        G, info = T.resolvent_diagonal(z, method="chunked", return_info=True)
    Gr = T.resolvent_diagonal(z, method="reference")
    assert G.dtype == cdt and not np.any(info.pivots_guarded)
    assert float(_rel(G.to(torch.complex128), Gr.to(torch.complex128)).max()) < 1e4 * eps

    alpha, b, _, A = _guard_case(dtype)
    Tg = ss.Tridiagonal(alpha[0], b[0])
    with torch.no_grad():
        Gg, info = Tg.resolvent_diagonal(torch.tensor(0j, dtype=cdt), method="chunked", return_info=True)
    assert info.total_guarded >= 2
    Gd = torch.linalg.inv(A[0]).diagonal()
    cond = float(torch.linalg.cond(A[0]))
    assert float((Gg.to(torch.complex128) - Gd).abs().max() / Gd.abs().max()) <= 100 * eps * cond


def test_host_pool_results_never_alias_and_survive_mode_changes():
    """The chunked path's scratch comes from a per-thread pool that the next call reuses: results
    must be fresh tensors (unchanged by later calls), the pool must serve inference_mode and
    normal calls alike, and release_host_pool must leave later calls working."""
    from semisep.backends.torch.pool import _host_pool, release_host_pool

    be = TorchBackend()
    alpha, b, c, _ = problem("nonsym", 200, 2, torch.complex128, seed=1)
    pm = _pivmin(2, torch.complex128)
    G1, _, _ = be.resolvent_diagonal(alpha, b * c, pm, "chunked", chunk_length=8)
    G1c = G1.clone()
    with torch.inference_mode():
        G2, _, _ = be.resolvent_diagonal(alpha * 1.5, b * c, pm, "chunked", chunk_length=8)
    assert torch.equal(G1, G1c) and len(_host_pool.free) > 0
    G3, _, _ = be.resolvent_diagonal(alpha, b * c, pm, "chunked", chunk_length=8)  # normal mode again
    assert torch.equal(G3, G1c) and not G3.is_inference()
    G3.mul_(2)  # results are ordinary tensors, writable
    Gr, _, _ = be.resolvent_diagonal(alpha * 1.5, b * c, pm, "reference")
    torch.testing.assert_close(G2, Gr, rtol=1e-12, atol=0)
    release_host_pool()
    assert _host_pool.free == []
    G4, _, _ = be.resolvent_diagonal(alpha, b * c, pm, "chunked", chunk_length=8)
    assert torch.equal(G4, G1c)


def test_pivot_renormalisation_extreme_scales():
    """The chunk transfer matrices must neither overflow nor underflow: entries near the top and
    the bottom of float64's and float32's range, and growth e^(gamma L) over long chunks."""
    for dtype, scale in [(torch.float64, 1e150), (torch.float64, 1e-150), (torch.float32, 1e18),
                         (torch.float32, 1e-18)]:
        alpha, b, c, A = problem("nonsym", 600, 2, dtype, seed=5)
        alpha, b, c = alpha * scale, b * scale, c * scale
        pm = torch.full((2,), float(torch.finfo(dtype).tiny), dtype=torch.float64)
        G, _, si = TorchBackend().resolvent_diagonal(alpha, b * c, pm, "chunked", chunk_length=300)
        Gr, _, _ = TorchBackend().resolvent_diagonal(alpha, b * c, pm, "reference")
        assert torch.isfinite(G).all() and not si.any()
        assert float(((G - Gr).abs() / Gr.abs()).max()) < 100 * _eps(dtype)


# ------------------------------------------------------------------------------------------------
# the pivot guard and the singular flag
# ------------------------------------------------------------------------------------------------
def _guard_case(dtype):
    """An invertible 7x7 matrix whose leading 1x1 and 4x4 minors vanish exactly.

    b = c = 1, alpha = [0, 1, 2, 1/2, 3, 1, 2]: the leading minors theta_k = alpha_k theta_{k-1}
    - theta_{k-2} are 0, -1, -2, 0, 2, 2, 2, so d_0 = 0 and d_3 = 0 (index 3 is a chunk boundary
    for L = 2 and L = 3) while det A = 2."""
    alpha = torch.tensor([[0.0, 1.0, 2.0, 0.5, 3.0, 1.0, 2.0]], dtype=torch.float64)
    b = torch.ones(1, 6, dtype=torch.float64)
    A = dense(alpha, b, b)
    return alpha.to(dtype), b.to(dtype), b.to(dtype), A


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128, torch.float32], ids=str)
@pytest.mark.parametrize("L", [None, 2, 3])
def test_guard_fires_and_result_is_right(dtype, L):
    alpha, b, c, A = _guard_case(dtype)
    minors = [float(torch.linalg.det(A[0, :k, :k])) for k in range(1, 8)]
    assert minors == pytest.approx([0, -1, -2, 0, 2, 2, 2], abs=1e-12)
    eps = _eps(dtype)
    pm = torch.full((1,), 7 * eps, dtype=torch.float64)  # ~ eps * ||T||, as the core sets it
    cond = float(torch.linalg.cond(A))
    Gd = torch.linalg.inv(A).diagonal(dim1=-2, dim2=-1)
    sgn, lab = torch.linalg.slogdet(A)
    f = torch.arange(1.0, 8.0, dtype=torch.float64)[None, :, None]
    xd = torch.linalg.solve(A, f)
    be = TorchBackend()
    for method in METHODS:
        G, gu, si = be.resolvent_diagonal(alpha, b * c, pm, method, chunk_length=L)
        assert int(gu[0]) >= 2 and not bool(si[0])
        # the guard perturbs the zero pivot by pivmin ~ eps ||T||: an O(eps cond) error
        assert float((G - Gd).abs().max() / Gd.abs().max()) <= 100 * eps * cond, method
        ld, gu, si = be.logdet(alpha, b * c, pm, method, chunk_length=L)
        # the chunked sweep guards; sequential and reference pivot (no guard)
        assert int(gu[0]) >= (1 if method == "chunked" else 0) and not bool(si[0])
        # log det through a guarded pivot: log(pivmin) + log(beta_0 / pivmin) cancel to O(eps cond)
        assert abs(float(ld.real[0]) - float(lab[0])) <= 100 * eps * cond * 7, method
        assert abs(float(_angle_diff(ld.imag.double(), torch.angle(sgn.to(torch.complex128)))[0])) < 1e-3
        x, gu, si = be.solve(alpha, b, c, f.to(dtype), pm, method, chunk_length=L)
        assert int(gu[0]) >= (1 if method == "chunked" else 0) and not bool(si[0])
        # backward stable by itself: sequential and reference pivot (LAPACK ?gtsv); the chunked
        # scan through a guarded pivot is only O(eps/pivmin) accurate and refines (or falls back
        # to the pivoted solve) inside the backend
        assert float((x - xd).abs().max() / xd.abs().max()) <= 100 * eps * cond, method


def _singular_params():
    # (the numpy backend's numba kernel used to raise ZeroDivisionError on an exact complex zero
    # gamma_i here; fixed on main in 75c0255, so the sequential cases are plain tests again)
    return [pytest.param(m, dt, id=f"{m}-{dt}") for m in METHODS
            for dt in (torch.float64, torch.complex128, torch.float32, torch.complex64)]


@pytest.mark.parametrize("method, dtype", _singular_params())
def test_exactly_singular_is_flagged(method, dtype):
    METHODS = [method]  # noqa: N806 - one method per test case
    be = TorchBackend()
    pm = torch.full((2,), 2 * _eps(dtype), dtype=torch.float64)
    # row 0: [[1, 1], [1, 1]];  row 1: a regular matrix next to it
    alpha = torch.tensor([[1.0, 1.0], [2.0, 1.0]]).to(dtype)
    b = torch.tensor([[1.0], [1.0]]).to(dtype)
    f = torch.ones(2, 2, 1).to(dtype)
    for method in METHODS:
        _, _, si = be.resolvent_diagonal(alpha, b * b, pm, method, chunk_length=1)
        assert si.tolist() == [True, False], method
        _, _, si = be.logdet(alpha, b * b, pm, method, chunk_length=1)
        assert si.tolist() == [True, False], method
        _, _, si = be.solve(alpha, b, b, f, pm, method, chunk_length=1)
        assert si.tolist() == [True, False], method
    # a longer singular one: a decoupled singular leading block (beta_1 = 0), N = 5
    alpha = torch.tensor([[1.0, 1.0, 3.0, 2.0, 5.0]]).to(dtype)
    bb = torch.tensor([[1.0, 0.0, 1.0, 1.0]]).to(dtype)
    pm1 = pm[:1]
    for method in METHODS:
        for L in (None, 2):
            tb = TorchBackend()
            assert bool(tb.resolvent_diagonal(alpha, bb * bb, pm1, method, chunk_length=L)[2][0]), method
            assert bool(tb.logdet(alpha, bb * bb, pm1, method, chunk_length=L)[2][0]), method
            f1 = torch.ones(1, 5, 1).to(dtype)
            assert bool(tb.solve(alpha, bb, bb, f1, pm1, method, chunk_length=L)[2][0]), method


def test_public_api_guarded_and_singular():
    """Through the core: an invertible matrix with a zero leading minor solves correctly and
    reports its guarded pivot; [[1, 1], [1, 1]] raises SingularMatrixError."""
    import semisep as ss
    from semisep.errors import SingularMatrixError

    for method in ("chunked", "reference") + (("sequential",) if HAVE_NUMBA else ()):
        T = ss.Tridiagonal(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0]))
        A = T.to_dense().double()
        x, info = T.solve(torch.tensor([1.0, 2.0, 3.0]), method=method, return_info=True)
        assert int(np.asarray(info.pivots_guarded)) >= (1 if method == "chunked" else 0)
        assert torch.allclose(x.double(), torch.linalg.solve(A, torch.tensor([1.0, 2.0, 3.0]).double()),
                              atol=1e-5)
        S = ss.Tridiagonal(torch.tensor([1.0, 1.0], dtype=torch.float64),
                           torch.tensor([1.0], dtype=torch.float64))
        for call in (lambda S=S, m=method: S.resolvent_diagonal(method=m),
                     lambda S=S, m=method: S.logdet(method=m),
                     lambda S=S, m=method: S.solve(torch.ones(2, dtype=torch.float64), method=m)):
            with pytest.raises(SingularMatrixError):
                call()


# ------------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------------
GRAD_METHODS = ["chunked"] + (["sequential"] if HAVE_NUMBA else [])


@pytest.mark.parametrize("N", [1, 2, 6])
@pytest.mark.parametrize("method", GRAD_METHODS)
def test_gradcheck_complex128(N, method):
    be = TorchBackend()
    B = 2
    alpha, b, c, _ = problem("nonsym", N, B, torch.complex128, seed=10 + N)
    f = torch.randn(B, N, 2, generator=torch.Generator().manual_seed(2), dtype=torch.complex128)
    pm = _pivmin(B, torch.complex128)
    args = [t.clone().requires_grad_() for t in (alpha, b, c, f)]
    assert torch.autograd.gradcheck(
        lambda a, b_, c_: be.resolvent_diagonal(a, b_ * c_, pm, method, chunk_length=2)[0], args[:3])
    assert torch.autograd.gradcheck(
        lambda a, b_, c_: be.logdet(a, b_ * c_, pm, method, chunk_length=2)[0], args[:3])
    assert torch.autograd.gradcheck(
        lambda a, b_, c_, f_: be.solve(a, b_, c_, f_, pm, method, chunk_length=2)[0], args)


@pytest.mark.parametrize("method", GRAD_METHODS)
def test_gradcheck_real_alpha_complex_z(method):
    """float64 diagonal, off-diagonals and right-hand side with a complex z: the kernels see
    complex inputs; the real leaves must get real gradients (torch's promotion rule)."""
    be = TorchBackend()
    B, N = 2, 7
    g = torch.Generator().manual_seed(4)
    a = (torch.rand(B, N, generator=g, dtype=torch.float64) * 2 + 2).requires_grad_()
    e = torch.rand(B, N - 1, generator=g, dtype=torch.float64).requires_grad_()
    f = torch.rand(B, N, 1, generator=g, dtype=torch.float64).requires_grad_()
    z = torch.tensor(0.3 + 0.7j, dtype=torch.complex128, requires_grad=True)
    pm = _pivmin(B, torch.complex128)
    cx = torch.complex128

    def res(a, e, z):
        return be.resolvent_diagonal(a - z, (e * e).to(cx), pm, method, chunk_length=3)[0]

    def ld(a, e, z):
        return be.logdet(a - z, (e * e).to(cx), pm, method, chunk_length=3)[0]

    def sol(a, e, z, f):
        return be.solve(a - z, e.to(cx), (2 * e).to(cx), f.to(cx), pm, method, chunk_length=3)[0]

    assert torch.autograd.gradcheck(res, (a, e, z))
    assert torch.autograd.gradcheck(ld, (a, e, z))
    assert torch.autograd.gradcheck(sol, (a, e, z, f))
    out = res(a, e, z)
    ga, ge, gz = torch.autograd.grad(out.abs().sum(), (a, e, z))
    assert ga.dtype == torch.float64 and ge.dtype == torch.float64 and gz.dtype == torch.complex128


def test_gradcheck_all_real():
    be = TorchBackend()
    B, N = 2, 5
    g = torch.Generator().manual_seed(6)
    a = (torch.rand(B, N, generator=g, dtype=torch.float64) + 3).requires_grad_()
    bb = torch.rand(B, N - 1, generator=g, dtype=torch.float64).requires_grad_()
    cc = torch.rand(B, N - 1, generator=g, dtype=torch.float64).requires_grad_()
    f = torch.rand(B, N, 2, generator=g, dtype=torch.float64).requires_grad_()
    pm = _pivmin(B, torch.float64)
    for method in GRAD_METHODS:
        assert torch.autograd.gradcheck(
            lambda a, b_, c_, m=method: be.resolvent_diagonal(a, b_ * c_, pm, m, chunk_length=2)[0],
            (a, bb, cc))
        # real matrix with a negative determinant: complex log det, real gradient of its real part
        assert torch.autograd.gradcheck(
            lambda a, b_, c_, m=method: be.logdet(a - 3.5, b_ * c_, pm, m, chunk_length=2)[0], (a, bb, cc))
        assert torch.autograd.gradcheck(
            lambda a, b_, c_, f_, m=method: be.solve(a, b_, c_, f_, pm, m, chunk_length=2)[0], (a, bb, cc, f))


def test_gradients_match_autograd_through_reference_loop():
    """The O(N) backward against ordinary autograd through the plain reference loop (N = 64,
    Hermitian T, complex z, several chunk lengths)."""
    B, N = 2, 64
    alpha, b, c, _ = problem("hermitian", N, B, torch.complex128, seed=8)
    f = torch.randn(B, N, 2, generator=torch.Generator().manual_seed(9), dtype=torch.complex128)
    w = torch.randn(B, N, generator=torch.Generator().manual_seed(10), dtype=torch.complex128)
    pm = _pivmin(B, torch.complex128)

    be = TorchBackend()

    def grads(L, method):
        a, b_, c_, f_ = (t.clone().requires_grad_() for t in (alpha, b, c, f))
        G = be.resolvent_diagonal(a, b_ * c_, pm, method, chunk_length=L)[0]
        ld = be.logdet(a, b_ * c_, pm, method, chunk_length=L)[0]
        x = be.solve(a, b_, c_, f_, pm, method, chunk_length=L)[0]
        loss = (w * G).real.sum() + (ld * (0.3 - 0.2j)).real.sum() + (x * x.conj()).real.sum()
        return torch.autograd.grad(loss, (a, b_, c_, f_))

    ref = grads(None, "reference")
    for L in (None, 1, 5, 64):
        for method in GRAD_METHODS:
            got = grads(L, method)
            for gg, rr in zip(got, ref, strict=True):
                assert torch.allclose(gg, rr, rtol=1e-10, atol=1e-12), (L, method)


def test_backward_is_the_o_n_function_and_double_backward_raises():
    alpha, b, c, _ = problem("hermitian", 20, 1, torch.complex128)
    a = alpha.clone().requires_grad_()
    pm = _pivmin(1, torch.complex128)
    be = TorchBackend()
    from semisep.backends.torch.autograd import LOGDET, RESOLVENT_DIAGONAL, SOLVE

    def node(op):  # the generated autograd Function's graph node
        return op.eager_function.__name__ + "Backward"

    G, gu, si = be.resolvent_diagonal(a, b * c, pm, "chunked")
    assert type(G.grad_fn).__name__ == node(RESOLVENT_DIAGONAL)
    assert not gu.requires_grad and not si.requires_grad
    ld = be.logdet(a, b * c, pm, "chunked")[0]
    assert type(ld.grad_fn).__name__ == node(LOGDET)
    x = be.solve(a, b, c, torch.ones(1, 20, 1, dtype=torch.complex128), pm, "chunked")[0]
    assert type(x.grad_fn).__name__ == node(SOLVE)
    with pytest.raises(RuntimeError, match="double backward"):  # raised at create_graph=True
        torch.autograd.grad((G * G).real.sum(), a, create_graph=True)


def test_directional_derivative_large_n():
    """Backward against central finite differences at N = 2^14 (complex128, Hermitian T,
    z = 0.2 + 0.3j): for a real loss L, dL[v] = Re(<grad, v>) with torch's convention."""
    B, N = 1, 2 ** 14
    g = torch.Generator().manual_seed(11)
    alpha, b, c, _ = problem("hermitian", N, B, torch.complex128, seed=12, with_dense=False)
    f = torch.randn(B, N, 1, generator=g, dtype=torch.complex128)
    w = torch.randn(B, N, generator=g, dtype=torch.complex128)
    v = [torch.randn(t.shape, generator=g, dtype=torch.complex128) for t in (alpha, b, c, f)]
    pm = _pivmin(B, torch.complex128)
    be = TorchBackend()

    def losses(a, b_, c_, f_):
        G = be.resolvent_diagonal(a, b_ * c_, pm, "chunked")[0]
        ld = be.logdet(a, b_ * c_, pm, "chunked")[0]
        x = be.solve(a, b_, c_, f_, pm, "chunked")[0]
        return [(w * G).real.sum(), ld.real.sum() + ld.imag.sum(), (x[..., 0] * w).imag.sum()]

    leaves = [t.clone().requires_grad_() for t in (alpha, b, c, f)]
    out = losses(*leaves)
    h = 1e-6
    with torch.no_grad():
        plus = losses(*[t + h * d for t, d in zip((alpha, b, c, f), v, strict=True)])
        minus = losses(*[t - h * d for t, d in zip((alpha, b, c, f), v, strict=True)])
    for k, Lk in enumerate(out):
        grads = torch.autograd.grad(Lk, leaves, retain_graph=True, allow_unused=True)
        dd = sum(float((gk.conj() * vk).real.sum())
                 for gk, vk in zip(grads, v, strict=True) if gk is not None)
        fd = float(plus[k] - minus[k]) / (2 * h)
        assert abs(dd - fd) <= 1e-6 * max(1.0, abs(fd)), (k, dd, fd)


def test_public_api_gradcheck():
    """Through ss.Tridiagonal with torch tensors: gradients reach diag, lower, upper and z (fast_mode:
    a random projection of the Jacobian, since every call goes through the core's validation; the
    kernels themselves get the full gradcheck above)."""
    import semisep as ss

    g = torch.Generator().manual_seed(13)
    N = 6
    d = (torch.rand(2, N, generator=g, dtype=torch.float64) + 2).requires_grad_()
    lo = torch.rand(2, N - 1, generator=g, dtype=torch.float64).requires_grad_()
    up = torch.rand(2, N - 1, generator=g, dtype=torch.float64).requires_grad_()
    z = torch.tensor(0.4 + 0.6j, dtype=torch.complex128, requires_grad=True)
    rhs = torch.rand(2, N, generator=g, dtype=torch.float64).requires_grad_()
    for method in GRAD_METHODS:
        assert torch.autograd.gradcheck(
            lambda d, lo, up, z, m=method: ss.Tridiagonal(d, lo, up).resolvent_diagonal(z, method=m),
            (d, lo, up, z),
            fast_mode=True)
        assert torch.autograd.gradcheck(
            lambda d, lo, up, z, m=method: ss.Tridiagonal(d, lo, up).logdet(z, method=m), (d, lo, up, z),
            fast_mode=True)
        assert torch.autograd.gradcheck(
            lambda d, lo, up, z, r, m=method: ss.Tridiagonal(d, lo, up).solve(r, z, method=m),
            (d, lo, up, z, rhs),
            fast_mode=True)


# ------------------------------------------------------------------------------------------------
# large N: chunked against the sequential reference
# ------------------------------------------------------------------------------------------------
def _chain(N, disorder, z, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(1, N, generator=g, dtype=torch.float64) * 2 - 1
    if not disorder:
        v = torch.zeros_like(v)
    alpha = (-2.0 + v) - z
    beta = torch.ones(1, N - 1, dtype=torch.complex128)
    return alpha, beta


def _reference_G(alpha, beta, pm):
    a2 = torch.cat([alpha, alpha.flip(1)])
    b2 = torch.cat([beta, beta.flip(1)])
    g, _, _ = _pivots_ref(a2, b2, torch.cat([pm, pm]))
    return _resolvent_ref_combine(alpha, beta, g[:1], g[1:].flip(1))


def _reference_G_batch(alpha, beta, pm):
    """G of every row by the plain loops (LU and UL sweeps, then the combine)."""
    gl, _, _ = _pivots_ref(alpha, beta, pm)
    gr, _, _ = _pivots_ref(alpha.flip(1), beta.flip(1), pm)
    return _resolvent_ref_combine(alpha, beta, gl, gr.flip(1))


def _rel(G, Gref):
    return (G.to(Gref.dtype) - Gref).abs() / Gref.abs()


def _sequential_G(alpha, beta, pm):
    """The independent sequential sweep: numba where available, else the reference loop."""
    if HAVE_NUMBA:
        return TorchBackend().resolvent_diagonal(alpha, beta, pm, "sequential")[0]
    return _reference_G(alpha, beta, pm)


def test_chunked_vs_reference_disordered_2_17():
    """Disordered chain diag = -2 + U(-1, 1), off-diagonals 1, z = 0.3 + 1e-3 j, N = 2^17.

    complex128: chunked against the plain torch reference loop, max relative error asserted
    <= 1e-10 (measured 4.1e-12, median 1.6e-16).  complex64: chunked against the complex128
    reference (the truth, so a stronger test than against a complex64 loop), median relative
    asserted <= 1e-4 (measured 1.5e-7), and no worse than 4x the sequential complex64 sweep's
    own median error (measured 1.1e-7).  The worst entries are not as good: max 1.2e-3 chunked
    vs 7.7e-5 sequential, at the few sites where |G_ii| is tiny (relative error of a small
    number); not asserted beyond the median, reported here and in the printout."""
    N = 2 ** 17
    alpha, beta = _chain(N, True, 0.3 + 1e-3j)
    pm = torch.full((1,), 1e-300, dtype=torch.float64)
    ref128 = _reference_G(alpha, beta, pm)
    G128, gu, si = TorchBackend().resolvent_diagonal(alpha, beta, pm, "chunked")
    assert not gu.any() and not si.any()
    r = _rel(G128, ref128)
    assert float(r.max()) <= 1e-10
    a64, b64, pm64 = alpha.to(torch.complex64), beta.to(torch.complex64), torch.full((1,), 1e-37)
    G64, _, _ = TorchBackend().resolvent_diagonal(a64, b64, pm64, "chunked")
    assert G64.dtype == torch.complex64
    r_ch = _rel(G64, ref128)
    assert float(r_ch.median()) <= 1e-4
    r_seq = _rel(_sequential_G(a64, b64, pm64), ref128)
    print(f"\ndisordered 2^17: c128 max {float(r.max()):.2e} median {float(r.median()):.2e}; "
          f"c64 vs c128 truth: chunked median {float(r_ch.median()):.2e} max {float(r_ch.max()):.2e}, "
          f"sequential median {float(r_seq.median()):.2e} max {float(r_seq.max()):.2e}")
    assert float(r_ch.median()) <= 4 * float(r_seq.median()) + 1e-7


def test_clean_chain_inside_band_2_17():
    """Clean chain (no disorder), z = 0.5 + 1e-3 j inside the band: G does not decay, so a
    full-length scan loses ~N eps (DESIGN.md quotes 2e-2 in complex64 at 2^18).  The chunked form
    carries only a log-depth scan of N/L chunk products, then at most L sequential steps.

    Measured against the complex128 sequential sweep (numba; 2-core CPU, N = 2^17):
    complex128: max 6.9e-16, median 6.7e-16;  complex64: max 1.7e-07, median 5.0e-08 relative.
    Asserted: 100 eps for the max relative error in both precisions (eps = 2.2e-16 / 1.2e-7),
    i.e. no growth with N at all -- a scan whose error grew like N eps would exceed it by 1000x.
    """
    N = 2 ** 17
    alpha, beta = _chain(N, False, 0.5 + 1e-3j)
    pm = torch.full((1,), 1e-300, dtype=torch.float64)
    ref = _sequential_G(alpha, beta, pm)
    G128 = TorchBackend().resolvent_diagonal(alpha, beta, pm, "chunked")[0]
    G64 = TorchBackend().resolvent_diagonal(alpha.to(torch.complex64), beta.to(torch.complex64),
                                            torch.full((1,), 1e-37), "chunked")[0]
    r128, r64 = _rel(G128, ref), _rel(G64, ref)
    print(f"\nclean chain 2^17: c128 max {float(r128.max()):.2e} median {float(r128.median()):.2e}; "
          f"c64 max {float(r64.max()):.2e} median {float(r64.median()):.2e}")
    assert float(r128.max()) <= 100 * _eps(torch.complex128)
    assert float(r64.max()) <= 100 * _eps(torch.complex64)


def test_logdet_and_solve_large_n_chunked_vs_sequential():
    """logdet and solve at N = 2^16 on the disordered chain: chunked vs the sequential sweep
    (numba where available, else the reference loop on a shorter prefix)."""
    N = 2 ** 16 if HAVE_NUMBA else 2 ** 12
    alpha, beta = _chain(N, True, 0.3 + 1e-3j, seed=3)
    b = torch.ones(1, N - 1, dtype=torch.complex128)
    f = torch.randn(1, N, 2, generator=torch.Generator().manual_seed(1), dtype=torch.complex128)
    pm = torch.full((1,), 1e-300, dtype=torch.float64)
    other = "sequential" if HAVE_NUMBA else "reference"
    be = TorchBackend()
    ld, _, _ = be.logdet(alpha, beta, pm, "chunked")
    ld2, _, _ = be.logdet(alpha, beta, pm, other)
    assert abs(float(ld.real[0] - ld2.real[0])) <= 1e-12 * N
    assert abs(float(_angle_diff(ld.imag, ld2.imag)[0])) <= 1e-12 * N
    x, _, _ = be.solve(alpha, b, b, f, pm, "chunked")
    x2, _, _ = be.solve(alpha, b, b, f, pm, other)
    assert float((x - x2).abs().max() / x2.abs().max()) <= 1e-10


def test_public_api_batch_shapes_against_numpy_backend():
    """Batch shape (2, 3) with a broadcast z of shape (1, 3), symmetric real T: every torch method
    against the numpy backend through ss.Tridiagonal, including ``indices=`` (base-class gather)."""
    import semisep as ss

    g = torch.Generator().manual_seed(21)
    d = torch.randn(2, 3, 40, generator=g, dtype=torch.float64)
    e = torch.randn(39, generator=g, dtype=torch.float64)
    z = torch.tensor([[0.1 + 0.5j, -0.3 + 0.2j, 1j]])
    T = ss.Tridiagonal(d, e)
    Tn = ss.Tridiagonal(d.numpy(), e.numpy())
    Gn = Tn.resolvent_diagonal(z.numpy())
    ldn = Tn.logdet(z.numpy())
    rhs = torch.randn(2, 3, 40, 2, generator=g, dtype=torch.float64)
    xn = Tn.solve(rhs.numpy(), z.numpy())
    from semisep import reference as ref

    A = ref.tridiagonal_to_dense(d.numpy(), e.numpy(), None, z.numpy())
    G_dense = np.diagonal(np.linalg.inv(A), axis1=-2, axis2=-1)
    tol = 50 * np.finfo(np.float64).eps * 40 * np.linalg.cond(A.reshape(-1, 40, 40)).max()
    assert tol < 1e-9
    for method in METHODS:
        G = T.resolvent_diagonal(z, method=method)
        assert G.shape == (2, 3, 40) and G.dtype == torch.complex128
        assert np.abs(G.numpy() - Gn).max() <= 1e-12 * np.abs(Gn).max()
        ld = T.logdet(z, method=method)
        assert np.abs(ld.real.numpy() - ldn.real).max() <= 1e-11
        assert np.abs(np.angle(np.exp(1j * (ld.imag.numpy() - ldn.imag)))).max() <= 1e-11
        x = T.solve(rhs, z, method=method)
        assert x.shape == (2, 3, 40, 2) and np.abs(x.numpy() - xn).max() <= 1e-12 * np.abs(xn).max()
        Gi = T.resolvent_diagonal(z, method=method, indices=np.array([0, 17, 39]))
        # the selected entries against the dense inverse (independent of every kernel here)
        assert Gi.shape == (2, 3, 3)
        assert np.abs(Gi.numpy() - G_dense[..., [0, 17, 39]]).max() <= tol * np.abs(G_dense).max()
        if method == "chunked":  # the full no-grad diagonal combines the pivots in the chunk
            # layout (G = 1/(dL + dR - alpha)), the selected one as gL / (1 - beta gL gR)
            torch.testing.assert_close(Gi, G[..., [0, 17, 39]], rtol=1e-13, atol=0)



def _loss_all(d, z):
    import semisep as ss

    T = ss.Tridiagonal(d, torch.ones(d.shape[-1] - 1, dtype=d.dtype))
    return (T.resolvent_diagonal(z).abs().sum() + T.logdet(z).real
            + T.solve(torch.ones_like(d), z).real.sum())


def test_torch_compile():
    """torch.compile (default backend, graph breaks allowed) of the three operations with a
    tensor z; values and gradients as in eager mode (tests/test_torch_compile.py has more)."""
    d1 = torch.linspace(-2.5, -1.5, 6, dtype=torch.float64, requires_grad=True)
    z1 = torch.tensor(0.1 + 0.5j, requires_grad=True)
    d2 = d1.detach().clone().requires_grad_(True)
    z2 = z1.detach().clone().requires_grad_(True)
    torch.compile(_loss_all)(d1, z1).backward()
    _loss_all(d2, z2).backward()
    assert torch.allclose(d1.grad, d2.grad, rtol=1e-12, atol=0)
    assert torch.allclose(z1.grad, z2.grad, rtol=1e-12, atol=0)


def test_chunk_layout_matches_plain_construction():
    """The fused scaled transposing copy (``_chunk_layout``) equals pad-then-reshape, for every
    offset / chunk-length / padding combination at small N, lazy (callable) parts included."""
    from semisep.backends.torch.chunks import _chunk_layout

    g = torch.Generator().manual_seed(3)
    for N in range(1, 24):
        for L in range(1, N + 1):
            nc = -(-N // L)
            for offset, n in ((0, N), (1, N - 1)):
                if n < 1:
                    continue
                p1 = torch.randn(2, n, dtype=torch.complex128, generator=g)
                p2 = torch.randn(3, n, dtype=torch.complex128, generator=g)
                rs = torch.rand(5, dtype=torch.float64, generator=g)
                flat = torch.full((5, nc * L), 7.0, dtype=torch.complex128)
                flat[:, offset:offset + n] = torch.cat([p1, p2]) * rs[:, None]
                want = flat.view(5, nc, L).permute(2, 0, 1)
                got = _chunk_layout([p1, (3, lambda p2=p2: p2)], offset, N, L, nc, 7.0, rs)
                assert torch.equal(got, want), (N, L, offset)


@pytest.mark.parametrize("L", [1, 2, 3, None])
def test_affine_scan_chunked_leaves_inputs_alone(L):
    """The chunked scan runs in place on its chunk layout; that layout must never alias ``f``
    (with L == 1 or one chunk, ``_to_chunks`` returns a view)."""
    g = torch.Generator().manual_seed(4)
    m = torch.randn(2, 9, dtype=torch.float64, generator=g)
    f = torch.randn(2, 9, 2, dtype=torch.float64, generator=g)
    f0 = f.clone()
    for reverse in (False, True):
        y = _affine_scan_chunked(m, f, reverse, L)
        torch.testing.assert_close(y, _affine_scan_ref(m, f0, reverse), rtol=1e-12, atol=1e-12)
        assert torch.equal(f, f0)


@pytest.mark.parametrize("complex_diag", [False, True])
def test_shift_form_matches_numpy_backend_with_and_without_grad(complex_diag):
    """The torch backend's shift form: without autograd the NumPy kernel on zero-copy views
    (a shared off-diagonal broadcast over a batch of z), with autograd alpha formed and the
    autograd Function run; both equal the NumPy backend, and pivmin is the NumPy backend's."""
    import semisep as ss

    rng = np.random.default_rng(11)
    n = 300
    d = -2.0 + rng.uniform(-1, 1, n)
    if complex_diag:
        d = d + 0.1j * rng.standard_normal(n)
    off = rng.uniform(0.5, 1.0, n - 1)
    z = np.array([0.1 + 1e-2j, -0.4 + 0.3j, 1.5 + 1j])
    G_np, info_np = ss.Tridiagonal(d, off).resolvent_diagonal(z, return_info=True)
    td = torch.tensor(d)
    with torch.no_grad():
        G_t, info_t = ss.Tridiagonal(td, torch.tensor(off)).resolvent_diagonal(
            torch.tensor(z), return_info=True
        )
    assert np.array_equal(info_t.pivmin, info_np.pivmin)
    np.testing.assert_allclose(G_t.numpy(), G_np, rtol=1e-13, atol=0)
    td.requires_grad_(True)
    zt = torch.tensor(z, requires_grad=True)
    G_g = ss.Tridiagonal(td, torch.tensor(off)).resolvent_diagonal(zt)
    np.testing.assert_allclose(G_g.detach().numpy(), G_np, rtol=1e-12, atol=0)
    G_g.abs().sum().backward()
    assert td.grad is not None and zt.grad is not None and torch.isfinite(zt.grad).all()


@pytest.mark.skipif(not HAVE_NUMBA, reason="the compiled kernels are not importable")
def test_sequential_autograd_full_gradcheck_through_the_public_api():
    """The CPU autograd path (compiled with-pivots kernel and in-place backward) through
    ss.Tridiagonal, full gradcheck: complex diag and off-diagonals, a batch of z values, a
    shared (stride-0) real off-diagonal, and diag alone requiring grad."""
    import semisep as ss

    g = torch.Generator().manual_seed(21)
    N = 7
    cx = torch.complex128
    d = (torch.rand(3, N, generator=g, dtype=torch.float64) + 2).to(cx).requires_grad_()
    lo = (torch.rand(3, N - 1, generator=g, dtype=torch.float64) * (1 + 0.3j)).requires_grad_()
    up = torch.rand(3, N - 1, generator=g, dtype=torch.float64).to(cx).requires_grad_()
    z = torch.tensor([0.3 + 0.5j, -0.2 + 0.4j, 1.0 + 0.1j], dtype=cx, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda d, lo, up, z: ss.Tridiagonal(d, lo, up).resolvent_diagonal(z, method="sequential"),
        (d, lo, up, z))
    dr = (torch.rand(3, N, generator=g, dtype=torch.float64) + 2).requires_grad_()
    shared = torch.rand(N - 1, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda dr, sh, z: ss.Tridiagonal(dr, sh).resolvent_diagonal(z, method="sequential"),
        (dr, shared, z))
    zr = torch.tensor([-4.5, 0.25, 5.0], dtype=torch.float64, requires_grad=True)  # all real
    assert torch.autograd.gradcheck(
        lambda dr, sh, zr: ss.Tridiagonal(dr, sh).resolvent_diagonal(zr, method="sequential"),
        (dr, shared, zr))
    G = ss.Tridiagonal(dr, shared.detach()).resolvent_diagonal(z.detach(), method="sequential")
    torch.view_as_real(G).square().sum().backward()
    assert dr.grad is not None and dr.grad.dtype == torch.float64 and shared.grad is None


@pytest.mark.skipif(not HAVE_NUMBA, reason="needs the compiled kernels")
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_no_grad_and_autograd_forward_agree_bitwise(dtype):
    """On CPU the no-grad call and the autograd forward run compiled kernels that form G with the
    same steps in the same order: the values are identical bit for bit (alpha and shift forms)."""
    from semisep import Tridiagonal

    g = torch.Generator().manual_seed(3)
    d, lo, up = (torch.randn(5, n, generator=g, dtype=torch.float64).to(dtype) for n in (301, 300, 300))
    for z in (0.0, 0.2 + 0.05j):
        G0 = Tridiagonal(d, lo, up).resolvent_diagonal(z)
        dg = d.clone().requires_grad_()
        G1 = Tridiagonal(dg, lo, up).resolvent_diagonal(z)
        assert torch.equal(G0, G1.detach())
