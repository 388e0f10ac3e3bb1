"""The fast paths of the NumPy quasiseparable engine and of the kernels' generators, each against
its plain twin: the symmetric-storage (LDL^T) factorization and inverse diagonal against the
general kernels and the dense / sequential reference; rank-specialised kernels against the
run-time-rank ones; inputs with a stride-0 N axis (``q = v`` of a kernel) passed without copying;
the compiled kernel generators against the kernels' NumPy formulas."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import semisep as ss
from semisep import kernels as K
from semisep import reference as ref
from semisep.backends.numpy import quasiseparable as kq

from .helpers import eps_of


def relerr(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def sym_gens(rng, B, n, r, dtype):
    """A batch of symmetric-storage generators with a diagonally dominant diagonal."""
    cplx = np.dtype(dtype).kind == "c"

    def g(*shape):
        x = rng.standard_normal(shape)
        return (x + 1j * rng.standard_normal(shape) if cplx else x).astype(dtype)

    alpha = (g(B, n) + 4 + 2 * r).astype(dtype)
    p = (0.5 * g(B, n, r)).astype(dtype)
    q = (0.5 * g(B, n, r)).astype(dtype)
    a = (0.5 / max(r, 1) ** 0.5 * g(B, n, r, r)).astype(dtype)
    return alpha, p, q, a


@pytest.mark.parametrize("dtype", [np.float64, np.complex128, np.float32])
@pytest.mark.parametrize("r", [1, 3, 7])  # 7 > MAX_UNROLLED_RANK: the run-time-rank variant
def test_symmetric_factor_and_inverse_diagonal_match_general_kernels(rng, dtype, r):
    B, n = 3, 40
    alpha, p, q, a = sym_gens(rng, B, n, r, dtype)
    piv = np.full(B, 1e-30)
    d, qt, ht, guarded, last_small, _, delta = kq.factor_kernel(alpha, p, q, a, p, q, a, piv)
    sd, sqt, sht, sg, sls, sdelta = kq.factor_symmetric_kernel(alpha, p, q, a, piv)
    tol = 50 * eps_of(dtype)
    assert relerr(sd, d) < tol and relerr(sqt, qt) < tol and relerr(sht, ht) < tol
    assert np.array_equal(sg, guarded) and np.array_equal(sls, last_small)
    assert np.all(sdelta == 0) and np.all(delta == 0)
    # ht = d qt for symmetric storage
    assert relerr(sht, sd[..., None] * sqt) < tol
    G = kq.inverse_diagonal_kernel(d, qt, ht, p, a, p, a)
    Gs = kq.inverse_diagonal(sd, sqt, sht, p, a, p, a)  # (g, b) is (p, a): symmetric recursion
    assert relerr(Gs, G) < 20 * tol
    for k in range(B):
        A = ref.qsm_to_dense(alpha[k], p[k], q[k], a[k])
        assert relerr(Gs[k], np.diag(np.linalg.inv(A.astype(np.complex128)))) < 20 * tol
        logabs = np.sum(np.log(np.abs(sd[k].astype(np.complex128))))
        assert relerr(logabs, np.linalg.slogdet(A.astype(np.complex128))[1]) < 20 * tol


def test_symmetric_factor_guards_like_the_general_kernel():
    """A zero leading minor (alpha_0 = 0): the symmetric kernel guards and counts the pivot and
    reports the same change of the diagonal as the general kernel."""
    n, r = 6, 2
    rng = np.random.default_rng(3)
    alpha, p, q, a = sym_gens(rng, 1, n, r, np.float64)
    alpha[0, 0] = 0.0
    piv = np.array([1e-8])
    d, qt, ht, guarded, last_small, _, delta = kq.factor_kernel(alpha, p, q, a, p, q, a, piv)
    sd, sqt, sht, sg, sls, sdelta = kq.factor_symmetric_kernel(alpha, p, q, a, piv)
    assert sg[0] == guarded[0] == 1
    assert sdelta[0, 0] == delta[0, 0] == 1e-8
    assert relerr(sd, d) < 1e-12


@pytest.mark.parametrize("r", [2, 7])
def test_solve_sweeps_rank_specialised_and_generic_agree(rng, r):
    """The solve sweeps compiled for a fixed rank equal the run-time-rank sweeps (empty
    witness) and solve the symmetric system."""
    B, n = 2, 30
    alpha, p, q, a = sym_gens(rng, B, n, r, np.float64)
    d, qt, ht, *_ = kq.factor_symmetric_kernel(alpha, p, q, a, np.full(B, 1e-30))
    f = rng.standard_normal((B, n, 2))
    x = kq.solve_factored_kernel(d, qt, ht, p, a, p, a, f)
    xg = np.empty_like(x)
    kq._sweeps_batch((), d, p, qt, a, False, ht, p, a, f, xg)
    assert relerr(x, xg) < 1e-14
    # one right-hand side: the vector sweeps, the same operations as the matrix sweeps
    x1 = kq.solve_factored_kernel(d, qt, ht, p, a, p, a, np.ascontiguousarray(f[..., :1]))
    np.testing.assert_array_equal(x1[..., 0], x[..., 0])
    x1t = kq.solve_factored_kernel(d, qt, ht, p, a, p, a, np.ascontiguousarray(f[..., 1:]), True)
    xt = kq.solve_factored_kernel(d, qt, ht, p, a, p, a, f, True)
    np.testing.assert_array_equal(x1t[..., 0], xt[..., 1])
    for k in range(B):
        A = ref.qsm_to_dense(alpha[k], p[k], q[k], a[k])
        assert relerr(A @ x[k], f[k]) < 1e-13


def test_stride0_inputs_are_not_copied_and_give_the_same_results(rng):
    """``q`` and ``h`` with a stride-0 N axis (one vector for every step) run as length 1; the
    factors, products and solves equal those of the expanded copies."""
    B, n, r = 2, 25, 3
    alpha, p, _, a = sym_gens(rng, B, n, r, np.float64)
    v = rng.standard_normal(r)
    q0 = np.broadcast_to(v, (B, n, r))
    assert kq._compact(q0).shape == (B, 1, r)
    qe = np.ascontiguousarray(q0)
    piv = np.full(B, 1e-30)
    out0 = kq.factor(alpha, p, q0, a, p, q0, a, piv)
    oute = kq.factor(alpha, p, qe, a, p, qe, a, piv)
    for x0, xe in zip(out0, oute, strict=True):
        assert np.array_equal(x0, xe)
    # the general kernel with compact q and h (distinct upper form)
    g, hv = rng.standard_normal((B, n, 2)), rng.standard_normal(2)
    b = 0.4 * rng.standard_normal((B, n, 2, 2))
    h0 = np.broadcast_to(hv, (B, n, 2))
    gen0 = kq.factor(alpha, p, q0, a, g, h0, b, piv)
    gene = kq.factor(alpha, p, qe, a, g, np.ascontiguousarray(h0), b, piv)
    for x0, xe in zip(gen0, gene, strict=True):
        assert np.array_equal(x0, xe)
    x = rng.standard_normal((B, n, 1))
    y0 = kq.matvec(alpha, p, q0, a, g, h0, b, x)
    ye = kq.matvec(alpha, p, qe, a, g, np.ascontiguousarray(h0), b, x)
    assert np.array_equal(y0, ye)
    for k in range(B):
        A = ref.qsm_to_dense(alpha[k], p[k], qe[k], a[k], g[k], np.ascontiguousarray(h0)[k], b[k])
        assert relerr(y0[k], A @ x[k]) < 1e-13


def test_operator_symmetric_path_matches_general_storage(rng):
    """A symmetric-storage operator (symmetric kernels) and the same matrix in general storage
    (general kernels): logdet, solve and the inverse diagonal agree, and both match dense."""
    t = np.sort(rng.uniform(0, 30, (2, 60)), axis=-1)
    kern = K.Celerite(1.0, 0.1, 0.5, 2.0) + K.Matern32(1.5, 0.8)
    sym = kern.to_operator(t, diag=0.05)
    gen = ss.Quasiseparable(sym.diag, sym.p, sym.q, sym.a, sym.p, sym.q, sym.a)
    y = rng.standard_normal((2, 60))
    assert relerr(sym.logdet(), gen.logdet()) < 1e-13
    assert relerr(sym.solve(y), gen.solve(y)) < 1e-12
    assert relerr(sym.resolvent_diagonal(0), gen.resolvent_diagonal(0)) < 1e-12
    dense = kern(t) + 0.05 * np.eye(60)
    assert relerr(sym.logdet(), np.linalg.slogdet(dense)[1]) < 1e-13
    assert relerr(sym.resolvent_diagonal(0), np.diagonal(np.linalg.inv(dense), axis1=-2, axis2=-1)) < 1e-12


KERNELS = [
    K.Exp(2.0, 1.3), K.Matern32(1.5, 0.7), K.Matern52(0.8, 2.0), K.Cosine(3.0, 1.1),
    K.SHO(1.2, 3.0, 0.9), K.SHO(1.2, 0.3, 0.9), K.SHO(1.2, 0.5, 0.9),
    K.Celerite(1.0, 0.1, 0.5, 2.0), K.Celerite(1.0, 0.1, 0.5, 2.0) + K.Exp(5.0, 0.7),
    K.Matern32(2.0) * K.Cosine(3.0), 2.5 * (K.SHO(2.0, 3.0) + K.Matern52(1.0)),
    K.Matern32(np.array(2.0), np.float64(1.1)),
]


@pytest.mark.parametrize("kern", KERNELS, ids=repr)
@pytest.mark.parametrize("batch", [(), (2, 3)])
def test_compiled_generators_match_numpy_formulas(monkeypatch, kern, batch):
    """The compiled assembly of the generators (float64 NumPy, scalar parameters) equals the
    kernels' NumPy assembly (its plain twin, forced by disabling the compiled path) bit for bit,
    with the same shapes; and the compiled path is the one taken (Exp, of order 1, has none)."""
    import semisep.backends.numpy.kernel_generators as kg
    import semisep.kernels._terms as terms

    rng = np.random.default_rng(11)
    t = np.sort(rng.uniform(0, 40, batch + (200,)), axis=-1)
    calls = []
    real_fill = kg.fill

    def counting_fill(*args, **kw):
        out = real_fill(*args, **kw)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(kg, "fill", counting_fill)
    fast = kern.to_generators(t)
    if repr(kern).startswith("Exp"):
        assert not calls
    else:
        assert calls and all(calls)
    monkeypatch.setattr(terms, "_compiled_parts", lambda *a, **kw: None)
    slow = kern.to_generators(t)
    for f, s in zip(fast, slow, strict=True):
        assert f.shape == s.shape and f.dtype == s.dtype
        np.testing.assert_array_equal(f, s)
    dense = kern(t)
    op = kern.to_operator(t)
    assert relerr(op.to_dense(), dense) < 1e-13


def test_compiled_generators_skip_what_they_do_not_cover():
    """Array parameters, float32 coordinates and torch fall back to the NumPy/torch formulas;
    ``fill`` declines fields of another dtype or an ``out`` of another shape."""
    from semisep.backends.numpy.kernel_generators import fill

    e = np.linspace(0, 1, 5)
    assert fill("matern32", (e.astype(np.float32), e.astype(np.float32)), 1.0) is None
    assert fill("matern32", (e, e), 1.0, np.empty((5, 3, 3))) is None
    a, p = fill("matern32", (e, e), 2.0)
    assert a.shape == (5, 2, 2) and p.shape == (5, 2)
    k = K.Matern32(scale=np.array([1.0, 2.0]))
    d, p, q, a = k.to_generators(np.sort(np.random.default_rng(0).uniform(0, 3, (2, 7))))
    assert a.shape == (2, 7, 2, 2)
    t32 = np.linspace(0, 3, 9, dtype=np.float32)
    assert K.Matern32(1.0).to_generators(t32)[3].dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("ranks,symmetric", [((0, 0), True), ((3, 3), True), ((1, 2), False)])
def test_compiled_pivot_scale_equals_the_numpy_expression(dtype, ranks, symmetric):
    """The pivot guard's scale from one compiled pass (real data) is the NumPy expression's,
    exactly (same products, same order); complex data use the NumPy expression; NaN propagates."""
    rng = np.random.default_rng(5)
    n, (rl, ru) = 9, ranks
    cplx = np.dtype(dtype).kind == "c"

    def g(*s):
        return (rng.standard_normal(s) + (1j * rng.standard_normal(s) if cplx else 0)).astype(dtype)

    if symmetric:
        op = ss.Quasiseparable(g(2, n), g(2, n, rl), np.broadcast_to(g(rl), (n, rl)), g(n, rl, rl))
    else:
        op = ss.Quasiseparable(g(2, n), g(2, n, rl), g(n, rl), g(n, rl, rl), g(n, ru), g(2, n, ru),
                               g(n, ru, ru))
    for z in (0.0, 0.5 + 1.0j):
        f = op.factor(z)
        rows = f._rows
        eps = np.finfo(f.dtype).eps
        tiny = float(np.finfo(np.float32 if eps > 1e-10 else np.float64).tiny)
        want = rows._scale(f._alpha) * eps
        want = want + (want < tiny) * tiny
        got = rows.pivmin(f._alpha)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    alpha = np.ones((1, 5))
    alpha[0, 2] = np.nan
    p = np.ones((1, 5, 1))
    assert np.isnan(kq.pivot_scale(alpha, p, p, p, p)[0])
    assert kq.pivot_scale(alpha.astype(complex), p, p, p, p) is None


# ------------------------------------------------------------------------------------------------
# row-parallel NumPy steps of a batched call (semisep.backends.numpy.quasiseparable_rows)
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def split_rows(monkeypatch):
    """Force the row-parallel path at test sizes: two threads, chunks of one or two rows."""
    import semisep.backends.numpy.quasiseparable_rows as qr

    monkeypatch.setattr(qr, "threads", lambda: 2)
    monkeypatch.setattr(qr, "MIN_PARALLEL_ELEMENTS", 1)
    monkeypatch.setattr(qr, "MIN_CHUNK_ELEMENTS", 150)
    return qr


ROW_KERNELS = [
    K.Celerite(1.0, 0.1, 0.5, 2.0) + K.Exp(5.0, 0.7), K.Matern32(1.5, 0.7),
    K.Matern32(2.0) * K.Cosine(3.0), 2.5 * (K.SHO(2.0, 0.3) + K.Matern52(1.0)),
]


@pytest.mark.parametrize("kern", ROW_KERNELS, ids=repr)
def test_row_parallel_generators_and_pipeline_match_the_whole_batch_code(split_rows, monkeypatch,
                                                                         kern):
    """``to_generators`` / ``to_operator`` built row by row on two threads, and the row-parallel
    log-determinant and inverse-diagonal certificate, equal the whole-batch code (their plain
    twin, forced with one chunk) bit for bit, shapes and dtypes included."""
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 30, (2, 3, 200)), axis=-1)
    y = rng.standard_normal((2, 3, 200))
    noises = (0.05, np.full(200, 0.05), rng.uniform(0.01, 0.1, (3, 200)))
    calls = []
    real_run = split_rows.run_rows
    monkeypatch.setattr(split_rows, "run_rows",
                        lambda fn, chunks: calls.append(len(chunks)) or real_run(fn, chunks))

    def pipeline():
        out = list(kern.to_generators(t))
        for diag in noises:
            op = kern.to_operator(t, diag=diag)
            f = op.factor()
            out += [op.diag, op.p, op.q, op.a, f.solve(y), f.logdet(), op.resolvent_diagonal(0)]
        return out

    fast = pipeline()
    assert calls and min(calls) >= 2  # the generators, logdet and certificate ran in chunks
    monkeypatch.setattr(split_rows, "plan", lambda rows, n: [(0, rows)])
    slow = pipeline()
    for f, s in zip(fast, slow, strict=True):
        assert f.shape == s.shape and f.dtype == s.dtype
        assert f.flags.writeable == s.flags.writeable  # same compiled signatures downstream
        np.testing.assert_array_equal(f, s)
    op = kern.to_operator(t, diag=0.05)
    assert relerr(op.to_dense(), kern(t) + 0.05 * np.eye(200)) < 1e-13


def test_row_parallel_steps_equal_numpy_expressions(split_rows):
    """``log_abs_det`` and ``max_abs_rows`` (row chunks on two threads) are the NumPy
    expressions of the whole array, bit for bit; NaN propagates."""
    rng = np.random.default_rng(4)
    d = rng.standard_normal((7, 300)) * np.exp(rng.uniform(-30, 30, (7, 300)))
    d[3, 5] = -1e-300
    logabs, neg = kq.log_abs_det(d)
    np.testing.assert_array_equal(logabs, np.log(np.abs(d)).sum(-1))
    np.testing.assert_array_equal(neg, (d < 0).astype(np.float64).sum(-1) % 2 == 1)
    d[2, 7] = np.nan
    m = kq.max_abs_rows(d)
    np.testing.assert_array_equal(m, np.max(np.abs(d), axis=-1))
    assert np.isnan(m[2]) and not np.isnan(m[1])


def test_row_parallel_errors_are_the_whole_batch_errors(split_rows):
    """A row with unsorted or non-finite coordinates, or a non-finite noise entry, gives the
    whole-batch code's error (naming the argument and the position); an exception inside a
    chunk reaches the caller; one thread or one row means one chunk (no split along N)."""
    t = np.sort(np.random.default_rng(5).uniform(0, 10, (4, 100)), axis=-1)
    k = K.Matern32(1.0)
    bad = t.copy()
    bad[2, 40] = bad[2, 39] - 1.0
    with pytest.raises(ValueError, match=r"sorted .* t\[\.\.\., 40\]"):
        k.to_operator(bad, diag=0.1)
    bad = t.copy()
    bad[3, 7] = np.inf
    with pytest.raises(ss.NonFiniteError, match="coordinates 't' must be finite"):
        k.to_generators(bad)
    noise = np.full(100, 0.1)
    noise[50] = np.nan
    with pytest.raises(ss.NonFiniteError, match="'diag'"):
        k.to_operator(t, diag=noise)
    with pytest.raises(ZeroDivisionError):
        split_rows.run_rows(lambda s, e: 1 // (s - 2), [(0, 1), (1, 2), (2, 3), (3, 4)])
    assert split_rows.run_rows(lambda s, e: (s, e), [(0, 2), (2, 3)]) == [(0, 2), (2, 3)]
    assert split_rows.plan(1, 10 ** 6) == [(0, 1)]
    assert split_rows.plan(4, 100) == [(0, 2), (2, 4)]  # chunks of >= 150 elements


def test_row_parallel_plan_without_threads(monkeypatch):
    """With one numba thread every call runs in the calling thread, in one chunk."""
    import semisep.backends.numpy.quasiseparable_rows as qr

    monkeypatch.setattr(qr, "threads", lambda: 1)
    assert qr.plan(8, 1 << 17) == [(0, 8)]
    assert qr.run_rows(lambda s, e: threading.get_ident(), [(0, 4), (4, 8)]) == [threading.get_ident()] * 2
    monkeypatch.undo()
    assert qr.plan(8, 1 << 4) == [(0, 8)]  # too small to split


def test_fused_factor_and_inverse_diagonal_equal_the_two_passes(monkeypatch, rng):
    """``resolvent_diagonal`` of symmetric float64 storage runs the factorization and the
    inverse diagonal of each row in one pass; the values, pivots and singularity handling are
    those of ``factor`` followed by the inverse-diagonal kernel, bit for bit.  Other dtypes and
    general storage decline the fused path."""
    import semisep.backends.numpy.quasiseparable_rows as qr

    monkeypatch.setattr(qr, "MIN_PARALLEL_ELEMENTS", 1)  # test sizes take the fused path
    calls = []
    real = kq.factor_inverse_diagonal

    def counting(*args):
        out = real(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(kq, "factor_inverse_diagonal", counting)
    alpha, p, q, a = sym_gens(rng, 3, 60, 3, np.float64)
    op = ss.Quasiseparable(alpha, p, q, a)
    for z in (0.0, 0.3):
        fused = op.resolvent_diagonal(z)
        assert calls[-1] is True
        two = op.factor(z).resolvent_diagonal()
        np.testing.assert_array_equal(fused, two)
    assert relerr(fused, np.diagonal(np.linalg.inv(op.to_dense() - 0.3 * np.eye(60)), 0, -2, -1)) < 1e-12
    for other in (ss.Quasiseparable(alpha.astype(np.complex128), p, q, a),
                  ss.Quasiseparable(alpha, p, q, a, p, q, a)):
        other.resolvent_diagonal(0.0)
        assert calls[-1] is False
    # a singular symmetric matrix: the same error from the fused path
    sing = ss.Quasiseparable(np.ones((2, 4)), np.ones((4, 1)), np.ones((4, 1)), np.ones((4, 1, 1)))
    with pytest.raises(ss.SingularMatrixError):
        sing.resolvent_diagonal(0.0)


def test_recycled_buffers_are_reused_only_when_nothing_refers_to_them(monkeypatch):
    """``empty`` / ``zeros`` of the row module: large arrays are views of kept buffers, handed
    out again only once no array (view, reshape, slice) refers to them; ``zeros`` is zero on
    dirty memory; small arrays are plain; the cap holds; ``release`` drops free buffers."""
    import semisep.backends.numpy.quasiseparable_rows as qr

    monkeypatch.setattr(qr, "RECYCLE_MIN_BYTES", 1024)
    monkeypatch.setattr(qr, "RECYCLE_MAX_BYTES", 1 << 16)
    monkeypatch.setattr(qr, "_buffers", [])

    def addr(x):
        return x.__array_interface__["data"][0]

    small = qr.zeros((10,))
    assert small.base is None and not small.any()
    x = qr.empty((40, 8), np.float64)
    assert x.shape == (40, 8) and x.dtype == np.float64 and x.flags.c_contiguous
    x[...] = 7.0
    first = addr(x)
    view = x[3:, ::2].reshape(-1)
    del x
    y = qr.empty((40, 8))
    assert addr(y) != first                    # a slice of the first array is alive
    del view
    z = qr.zeros((20, 16))                     # same size, 2560 bytes: reuses the first buffer
    assert addr(z) == first and not z.any()
    c = qr.empty((4, 10, 8), np.complex128)    # 5120 bytes: a new buffer
    assert c.dtype == np.complex128 and addr(c) not in (first, addr(y))
    big = qr.empty((1 << 14,))                 # over the cap: not kept
    assert sum(b.nbytes for b in qr._buffers) <= 1 << 16
    del y, z, c, big
    qr.release()
    assert qr._buffers == []


def test_recycled_outputs_never_alias_live_operators(monkeypatch):
    """With every array recycled, operators and factorizations built one after the other while
    the earlier ones are alive keep their own data, and every result equals the run without
    recycling, bit for bit."""
    import semisep.backends.numpy.quasiseparable_rows as qr

    rng = np.random.default_rng(8)
    t = np.sort(rng.uniform(0, 30, (3, 150)), axis=-1)
    y = rng.standard_normal((3, 150))
    kern = K.Celerite(1.0, 0.1, 0.5, 2.0) + K.Exp(5.0, 0.7)

    def run():
        ops = [kern.to_operator(t * s, diag=0.05) for s in (1.0, 1.5)]
        facs = [op.factor() for op in ops]
        out = [f.solve(y) for f in facs] + [f.logdet() for f in facs]
        out += [op.resolvent_diagonal(0) for op in ops]
        return ops, out

    monkeypatch.setattr(qr, "RECYCLE_MIN_BYTES", 1 << 62)
    plain_ops, plain = run()
    monkeypatch.setattr(qr, "RECYCLE_MIN_BYTES", 64)
    monkeypatch.setattr(qr, "_buffers", [])
    ops, rec = run()
    for a, b in zip(rec, plain, strict=True):
        np.testing.assert_array_equal(a, b)
    for op, ref_op in zip(ops, plain_ops, strict=True):
        for name in ("diag", "p", "a"):
            np.testing.assert_array_equal(getattr(op, name), getattr(ref_op, name))
    assert qr._buffers  # the recycled path ran


def _separate_kernels(alpha, p, q, a):
    """The twin of the fused kernel: ``pivot_scale`` -> ``pivmin`` as the operator forms it,
    ``factor_symmetric_kernel``, the symmetric inverse-diagonal kernel, ``max |G|`` by NumPy."""
    scale = kq.pivot_scale(alpha, p, q, p, q)
    piv = scale * np.finfo(np.float64).eps
    piv = piv + (piv < np.finfo(np.float64).tiny) * np.finfo(np.float64).tiny
    d, qt, ht, guarded, last_small, delta = kq.factor_symmetric_kernel(alpha, p, q, a, piv)
    G = kq.inverse_diagonal(d, qt, ht, p, a, p, a)
    return d, qt, guarded, last_small, delta, G, piv, np.max(np.abs(G), axis=-1)


@pytest.mark.parametrize("r", [1, 2, 3])  # 2: the scalar-state rows; 1, 3: the generic rows
@pytest.mark.parametrize("B", [1, 3])  # 1: the serial entry point
@pytest.mark.parametrize("layout", ["full", "shared"])  # shared: q and a of length 1 on N
def test_fused_kernel_equals_the_separate_kernels(rng, r, B, layout):
    """The one-call inverse diagonal (pivot scale and max|G| inside the sweeps) equals
    pivot_scale + factor_symmetric_kernel + the inverse-diagonal kernel: value for value for the
    generic rows (ranks 1, 3), to rounding for the rank-2 rows (the same terms summed in another
    order); the pivot threshold and the guard's outcome exactly."""
    from semisep.backends.numpy.quasiseparable_fused import factor_inverse_diagonal_symmetric_kernel

    n = 50
    alpha, p, q, a = sym_gens(rng, B, n, r, np.float64)
    if layout == "shared":
        q, a = np.ascontiguousarray(q[:1, :1]), np.ascontiguousarray(a[:1, :1])
    d, qt, guarded, last_small, delta, G, piv, gmax = factor_inverse_diagonal_symmetric_kernel(
        alpha, p, q, a)
    want = _separate_kernels(alpha, p, q, a)
    for got, ref_ in ((guarded, want[2]), (last_small, want[3]), (piv, want[6])):
        np.testing.assert_array_equal(got, ref_)
    for got, ref_ in ((d, want[0]), (qt, want[1]), (G, want[5]), (gmax, want[7])):
        if r == 2:
            assert relerr(got, ref_) < 20 * eps_of(np.float64)
        else:
            np.testing.assert_array_equal(got, ref_)
    assert delta is None and np.all(want[4] == 0)
    for k in range(B):
        A = ref.qsm_to_dense(alpha[k], p[k % p.shape[0]], np.broadcast_to(q[k % q.shape[0]], (n, r)),
                             np.broadcast_to(a[k % a.shape[0]], (n, r, r)))
        assert relerr(G[k], np.diag(np.linalg.inv(A))) < 1e-12


