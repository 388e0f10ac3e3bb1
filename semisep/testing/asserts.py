"""Assertions for testing structured operators against dense arrays.

Both helpers accept NumPy arrays and torch tensors (tensors are detached and copied to the CPU)
and raise :class:`AssertionError` with a message that locates the worst entry.

Default tolerances come from the dtype's machine epsilon, never from "whatever passes":
:func:`default_rtol` is ``c * N * eps(dtype)``, the textbook bound ``gamma_N = N eps / (1 - N eps)``
for an inner product of length ``N`` (Higham, *Accuracy and Stability of Numerical Algorithms*,
section 3.1) with a safety factor ``c`` (8 by default).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "assert_allclose_relative",
    "assert_operator_close",
    "default_rtol",
    "to_numpy",
]


def to_numpy(x: Any) -> np.ndarray:
    """``x`` as a NumPy array (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _eps(dtype: Any) -> float:
    try:
        return float(np.finfo(np.dtype(dtype)).eps)
    except TypeError:  # a torch dtype
        import torch

        return float(torch.finfo(dtype).eps)


def default_rtol(dtype: Any, n: int, c: float = 8.0) -> float:
    """``c * max(n, 1) * eps(dtype)``: the rounding bound of a length-``n`` inner product.

    >>> default_rtol("float64", 10) == 8 * 10 * float(np.finfo(np.float64).eps)
    True
    """
    return c * max(int(n), 1) * _eps(dtype)


def assert_allclose_relative(
    actual: Any, desired: Any, rtol: float, *, atol: float = 0.0, err_msg: str = ""
) -> None:
    """Assert ``|actual - desired| <= atol + rtol * |desired|`` elementwise.

    Shapes must be equal (no broadcasting: a shape mismatch is a bug worth reporting).  NaN or
    inf in ``actual`` where ``desired`` is finite fails.  The message gives the number of
    offending entries, the largest absolute error and the largest relative error, each with its
    index and the two values there.

    >>> assert_allclose_relative([1.0, 2.0], [1.0, 2.0 + 1e-15], rtol=1e-12)
    >>> assert_allclose_relative([1.0, 2.1], [1.0, 2.0], rtol=1e-3)
    Traceback (most recent call last):
    ...
    AssertionError: Not equal to relative tolerance rtol=0.001, atol=0
    1 of 2 entries differ
    max abs error 0.1 at index (1,): actual 2.1, desired 2
    max rel error 0.05 at index (1,): actual 2.1, desired 2
    """
    a = to_numpy(actual)
    d = to_numpy(desired)
    head = f"{err_msg}\n" if err_msg else ""
    if a.shape != d.shape:
        raise AssertionError(f"{head}shape mismatch: actual {a.shape}, desired {d.shape}")
    if a.size == 0:
        return
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        err = np.abs(a - d)
        both_nonfinite_equal = ~np.isfinite(d) & (a == d)
        err = np.where(both_nonfinite_equal, 0.0, err)
        err = np.where(np.isnan(err), np.inf, err)
        bound = atol + rtol * np.abs(d)
        bad = ~(err <= bound) & ~both_nonfinite_equal
        if not bad.any():
            return
        rel = np.where(d != 0, err / np.abs(d), np.where(err == 0, 0.0, np.inf))
    i_abs = np.unravel_index(int(np.argmax(err)), err.shape)
    i_rel = np.unravel_index(int(np.argmax(rel)), rel.shape)

    def _idx(i: tuple[Any, ...]) -> tuple[int, ...]:
        return tuple(int(k) for k in i)

    def _val(x: Any) -> str:
        return f"{x.item():.6g}" if np.isrealobj(x) else f"{complex(x.item()):.6g}"

    raise AssertionError(
        f"{head}Not equal to relative tolerance rtol={rtol:.3g}, atol={atol:.3g}\n"
        f"{int(bad.sum())} of {bad.size} entries differ\n"
        f"max abs error {float(err[i_abs]):.6g} at index {_idx(i_abs)}: "
        f"actual {_val(a[i_abs])}, desired {_val(d[i_abs])}\n"
        f"max rel error {float(rel[i_rel]):.6g} at index {_idx(i_rel)}: "
        f"actual {_val(a[i_rel])}, desired {_val(d[i_rel])}"
    )


def _normwise_check(actual: np.ndarray, desired: np.ndarray, scale: np.ndarray, rtol: float,
                    atol: float, what: str) -> None:
    """``|actual - desired| <= atol + rtol * scale`` with ``scale`` broadcast against them."""
    scale = np.broadcast_to(scale, desired.shape)
    err = np.abs(actual - desired)
    bad = ~(err <= atol + rtol * scale)
    if bad.any():
        i = np.unravel_index(int(np.argmax(np.where(bad, err / np.maximum(scale, 1e-300), 0))),
                             err.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} entries exceed atol + rtol * scale "
            f"(rtol={rtol:.3g}, atol={atol:.3g}); worst at index {tuple(int(k) for k in i)}: "
            f"error {float(err[i]):.6g}, scale {float(scale[i]):.6g}, "
            f"error/scale {float(err[i] / max(scale[i], 1e-300)):.6g}"
        )


