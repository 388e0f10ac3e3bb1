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
    present = [x for x in arrays.values() if x is not None]
    if len(present) > 1 and backend.all_finite_many(present):  # one read for all (the common case)
        return
    for name, x in arrays.items():
        if x is not None and not backend.all_finite(x):
            raise non_finite_error(name)


def non_finite_error(name: str) -> NonFiniteError:
    """The error :func:`check_finite` raises for the argument ``name``."""
    return NonFiniteError(
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


#: What the operators compute in; integer and bool inputs are promoted to float64.
SUPPORTED_DTYPES = "float32, float64, complex64 or complex128 (integers and bools become float64)"


def _dtype_problem(dtype: Any) -> str | None:
    """Why ``dtype`` (NumPy or torch) is not supported, or None if it is."""
    name = str(dtype).replace("torch.", "")
    if name in ("float32", "float64", "complex64", "complex128", "bool") or name.startswith(
        ("int", "uint")
    ):
        return None
    if name in ("float16", "bfloat16", "complex32", "chalf", "half"):
        return "too short for the pivot recursions (cast to float32 first)"
    if name in ("float128", "complex256", "longdouble", "clongdouble", "float96", "complex192"):
        return "extended precision has no compiled kernels (cast to float64 first)"
    return "not a numeric type semisep computes in"


#: ``_dtype_problem`` by dtype (NumPy dtypes and torch dtypes are hashable and immutable)
_DTYPE_PROBLEM: dict[Any, str | None] = {}


def check_dtype(name: str, x: Any) -> None:
    """TypeError naming ``name`` if the array ``x``'s dtype is not one semisep computes in."""
    dtype = x.dtype
    try:
        problem = _DTYPE_PROBLEM[dtype]
    except KeyError:
        problem = _DTYPE_PROBLEM[dtype] = _dtype_problem(dtype)
    except TypeError:  # an unhashable dtype-like object
        problem = _dtype_problem(dtype)
    if problem is not None:
        dt = str(x.dtype).replace("torch.", "")
        raise TypeError(f"{name} has dtype {dt}: {problem}; supported: {SUPPORTED_DTYPES}")


def as_array(backend: Backend, name: str, x: Any, like: Any = None, *, scalar_ok: bool = True) -> Any:
    """``backend.asarray(x, like)`` with errors that name the argument ``name``.

    Rejected with a TypeError (or a ShapeError for ragged lists): ``None``; ragged nested
    lists; object arrays and non-numeric entries; Python integers beyond the float64 range;
    unsupported dtypes (:func:`check_dtype`); torch tensors that are sparse, nested or on the
    ``meta`` device (no values to compute with).
    """
    accepted = "an array" + (" or a real/complex scalar" if scalar_ok else "")
    if x is None:
        raise TypeError(f"{name} must be {accepted}, got None")
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be {accepted}, got {type(x).__name__} {x!r}")
    mod = type(x).__module__
    if mod.startswith("torch") and type(x).__name__ in ("Tensor", "Parameter"):
        if getattr(x, "is_nested", False):
            raise TypeError(f"{name} is a nested tensor; pass a regular (strided) tensor of equal-"
                            "length rows (pad, or make one operator per length)")
        if str(x.layout) != "torch.strided":
            raise TypeError(f"{name} has layout {x.layout}; pass a dense (strided) tensor, e.g. "
                            f"{name}.to_dense()")
        if x.device.type == "meta":
            raise TypeError(f"{name} is on the 'meta' device (shapes without values); semisep "
                            "needs values: create it on 'cpu' or 'cuda'")
    elif not hasattr(x, "__array__") or isinstance(x, (list, tuple)):
        import numpy as np

        if isinstance(x, int) and not isinstance(x, bool):
            try:
                float(x)
            except OverflowError:
                raise TypeError(
                    f"{name} is an integer of {len(str(abs(x)))} digits, beyond the float64 range "
                    f"(|{name}| <= 1.8e308)"
                ) from None
        try:
            probe = np.asarray(x)
        except ValueError as exc:
            raise ShapeError(f"{name} is a ragged nested sequence (rows of different lengths); "
                             f"pass a rectangular array: {exc}") from None
        if probe.dtype == object:
            raise TypeError(
                f"{name} holds non-numeric entries or integers beyond the float64 range "
                f"(NumPy made an object array of it); pass {accepted} of a supported dtype: "
                f"{SUPPORTED_DTYPES}"
            )
    arr = backend.asarray(x, like=like)
    if getattr(arr, "dtype", None) is not None:
        check_dtype(name, arr)
    return arr


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None,
              maximum_text: str = "") -> int:
    """``value`` as an int if it is an integer (Python or NumPy, not bool) in
    ``[minimum, maximum]``; else a TypeError / ValueError naming ``name``.  Strings and floats
    (2.7 would silently become 2) are rejected."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        lo = "" if minimum is None else f"{minimum} <= "
        hi = "" if maximum is None else f" <= {maximum_text or maximum}"
        raise ValueError(f"{name} = {v} must satisfy {lo}{name}{hi}")
    return v
