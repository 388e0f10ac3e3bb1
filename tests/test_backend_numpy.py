"""The compiled numba kernels against their plain NumPy twins, on the kernel contract."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from semisep.backends import numpy as nb


def rows(rng, B, N, dtype):
    alpha = rng.standard_normal((B, N))
    if np.dtype(dtype).kind == "c":
        alpha = alpha + 1j * rng.standard_normal((B, N))
    b = rng.standard_normal((B, N - 1))
    c = rng.standard_normal((B, N - 1))
    if N > 300:
        # long rows: make the recursion contractive (diagonally dominant) so that the different
        # (fused) operation order of the two implementations cannot be amplified by conditioning
        alpha = alpha + 4.0 * np.sign(alpha.real)
    pivmin = np.full(B, 8 * np.finfo(dtype).eps)
    return alpha.astype(dtype), b.astype(dtype), c.astype(dtype), pivmin


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("B,N", [(1, 1), (1, 2), (3, 17), (5, 200), (1, 1 << 15)])
def test_compiled_kernels_match_twins(rng, dtype, B, N):
    alpha, b, c, pivmin = rows(rng, B, N, dtype)
    beta = b * c
    tol = 1e3 * np.finfo(dtype).eps  # same algorithm, same order of operations up to fusion
    G, g1, s1 = nb.resolvent_diagonal_kernel(alpha, beta, pivmin)
    Gr, g2, s2 = nb.resolvent_diagonal_ref(alpha, beta, pivmin)
    assert np.array_equal(g1, g2) and np.array_equal(s1, s2)
    assert np.all(np.abs(G - Gr) <= tol * np.abs(Gr) * 10 + tol)
    ld, g1, s1 = nb.logdet_kernel(alpha, beta, pivmin)
    ldr, g2, s2 = nb.logdet_ref(alpha, beta, pivmin)
    assert np.array_equal(g1, g2)
    assert np.all(np.abs(ld - ldr) <= tol * N * (1 + np.abs(ldr)))
    f = rng.standard_normal((B, N, 2)).astype(dtype)
    x, _, _ = nb.solve_kernel(alpha, b, c, f, pivmin)
    xr, _, _ = nb.solve_ref(alpha, b, c, f, pivmin)
    assert np.all(np.abs(x - xr) <= tol * 10 * (np.abs(xr) + np.abs(xr).max()))
    gL, _ = nb.left_pivots(alpha, beta, pivmin)
    gLr, _, _ = nb.left_pivots_ref(alpha, beta, pivmin)
    assert np.all(np.abs(gL - gLr) <= tol * 10 * (np.abs(gLr) + 1))
    gR, _ = nb.right_pivots(alpha, beta, pivmin)
    gRr, _ = nb.right_pivots_ref(alpha, beta, pivmin)
    assert np.all(np.abs(gR - gRr) <= tol * 10 * (np.abs(gRr) + 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("N", [1, 2, 3, 4, 5, 6, 7, 64, 65])
def test_two_sided_kernel_every_length(rng, dtype, N):
    """The kernel meets its two sweeps in the middle: even and odd N, the middle position,
    N = 1, 2, against the twin; guarded counts equal (zero leading minors planted)."""
    alpha, b, c, pivmin = rows(rng, 2, N, dtype)
    alpha[0, : N // 2] = 0.0  # zero pivots on the left half of row 0 ...
    alpha[1, N // 2 :] = 0.0  # ... and on the right half of row 1
    beta = b * c
    G, g1, s1 = nb.resolvent_diagonal_kernel(alpha, beta, pivmin)
    with np.errstate(divide="ignore", invalid="ignore"):  # the twin divides by an exact zero
        Gr, g2, s2 = nb.resolvent_diagonal_ref(alpha, beta, pivmin)
    assert np.array_equal(g1, g2) and np.array_equal(s1, s2)
    ok = ~s2  # singular rows come back with huge entries; compare the regular ones
    tol = 1e4 * np.finfo(dtype).eps
    assert np.all(np.abs(G[ok] - Gr[ok]) <= tol * (np.abs(Gr[ok]) + 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("N", [1, 2, 3, 4, 5, 8, 9, 64, 65])
def test_paired_rows_kernel_matches_one_row_kernel(rng, dtype, N):
    """The with-pivots kernel with rows two at a time (:func:`_pivots_rows_paired`) gives the
    one-row kernel's G, gL, gR, guard counts and singular flags, and the twins'; zero pivots
    planted on both halves, one row exactly singular, 2 pairs + 1 single row."""
    B = 5
    alpha, b, c, pivmin = rows(rng, B, N, dtype)
    alpha[0, : N // 2] = 0.0
    alpha[1, N // 2 :] = 0.0
    alpha[3, 0] = 0.0
    beta = b * c
    if N > 1:
        beta[4] = 0.0  # row 4 diagonal ...
    alpha[4, N // 2] = 0.0  # ... with a zero on it: exactly singular
    shift = np.zeros(B, alpha.dtype)
    pm = pivmin.astype(alpha.real.dtype)
    out = {}
    for npairs in (0, 2):
        G, gL, gR = (np.empty_like(alpha) for _ in range(3))
        guarded = np.zeros(B, np.int64)
        singular = np.zeros(B, np.bool_)
        with np.errstate(divide="ignore", invalid="ignore"):
            if npairs:
                nb._resolvent_pivots_pairs(alpha, shift, beta, pm, G, gL, gR, guarded, singular, npairs)
            nb._resolvent_pivots_batch(alpha, shift, beta, pm, G, gL, gR, guarded, singular, 2 * npairs)
        out[npairs] = G, gL, gR, guarded, singular
    (G1, L1, R1, g1, s1), (G2, L2, R2, g2, s2) = out[0], out[2]
    assert np.array_equal(g1, g2) and np.array_equal(s1, s2)
    assert s1[4]
    ok = ~s1
    tol = 8 * np.finfo(dtype).eps  # same steps; operation fusion may differ by an ulp
    for X1, X2 in ((G1, G2), (L1, L2), (R1, R2)):
        assert np.all(np.abs(X1[ok] - X2[ok]) <= tol * np.abs(X1[ok]))
    with np.errstate(divide="ignore", invalid="ignore"):
        Gr, gr, sr = nb.resolvent_diagonal_ref(alpha, beta, pivmin)
        Lr = nb.left_pivots_ref(alpha, beta, pivmin)[0]
    assert np.array_equal(g2, gr) and np.array_equal(s2, sr)
    tol = 1e4 * np.finfo(dtype).eps
    assert np.all(np.abs(G2[ok] - Gr[ok]) <= tol * (np.abs(Gr[ok]) + 1))
    assert np.all(np.abs(L2[ok] - Lr[ok]) <= tol * (np.abs(Lr[ok]) + 1))


def test_batch_uses_row_pairs_when_every_thread_gets_one():
    """The public kernel picks pairs only with at least two rows per thread."""
    import numba

    t = numba.get_num_threads()
    assert nb._row_pairs(2 * t) == t and nb._row_pairs(2 * t + 1) == t
    assert nb._row_pairs(2 * t - 1) == 0 and nb._row_pairs(1) == 0


@pytest.mark.parametrize("N", [1, 2, 9])
def test_backward_kernel_real_beta_and_conjugate_mode(rng, N):
    """The backward kernel with a real ``beta`` (real products) equals it on the complex
    ``beta``; ``conjugate=True`` gives ``conj(K(conj(gbar)))`` (torch's convention)."""
    B = 3
    diag = (-2.0 + rng.uniform(-1, 1, (B, N)))
    beta = rng.uniform(0.5, 1.0, (B, N - 1))
    shift = np.array([0.1 + 0.3j, -0.5 + 0.2j, 1.0 + 1.0j])
    pivmin = np.full(B, 1e-14)
    G, gL, gR, _, _ = nb.resolvent_diagonal_shifted_with_pivots(diag, shift, beta, pivmin)
    gbar = rng.standard_normal((B, N)) + 1j * rng.standard_normal((B, N))
    da, db = nb.resolvent_diagonal_backward(gbar, G, gL, gR, beta.astype(complex))
    da_r, db_r = nb.resolvent_diagonal_backward(gbar, G, gL, gR, beta)
    tol = 1e-13 * (np.abs(da).max() + 1)
    assert np.abs(da_r - da).max() <= tol and np.abs(db_r - db).max(initial=0) <= tol
    da_c, db_c = nb.resolvent_diagonal_backward(gbar.conj(), G, gL, gR, beta, conjugate=True)
    assert np.array_equal(da_c, da_r.conj()) and np.array_equal(db_c, db_r.conj())
    # the real part written by the kernel, and the row sum it accumulates
    for conj in (False, True):
        g_in = gbar.conj() if conj else gbar
        full, _, s_full = nb.resolvent_diagonal_backward(g_in, G, gL, gR, beta, conjugate=conj,
                                                         return_sum=True)
        re, db_re, s_re = nb.resolvent_diagonal_backward(g_in, G, gL, gR, beta, conjugate=conj,
                                                         real_dalpha=True, return_sum=True)
        assert re.dtype == np.float64 and re.flags.c_contiguous and re.shape == (B, N)
        assert np.array_equal(re, full.real) and np.array_equal(db_re, db_c if conj else db_r)
        assert np.allclose(s_full, full.sum(axis=1), rtol=1e-13, atol=1e-13 * np.abs(full).sum())
        assert np.array_equal(s_re, s_full)


@pytest.mark.parametrize("real_dtype", [np.float32, np.float64])
def test_shifted_kernel_matches_formed_alpha(rng, real_dtype):
    """``diag - shift`` formed in registers (real diag and beta, complex shift, a stride-0
    batch of beta) equals the kernel on the materialised complex ``alpha``."""
    B, N = 3, 1001
    diag = (-2.0 + rng.uniform(-1, 1, (B, N))).astype(real_dtype)
    off = rng.uniform(0.5, 1.0, N - 1).astype(real_dtype)
    cdt = np.result_type(real_dtype, np.complex64)
    shift = np.array([0.1 + 1e-3j, -0.5 + 0.2j, 1.0 + 1.0j], cdt)
    beta = np.broadcast_to(off * off, (B, N - 1))
    pivmin = np.full(B, 8 * np.finfo(real_dtype).eps)
    G, g1, s1 = nb.resolvent_diagonal_shifted_kernel(diag, shift, beta, pivmin)
    assert G.dtype == cdt
    alpha = (diag - shift[:, None]).astype(cdt)
    Gr, g2, s2 = nb.resolvent_diagonal_ref(alpha, beta.astype(cdt), pivmin)
    assert np.array_equal(g1, g2) and np.array_equal(s1, s2)
    tol = 1e3 * np.finfo(real_dtype).eps
    assert np.max(np.abs(G - Gr) / np.abs(Gr)) <= tol


def test_complex_reciprocal_extreme_magnitudes():
    # |x|^2 overflows / underflows: the kernel must fall back to plain complex division
    alpha = np.array([[1e200 + 1e200j, 1e-200 + 1e-200j]])
    beta = np.zeros((1, 1), complex)
    G, _, _ = nb.resolvent_diagonal_kernel(alpha, beta, np.array([1e-300]))
    assert np.allclose(G[0], 1 / alpha[0], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_resolvent_with_pivots_and_backward_match_twins(rng, dtype):
    """The kernels behind the torch backend's CPU autograd: G, gL, gR in one pass against the
    reference twins; the in-place backward scans against the torch backend's chunked backward
    and against the dense formula dL/dalpha_j = -sum_i gbar_i G_ij G_ji."""
    torch = pytest.importorskip("torch")
    from semisep.backends.torch.autograd import _resolvent_backward

    B, N = 3, 50
    alpha, b, c, pivmin = rows(rng, B, N, dtype)
    alpha = alpha + 3.0  # well conditioned
    beta = b * c
    G, gL, gR, guarded, singular = nb.resolvent_diagonal_with_pivots(alpha, beta, pivmin)
    Gr, _, _ = nb.resolvent_diagonal_ref(alpha, beta, pivmin)
    gLr, _, _ = nb.left_pivots_ref(alpha, beta, pivmin)
    gRr, _ = nb.right_pivots_ref(alpha, beta, pivmin)
    for x, y in ((G, Gr), (gL, gLr), (gR, gRr)):
        assert np.max(np.abs(x - y)) <= 1e-13 * np.max(np.abs(y))
    gbar = rng.standard_normal((B, N)).astype(dtype)
    da, db = nb.resolvent_diagonal_backward(gbar, G, gL, gR, beta)
    da_only, none = nb.resolvent_diagonal_backward(gbar, G, gL, gR, beta, want_dbeta=False)
    assert none is None and np.array_equal(da_only, da)
    tensors = (torch.from_numpy(np.ascontiguousarray(x)) for x in (gbar, G, gL, gR, beta))
    ta, tb = _resolvent_backward(*tensors)
    assert np.max(np.abs(da - ta.numpy())) <= 1e-12 * np.max(np.abs(da))
    assert np.max(np.abs(db - tb.numpy())) <= 1e-12 * np.max(np.abs(db))
    for k in range(B):
        A = np.diag(alpha[k]) + np.diag(b[k], 1) + np.diag(c[k], -1)
        Ginv = np.linalg.inv(A)
        dense = -np.einsum("i,ij,ji->j", gbar[k], Ginv, Ginv)
        assert np.max(np.abs(da[k] - dense)) <= 1e-12 * np.max(np.abs(dense))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 65])
