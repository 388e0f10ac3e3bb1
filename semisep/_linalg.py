"""Small dense linear algebra and array helpers, dispatched on the backend's name.

The structured operators (``lowrank.py``, ``semiseparable.py``, ``factorize.py``) are written
once against these functions; each maps to ``numpy`` / ``numpy.linalg`` or ``torch`` /
``torch.linalg`` (same device as the input, differentiable where torch is).  They are the few
operations the :class:`~semisep.backends.Backend` plumbing does not carry: small r x r solves,
determinants and singular values, QR and SVD for the factorization, flips and cumulative sums.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _is_torch(bk) -> bool:
    return bk.name == "torch"


def mT(x: Any) -> Any:
    """Swap the last two axes (transpose, never conjugate); works for ndarray and Tensor."""
    return x.swapaxes(-1, -2)


def eye(bk, r: int, dtype: Any, like: Any) -> Any:
    if _is_torch(bk):
        import torch

        return torch.eye(r, dtype=dtype, device=like.device)
    return np.eye(r, dtype=dtype)


def solve(bk, K: Any, B: Any) -> Any:
    """``K^{-1} B`` for K (..., r, r), B (..., r, k): B is always a matrix (batch dimensions
    broadcast).  torch.linalg.solve would read a B of shape ``K.shape[:-1]`` as a batch of
    vectors -- K (r, r, r) against B = I_r (r, r) -- and return a wrong-shaped, wrong answer;
    such a B is given K's batch dimensions first."""
    if _is_torch(bk):
        import torch

        if B.ndim == K.ndim - 1:
            B = B.expand(*K.shape[:-2], *B.shape[-2:])
        return torch.linalg.solve(K, B)
    return np.linalg.solve(K, B)


def svdvals(bk, K: Any) -> Any:
    if _is_torch(bk):
        import torch

        return torch.linalg.svdvals(K.detach())
    return np.linalg.svd(K, compute_uv=False)


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
    if _is_torch(bk):
        import torch

        return torch.linalg.slogdet(K)
    return np.linalg.slogdet(K)


def svd(bk, M: Any) -> tuple[Any, Any, Any]:
    """Thin SVD ``M = U diag(s) Vh``."""
    if _is_torch(bk):
        import torch

        return torch.linalg.svd(M, full_matrices=False)
    return np.linalg.svd(M, full_matrices=False)


def qr(bk, M: Any) -> Any:
    """The Q of a thin QR factorization (orthonormal columns)."""
    if _is_torch(bk):
        import torch

        return torch.linalg.qr(M, mode="reduced")[0]
    return np.linalg.qr(M, mode="reduced")[0]


def randn(bk, shape: tuple[int, ...], dtype: Any, like: Any, seed: int) -> Any:
    """Standard normal samples (complex: independent real and imaginary parts / sqrt(2))."""
    rng = np.random.default_rng(seed)
    cplx = bk.is_complex(dtype)
    x = rng.standard_normal(shape)
    if cplx:
        x = (x + 1j * rng.standard_normal(shape)) / np.sqrt(2.0)
    if _is_torch(bk):
        import torch

        return torch.as_tensor(x, device=like.device).to(dtype)
    return x.astype(dtype)


def conj(bk, x: Any) -> Any:
    if _is_torch(bk):
        return x.conj().resolve_conj()
    return np.conj(x)


def flip(bk, x: Any, axis: int) -> Any:
    if _is_torch(bk):
        import torch

        return torch.flip(x, dims=(axis,))
    return np.flip(x, axis=axis)


def cumsum(bk, x: Any, axis: int) -> Any:
    if _is_torch(bk):
        import torch

        return torch.cumsum(x, dim=axis)
    return np.cumsum(x, axis=axis)


def sum_(bk, x: Any, axis: int) -> Any:
    if _is_torch(bk):
        return x.sum(dim=axis)
    return x.sum(axis=axis)


def log(bk, x: Any) -> Any:
    if _is_torch(bk):
        import torch

        return torch.log(x)
    return np.log(x)


def angle(bk, x: Any) -> Any:
    if _is_torch(bk):
        import torch

        return torch.angle(x)
    return np.angle(x)


def stack(bk, xs: list[Any], axis: int) -> Any:
    if _is_torch(bk):
        import torch

        return torch.stack(xs, dim=axis)
    return np.stack(xs, axis=axis)


def norm_fro(bk, x: Any) -> Any:
    """Frobenius norm over the last two axes, real."""
    if _is_torch(bk):
        import torch

        return torch.linalg.matrix_norm(x, ord="fro")
    return np.linalg.norm(x, ord="fro", axis=(-2, -1))


def real_dtype(bk, dtype: Any) -> Any:
    if _is_torch(bk):
        import torch

        return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)
    return np.finfo(dtype).dtype


def complex_dtype(bk, dtype: Any) -> Any:
    if _is_torch(bk):
        import torch

        return {torch.float32: torch.complex64, torch.float64: torch.complex128}.get(dtype, dtype)
    return np.result_type(dtype, np.complex64)


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
    """The ``offset`` diagonal of the last two axes (a copy for NumPy, so it can be stored)."""
    if _is_torch(bk):
        import torch

        return torch.diagonal(M, offset, dim1=-2, dim2=-1).clone()
    return np.diagonal(M, offset, axis1=-2, axis2=-1).copy()


def matmul_mixed(bk, A: Any, B: Any, dtype: Any) -> Any:
    """``A @ B`` in the complex or real ``dtype`` of the result, where ``A`` may be real and
    ``B`` complex.  NumPy, real ``A``, complex C-contiguous ``B (..., m, k)``: ``B`` is read as
    the real array ``(..., m, 2k)`` of its interleaved parts, one real product is formed and
    read back as complex -- no complex copy of ``A`` (for ``A = U (N, r)`` that copy costs more
    than the product), and BLAS is held at one thread for it: the product is skinny (``k``
    small) and memory-bound, and OpenBLAS's pool, once woken, spins for a while and slows the
    compiled kernels that follow.  torch, real ``A``, complex ``B``: the same through ``torch.view_as_real``
    (differentiable).  Otherwise both are cast to ``dtype`` and multiplied."""
    if _is_torch(bk):
        import torch

        if (isinstance(A, torch.Tensor) and isinstance(B, torch.Tensor) and not A.is_complex()
                and B.is_complex() and dtype.is_complex):
            Bc = B.to(dtype).resolve_conj().contiguous()
            Br = torch.view_as_real(Bc).reshape(*Bc.shape[:-1], 2 * Bc.shape[-1])  # interleaved
            out = A.to(Br.dtype) @ Br  # (..., n, 2k)
            return torch.view_as_complex(out.reshape(*out.shape[:-1], Bc.shape[-1], 2).contiguous())
        return bk.astype(A, dtype) @ bk.astype(B, dtype)
    if (isinstance(A, np.ndarray) and isinstance(B, np.ndarray)
            and not np.iscomplexobj(A) and np.iscomplexobj(B) and np.dtype(dtype).kind == "c"):
        from .backends._blas import single_threaded_blas

        rdt = np.finfo(np.dtype(dtype)).dtype
        Bc = np.ascontiguousarray(B, dtype=dtype)
        with single_threaded_blas():  # skinny and memory-bound; OpenBLAS's idle pool would spin
            out = np.matmul(A.astype(rdt, copy=False), Bc.view(rdt))  # (..., n, 2k), interleaved
        return np.ascontiguousarray(out).view(dtype)
    return bk.astype(A, dtype) @ bk.astype(B, dtype)
