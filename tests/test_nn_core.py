"""BirmanSchwingerCore and the O(N) Hilbert-Schmidt scan, against dense NumPy and the
independent sequential reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import semisep as ss  # noqa: E402
from semisep import cost  # noqa: E402
from semisep import reference as ref  # noqa: E402
from semisep.nn import (  # noqa: E402
    BirmanSchwingerCore,
    hilbert_schmidt_norm_sq,
    hilbert_schmidt_norm_sq_ref,
    laplacian_pivots,
)

WITH_LOWRANK = [True, False]


def saved_bytes(fn, exclude=()):
    """(output, bytes of the distinct storages torch saves for backward while ``fn`` runs),
    storages of ``exclude`` (parameters) not counted."""
    ex = {t.untyped_storage().data_ptr() for t in exclude}
    seen = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in ex:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def laplacian_dense(n):
    return np.diag(np.full(n, -2.0)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)


def dense_features(v, U, V, z):
    v = np.asarray(v, dtype=np.float64)
    n = v.shape[-1]
    H0 = laplacian_dense(n)
    L = 0 if U is None else np.asarray(U, np.float64) @ np.asarray(V, np.float64).T
    zs = np.broadcast_to(np.asarray(z, dtype=complex), (v.shape[0],))
    return np.stack([np.diag(np.linalg.inv(H0 + np.diag(row) + L - zz * np.eye(n)))
                     for row, zz in zip(v, zs, strict=True)])


def as_complex(features):
    return (features[..., 0].double() + 1j * features[..., 1].double()).detach().numpy()


# ------------------------------------------------------------------------------------------------
# free pivots and the Hilbert-Schmidt scan (no dependency on other branches)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("z", [1j, 0.3 + 0.2j, -1.0 + 0.05j, 2.0 + 0.5j, -5.0 + 1e-3j])
def test_laplacian_pivots_solve_the_recursion(z):
    n = 40
    G0, gL, gR = laplacian_pivots(n, z)
    a = -2.0 - z
    g = np.empty(n, complex)
    g[-1] = 1 / a
    for i in range(n - 2, -1, -1):
        g[i] = 1 / (a - g[i + 1])
    np.testing.assert_allclose(gR.numpy(), g, rtol=1e-11)
    np.testing.assert_allclose(gL.numpy(), g[::-1], rtol=1e-11)
    Gd = ref.dense_resolvent_diagonal(np.full(n, -2.0), np.ones(n - 1), None, z)
    np.testing.assert_allclose(G0.numpy(), Gd, rtol=1e-11)


def test_laplacian_pivots_batched_z():
    z = torch.tensor([1j, 0.5 + 0.1j], dtype=torch.complex128)
    G0, _, _ = laplacian_pivots(9, z)
    for k in range(2):
        np.testing.assert_allclose(
            G0[k].numpy(),
            ref.dense_resolvent_diagonal(np.full(9, -2.0), np.ones(8), None, complex(z[k])),
            rtol=1e-12)


def _sequential_gR(alpha, beta):
    n = len(alpha)
    g = np.empty(n, complex)
    g[-1] = 1 / alpha[-1]
    for i in range(n - 2, -1, -1):
        g[i] = 1 / (alpha[i] - beta[i] * g[i + 1])
    return g


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("z", [1j, 0.4 + 0.05j])
def test_hilbert_schmidt_scan_vs_dense(rng, symmetric, z):
    n, B = 37, 3
    a = rng.standard_normal(n) - 2.0
    up = rng.standard_normal(n - 1)
    lo = up if symmetric else rng.standard_normal(n - 1)
    A = np.diag(a - z) + np.diag(up, 1) + np.diag(lo, -1)
    G = np.diag(np.linalg.inv(A))
    gR = _sequential_gR(a - z, up * lo)
    w = np.abs(rng.standard_normal((B, n)))
    w[1, ::3] = 0.0  # zero weights are allowed
    got = hilbert_schmidt_norm_sq(torch.tensor(w), torch.tensor(G), torch.tensor(gR),
                                  torch.tensor(up), None if symmetric else torch.tensor(lo))
    want = hilbert_schmidt_norm_sq_ref(w, np.broadcast_to(A, (B, n, n)))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-11)


def test_hilbert_schmidt_birman_schwinger_large_n():
    """N = 1024, the free resolvent: the scan against the dense double sum."""
    n = 1024
    rng = np.random.default_rng(3)
    v = rng.standard_normal(n)
    G0, _, gR = laplacian_pivots(n, 0.5j)
    got = hilbert_schmidt_norm_sq(torch.tensor(np.abs(v)), G0, gR, torch.ones(n - 1))
    want = hilbert_schmidt_norm_sq_ref(np.abs(v), laplacian_dense(n) - 0.5j * np.eye(n))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9)


def test_hilbert_schmidt_rejects_decoupled_chain():
    G0, _, gR = laplacian_pivots(5, 1j)
    with pytest.raises(ValueError, match="decouples"):
        hilbert_schmidt_norm_sq(torch.ones(5), G0, gR, torch.tensor([1.0, 0.0, 1.0, 1.0]))


# ------------------------------------------------------------------------------------------------
# construction, memory model (no dependency on other branches)
# ------------------------------------------------------------------------------------------------
def test_construction():
    core = BirmanSchwingerCore(1000)
    assert core.rank == math.ceil(math.log2(1000)) == 10
    assert core.U.shape == core.V.shape == (1000, 10)
    # documented initial scale 1e-2/sqrt(N): the sample std is within 10% of it
    assert abs(float(core.U.detach().std()) / (1e-2 / math.sqrt(1000)) - 1) < 0.1
    core2 = BirmanSchwingerCore(64, use_semiseparable=False)
    assert core2.rank == 0 and core2.U is None and len(list(core2.parameters())) == 0
    with pytest.raises(ValueError):
        BirmanSchwingerCore(64, precision="float16")


def test_dense_saved_bytes_model():
    n, B = 48, 3
    W = torch.randn(n, n, dtype=torch.float64, requires_grad=True)
    v = torch.randn(B, n, dtype=torch.float64, requires_grad=True)
    H0 = torch.tensor(laplacian_dense(n))

    def dense():
        A = (H0 + W + torch.diag_embed(v)).to(torch.complex128) - 1j * torch.eye(n)
        return torch.linalg.inv(A).diagonal(dim1=-2, dim2=-1)

    _, nbytes = saved_bytes(dense, exclude=[W])
    assert nbytes == cost.dense_core_saved_bytes(n, B, "float64")


def test_estimate_and_optimal_batch_size():
    core = BirmanSchwingerCore(2048)
    est = core.estimate_memory_usage(16, use_checkpointing=True)
    for k in ("tridiagonal_bytes", "lowrank_bytes", "activation_bytes", "optimizer_bytes",
              "total_bytes", "dense_total_bytes", "memory_savings"):
        assert k in est
    parts = ("tridiagonal_bytes", "lowrank_bytes", "activation_bytes", "recompute_bytes",
             "gradient_bytes", "optimizer_bytes")
    assert est["total_bytes"] == sum(est[k] for k in parts)
    assert est["lowrank_bytes"] == sum(p.numel() * p.element_size() for p in core.parameters())
    plain = core.estimate_memory_usage(16, use_checkpointing=False)
    assert plain["activation_bytes"] > 10 * est["activation_bytes"]
    # the checkpointed backward rebuilds exactly the plain path's activations
    assert est["recompute_bytes"] == plain["activation_bytes"] and plain["recompute_bytes"] == 0
    # exact search: B fits and B + 1 does not
    for budget in (3e6, 5e7, 1.5e10):
        b = core.compute_optimal_batch_size(budget, use_checkpointing=False, safety_factor=0.8)
        assert b >= 1
        assert core.estimate_memory_usage(b, False)["total_bytes"] <= 0.8 * budget
        assert core.estimate_memory_usage(b + 1, False)["total_bytes"] > 0.8 * budget
    big = core.compute_optimal_batch_size(1.5e10, use_checkpointing=True)
    assert big > 1024  # no hidden cap
    assert core.estimate_memory_usage(big, True)["total_bytes"] <= 0.8 * 1.5e10
    assert core.compute_optimal_batch_size(1000, use_checkpointing=True) == 0


# ------------------------------------------------------------------------------------------------
# the module (needs TridiagonalPlusLowRank and the torch backend)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_semiseparable", WITH_LOWRANK)
def test_forward_matches_dense(use_semiseparable):
    torch.manual_seed(0)
    n, B = 24, 3
    core = BirmanSchwingerCore(n, use_semiseparable=use_semiseparable, init_scale=0.3,
                               dtype=torch.float64)
    v = torch.randn(B, n, dtype=torch.float64)
    for z in (None, 0.3 + 0.4j, torch.tensor([1j, 0.5 + 0.2j, -1 + 0.7j])):
        f, d = core(v, z)
        assert f.shape == (B, n, 2) and f.dtype == torch.float64
        zz = 1j if z is None else (z.numpy() if isinstance(z, torch.Tensor) else z)
        U = None if core.U is None else core.U.detach().numpy()
        V = None if core.V is None else core.V.detach().numpy()
        want = dense_features(v.numpy(), U, V, zz)
        np.testing.assert_allclose(as_complex(f), want, rtol=1e-11, atol=1e-13)
        assert d["all_finite"] is True
        assert d["max_abs_G"] == pytest.approx(np.abs(want).max(), rel=1e-12)
        # schatten_s2 from the dense Birman-Schwinger operator
        zs = np.broadcast_to(np.asarray(zz, dtype=complex), (B,))
        hs = [hilbert_schmidt_norm_sq_ref(np.abs(v[b].numpy()), laplacian_dense(n)
                                          - zs[b] * np.eye(n)) for b in range(B)]
        np.testing.assert_allclose(d["schatten_s2_per_sample"].numpy(), np.sqrt(hs), rtol=1e-10)
        assert d["schatten_s2"] == pytest.approx(max(np.sqrt(hs)), rel=1e-10)
        assert d["rank"] == core.rank


def test_float32_input_and_precision_policy():
    torch.manual_seed(1)
    n, B = 32, 4
    core = BirmanSchwingerCore(n, init_scale=0.3)
    v = torch.randn(B, n)
    f, d = core(v)
    assert f.dtype == torch.float32 and d["precision_upgrades"] == 0
    want = dense_features(v.numpy(), core.U.detach().numpy(), core.V.detach().numpy(), 1j)
    err = np.abs(as_complex(f) - want).max() / np.abs(want).max()
    assert 1e-9 < err < 1e-5  # single precision, honestly computed in single precision
    # every row's capacitance condition (>= 1) exceeds a threshold of 1: all rows upgraded
    core.precision_upgrade_threshold = 1.0
    f64, d64 = core(v)
    assert d64["precision_upgrades"] == B and f64.dtype == torch.float32
    err64 = np.abs(as_complex(f64) - want).max() / np.abs(want).max()
    assert err64 < 1e-6 and err64 < err
    stats = core.get_statistics()
    assert stats["calls"] == 2 and stats["precision_upgrades_total"] == B
    # forced precisions
    core.precision = "float64"
    f3, d3 = core(v)
    assert d3["precision_upgrades"] == 0 and f3.dtype == torch.float32
    np.testing.assert_allclose(as_complex(f3), want, rtol=1e-6)


def test_resolvent_bound_and_symmetry():
    n, B = 20, 2
    v = torch.randn(B, n, dtype=torch.float64)
    core = BirmanSchwingerCore(n, use_semiseparable=False, epsilon=0.5, dtype=torch.float64)
    _, d = core(v)
    assert d["resolvent_bound"] == pytest.approx(2.0)
    assert d["max_abs_G"] <= d["resolvent_bound"]
    assert d["capacitance_condition"] is None
    core = BirmanSchwingerCore(n, init_scale=0.5, dtype=torch.float64)
    _, d = core(v)
    assert d["resolvent_bound"] is None  # U V^T not symmetric
    with torch.no_grad():
        core.V.copy_(core.U)  # U U^T: symmetric, H Hermitian
    _, d = core(v, 0.2 + 0.25j)
    assert d["resolvent_bound"] == pytest.approx(4.0)
    assert d["max_abs_G"] <= d["resolvent_bound"]
    assert d["capacitance_condition"] >= 1.0


def test_gradcheck_v_U_V_z():
    torch.manual_seed(2)
    n, B, r = 7, 2, 2
    core = BirmanSchwingerCore(n, semiseparable_rank=r, init_scale=0.4, dtype=torch.float64)
    v = torch.randn(B, n, dtype=torch.float64, requires_grad=True)
    U = core.U.detach().clone().requires_grad_()
    V = core.V.detach().clone().requires_grad_()
    z = torch.tensor(0.3 + 0.8j, dtype=torch.complex128, requires_grad=True)

    def f(v, U, V, z):
        return torch.func.functional_call(core, {"U": U, "V": V}, (v, z))[0]

    assert torch.autograd.gradcheck(f, (v, U, V, z), eps=1e-6, atol=1e-8, rtol=1e-6)
    core.enable_gradient_checkpointing = True  # (equality with the plain path: test below)
    assert torch.autograd.gradcheck(f, (v, U, V, z), eps=1e-6, atol=1e-8, rtol=1e-6,
                                    fast_mode=True)


@pytest.mark.parametrize("use_semiseparable", WITH_LOWRANK)
def test_checkpointed_gradients_equal_plain(use_semiseparable):
    torch.manual_seed(3)
    n, B = 64, 3
    core = BirmanSchwingerCore(n, init_scale=0.2, dtype=torch.float64,
                               use_semiseparable=use_semiseparable)
    v0 = torch.randn(B, n, dtype=torch.float64)
    w = torch.randn(B, n, 2, dtype=torch.float64)
    grads = []
    for ckpt in (False, True):
        core.enable_gradient_checkpointing = ckpt
        core.zero_grad()
        v = v0.clone().requires_grad_()
        z = torch.tensor([0.1 + 1j, -0.5 + 0.6j, 1j], requires_grad=True)
        f, _ = core(v, z)
        (f * w).sum().backward()
        grads.append([v.grad, z.grad] + [p.grad for p in core.parameters()])
    assert len(grads[0]) == (4 if use_semiseparable else 2)
    for a, b in zip(*grads, strict=True):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, rtol=1e-13, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("use_semiseparable", WITH_LOWRANK)
def test_saved_bytes_match_the_model(dtype, use_semiseparable):
    """The model is exact: the bytes of the distinct storages autograd keeps equal
    ``core_saved_bytes`` to the byte, plain and checkpointed."""
    n, B = 256, 5
    core = BirmanSchwingerCore(n, use_semiseparable=use_semiseparable, dtype=dtype)
    v = torch.randn(B, n, dtype=dtype, requires_grad=True)
    params = list(core.parameters())
    _, plain = saved_bytes(lambda: core(v), exclude=params)
    est = core.estimate_memory_usage(B, use_checkpointing=False)["activation_bytes"]
    assert plain == est
    core.enable_gradient_checkpointing = True
    _, ckpt = saved_bytes(lambda: core(v), exclude=params)
    est_c = core.estimate_memory_usage(B, use_checkpointing=True)["activation_bytes"]
    assert ckpt == est_c == B * n * v.element_size()
    assert ckpt <= 0.4 * plain  # at least 60% less


@pytest.mark.parametrize("param_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("precision", ["auto", "float32", "float64"])
def test_saved_bytes_model_exact_across_dtypes(param_dtype, input_dtype, precision):
    """Parameter, input and compute dtypes mixed (a parameter cast to the compute dtype is kept
    by the capacitance product only when the two differ): model == measured, exactly."""
    n, B = 48, 3
    torch.manual_seed(1)
    core = BirmanSchwingerCore(n, use_semiseparable=True, dtype=param_dtype, precision=precision)
    v = torch.randn(B, n, dtype=input_dtype, requires_grad=True)
    _, plain = saved_bytes(lambda: core(v), exclude=list(core.parameters()))
    est = core.estimate_memory_usage(B, use_checkpointing=False, dtype=input_dtype)
    assert plain == est["activation_bytes"]


@pytest.mark.slow
@pytest.mark.parametrize("use_semiseparable", WITH_LOWRANK)
def test_large_n_matches_sequential_reference(use_semiseparable):
    """N = 2^15, U = V = 0 (Woodbury with zero factors) or no low-rank term: forward against
    the independent sequential reference; backward finite and equal to a central finite
    difference along a random direction."""
    n, B = 2 ** 15, 2
    core = BirmanSchwingerCore(n, init_scale=0.0, dtype=torch.float64,
                               use_semiseparable=use_semiseparable)
    for p in core.parameters():
        assert float(p.detach().abs().max()) == 0.0
    rng = np.random.default_rng(4)
    v0 = rng.uniform(-1, 1, (B, n))
    v = torch.tensor(v0, requires_grad=True)
    f, d = core(v, 0.3 + 0.5j)
    want = ref.sequential_resolvent_diagonal(-2.0 + v0, np.ones(n - 1), None, 0.3 + 0.5j)
    np.testing.assert_allclose(as_complex(f), want, rtol=1e-10, atol=1e-12)
    assert d["all_finite"] and math.isfinite(d["schatten_s2"])
    w = torch.tensor(rng.standard_normal((B, n, 2)))
    (f * w).sum().backward()
    assert torch.isfinite(v.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in core.parameters())
    direction = rng.standard_normal((B, n))
    h = 1e-5

    def loss(vv):
        G = ref.sequential_resolvent_diagonal(-2.0 + vv, np.ones(n - 1), None, 0.3 + 0.5j)
        return float((G.real * w[..., 0].numpy() + G.imag * w[..., 1].numpy()).sum())

    fd = (loss(v0 + h * direction) - loss(v0 - h * direction)) / (2 * h)
    an = float((v.grad.numpy() * direction).sum())
    assert abs(fd - an) <= 1e-6 * abs(an)


def test_statistics_and_profile_are_the_history():
    core = BirmanSchwingerCore(32, dtype=torch.float64)
    seen = []
    for k in range(3):
        _, d = core(torch.randn(k + 1, 32, dtype=torch.float64))
        seen.append(d)
    s = core.get_statistics()
    assert s["calls"] == 3 and s["history_length"] == 3
    assert s["max_abs_G_max"] == max(d["max_abs_G"] for d in seen)
    assert s["schatten_s2_mean"] == pytest.approx(np.mean([d["schatten_s2"] for d in seen]))
    p = core.get_memory_profile()
    assert p["batch_size"] == 3 and p["sequence_length"] == 32
    assert [b for b, _ in p["history"]] == [1, 2, 3]
    assert [m for _, m in p["history"]] == [d["memory_bytes"] for d in seen]
    est = core.estimate_memory_usage(3)
    assert p["memory_breakdown"]["activations"] == est["activation_bytes"]


def test_bad_input():
    core = BirmanSchwingerCore(16, dtype=torch.float64)
    with pytest.raises(ValueError, match="shape"):
        core(torch.randn(2, 15, dtype=torch.float64))
    with pytest.raises(ValueError, match="real"):
        core(torch.randn(2, 16, dtype=torch.complex128))
    v = torch.randn(2, 16, dtype=torch.float64)
    v[1, 3] = float("nan")
    with pytest.raises(ss.NonFiniteError):
        core(v)


@pytest.mark.parametrize("use_semiseparable", WITH_LOWRANK)
def test_training_memory_counts_are_measured(use_semiseparable):
    """tridiagonal_bytes / lowrank_bytes against the operators' nbytes, gradient_bytes against
    the .grad tensors, optimizer_bytes against Adam's state after one step."""
    n, B = 128, 4
    core = BirmanSchwingerCore(n, use_semiseparable=use_semiseparable, dtype=torch.float32)
    v = torch.randn(B, n)
    est = core.estimate_memory_usage(B, use_checkpointing=False)
    T = ss.Tridiagonal(v - 2.0, torch.ones(n - 1))
    assert est["tridiagonal_bytes"] == T.nbytes
    held = sum(p.numel() * p.element_size() for p in core.parameters())
    assert est["lowrank_bytes"] == held
    f, d = core(v.requires_grad_())
    assert d["memory_bytes"] == est["tridiagonal_bytes"] + est["lowrank_bytes"]
    assert d["operator_memory_savings"] == pytest.approx(1 - d["memory_bytes"] / (B * n * n * 4))
    if not use_semiseparable:
        assert est["gradient_bytes"] == est["optimizer_bytes"] == 0
        return
    opt = torch.optim.Adam(core.parameters())
    f.square().sum().backward()
    opt.step()
    grads = sum(p.grad.numel() * p.grad.element_size() for p in core.parameters())
    assert est["gradient_bytes"] == grads
    state = sum(t.numel() * t.element_size() for st in opt.state.values() for t in st.values()
                if isinstance(t, torch.Tensor))
    assert est["optimizer_bytes"] == state


