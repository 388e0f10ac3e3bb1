"""Input checks shared by the operators: shapes, array types, finiteness, right-hand sides.

Every error names the argument and the shapes involved.
"""

from __future__ import annotations

from typing import Any

from .backends import Backend
from .errors import NonFiniteError, ShapeError


def broadcast_shapes(named: dict[str, tuple[int, ...]], what: str = "batch") -> tuple[int, ...]:
    """NumPy broadcasting of the named shapes; a ShapeError names the ones that clash."""
    out: tuple[int, ...] = ()
    seen: list[str] = []
    for name, shape in named.items():
        n = max(len(out), len(shape))
        a = (1,) * (n - len(out)) + tuple(out)
        b = (1,) * (n - len(shape)) + tuple(shape)
        res = []
        for x, y in zip(a, b, strict=True):
            if x == y or y == 1:
                res.append(x)
            elif x == 1:
                res.append(y)
            else:
                raise ShapeError(
                    f"{what} shapes do not broadcast: {name} has {what} shape {tuple(shape)}, "
                    f"which does not fit {tuple(out)} from {', '.join(seen)}"
                )
        out = tuple(res)
        seen.append(name)
    return out


def check_finite(backend: Backend, **arrays: Any) -> None:
    """Raise NonFiniteError naming the first argument that holds NaN or inf."""
    for name, x in arrays.items():
        if x is not None and not backend.all_finite(x):
            raise NonFiniteError(
                f"{name} contains NaN or inf; pass check_finite=False to skip this check "
                "(results are then undefined)"
            )


def split_rhs(b: Any, batch_ndim: int, n: int) -> tuple[bool, tuple[int, ...], int]:
    """Classify a right-hand side by torch.linalg.solve's rule.

    ``b`` is a vector iff ``b.ndim == batch_ndim + 1`` or ``b.ndim == 1``; otherwise a matrix
    ``(..., N, k)``.  Returns ``(is_vector, b_batch_shape, k)``.
    """
    shape = tuple(b.shape)
    if len(shape) == 0:
        raise ShapeError("b must have at least one dimension (N,), got a scalar")
    is_vector = len(shape) == 1 or len(shape) == batch_ndim + 1
    if is_vector:
        if shape[-1] != n:
            raise ShapeError(f"b has shape {shape}; its last dimension must be N = {n}")
        return True, shape[:-1], 1
    if shape[-2] != n:
        raise ShapeError(
            f"b has shape {shape}, read as a matrix (..., N, k) (it is not (..., N) with the "
            f"operator's {batch_ndim} batch dimension(s)); its dimension -2 must be N = {n}"
        )
    return False, shape[:-2], shape[-1]
