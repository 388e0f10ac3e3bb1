"""semisep.cost: every count checked against something measured.

* FLOP counts: the algorithm each count describes is run on ``Counted`` scalars, which
  apply ``semisep.cost.FLOP_RULES`` to every arithmetic operation they take part in; the run
  must also produce the right numbers (checked against dense NumPy), so the instrumented code
  is the algorithm, not a sketch of it.  The solve and the resolvent diagonal are counted on
  the compiled kernels themselves, run as Python with numba's JIT off in a subprocess
  (``_count_kernels``); the plain twins are counted too.
* Byte counts: against ``.nbytes`` of the real operators.
* Saved-for-backward bytes: in ``tests/test_nn_core.py`` (saved_tensors_hooks).
"""

from __future__ import annotations

import numpy as np
import pytest

import semisep as ss
from semisep import cost


# ------------------------------------------------------------------------------------------------
# an operation-counting scalar
# ------------------------------------------------------------------------------------------------
class Counter:
    flops = 0


def _kind(x):
    if isinstance(x, Counted):
        return x.kind
    return "C" if isinstance(x, complex) else "R"


def _val(x):
    return x.v if isinstance(x, Counted) else x


class Counted:
    """A scalar that adds FLOP_RULES[...] to Counter.flops for each operation."""

    __slots__ = ("v", "kind")

    def __init__(self, v, kind=None):
        self.v = v
        self.kind = kind or ("C" if isinstance(v, complex) else "R")

    @staticmethod
    def _bin(op, x, y, f):
        kx, ky = _kind(x), _kind(y)
        Counter.flops += cost.FLOP_RULES[(op, kx, ky)]
        return Counted(f(_val(x), _val(y)), "C" if "C" in (kx, ky) else "R")

    def __add__(self, o):
        if isinstance(o, int) and o == 0:  # sum() / matmul start value: no arithmetic
            return self
        return self._bin("add", self, o, lambda a, b: a + b)

    __radd__ = __add__

    def __sub__(self, o):
        return self._bin("add", self, o, lambda a, b: a - b)

    def __rsub__(self, o):
        return self._bin("add", o, self, lambda a, b: a - b)

    def __mul__(self, o):
        if isinstance(o, int) and o == 0:  # ``x * 0``: a typed zero (the kernels' idiom), no data
            return Counted(self.v * 0, self.kind)
        return self._bin("mul", self, o, lambda a, b: a * b)

    def __rmul__(self, o):
        return self._bin("mul", o, self, lambda a, b: a * b)

    def __truediv__(self, o):
        return self._bin("div", self, o, lambda a, b: a / b)

    def __rtruediv__(self, o):
        if not isinstance(o, Counted) and o == 1:
            Counter.flops += cost.FLOP_RULES[("recip", self.kind)]
            return Counted(1 / self.v, self.kind)
        return self._bin("div", o, self, lambda a, b: a / b)

    def __neg__(self):
        return Counted(-self.v, self.kind)

    # comparisons and parts, uncounted like __abs__ (the kernels' pivot tests, not arithmetic)
    real = property(lambda self: self.v.real)
    imag = property(lambda self: self.v.imag)

    def __eq__(self, o):
        return self.v == _val(o)

    def __ne__(self, o):
        return self.v != _val(o)

    __hash__ = None

    def __abs__(self):
        """Uncounted, a plain float: the pivot guard's and certificate's tests, which the
        FLOP model leaves out (they are comparisons, not arithmetic on the result)."""
        return abs(self.v)

    def log(self):
        Counter.flops += cost.FLOP_RULES[("log", self.kind)]
        return Counted(np.log(self.v + 0j) if self.kind == "C" else np.log(self.v), self.kind)


def C(x):
    return [Counted(complex(v)) if np.iscomplexobj(x) else Counted(float(v)) for v in x]


def vals(xs):
    return np.array([_val(x) for x in xs])


def measure(fn, *args):
    Counter.flops = 0
    out = fn(*args)
    return out, Counter.flops