@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
def test_with_pivots_interleaved_sweeps_match_separate_twins_with_guards(rng, n, dtype):
    """resolvent_diagonal_with_pivots runs the LU and UL sweeps interleaved in one loop; with
    zero leading minors planted (guarded pivots in both sweeps) its gL, gR and guard count are
    the reference twins' own, and G matches the reference resolvent."""
    B = 4
    alpha, b, c, pivmin = rows(rng, B, n, dtype)
    beta = (b * c).astype(dtype)
    alpha[0, 0] = 0  # LU pivot 0 needs the guard
    alpha[1, -1] = 0  # UL pivot N-1 needs the guard
    G, gL, gR, guarded, singular = nb.resolvent_diagonal_with_pivots(alpha, beta, pivmin)
    gLr, gl_g, _ = nb.left_pivots_ref(alpha, beta, pivmin)
    gRr, gr_g = nb.right_pivots_ref(alpha, beta, pivmin)
    tol = 1e2 * np.finfo(alpha.dtype).eps
    for x, y in ((gL, gLr), (gR, gRr)):
        assert np.all(np.abs(x - y) <= tol * np.maximum(np.abs(y), 1.0))
    assert np.array_equal(guarded, gl_g + gr_g)
    assert guarded[0] >= 1 and guarded[1] >= 1
    Gr, gref, sref = nb.resolvent_diagonal_ref(alpha, beta, pivmin)
    assert np.array_equal(guarded, gref) and np.array_equal(singular, sref)


