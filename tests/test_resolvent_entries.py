"""Off-diagonal resolvent entries of a Tridiagonal in O(N + K): G_ij = G_jj times a product of
LU (i < j) or UL (i > j) pivot factors, checked against the dense inverse."""

from __future__ import annotations

import numpy as np
import pytest

import semisep as ss

torch = pytest.importorskip("torch")


def _dense(d, lo, up):
    return np.diag(d) + np.diag(lo, -1) + np.diag(up, 1)


def _op(backend, d, lo, up=None):
    if backend == "torch":
        d, lo = torch.from_numpy(d), torch.from_numpy(lo)
        up = None if up is None else torch.from_numpy(up)
    return ss.Tridiagonal(d, lo, up)


def _np(x):
    return x.detach().numpy() if hasattr(x, "detach") else np.asarray(x)


def _no_solve(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("resolvent_entries called solve on a Tridiagonal")

    monkeypatch.setattr(ss.Tridiagonal, "solve", boom)


@pytest.mark.parametrize("z", [0.3 + 0.2j, -0.7, 1j])
@pytest.mark.parametrize("symmetric", [True, False])
def test_random_pairs_against_dense(backend, z, symmetric, monkeypatch):
    rng = np.random.default_rng(1)
    n = 40
    d, lo, up = rng.standard_normal(n), rng.standard_normal(n - 1), rng.standard_normal(n - 1)
    up_ = lo if symmetric else up
    T = _op(backend, d, lo, None if symmetric else up)
    G = np.linalg.inv(_dense(d, lo, up_) - z * np.eye(n))
    pairs = np.concatenate([rng.integers(0, n, (60, 2)), [[0, n - 1], [n - 1, 0], [5, 5], [7, 6], [6, 7]]])
    _no_solve(monkeypatch)
    got = _np(T.resolvent_entries(pairs, z))
    want = G[pairs[:, 0], pairs[:, 1]]
    assert got.shape == (len(pairs),)
    assert np.iscomplexobj(got) == isinstance(z, complex)
    cond = np.linalg.cond(_dense(d, lo, up_) - z * np.eye(n))
    np.testing.assert_allclose(got, want, rtol=0, atol=50 * cond * np.finfo(float).eps * np.abs(G).max())


def test_far_apart_pairs_decaying_n2000(backend, monkeypatch):
    """|G_ij| decays like 0.8^|i-j| down to ~1e-190: every entry to relative accuracy."""
    rng = np.random.default_rng(2)
    n = 2000
    d = 2.05 + 0.01 * rng.standard_normal(n)
    lo = 1.0 + 0.01 * rng.standard_normal(n - 1)
    up = 1.0 + 0.01 * rng.standard_normal(n - 1)
    z = 0.01j
    G = np.linalg.inv(_dense(d, lo, up) - z * np.eye(n))
    T = _op(backend, d, lo, up)
    pairs = np.array([[0, n - 1], [n - 1, 0], [3, 1990], [1995, 10], [1000, 1001], [1998, 1999],
                      [1999, 1998], [500, 1500], [1500, 500], [1234, 1234]])
    _no_solve(monkeypatch)
    got = _np(T.resolvent_entries(pairs, z))
    want = G[pairs[:, 0], pairs[:, 1]]
    assert np.abs(want[0]) < 1e-150 and np.abs(want[0]) > 0  # far pairs are tiny, not underflowed
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_batch_and_batch_of_z(backend, monkeypatch):
    rng = np.random.default_rng(3)
    n, B = 12, 3
    d, lo, up = rng.standard_normal((B, n)), rng.standard_normal((B, n - 1)), rng.standard_normal(n - 1)
    zs = np.array([[0.1 + 1j], [0.2 - 0.5j]])  # (2, 1) against batch (3,) -> (2, 3)
    T = _op(backend, d, lo, up)
    zarg = torch.from_numpy(zs) if backend == "torch" else zs
    pairs = np.array([[0, 11], [11, 0], [4, 4], [2, 9], [9, 2]])
    _no_solve(monkeypatch)
    got = _np(T.resolvent_entries(pairs, zarg))
    assert got.shape == (2, B, len(pairs))
    for a in range(2):
        for b in range(B):
            G = np.linalg.inv(_dense(d[b], lo[b], up) - zs[a, 0] * np.eye(n))
            np.testing.assert_allclose(got[a, b], G[pairs[:, 0], pairs[:, 1]], rtol=1e-10, atol=1e-12)


def test_zero_off_diagonal_decouples_exactly(backend, monkeypatch):
    rng = np.random.default_rng(4)
    n = 10
    d, lo, up = rng.standard_normal(n) + 3, rng.standard_normal(n - 1), rng.standard_normal(n - 1)
    up[4] = 0.0  # A[4, 5] = 0: G_ij = 0 for i <= 4 < j; the lower triangle stays coupled
    z = 0.5j
    G = np.linalg.inv(_dense(d, lo, up) - z * np.eye(n))
    T = _op(backend, d, lo, up)
    pairs = np.array([[0, 9], [4, 5], [2, 7], [5, 4], [9, 0], [5, 9], [0, 4]])
    _no_solve(monkeypatch)
    got = _np(T.resolvent_entries(pairs, z))
    assert np.all(got[:3] == 0)
    assert np.all(got[3:] != 0)
    np.testing.assert_allclose(got, G[pairs[:, 0], pairs[:, 1]], rtol=1e-12, atol=1e-15)


def test_float32_and_empty_pairs():
    rng = np.random.default_rng(5)
    n = 9
    d, lo = rng.standard_normal(n).astype(np.float32) + 3, rng.standard_normal(n - 1).astype(np.float32)
    T = ss.Tridiagonal(d, lo)
    G = np.linalg.inv(_dense(d, lo, lo).astype(np.float64) - 0.25 * np.eye(n))
    pairs = np.array([[0, 8], [8, 0], [3, 3]])
    got = T.resolvent_entries(pairs, 0.25)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, G[pairs[:, 0], pairs[:, 1]], rtol=1e-5, atol=1e-7)
    assert T.resolvent_entries(np.zeros((0, 2), np.int64), 0.25).shape == (0,)