# ------------------------------------------------------------------------------------------------
# the algorithms, as the docstrings of semisep.cost describe them
# ------------------------------------------------------------------------------------------------
def pivots(alpha, beta):
    n = len(alpha)
    d = [alpha[0]]
    gL = [1 / alpha[0]]
    for i in range(1, n):
        d.append(alpha[i] - beta[i - 1] * gL[i - 1])
        gL.append(1 / d[i])
    return d, gL


def resolvent_diag(alpha, beta):
    """The compiled kernel's fused two-sided form: both pivot sweeps, each ``G_ii`` from one
    sweep's ``t_i`` (the left one from the middle on, the right one before it, as the kernel
    interleaves them)."""
    n = len(alpha)
    tL, gL = pivots(alpha, beta)
    tR, gR = [None] * n, [None] * n
    tR[n - 1] = alpha[n - 1]
    gR[n - 1] = 1 / tR[n - 1]
    for i in range(n - 2, -1, -1):
        tR[i] = alpha[i] - beta[i] * gR[i + 1]
        gR[i] = 1 / tR[i]
    if n == 1:
        return [gL[0]], gL, gL
    h = n // 2
    G = [None] * n
    for i in range(n):
        if i >= h:
            G[i] = 1 / (tL[i] - beta[i] * gR[i + 1]) if i < n - 1 else 1 / tL[i]
        else:
            G[i] = 1 / (tR[i] - beta[i - 1] * gL[i - 1]) if i > 0 else 1 / tR[i]
    return G, gL, gR


def logdet_alg(alpha, beta):
    n = len(alpha)
    d = [alpha[0]]
    for i in range(1, n):
        g = 1 / d[i - 1]
        d.append(alpha[i] - beta[i - 1] * g)
    return sum((x.log() for x in d[1:]), d[0].log())


def solve_alg(alpha, b, c, F, gL=None):
    """F: list of k columns."""
    n = len(alpha)
    if gL is None:
        beta = [b[i] * c[i] for i in range(n - 1)]
        Counter.flops -= sum(cost.FLOP_RULES[("mul", b[i].kind, c[i].kind)] for i in range(n - 1))
        _, gL = pivots(alpha, beta)
    m = [None] + [c[i - 1] * gL[i - 1] for i in range(1, n)]
    out = []
    for f in F:
        y = [f[0]]
        for i in range(1, n):
            y.append(f[i] - m[i] * y[i - 1])
        x = [None] * n
        x[n - 1] = gL[n - 1] * y[n - 1]
        for i in range(n - 2, -1, -1):
            x[i] = gL[i] * (y[i] - b[i] * x[i + 1])
        out.append(x)
    return out


def resolvent_backward(gbar, G, gL, gR, beta, b, c):
    n = len(G)
    s = [gbar[i] * (G[i] * G[i]) for i in range(n)]
    rho = [None] + [beta[j - 1] * (gR[j] * gR[j]) for j in range(1, n)]
    lam = [beta[j] * (gL[j] * gL[j]) for j in range(n - 1)] + [None]
    SL = [s[0]]
    for j in range(1, n):
        SL.append(rho[j] * SL[j - 1] + s[j])
    SR = [None] * n
    SR[n - 1] = s[n - 1]
    for j in range(n - 2, -1, -1):
        SR[j] = lam[j] * SR[j + 1] + s[j]
    gdg = [SL[j] + SR[j] - s[j] for j in range(n)]
    da = [-x for x in gdg]
    kappa = [gR[j + 1] * SL[j] + gL[j] * SR[j + 1] for j in range(n - 1)]
    db = [c[j] * kappa[j] for j in range(n - 1)]
    dc = [b[j] * kappa[j] for j in range(n - 1)]
    dz = sum(gdg[1:], gdg[0])
    return da, db, dc, dz


