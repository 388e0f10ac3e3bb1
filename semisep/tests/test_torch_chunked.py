"""The torch backend's chunked form (``method="chunked"``: the CUDA path, also run on CPU)
against the independent sequential reference, so that ``semisep.test()`` exercises it on every
machine with torch, not only where CUDA makes it the default.

N = 301 with the default chunk length (8 at this N): 38 chunks, a ragged last one.
"""

from __future__ import annotations

import numpy as np
import pytest

import semisep as ss
from semisep import reference as ref

from ._support import to_numpy

torch = pytest.importorskip("torch")

N = 301


def _tolerance(dtype, d, lo, z, c=50.0):
    """``c eps N cond_2(T - zI)`` with ``cond_2`` bounded without a dense matrix: ``|A|_2`` by
    the largest row sum and ``|A^{-1}|_2 <= 1 / min_i (Im z - Im d_i)`` (the field of values
    of ``A = T - zI``, T complex symmetric with real off-diagonal, lies below that line)."""
    d = np.asarray(d, np.complex128)
    off = np.abs(np.asarray(lo))
    rows = np.abs(d - z)
    rows[..., 1:] += off
    rows[..., :-1] += off
    gap = np.min(z.imag - d.imag)
    assert gap > 0
    return c * float(np.finfo(np.dtype(dtype)).eps) * d.shape[-1] * float(np.max(rows)) / gap


def _problem(dtype, seed=0):
    """A batch of 2 symmetric chains, diagonal in [-3, 3], at ``z = 0.3 + 2i`` (cond_2 < 5)."""
    rng = np.random.default_rng(seed)
    d = rng.uniform(-3.0, 3.0, (2, N))
    lo = rng.uniform(0.5, 1.5, N - 1)
    if np.dtype(dtype).kind == "c":
        d = d + 1j * rng.uniform(-0.5, 0.5, (2, N))
    return d.astype(dtype), lo.astype(np.finfo(np.dtype(dtype)).dtype), 0.3 + 2.0j


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_chunked_values_against_sequential_reference(dtype, device):
    d, lo, z = _problem(dtype)
    T = ss.Tridiagonal(torch.as_tensor(d, device=device), torch.as_tensor(lo, device=device))
    tol = _tolerance(dtype, d, lo, z)
    assert tol < 0.05
    G = to_numpy(T.resolvent_diagonal(z, method="chunked"))
    Gs = ref.sequential_resolvent_diagonal(d, lo, None, z)
    assert np.max(np.abs(G - Gs)) <= tol * np.max(np.abs(Gs))
    ld = to_numpy(T.logdet(z, method="chunked"))
    lds = ref.sequential_logdet(d, lo, None, z)
    assert np.max(np.abs(ld.real - lds.real)) <= tol * np.max(np.abs(lds.real))
    assert np.max(np.abs(np.angle(np.exp(1j * (ld.imag - lds.imag))))) <= tol * N
    b = np.random.default_rng(1).standard_normal((2, N)).astype(dtype)
    x = to_numpy(T.solve(torch.as_tensor(b, device=device), z, method="chunked"))
    xs = ref.sequential_solve(d, lo, None, b, z)
    assert np.max(np.abs(x - xs)) <= tol * np.max(np.abs(xs))


def test_chunked_in_chunk_renormalisation(device):
    """Chunks of 64 steps (5 chunks); an entry 1e12 sets the prescale of the whole row, so
    inside a chunk the transfer matrix shrinks by ~1e-12 per step and underflows (to 0/0
    carries) without its renormalisation.  The row is diagonally dominant by 1, so every
    ``G_ii`` is accurate to a few eps relative."""
    from semisep.backends.torch import TorchBackend

    d, _, _ = _problem(np.float64, seed=2)
    d = np.abs(d) + 3.0
    d[:, 0] = 1e12
    d[1, N // 2] = -1e12
    be = TorchBackend()
    alpha = torch.as_tensor(d, device=device)
    beta = torch.ones(2, N - 1, dtype=torch.float64, device=device)
    pivmin = be.amax_abs(alpha, axis=1) * float(np.finfo(np.float64).eps)
    G, guarded, singular = be.resolvent_diagonal(alpha, beta, pivmin, "chunked", chunk_length=64)
    assert not bool(singular.any()) and not bool(guarded.any())
    Gs = ref.sequential_resolvent_diagonal(d, np.ones(N - 1), None, 0.0)
    assert np.max(np.abs(to_numpy(G) - Gs) / np.abs(Gs)) <= 50 * np.finfo(np.float64).eps


def test_chunked_gradients_against_plain_autograd(device):
    """The chunked form's O(N) backward against ordinary autograd through the plain loop
    (``method="reference"``), for the resolvent diagonal and log det, N = 40 (5 chunks)."""
    rng = np.random.default_rng(3)
    n = 40
    d0 = rng.uniform(-3.0, 3.0, n) + 1j * rng.uniform(-0.5, 0.5, n)
    lo0 = rng.uniform(0.5, 1.5, n - 1) + 0j
    w = torch.as_tensor(rng.standard_normal(n) + 1j * rng.standard_normal(n), device=device)
    grads = []
    for method in ("chunked", "reference"):
        d = torch.tensor(d0, device=device, requires_grad=True)
        lo = torch.tensor(lo0, device=device, requires_grad=True)
        T = ss.Tridiagonal(d, lo)
        loss = (T.resolvent_diagonal(0.3 + 0.6j, method=method) * w).sum().abs() \
            + T.logdet(0.3 + 0.6j, method=method).real
        loss.backward()
        grads.append((to_numpy(d.grad), to_numpy(lo.grad)))
    tol = _tolerance(np.complex128, d0, lo0, 0.3 + 0.6j)
    for got, want in zip(grads[0], grads[1], strict=True):
        assert np.max(np.abs(got - want)) <= tol * np.max(np.abs(want))