@pytest.mark.parametrize("diag_dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("z", [0.3, 0.1 - 2.0j, np.array([[1.0 + 1.0j], [-4.0 + 0.5j]])])
def test_shifted_amax_abs_equals_amax_abs_of_formed_alpha(rng, diag_dtype, z):
    """pivmin from T's own diagonal and the shift is exactly the one from the formed alpha."""
    bk = nb.NumpyBackend()
    diag = rng.standard_normal((3, 50)).astype(diag_dtype)
    if np.iscomplexobj(diag):
        diag = diag + 1j * rng.standard_normal((3, 50))
    batch = np.broadcast_shapes(diag.shape[:-1], np.shape(z))
    dtype = np.result_type(diag, z)
    shift = np.broadcast_to(np.asarray(z, dtype), batch).reshape(-1)
    alpha = np.broadcast_to(diag, batch + (50,)).reshape(-1, 50) - shift[:, None]
    expect = bk.amax_abs(alpha.astype(dtype), axis=1)
    assert np.array_equal(bk.shifted_amax_abs(diag, shift, batch), expect)

# -------------------------------------------------------------------------------------------
# fused Woodbury kernels (TridiagonalPlusLowRank.resolvent_diagonal)
# -------------------------------------------------------------------------------------------
def _woodbury_inputs(rng, B, N, r, dtype, real_uv):
    alpha, b, c, pivmin = rows(rng, B, N, dtype)
    alpha = alpha + 3.0 * np.sign(alpha.real)  # keep the dense oracle well conditioned
    uv_dtype = np.finfo(dtype).dtype if real_uv else dtype
    U = rng.standard_normal((B, N, r)).astype(uv_dtype)
    V = rng.standard_normal((B, N, r)).astype(uv_dtype)
    return alpha, b, c, pivmin, U, V


def _check_woodbury_against_twins(alpha, b, c, pivmin, U, V, tol):
    sw = nb.woodbury_forward_kernel(alpha, b, c, U, V, pivmin)
    Xr, KmIr, gLr, g2, s2 = nb.woodbury_forward_ref(alpha, b, c, U, V, pivmin)
    g1, s1 = sw.guarded, sw.singular
    assert np.array_equal(g1, g2) and np.array_equal(s1, s2)
    X = sw.dense_X()
    for x, xr in ((X, Xr), (sw.gL, gLr)):
        assert x.dtype == alpha.dtype
        assert np.all(np.abs(x - xr) <= tol * (np.abs(xr) + np.abs(xr).max()))
    KmI = sw.KmI
    assert KmI.dtype == alpha.dtype
    assert np.all(np.abs(KmI - KmIr) <= tol * alpha.shape[1] * (np.abs(KmIr).max() + 1))
    r = U.shape[-1]
    Kinv = np.linalg.inv(np.eye(r, dtype=alpha.dtype) + KmIr)
    corr = nb.woodbury_correction_kernel(sw, Kinv)
    corr_r = nb.woodbury_correction_ref(gLr, b, c, Xr, V, Kinv)
    assert corr.shape == alpha.shape and corr.dtype == alpha.dtype
    # rows with a guarded pivot or flagged singular carry O(1/pivmin) intermediates, and the
    # digits left after their cancellation depend on the order of the sums (the kernel forms
    # V K^{-T} inline for small r, the twin by a matrix product; measured: 0.06 absolute on
    # a value of 0.28).  The caller never uses those values: a guarded row takes the composed
    # path with refined solves (lowrank.py), a singular one raises SingularMatrixError.
    ok = ~s1 & (g1 == 0)
    scale = np.abs(corr_r) + np.abs(corr_r).max(axis=1, keepdims=True)  # per row
    assert np.all((np.abs(corr - corr_r) <= tol * r * scale)[ok])
    return sw, g1, s1, KmI, Kinv, corr


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("real_uv", [False, True])
@pytest.mark.parametrize("B,N,r", [(1, 1, 1), (1, 2, 3), (3, 17, 1), (2, 40, 5), (1, 300, 8),
                                   (4, 600, 2), (1, 3000, 7), (1, 3000, 13), (3, 300, 10)])
def test_woodbury_kernels_match_twins_and_dense(rng, dtype, real_uv, B, N, r):
    """forward (X and K - I) and correction against the NumPy twins, and their meaning
    against dense algebra: K - I = V^T A^{-1} U, correction = sum_k X_ik W_ik with
    X = A^{-1} U, W = A^{-T} V K^{-T}.  Batch 1 (threads over column panels) and batch > 1,
    r from 1 (one panel) to odd and wider, below and above the inline rank (8, where the
    products are BLAS calls per block of rows, and N = 3000 spans several blocks); real U, V
    read as they are (real x complex products)."""
    alpha, b, c, pivmin, U, V = _woodbury_inputs(rng, B, N, r, dtype, real_uv)
    tol = 1e3 * np.finfo(dtype).eps
    _, guarded, singular, KmI, Kinv, corr = _check_woodbury_against_twins(
        alpha, b, c, pivmin, U, V, tol
    )
    assert not guarded.any() and not singular.any()
    if N > 600:
        return
    A = np.zeros((B, N, N), np.complex128)
    for k in range(B):
        A[k] = np.diag(alpha[k]) + np.diag(b[k], 1) + np.diag(c[k], -1)
    X = np.linalg.solve(A, U.astype(np.complex128))
    Y = np.linalg.solve(np.swapaxes(A, -1, -2), V.astype(np.complex128))
    dense_tol = 100 * N * np.finfo(dtype).eps
    want = np.swapaxes(V, -1, -2) @ X
    assert np.max(np.abs(KmI - want)) <= dense_tol * np.abs(want).max()
    W = Y @ np.swapaxes(Kinv, -1, -2)
    want = (X * W).sum(axis=-1)
    assert np.max(np.abs(corr - want)) <= dense_tol * np.abs(want).max()


@given(
    B=st.integers(1, 3),
    N=st.integers(1, 700),
    r=st.integers(1, 20),
    dtype=st.sampled_from([np.float32, np.float64, np.complex64, np.complex128]),
    real_uv=st.booleans(),
    shared_v=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_woodbury_kernels_match_twins(B, N, r, dtype, real_uv, shared_v, seed):
    """Random shapes across the kernels' branches: r below and above the inline rank (8), one
    to three blocks of 256 rows (the last one partial), one column panel or several, batch
    rows sharing one V (read without a copy per row) or not; kernel against twin."""
    rng = np.random.default_rng(seed)
    alpha, b, c, pivmin, U, V = _woodbury_inputs(rng, B, N, r, dtype, real_uv)
    if shared_v:
        V = np.broadcast_to(V[:1], V.shape)
    sw, guarded, singular, _, _, _ = _check_woodbury_against_twins(
        alpha, b, c, pivmin, U, V, 1e3 * np.finfo(dtype).eps
    )
    assert sw.V.shape[0] == (1 if shared_v and B > 1 else B)


def test_woodbury_kernels_guarded_and_singular_rows_match_twins(rng):
    """Guarded pivots (a zero leading minor; an exactly singular matrix) are guarded, counted
    and flagged as in solve_kernel, with the same values as the twins."""
    alpha = np.array([[0.0, 1.0, 2.0, 3.0], [3.0, 3.0, 3.0, 3.0], [2.0, 2.0, 2.0, 2.0]])
    b = np.array([[2.0, 1.0, 1.0], [1.0, 0.5, 1.0], [1.0, 1.0, 1.0]])
    c = np.array([[1.0, 1.0, 1.0], [1.0, 0.5, 1.0], [1.0, 1.0, 1.0]])
    alpha[2, :] = 2.0 * np.cos(np.pi / 5)  # z on an eigenvalue of the row-2 chain: singular
    pivmin = np.full(3, 8 * np.finfo(np.float64).eps)
    for dtype in (np.float64, np.complex128):
        U = rng.standard_normal((3, 4, 2))
        V = rng.standard_normal((3, 4, 2))
        args = (alpha.astype(dtype), b.astype(dtype), c.astype(dtype), pivmin, U, V)
        _, guarded, singular, _, _, _ = _check_woodbury_against_twins(*args, tol=1e-10)
        _, _, s_solve = nb.solve_kernel(*args[:3], U.astype(dtype), pivmin)
        assert np.array_equal(singular, s_solve)  # the pivoted solve certifies the same rows
        assert guarded[0] >= 1 and guarded[1] == 0
        assert not singular[0] and not singular[1] and singular[2]


def test_woodbury_kernels_layouts_and_scratch(rng):
    """A broadcast (stride-0) batch of U, a Fortran-ordered broadcast V, and the backend
    methods that recycle one scratch buffer per thread give the module functions' results; the
    correction may run twice on one set of sweeps."""
    for r in (4, 11):  # inline products and BLAS products
        alpha, b, c, pivmin, U, V = _woodbury_inputs(rng, 3, 50, r, np.complex128, True)
        Ub = np.broadcast_to(U[:1], U.shape)
        Vf = np.asfortranarray(V[0])[None]
        Vf = np.broadcast_to(Vf, V.shape)
        s1 = nb.woodbury_forward_kernel(alpha, b, c, Ub, Vf, pivmin)
        Uc, Vc = np.ascontiguousarray(Ub), np.ascontiguousarray(Vf)
        s2 = nb.woodbury_forward_kernel(alpha, b, c, Uc, Vc, pivmin)
        assert s1.V.shape[0] == 1 and s2.V.shape[0] == 3  # the broadcast V is not copied per row
        for x, y in ((s1.X, s2.X), (s1.KmI, s2.KmI), (s1.gL, s2.gL)):
            assert np.array_equal(x, y)
        bk = nb.NumpyBackend()
        Kinv = np.linalg.inv(np.eye(r) + s1.KmI)
        want = nb.woodbury_correction_kernel(s1, Kinv)
        assert np.array_equal(nb.woodbury_correction_kernel(s2, Kinv), want)
        assert np.array_equal(nb.woodbury_correction_kernel(s1, Kinv), want)  # again: same
        G = rng.standard_normal((3, 50)) + 1j * rng.standard_normal((3, 50))
        G0 = G.copy()
        assert nb.woodbury_correction_kernel(s1, Kinv, subtract_from=G) is G  # in place
        assert np.allclose(G, G0 - want, rtol=1e-14, atol=1e-14)
        with pytest.raises(ValueError, match="subtract_from"):
            nb.woodbury_correction_kernel(s1, Kinv, subtract_from=G[:2])
        with pytest.raises(ValueError, match="subtract_from"):
            nb.woodbury_correction_kernel(s1, Kinv, subtract_from=G.real.copy())
        for _ in range(3):  # the second and third calls reuse the first one's scratch
            sw = bk.woodbury_forward(alpha, b, c, Ub, Vf, pivmin)
            assert np.array_equal(sw.X, s1.X) and np.array_equal(sw.KmI, s1.KmI)
            assert np.array_equal(bk.woodbury_correction(sw, Kinv), want)
        sa = bk.woodbury_forward(alpha, b, c, Ub, Vf, pivmin)
        sb = bk.woodbury_forward(alpha, b, c, Ub, Vf, pivmin)  # sa still held: fresh
        assert not np.shares_memory(sa.X, sb.X)
        bk.woodbury_release(sa)
        sc = bk.woodbury_forward(alpha, b, c, Ub, Vf, pivmin)  # sa's buffer again
        assert np.shares_memory(sa.X, sc.X)
        nb.release_scratch()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_woodbury_shift_form_matches_the_formed_alpha(rng, dtype):
    """The fused Woodbury kernels on a real T at a complex z: T's own (real) diagonal and
    off-diagonals and the shift, subtracted in the kernel, give what the complex copies with
    alpha = diag - z formed beforehand give (the same roundings), and the twin agrees."""
    cdt = np.result_type(dtype, np.complex64)
    B, N = 3, 300
    diag = (rng.uniform(-1, 1, (B, N)) - 2).astype(dtype)
    b = rng.uniform(0.5, 1, (B, N - 1)).astype(dtype)
    c = rng.uniform(-1, 1, (B, N - 1)).astype(dtype)
    shift = np.array([0.3 + 1e-2j, -0.5 + 0.2j, 1.0 + 1.0j]).astype(cdt)
    pivmin = np.full(B, 10 * np.finfo(dtype).eps)
    bc, cc = b.astype(cdt), c.astype(cdt)
    alpha = diag - shift[:, None]
    tol = 1e3 * np.finfo(dtype).eps
    for r in (5, 9):  # inline products, then the BLAS branch
        U = rng.standard_normal((B, N, r)).astype(dtype)
        V = rng.standard_normal((B, N, r)).astype(dtype)
        s1 = nb.woodbury_forward_kernel(diag, b, c, U, V, pivmin, shift=shift)
        s2 = nb.woodbury_forward_kernel(alpha, bc, cc, U, V, pivmin)
        assert s1.X.dtype == s1.KmI.dtype == s1.gL.dtype == cdt
        for x, y in ((s1.X, s2.X), (s1.KmI, s2.KmI), (s1.gL, s2.gL), (s1.guarded, s2.guarded),
                     (s1.singular, s2.singular)):
            assert np.array_equal(x, y)
        Xr, KmIr, gLr, _, _ = nb.woodbury_forward_ref(diag, b, c, U, V, pivmin, shift=shift)
        for x, xr in ((s1.dense_X(), Xr), (s1.gL, gLr)):
            assert np.all(np.abs(x - xr) <= tol * (np.abs(xr) + np.abs(xr).max()))
        assert np.all(np.abs(s1.KmI - KmIr) <= tol * N * (np.abs(KmIr).max() + 1))
        Kinv = np.linalg.inv(np.eye(r) + s1.KmI).astype(cdt)
        corr = nb.woodbury_correction_kernel(s1, Kinv)
        assert np.array_equal(corr, nb.woodbury_correction_kernel(s2, Kinv))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("k", [1, 3, 8])
def test_solve_batch_one_long_row_matches_twin(rng, dtype, k):
    """Batch 1, a long row, k = 1, odd and wider (the back substitution walks the columns
    downwards): the twin's values; a zero leading minor needs no guard (the rows are
    exchanged) and the result stays accurate."""
    B, N = 1, 5000
    alpha, b, c, pivmin = rows(rng, B, N, dtype)
    f = rng.standard_normal((B, N, k)).astype(dtype)
    x, g, s = nb.solve_kernel(alpha, b, c, f, pivmin)
    xr, gr, sr = nb.solve_ref(alpha, b, c, f, pivmin)
    assert np.array_equal(g, gr) and np.array_equal(s, sr) and g[0] == 0
    tol = 1e3 * np.finfo(dtype).eps
    assert np.all(np.abs(x - xr) <= tol * (np.abs(xr) + np.abs(xr).max()))
    alpha[0, 0] = 0.0  # a zero first pivot: partial pivoting exchanges the first two rows
    x, g, s = nb.solve_kernel(alpha, b, c, f, pivmin)
    xr, gr, sr = nb.solve_ref(alpha, b, c, f, pivmin)
    assert g[0] == 0 and np.array_equal(g, gr) and np.array_equal(s, sr) and not s[0]
    assert np.all(np.abs(x - xr) <= tol * (np.abs(xr) + np.abs(xr).max()))
    Ax = alpha[0][:, None] * x[0]
    Ax[:-1] += b[0][:, None] * x[0, 1:]
    Ax[1:] += c[0][:, None] * x[0, :-1]
    anorm = np.abs(alpha).max() + np.abs(b).max() + np.abs(c).max()
    res = np.abs(Ax - f[0]).max() / (anorm * np.abs(x).max())
    assert res <= 10 * np.finfo(dtype).eps


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_logdet_product_renormalisation_over_the_whole_range(rng, dtype):
    """The logdet kernel's running product (renormalised by powers of two outside
    [2^-100, 2^100]) follows an exact rescaling ``A -> 2^k A`` across the exponent range:
    ``log det(2^k A) = log det A + N k log 2``, with the same guard counts and flags; and it
    agrees with the reference twin's sum of logs."""
    B, N = 3, 777
    alpha, b, c, pivmin = rows(rng, B, N, dtype)
    beta = b * c
    kmax = 120 if np.finfo(dtype).bits >= 64 else 50  # |entries| stay normal: 2^(2k) in beta
    pm = np.full(B, np.finfo(dtype).tiny * 16)
    ld0, g0, s0 = nb.logdet_kernel(alpha, beta, pm)
    ldr, _, _ = nb.logdet_ref(alpha, beta, pm)
    eps = np.finfo(dtype).eps
    tol = 50 * N * eps * (1 + np.abs(ld0.real))
    assert np.all(np.abs(ld0.real - ldr.real) <= tol)
    assert np.all(np.abs(np.exp(1j * ld0.imag) - np.exp(1j * ldr.imag)) <= 50 * N * eps)
    for k in (-kmax, -7, 7, kmax):
        s = np.ldexp(1.0, k)
        ld, g, sg = nb.logdet_kernel(alpha * s, beta * (s * s), pm)
        assert np.array_equal(g, g0) and np.array_equal(sg, s0)
        expect = ld0.real + N * k * np.log(2.0)
        assert np.all(np.abs(ld.real - expect) <= tol + 4 * eps * np.abs(expect))
        assert np.all(np.abs(np.exp(1j * ld.imag) - np.exp(1j * ld0.imag)) <= 50 * N * eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("B,N", [(1, 1), (1, 2), (3, 3), (5, 8), (4, 257), (2, 1000)])
def test_resolvent_kernels_with_and_without_pivots_agree(dtype, B, N):
    """The autograd forward (with stored pivots) and the no-grad kernel compute G with the same
    steps in the same order, in the alpha form and in the shift form (single rows, paired rows,
    odd and even N): in double precision they agree bit for bit.  In single precision the
    no-grad kernel's running ratio stays in a register (numba keeps it in double), while the
    other kernel combines the stored single-precision pivots, so they agree to rounding; the
    matrices are diagonally dominant there (condition number below 3), so that is a few eps."""
    from semisep.backends import numpy as npb

    rng = np.random.default_rng(N + B)
    cplx = np.dtype(dtype).kind == "c"
    rdt = np.empty(0, dtype).real.dtype
    double = rdt == np.float64

    def draw(*shape):
        x = rng.standard_normal(shape)
        return (x + 1j * rng.standard_normal(shape) if cplx else x).astype(dtype)

    alpha, beta = draw(B, N), draw(B, max(N - 1, 0))
    if not double:
        alpha = (alpha + 6).astype(dtype)
    pivmin = np.full(B, 1e-30 if double else 1e-15, dtype=rdt)

    def same(x, y):
        x, y = np.asarray(x), np.asarray(y)
        if double:
            return np.array_equal(x, y)
        return bool(np.all(np.abs(x - y) <= 8 * np.finfo(rdt).eps * np.abs(y)))

    G0, g0, s0 = npb.resolvent_diagonal_kernel(alpha, beta, pivmin)
    G1, _, _, g1, s1 = npb.resolvent_diagonal_with_pivots(alpha, beta, pivmin)
    assert same(G0, G1)
    assert np.array_equal(np.asarray(g0), np.asarray(g1)) and np.array_equal(np.asarray(s0), np.asarray(s1))
    diag = draw(B, N).real.astype(rdt) + (0 if double else 6)
    shift = (0.3 + 0.01j) * np.ones(B, np.complex128 if double else np.complex64)
    H0 = npb.resolvent_diagonal_shifted_kernel(diag, shift, beta, pivmin)[0]
    H1 = npb.resolvent_diagonal_shifted_with_pivots(diag, shift, beta, pivmin)[0]
    assert same(H0, H1)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_solve_recycled_workspace_is_bitwise_the_fresh_one(rng, dtype, monkeypatch):
    """Large solves take the solution and their workspace (U's scaled superdiagonals) from the
    recycled buffers: whatever a recycled buffer holds (here NaN), the solution is bit for bit
    the one computed with fresh arrays, and a repeated call reuses the buffers instead of
    allocating."""
    from semisep.backends.numpy import pivoted
    from semisep.backends.numpy import quasiseparable_rows as buffers

    B, N = 3, 1 << 14  # (B, N) float64 = 384 KiB, above RECYCLE_MIN_BYTES
    assert B * N * np.dtype(dtype).itemsize >= buffers.RECYCLE_MIN_BYTES
    alpha, b, c, pivmin = rows(rng, B, N, dtype)
    alpha[1, ::7] = 0.0  # row exchanges
    f = rng.standard_normal((B, N, 2)).astype(dtype)
    x0 = np.empty_like(f)
    v1, v2 = np.full_like(alpha, np.nan), np.full_like(alpha, np.nan)
    g0, s0 = np.zeros(B, np.int64), np.zeros(B, np.bool_)
    pivoted._solve_batch(alpha, b, c, f, pivoted._pivmin(pivmin, alpha.dtype), x0, v1, v2, g0, s0)
    taken, real_empty = [], buffers.empty

    def spy(shape, dt=np.float64):
        out = real_empty(shape, dt)
        taken.append((shape, out.base is not None))  # a view of a kept buffer
        return out

    monkeypatch.setattr(pivoted._buf, "empty", spy)
    x1, g1, s1 = nb.solve_kernel(alpha, b, c, f, pivmin)
    assert taken == [((B, N, 2), True)] + [((B, N), True)] * 2
    x1 = x1.copy()  # the solution's buffer free again
    with buffers._lock:
        kept = [id(buf) for buf in buffers._buffers]
        poisoned = 0
        for i in range(len(kept)):  # no name may hold a buffer here: it would count as in use
            if buffers._free(i):
                buffers._buffers[i].fill(0xFF)  # all-ones bytes: NaN in every float dtype
                poisoned += buffers._buffers[i].nbytes >= alpha.nbytes
        assert poisoned >= 3
    x2, g2, s2 = nb.solve_kernel(alpha, b, c, f, pivmin)
    assert [id(buf) for buf in buffers._buffers] == kept and len(taken) == 6  # no new buffer
    for x, g, s in ((x1, g1, s1), (x2, g2, s2)):
        assert np.array_equal(x, x0) and np.array_equal(g, g0) and np.array_equal(s, s0)
    assert np.isfinite(x0).all()
