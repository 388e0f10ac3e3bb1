"""Numerical reliability at the edges: no wrong answer, no silent NaN, no silent zero gradient.

Every check compares with a dense or LAPACK reference, or expects the documented error:

* ``solve`` is backward stable like LAPACK ``?gtsv`` (partial pivoting) on the hard cases --
  tiny pivots, zero leading minors, non-symmetric, indefinite -- on NumPy and torch ("auto",
  "chunked", "reference"), also inside ``TridiagonalPlusLowRank``;
* a well-conditioned matrix gives the right answer at any scale the dtype holds (1e-300 ..
  1e300 in float64), and a singular one raises at any scale;
* ``TridiagonalPlusLowRank`` certifies a singular ``H - zI`` whatever r;
* ``check_factorization`` never passes NaN or overflowed norms;
* torch: double backward and forward-mode AD raise (or, on "reference", are right);
  the reference gradient through a zero leading minor is right;
* the numba helpers' Python fallbacks (``NUMBA_DISABLE_JIT=1``) compute the same thing.

A hypothesis family draws matrices across scales, pivots and near-singularity (bounded by the
CI profile of tests/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.linalg.lapack as lapack
from hypothesis import given
from hypothesis import strategies as st

import semisep as ss
from semisep.errors import NonFiniteError, SingularMatrixError
from semisep.factorize import check_factorization

torch = pytest.importorskip("torch")

TORCH_METHODS = ("auto", "chunked", "reference")


def dense(d, lo, up):
    n = len(d)
    A = np.diag(np.asarray(d, dtype=np.result_type(d, lo, up)))
    if n > 1:
        A = A + np.diag(lo, -1) + np.diag(up, 1)
    return A


def backward_error(A, x, f):
    """Normwise backward error ``||A x - f|| / (||A|| ||x|| + ||f||)`` (inf-norms)."""
    r = A @ x - f
    return np.linalg.norm(r, np.inf) / (np.linalg.norm(A, np.inf) * np.linalg.norm(x, np.inf)
                                        + np.linalg.norm(f, np.inf))


def hard_cases(n, rng):
    """The classic hard cases for elimination without row exchanges (all invertible)."""
    ones = np.ones(n - 1)
    d = rng.uniform(-1, 1, n)
    out = {"nonsymmetric": (d, rng.uniform(-1, 1, n - 1), rng.uniform(-1, 1, n - 1))}
    d1 = 2 + rng.uniform(0, 1, n)
    d1[0] = 1e-10
    out["tiny first pivot"] = (d1, ones, ones)
    d2 = np.full(n, 3.0)
    d2[:2] = 0.0
    d2[2] = 1.0
    out["zero leading minors"] = (d2, ones, ones)
    out["indefinite"] = (np.where(np.arange(n) % 2 == 0, 1e-9, -1e-9), ones, ones)
    base = np.tile([1.0, 1.0, 1.0, 2.0, 3.0], n // 5 + 1)[:n] - 1e-12
    out["tiny pivot (issue example)"] = (base, ones, ones)
    return out


def solve_with(backend, method, d, lo, up, f):
    if backend == "numpy":
        return ss.Tridiagonal(d, lo, up).solve(f)
    T = ss.Tridiagonal(torch.as_tensor(d), torch.as_tensor(lo), torch.as_tensor(up))
    return T.solve(torch.as_tensor(f), method=method).numpy()


BACKENDS = [("numpy", "auto")] + [("torch", m) for m in TORCH_METHODS]


@pytest.mark.parametrize("n", [5, 200])
@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("which,method", BACKENDS)
def test_solve_backward_stable_like_gtsv(n, cplx, which, method):
    rng = np.random.default_rng(n)
    for name, (d, lo, up) in hard_cases(n, rng).items():
        if cplx:
            d, lo, up = (np.asarray(v) * (1 + 0.5j) for v in (d, lo, up))
        f = np.arange(1, n + 1).astype(d.dtype)
        gtsv = lapack.zgtsv if cplx else lapack.dgtsv
        _, _, _, xg, info = gtsv(lo.copy(), d.copy(), up.copy(), f.copy())
        assert info == 0
        A = dense(d, lo, up)
        x = solve_with(which, method, d, lo, up, f)
        eps = np.finfo(np.float64).eps
        berr, berr_g = backward_error(A, x, f), backward_error(A, xg, f)
        assert berr <= max(10 * berr_g, 4 * eps), (name, berr, berr_g)
        cond = np.linalg.cond(A, np.inf)
        xd = np.linalg.solve(A, f)
        assert np.max(np.abs(x - xd)) <= 100 * eps * cond * np.max(np.abs(xd)), name


def test_issue_examples_solve():
    x = ss.Tridiagonal([1.0, 1, 1, 2, 3], np.ones(4)).solve(np.arange(1.0, 6), z=1e-12)
    A = dense(np.array([1.0, 1, 1, 2, 3]) - 1e-12, np.ones(4), np.ones(4))
    xd = np.linalg.solve(A, np.arange(1.0, 6))
    assert np.max(np.abs(x - xd)) / np.max(np.abs(xd)) < 1e-14
    d = 2 + np.random.default_rng(1).uniform(0, 1, 1000)
    d[0] = 1e-10
    T = ss.Tridiagonal(d, np.ones(999))
    f = np.ones(1000)
    xd = np.linalg.solve(T.to_dense(), f)
    assert np.max(np.abs(T.solve(f) - xd)) / np.max(np.abs(xd)) < 1e-13


@pytest.mark.parametrize("cplx", [False, True])
def test_lowrank_solve_and_resolvent_through_tiny_pivot(cplx):
    """The Woodbury solves pivot: a tiny pivot of T (the fused sweeps' element growth) sends
    the call to the composed path, whose solves are backward stable."""
    rng = np.random.default_rng(3)
    n, r = 60, 3
    d = 2 + rng.uniform(0, 1, n)
    d[0] = 1e-11
    U, V = rng.standard_normal((n, r)) * 0.1, rng.standard_normal((n, r)) * 0.1
    z = 0.05j if cplx else 0.0
    H = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, np.ones(n - 1)), U, V)
    Hd = H.to_dense() - z * np.eye(n)
    f = rng.standard_normal(n)
    xd = np.linalg.solve(Hd, f)
    cond = np.linalg.cond(Hd)
    eps = np.finfo(float).eps
    assert np.max(np.abs(H.solve(f, z) - xd)) <= 10 * eps * cond * np.max(np.abs(xd))
    Gd = np.diag(np.linalg.inv(Hd))
    assert np.max(np.abs(H.resolvent_diagonal(z) - Gd)) <= 10 * eps * cond * np.max(np.abs(Gd))


# ------------------------------------------------------------------------------------------------
# scale
# ------------------------------------------------------------------------------------------------
def well_conditioned(n, rng, cplx):
    d = 4 + rng.uniform(-1, 1, n)
    lo, up = rng.uniform(0.5, 1, n - 1), rng.uniform(0.5, 1, n - 1)
    if cplx:
        d = d * np.exp(0.3j)
    return d, lo, up


SCALES64 = [1e-300, 1e-250, 1e-160, 1e-100, 1.0, 1e100, 1e160, 1e250, 1e300]


@pytest.mark.parametrize("scale", SCALES64)
@pytest.mark.parametrize("cplx", [False, True])
def test_well_conditioned_any_scale_float64(scale, cplx):
    rng = np.random.default_rng(7)
    n = 7
    d, lo, up = well_conditioned(n, rng, cplx)
    A1 = dense(d, lo, up)
    Ginv1 = np.linalg.inv(A1)
    T = ss.Tridiagonal(d * scale, lo * scale, up * scale)
    G = T.resolvent_diagonal()
    assert np.all(np.isfinite(G))
    assert np.allclose(G * scale, np.diag(Ginv1), rtol=1e-12, atol=0)
    Gi = T.resolvent_diagonal(indices=[0, 3, 6])
    assert np.allclose(Gi * scale, np.diag(Ginv1)[[0, 3, 6]], rtol=1e-12, atol=0)
    ld = T.logdet()
    sign, lab = np.linalg.slogdet(A1)
    true = lab + n * np.log(scale) + (np.log(sign) if cplx else 0)
    assert abs(ld - true) <= 1e-12 * max(1.0, abs(true))
    f = rng.standard_normal(n)
    x = T.solve(f)
    assert np.allclose(x * scale, Ginv1 @ f, rtol=1e-12, atol=1e-12 * np.abs(Ginv1 @ f).max())


@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1.0, 1e200, 1e300])
@pytest.mark.parametrize("method", TORCH_METHODS)
def test_well_conditioned_any_scale_torch(scale, method):
    rng = np.random.default_rng(8)
    n = 6
    d, lo, up = well_conditioned(n, rng, False)
    Ginv1 = np.linalg.inv(dense(d, lo, up))
    T = ss.Tridiagonal(*(torch.as_tensor(v * scale) for v in (d, lo, up)))
    G = T.resolvent_diagonal(method=method).numpy()
    assert np.allclose(G * scale, np.diag(Ginv1), rtol=1e-11, atol=0)
    ld = complex(T.logdet(method=method))
    true = np.linalg.slogdet(dense(d, lo, up))[1] + n * np.log(scale)
    assert abs(ld - true) <= 1e-11 * max(1.0, abs(true))
    f = rng.standard_normal(n)
    x = T.solve(torch.as_tensor(f), method=method).numpy()
    assert np.allclose(x * scale, Ginv1 @ f, rtol=1e-11, atol=1e-11 * np.abs(Ginv1 @ f).max())


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1.0, 1e20, 1e30])
def test_well_conditioned_any_scale_float32(scale):
    rng = np.random.default_rng(9)
    n = 6
    d, lo, up = well_conditioned(n, rng, False)
    Ginv1 = np.linalg.inv(dense(d, lo, up))
    T = ss.Tridiagonal(*((v * scale).astype(np.float32) for v in (d, lo, up)))
    G = T.resolvent_diagonal()
    assert G.dtype == np.float32
    assert np.allclose(G * np.float64(scale), np.diag(Ginv1), rtol=1e-4, atol=0)
    x = T.solve(np.ones(n, np.float32))
    assert np.allclose(x * np.float64(scale), Ginv1.sum(1), rtol=1e-4, atol=1e-4)


def test_issue_scale_examples():
    T = ss.Tridiagonal(np.full(3, 2e-200), np.full(2, 1e-200))
    assert np.allclose(T.resolvent_diagonal() * 1e-200, [0.75, 1.0, 0.75], rtol=1e-14)
    assert np.isclose(T.logdet(), 3 * np.log(1e-200) + np.log(4.0), rtol=1e-14)
    with pytest.raises(SingularMatrixError):
        ss.Tridiagonal(np.ones(2) * 1e-170, np.ones(1) * 1e-170).solve(np.ones(2))
    with pytest.raises(SingularMatrixError):
        ss.Tridiagonal(np.ones(2) * 1e-170, np.ones(1) * 1e-170).resolvent_diagonal()
    T = ss.Tridiagonal(np.full(3, 2e155), np.full(2, 1e155))
    assert np.allclose(T.resolvent_diagonal() * 1e155, [0.75, 1.0, 0.75], rtol=1e-14)
    assert np.allclose(T.solve(np.ones(3)) * 1e155, [0.5, 0.0, 0.5], atol=1e-14)
    for method in TORCH_METHODS:
        f64 = torch.float64
        Tt = ss.Tridiagonal(torch.full((3,), 2e155, dtype=f64), torch.full((2,), 1e155, dtype=f64))
        G = Tt.resolvent_diagonal(method=method).numpy()
        assert np.allclose(G * 1e155, [0.75, 1.0, 0.75], rtol=1e-13)
    # extreme z: log det(1 - z) for a decoupled 2 x 2, z = 1e308 (1 + i)
    ld = ss.Tridiagonal(np.ones(2), np.zeros(1)).logdet(1e308 + 1e308j)
    true = 2 * np.log(complex(1 - 1e308, -1e308))
    wrapped = true.real + 1j * np.angle(np.exp(1j * true.imag))
    assert np.isfinite(ld) and abs(ld - wrapped) < 1e-12 * abs(true)


@pytest.mark.parametrize("which", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_zero_matrix_raises_everywhere(which, dtype):
    """An all-zero A (also at z = 0j, N = 1, through indices=) raises, never NaN/inf."""
    for n in (1, 3):
        d, o = np.zeros(n, dtype), np.zeros(n - 1, dtype)
        if which == "torch":
            d, o = torch.as_tensor(d), torch.as_tensor(o)
        T = ss.Tridiagonal(d, o)
        z = 0j if dtype == "complex128" else 0.0
        calls = (T.resolvent_diagonal, T.logdet, lambda zz, T=T, d=d: T.solve(d + 1, zz),
                 lambda zz, T=T: T.resolvent_diagonal(zz, indices=[0]))
        for call in calls:
            with pytest.raises(SingularMatrixError):
                call(z)


# ------------------------------------------------------------------------------------------------
# T + U V^T certificate
# ------------------------------------------------------------------------------------------------
def test_lowrank_singular_H_raises_whatever_r():
    T = ss.Tridiagonal(np.full(4, 2.0), np.ones(3))
    u = np.zeros((4, 1))
    u[0, 0] = 1.0
    H = ss.TridiagonalPlusLowRank(T, u, -1.25 * u)
    assert abs(np.linalg.det(H.to_dense())) < 1e-14
    for call in (H.resolvent_diagonal, H.logdet, lambda: H.solve(np.ones(4))):
        with pytest.raises(SingularMatrixError):
            call()
    # r = 2 with a singular H, and a nearby regular one that passes
    rng = np.random.default_rng(0)
    U = rng.standard_normal((4, 2))
    Hd = T.to_dense()
    for shift, singular in ((0.0, True), (0.3, False)):
        # choose V so that H = T + U V^T has eigenvalue `shift`... via a rank-one deflation
        w = np.linalg.solve(Hd, U[:, 0])  # T w = U[:, 0]
        V = np.zeros((4, 2))
        V[:, 0] = -w / (w @ w) * (1.0 - shift)
        H2 = ss.TridiagonalPlusLowRank(T, U, V)
        if singular:
            with pytest.raises(SingularMatrixError):
                H2.logdet()
        else:
            sign, lab = np.linalg.slogdet(H2.to_dense())
            assert np.isclose(H2.logdet(), lab + (0 if sign > 0 else 1j * np.pi))


# ------------------------------------------------------------------------------------------------
# check_factorization
# ------------------------------------------------------------------------------------------------
def test_check_factorization_is_scale_safe_and_never_passes_nan():
    rng = np.random.default_rng(0)
    H = rng.standard_normal((6, 6))
    H = H + H.T
    zero = ss.Tridiagonal(np.zeros(6), np.zeros(5))
    for s in (1e-310, 1e-300, 1.0, 1e300):
        rep = check_factorization(H * s, zero)
        assert rep.relative_error == pytest.approx(1.0) and not rep.passes
    # an exact (tridiagonal) factorization passes at every scale, a 29% wrong one fails
    d, lo = np.diag(H).copy(), np.diag(H, -1).copy()
    Ht = dense(d, lo, lo)
    for s in (1e-310, 1e-300, 1.0, 1e300):
        assert check_factorization(Ht * s, ss.Tridiagonal(d * s, lo * s)).passes
        rep = check_factorization(Ht * s, ss.Tridiagonal(d * s * 1.29, lo * s * 1.29))
        assert rep.relative_error == pytest.approx(0.29) and not rep.passes
    with pytest.raises(NonFiniteError):
        check_factorization(H * np.nan, zero)
    # factorize itself works at any scale (2^k H factorized, then scaled back exactly)
    base = check_factorization(H, ss.factorize(H, rank=5)).relative_error
    for s in (1e-300, 1e300):
        rel = check_factorization(H * s, ss.factorize(H * s, rank=5)).relative_error
        assert rel <= 10 * base + 1e-14


# ------------------------------------------------------------------------------------------------
# torch autograd at the edges
# ------------------------------------------------------------------------------------------------
def _torch_T(diag, lower, requires_grad=True):
    d = torch.tensor(diag, dtype=torch.float64, requires_grad=requires_grad)
    return d, ss.Tridiagonal(d, torch.tensor(lower, dtype=torch.float64))


def test_reference_logdet_gradient_through_zero_leading_minor():
    d, T = _torch_T([0.0, 0.0, 1.0, 2.0, 1.5], [1.0] * 4)
    (g,) = torch.autograd.grad(T.logdet(method="reference").real, d)
    true = np.diag(np.linalg.inv(T.to_dense().detach().numpy()))
    assert np.allclose(g.numpy(), true, atol=1e-12)
    for method in ("auto", "chunked"):
        d2, T2 = _torch_T([0.0, 0.0, 1.0, 2.0, 1.5], [1.0] * 4)
        (g2,) = torch.autograd.grad(T2.logdet(method=method).real, d2)
        assert np.allclose(g2.numpy(), true, atol=1e-8)


@pytest.mark.parametrize("method", ["auto", "sequential", "chunked"])
def test_double_backward_raises(method):
    diag = torch.tensor([2.0, 2.5, 3.0, 2.5, 2.0], dtype=torch.float64, requires_grad=True)
    off = torch.ones(4, dtype=torch.float64)
    f = torch.ones(5, dtype=torch.float64)
    calls = {
        "resolvent": lambda d: ss.Tridiagonal(d, off).resolvent_diagonal(method=method).sum(),
        "logdet": lambda d: ss.Tridiagonal(d, off).logdet(method=method).real,
        "solve": lambda d: ss.Tridiagonal(d, off).solve(f, method=method).sum(),
    }
    for name, fn in calls.items():
        with pytest.raises(RuntimeError, match="double backward"):
            torch.autograd.functional.hessian(fn, diag)
        y = fn(diag) + (diag ** 3).sum()
        with pytest.raises(RuntimeError, match="double backward"):
            torch.autograd.grad(y, diag, create_graph=True)
        (g,) = torch.autograd.grad(fn(diag), diag)  # first order still works
        assert torch.isfinite(g).all(), name


def test_reference_hessian_matches_finite_differences():
    diag = torch.tensor([2.0, 2.5, 3.0, 2.5, 2.0], dtype=torch.float64)
    off = torch.ones(4, dtype=torch.float64)

    def fn(d):
        return ss.Tridiagonal(d, off).resolvent_diagonal(method="reference").sum()

    Hs = torch.autograd.functional.hessian(fn, diag)
    h = 1e-5
    fd = torch.zeros(5, dtype=torch.float64)
    for i in range(5):
        e = torch.zeros(5, dtype=torch.float64)
        e[i] = h
        fd[i] = (fn(diag + e) - 2 * fn(diag) + fn(diag - e)) / h ** 2
    assert torch.allclose(torch.diagonal(Hs), fd, rtol=1e-4, atol=1e-6)
    assert torch.diagonal(Hs).abs().min() > 0.1


@pytest.mark.parametrize("method", ["auto", "chunked"])
def test_forward_mode_ad_raises_or_is_right(method):
    import torch.autograd.forward_ad as fwAD

    diag = torch.tensor([2.0, 2.5, 3.0], dtype=torch.float64)
    off = torch.ones(2, dtype=torch.float64)
    tangent = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    with fwAD.dual_level():
        dual = fwAD.make_dual(diag, tangent)
        T = ss.Tridiagonal(dual, off)
        for call in (lambda: T.resolvent_diagonal(method=method), lambda: T.logdet(method=method),
                     lambda: T.solve(torch.ones(3, dtype=torch.float64), method=method)):
            with pytest.raises(NotImplementedError, match="forward-mode AD"):
                call()
        ld = T.logdet(method="reference")
        t = fwAD.unpack_dual(ld).tangent
        Ginv = np.linalg.inv(ss.Tridiagonal(diag, off).to_dense().numpy())
        assert t is not None and abs(complex(t) - Ginv[0, 0]) < 1e-12


# ------------------------------------------------------------------------------------------------
# NUMBA_DISABLE_JIT: the Python fallbacks of the numba helpers
# ------------------------------------------------------------------------------------------------
def test_python_fallbacks_compute_the_same(tmp_path):
    code = textwrap.dedent("""
        import json, numpy as np, semisep as ss
        out = {}
        T = ss.Tridiagonal(np.array([0.0, 0.0, 1.0, 2.0, 1.5]), np.ones(4))
        out["G"] = [complex(v) for v in T.resolvent_diagonal(0.5j)]
        out["ld"] = complex(T.logdet())
        out["x"] = [float(v) for v in T.solve(np.arange(1.0, 6))]
        out["Gi"] = [complex(v) for v in T.resolvent_diagonal(0.5j, indices=[1, 3])]
        H = ss.TridiagonalPlusLowRank(T, np.ones((5, 1)) * 0.1, np.ones((5, 1)) * 0.2)
        out["H"] = [complex(v) for v in H.resolvent_diagonal(0.3j)]
        out["Hld"] = complex(H.logdet(0.3j))
        print(json.dumps({k: [[c.real, c.imag] for c in (v if isinstance(v, list) else [v])]
                          for k, v in out.items()}))
    """)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=os.path.dirname(os.path.dirname(ss.__file__)))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    import json

    got = json.loads(res.stdout.strip().splitlines()[-1])
    T = ss.Tridiagonal(np.array([0.0, 0.0, 1.0, 2.0, 1.5]), np.ones(4))
    A = T.to_dense()
    H = A + 0.02 * np.ones((5, 5))
    want = {
        "G": np.diag(np.linalg.inv(A - 0.5j * np.eye(5))),
        "ld": np.log(complex(np.linalg.det(A))),
        "x": np.linalg.solve(A, np.arange(1.0, 6)),
        "Gi": np.diag(np.linalg.inv(A - 0.5j * np.eye(5)))[[1, 3]],
        "H": np.diag(np.linalg.inv(H - 0.3j * np.eye(5))),
        "Hld": np.log(complex(np.linalg.det(H - 0.3j * np.eye(5)))),
    }
    for k, v in want.items():
        g = np.array([complex(a, b) for a, b in got[k]])
        assert np.allclose(g, np.atleast_1d(v), atol=1e-12), k


# ------------------------------------------------------------------------------------------------
# the hypothesis family
# ------------------------------------------------------------------------------------------------
@st.composite
def problems(draw):
    n = draw(st.integers(1, 9))
    kind = draw(st.sampled_from(["random", "tiny pivot", "zero pivot", "decoupled", "singular",
                                 "near singular"]))
    scale = 10.0 ** draw(st.sampled_from([-300, -200, -150, -50, 0, 50, 150, 200, 300]))
    cplx = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    d = rng.uniform(-2, 2, n)
    lo, up = rng.uniform(-1, 1, max(n - 1, 0)), rng.uniform(-1, 1, max(n - 1, 0))
    if kind == "tiny pivot":
        d[0] = 1e-13
    elif kind == "zero pivot":
        d[: min(2, n)] = 0.0
    elif kind == "decoupled" and n > 2:
        lo[n // 2 - 1] = 0.0
    A = dense(d, lo, up)
    if kind in ("singular", "near singular"):
        lam = np.linalg.eigvals(A)[0].real if n > 0 else 0.0
        if not cplx:
            lam = np.linalg.eigvals(A)
            lam = lam[np.argmin(np.abs(lam.imag))]
            if abs(lam.imag) > 0:
                kind = "random"
            lam = lam.real
        d = d - lam - (1e-9 if kind == "near singular" else 0.0)
    if cplx:
        d = d * (1 + 0.25j)
        lo = lo * (1 + 0.25j)
        up = up * (1 + 0.25j)
        if kind in ("singular", "near singular"):
            A = dense(d, lo, up)
            lam = np.linalg.eigvals(A)[0]
            d = d - lam - (1e-9 if kind == "near singular" else 0.0)
    return kind, scale, d, lo, up


def _check_problem(kind, scale, d, lo, up, backend, method):
    n = len(d)
    # the matrix actually stored (subnormal entries lose digits), back at scale 1
    d, lo, up = ((v * scale) / scale for v in (d, lo, up))
    A1 = dense(d, lo, up)
    cond = np.linalg.cond(A1)
    eps = np.finfo(float).eps
    if backend == "numpy":
        T = ss.Tridiagonal(d * scale, lo * scale, up * scale)
        to = np.asarray
        kw = {}
    else:
        T = ss.Tridiagonal(*(torch.as_tensor(v * scale) for v in (d, lo, up)))
        to = lambda x: x.detach().numpy()  # noqa: E731
        kw = {"method": method}
    f = np.linspace(1.0, 2.0, n)
    ff = f if backend == "numpy" else torch.as_tensor(f)
    certain_regular = cond * eps < 1e-6
    try:
        x = to(T.solve(ff, **kw))
    except SingularMatrixError:
        assert not certain_regular, (kind, cond)
        return
    xd = np.linalg.solve(A1, f) if certain_regular else None
    with np.errstate(over="ignore"):
        x_fits = certain_regular and np.max(np.abs(xd)) / scale < 1e300  # else the true x overflows
        g_fits = certain_regular and np.max(np.abs(np.linalg.inv(A1))) / scale < 1e300
    if x_fits:
        assert np.all(np.isfinite(x)), (kind, cond)
    if g_fits:
        assert np.max(np.abs(x * scale - xd)) <= 1e3 * eps * cond * np.max(np.abs(xd)), (kind, cond)
        G = to(T.resolvent_diagonal(**kw))
        Gd = np.diag(np.linalg.inv(A1))
        assert np.all(np.isfinite(G))
        # G_ii from the LU / UL ratios: accurate to cond-scaled eps (not pivoted)
        assert np.max(np.abs(G * scale - Gd)) <= 1e4 * eps * cond * np.max(np.abs(np.linalg.inv(A1))), kind
        ld = complex(to(T.logdet(**kw)))
        sign, lab = np.linalg.slogdet(A1)
        assert abs(ld.real - (lab + n * np.log(scale))) <= 1e4 * eps * cond * (1 + abs(lab)) + 1e-9, kind


@given(problems())
def test_hypothesis_numpy(p):
    _check_problem(*p, "numpy", "auto")


@pytest.mark.parametrize("method", TORCH_METHODS)
@given(p=problems())
def test_hypothesis_torch(method, p):
    _check_problem(*p, "torch", method)
