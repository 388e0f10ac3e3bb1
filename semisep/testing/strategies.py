"""Hypothesis strategies for semisep operators and shifts.

Every argument that describes the problem (``n``, ``batch_shape``, ``dtype``, ``symmetric``,
``rank``) accepts either a plain value or a hypothesis strategy for it.  Entries are drawn with
hypothesis (so failing examples shrink) from ``[-1, 1]`` (real and imaginary parts).

``well_conditioned=True`` makes the matrix strictly diagonally dominant by a margin of 1 over
both its row and its column sums: ``|a_ii| >= 1 + sum_{j != i} |a_ij|`` and
``|a_ii| >= 1 + sum_{j != i} |a_ji|``.  Then ``||A^{-1}||_inf <= 1`` and ``||A^{-1}||_1 <= 1``
(Varah 1975, "A lower bound for the smallest singular value of a matrix"), hence
``||A^{-1}||_2 <= 1``: ``sigma_min(A) >= 1``.  For the low-rank and semiseparable strategies
the part off the tridiagonal (or off the diagonal) is scaled to Frobenius norm at most 1/2,
so that ``sigma_min(A) >= 1/2``.  This is a statement about the operator itself (``z = 0``);
a shift ``z`` near its spectrum can still make ``A - z I`` ill-conditioned.
``well_conditioned=False`` draws the entries as they come, with no bound on the condition
number (for tests of error paths and of the pivot guard).

>>> from hypothesis import given, settings
>>> from semisep.testing.strategies import tridiagonals
>>> @settings(max_examples=5, derandomize=True)
... @given(tridiagonals(n=4, batch_shape=(2,)))
... def check(T):
...     assert T.shape == (2, 4, 4)
>>> check()
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.strategies import SearchStrategy

__all__ = [
    "tridiagonals",
    "complex_shifts",
    "tridiagonal_plus_low_ranks",
    "semiseparables",
    "DTYPES",
    "BATCH_SHAPES",
]

#: The dtypes semisep supports.
DTYPES = (np.float32, np.float64, np.complex64, np.complex128)
#: A small set of batch shapes that exercises broadcasting corner cases (none, size 1, 2-d).
BATCH_SHAPES = ((), (1,), (3,), (2, 1), (2, 3))


def _strategy(x: Any) -> SearchStrategy[Any]:
    return x if isinstance(x, SearchStrategy) else st.just(x)


def _default(x: Any, default: SearchStrategy[Any]) -> SearchStrategy[Any]:
    return default if x is None else _strategy(x)


def _entries(draw: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An array of ``shape`` with real (and imaginary) parts in [-1, 1], in ``dtype``."""
    dt = np.dtype(dtype)
    width: Literal[32, 64] = 32 if dt in (np.dtype(np.float32), np.dtype(np.complex64)) else 64
    elems = st.floats(-1.0, 1.0, width=width, allow_subnormal=False)
    real_dt = np.float32 if width == 32 else np.float64
    re = draw(hnp.arrays(real_dt, shape, elements=elems))
    if dt.kind == "c":
        im = draw(hnp.arrays(real_dt, shape, elements=elems))
        return (re.astype(dt) + 1j * im.astype(dt)).astype(dt)
    return re.astype(dt)


def _unit(x: np.ndarray) -> np.ndarray:
    """``x/|x|``, and 1 where ``x == 0``."""
    a = np.abs(x)
    return np.where(a == 0, 1.0, x / np.where(a == 0, 1.0, a))