@pytest.mark.parametrize("r", [1, 2])
def test_fused_kernel_refactors_a_row_whose_pivot_needs_the_guard(rng, r):
    """A row with a zero leading minor (``alpha_0 = 0``): the unguarded sweep sees a pivot below
    ``pivmin``, the row is factored again with the guard; pivots, ``delta`` and the guard count
    equal the guarded kernel's, the other row keeps ``delta = 0``."""
    from semisep.backends.numpy.quasiseparable_fused import factor_inverse_diagonal_symmetric_kernel

    alpha, p, q, a = sym_gens(rng, 2, 30, r, np.float64)
    alpha[1, 0] = 0.0
    d, qt, guarded, last_small, delta, G, piv, gmax = factor_inverse_diagonal_symmetric_kernel(
        alpha, p, q, a)
    wd, wqt, wg, wls, wdelta, wG, wpiv, wgmax = _separate_kernels(alpha, p, q, a)
    assert guarded.tolist() == [0, 1] and wg.tolist() == [0, 1]
    # the guarded row is factored by the generic row (exactly the guarded kernel's factors)
    for got, ref_ in ((d[1], wd[1]), (qt[1], wqt[1]), (last_small, wls), (delta, wdelta),
                      (piv, wpiv)):
        np.testing.assert_array_equal(got, ref_)
    # the other row: the rank-2 (or generic) row, to rounding; the guarded row's inverse
    # diagonal is that of a neighbouring matrix with entries of size 1/pivmin (the operator
    # refuses to return it), so only the row that was not guarded is compared
    for got, ref_ in ((d[0], wd[0]), (qt[0], wqt[0]), (G[0], wG[0]), (gmax[0], wgmax[0])):
        assert relerr(got, ref_) < 20 * eps_of(np.float64)
    assert np.all(delta[0] == 0) and delta[1, 0] == piv[1]