def lu_solve_alg(K, B):
    """K: r x r nested lists, B: r x k (columns = rhs); no pivoting; returns r x k."""
    r = len(K)
    K = [row[:] for row in K]
    Ls = [[None] * r for _ in range(r)]
    for p in range(r):
        for i in range(p + 1, r):
            l = K[i][p] / K[p][p]
            Ls[i][p] = l
            for j in range(p + 1, r):
                K[i][j] = K[i][j] - l * K[p][j]
    k = len(B[0])
    X = [[None] * k for _ in range(r)]
    for col in range(k):
        y = [B[i][col] for i in range(r)]
        for p in range(r):
            for i in range(p + 1, r):
                y[i] = y[i] - Ls[i][p] * y[p]
        x = [None] * r
        for i in range(r - 1, -1, -1):
            acc = y[i]
            for j in range(i + 1, r):
                acc = acc - K[i][j] * x[j]
            x[i] = acc / K[i][i]
        for i in range(r):
            X[i][col] = x[i]
    return X


def dot(xs, ys):
    acc = xs[0] * ys[0]
    for x, y in zip(xs[1:], ys[1:], strict=True):
        acc = acc + x * y
    return acc


def woodbury_alg(alpha, b, c, beta, U, V):
    """U, V: lists of r columns (each N); beta = b c given.  Returns G (N)."""
    n, r = len(alpha), len(U)
    G0, _, _ = resolvent_diag(alpha, beta)
    _, gL = pivots(alpha, beta)
    X = solve_alg(alpha, b, c, U, gL)  # r columns
    Y = solve_alg(alpha, c, b, V, gL)  # transpose: swap b and c
    K = [[dot(V[k], X[l]) for l in range(r)] for k in range(r)]
    for k in range(r):
        K[k][k] = K[k][k] + 1.0
    Wt = lu_solve_alg(K, [Y[k] for k in range(r)])  # r x N
    G = [G0[i] - dot([X[k][i] for k in range(r)], [Wt[k][i] for k in range(r)]) for i in range(n)]
    return G, beta


@pytest.fixture
def problem(rng):
    n = 9
    a = rng.standard_normal(n) - 2.0
    b = rng.standard_normal(n - 1)
    c = rng.standard_normal(n - 1)
    z = 0.3 + 0.7j
    A = np.diag(a - z) + np.diag(b, 1) + np.diag(c, -1)
    return n, a - z, b, c, A


def _cx(x):
    return C(np.asarray(x, dtype=complex))


# ------------------------------------------------------------------------------------------------
# FLOP counts
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("is_complex", [True, False])
def test_resolvent_diagonal_flops(problem, is_complex):
    n, alpha, b, c, A = problem
    if not is_complex:
        alpha = alpha.real
        A = A.real + 0 * A.imag
        A = np.diag(alpha) + np.diag(b, 1) + np.diag(c, -1)
    conv = _cx if is_complex else C
    beta = b * c
    (G, _, _), flops = measure(resolvent_diag, conv(alpha), conv(beta))
    np.testing.assert_allclose(vals(G), np.diag(np.linalg.inv(A)), rtol=1e-12)
    assert flops == cost.resolvent_diagonal_flops(n, complex=is_complex)


def test_logdet_flops(problem):
    n, alpha, b, c, A = problem
    ld, flops = measure(logdet_alg, _cx(alpha), _cx(b * c))
    sign, la = np.linalg.slogdet(A)
    np.testing.assert_allclose(np.exp(ld.v), sign * np.exp(la), rtol=1e-12)
    assert flops == cost.logdet_flops(n, complex=True)


@pytest.mark.parametrize("k", [1, 3])
def test_solve_flops(problem, rng, k):
    n, alpha, b, c, A = problem
    F = rng.standard_normal((k, n)) + 0j
    x, flops = measure(solve_alg, _cx(alpha), _cx(b), _cx(c), [_cx(f) for f in F])
    np.testing.assert_allclose(np.array([vals(xx) for xx in x]), np.linalg.solve(A, F.T).T,
                               rtol=1e-11)
    assert flops == cost.thomas_solve_flops(n, k, complex=True)


