"""Property tests: shapes, broadcasting, dtypes, z on and near the real axis, symmetric and
non-symmetric T; every backend (NumPy always, torch on the chosen device) against
semisep.reference."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

import semisep as ss
from semisep import reference as ref

from ._support import count_example, to_backend, to_numpy, tolerance
from .plugin import selected_dtypes

batch_shapes = st.sampled_from([(), (1,), (2,), (2, 1), (1, 3)])
# drawn from the dtypes the runner selected (semisep.test(dtype=...): --semisep-dtype)
dtypes = st.deferred(lambda: st.sampled_from([np.dtype(n).type for n in selected_dtypes()]))
shifts = st.one_of(
    st.complex_numbers(max_magnitude=3, allow_nan=False, allow_infinity=False).filter(
        lambda z: abs(z.imag) > 1e-3
    ),
    st.floats(-3, 3),  # on the real axis
    st.builds(lambda x, e: complex(x, e), st.floats(-3, 3), st.sampled_from([1e-6, -1e-6, 1e-3])),
)


@st.composite
def problems(draw):
    batch = draw(batch_shapes)
    n = draw(st.integers(1, 24))
    dtype = draw(dtypes)
    symmetric = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cplx = np.dtype(dtype).kind == "c"

    def arr(shape):
        x = rng.standard_normal(shape)
        return (x + 1j * rng.standard_normal(shape) if cplx else x).astype(dtype)

    d = arr(batch + (n,))
    lo = arr(batch[-1:] + (n - 1,)) if batch else arr((n - 1,))  # broadcasts against batch
    up = None if symmetric else arr((n - 1,))
    return d, lo, up, draw(shifts), dtype


def _well_posed(d, lo, up, z, dtype):
    A = ref.tridiagonal_to_dense(d, lo, up, z).reshape((-1,) + (d.shape[-1],) * 2)
    cond = max(np.linalg.cond(a) for a in A)
    # the claim is for matrices the dtype can represent: skip numerically singular draws
    return cond < 1e-2 / np.finfo(dtype).eps


def _op(p, backend, device):
    d, lo, up, z, dtype = p
    return ss.Tridiagonal(*(to_backend(x, backend, device) for x in (d, lo, up)))


@given(p=problems())
def test_property_resolvent_diagonal(p, backend, device):
    d, lo, up, z, dtype = p
    assume(_well_posed(d, lo, up, z, dtype))
    count_example()
    G = to_numpy(_op(p, backend, device).resolvent_diagonal(z))
    Gref = ref.dense_resolvent_diagonal(d, lo, up, z)
    assert G.shape == Gref.shape
    err = np.max(np.abs(G - Gref)) / np.max(np.abs(Gref))
    assert err < tolerance(dtype, d, lo, up, z), f"relative error {err:.3g}"


@given(p=problems(), k=st.integers(0, 3))
def test_property_solve(p, k, backend, device):
    d, lo, up, z, dtype = p
    assume(_well_posed(d, lo, up, z, dtype))
    count_example()
    rng = np.random.default_rng(k)
    n = d.shape[-1]
    b = rng.standard_normal(d.shape[:-1] + ((n,) if k == 0 else (n, k)))  # b carries the batch
    x = to_numpy(_op(p, backend, device).solve(to_backend(b, backend, device), z))
    xr = ref.dense_solve(d, lo, up, b, z)
    assert x.shape == xr.shape
    err = np.max(np.abs(x - xr)) / np.max(np.abs(xr))
    assert err < tolerance(dtype, d, lo, up, z), f"relative error {err:.3g}"


@given(p=problems())
def test_property_logdet(p, backend, device):
    d, lo, up, z, dtype = p
    assume(_well_posed(d, lo, up, z, dtype))
    count_example()
    ld = to_numpy(_op(p, backend, device).logdet(z))
    ldr = ref.dense_logdet(d, lo, up, z)
    tol = tolerance(dtype, d, lo, up, z)
    assert np.all(np.abs(ld.real - ldr.real) <= tol * (1 + np.abs(ldr.real)))
    # the phase on the unit circle, so that 2 pi k cannot hide anything
    assert np.all(np.abs(np.exp(1j * ld.imag) - np.exp(1j * ldr.imag)) <= tol + 1e-5)


@given(p=problems())
def test_property_selected_entries(p, backend, device):
    d, lo, up, z, dtype = p
    assume(_well_posed(d, lo, up, z, dtype))
    count_example()
    n = d.shape[-1]
    idx = np.random.default_rng(n).choice(n, size=min(n, 3), replace=False)
    op = _op(p, backend, device)
    full = to_numpy(op.resolvent_diagonal(z))
    sel = to_numpy(op.resolvent_diagonal(z, indices=idx))
    tol = tolerance(dtype, d, lo, up, z)
    assert np.max(np.abs(sel - full[..., idx])) <= tol * np.max(np.abs(full))
