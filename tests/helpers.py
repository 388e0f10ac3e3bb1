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


def toeplitz_roots(a: complex, bc: complex) -> tuple[complex, complex]:
    """Roots ``r1, r2`` of ``r^2 - a r + bc`` with ``|r1| >= |r2|`` (``r1 r2 = bc``): the
    leading minors of ``tridiag(b; a; c)`` are ``D_k = (r1^{k+1} - r2^{k+1}) / (r1 - r2)``.
    Written as ``r1 = a (1 + sqrt(1 - 4 bc/a^2)) / 2`` so that huge and tiny ``a`` are fine."""
    a, bc = complex(a), complex(bc)
    s = a * (1 + np.sqrt(1 - 4 * bc / (a * a))) / 2
    t = a * (1 - np.sqrt(1 - 4 * bc / (a * a))) / 2
    r1, r2 = (s, t) if abs(s) >= abs(t) else (t, s)
    return r1, bc / r1  # r2 from the product: no cancellation


def toeplitz_logdet(a: complex, bc: complex, n: int) -> complex:
    """``log det tridiag(b; a; c)`` (n x n) in closed form, imaginary part in (-pi, pi]:
    ``(n+1) log r1 + log(1 - rho^{n+1}) - log(r1 - r2)``, ``rho = r2/r1`` (needs ``|rho| < 1``).
    Accurate to about ``n eps |log r1|`` (the product ``(n+1) log r1``)."""
    r1, r2 = toeplitz_roots(a, bc)
    rho = r2 / r1
    assert abs(rho) < 1
    ld = (n + 1) * np.log(r1) + np.log1p(-rho ** (n + 1)) - np.log(r1) - np.log1p(-rho)
    im = float(np.angle(np.exp(1j * ld.imag)))  # wrap; -pi -> pi as the library does
    return complex(ld.real, np.pi if im == -np.pi else im)


def toeplitz_resolvent_diagonal(a: complex, bc: complex, n: int) -> np.ndarray:
    """``diag(tridiag(b; a; c)^{-1})`` (n,) in closed form: ``G_ii = D_i D_{n-1-i} / D_n``
    with the minors of :func:`toeplitz_roots`, i.e.
    ``G_ii = (1 - rho^{i+1}) (1 - rho^{n-i}) / (r1 (1 - rho) (1 - rho^{n+1}))``."""
    r1, r2 = toeplitz_roots(a, bc)
    rho = r2 / r1
    i = np.arange(n)
    return ((1 - rho ** (i + 1)) * (1 - rho ** (n - i))
            / (r1 * (1 - rho) * (1 - rho ** (n + 1))))


def result_nbytes(x) -> int:
    """Bytes of the NumPy arrays in a task result (arrays, tuples/lists/dicts of them)."""
    if isinstance(x, np.ndarray):
        return x.nbytes
    if isinstance(x, (tuple, list)):
        return sum(result_nbytes(v) for v in x)
    if isinstance(x, dict):
        return sum(result_nbytes(v) for v in x.values())
    return 0


def compute_recording_tasks(*collections):
    """``dask.compute(*collections)`` on the synchronous scheduler, unoptimised, recording the
    task graph and every task's result size: returns ``(dsk, sizes)``, the (first) graph run and
    ``{key: bytes of its result}``."""
    import dask
    from dask.callbacks import Callback

    sizes: dict = {}
    graphs: list = []

    class Record(Callback):
        def _start(self, dsk):
            graphs.append(dsk)

        def _posttask(self, key, result, dsk, state, id):
            sizes[key] = result_nbytes(result)

    with Record(), dask.config.set(scheduler="sync"):
        dask.compute(*collections, optimize_graph=False)
    return graphs[0], sizes