def test_resolvent_backward_flops(problem, rng):
    n, alpha, b, c, A = problem
    gbar = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    Cb, Cc = _cx(b), _cx(c)
    beta = [Cb[i] * Cc[i] for i in range(n - 1)]
    G, gL, gR = resolvent_diag(_cx(alpha), beta)
    (da, db, dc, dz), flops = measure(resolvent_backward, _cx(gbar), G, gL, gR, beta, Cb, Cc)
    # dense check: L = sum gbar_i G_ii, dG = -G dA G
    Ginv = np.linalg.inv(A)
    GDG = Ginv @ np.diag(gbar) @ Ginv
    np.testing.assert_allclose(vals(da), -np.diag(GDG), rtol=1e-10)
    np.testing.assert_allclose(vals(db), -np.diag(GDG, -1), rtol=1e-10)  # dL/dA_{j,j+1}
    np.testing.assert_allclose(vals(dc), -np.diag(GDG, 1), rtol=1e-10)
    np.testing.assert_allclose(dz.v, np.trace(GDG), rtol=1e-10)
    assert flops == cost.resolvent_diagonal_backward_flops(n, complex=True)


@pytest.mark.parametrize("r,k", [(1, 2), (4, 3)])
def test_lu_solve_flops(rng, r, k):
    K = rng.standard_normal((r, r)) + 1j * rng.standard_normal((r, r)) + 3 * np.eye(r)
    B = rng.standard_normal((r, k)) + 0j
    X, flops = measure(lu_solve_alg, [_cx(row) for row in K], [_cx(row) for row in B])
    np.testing.assert_allclose(np.array([vals(row) for row in X]), np.linalg.solve(K, B),
                               rtol=1e-12)
    assert flops == cost.lu_solve_flops(r, k, complex=True)


@pytest.mark.parametrize("r", [1, 3])
def test_woodbury_flops(problem, rng, r):
    n, alpha, b, c, A = problem
    U = rng.standard_normal((n, r))
    V = rng.standard_normal((n, r))
    (G, _), flops = measure(woodbury_alg, _cx(alpha), _cx(b), _cx(c), _cx(b * c),
                            [_cx(U[:, k]) for k in range(r)], [_cx(V[:, k]) for k in range(r)])
    np.testing.assert_allclose(vals(G), np.diag(np.linalg.inv(A + U @ V.T)), rtol=1e-10)
    assert flops == cost.woodbury_resolvent_diagonal_flops(n, r, complex=True)
    assert cost.woodbury_resolvent_diagonal_flops(n, 0) == cost.resolvent_diagonal_flops(n)


