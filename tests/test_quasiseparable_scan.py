"""The chunked scan form of the quasiseparable recursions
(:mod:`semisep.backends.torch.quasiseparable_scan`, the torch path off the CPU), run on CPU
tensors and checked against the sequential (numba) kernels, the portable loop and the dense
reference; its launch count; its selection."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import semisep as ss  # noqa: E402
from semisep import reference as ref  # noqa: E402
from semisep.backends.torch import quasiseparable as tq  # noqa: E402
from semisep.backends.torch import quasiseparable_scan as qs  # noqa: E402
from semisep.backends.torch.select import select_quasiseparable_kernel  # noqa: E402
from semisep.kernels import SHO, Exp, Matern32  # noqa: E402


def relerr(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _g(rng, shape, cplx, scale=1.0):
    x = rng.standard_normal(shape)
    return torch.tensor((x + 1j * rng.standard_normal(shape) if cplx else x) * scale)


def engine_args(rng, B, n, rl, ru, cplx, symmetric, shared=False):
    """Kernel-layout inputs ``(alpha, p, q, a, g, h, b)``: rows of length B or 1, transitions
    with an N axis of length N (or 1 with ``shared``), diagonally dominant (no guard)."""
    m = 1 if shared else n
    alpha = _g(rng, (B, n), cplx) + 4 * (rl + ru + 1)
    lo = (_g(rng, (B, n, rl), cplx, 0.5), _g(rng, (1, n, rl), cplx, 0.5),
          _g(rng, (1, m, rl, rl), cplx, 0.5 / max(rl, 1) ** 0.5))
    if symmetric:
        return (alpha,) + lo + lo
    up = (_g(rng, (1, n, ru), cplx, 0.5), _g(rng, (B, n, ru), cplx, 0.5),
          _g(rng, (1, m, ru, ru), cplx, 0.5 / max(ru, 1) ** 0.5))
    return (alpha,) + lo + up


CASES = [  # (B, n, rl, ru, L): N a multiple of L, not a multiple, N < L, N = 1, one chunk
    (2, 37, 2, 3, 4), (3, 32, 2, 2, 8), (2, 5, 2, 1, 8), (1, 1, 2, 2, 4), (2, 40, 3, 2, None),
    (2, 23, 1, 0, 4), (2, 23, 0, 2, 4),
]


@pytest.mark.parametrize("cplx", [False, True], ids=["float64", "complex128"])
@pytest.mark.parametrize("symmetric", [False, True], ids=["general", "symmetric"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}-N{}-r{}x{}-L{}".format(*c))
def test_engine_against_the_sequential_kernels(case, symmetric, cplx):
    B, n, rl, ru, L = case
    ru = rl if symmetric else ru  # symmetric storage has one rank
    rng = np.random.default_rng(n * 7 + rl)
    args = engine_args(rng, B, n, rl, ru, cplx, symmetric, shared=(n == 32))
    piv = torch.full((B,), 1e-300, dtype=torch.float64)
    f1 = tq.factor(*args, piv)
    f2 = qs.factor_scan(*args, piv, L=L)
    for x1, x2 in zip(f1[:3], f2[:3], strict=True):
        assert x2.shape == x1.shape and relerr(x2, x1) < 1e-14
    assert (f2[3] == 0).all() and (f2[4] == f1[4]).all()
    fac = (f1[0], f1[1], f1[2], args[1], args[3], args[4], args[6])
    rhs = _g(rng, (B, n, 2), cplx)
    for tr in (False, True):
        assert relerr(qs.solve_scan(*fac, rhs, tr, L=L), tq.solve_loop(*fac, rhs, tr)) < 1e-14
    assert relerr(qs.inverse_diagonal_scan(*fac, L=L), tq.inverse_diagonal(*fac)) < 1e-14
    assert relerr(qs.matvec_scan(*args, rhs, L=L), tq.matvec(*args, rhs)) < 1e-14


def test_semiseparable_runs_on_the_scan():
    """``Semiseparable`` (identity transitions, shared by every step) through the scan form."""
    rng = np.random.default_rng(12)
    n, r = 50, 2
    P, Q, R, S = (torch.tensor(rng.standard_normal((2, n, r)) * 0.3) for _ in range(4))
    op = ss.Semiseparable(torch.tensor(rng.standard_normal((2, n)) + 6), P, Q, R, S)
    b = torch.tensor(rng.standard_normal((2, n)))
    want = (op.solve(b, 0.5j), op.resolvent_diagonal(0.5j), op.logdet(0.5j), op.matvec(b))
    m = "chunked"  # N = 50: chunks of 8
    got = (op.solve(b, 0.5j, method=m), op.resolvent_diagonal(0.5j, method=m),
           op.logdet(0.5j, method=m), op.matvec(b, method=m))
    for x, y in zip(got, want, strict=True):
        assert relerr(x, y) < 1e-14


def _spy_loop(monkeypatch):
    """Record the batch rows that :func:`factor_scan` hands to the portable loop."""
    seen = []
    loop = tq.factor_loop

    def spy(alpha, *rest):
        seen.append(rest[-1].shape[0])
        return loop(alpha, *rest)

    monkeypatch.setattr(tq, "factor_loop", spy)
    return seen


@pytest.mark.parametrize("seed", range(10))
def test_random_shapes_against_the_sequential_kernels(seed):
    """Random ranks 0..3, batch 1..3, N 1..40, chunk lengths 1..6 or the default, real or
    complex, symmetric or general: every scan output against the sequential kernels."""
    rng = np.random.default_rng(100 + seed)
    B, n = int(rng.integers(1, 4)), int(rng.integers(1, 41))
    rl, ru = int(rng.integers(0, 4)), int(rng.integers(0, 4))
    L = [1, 2, 3, 5, 6, None][int(rng.integers(0, 6))]
    cplx, symmetric = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))
    ru = rl if symmetric else ru
    args = engine_args(rng, B, n, rl, ru, cplx, symmetric, shared=bool(rng.integers(0, 2)))
    piv = torch.full((B,), 1e-300, dtype=torch.float64)
    f1 = tq.factor(*args, piv)
    f2 = qs.factor_scan(*args, piv, L=L)
    for x1, x2 in zip(f1[:3], f2[:3], strict=True):
        assert relerr(x2, x1) < 1e-14
    fac = (f1[0], f1[1], f1[2], args[1], args[3], args[4], args[6])
    rhs = _g(rng, (B, n, int(rng.integers(1, 3))), cplx)
    for tr in (False, True):
        assert relerr(qs.solve_scan(*fac, rhs, tr, L=L), tq.solve_loop(*fac, rhs, tr)) < 1e-14
    assert relerr(qs.inverse_diagonal_scan(*fac, L=L), tq.inverse_diagonal(*fac)) < 1e-14
    assert relerr(qs.matvec_scan(*args, rhs, L=L), tq.matvec(*args, rhs)) < 1e-14


def _gp(name, cspan, n, rng, batch=()):
    t = np.sort(rng.uniform(0, 1.0, batch + (n,)), axis=-1)
    k = {"exp": lambda: Exp(1.0 / cspan), "matern32": lambda: Matern32(1.0 / cspan),
         "sho": lambda: SHO(cspan, 3.0), "exp+sho": lambda: Exp(1.0 / cspan) + SHO(cspan, 0.3)}
    return k[name]().to_operator(torch.tensor(t), diag=0.1)


@pytest.mark.parametrize("cspan", [1.0, 1e2, 1e4])
@pytest.mark.parametrize("name", ["exp", "matern32", "sho", "exp+sho"])
def test_gp_kernels_at_long_spans_against_sequential(name, cspan, monkeypatch):
    """The public operations with ``method="chunked"`` against the sequential kernels,
    for GP covariances plus noise at c * span from 1 to 1e4 (batch 2, N = 700: 44 chunks of
    16).  The solve is compared relative to cond-sized error: at c * span = 1 the matrix has
    cond ~ 1e5-1e7 and both solves carry that rounding."""
    rng = np.random.default_rng(int(cspan) + len(name))
    op = _gp(name, cspan, 700, rng, (2,))
    y = torch.tensor(rng.standard_normal((2, 700)))
    f1 = op.factor()
    ref_out = (f1.pivots, f1.logdet(), f1.solve(y), f1.resolvent_diagonal(), op.matvec(y))
    seen = _spy_loop(monkeypatch)
    f2 = op.factor(method="chunked")  # its solves and inverse diagonal too
    ld, info = f2.logdet(return_info=True)
    out = (f2.pivots, ld, f2.solve(y), f2.resolvent_diagonal(), op.matvec(y, method="chunked"))
    assert info.method == "chunked" and seen == []  # no row left the scan
    tols = (1e-14, 1e-14, 1e-11, 1e-13, 1e-13)
    for what, a, b, tol in zip(("pivots", "logdet", "solve", "invdiag", "matvec"), out, ref_out,
                               tols, strict=True):
        assert relerr(a, b) < tol, what


def test_gp_long_sequence_against_sequential(monkeypatch):
    """N = 2^14 (1024 chunks of 16, 10 scan levels), Matern-3/2 at c * span = 1e4."""
    rng = np.random.default_rng(5)
    op = _gp("matern32", 1e4, 2**14, rng)
    y = torch.tensor(rng.standard_normal(2**14))
    f1 = op.factor()
    seen = _spy_loop(monkeypatch)
    f2 = op.factor(method="chunked")
    x2, G2 = f2.solve(y), f2.resolvent_diagonal()
    assert seen == [] and relerr(f2.pivots, f1.pivots) < 1e-14
    assert relerr(x2, f1.solve(y)) < 1e-13
    assert relerr(G2, f1.resolvent_diagonal()) < 1e-13


@pytest.mark.parametrize("cspan", [1e2, 1e4])
def test_float32_gp_kernel(cspan):
    """float32 Matern-3/2 + noise: the scan agrees with the sequential kernels to a few
    float32 roundings (times the conditioning for the solve)."""
    rng = np.random.default_rng(9)
    t = np.sort(rng.uniform(0, 1.0, 2000))
    op = Matern32(1.0 / cspan).to_operator(torch.tensor(t, dtype=torch.float32), diag=0.1)
    y = torch.tensor(rng.standard_normal(2000), dtype=torch.float32)
    f1 = op.factor()
    f2 = op.factor(method="chunked")
    assert f2.pivots.dtype == torch.float32
    assert relerr(f2.pivots, f1.pivots) < 2e-6
    assert relerr(f2.solve(y), f1.solve(y)) < 2e-5
    assert relerr(f2.resolvent_diagonal(), f1.resolvent_diagonal()) < 2e-5


def test_against_the_dense_reference():
    rng = np.random.default_rng(11)
    args = [x.numpy() for x in engine_args(rng, 1, 19, 2, 3, True, False)]
    dense = ref.qsm_to_dense(args[0][0], *(x[0] for x in args[1:]))
    op = ss.Quasiseparable(*(torch.tensor(x[0]) for x in args))
    b = rng.standard_normal(19)
    m = "chunked"  # N = 19: chunks of 4, the last one padded
    x = op.solve(torch.tensor(b + 0j), 0.2j, method=m).numpy()
    G = op.resolvent_diagonal(0.2j, method=m).numpy()
    ld = complex(op.logdet(0.2j, method=m))
    A = dense - 0.2j * np.eye(19)
    assert relerr(x, np.linalg.solve(A, b)) < 1e-13
    assert relerr(G, np.diag(np.linalg.inv(A))) < 1e-13
    sign, lad = np.linalg.slogdet(A)
    assert abs(np.exp(ld - lad) - sign) < 1e-13


def test_singular_chunk_block_falls_back_to_the_loop(monkeypatch):
    """A zero diagonal entry at a chunk start makes that chunk's block singular (its first
    local pivot is 0) while the global LU is regular: the row is recomputed by the loop."""
    rng = np.random.default_rng(2)
    alpha, p, q, a, g, h, b = engine_args(rng, 2, 24, 2, 2, False, False)
    alpha = alpha.clone()
    alpha[0, 8] = 0.0  # row 0: chunk 2 (L = 4) starts with a zero local pivot
    piv = torch.full((2,), 1e-14, dtype=torch.float64)
    f1 = tq.factor(alpha, p, q, a, g, h, b, piv)
    seen = _spy_loop(monkeypatch)
    f2 = qs.factor_scan(alpha, p, q, a, g, h, b, piv, L=4)
    assert seen == [1]  # one row went to the loop
    assert f1[3].sum() == 0 and abs(float(f1[0][0, 8])) > 1e-6  # the global pivot is regular
    for x1, x2 in zip(f1[:3], f2[:3], strict=True):
        assert relerr(x2, x1) < 1e-13


def test_carry_check_hands_rows_to_the_loop(monkeypatch):
    """The carry check is wired: with a tolerance no mismatch can meet, every row of a
    multi-chunk factorization goes to the loop (and the result is the loop's)."""
    rng = np.random.default_rng(6)
    args = engine_args(rng, 3, 30, 2, 2, False, True)
    piv = torch.full((3,), 1e-300, dtype=torch.float64)
    monkeypatch.setattr(qs, "_tol", lambda d: -1.0)
    seen = _spy_loop(monkeypatch)
    f2 = qs.factor_scan(*args, piv, L=4)
    assert seen == [3]
    assert relerr(f2[0], tq.factor(*args, piv)[0]) < 1e-14


def test_guarded_pivot_rows_match_the_sequential_guard(monkeypatch):
    """A vanishing leading minor (guarded pivot): the rows go to the loop and the count, the
    delta and the factors are the sequential kernel's."""
    seen = _spy_loop(monkeypatch)
    rng = np.random.default_rng(4)
    alpha, p, q, a, g, h, b = engine_args(rng, 2, 20, 1, 1, False, True)
    alpha = alpha.clone()
    alpha[1, 0] = 0.0  # first pivot of row 1 is zero: guarded
    piv = torch.full((2,), 1e-10, dtype=torch.float64)
    f1 = tq.factor(alpha, p, q, a, g, h, b, piv)
    f2 = qs.factor_scan(alpha, p, q, a, g, h, b, piv, L=4)
    assert list(f1[3]) == list(f2[3]) == [0, 1] and seen == [1]
    for x1, x2 in zip(f1[:3] + f1[5:], f2[:3] + f2[5:], strict=True):
        assert relerr(x2, x1) < 1e-12


def test_renormalised_products_two_sided():
    """``X -> (A X R) + C`` with ``A = 1/2``, ``R = 2`` per step: the state is the running
    sum of ``C``, but the chunk products are ``2^-s`` and ``2^s`` with s up to 16384, which
    underflow and overflow (0 * inf) unless kept as mantissa and exponent."""
    n, L = 2**14, 16
    lay = qs._Layout(n, L)
    C = torch.tensor(np.random.default_rng(0).standard_normal((1, n, 1, 1)))
    A = torch.full((1, 1, 1, 1), 0.5, dtype=torch.float64)
    R = torch.full((1, 1, 1, 1), 2.0, dtype=torch.float64)
    X = lay.take(qs._affine_scan(lay.put(A), lay.put(C), lay.put(R)))[0, :, 0, 0]
    want = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(C[0, :, 0, 0], 0)[:-1]])
    assert torch.isfinite(X).all()
    assert relerr(X, want) < 1e-12


