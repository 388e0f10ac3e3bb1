"""Sweeps over many shifts and realisations on Dask arrays (needs ``semisep[dask]``).

The operators themselves take dask arrays directly (``Tridiagonal(diag, lower)`` with
``dask.array`` inputs returns lazy results, see :class:`semisep.backends.dask.DaskBackend`);
this module adds the local density of states over an energy grid, reduced without forming the
``(n_E, batch, N)`` array anywhere.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import ShapeError
from .tridiagonal import Tridiagonal

__all__ = ["ldos"]

_AVERAGES = (None, "realisations", "sites", "all")


def ldos(T: Tridiagonal, energies: Any, eta: float, *, average: str | None = None,
         energies_per_task: int = 8) -> Any:
    """Local density of states ``rho_i(E) = -Im [(E + i eta - T)^{-1}]_ii / pi``, lazily.

    With semisep's ``G = (T - z I)^{-1}`` (the sign opposite to the physicist's retarded
    Green's function) this is ``Im G_ii(E + i eta) / pi``.

    Parameters
    ----------
    T : Tridiagonal, batch shape ``R`` (the realisations), N sites
        On dask arrays (NumPy arrays are wrapped, chunked along N as they come: one chunk).
    energies : array (n_E,), NumPy or dask
        The energy grid; ``z = E + i eta`` broadcasts against ``T``'s batch.
    eta : float
        The broadening, ``eta > 0`` for Hermitian ``T`` (then ``rho >= 0`` and
        ``|G_ii| <= 1/eta``).
    average : None | "realisations" | "sites" | "all"
        ``None``: ``rho`` itself, shape ``(n_E,) + R + (N,)``; ``"realisations"``: the mean over
        the batch axes, ``(n_E, N)``; ``"sites"``: the mean over the sites (the DOS per
        realisation), ``(n_E,) + R``; ``"all"``: both, ``(n_E,)``.  The means are dask tree
        reductions of the per-chunk results, so no task holds more than one block of ``rho``.
    energies_per_task : int
        Energies per block (the block of a task is ``energies_per_task * prod(R)`` rows by one
        chunk of N).

    Returns
    -------
    dask.array.Array (real)
    """
    import dask.array as da

    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
    if not eta > 0:
        raise ValueError(f"eta must be positive, got {eta!r}")
    if T.backend.name != "dask":
        T = Tridiagonal(da.from_array(T.diag), da.from_array(T.lower),
                        None if T.upper is None else da.from_array(T.upper), check_finite=False)
    E = energies if isinstance(energies, da.Array) else da.from_array(energies, chunks=energies_per_task)
    if E.ndim != 1:
        raise ShapeError(f"energies must have shape (n_E,), got {tuple(E.shape)}")
    nb = len(T.batch_shape)
    z = (E + 1j * eta).reshape(E.shape + (1,) * nb)
    rho = T.resolvent_diagonal(z, check_finite=False).imag / math.pi  # (n_E,) + R + (N,)
    batch_axes = tuple(range(1, 1 + nb))
    if average == "realisations":
        return rho.mean(axis=batch_axes) if nb else rho
    if average == "sites":
        return rho.mean(axis=-1)
    if average == "all":
        return rho.mean(axis=batch_axes + (rho.ndim - 1,))
    return rho
