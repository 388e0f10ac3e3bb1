"""Tolerance rules and problem generators shared by the tests.

Tolerances come from the dtype's eps and a condition estimate of the dense matrix,
``tol = C * eps * cond(A)`` with a documented constant, never "whatever passes".
"""

from __future__ import annotations

import numpy as np

from semisep import reference as ref


def eps_of(dtype) -> float:
    return float(np.finfo(np.dtype(dtype)).eps)


def relative_tolerance(dtype, diag, lower, upper, z, c: float = 50.0) -> float:
    """``c * eps * N * cond_2(T - zI)``-ish bound, computed on the dense matrix (small N only).

    The pivot recursions are backward stable for diagonally dominant / Hermitian-shifted
    problems; forward error <= (growth) * eps * cond.  We take c = 50 and an N factor for the
    accumulated rounding of the sweeps.
    """
    A = ref.tridiagonal_to_dense(diag, lower, upper, z)
    A = A.reshape((-1,) + A.shape[-2:])
    cond = max(np.linalg.cond(a) for a in A)
    n = A.shape[-1]
    return c * eps_of(dtype) * max(n, 1) * cond


def random_tridiagonal(rng, batch, n, dtype, symmetric=False, dominant=False):
    real = np.finfo(np.dtype(dtype)).dtype
    diag = rng.standard_normal(batch + (n,))
    lower = rng.standard_normal(batch + (n - 1,))
    upper = None if symmetric else rng.standard_normal(batch + (n - 1,))
    if np.issubdtype(dtype, np.complexfloating):
        diag = diag + 1j * rng.standard_normal(batch + (n,))
        lower = lower + 1j * rng.standard_normal(batch + (n - 1,))
        if upper is not None:
            upper = upper + 1j * rng.standard_normal(batch + (n - 1,))
    if dominant:
        diag = diag + 4.0 * np.sign(diag.real + (diag.real == 0))
    del real

    def cast(x):
        return None if x is None else np.asarray(x).astype(dtype)

    return cast(diag), cast(lower), cast(upper)


def disordered_chain(rng, batch, n, width=1.0):
    return -2.0 + rng.uniform(-width, width, batch + (n,)), np.ones(n - 1)
