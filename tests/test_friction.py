"""What a new user hits first: empty batches, odd tensors, unsupported dtypes and arguments,
seed-era names, package attributes.  Each error must name the argument and what is accepted."""

from __future__ import annotations

import numpy as np
import pytest

import semisep as ss
from semisep import reference as ref

torch = pytest.importorskip("torch")

TORCH_METHODS = ["auto", "chunked", "reference", "sequential"]


@pytest.mark.parametrize("method", TORCH_METHODS)
@pytest.mark.parametrize("batch", [(0,), (2, 0)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex64])
def test_torch_empty_batch_every_method(method, batch, dtype):
    T = ss.Tridiagonal(torch.zeros(*batch, 5, dtype=dtype), torch.zeros(4, dtype=dtype))
    assert T.resolvent_diagonal(1j, method=method).shape == (*batch, 5)
    assert T.logdet(1j, method=method).shape == batch
    assert T.solve(torch.zeros(*batch, 5, dtype=dtype), 1j, method=method).shape == (*batch, 5)


def _neg_or_conj_z():
    zc = torch.tensor([0.5 + 1j, 0.2 + 2j, -0.3 + 3j], dtype=torch.complex128)
    return {
        "neg-bit real batch": torch._neg_view(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)),
        "neg-bit from conj().imag": torch.tensor([1 + 1j, 2 + 2j, 3 - 1j], dtype=torch.complex128)
        .conj().imag,
        "conj-bit complex batch": zc.conj(),
        "neg-bit scalar": torch._neg_view(torch.tensor(0.5, dtype=torch.float64)),
    }


@pytest.mark.parametrize("name", list(_neg_or_conj_z()))
@pytest.mark.parametrize("method", ["auto", "sequential", "chunked"])
def test_torch_z_with_negative_or_conjugate_bit(name, method):
    z = _neg_or_conj_z()[name]
    rng = np.random.default_rng(1)
    d, e = rng.uniform(5, 6, (3, 6)), rng.uniform(0.5, 1, 5)   # spectrum away from every z
    T = ss.Tridiagonal(torch.from_numpy(d), torch.from_numpy(e))
    zn = z.resolve_conj().resolve_neg().numpy()
    expect = ref.dense_resolvent_diagonal(d, e, None, zn)   # z batch-shaped (3,) or scalar
    got = T.resolvent_diagonal(z, method=method)
    np.testing.assert_allclose(got.numpy(), expect, rtol=1e-8)
    b = torch._neg_view(torch.ones(3, 6, dtype=torch.float64))
    x = T.solve(b, z, method=method)
    xr = ref.dense_solve(d, e, None, -np.ones((3, 6)), zn)
    np.testing.assert_allclose(x.numpy(), xr, rtol=1e-8)