def _to_backend(arrays: list[Any], backend: str) -> list[Any]:
    if backend == "numpy":
        return arrays
    if backend == "torch":
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("backend='torch' needs torch: pip install semisep[torch]") from exc
        return [None if a is None else torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")


def _draw_tridiagonal_arrays(draw: Any, n: int, batch: tuple[int, ...], dtype: Any,
                             symmetric: bool, well_conditioned: bool, margin: float = 1.0):
    d = _entries(draw, batch + (n,), dtype)
    lo = _entries(draw, batch + (n - 1,), dtype)
    up = None if symmetric else _entries(draw, batch + (n - 1,), dtype)
    if well_conditioned:
        up_ = lo if up is None else up
        rowsum = np.zeros(batch + (n,), np.finfo(np.dtype(dtype)).dtype)
        colsum = np.zeros_like(rowsum)
        if n > 1:
            # row i holds lower[i-1] and upper[i]; column i holds upper[i-1] and lower[i]
            rowsum[..., 1:] += np.abs(lo)
            rowsum[..., :-1] += np.abs(up_)
            colsum[..., 1:] += np.abs(up_)
            colsum[..., :-1] += np.abs(lo)
        dom = np.maximum(rowsum, colsum) + margin
        d = (_unit(d) * (np.abs(d) + dom)).astype(dtype)
    return d, lo, up


def _require(name: str, caller: str) -> Any:
    import semisep

    cls = getattr(semisep, name, None)
    if cls is None:
        raise ImportError(
            f"semisep.testing.strategies.{caller}() builds semisep.{name}, which this semisep "
            f"({semisep.__version__}) does not provide"
        )
    return cls


@st.composite
def tridiagonals(
    draw: Any,
    n: Any = None,
    batch_shape: Any = None,
    dtype: Any = None,
    symmetric: Any = None,
    backend: str = "numpy",
    well_conditioned: bool = True,
) -> Any:
    """A :class:`semisep.Tridiagonal`.

    Every parameter except ``backend`` and ``well_conditioned`` is a value or a strategy.

    Parameters
    ----------
    n : int, default ``integers(1, 16)``
    batch_shape : tuple, default one of :data:`BATCH_SHAPES`
    dtype : default one of :data:`DTYPES`
    symmetric : bool, default ``booleans()``
        True: ``upper=None`` (symmetric storage; complex symmetric for complex dtypes).
    backend : "numpy" | "torch"
        The array type handed to ``Tridiagonal`` (torch: CPU tensors).
    well_conditioned : bool, default True
        Strict diagonal dominance by a margin of 1 over both the row and the column sums, so
        ``||T^{-1}||_1, ||T^{-1}||_inf <= 1``.
    """
    import semisep

    n_ = draw(_default(n, st.integers(1, 16)))
    batch = tuple(draw(_default(batch_shape, st.sampled_from(BATCH_SHAPES))))
    dt = draw(_default(dtype, st.sampled_from(DTYPES)))
    sym = draw(_default(symmetric, st.booleans()))
    d, lo, up = _draw_tridiagonal_arrays(draw, n_, batch, dt, sym, well_conditioned)
    d, lo, up = _to_backend([d, lo, up], backend)
    return semisep.Tridiagonal(d, lo, up)


@st.composite
def complex_shifts(
    draw: Any,
    on_axis: bool = True,
    near_axis: bool = True,
    max_magnitude: float = 3.0,
    min_imag: float = 0.1,
) -> complex | float:
    """A shift ``z``: a Python ``complex`` (or ``float`` on the real axis).

    Always possible: ``|Re z| <= max_magnitude`` and ``min_imag <= |Im z| <= max_magnitude``.
    ``near_axis=True`` adds ``Re z +- i * {1e-3, 1e-6, 1e-9}`` (where resolvents are large and
    a wrong sign convention or an overflow shows); ``on_axis=True`` adds real ``z`` (a float;
    a real ``T - z I`` may then be singular or nearly so, and pivots may need the guard).
    """
    re = st.floats(-max_magnitude, max_magnitude, allow_nan=False, allow_infinity=False)
    im = st.floats(min_imag, max_magnitude, allow_nan=False, allow_infinity=False)
    sign = st.sampled_from([1.0, -1.0])
    def make(x: float, y: float, s: float) -> complex:
        return complex(x, s * y)

    options: list[SearchStrategy[Any]] = [st.builds(make, re, im, sign)]
    if near_axis:
        tiny = st.sampled_from([1e-3, 1e-6, 1e-9])
        options.append(st.builds(make, re, tiny, sign))
    if on_axis:
        options.append(re)
    return draw(st.one_of(options))


@st.composite
def tridiagonal_plus_low_ranks(
    draw: Any,
    n: Any = None,
    rank: Any = None,
    batch_shape: Any = None,
    dtype: Any = None,
    symmetric: Any = None,
    backend: str = "numpy",
    well_conditioned: bool = True,
) -> Any:
    """A ``semisep.TridiagonalPlusLowRank(T, U, V)``, ``H = T + U V^T``, U, V: (..., N, r).

    ``rank`` defaults to ``integers(0, 4)`` (capped at N).  ``symmetric=True`` gives a
    symmetric ``T`` and ``V = U`` (so ``H`` is symmetric).  ``well_conditioned=True``: ``T`` as
    in :func:`tridiagonals` (``sigma_min(T) >= 1``) and ``U, V`` scaled so that
    ``||U||_F ||V||_F <= 1/2`` per batch element, hence ``sigma_min(H) >= 1/2``.

    Raises ImportError when called (not when imported) if this semisep has no
    ``TridiagonalPlusLowRank``.
    """
    import semisep

    cls = _require("TridiagonalPlusLowRank", "tridiagonal_plus_low_ranks")
    n_ = draw(_default(n, st.integers(1, 16)))
    r = min(draw(_default(rank, st.integers(0, 4))), n_)
    batch = tuple(draw(_default(batch_shape, st.sampled_from(BATCH_SHAPES))))
    dt = draw(_default(dtype, st.sampled_from(DTYPES)))
    sym = draw(_default(symmetric, st.booleans()))
    d, lo, up = _draw_tridiagonal_arrays(draw, n_, batch, dt, sym, well_conditioned)
    U = _entries(draw, batch + (n_, r), dt)
    V = U if sym else _entries(draw, batch + (n_, r), dt)
    if well_conditioned and r:
        nu = np.linalg.norm(U, axis=(-2, -1))
        nv = np.linalg.norm(V, axis=(-2, -1))
        s = np.sqrt(np.minimum(1.0, 0.5 / np.maximum(nu * nv, 1e-300)))[..., None, None]
        U = (U * s).astype(dt)
        V = U if sym else (V * s).astype(dt)
    d, lo, up, U, V = _to_backend([d, lo, up, U, V], backend)
    return cls(semisep.Tridiagonal(d, lo, up), U, V)


@st.composite
def semiseparables(
    draw: Any,
    n: Any = None,
    rank: Any = None,
    batch_shape: Any = None,
    dtype: Any = None,
    symmetric: Any = None,
    backend: str = "numpy",
    well_conditioned: bool = True,
) -> Any:
    """A ``semisep.Semiseparable(diag, P, Q, R, S)``,
    ``A = tril(P Q^T, -1) + diag(d) + triu(R S^T, 1)``, generators (..., N, r).

    ``symmetric=True`` passes ``R=None, S=None`` (the constructor's symmetric form,
    ``triu(Q P^T, 1)`` above the diagonal).  ``well_conditioned=True``: ``|d_i| >= 1`` and the
    generators scaled so that ``||P||_F ||Q||_F + ||R||_F ||S||_F <= 1/2``; since
    ``||tril(M, -1)||_2 <= ||M||_F``, ``sigma_min(A) >= 1/2``.

    Raises ImportError when called (not when imported) if this semisep has no
    ``Semiseparable``.
    """
    cls = _require("Semiseparable", "semiseparables")
    n_ = draw(_default(n, st.integers(1, 16)))
    r = draw(_default(rank, st.integers(1, 3)))
    batch = tuple(draw(_default(batch_shape, st.sampled_from(BATCH_SHAPES))))
    dt = draw(_default(dtype, st.sampled_from(DTYPES)))
    sym = draw(_default(symmetric, st.booleans()))
    d = _entries(draw, batch + (n_,), dt)
    P = _entries(draw, batch + (n_, r), dt)
    Q = _entries(draw, batch + (n_, r), dt)
    R = None if sym else _entries(draw, batch + (n_, r), dt)
    S = None if sym else _entries(draw, batch + (n_, r), dt)
    if well_conditioned:
        d = (_unit(d) * (np.abs(d) + 1.0)).astype(dt)

        def fro(x: np.ndarray) -> np.ndarray:
            return np.linalg.norm(x, axis=(-2, -1))

        if R is None or S is None:  # symmetric: triu(Q P^T, 1) above the diagonal
            total = 2 * fro(P) * fro(Q)
        else:
            total = fro(P) * fro(Q) + fro(R) * fro(S)
        s = np.sqrt(np.minimum(1.0, 0.5 / np.maximum(total, 1e-300)))[..., None, None]
        P, Q = (P * s).astype(dt), (Q * s).astype(dt)
        if R is not None and S is not None:
            R, S = (R * s).astype(dt), (S * s).astype(dt)
    d, P, Q, R, S = _to_backend([d, P, Q, R, S], backend)
    return cls(d, P, Q, R, S)
