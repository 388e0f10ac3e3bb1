"""The oracle: dense and banded SciPy/NumPy code that judges the core.

It imports nothing from the rest of semisep, so a bug in the core cannot hide in it.
Every function takes NumPy arrays (anything ``np.asarray`` accepts) in the LAPACK layout
of a tridiagonal matrix: ``diag`` (..., N), ``lower`` (..., N-1) with ``lower[i] = A[i+1, i]``,
``upper`` (..., N-1) with ``upper[i] = A[i, i+1]`` (``None``: symmetric, ``upper = lower``).
Leading dimensions broadcast.  The computations run in complex128 / float64.

Quasiseparable matrices (:mod:`semisep.reference.quasiseparable`) take their generators
``diag, p, q, a[, g, h, b]`` instead.

Dense functions are O(N^3) and meant for N up to a few thousand; the ``sequential_*``
functions are an independent O(N) implementation (a plain Python loop vectorised over the
batch, without the core's pivot guard) for large N, where dense is impossible.
"""

from __future__ import annotations

from .dense import (
    dense_logdet,
    dense_resolvent,
    dense_resolvent_diagonal,
    dense_solve,
    eigvalsh_tridiagonal,
    solve_banded_tridiagonal,
    tridiagonal_to_dense,
)
from .quasiseparable import (
    qsm_to_dense,
    sequential_qsm_logdet,
    sequential_qsm_matvec,
    sequential_qsm_resolvent_diagonal,
    sequential_qsm_solve,
)
from .sequential import sequential_logdet, sequential_resolvent_diagonal, sequential_solve

__all__ = [
    "tridiagonal_to_dense",
    "dense_resolvent",
    "dense_resolvent_diagonal",
    "dense_logdet",
    "dense_solve",
    "solve_banded_tridiagonal",
    "eigvalsh_tridiagonal",
    "sequential_resolvent_diagonal",
    "sequential_logdet",
    "sequential_solve",
    "qsm_to_dense",
    "sequential_qsm_logdet",
    "sequential_qsm_solve",
    "sequential_qsm_resolvent_diagonal",
    "sequential_qsm_matvec",
]