def test_woodbury_backward_flops(problem, rng):
    """Reverse mode through the Woodbury steps, counted, checked against the dense gradient."""
    n, alpha, b, c, A = problem
    r = 2
    U = rng.standard_normal((n, r))
    V = rng.standard_normal((n, r))
    gbar = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    Ca, Cb, Cc = _cx(alpha), _cx(b), _cx(c)
    Uc = [_cx(U[:, k]) for k in range(r)]
    Vc = [_cx(V[:, k]) for k in range(r)]
    beta = [Cb[i] * Cc[i] for i in range(n - 1)]
    G0, gL, gR = resolvent_diag(Ca, beta)
    X = solve_alg(Ca, Cb, Cc, Uc, gL)
    Y = solve_alg(Ca, Cc, Cb, Vc, gL)
    K = [[dot(Vc[k], X[l]) for l in range(r)] for k in range(r)]
    for k in range(r):
        K[k][k] = K[k][k] + 1.0
    Wt = lu_solve_alg(K, Y)
    gb = _cx(gbar)

    def backward():
        Xbar = [[-(gb[i] * Wt[k][i]) for i in range(n)] for k in range(r)]
        Wbar = [[-(gb[i] * X[k][i]) for i in range(n)] for k in range(r)]
        KT = [[K[j][i] for j in range(r)] for i in range(r)]
        Z = lu_solve_alg(KT, Wbar)  # r x N
        Ybar = Z
        Kbar = [[-dot(Z[k], [Wt[l][i] for i in range(n)]) for l in range(r)] for k in range(r)]
        # Xbar += V Kbar ; Vbar = X Kbar^T
        for l in range(r):
            for i in range(n):
                Xbar[l][i] = Xbar[l][i] + dot([Vc[k][i] for k in range(r)],
                                              [Kbar[k][l] for k in range(r)])
        Vbar = [[dot([X[l][i] for l in range(r)], [Kbar[k][l] for l in range(r)])
                 for i in range(n)] for k in range(r)]
        P = solve_alg(Ca, Cc, Cb, Xbar, gL)  # A^{-T} Xbar
        Q = solve_alg(Ca, Cb, Cc, Ybar, gL)  # A^{-1} Ybar
        for k in range(r):
            for i in range(n):
                Vbar[k][i] = Vbar[k][i] + Q[k][i]
        da = [-dot([P[k][j] for k in range(r)] + [Q[k][j] for k in range(r)],
                   [X[k][j] for k in range(r)] + [Y[k][j] for k in range(r)]) for j in range(n)]
        db = [-dot([P[k][j] for k in range(r)] + [Q[k][j + 1] for k in range(r)],
                   [X[k][j + 1] for k in range(r)] + [Y[k][j] for k in range(r)])
              for j in range(n - 1)]
        dc = [-dot([P[k][j + 1] for k in range(r)] + [Q[k][j] for k in range(r)],
                   [X[k][j] for k in range(r)] + [Y[k][j + 1] for k in range(r)])
              for j in range(n - 1)]
        da0, db0, dc0, _ = resolvent_backward(gb, G0, gL, gR, beta, Cb, Cc)
        da = [x + y for x, y in zip(da, da0, strict=True)]
        db = [x + y for x, y in zip(db, db0, strict=True)]
        dc = [x + y for x, y in zip(dc, dc0, strict=True)]
        return da, db, dc, P, Vbar

    (da, db, dc, Ubar, Vbar), flops = measure(backward)
    # dense: L = sum gbar_i R_ii, R = (A + U V^T)^{-1};  dL/dH = -(R D R)^T
    R = np.linalg.inv(A + U @ V.T)
    Hbar = -(R @ np.diag(gbar) @ R).T
    np.testing.assert_allclose(vals(da), np.diag(Hbar), rtol=1e-9)
    np.testing.assert_allclose(vals(db), np.diag(Hbar, 1), rtol=1e-9)
    np.testing.assert_allclose(vals(dc), np.diag(Hbar, -1), rtol=1e-9)
    np.testing.assert_allclose(np.array([vals(u) for u in Ubar]).T, Hbar @ V, rtol=1e-9)
    np.testing.assert_allclose(np.array([vals(v) for v in Vbar]).T, Hbar.T @ U, rtol=1e-9)
    assert flops == cost.woodbury_resolvent_diagonal_backward_flops(n, r, complex=True)


def test_dense_flops_is_lu():
    assert cost.dense_resolvent_diagonal_flops(5) == cost.lu_solve_flops(5, 5)
    # leading term (8/3 + 8) N^3 complex flops
    n = 400
    assert abs(cost.dense_resolvent_diagonal_flops(n) / n**3 - (8 / 3 + 8)) < 0.1


# ------------------------------------------------------------------------------------------------
# bytes of operators
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("symmetric", [True, False])
def test_tridiagonal_nbytes(rng, dtype, symmetric):
    n, B = 11, 3
    d = rng.standard_normal((B, n)).astype(dtype)
    lo = rng.standard_normal(n - 1).astype(dtype)
    up = None if symmetric else rng.standard_normal(n - 1).astype(dtype)
    T = ss.Tridiagonal(d, lo, up)
    assert T.nbytes == cost.tridiagonal_nbytes(n, dtype, diag_batch=(B,), symmetric=symmetric)
    assert T.dense_nbytes == cost.dense_nbytes(n, dtype, batch=(B,))


def test_itemsize_names():
    import torch

    for dt in (np.float32, np.float64, np.complex64, np.complex128):
        assert cost.itemsize(dt) == np.dtype(dt).itemsize
    for dt in (torch.float32, torch.float64, torch.complex64, torch.complex128):
        assert cost.itemsize(dt) == torch.empty((), dtype=dt).element_size()
    assert cost.complex_dtype_of(torch.float32) == "complex64"
    with pytest.raises(ValueError):
        cost.itemsize("quaternion")