def _like(x: np.ndarray, ref: Any) -> Any:
    """``x`` as the array type (and device) of ``ref``."""
    if hasattr(ref, "detach"):
        import torch

        return torch.as_tensor(x, device=ref.device)
    return x


def assert_operator_close(
    op: Any, dense: Any, rtol: float | None = None, atol: float | None = None, *, seed: int = 0
) -> None:
    """Assert that the structured operator ``op`` represents the dense array ``dense``.

    Checks, each against ``dense`` (shape ``(..., N, N)``):

    * ``op.shape == dense.shape``;
    * ``op.to_dense()`` entrywise, ``|error| <= atol + rtol * max|dense|`` per batch element;
    * ``op.matvec(x)`` and ``op @ x`` for a vector ``x`` ``(..., N)`` and a matrix ``(..., N, 3)``,
      and ``op.rmatvec(x)`` (the transpose, not the conjugate transpose), with
      ``|error_i| <= atol + rtol * max_i (|dense| |x|)_i`` per batch element -- the normwise form
      of the componentwise bound ``gamma_N |A| |x|`` for a product.

    Parameters
    ----------
    rtol : float, optional
        Default :func:`default_rtol` ``(dtype, N)`` = ``8 N eps``.
    atol : float, optional
        Default 0.
    seed : int
        Seed of the random test vectors (``numpy.random.default_rng``).
    """
    D = to_numpy(dense)
    if tuple(op.shape) != D.shape:
        raise AssertionError(f"op.shape {tuple(op.shape)} != dense.shape {D.shape}")
    n = D.shape[-1]
    dtype = to_numpy(op.to_dense()).dtype
    if rtol is None:
        rtol = default_rtol(dtype, n)
    if atol is None:
        atol = 0.0
    Dd = to_numpy(op.to_dense())
    if Dd.shape != D.shape:
        raise AssertionError(f"op.to_dense().shape {Dd.shape} != dense.shape {D.shape}")
    scale = np.abs(D).max(axis=(-2, -1), keepdims=True) if n else np.zeros(D.shape)
    _normwise_check(Dd, D, scale, rtol, atol, "to_dense()")

    rng = np.random.default_rng(seed)
    batch = D.shape[:-2]
    cplx = np.iscomplexobj(D) or np.iscomplexobj(Dd)
    for shape in (batch + (n,), batch + (n, 3)):
        x = rng.standard_normal(shape)
        if cplx:
            x = x + 1j * rng.standard_normal(shape)
        x = x.astype(dtype)
        vec = len(shape) == len(batch) + 1
        xx = x[..., None] if vec else x
        for name, M, fn in (
            ("matvec", D, op.matvec),
            ("op @ x", D, lambda v: op @ v),
            ("rmatvec", np.swapaxes(D, -1, -2), op.rmatvec),
        ):
            y = to_numpy(fn(_like(x, op.to_dense())))
            ref = M.astype(np.complex128 if cplx else np.float64) @ xx
            ref = ref[..., 0] if vec else ref
            if y.shape != ref.shape:
                raise AssertionError(f"{name}: result shape {y.shape}, expected {ref.shape}")
            sc = np.abs(M) @ np.abs(xx)
            sc = sc.max(axis=(-2, -1), keepdims=True)
            sc = sc[..., 0] if vec else sc
            kind = "vector" if vec else "matrix"
            _normwise_check(y, ref, sc, rtol, atol, f"{name} ({kind} right-hand side)")
