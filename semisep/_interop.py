"""Interoperability: semisep operators as ``scipy.sparse.linalg.LinearOperator``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import BackendError, ShapeError


def as_linear_operator(op: Any) -> Any:
    """A ``scipy.sparse.linalg.LinearOperator`` applying ``op`` (unbatched, NumPy backend).

    ``matvec``/``matmat`` apply ``op``; SciPy's ``rmatvec`` is the *conjugate* transpose
    ``op^H x = conj(op^T conj(x))``, built here from semisep's (plain-transpose) ``rmatvec``.
    So ``scipy.sparse.linalg.gmres``, ``eigs``, ``eigsh`` (for Hermitian ``op``), ``svds`` work
    on semisep operators in O(N) per product.
    """
    from scipy.sparse.linalg import LinearOperator

    if op.backend.name != "numpy":
        raise BackendError(
            f"aslinearoperator needs NumPy arrays; this operator holds {op.backend.name} arrays"
        )
    if op.batch_shape:
        raise ShapeError(
            f"aslinearoperator needs an unbatched operator; this one has batch shape "
            f"{op.batch_shape} (index it first, e.g. build it from diag[0])"
        )
    n = op.shape[-1]

    def matvec(x: Any) -> Any:
        return op.matvec(np.asarray(x).reshape(n))

    def rmatvec(x: Any) -> Any:
        return np.conj(op.rmatvec(np.conj(np.asarray(x).reshape(n))))

    def matmat(X: Any) -> Any:
        return op.matvec(np.asarray(X))

    def rmatmat(X: Any) -> Any:
        return np.conj(op.rmatvec(np.conj(np.asarray(X))))

    return LinearOperator(
        (n, n), matvec=matvec, rmatvec=rmatvec, matmat=matmat, rmatmat=rmatmat, dtype=op.dtype
    )
