"""SemiseparableMatrix: products and gradients against dense torch, factorization through
semisep.factorize / check_factorization."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import semisep as ss  # noqa: E402
from semisep import cost  # noqa: E402
from semisep.nn import SemiseparableMatrix, create_semiseparable_from_dense  # noqa: E402
from semisep.nn.semiseparable_matrix import semiseparable_matvec  # noqa: E402


def random_module(n=12, r=3, seed=0):
    torch.manual_seed(seed)
    m = SemiseparableMatrix(n, rank=r, dtype=torch.float64)
    with torch.no_grad():
        m.diag.copy_(torch.randn(n, dtype=torch.float64))
        m.lower.copy_(torch.randn(n - 1, dtype=torch.float64))
        m.upper.copy_(torch.randn(n - 1, dtype=torch.float64))  # non-symmetric T
        m.U.copy_(torch.randn(n, r, dtype=torch.float64))
        m.V.copy_(torch.randn(n, r, dtype=torch.float64))
    return m


def test_construction_and_default_rank():
    m = SemiseparableMatrix(1024)
    assert m.rank == 10 == math.ceil(math.log2(1024))
    assert m.U.shape == (1024, 10) and m.lower.shape == (1023,)
    with pytest.raises(ValueError):
        SemiseparableMatrix(1)


def test_matvec_rmatvec_match_dense():
    m = random_module()
    H = m.to_dense().detach()
    x = torch.randn(4, 12, dtype=torch.float64)
    torch.testing.assert_close(m.matvec(x), x @ H.T, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(m.rmatvec(x), x @ H, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(m(x), x @ H.T, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="shape"):
        m.matvec(torch.randn(3, 11, dtype=torch.float64))


def test_gradcheck_non_symmetric():
    """The backward applies H^T (not H): gradcheck on every argument, T non-symmetric."""
    torch.manual_seed(1)
    n, r = 8, 2
    args = [torch.randn(n), torch.randn(n - 1), torch.randn(n - 1), torch.randn(n, r),
            torch.randn(n, r), torch.randn(3, n)]
    args = [a.double().requires_grad_() for a in args]
    assert torch.autograd.gradcheck(semiseparable_matvec, args)
    # and the cotangent for x is H^T ybar, explicitly
    m = random_module(n, r, seed=2)
    x = torch.randn(n, dtype=torch.float64, requires_grad=True)
    ybar = torch.randn(n, dtype=torch.float64)
    m.matvec(x).backward(ybar)
    H = m.to_dense().detach()
    torch.testing.assert_close(x.grad, H.T @ ybar, rtol=1e-13, atol=1e-13)
    assert not torch.allclose(x.grad, H @ ybar)


def test_checkpoint_forward_gradients_equal():
    m = random_module(16, 3, seed=3)
    x0 = torch.randn(5, 16, dtype=torch.float64)
    ybar = torch.randn(5, 16, dtype=torch.float64)
    grads = []
    for ck in (False, True):
        m.zero_grad()
        (m.enable_checkpointing if ck else m.disable_checkpointing)()
        x = x0.clone().requires_grad_()
        m.checkpoint_forward(x).backward(ybar)
        grads.append([x.grad] + [p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_get_memory_usage():
    for n, r, dt in ((128, None, torch.float32), (1000, 4, torch.float64)):
        m = SemiseparableMatrix(n, rank=r, dtype=dt)
        info = m.get_memory_usage()
        held = sum(p.numel() * p.element_size() for p in m.parameters())
        assert info["total_bytes"] == held
        assert info["total_bytes"] == cost.lowrank_nbytes(n, m.rank, dt)
        assert info["dense_bytes"] == cost.dense_nbytes(n, dt)
        assert info["memory_reduction"] == pytest.approx(1 - held / (n * n * dt.itemsize))
        assert info["rank"] == m.rank


def test_factorize_recovers_structured_matrix():
    rng = np.random.default_rng(5)
    n, r = 40, 3
    T = np.diag(rng.standard_normal(n)) + np.diag(rng.standard_normal(n - 1), 1) + np.diag(
        rng.standard_normal(n - 1), -1)
    H = T + rng.standard_normal((n, r)) @ rng.standard_normal((n, r)).T
    m = create_semiseparable_from_dense(torch.tensor(H), rank=r)
    assert m.diag.dtype == torch.float64
    rep = m.verify_factorization(H, tolerance=1e-8)
    assert rep["passes_tolerance"] and rep["relative_error"] < 1e-8
    x = torch.randn(n, dtype=torch.float64)
    torch.testing.assert_close(m.matvec(x), torch.tensor(H) @ x, rtol=1e-7, atol=1e-7)
    Tt, U, V = m.factorize(H)
    assert isinstance(Tt, ss.Tridiagonal) and U is m.U and V is m.V


def test_random_dense_is_reported_honestly():
    rng = np.random.default_rng(6)
    n = 64
    H = rng.standard_normal((n, n))
    H = (H + H.T) / 2
    m = create_semiseparable_from_dense(H)
    rep = m.verify_factorization(H, tolerance=1e-2)
    assert rep["relative_error"] > 0.5 and not rep["passes_tolerance"]
    for k in ("relative_error", "max_abs_error", "spectral_error", "rank"):
        assert k in rep


def test_operator_methods_match_dense():
    m = random_module(10, 2, seed=7)
    H = m.to_dense().detach().to(torch.complex128)
    z = 0.3 + 0.9j
    A = H - z * torch.eye(10, dtype=torch.complex128)
    torch.testing.assert_close(m.resolvent_diagonal(z), torch.diagonal(torch.linalg.inv(A)))
    b = torch.randn(10, dtype=torch.float64)
    torch.testing.assert_close(m.solve(b, z), torch.linalg.solve(A, b.to(A.dtype)))
    torch.testing.assert_close(m.logdet(z), torch.linalg.slogdet(A)[1] + torch.log(
        torch.linalg.slogdet(A)[0]))
    # gradients flow to the parameters (T non-symmetric) and match dense autograd
    m.resolvent_diagonal(z).real.sum().backward()
    g = m.U.grad.clone()
    m.zero_grad()
    Hd = m.to_dense().to(torch.complex128) - z * torch.eye(10, dtype=torch.complex128)
    torch.diagonal(torch.linalg.inv(Hd)).real.sum().backward()
    torch.testing.assert_close(g, m.U.grad)
