"""Quasiseparable against the dense reference (small N), the plain-loop twin (large N), the
state-space GP kernels at long time spans, the torch paths and the error contract."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import semisep as ss
from semisep import reference as ref

from .helpers import eps_of


def relerr(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def gens(rng, batch, n, rl, ru, dtype, symmetric):
    cplx = np.dtype(dtype).kind == "c"

    def g(shape, scale=1.0):
        x = rng.standard_normal(shape)
        return ((x + 1j * rng.standard_normal(shape) if cplx else x) * scale).astype(dtype)

    d = (g(batch + (n,)) + 4).astype(dtype)
    lo = (g(batch + (n, rl), 0.5), g((n, rl), 0.5), g((n, rl, rl), 0.5 / max(rl, 1) ** 0.5))
    if symmetric:
        return (d,) + lo
    return (d,) + lo + (g((n, ru), 0.5), g(batch + (n, ru), 0.5),
                        g((n, ru, ru), 0.5 / max(ru, 1) ** 0.5))


def exp_kernel(t, scale, sigma, noise):
    """k = sigma^2 e^{-|dt|/scale} + noise I in the stable transition form."""
    a = np.exp(-np.diff(t, prepend=t[0]) / scale)
    return ss.Quasiseparable(np.full(len(t), sigma**2 + noise), sigma**2 * a[:, None],
                             np.ones((len(t), 1)), a[:, None, None]), \
        sigma**2 * np.exp(-np.abs(t[:, None] - t) / scale) + noise * np.eye(len(t))


def matern32_kernel(t, scale, sigma, noise):
    """Matern-3/2 with 2x2 transitions ``A(dt) = e^{F dt}`` (p_i = h^T A(dt_i),
    q = P_inf h, a_i = A(dt_i))."""
    lam = np.sqrt(3.0) / scale
    dt = np.diff(t, prepend=t[0])
    e = np.exp(-lam * dt)
    A = np.empty((len(t), 2, 2))
    A[:, 0, 0] = e * (1 + lam * dt)
    A[:, 0, 1] = e * dt
    A[:, 1, 0] = -e * lam**2 * dt
    A[:, 1, 1] = e * (1 - lam * dt)
    q = np.tile(np.array([sigma**2, 0.0]), (len(t), 1))
    op = ss.Quasiseparable(np.full(len(t), sigma**2 + noise), A[:, 0, :], q, A)
    r = np.abs(t[:, None] - t) * lam
    return op, sigma**2 * (1 + r) * np.exp(-r) + noise * np.eye(len(t))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("ranks,symmetric", [((0, 0), True), ((1, 0), False), ((0, 2), False),
                                             ((2, 3), False), ((4, 4), True), ((3, 1), False)])
def test_against_dense(rng, dtype, ranks, symmetric):
    n, batch = 13, (2,)
    args = gens(rng, batch, n, *ranks, dtype, symmetric)
    op = ss.Quasiseparable(*args)
    A = ref.qsm_to_dense(*args)
    assert relerr(op.to_dense(), A) < 10 * eps_of(dtype)
    checked = 0
    for z in (0.0, 0.5 + 1e-3j, -0.3 + 1.0j):
        Az = A - z * np.eye(n)
        t = 50 * n * eps_of(dtype) * max(np.linalg.cond(x) for x in Az)
        if not t < 1e-2:  # a vacuous tolerance: this shift is not judged (counted below)
            continue
        checked += 1
        b = rng.standard_normal(batch + (n, 2)).astype(dtype)
        assert relerr(op.solve(b, z), np.linalg.solve(Az, b)) < t
        s, la_ = np.linalg.slogdet(Az)
        ld = op.logdet(z)
        assert np.all(np.abs(ld.real - la_) < t * np.maximum(1, abs(la_)))
        assert np.all(np.abs(np.exp(1j * ld.imag) - s) < t * 10)
        G = np.diagonal(np.linalg.inv(Az), axis1=-2, axis2=-1)
        assert relerr(op.resolvent_diagonal(z), G) < t
        assert relerr(op.resolvent_diagonal(z, indices=[3, 0, 3]), G[..., [3, 0, 3]]) < t
        x = rng.standard_normal(n).astype(dtype)
        assert relerr(op.matvec(x), (A @ x[:, None])[..., 0]) < 10 * n * eps_of(dtype)
        assert relerr(op.rmatvec(x), (np.swapaxes(A, -1, -2) @ x[:, None])[..., 0]) < 10 * n * eps_of(dtype)
        assert relerr(op.T.to_dense(), np.swapaxes(A, -1, -2)) < 10 * eps_of(dtype)
    assert checked >= 2, f"only {checked} of 3 shifts were well enough conditioned to judge"


def test_factorization_is_shared(rng):
    args = gens(rng, (), 20, 2, 2, np.float64, False)
    op = ss.Quasiseparable(*args)
    fac = op.factor(0.25)
    b = rng.standard_normal(20)
    assert relerr(fac.solve(b), op.solve(b, 0.25)) < 1e-14
    assert fac.logdet() == pytest.approx(op.logdet(0.25), rel=1e-14)
    assert fac.pivots.shape == (20,) and fac.pivots_guarded.shape == ()


def test_against_the_plain_loop_twin_at_large_n(rng):
    n = 2**13
    args = gens(rng, (), n, 2, 3, np.complex128, False)
    op = ss.Quasiseparable(*args)
    z = 0.1 + 0.05j
    b = rng.standard_normal(n)
    x = op.solve(b, z)
    assert relerr(x, ref.sequential_qsm_solve(*args, rhs=b, z=z)) < 1e-11
    assert abs(op.logdet(z) - ref.sequential_qsm_logdet(*args, z=z)) < 1e-9
    assert relerr(op.resolvent_diagonal(z), ref.sequential_qsm_resolvent_diagonal(*args, z=z)) < 1e-11
    assert relerr(op.matvec(b), ref.sequential_qsm_matvec(*args, x=b)) < 1e-12


@pytest.mark.parametrize("kernel", [exp_kernel, matern32_kernel])
@pytest.mark.parametrize("cspan", [1.0, 1e2, 1e4])
def test_gp_kernels_at_long_spans(kernel, cspan):
    """c * span from 1 to 1e4 with white noise: no SingularMatrixError, float64 normwise
    relative error <= 1e-12 against dense LAPACK."""
    rng = np.random.default_rng(int(cspan))
    n = 600
    t = np.sort(rng.uniform(0, cspan, n))
    op, K = kernel(t, scale=1.0, sigma=1.3, noise=0.1)
    assert relerr(op.to_dense(), K) < 1e-13
    y = rng.standard_normal(n)
    x = np.linalg.solve(K, y)
    assert np.linalg.norm(op.solve(y) - x) / np.linalg.norm(x) <= 1e-12
    assert abs(op.logdet() - np.linalg.slogdet(K)[1]) <= 1e-12 * n
    G = np.diag(np.linalg.inv(K))
    assert np.linalg.norm(op.resolvent_diagonal() - G) / np.linalg.norm(G) <= 1e-12


def test_singular_and_info(rng):
    n = 6
    op = ss.Quasiseparable(np.ones(n), np.ones((n, 1)), np.ones((n, 1)), np.ones((n, 1, 1)))
    for call in (op.logdet, op.resolvent_diagonal, lambda: op.solve(np.ones(n))):
        with pytest.raises(ss.SingularMatrixError):
            call()
    args = gens(rng, (3,), 8, 1, 1, np.float64, True)
    G, info = ss.Quasiseparable(*args).resolvent_diagonal(0.5j, return_info=True)
    assert G.shape == (3, 8) and info.pivots_guarded.shape == (3,) and info.total_guarded == 0
    assert np.all(info.pivmin > 0)


def test_pivmin_is_scaled_by_entries_not_generators():
    """Generators of size 1e150 with entries of size 1: the guard and certificate follow the
    entries (a generator-scaled guard would call this matrix singular)."""
    n = 30
    big = 1e150
    op = ss.Quasiseparable(np.full(n, 2.0), np.full((n, 1), big), np.full((n, 1), 0.5 / big),
                           np.full((n, 1, 1), 0.5))
    A = op.to_dense()
    assert np.abs(A).max() == 2.0
    _, info = op.logdet(return_info=True)
    assert float(info.pivmin) < 1e-14
    assert op.logdet() == pytest.approx(np.linalg.slogdet(A)[1], rel=1e-13)


def test_errors():
    n = 5
    d, v, a = np.ones(n), np.ones((n, 2)), np.ones((n, 2, 2))
    with pytest.raises(ss.ShapeError, match="p has shape"):
        ss.Quasiseparable(d, np.ones((n + 1, 2)), v, a)
    with pytest.raises(ss.ShapeError, match="ranks"):
        ss.Quasiseparable(d, v, np.ones((n, 3)), a)
    with pytest.raises(ss.ShapeError, match="a has shape"):
        ss.Quasiseparable(d, v, v, np.ones((n, 3, 3)))
    with pytest.raises(ValueError, match="missing: h, b"):
        ss.Quasiseparable(d, v, v, a, g=v)
    bad = a.copy()
    bad[2, 0, 0] = np.inf
    with pytest.raises(ss.NonFiniteError, match="a contains"):
        ss.Quasiseparable(d, v, v, bad)
    with pytest.raises(ss.ShapeError):
        ss.Quasiseparable(d, v, v, a).solve(np.ones(n + 1))
    with pytest.raises(ss.BackendError):
        torch = pytest.importorskip("torch")
        ss.Quasiseparable(d, v, v, a).solve(torch.ones(n))


def test_diagonal_transitions_are_expanded(rng):
    n = 9
    p, q, w = (rng.standard_normal((n, 3)) for _ in range(3))
    op = ss.Quasiseparable(np.full(n, 5.0), p, q, w)
    full = ss.Quasiseparable(np.full(n, 5.0), p, q, w[:, :, None] * np.eye(3))
    assert relerr(op.to_dense(), full.to_dense()) == 0.0


def test_torch_paths_agree_with_numpy(rng):
    torch = pytest.importorskip("torch")
    from semisep.backends.torch import quasiseparable as tq

    args = gens(rng, (2,), 11, 2, 3, np.complex128, False)
    op = ss.Quasiseparable(*args)
    top = ss.Quasiseparable(*(torch.tensor(x) for x in args))
    b = rng.standard_normal((2, 11))
    assert relerr(top.solve(torch.tensor(b), 0.3j).numpy(), op.solve(b, 0.3j)) < 1e-13
    assert relerr(top.resolvent_diagonal(0.3j).numpy(), op.resolvent_diagonal(0.3j)) < 1e-13
    # the portable loop (the non-CPU path) against the compiled kernels
    T = [torch.tensor(x) for x in args]
    alpha = (T[0] - 0.3j).reshape(2, 11)
    lo = (T[1], T[2][None], T[3][None])  # p per batch row; q, a shared (one row)
    up = (T[4][None], T[5], T[6][None])
    piv = torch.full((2,), 1e-300, dtype=torch.float64)
    f1 = tq.factor(alpha, *lo, *up, piv)
    f2 = tq.factor_loop(alpha, *lo, *up, piv)
    for x1, x2 in zip(f1[:3], f2[:3], strict=True):
        assert relerr(x2.numpy(), x1.numpy()) < 1e-13
    fac = (f1[0], f1[1], f1[2], lo[0], lo[2], up[0], up[2])
    rhs = torch.tensor(rng.standard_normal((2, 11, 2)) + 0j)
    for tr in (False, True):
        assert relerr(tq.solve_loop(*fac, rhs, tr).numpy(), tq.solve(*fac, rhs, tr).numpy()) < 1e-12
    assert relerr(tq.inverse_diagonal_loop(*fac).numpy(), tq.inverse_diagonal(*fac).numpy()) < 1e-12
    assert relerr(tq.matvec_loop(alpha, *lo, *up, rhs).numpy(),
                  tq.matvec(alpha, *lo, *up, rhs).numpy()) < 1e-13


def test_torch_gradcheck_real_gp_loglikelihood():
    """float64 gradcheck of a GP log-likelihood through the custom ops, every input."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    n = 8
    t = np.sort(rng.uniform(0, 5, n))
    op, _ = matern32_kernel(t, 1.0, 1.0, 0.5)
    leaves = [torch.tensor(x, requires_grad=True) for x in (op.diag, op.p, op.q, op.a)]
    y = torch.tensor(rng.standard_normal(n), requires_grad=True)

    def nll(d, p, q, a, y):
        K = ss.Quasiseparable(d, p, q, a)
        fac = K.factor()
        return fac.logdet() + (y * fac.solve(y)).sum()

    assert torch.autograd.gradcheck(nll, (*leaves, y))




