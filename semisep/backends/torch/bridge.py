"""The one bridge from torch tensors to the NumPy backend's compiled (numba) kernels.

CPU tensors are handed to the kernels as zero-copy NumPy views (conjugate and negative bits
resolved, copied only where not strided along N), and results come back with
``torch.from_numpy`` (sharing memory).  Every call from the torch backend into
:mod:`semisep.backends.numpy` goes through this module.
"""

from __future__ import annotations

import numpy as np
import torch

from .chunks import _real_dtype


def _host_view(t: torch.Tensor) -> np.ndarray | None:
    """A NumPy view of a plain CPU tensor's values (detached; a negated view resolved), or
    None where there is none: a CUDA tensor, or a torch.func wrapper without storage (those
    keep torch's own ops, and torch's own error for the autograd Functions)."""
    if t.device.type != "cpu":
        return None
    try:
        return t.detach().resolve_neg().numpy()
    except (RuntimeError, TypeError):
        return None


def _np_view(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor (conjugation, negation resolved; copied if not strided along N)."""
    t = t.detach().resolve_conj().resolve_neg()
    if t.dim() and t.shape[-1] > 1 and t.stride(-1) != 1:
        t = t.contiguous()
    return t.numpy()


def _pivots_sequential_numpy(alpha: torch.Tensor, beta: torch.Tensor, pivmin: torch.Tensor, right: bool):
    """LU (or UL) pivots from the compiled numpy kernels, zero-copy on CPU tensors.

    Returns ``(g, guarded_count)``; the numpy kernels do not expose the per-pivot guard mask."""
    from .. import numpy as npb

    fn = npb.right_pivots if right else npb.left_pivots
    a = alpha.detach().resolve_conj().resolve_neg().contiguous()
    b = beta.detach().resolve_conj().resolve_neg().contiguous()
    p = pivmin.detach().to(_real_dtype(alpha.dtype)).resolve_neg().contiguous()
    g, guarded = fn(a.numpy(), b.numpy(), p.numpy())
    return torch.from_numpy(np.asarray(g)), torch.from_numpy(np.asarray(guarded, dtype=np.int64))


_NUMPY_OK: bool | None = None


def _numpy_kernels_available() -> bool:
    global _NUMPY_OK
    if _NUMPY_OK is None:
        try:
            from .. import numpy as npb  # noqa: F401

            _NUMPY_OK = all(hasattr(npb, n) for n in ("left_pivots", "right_pivots", "NumpyBackend"))
        except Exception:  # numba or the module missing
            _NUMPY_OK = False
    return _NUMPY_OK


class _TorchWoodburySweeps:
    """The NumPy backend's Woodbury sweeps, with ``KmI``, ``guarded`` and ``singular`` as
    tensors (views of the same memory)."""

    __slots__ = ("inner", "KmI", "guarded", "singular")

    def __init__(self, inner):
        self.inner = inner
        self.KmI = torch.from_numpy(inner.KmI)
        self.guarded = torch.from_numpy(np.asarray(inner.guarded, dtype=np.int64))
        self.singular = torch.from_numpy(np.asarray(inner.singular, dtype=bool))


def _numpy_kernel(name: str, *tensors):
    """Run the numpy backend's kernel ``name`` on CPU tensors zero-copy; results as tensors."""
    from .. import get_backend

    nb = get_backend("numpy")
    args = [t.detach().resolve_conj().resolve_neg().contiguous().numpy() for t in tensors]
    res, guarded, singular = getattr(nb, name)(*args, method="auto")
    return (torch.from_numpy(np.asarray(res)), torch.from_numpy(np.asarray(guarded, dtype=np.int64)),
            torch.from_numpy(np.asarray(singular, dtype=bool)))



def numpy_backend():
    """The NumPy backend object (its kernels take NumPy arrays; see :func:`_np_view`)."""
    from .. import get_backend

    return get_backend("numpy")


def _as_tensor(x):
    return torch.from_numpy(np.asarray(x)) if isinstance(x, (np.ndarray, np.generic)) else x


def call_numpy(name: str, *args, **kwargs):
    """``semisep.backends.numpy.<name>(*args, **kwargs)`` with every tensor argument passed as a
    zero-copy NumPy view (:func:`_np_view`) and every array result returned as a tensor sharing
    its memory (a tuple of results stays a tuple)."""
    from .. import numpy as npb

    out = getattr(npb, name)(*(_np_view(a) if isinstance(a, torch.Tensor) else a for a in args), **kwargs)
    return tuple(_as_tensor(x) for x in out) if isinstance(out, tuple) else _as_tensor(out)