@pytest.mark.parametrize("cplx", [False, True], ids=["float64", "complex128"])
def test_gradcheck_through_the_scan(cplx):
    """float64 / complex128 gradcheck of logdet + solve + inverse diagonal (autograd through
    the torch ops of the scan form), every input, N = 7 in chunks of 4 (the last one padded)."""
    rng = np.random.default_rng(8)
    args = [x[0].clone().requires_grad_(True) for x in engine_args(rng, 1, 7, 2, 1, cplx, False)]
    y = _g(rng, (7,), cplx).requires_grad_(True)

    def f(d, p, q, a, g, h, b, y):
        op = ss.Quasiseparable(d, p, q, a, g, h, b)
        fac = op.factor(0.1, method="chunked")
        out = fac.logdet() + (y * fac.solve(y)).sum() + fac.resolvent_diagonal().sum()
        out = out + (y * op.matvec(y, method="chunked")).sum()
        return torch.view_as_real(out) if out.is_complex() else out

    assert torch.autograd.gradcheck(f, (*args, y))


class _Launches(TorchDispatchMode):
    """Counts the non-view aten ops dispatched (about one kernel launch each on a GPU)."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.n += 1
        return func(*args, **(kwargs or {}))


def _count(n):
    rng = np.random.default_rng(0)
    args = engine_args(rng, 2, n, 2, 2, False, True)
    piv = torch.full((2,), 1e-300, dtype=torch.float64)
    counts = []
    with _Launches() as c:
        d, qt, ht, *_ = qs.factor_scan(*args, piv)
    counts.append(c.n)
    fac = (d, qt, ht, args[1], args[3], args[4], args[6])
    rhs = torch.ones((1, n, 1), dtype=torch.float64)
    for call in (lambda: qs.solve_scan(*fac, rhs), lambda: qs.inverse_diagonal_scan(*fac),
                 lambda: qs.matvec_scan(*args, rhs)):
        with _Launches() as c:
            call()
        counts.append(c.n)
    return np.array(counts)


def test_launches_grow_like_log_n():
    """Past the chunk-length cap (N >= 2^8) every doubling of N adds one scan level: equal
    increments per doubling (counts of factor, solve, inverse diagonal, matvec), so the count
    at N = 2^20 is ``c(2^10) + 10 (c(2^11) - c(2^10))``: under 2.5x the count at 2^10, where a
    loop over N would take 1024x."""
    c10, c11, c12 = _count(2**10), _count(2**11), _count(2**12)
    assert (c12 - c11 == c11 - c10).all(), (c10, c11, c12)
    assert (c10 + 10 * (c11 - c10) < 2.5 * c10).all(), (c10, c11)
    assert (c10 < 2**11).all()


def test_selection_and_the_method_argument():
    sel = select_quasiseparable_kernel
    assert sel("factor", "auto", device_type="cuda") == "chunked"
    assert sel("factor", "auto", device_type="cpu") == "sequential"
    assert sel("inverse_diagonal", "auto", device_type="cpu", needs_grad=True) == "chunked"
    assert sel("solve", "chunked", device_type="cpu") == "chunked"
    assert sel("solve", "loop", device_type="cuda") == "loop"
    with pytest.raises(ValueError, match="sequential"):
        sel("solve", "sequential", device_type="cuda")
    with pytest.raises(ValueError, match="method"):
        sel("solve", "fast", device_type="cpu")
    one = ss.Quasiseparable(3 * torch.ones(3), torch.ones(3, 1), torch.ones(3, 1), torch.ones(3, 1))
    with pytest.raises(ValueError, match="method"):
        one.factor(method="fast")
    with pytest.raises(ValueError, match="method"):
        ss.Quasiseparable(np.ones(3), np.ones((3, 1)), np.ones((3, 1)), np.ones((3, 1))).logdet(
            method="chunked")  # a torch path
    with pytest.raises(ValueError, match="chunk_length"):
        tq.factor(*(x[None] for x in (one.diag, one.p, one.q, one.a, one.p, one.q, one.a)),
                  torch.ones(1), method="chunked", chunk_length=0)
    assert one.logdet(method="chunked", return_info=True)[1].method == "chunked"
    x = torch.ones(3, dtype=torch.float64)
    assert tq.kernel_ran("factor", x) == "sequential"
    off_cpu = torch.ones(3, device="meta")  # any non-CPU device: the scan form
    assert tq.kernel_ran("inverse_diagonal", off_cpu) == "chunked"
    with pytest.raises(ValueError, match="meta"):
        tq.kernel_ran("factor", off_cpu, method="sequential")
    assert tq.kernel_ran("factor", x, method="chunked") == "chunked"
    assert tq.kernel_ran("factor", x, method="loop") == "loop"
    assert tq.kernel_ran("factor", x) == "sequential"


def test_inverse_diagonal_gradients_on_cpu_run_the_scan_and_equal_the_loop():
    """On CPU, ``auto`` runs an inverse diagonal that needs a gradient as the scan form; its
    value and the gradients of the kernel's parameters and the noise equal the portable loop's
    (Matern-3/2 plus white noise, N = 300: 19 chunks of 16)."""
    rng = np.random.default_rng(21)
    t = torch.tensor(np.sort(rng.uniform(0, 30, 300)))
    out = {}
    for method in ("auto", "loop"):
        scale = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
        noise = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
        op = Matern32(scale=scale).to_operator(t, diag=noise)
        G, info = op.resolvent_diagonal(method=method, return_info=True)
        (G * torch.linspace(1, 2, 300, dtype=torch.float64)).sum().backward()
        out[method] = (info.method, G.detach(), scale.grad, noise.grad)
    assert out["auto"][0] == "chunked" and out["loop"][0] == "loop"
    assert relerr(out["auto"][1], out["loop"][1]) < 1e-13
    for k in (2, 3):
        assert abs(float(out["auto"][k] - out["loop"][k])) <= 1e-12 * abs(float(out["loop"][k]))
