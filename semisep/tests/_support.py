"""Helpers of the shipped suite: array conversion per backend, tolerances, example counting."""

from __future__ import annotations

import numpy as np

from semisep import reference as ref

from .plugin import EXAMPLES


def count_example() -> None:
    EXAMPLES["run"] += 1


def to_backend(x, backend: str, device: str):
    if x is None:
        return None
    if backend == "numpy":
        return np.asarray(x)
    import torch

    return torch.as_tensor(np.asarray(x), device=device)


def to_numpy(x):
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def tolerance(dtype, diag, lower, upper, z, c: float = 50.0) -> float:
    """``c * eps * N * cond_2(T - zI)`` on the dense matrix (small N only)."""
    A = ref.tridiagonal_to_dense(diag, lower, upper, z)
    A = A.reshape((-1,) + A.shape[-2:])
    cond = max(np.linalg.cond(a) for a in A)
    return c * float(np.finfo(np.dtype(dtype)).eps) * max(A.shape[-1], 1) * cond
