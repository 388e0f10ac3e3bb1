"""Argument checks of the nn modules, and the seed (BK-Core) names they no longer take.

Every error names the argument; a seed-era name says what replaced it and where
(``docs/coming-from-bk-core.md`` lists them all).
"""

from __future__ import annotations

import math
from typing import Any

from .._validation import check_int
from ._diagnostics import Diagnostics  # the forward diagnostics (read lazily), kept importable here

__all__ = ["check_int", "check_shift", "check_positive", "reject_seed_kwargs", "SEED_NAMES",
           "Diagnostics"]

#: seed constructor arguments -> what replaced them (one line each)
SEED_NAMES = {
    "use_mourre": "removed: the seed's Mourre check returned a constant whatever its input; "
                  "semisep has no replacement (see docs/coming-from-bk-core.md)",
    "use_lap": "removed: the limiting-absorption shift is z itself (default 1j * epsilon); "
               "near-real z is handled exactly by the pivot guard and precision='auto'",
    "schatten_threshold": "removed: nothing is clipped; the Schatten norm is reported in "
                          "diagnostics['schatten_s2'] for you to act on",
    "num_experts": "removed: semisep has no mixture of experts; use one BirmanSchwingerCore per "
                   "expert in your own routing module",
    "rank": "renamed: the low-rank term's rank is semiseparable_rank=... (core.rank reads it)",
}


def reject_seed_kwargs(owner: str, kwargs: dict[str, Any]) -> None:
    """TypeError for leftover keyword arguments; a seed name says what replaced it."""
    if not kwargs:
        return
    name = next(iter(kwargs))
    if name in SEED_NAMES:
        raise TypeError(f"{owner}({name}=...) is a BK-Core argument that semisep does not take: "
                        f"{SEED_NAMES[name]}")
    raise TypeError(f"{owner}() got an unexpected keyword argument {name!r}")


def check_positive(name: str, value: Any, allow_zero: bool = False, allow_inf: bool = False) -> float:
    """``value`` as a float > 0 (>= 0 with ``allow_zero``; finite unless ``allow_inf``), else an
    error naming it."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}") from None
    if math.isnan(v) or (math.isinf(v) and not allow_inf) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} = {value!r} must be a {'' if allow_inf else 'finite '}number "
                         f"{'>=' if allow_zero else '>'} 0")
    return v


def check_shift(name: str, z: Any) -> Any:
    """A shift: a real/complex Python or NumPy scalar (returned as complex) or a tensor
    (returned as is); None, strings and non-finite values are errors naming ``name``."""
    import torch

    if isinstance(z, torch.Tensor):
        return z
    if z is None or isinstance(z, (str, bytes)):
        raise TypeError(f"{name} must be a real or complex number or a tensor, got {z!r}")
    try:
        c = complex(z)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"{name} must be a real or complex number or a tensor, "
                        f"got {type(z).__name__} {z!r}") from None
    if not (math.isfinite(c.real) and math.isfinite(c.imag)):
        raise ValueError(f"{name} = {z!r} must be finite")
    return c