def test_fused_kernel_propagates_nan_to_the_certificate(rng):
    """A NaN entry (``check_finite=False``) gives NaN ``pivmin`` and ``max |G|``, as the
    separate NumPy reductions do: the operator then reports the matrix singular."""
    from semisep.backends.numpy.quasiseparable_fused import factor_inverse_diagonal_symmetric_kernel

    alpha, p, q, a = sym_gens(rng, 1, 20, 2, np.float64)
    alpha[0, 5] = np.nan
    out = factor_inverse_diagonal_symmetric_kernel(alpha, p, q, a)
    assert np.isnan(out[6][0]) and np.isnan(out[7][0])
    want = _separate_kernels(alpha, p, q, a)
    assert np.isnan(want[6][0]) and np.isnan(want[7][0])


def test_resolvent_diagonal_batch_one_takes_the_fused_path(monkeypatch, rng):
    """A single large enough row (a GP posterior variance) takes the one-call path; its
    ``pivmin`` is the operator's (``_Rows.pivmin``) and the values those of ``factor`` +
    ``resolvent_diagonal``."""
    import semisep.backends.numpy.quasiseparable_rows as qr

    monkeypatch.setattr(qr, "MIN_PARALLEL_ELEMENTS", 64)
    calls = []
    real = kq.factor_inverse_diagonal

    def counting(*args):
        out = real(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(kq, "factor_inverse_diagonal", counting)
    t = np.sort(rng.uniform(0, 30, 200))
    op = K.Matern32(scale=1.5, sigma=0.7).to_operator(t, diag=0.01)
    G, info = op.resolvent_diagonal(0.0, return_info=True)
    assert calls == [True]
    fac = op.factor(0.0)
    assert relerr(G, fac.resolvent_diagonal()) < 1e-13  # rank 2: the same terms, another order
    np.testing.assert_array_equal(info.pivmin, fac.pivmin.reshape(()))
    assert relerr(G, np.diag(np.linalg.inv(op.to_dense()))) < 1e-12


# ------------------------------------------------------------------------------------------------
# diagonal transitions a (..., N, r)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("r", [1, 3, 4])
@pytest.mark.parametrize("layout", ["full", "shared"])
def test_diagonal_transition_kernels_equal_the_matrix_kernels(rng, r, layout):
    """The O(r^2) factorization equals the matrix kernel on diag(ad_i) value for value (the
    same terms in the same order; the products by zero entries drop out exactly), guarded
    pivot included; the inverse diagonal (the rank-one expansion of ah^T Psi ah) to rounding."""
    from semisep.backends.numpy import quasiseparable_diagonal as qd

    B, n = 2, 40
    alpha, p, q, _ = sym_gens(rng, B, n, r, np.float64)
    ad = rng.uniform(-0.9, 0.9, (B, n, r))
    if layout == "shared":
        q, ad = np.ascontiguousarray(q[:1, :1]), np.ascontiguousarray(ad[:1, :1])
    alpha[1, 0] = 0.0  # a guarded pivot in row 1
    a = np.ascontiguousarray(qd.expand(ad))
    piv = np.full(B, 1e-14)
    got = qd.factor_symmetric_diagonal_kernel(alpha, p, q, ad, piv)
    want = kq.factor_symmetric_kernel(alpha, p, q, a, piv)
    for x, y in zip(got, want, strict=True):
        np.testing.assert_array_equal(x, y)
    assert got[3][1] == 1 and got[3][0] == 0  # guarded counts
    G = qd.inverse_diagonal_symmetric_diagonal_kernel(got[0], got[1], p, ad)
    Gm = kq.inverse_diagonal(want[0], want[1], want[2], p, a, p, a)
    assert relerr(G[0], Gm[0]) < 50 * eps_of(np.float64)
    A = ref.qsm_to_dense(alpha[0], p[0], np.broadcast_to(q[0], (n, r)),
                         np.broadcast_to(a[0], (n, r, r)))
    assert relerr(G[0], np.diag(np.linalg.inv(A))) < 1e-12


@pytest.mark.parametrize("r", [2, 3, 5])
def test_operator_with_diagonal_transitions(monkeypatch, rng, r):
    """``Quasiseparable(diag, p, q, ad)`` with ``ad (..., N, r)``: ``a`` is held as matrices,
    the diagonals run the O(r^2) kernels from rank 3 on (counted); logdet, solve and the
    inverse diagonal agree with dense and with the operator built from the matrices; a batch
    with a shared (broadcast) ``ad`` and a singular matrix behave as with matrices."""
    from semisep.backends.numpy import quasiseparable as eng

    calls = []
    for name in ("factor_symmetric_diagonal_kernel", "inverse_diagonal_symmetric_diagonal_kernel"):
        real = getattr(eng, name)
        monkeypatch.setattr(eng, name, lambda *a, _r=real: (calls.append(1), _r(*a))[1])
    n = 45
    alpha, p, q, _ = sym_gens(rng, 3, n, r, np.float64)
    ad = np.broadcast_to(rng.uniform(-0.9, 0.9, (n, r)), (3, n, r))  # shared by the batch
    op = ss.Quasiseparable(alpha, p, q, ad)
    assert op.a.shape == (3, n, r, r) and np.array_equal(op.a[0, 5], np.diag(ad[0, 5]))
    opm = ss.Quasiseparable(alpha, p, q, np.ascontiguousarray(op.a))
    A = opm.to_dense()
    for z in (0.0, 0.7):
        Az = A - z * np.eye(n)
        G = op.resolvent_diagonal(z)
        assert relerr(G, np.diagonal(np.linalg.inv(Az), 0, -2, -1)) < 1e-12
        assert relerr(G, opm.resolvent_diagonal(z)) < 50 * eps_of(np.float64)
        assert relerr(op.logdet(z), np.linalg.slogdet(Az)[1]) < 1e-12
        b = rng.standard_normal((3, n))
        assert relerr(op.solve(b, z), np.linalg.solve(Az, b[..., None])[..., 0]) < 1e-12
    assert (len(calls) > 0) == (r >= eng.DIAGONAL_MIN_RANK)
    e = np.zeros((4, r))
    e[:, 0] = 1.0
    sing = ss.Quasiseparable(np.ones(4), e, e, np.ones((4, r)))  # the all-ones matrix
    with pytest.raises(ss.SingularMatrixError):
        sing.resolvent_diagonal(0.0)


@pytest.mark.parametrize("B", [1, 3])
def test_fused_kernel_with_diagonal_transitions_equals_the_diagonal_kernels(rng, B):
    """The one-call inverse diagonal on diagonal transitions runs the diagonal kernels' rows:
    the same values as pivot_scale + factor_symmetric_diagonal_kernel + its inverse diagonal,
    guarded row included."""
    from semisep.backends.numpy import quasiseparable_diagonal as qd
    from semisep.backends.numpy.quasiseparable_fused import factor_inverse_diagonal_symmetric_kernel

    n, r = 40, 4
    alpha, p, q, _ = sym_gens(rng, B, n, r, np.float64)
    ad = rng.uniform(-0.9, 0.9, (B, n, r))
    alpha[B - 1, 0] = 0.0  # the last row needs the guard
    d, qt, guarded, last_small, delta, G, piv, gmax = factor_inverse_diagonal_symmetric_kernel(
        alpha, p, q, ad)
    want_piv = _separate_kernels(alpha, p, q, np.ascontiguousarray(qd.expand(ad)))[6]
    wd, wqt, _, wg, wls, wdelta = qd.factor_symmetric_diagonal_kernel(alpha, p, q, ad, want_piv)
    wG = qd.inverse_diagonal_symmetric_diagonal_kernel(wd, wqt, p, ad)
    for got, ref_ in ((d, wd), (qt, wqt), (guarded, wg), (last_small, wls), (delta, wdelta),
                      (G, wG), (piv, want_piv), (gmax, np.max(np.abs(wG), axis=-1))):
        np.testing.assert_array_equal(got, ref_)
    assert guarded[B - 1] == 1


def test_operator_diagonal_transitions_take_the_one_call_path(monkeypatch, rng):
    """A large enough symmetric operator with diagonal transitions of rank >= 3 runs its
    inverse diagonal in one call on the diagonals; values as with the matrices."""
    import semisep.backends.numpy.quasiseparable_rows as qr

    monkeypatch.setattr(qr, "MIN_PARALLEL_ELEMENTS", 64)
    seen = []
    real = kq.factor_inverse_diagonal

    def spy(alpha, p, q, a, *rest):
        out = real(alpha, p, q, a, *rest)
        seen.append((a.ndim, out is not None))
        return out

    monkeypatch.setattr(kq, "factor_inverse_diagonal", spy)
    n, r = 120, 3
    alpha, p, q, _ = sym_gens(rng, 1, n, r, np.float64)
    ad = rng.uniform(-0.9, 0.9, (n, r))
    op = ss.Quasiseparable(alpha[0], p[0], q[0], ad)
    G = op.resolvent_diagonal(0.2)
    assert seen == [(3, True)]
    opm = ss.Quasiseparable(alpha[0], p[0], q[0], np.ascontiguousarray(op.a))
    assert relerr(G, opm.resolvent_diagonal(0.2)) < 50 * eps_of(np.float64)
    assert relerr(G, np.diag(np.linalg.inv(opm.to_dense() - 0.2 * np.eye(n)))) < 1e-12
