"""Dask backend: ``dask.array`` inputs in, lazy ``dask.array`` results out.

Chains are processed chunk by chunk where they live (see :class:`DaskBackend`); batch blocks
are independent.  Importing this package imports dask; ``semisep`` itself imports it only when
a dask array is met.
"""

from ._backend import DaskBackend

__all__ = ["DaskBackend"]
