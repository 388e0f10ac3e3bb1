"""Exception types of semisep.

Every error names the argument, the shapes or the index involved, so that a user can find
the bad input without a debugger.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SemisepError", "ShapeError", "NonFiniteError", "SingularMatrixError", "BackendError",
    "IllConditionedWarning",
]


class SemisepError(Exception):
    """Base class of every error semisep raises on purpose."""


class ShapeError(SemisepError, ValueError):
    """Arrays whose shapes do not fit together (the message names both shapes)."""


class NonFiniteError(SemisepError, ValueError):
    """An input holds NaN or inf while ``check_finite=True`` (the default, as in SciPy)."""


class SingularMatrixError(SemisepError, np.linalg.LinAlgError):
    """``op - z I`` is singular to working precision; a subclass of ``numpy.linalg.LinAlgError``."""


class BackendError(SemisepError, TypeError):
    """Arrays of different libraries mixed in one call, or no backend for an array type."""


class IllConditionedWarning(UserWarning):
    """A result was computed, but through a badly conditioned intermediate (e.g. the Woodbury
    capacitance matrix): expect to lose about ``log10(cond)`` significant digits."""
