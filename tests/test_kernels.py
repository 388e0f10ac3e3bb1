"""semisep.kernels: generators against the closed-form kernel matrices, torch types and
gradients, errors, and (once :class:`semisep.Quasiseparable` exists) solve/logdet of the
kernel operators against dense SciPy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

import semisep as ss
from semisep import kernels as K

torch = pytest.importorskip("torch")

HAS_QSM = hasattr(ss, "Quasiseparable")
needs_qsm = pytest.mark.skipif(not HAS_QSM, reason="semisep.Quasiseparable not on this branch yet")


def densify(diag, p, q, a):
    """Dense symmetric matrix of the generators, by the contract
    ``S[i, j] = p_i . (a_{i-1} ... a_{j+1} q_j)`` (i > j), a plain loop (batch: leading axes)."""
    diag, p, q, a = (np.asarray(x) for x in (diag, p, q, a))
    batch = np.broadcast_shapes(diag.shape[:-1], p.shape[:-2], q.shape[:-2], a.shape[:-3])
    n = diag.shape[-1]
    out = np.zeros(batch + (n, n))
    for idx in np.ndindex(*batch):
        d_, p_, q_, a_ = (np.broadcast_to(x, batch + x.shape[len(x.shape) - k:])[idx]
                          for x, k in ((diag, 1), (p, 2), (q, 2), (a, 3)))
        m = np.diag(d_).astype(float)
        for j in range(n):
            w = q_[j].copy()
            for i in range(j + 1, n):
                m[i, j] = p_[i] @ w
                w = a_[i] @ w
        out[idx] = np.tril(m) + np.tril(m, -1).T
    return out


def irregular(n, span, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0.0, span, n))
    t[0], t[-1] = 0.0, span
    return t.astype(dtype)


def rel(x, y):
    return float(np.max(np.abs(np.asarray(x) - np.asarray(y))) / np.max(np.abs(np.asarray(y))))


# Each entry: (label, kernel, decay rate c) -- the span is chosen as c_span / c.
KERNELS = [
    ("Exp", K.Exp(scale=0.7, sigma=1.3), 1 / 0.7),
    ("Matern32", K.Matern32(scale=0.5, sigma=0.8), np.sqrt(3) / 0.5),
    ("Matern52", K.Matern52(scale=2.0, sigma=1.1), np.sqrt(5) / 2.0),
    ("Cosine", K.Cosine(scale=1.7, sigma=0.9), 2 * np.pi / 1.7),
    ("SHO-Q3", K.SHO(omega=2.0, quality=3.0, sigma=1.2), 2.0 / 6.0),
    ("SHO-Q0.3", K.SHO(omega=2.0, quality=0.3, sigma=0.7), 2.0 / 0.6),
    ("SHO-Q0.5", K.SHO(omega=1.5, quality=0.5), 1.5),
    ("Celerite", K.Celerite(a=1.0, b=0.2, c=0.8, d=2.5), 0.8),
    ("Exp+SHO", K.Exp(scale=1.0) + K.SHO(omega=3.0, quality=3.0, sigma=0.5), 1.0),
    ("Matern32*Cosine", K.Matern32(scale=2.0) * K.Cosine(scale=0.9), np.sqrt(3) / 2.0),
    ("Exp*SHO+Matern52", K.Exp(scale=3.0) * K.SHO(omega=1.0, quality=0.3)
     + 0.5 * K.Matern52(scale=1.0), 1 / 3.0),
]
ORDERS = {"Exp": 1, "Matern32": 2, "Matern52": 3, "Cosine": 2, "SHO-Q3": 2, "SHO-Q0.3": 2,
          "SHO-Q0.5": 2, "Celerite": 2, "Exp+SHO": 3, "Matern32*Cosine": 4, "Exp*SHO+Matern52": 5}


@pytest.mark.parametrize("label,kern,rate", KERNELS, ids=[k[0] for k in KERNELS])
@pytest.mark.parametrize("c_span", [1.0, 30.0, 1e4])
def test_generators_match_closed_form(label, kern, rate, c_span):
    n = 150
    t = irregular(n, c_span / rate, seed=int(c_span) % 7)
    d, p, q, a = kern.to_generators(t)
    r = ORDERS[label]
    assert kern.order == r
    assert d.shape == (n,) and p.shape == (n, r) and q.shape == (n, r) and a.shape == (n, r, r)
    for x in (d, p, q, a):
        assert isinstance(x, np.ndarray) and x.dtype == np.float64 and np.all(np.isfinite(x))
    # stable form: generators bounded by O(1) whatever the span (no e^{c t})
    assert max(np.abs(p).max(), np.abs(q).max(), np.abs(a).max()) < 10.0
    dense = kern(t, t)
    assert np.all(np.isfinite(dense))
    tol = 1e-13
    if label == "Cosine":
        # no decay: cos(f tau) at phases up to f * span = c_span is itself conditioned by the
        # rounding of t (and of tau = t_i - t_j): |d phase| <~ 2 eps c_span, in both forms
        tol += 4 * np.finfo(np.float64).eps * c_span
    assert rel(densify(d, p, q, a), dense) <= tol


def test_closed_forms_by_hand():
    tau = np.array([0.0, 0.3, 2.0])
    t2 = np.zeros(1)
    sig = 1.3
    cases = [
        (K.Exp(2.0, sig), sig**2 * np.exp(-tau / 2)),
        (K.Matern32(2.0, sig), sig**2 * (1 + np.sqrt(3) * tau / 2) * np.exp(-np.sqrt(3) * tau / 2)),
        (K.Matern52(2.0, sig), sig**2 * (1 + np.sqrt(5) * tau / 2 + 5 * tau**2 / 12)
         * np.exp(-np.sqrt(5) * tau / 2)),
        (K.Cosine(2.0, sig), sig**2 * np.cos(np.pi * tau)),
        (K.Celerite(1.0, 0.3, 0.5, 2.0), np.exp(-0.5 * tau) * (np.cos(2 * tau) + 0.3 * np.sin(2 * tau))),
    ]
    w = 2.0
    for q in (0.3, 0.5, 3.0):
        x = w * tau / (2 * q)
        if q < 0.5:
            f = np.sqrt(1 - 4 * q * q)
            k = np.exp(-x) * (np.cosh(f * x) + np.sinh(f * x) / f)
        elif q > 0.5:
            g = np.sqrt(4 * q * q - 1)
            k = np.exp(-x) * (np.cos(g * x) + np.sin(g * x) / g)
        else:
            k = np.exp(-w * tau) * (1 + w * tau)
        cases.append((K.SHO(w, q, sig), sig**2 * k))
    for kern, want in cases:
        np.testing.assert_allclose(kern(tau, t2)[:, 0], want, rtol=1e-14, atol=0)


def test_sho_continuous_across_regimes():
    t = irregular(40, 20.0)
    crit = K.SHO(1.3, 0.5)(t)
    for dq in (1e-7, -1e-7):
        near = K.SHO(1.3, 0.5 + dq)
        assert rel(near(t), crit) < 1e-5
        assert rel(densify(*near.to_generators(t)), near(t)) <= 1e-13


def test_batched_parameters_and_coordinates():
    t = np.stack([irregular(30, 5.0, seed=s) for s in range(3)])           # (3, 30)
    kern = K.Matern32(scale=np.array([[0.5], [1.0]]), sigma=2.0) + K.Exp(scale=1.0)   # batch (2, 1)
    d, p, q, a = kern.to_generators(t)
    assert d.shape == (2, 3, 30) and p.shape == (2, 3, 30, 3) and a.shape == (2, 3, 30, 3, 3)
    dense = kern(t)
    assert dense.shape == (2, 3, 30, 30)
    assert rel(densify(d, p, q, a), dense) <= 1e-13
    single = K.Matern32(scale=1.0, sigma=2.0) + K.Exp(scale=1.0)
    np.testing.assert_allclose(dense[1, 2], single(t[2]), rtol=1e-14)


def test_sho_regimes_mixed_in_one_batch():
    t = irregular(60, 30.0, seed=4)
    quality = np.array([0.3, 0.5, 3.0])                        # three regimes, batch (3,)
    kern = K.SHO(omega=1.3, quality=quality, sigma=0.8)
    d, p, q, a = kern.to_generators(t)
    assert a.shape == (3, 60, 2, 2)
    dense = densify(d, p, q, a)
    for k, qk in enumerate(quality):
        single = K.SHO(omega=1.3, quality=float(qk), sigma=0.8)
        assert rel(dense[k], single(t)) <= 1e-13
        np.testing.assert_array_equal(single.to_generators(t)[3], a[k])
    # gradients through the mixed (torch.where) path: finite, and equal to the single-regime ones
    qt = torch.tensor(quality, requires_grad=True)
    tt = torch.tensor(t)
    assert torch.autograd.gradcheck(lambda x: K.SHO(1.3, x).to_generators(tt)[1:], (qt,))


def test_cross_covariance_and_sum_of_list():
    t1, t2 = np.array([0.0, 1.0, 4.0]), np.array([0.5, 3.0])
    k = sum([K.Exp(1.0), K.Matern32(2.0)])
    assert isinstance(k, K.Sum)
    got = k(t1, t2)
    want = np.exp(-np.abs(t1[:, None] - t2)) + K.Matern32(2.0)(t1, t2)
    np.testing.assert_allclose(got, want, rtol=1e-15)
    assert (3.0 * K.Exp(1.0))(t1).shape == (3, 3)
    np.testing.assert_allclose((3.0 * K.Exp(1.0))(t1), 3 * np.exp(-np.abs(t1[:, None] - t1)))


def test_float32_and_duplicates():
    t = np.array([0.0, 0.5, 0.5, 2.0], dtype=np.float32)
    d, p, q, a = K.SHO(1.0, 2.0).to_generators(t)
    assert p.dtype == np.float32 and a.dtype == np.float32
    assert rel(densify(d, p, q, a), K.SHO(1.0, 2.0)(t.astype(np.float64))) < 1e-6


# ------------------------------------------------------------------------------------------------
# torch
# ------------------------------------------------------------------------------------------------
def test_torch_in_torch_out():
    t = torch.tensor(irregular(20, 6.0))
    for label, kern, _ in KERNELS:
        d, p, q, a = kern.to_generators(t)
        assert all(isinstance(x, torch.Tensor) and x.dtype == torch.float64 for x in (d, p, q, a)), label
        dense = kern(t)
        assert isinstance(dense, torch.Tensor)
        np.testing.assert_allclose(densify(d, p, q, a), kern(t.numpy()), rtol=0, atol=1e-13)
    d, p, q, a = K.Exp(torch.tensor(1.0, dtype=torch.float32)).to_generators(irregular(5, 1.0))
    assert isinstance(p, torch.Tensor) and p.dtype == torch.float32


def _dense_torch(d, p, q, a):
    """Dense symmetric matrix from generators with torch ops (differentiable), small N."""
    n = d.shape[-1]
    rows = []
    for i in range(n):
        row = []
        for j in range(n):
            if i == j:
                row.append(d[i])
                continue
            hi, lo = max(i, j), min(i, j)
            w = q[lo]
            for k in range(lo + 1, hi):
                w = a[k] @ w
            row.append(p[hi] @ w)
        rows.append(torch.stack(row))
    return torch.stack(rows)


@pytest.mark.parametrize("name", ["Exp", "Matern32", "Matern52", "Cosine", "SHO-over", "SHO-crit",
                                  "SHO-under", "Celerite", "Sum", "Product"])
def test_gradcheck_parameters(name):
    t = torch.tensor(irregular(7, 4.0, seed=3))
    w = torch.tensor(np.random.default_rng(1).standard_normal((7, 7)))

    def make(*ps):
        return {
            "Exp": lambda: K.Exp(*ps), "Matern32": lambda: K.Matern32(*ps),
            "Matern52": lambda: K.Matern52(*ps), "Cosine": lambda: K.Cosine(*ps),
            "SHO-over": lambda: K.SHO(*ps), "SHO-crit": lambda: K.SHO(*ps),
            "SHO-under": lambda: K.SHO(*ps), "Celerite": lambda: K.Celerite(*ps),
            "Sum": lambda: K.Exp(ps[0]) + K.SHO(ps[1], ps[2]),
            "Product": lambda: K.Matern32(ps[0]) * K.Cosine(ps[1], ps[2]),
        }[name]()

    init = {"Exp": (0.8, 1.2), "Matern32": (0.8, 1.2), "Matern52": (1.1, 0.9), "Cosine": (2.2, 1.1),
            "SHO-over": (1.3, 0.3, 0.9), "SHO-crit": (1.3, 0.5, 0.9), "SHO-under": (1.3, 2.0, 0.9),
            "Celerite": (1.0, 0.2, 0.7, 1.9), "Sum": (0.8, 1.3, 3.0), "Product": (1.5, 2.0, 1.1)}[name]
    params = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in init]

    def f(*ps):
        return (_dense_torch(*make(*ps).to_generators(t)) * w).sum()

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-8, rtol=1e-6)
    # the gradient of the generators' matrix equals the closed form's (no silent zero)
    g_gen = torch.autograd.grad(f(*params), params)
    g_closed = torch.autograd.grad((make(*params)(t) * w).sum(), params)
    for x, y in zip(g_gen, g_closed, strict=True):
        assert torch.allclose(x, y, rtol=1e-10, atol=1e-12)
        assert float(y.abs()) > 0


def test_gradient_wrt_coordinates():
    t = torch.tensor(irregular(6, 3.0, seed=5), requires_grad=True)
    w = torch.tensor(np.random.default_rng(2).standard_normal((6, 6)))
    kern = K.Matern52(1.3) + K.SHO(2.0, 3.0)
    assert torch.autograd.gradcheck(lambda x: (_dense_torch(*kern.to_generators(x)) * w).sum(), (t,))


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,match", [
    (lambda: K.Exp(0.0), "scale"), (lambda: K.Exp(-1.0), "scale"),
    (lambda: K.Matern32(np.inf), "scale"), (lambda: K.Matern52(1.0, np.nan), "sigma"),
    (lambda: K.Cosine(-2.0), "scale"), (lambda: K.SHO(0.0, 1.0), "omega"),
    (lambda: K.SHO(1.0, -1.0), "quality"), (lambda: K.Celerite(1.0, 0.0, -0.1, 1.0), "'c'"),
    (lambda: K.Exp(torch.tensor(-1.0)), "scale"), (lambda: K.Exp(1.0j), "scale"),
    (lambda: K.Exp(None), "scale"),
])
def test_bad_parameters(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_bad_coordinates():
    k = K.Matern32(1.0)
    with pytest.raises(ValueError, match=r"sorted.*t\[\.\.\., 2\] < t\[\.\.\., 1\]"):
        k.to_generators(np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"sorted.*t\[\.\.\., 3\] < t\[\.\.\., 2\]"):
        k.to_generators(torch.tensor([[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 1.5]], dtype=torch.float64))
    with pytest.raises(ss.NonFiniteError, match="finite"):
        k.to_generators(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ss.NonFiniteError, match="finite"):
        k(np.array([0.0, np.inf]))
    with pytest.raises(ss.ShapeError, match="'t'"):
        k.to_generators(np.float64(1.0))
    with pytest.raises(ss.ShapeError, match="'t'"):
        k.to_generators(np.zeros(0))
    with pytest.raises(TypeError, match="real"):
        k.to_generators(np.array([0.0, 1.0j]))
    with pytest.raises(TypeError):
        K.Exp(1.0) + 1.0
    with pytest.raises(TypeError):
        K.Exp(1.0) * "a"


# ------------------------------------------------------------------------------------------------
# the operator (needs semisep.Quasiseparable)
# ------------------------------------------------------------------------------------------------
OPERATOR_KERNELS = [
    ("Exp", K.Exp(scale=0.7, sigma=1.3), 1 / 0.7),
    ("Matern32", K.Matern32(scale=0.5, sigma=0.8), np.sqrt(3) / 0.5),
    ("Matern52", K.Matern52(scale=2.0, sigma=1.1), np.sqrt(5) / 2.0),
    ("SHO-Q3", K.SHO(omega=2.0, quality=3.0, sigma=1.2), 2.0 / 6.0),
    ("SHO-Q0.3", K.SHO(omega=2.0, quality=0.3, sigma=0.7), 2.0 / 0.6),
    ("Exp+SHO", K.Exp(scale=1.0) + K.SHO(omega=3.0, quality=3.0, sigma=0.5), 1.0),
    ("Matern32*Cosine", K.Matern32(scale=2.0) * K.Cosine(scale=0.9), np.sqrt(3) / 2.0),
]


@needs_qsm
@pytest.mark.parametrize("label,kern,rate", OPERATOR_KERNELS, ids=[k[0] for k in OPERATOR_KERNELS])
@pytest.mark.parametrize("c_span", [1.0, 1e4])
def test_operator_solve_logdet_vs_dense(label, kern, rate, c_span):
    n = 400
    t = irregular(n, c_span / rate, seed=11)
    noise = 0.05 + 0.05 * np.random.default_rng(4).uniform(size=n)   # per-point white noise
    op = kern.to_operator(t, diag=noise)
    assert isinstance(op, ss.Quasiseparable)
    dense = kern(t) + np.diag(noise)
    np.testing.assert_allclose(op.to_dense(), dense, rtol=0, atol=1e-13 * np.abs(dense).max())
    b = np.random.default_rng(5).standard_normal(n)
    want = scipy.linalg.cho_solve(scipy.linalg.cho_factor(dense), b)
    x = op.solve(b)
    # normwise relative errors (cond(dense) <= ~1e4 here: noise >= 0.05, k(0) ~ 1)
    assert np.linalg.norm(x - want) / np.linalg.norm(want) <= 1e-12
    g = op.resolvent_diagonal(0)
    assert rel(g, np.diag(np.linalg.inv(dense))) <= 1e-12
    _, ld_want = np.linalg.slogdet(dense)
    assert abs(op.logdet() - ld_want) <= 1e-12 * max(1.0, abs(ld_want))
    f = op.factor()
    np.testing.assert_allclose(f.solve(b), x, rtol=1e-13, atol=0)
    assert abs(f.logdet() - op.logdet()) <= 1e-13 * max(1.0, abs(ld_want))


@needs_qsm
def test_operator_scalar_noise_and_inverse_diagonal():
    t = irregular(300, 50.0, seed=2)
    kern = K.Matern32(scale=1.0, sigma=1.0)
    op = kern.to_operator(t, diag=0.1)
    dense = kern(t) + 0.1 * np.eye(300)
    want = np.diag(np.linalg.inv(dense))
    np.testing.assert_allclose(op.resolvent_diagonal(0), want, rtol=1e-11)


def _has_torch_engine() -> bool:
    try:
        import semisep.backends.torch.quasiseparable  # noqa: F401
    except ImportError:
        return False
    return True


@needs_qsm
@pytest.mark.skipif(not _has_torch_engine(), reason="Quasiseparable's torch engine not on this branch yet")
def test_operator_torch():
    t = torch.tensor(irregular(50, 10.0))
    op = K.SHO(torch.tensor(2.0, dtype=torch.float64), 3.0).to_operator(t, diag=torch.tensor(0.1))
    assert isinstance(op.to_dense(), torch.Tensor)


@needs_qsm
@pytest.mark.skipif(not _has_torch_engine(), reason="Quasiseparable's torch engine not on this branch yet")
def test_log_likelihood_gradient_through_operator():
    """d(log-likelihood)/d(kernel parameters, noise) through to_operator + factor equals the
    gradient of the dense computation (torch.linalg) to rounding."""
    t = torch.tensor(irregular(80, 12.0, seed=6))
    y = torch.tensor(np.random.default_rng(8).standard_normal(80))

    def params():
        return [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (1.3, 0.8, 2.0, 3.0, 0.1)]

    def kern(ps):
        return K.Matern32(ps[0], ps[1]) + K.SHO(ps[2], ps[3])

    ps = params()
    f = kern(ps).to_operator(t, diag=ps[4]).factor()
    ll = -0.5 * (y @ f.solve(y) + f.logdet())
    g = torch.autograd.grad(ll, ps)
    qs = params()
    C = kern(qs)(t) + qs[4] * torch.eye(80, dtype=torch.float64)
    ll_d = -0.5 * (y @ torch.linalg.solve(C, y) + torch.linalg.slogdet(C)[1])
    g_d = torch.autograd.grad(ll_d, qs)
    ll, ll_d = float(ll.detach()), float(ll_d.detach())
    assert abs(ll - ll_d) <= 1e-12 * abs(ll_d)
    for x, w in zip(g, g_d, strict=True):
        assert float(w.abs()) > 0
        assert abs(float(x - w)) <= 1e-10 * max(1.0, abs(float(w)))