def _lower_dense_torch(torch, p, q, a):
    """Dense strictly lower form ``L[i, j] = p_i . (a_{i-1} ... a_{j+1} q_j)`` by torch ops
    (differentiable), one batch row: p, q (N, r), a (N, r, r)."""
    n = p.shape[0]
    L = [[p.new_zeros(()) for _ in range(n)] for _ in range(n)]
    for j in range(n):
        v = q[j]
        for i in range(j + 1, n):
            L[i][j] = p[i] @ v
            v = a[i] @ v
    return torch.stack([torch.stack(row) for row in L])


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_kernels_never_read_their_uninitialised_outputs(rng, dtype):
    """The compiled gradient and product kernels write every entry of their outputs without
    reading it first: run on NaN-prefilled output buffers, the results equal the dense
    reference (an accumulator seeded from an ``np.empty`` output, ``out[...] * 0``, turns
    leftover NaN/Inf bytes into NaN, intermittently)."""
    torch = pytest.importorskip("torch")
    from semisep.backends.numpy import quasiseparable_products as kq

    n, r, kk = 7, 2, 3
    cplx = np.dtype(dtype).kind == "c"

    def g(*shape):
        x = rng.standard_normal(shape)
        return (x + 1j * rng.standard_normal(shape) if cplx else x).astype(dtype)

    u, v = g(1, n, kk), g(1, n, kk)
    p, q, a = g(1, n, r), g(1, n, r), 0.5 * g(1, n, r, r)
    dp = np.full((1, n, r), np.nan, dtype)
    dq = np.full((1, n, r), np.nan, dtype)
    da = np.full((1, n, r, r), np.nan, dtype)
    kq._bilinear_grad_batch(u, v, p, q, a, dp, dq, da)
    leaves = [torch.tensor(x[0], requires_grad=True) for x in (p, q, a)]
    L = _lower_dense_torch(torch, *leaves)
    form = (torch.tensor(u[0]).mT @ L @ torch.tensor(v[0])).diagonal().sum()
    # the kernel's gradient is the holomorphic one, d form / d p; torch's gradient of the
    # real part is its conjugate
    want = [x.conj().resolve_conj().numpy() for x in torch.autograd.grad(form.real, leaves)]
    for got, w in zip((dp[0], dq[0], da[0]), want, strict=True):
        assert np.all(np.isfinite(got))
        assert relerr(got, w) < 1e-13
    # the product kernel: y prefilled with NaN, both triangles accumulate into it
    alpha = g(1, n)
    y = np.full((1, n, kk), np.nan, dtype)
    kq._matvec_batch(alpha, p, q, a, p, q, a, u, y)
    dense = ref.qsm_to_dense(alpha[0], p[0], q[0], a[0])
    assert relerr(y[0], dense @ u[0]) < 1e-13


