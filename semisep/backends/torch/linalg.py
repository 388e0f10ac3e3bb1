"""The torch backend's dense array namespace: the same functions and contracts as
:mod:`semisep.backends.numpy.linalg`, on the input's device and differentiable where torch is
(``svdvals`` excepted: it serves condition numbers and reads detached values)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import KernelNamespaceBase

_REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}
_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def eye(r: int, dtype: Any, like: Any) -> Any:
    """``I_r`` of ``dtype`` on ``like``'s device."""
    return torch.eye(r, dtype=dtype, device=like.device)


def solve(K: Any, B: Any) -> Any:
    """``K^{-1} B`` for ``K (..., r, r)`` and a matrix ``B (..., r, k)``.

    ``torch.linalg.solve`` reads a ``B`` of shape ``K.shape[:-1]`` as a batch of vectors (K of
    shape (r, r, r) against B = I_r would give a wrong-shaped, wrong answer), so such a ``B`` is
    given K's batch dimensions first."""
    return torch.linalg.solve(K, _as_matrices(K, B))


def solve_ex(K: Any, B: Any) -> tuple[Any, Any]:
    """``(K^{-1} B, ok)`` as :func:`solve`, with no host sync: ``torch.linalg.solve`` reads
    the LU factorization's error codes on the host (on a GPU, a sync) to raise where ``K`` is
    singular; here they stay on the device, as the 0-d bool ``ok`` (every factorization
    succeeded), for the caller to read with its other flags.  Where ``ok`` is False the
    solution is void, and :func:`solve` on the same arguments raises torch's error."""
    X, info = torch.linalg.solve_ex(K, _as_matrices(K, B), check_errors=False)
    return X, (info == 0).all()


def _as_matrices(K: Any, B: Any) -> Any:
    """``B`` with ``K``'s batch dimensions where it has one dimension less (a matrix, not a
    batch of vectors)."""
    if B.ndim == K.ndim - 1:
        B = B.expand(*K.shape[:-2], *B.shape[-2:])
    return B


def svdvals(K: Any) -> Any:
    return torch.linalg.svdvals(K.detach())


def slogdet(K: Any) -> tuple[Any, Any]:
    return torch.linalg.slogdet(K)


def svd(M: Any) -> tuple[Any, Any, Any]:
    return torch.linalg.svd(M, full_matrices=False)


def qr(M: Any) -> Any:
    return torch.linalg.qr(M, mode="reduced")[0]


def from_numpy(x: np.ndarray, dtype: Any, like: Any) -> Any:
    return torch.as_tensor(x, device=like.device).to(dtype)


def conj(x: Any) -> Any:
    return x.conj().resolve_conj()


def flip(x: Any, axis: int) -> Any:
    return torch.flip(x, dims=(axis,))


def cumsum(x: Any, axis: int) -> Any:
    return torch.cumsum(x, dim=axis)


def sum_(x: Any, axis: int) -> Any:
    return x.sum(dim=axis)


def log(x: Any) -> Any:
    return torch.log(x)


def exp(x: Any) -> Any:
    return torch.exp(x)


def angle(x: Any) -> Any:
    return torch.angle(x)


def stack(xs: list[Any], axis: int) -> Any:
    return torch.stack(xs, dim=axis)


def norm_fro(x: Any) -> Any:
    return torch.linalg.matrix_norm(x, ord="fro")


def real_dtype(dtype: Any) -> Any:
    return _REAL.get(dtype, dtype)


def complex_dtype(dtype: Any) -> Any:
    return _COMPLEX.get(dtype, dtype)


def diagonal(M: Any, offset: int = 0) -> Any:
    return torch.diagonal(M, offset, dim1=-2, dim2=-1).clone()


def matmul_mixed(A: Any, B: Any, dtype: Any) -> Any:
    """``A @ B`` in ``dtype``; a real ``A`` times a complex ``B`` runs as one real product on
    ``torch.view_as_real(B)`` (no complex copy of ``A``; differentiable)."""
    if (isinstance(A, torch.Tensor) and isinstance(B, torch.Tensor) and not A.is_complex()
            and B.is_complex() and dtype.is_complex):
        Bc = B.to(dtype).resolve_conj().contiguous()
        Br = torch.view_as_real(Bc).reshape(*Bc.shape[:-1], 2 * Bc.shape[-1])  # interleaved
        out = A.to(Br.dtype) @ Br  # (..., n, 2k)
        return torch.view_as_complex(out.reshape(*out.shape[:-1], Bc.shape[-1], 2).contiguous())
    return A.to(dtype) @ B.to(dtype)


# ------------------------------------------------------------------------------------------------
# the covariance kernels' namespace (semisep.kernels): elementwise functions and assembly
# ------------------------------------------------------------------------------------------------
class KernelNamespace(KernelNamespaceBase):
    """:class:`semisep.backends.numpy.linalg.KernelNamespace` on tensors of one floating
    ``dtype`` on ``device``; every operation is a torch op, so autograd records the assembly
    (exact gradients for every parameter and coordinate)."""

    name = "torch"

    def __init__(self, dtype: Any, device: Any = None) -> None:
        self.dtype = dtype
        self.device = device
        self.exp, self.expm1, self.sqrt = torch.exp, torch.expm1, torch.sqrt
        self.cos, self.sin, self.abs, self.where = torch.cos, torch.sin, torch.abs, torch.where

    def asarray(self, x: Any) -> Any:
        return torch.as_tensor(x, dtype=self.dtype, device=self.device)

    def zeros(self, shape: Any) -> Any:
        return torch.zeros(tuple(shape), dtype=self.dtype, device=self.device)

    def stack(self, xs: Any, axis: int) -> Any:
        return torch.stack(self.broadcast(*xs), dim=axis)

    def concat(self, xs: Any, axis: int) -> Any:
        return torch.cat(list(xs), dim=axis)

    def broadcast(self, *xs: Any) -> list[Any]:
        shape = np.broadcast_shapes(*(tuple(x.shape) for x in xs))
        return [x.expand(shape) for x in xs]

    def broadcast_to(self, x: Any, shape: Any) -> Any:
        return x.expand(tuple(shape))


def kernel_namespace(*xs: Any) -> KernelNamespace:
    """The :class:`KernelNamespace` of ``xs``, some of them tensors: the common floating dtype
    of the tensors (integer tensors count as float64; NumPy arrays and scalars among ``xs`` do
    not take part) on the first tensor's device.

    Raises TypeError for a complex tensor (the kernels' coordinates and parameters are real)."""
    tensors = [x for x in xs if isinstance(x, torch.Tensor)]
    dtype = None
    for x in tensors:
        if x.is_complex():
            raise TypeError("kernel coordinates and parameters must be real, got a complex tensor")
        d = x.dtype if x.is_floating_point() else torch.float64
        dtype = d if dtype is None else torch.promote_types(dtype, d)
    return KernelNamespace(torch.float64 if dtype is None else dtype,
                           tensors[0].device if tensors else None)
