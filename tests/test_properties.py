"""Hypothesis property tests: shapes, broadcasting, dtypes, z on and near the real axis,
symmetric and non-symmetric T, against semisep.reference."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

import semisep as ss
from semisep import reference as ref

from .helpers import relative_tolerance

batch_shapes = st.sampled_from([(), (1,), (2,), (2, 1), (1, 3)])
dtypes = st.sampled_from([np.float32, np.float64, np.complex64, np.complex128])
shifts = st.one_of(
    st.complex_numbers(max_magnitude=3, allow_nan=False, allow_infinity=False).filter(lambda z: abs(z.imag) > 1e-3),
    st.floats(-3, 3),  # on the real axis
    st.builds(lambda x, e: complex(x, e), st.floats(-3, 3), st.sampled_from([1e-6, -1e-6, 1e-3])),  # near it
)


@st.composite
def problems(draw):
    batch = draw(batch_shapes)
    n = draw(st.integers(1, 24))
    dtype = draw(dtypes)
    symmetric = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    cplx = np.dtype(dtype).kind == "c"

    def arr(shape):
        x = rng.standard_normal(shape)
        return (x + 1j * rng.standard_normal(shape) if cplx else x).astype(dtype)

    d = arr(batch + (n,))
    lo = arr(batch[-1:] + (n - 1,)) if batch else arr((n - 1,))  # broadcasts against batch
    up = None if symmetric else arr((n - 1,))
    z = draw(shifts)
    return d, lo, up, z, dtype


def _well_posed(d, lo, up, z, dtype):
    A = ref.tridiagonal_to_dense(d, lo, up, z).reshape((-1,) + (d.shape[-1],) * 2)
    cond = max(np.linalg.cond(a) for a in A)
    # skip numerically singular draws: the claim is for matrices the dtype can represent
    return cond < 1e-2 / np.finfo(dtype).eps


@given(problems())
def test_property_resolvent_diagonal(p):
    d, lo, up, z, dtype = p
    assume(_well_posed(d, lo, up, z, dtype))
    G = ss.Tridiagonal(d, lo, up).resolvent_diagonal(z)
    Gref = ref.dense_resolvent_diagonal(d, lo, up, z)
    assert G.shape == Gref.shape
    err = np.max(np.abs(G - Gref)) / np.max(np.abs(Gref))
    assert err < relative_tolerance(dtype, d, lo, up, z)


@given(problems(), st.integers(0, 3))
def test_property_solve(p, k):
    d, lo, up, z, dtype = p
    assume(_well_posed(d, lo, up, z, dtype))
    rng = np.random.default_rng(k)
    n = d.shape[-1]
    batch = d.shape[:-1]  # b carries the batch dims, so torch.linalg.solve's rule is unambiguous
    b = rng.standard_normal(batch + ((n,) if k == 0 else (n, k)))
    x = ss.Tridiagonal(d, lo, up).solve(b, z)
    xr = ref.dense_solve(d, lo, up, b, z)
    assert x.shape == xr.shape
    err = np.max(np.abs(x - xr)) / np.max(np.abs(xr))
    assert err < relative_tolerance(dtype, d, lo, up, z)


@given(problems())
def test_property_logdet(p):
    d, lo, up, z, dtype = p
    assume(_well_posed(d, lo, up, z, dtype))
    ld = np.asarray(ss.Tridiagonal(d, lo, up).logdet(z))
    ldr = ref.dense_logdet(d, lo, up, z)
    tol = relative_tolerance(dtype, d, lo, up, z)
    # log|det| to tol * (1 + |log|det||); phase compared on the unit circle
    assert np.all(np.abs(ld.real - ldr.real) <= tol * (1 + np.abs(ldr.real)))
    assert np.all(np.abs(np.exp(1j * ld.imag) - np.exp(1j * ldr.imag)) <= tol + 1e-5)