def test_torch_loglikelihood_gradient_is_repeatable():
    """Repeated identical backward calls in one process through ``factor().solve`` and
    ``logdet`` are all finite and equal to dense torch autograd (they were intermittently NaN
    while a backward kernel read its uninitialised output buffers)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    n = 40
    t = np.sort(rng.uniform(0, 12, n))
    op, _ = matern32_kernel(t, 0.8, 1.3, 0.1)
    y = torch.tensor(rng.standard_normal(n))
    arrs = (op.diag, op.p, op.q, op.a)
    leaves = [torch.tensor(x, requires_grad=True) for x in arrs]
    L = _lower_dense_torch(torch, *leaves[1:])
    C = torch.diag(leaves[0]) + L + L.mT
    ll_d = -0.5 * (y @ torch.linalg.solve(C, y) + torch.linalg.slogdet(C)[1])
    want = [x.numpy() for x in torch.autograd.grad(ll_d, leaves)]
    for _ in range(10):
        leaves = [torch.tensor(x, requires_grad=True) for x in arrs]
        fac = ss.Quasiseparable(*leaves).factor()
        ll = -0.5 * (y @ fac.solve(y) + fac.logdet())
        assert abs(float(ll.detach()) - float(ll_d.detach())) <= 1e-12 * abs(float(ll_d.detach()))
        for got, w in zip(torch.autograd.grad(ll, leaves), want, strict=True):
            assert np.all(np.isfinite(got.numpy()))
            assert relerr(got.numpy(), w) < 1e-10

@st.composite
def problems(draw):
    n = draw(st.integers(1, 10))
    rl, ru = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    symmetric = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float64, np.complex128]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    z = complex(draw(st.floats(-2, 2)), draw(st.sampled_from([0.0, 1e-3, 0.5])))
    return gens(rng, (), n, rl, rl if symmetric else ru, dtype, symmetric), z, dtype


@given(problems())
def test_property_against_dense(p):
    args, z, dtype = p
    n = args[0].shape[-1]
    Az = ref.qsm_to_dense(*args, z=z)
    t = 50 * n * eps_of(dtype) * np.linalg.cond(Az)
    assume(t < 1e-3)
    minors = [abs(np.linalg.det(Az[:k, :k])) for k in range(1, n + 1)]
    assume(min(minors) > 1e-3)
    op = ss.Quasiseparable(*args)
    b = np.ones(n)
    assert relerr(op.solve(b, z), np.linalg.solve(Az, b)) < t
    assert relerr(op.resolvent_diagonal(z), np.diag(np.linalg.inv(Az))) < t
    assert abs(op.logdet(z).real - np.linalg.slogdet(Az)[1]) < t * max(1, n)


def test_structure_and_interop(rng):
    args = gens(rng, (), 12, 2, 1, np.float64, False)
    op = ss.Quasiseparable(*args)
    x = rng.standard_normal(12)
    assert relerr(op.aslinearoperator().matvec(x), op @ x) < 1e-15
    assert relerr(np.asarray(op), op.to_dense()) == 0.0
    assert op.nbytes == sum(a.nbytes for a in args) and op.dense_nbytes == 12 * 12 * 8
    assert (op.rank_lower, op.rank_upper, op.is_symmetric_storage) == (2, 1, False)
    assert "Quasiseparable(shape=(12, 12), ranks=(2, 1)" in repr(op)


def test_return_info_reports_the_kernel_that_ran():
    """``PivotInfo.method``: the compiled kernels on NumPy and on CPU tensors; the chunked
    scan form for an inverse diagonal that needs a gradient."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    n, r = 12, 2
    d = 3.0 + rng.uniform(-1, 1, n)
    p, q = rng.uniform(-1, 1, (n, r)), rng.uniform(-1, 1, (n, r))
    a = 0.5 * rng.uniform(-1, 1, (n, r, r))
    S = ss.Quasiseparable(d, p, q, a)
    for call in (lambda op: op.logdet(0.3j, return_info=True),
                 lambda op: op.solve(np.ones(n), 0.3j, return_info=True),
                 lambda op: op.resolvent_diagonal(0.3j, return_info=True)):
        assert call(S)[1].method == "sequential"
    St = ss.Quasiseparable(*(torch.tensor(x) for x in (d, p, q, a)))
    assert St.resolvent_diagonal(0.3j, return_info=True)[1].method == "sequential"
    dg = torch.tensor(d, requires_grad=True)
    Sg = ss.Quasiseparable(dg, *(torch.tensor(x) for x in (p, q, a)))
    G, info = Sg.resolvent_diagonal(0.3j, return_info=True)
    assert info.method == "chunked" and info.requested_method == "auto"
    G.real.sum().backward()
    assert dg.grad is not None and torch.isfinite(dg.grad).all()