@pytest.mark.slow
def test_large_n_schatten_s2_against_the_spectral_sum():
    """N = 2^15, constant potentials ``v = c``: the Birman-Schwinger weights are ``|c|`` and
    ``||K||_HS^2 = c^2 ||(H0 - zI)^{-1}||_F^2 = c^2 sum_k 1/|lambda_k - z|^2`` (H0 symmetric, so
    the resolvent is normal), ``lambda_k = -2 + 2 cos(k pi/(N+1))``: an O(N) value independent
    of the scan.  The scan's relative error is ~ eps max_j |log P_j| (its docstring): here the
    ratios ``|gR_k| < 1`` are bounded away from 1 by Im z, so ``|log P_j| <= N |log max|gR||``
    stays below ~1e4 and 1e-9 relative is a bound with margin."""
    n = 2 ** 15
    z = 0.3 + 0.5j
    core = BirmanSchwingerCore(n, init_scale=0.0, dtype=torch.float64, use_semiseparable=False)
    c = np.array([0.7, -0.3])
    v = torch.tensor(np.repeat(c[:, None], n, axis=1))
    _, d = core(v, z)
    lam = -2.0 + 2.0 * np.cos(np.arange(1, n + 1) * np.pi / (n + 1))
    want = np.abs(c) * np.sqrt(np.sum(1.0 / np.abs(lam - z) ** 2))
    np.testing.assert_allclose(d["schatten_s2_per_sample"].numpy(), want, rtol=1e-9, atol=0)
    assert d["schatten_s2"] == pytest.approx(want.max(), rel=1e-9)
