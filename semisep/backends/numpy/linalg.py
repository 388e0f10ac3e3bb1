"""The NumPy backend's dense array namespace: the small linear algebra the operators need.

Every backend has a module of this name with the same functions and contracts
(:mod:`semisep.backends.torch.linalg` is the torch one); the operators reach it as
``backend.linalg`` (:attr:`semisep.backends.Backend.linalg`), so no operator code asks which
array library it holds.  Shapes: ``K (..., r, r)``, ``B (..., r, k)``, ``M (..., m, n)``; batch
dimensions broadcast as in ``numpy.linalg``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import KernelNamespaceBase


def eye(r: int, dtype: Any, like: Any) -> Any:
    """``I_r`` of ``dtype`` (``like`` is ignored: NumPy arrays have no device)."""
    return np.eye(r, dtype=dtype)


def solve(K: Any, B: Any) -> Any:
    """``K^{-1} B`` for ``K (..., r, r)`` and a matrix ``B (..., r, k)``."""
    return np.linalg.solve(K, B)


def svdvals(K: Any) -> Any:
    """Singular values ``(..., min(m, n))`` in descending order."""
    return np.linalg.svd(K, compute_uv=False)


def slogdet(K: Any) -> tuple[Any, Any]:
    """``(sign, log|det K|)``."""
    return np.linalg.slogdet(K)


def svd(M: Any) -> tuple[Any, Any, Any]:
    """Thin SVD ``M = U diag(s) Vh``."""
    return np.linalg.svd(M, full_matrices=False)


def qr(M: Any) -> Any:
    """The Q ``(..., m, min(m, n))`` of a thin QR factorization (orthonormal columns)."""
    return np.linalg.qr(M, mode="reduced")[0]


def from_numpy(x: np.ndarray, dtype: Any, like: Any) -> Any:
    """A NumPy array as this backend's array of ``dtype`` (on ``like``'s device)."""
    return x.astype(dtype)


def conj(x: Any) -> Any:
    """The complex conjugate, materialised."""
    return np.conj(x)


def flip(x: Any, axis: int) -> Any:
    return np.flip(x, axis=axis)


def cumsum(x: Any, axis: int) -> Any:
    return np.cumsum(x, axis=axis)


def sum_(x: Any, axis: int) -> Any:
    return x.sum(axis=axis)


def log(x: Any) -> Any:
    return np.log(x)


def exp(x: Any) -> Any:
    return np.exp(x)


def angle(x: Any) -> Any:
    return np.angle(x)


def stack(xs: list[Any], axis: int) -> Any:
    return np.stack(xs, axis=axis)


def norm_fro(x: Any) -> Any:
    """Frobenius norm over the last two axes, real."""
    return np.linalg.norm(x, ord="fro", axis=(-2, -1))


def real_dtype(dtype: Any) -> Any:
    return np.finfo(dtype).dtype


def complex_dtype(dtype: Any) -> Any:
    return np.result_type(dtype, np.complex64)


def diagonal(M: Any, offset: int = 0) -> Any:
    """The ``offset`` diagonal of the last two axes, as a copy (so it can be stored)."""
    return np.diagonal(M, offset, axis1=-2, axis2=-1).copy()


def matmul_mixed(A: Any, B: Any, dtype: Any) -> Any:
    """``A @ B`` in ``dtype``, where ``A`` may be real and ``B`` complex.

    Real ``A``, complex ``B (..., m, k)``: ``B`` is read as the real array ``(..., m, 2k)`` of
    its interleaved parts, one real product is formed and read back as complex -- no complex
    copy of ``A`` (for ``A = U (N, r)`` that copy costs more than the product) -- with BLAS
    held at one thread: the product is skinny and memory-bound, and OpenBLAS's pool, once
    woken, spins for a while and slows the compiled kernels that follow.  Otherwise both are
    cast to ``dtype`` and multiplied."""
    if (isinstance(A, np.ndarray) and isinstance(B, np.ndarray)
            and not np.iscomplexobj(A) and np.iscomplexobj(B) and np.dtype(dtype).kind == "c"):
        from .._blas import single_threaded_blas

        rdt = np.finfo(np.dtype(dtype)).dtype
        Bc = np.ascontiguousarray(B, dtype=dtype)
        with single_threaded_blas():
            out = np.matmul(A.astype(rdt, copy=False), Bc.view(rdt))  # (..., n, 2k), interleaved
        return np.ascontiguousarray(out).view(dtype)
    return np.asarray(A, dtype=dtype) @ np.asarray(B, dtype=dtype)


# ------------------------------------------------------------------------------------------------
# the covariance kernels' namespace (semisep.kernels): elementwise functions and assembly
# ------------------------------------------------------------------------------------------------
class KernelNamespace(KernelNamespaceBase):
    """The handful of array operations the covariance kernels (:mod:`semisep.kernels`) need,
    on NumPy arrays of one floating ``dtype``.  :mod:`semisep.backends.torch.linalg` has the
    same class on tensors; :func:`kernel_namespace` builds it from a call's inputs."""

    name = "numpy"

    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype
        self.exp, self.expm1, self.sqrt = np.exp, np.expm1, np.sqrt
        self.cos, self.sin, self.abs, self.where = np.cos, np.sin, np.abs, np.where

    def asarray(self, x: Any) -> Any:
        return np.asarray(x, dtype=self.dtype)

    def zeros(self, shape: Any) -> Any:
        from .quasiseparable_rows import zeros  # large ones recycled

        return zeros(tuple(shape), dtype=self.dtype)

    def stack(self, xs: Any, axis: int) -> Any:
        return np.stack(self.broadcast(*xs), axis=axis)

    def concat(self, xs: Any, axis: int) -> Any:
        return np.concatenate(xs, axis=axis)

    def broadcast(self, *xs: Any) -> list[Any]:
        shape = np.broadcast_shapes(*(tuple(x.shape) for x in xs))
        return [self.broadcast_to(x, shape) for x in xs]

    def broadcast_to(self, x: Any, shape: Any) -> Any:
        # ``x`` itself where no broadcast is needed: it stays writeable (see NumpyBackend)
        shape = tuple(shape)
        return x if isinstance(x, np.ndarray) and x.shape == shape else np.broadcast_to(x, shape)


def kernel_namespace(*xs: Any) -> KernelNamespace:
    """The :class:`KernelNamespace` of ``xs`` (NumPy arrays, NumPy and Python scalars): the
    common floating dtype of the arrays (integers count as float64; float64 if none).

    Raises TypeError for a complex array (the kernels' coordinates and parameters are real)."""
    dtype = None
    for x in xs:
        if isinstance(x, np.ndarray | np.generic):
            if np.iscomplexobj(x):
                raise TypeError("kernel coordinates and parameters must be real, got a complex array")
            d = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
            dtype = d if dtype is None else np.promote_types(dtype, d)
    return KernelNamespace(np.dtype(np.float64) if dtype is None else dtype)
