"""``StructuredOperator``: what every semisep operator shares (structure, products, interop).

A subclass sets ``_backend``, ``_n``, ``_batch_shape`` and ``_dtype`` in its constructor and
implements ``matvec``, ``rmatvec`` and ``to_dense``; it inherits the read-only structure,
``op @ x``, ``numpy.asarray(op)`` and :meth:`aslinearoperator`.
"""

from __future__ import annotations

from typing import Any

from ._interop import as_linear_operator
from .backends import Backend


class StructuredOperator:
    """Base of :class:`~semisep.Tridiagonal`, :class:`~semisep.TridiagonalPlusLowRank` and
    :class:`~semisep.Semiseparable`: a batch of N x N matrices held in structured form."""

    _backend: Backend
    _n: int
    _batch_shape: tuple[int, ...]
    _dtype: Any

    @property
    def backend(self) -> Backend:
        """The array backend of the arrays held ("numpy" or "torch")."""
        return self._backend

    @property
    def n(self) -> int:
        """Matrix size N."""
        return self._n

    @property
    def shape(self) -> tuple[int, ...]:
        """``batch_shape + (N, N)``."""
        return self._batch_shape + (self._n, self._n)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The leading (broadcast) batch dimensions."""
        return self._batch_shape

    @property
    def dtype(self) -> Any:
        """The promoted dtype of the arrays held."""
        return self._dtype

    def matvec(self, x: Any) -> Any:  # pragma: no cover - every subclass implements it
        raise NotImplementedError

    def rmatvec(self, x: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def to_dense(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def __matmul__(self, x: Any) -> Any:
        return self.matvec(x)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        A = self._backend.to_numpy(self.to_dense())
        return A if dtype is None else A.astype(dtype)

    def aslinearoperator(self) -> Any:
        """This operator as a ``scipy.sparse.linalg.LinearOperator`` (unbatched NumPy operators;
        see :func:`semisep._interop.as_linear_operator`)."""
        return as_linear_operator(self)