def test_guarded_pivot_falls_back_to_the_pivoted_solve():
    """A[0, 0] = 0: the unpivoted sweep guards a pivot, so the solve (row exchanges) answers."""
    d, lo = np.array([0.0, 0.0, 2.0]), np.array([1.0, 1.0])
    T = ss.Tridiagonal(d, lo)
    G = np.linalg.inv(_dense(d, lo, lo))
    pairs = np.array([[0, 1], [1, 0], [0, 2], [2, 2]])
    np.testing.assert_allclose(T.resolvent_entries(pairs, 0.0), G[pairs[:, 0], pairs[:, 1]], atol=1e-14)


def test_gradient_uses_the_differentiable_solve():
    rng = np.random.default_rng(6)
    n = 8
    d = torch.tensor(rng.standard_normal(n) + 3, requires_grad=True)
    lo = torch.tensor(rng.standard_normal(n - 1))
    T = ss.Tridiagonal(d, lo)
    pairs = np.array([[0, 7], [7, 1], [2, 2]])
    g = T.resolvent_entries(pairs, 0.5j)
    g.abs().sum().backward()
    d2 = d.detach().clone().requires_grad_(True)
    A = torch.diag(d2.to(torch.complex128)) + torch.diag(lo.to(torch.complex128), -1) \
        + torch.diag(lo.to(torch.complex128), 1) - 0.5j * torch.eye(n, dtype=torch.complex128)
    Gd = torch.linalg.inv(A)[pairs[:, 0], pairs[:, 1]]
    Gd.abs().sum().backward()
    torch.testing.assert_close(g.detach(), Gd.detach())
    torch.testing.assert_close(d.grad, d2.grad)
