"""semisep: exact O(N) resolvent diagonals, solves and log-determinants of tridiagonal and
semiseparable operators, on NumPy and torch (CPU and CUDA), with exact O(N)-memory gradients.

>>> import numpy as np, semisep as ss
>>> T = ss.Tridiagonal(np.full(8, -2.0), np.ones(7))      # the discrete Laplacian
>>> G = ss.resolvent_diagonal(T, 1j)                       # diag((T - 1j I)^{-1}), O(N)
>>> bool(np.all(np.abs(G) <= 1.0))                         # |G_ii| <= 1/|Im z| (T Hermitian)
True
"""

from . import kernels
from ._algebra import ScaledIdentity, identity
from .errors import (
    BackendError,
    IllConditionedWarning,
    NonFiniteError,
    SemisepError,
    ShapeError,
    SingularMatrixError,
)
from .factorize import FactorizationHistory, FactorizationReport, check_factorization, factorize
from .lowrank import TridiagonalPlusLowRank, WoodburyInfo
from .quasiseparable import Quasiseparable, QuasiseparableFactorization
from .semiseparable import Semiseparable
from .tridiagonal import PivotInfo, Tridiagonal, logdet, resolvent_diagonal, solve

__version__ = "0.1.0"

#: subpackages reachable as attributes of the package, imported on first access
_LAZY_SUBMODULES = ("reference", "backends", "testing", "cost", "nn")


def __getattr__(name: str):
    """``semisep.reference``, ``semisep.backends``, ``semisep.testing``, ``semisep.cost`` and
    ``semisep.nn`` (needs torch) are imported on first access."""
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


def test(device=None, profile="quick", dtype=None, extra_args=(), seed=None):
    """Run semisep's shipped property suite on this machine; see :func:`semisep._runner.test`."""
    from ._runner import test as _test

    return _test(device=device, profile=profile, dtype=dtype, extra_args=extra_args, seed=seed)

__all__ = [
    "Tridiagonal",
    "PivotInfo",
    "TridiagonalPlusLowRank",
    "WoodburyInfo",
    "Semiseparable",
    "Quasiseparable",
    "QuasiseparableFactorization",
    "factorize",
    "check_factorization",
    "FactorizationReport",
    "FactorizationHistory",
    "resolvent_diagonal",
    "solve",
    "logdet",
    "identity",
    "ScaledIdentity",
    "SemisepError",
    "ShapeError",
    "NonFiniteError",
    "SingularMatrixError",
    "BackendError",
    "IllConditionedWarning",
    "kernels",
    "test",
    "__version__",
]