def test_lowrank_nbytes(rng):
    n, r, B = 10, 3, 2
    T = ss.Tridiagonal(rng.standard_normal((B, n)), rng.standard_normal(n - 1))
    H = ss.TridiagonalPlusLowRank(T, rng.standard_normal((n, r)), rng.standard_normal((n, r)))
    assert H.nbytes == cost.lowrank_nbytes(n, r, "float64", diag_batch=(B,), symmetric=True)


def test_import_semisep_does_not_import_torch_or_nn():
    import subprocess
    import sys

    code = ("import sys, semisep, semisep.cost; "
            "assert 'torch' not in sys.modules and 'semisep.nn' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------
# the library's own twins (semisep.backends.numpy *_ref, the plain code the compiled kernels are
# tested against), run on Counted scalars: what the package executes, not the re-implementations
# above
# ------------------------------------------------------------------------------------------------
def _objects(x):
    out = np.empty(np.shape(x), dtype=object)
    out.ravel()[:] = [Counted(complex(v)) for v in np.ravel(x)]
    return out


def _twin_problem(problem):
    n, alpha, b, c, A = problem
    return n, _objects(alpha[None]), _objects(b[None]), _objects(c[None]), np.array([1e-300]), A


_KERNEL_COUNT = """
import json, os, sys
os.environ["NUMBA_DISABLE_JIT"] = "1"  # the kernels run as the Python they are written in
sys.path.insert(0, os.getcwd())
import numpy as np
from tests.test_cost import Counted, measure, _val
from semisep.backends.numpy import _resolvent_row_twosided, _solve_row

cases = json.loads(sys.argv[1])
out = []
for kernel, n, k, cplx, seed, lower_scale in cases:
    rng = np.random.default_rng(seed)
    dt = complex if cplx else float

    def obj(x):
        o = np.empty(np.shape(x), object)
        o.ravel()[:] = [Counted(dt(v)) for v in np.ravel(x)]
        return o

    if kernel == "solve":
        a = rng.standard_normal(n) - 0.3 + (0.7j if cplx else 0)
        b, c = rng.standard_normal(n - 1), lower_scale * rng.standard_normal(n - 1)
        F = rng.standard_normal((n, k))
        x = np.empty((n, k), object)
        work = [np.empty(n, object) for _ in range(2)]
        _, flops = measure(_solve_row, obj(a), obj(b), obj(c), obj(F), 1e-300, x, *work)
        A = np.diag(a) + np.diag(b, 1) + np.diag(c, -1)
        want, got = np.linalg.solve(A, F), x
    else:  # resolvent diagonal, alpha_i = d_i - z formed in the kernel
        d, beta = rng.standard_normal(n) + 2.5, rng.standard_normal(n - 1)
        z = dt(0.3 + 0.7j) if cplx else 0.3
        got = np.empty(n, object)
        _, flops = measure(_resolvent_row_twosided, obj(d), Counted(z), obj(beta), 1e-300, got)
        A = np.diag(d - z) + np.diag(beta, 1) + np.diag(np.ones(n - 1), -1)
        want = np.diag(np.linalg.inv(A))
    err = float(np.abs(np.vectorize(_val)(got).astype(complex) - want).max())
    out.append([flops, err])
print(json.dumps(out))
"""


def _count_kernels(cases):
    """Run the compiled kernels named in ``cases`` as plain Python (numba's JIT off, in a
    subprocess) on counting scalars: ``[(flops, max abs error vs dense NumPy)]``."""
    import json
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-c", _KERNEL_COUNT, json.dumps(cases)], cwd=root,
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_resolvent_diagonal_flops_of_the_compiled_kernel():
    """The compiled two-sided kernel (``_resolvent_row_twosided``) on counting scalars against
    :func:`cost.resolvent_diagonal_flops` plus exactly what the model leaves out: forming
    ``alpha_i = d_i - z`` in each of the two sweeps (``2 N`` subtractions; the model starts
    from ``alpha``) and the kernel's arithmetic on typed zeros at the chain's ends (four
    ``0 * 0`` products and their subtractions where a neighbour is missing, and the zero's own
    construction)."""
    cases = [["resolvent", n, 0, cplx, n, 0.0] for n in (2, 3, 8, 9) for cplx in (True, False)]
    for (_, n, _, cplx, _, _), (flops, err) in zip(cases, _count_kernels(cases), strict=True):
        assert err < 1e-12, (n, err)
        kind = "C" if cplx else "R"
        add, mul_zero = cost.FLOP_RULES[("add", kind, kind)], cost.FLOP_RULES[("mul", "R", kind)]
        ends = 4 * (mul_zero + add) + add
        assert flops == cost.resolvent_diagonal_flops(n, complex=cplx) + 2 * n * add + ends, (n, cplx)


def test_solve_flops_of_the_compiled_kernel():
    """The compiled pivoted solve (``_solve_row``) on counting scalars against
    :func:`cost.solve_flops`, with the number of row exchanges taken from LAPACK's own
    ``?gttrf`` pivots (independent of the package): real and complex, one and several
    right-hand sides, few and many exchanges (a small or large subdiagonal)."""
    from scipy.linalg import lapack

    cases = [["solve", n, k, cplx, seed, scale] for n, k, cplx, seed, scale in
             [(9, 1, True, 0, 0.2), (9, 3, True, 1, 5.0), (12, 2, False, 2, 1.0),
              (7, 1, False, 3, 5.0), (3, 2, True, 4, 1.0), (1, 3, True, 5, 1.0)]]
    seen = set()
    for (_, n, k, cplx, seed, scale), (flops, err) in zip(cases, _count_kernels(cases), strict=True):
        assert err < 1e-10, (n, k, err)
        rng = np.random.default_rng(seed)
        a = rng.standard_normal(n) - 0.3 + (0.7j if cplx else 0)
        b, c = rng.standard_normal(n - 1), scale * rng.standard_normal(n - 1)
        if n > 1:
            gttrf = lapack.zgttrf if cplx else lapack.dgttrf
            *_, ipiv, info = gttrf(c.astype(a.dtype), a, b.astype(a.dtype))
            assert info == 0
            exchanges = int(np.sum(ipiv[:-1] != np.arange(1, n)))
        else:
            exchanges = 0
        seen.add(exchanges)
        assert flops == cost.solve_flops(n, k, complex=cplx, exchanges=exchanges), (n, k, cplx)
    assert len(seen) >= 3  # the exchange term is exercised, not only zero


def test_left_pivot_flops_of_the_library_twin(problem):
    """``left_pivots_ref`` (the LU sweep every operation starts from) against the model's
    pivot term: ``recip + (N-1)(mul + add + recip)``."""
    from semisep.backends.numpy import left_pivots_ref

    n, alpha, b, c, pm, A = _twin_problem(problem)
    beta = np.array([[Counted(complex(v)) for v in (problem[2] * problem[3])]], dtype=object)
    (gL, _, _), flops = measure(left_pivots_ref, alpha, beta, pm)
    d = 1.0 / np.vectorize(_val)(gL[0]).astype(complex)
    np.testing.assert_allclose(np.prod(d), np.linalg.det(A), rtol=1e-11)
    assert flops == cost.thomas_solve_flops(n, 0, complex=True) - (n - 1) * cost.FLOP_RULES[("mul", "C", "C")]


def test_resolvent_diagonal_flops_of_the_library_twin(problem):
    """``resolvent_diagonal_ref``: the model's fused count plus the ``N`` products and sums the
    twin spends forming each ``gamma_i`` from scratch (the kernel reuses its sweep's ``t_i``)."""
    from semisep.backends.numpy import resolvent_diagonal_ref

    n, alpha, b, c, pm, A = _twin_problem(problem)
    beta = np.array([[Counted(complex(v)) for v in (problem[2] * problem[3])]], dtype=object)
    (G, _, singular), flops = measure(resolvent_diagonal_ref, alpha, beta, pm)
    assert not singular.any()
    np.testing.assert_allclose(np.vectorize(_val)(G[0]).astype(complex),
                               np.diag(np.linalg.inv(A)), rtol=1e-11)
    extra = n * (cost.FLOP_RULES[("mul", "C", "C")] + cost.FLOP_RULES[("add", "C", "C")])
    assert flops == cost.resolvent_diagonal_flops(n, complex=True) + extra, flops
