"""Small dense linear algebra for the operators, through the backend's array namespace.

The structured operators (``lowrank.py``, ``semiseparable.py``, ``factorize.py``) are written
once against these functions.  Each one forwards to ``bk.linalg``, the backend's own namespace
module (:mod:`semisep.backends.numpy.linalg`, :mod:`semisep.backends.torch.linalg`), which
holds the library-specific code: small r x r solves, determinants and singular values, QR and
SVD for the factorization, flips and cumulative sums, dtype maps.  Nothing here asks which
array library it was given.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def mT(x: Any) -> Any:
    """Swap the last two axes (transpose, never conjugate); works for ndarray and Tensor."""
    return x.swapaxes(-1, -2)


def eye(bk, r: int, dtype: Any, like: Any) -> Any:
    return bk.linalg.eye(r, dtype, like)


def solve(bk, K: Any, B: Any) -> Any:
    """``K^{-1} B`` for K (..., r, r), B (..., r, k): B is always a matrix (batch dimensions
    broadcast)."""
    return bk.linalg.solve(K, B)


def svdvals(bk, K: Any) -> Any:
    return bk.linalg.svdvals(K)


def condition_number(bk, K: Any) -> np.ndarray:
    """2-norm condition number of each r x r matrix (..., r, r), as a NumPy float64 array.

    ``inf`` where the smallest singular value is exactly zero.  r = 0 gives 1.
    """
    if K.shape[-1] == 0:
        return np.ones(tuple(K.shape[:-2]))
    s = np.asarray(bk.to_numpy(svdvals(bk, K)), dtype=np.float64)
    smax, smin = s[..., 0], s[..., -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(smin > 0, smax / np.where(smin > 0, smin, 1.0), np.inf)


def slogdet(bk, K: Any) -> tuple[Any, Any]:
    """``(sign, log|det K|)`` as numpy.linalg.slogdet / torch.linalg.slogdet."""
    return bk.linalg.slogdet(K)


def svd(bk, M: Any) -> tuple[Any, Any, Any]:
    """Thin SVD ``M = U diag(s) Vh``."""
    return bk.linalg.svd(M)


def qr(bk, M: Any) -> Any:
    """The Q of a thin QR factorization (orthonormal columns)."""
    return bk.linalg.qr(M)


def randn(bk, shape: tuple[int, ...], dtype: Any, like: Any, seed: int) -> Any:
    """Standard normal samples (complex: independent real and imaginary parts / sqrt(2)),
    drawn by NumPy (so every backend sees the same numbers for a seed)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if bk.is_complex(dtype):
        x = (x + 1j * rng.standard_normal(shape)) / np.sqrt(2.0)
    return bk.linalg.from_numpy(x, dtype, like)


def conj(bk, x: Any) -> Any:
    return bk.linalg.conj(x)


def flip(bk, x: Any, axis: int) -> Any:
    return bk.linalg.flip(x, axis)


def cumsum(bk, x: Any, axis: int) -> Any:
    return bk.linalg.cumsum(x, axis)


def sum_(bk, x: Any, axis: int) -> Any:
    return bk.linalg.sum_(x, axis)


def log(bk, x: Any) -> Any:
    return bk.linalg.log(x)


def exp(bk, x: Any) -> Any:
    return bk.linalg.exp(x)


def angle(bk, x: Any) -> Any:
    return bk.linalg.angle(x)


def stack(bk, xs: list[Any], axis: int) -> Any:
    return bk.linalg.stack(xs, axis)


def norm_fro(bk, x: Any) -> Any:
    """Frobenius norm over the last two axes, real."""
    return bk.linalg.norm_fro(x)


def real_dtype(bk, dtype: Any) -> Any:
    return bk.linalg.real_dtype(dtype)


def complex_dtype(bk, dtype: Any) -> Any:
    return bk.linalg.complex_dtype(dtype)


def nbytes(x: Any) -> int:
    if x is None:
        return 0
    nb = getattr(x, "nbytes", None)
    if nb is None:  # torch
        return int(x.numel() * x.element_size())
    return int(nb)


def itemsize(x: Any) -> int:
    it = getattr(x, "itemsize", None)
    if it is None:
        return int(x.element_size())
    return int(it)


def diagonal(bk, M: Any, offset: int = 0) -> Any:
    """The ``offset`` diagonal of the last two axes (a copy, so it can be stored)."""
    return bk.linalg.diagonal(M, offset)


def matmul_mixed(bk, A: Any, B: Any, dtype: Any) -> Any:
    """``A @ B`` in the complex or real ``dtype`` of the result, where ``A`` may be real and
    ``B`` complex, without a complex copy of a real ``A`` (see the backends' ``matmul_mixed``)."""
    return bk.linalg.matmul_mixed(A, B, dtype)
