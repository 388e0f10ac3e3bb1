"""Testing utilities for semisep and for code built on it.

* :mod:`semisep.testing.asserts` -- :func:`assert_operator_close`,
  :func:`assert_allclose_relative` (NumPy only; imported eagerly);
* :mod:`semisep.testing.strategies` -- hypothesis strategies (:func:`tridiagonals`,
  :func:`complex_shifts`, :func:`tridiagonal_plus_low_ranks`, :func:`semiseparables`); needs
  ``hypothesis``;
* :mod:`semisep.testing.conformance` -- :class:`OperatorConformance`, the test mixin every
  operator type passes; needs ``pytest``.

The optional dependencies are imported on first use of a name that needs them, so
``import semisep.testing`` works with NumPy alone.
"""

from __future__ import annotations

from typing import Any

from .asserts import assert_allclose_relative, assert_operator_close, default_rtol

__all__ = [
    "assert_allclose_relative",
    "assert_operator_close",
    "default_rtol",
    "OperatorConformance",
    "tridiagonals",
    "complex_shifts",
    "tridiagonal_plus_low_ranks",
    "semiseparables",
]

_LAZY = {
    "OperatorConformance": "conformance",
    "tridiagonals": "strategies",
    "complex_shifts": "strategies",
    "tridiagonal_plus_low_ranks": "strategies",
    "semiseparables": "strategies",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
