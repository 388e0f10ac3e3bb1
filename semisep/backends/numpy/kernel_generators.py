"""Compiled (numba) assembly of the generators of the elementary kernels of
:mod:`semisep.kernels`.

For float64 NumPy coordinates and scalar parameters, a kernel evaluates its elementwise fields
(``exp``, ``cos``, ``sin`` of the steps, vectorised by NumPy) and this module writes, in one
pass over the steps, its transitions ``a_i = Phi(dt_i)`` (m x m, in place into a possibly
strided ``(M, m, m)`` view: the kernel's diagonal block of a sum's transitions) and output
vectors ``p_i = Phi(dt_i)^T u`` (``(M, m)``), with the same floating-point operations as the
NumPy assembly in :mod:`semisep.kernels._terms` (bit for bit; the kernels' docstrings give the
mathematics).  That NumPy assembly is the plain twin the tests compare with.

``fill(kind, fields, sig, out, alpha)`` is the entry point; ``kind`` is one of
``"matern32"``, ``"matern52"``, ``"cosine"``, ``"sho"``, ``"celerite"`` (the order-1 ``Exp``
has nothing to assemble).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from .._numba import cache_option
from . import quasiseparable_rows as _buf

__all__ = ["fill", "ORDERS"]

_JIT = dict(nogil=True, cache=cache_option(__file__), fastmath=False, error_model="numpy")

#: the state dimension of each kind
ORDERS = {"matern32": 2, "matern52": 3, "cosine": 2, "sho": 2, "celerite": 2}


@numba.njit(**_JIT)
def _matern32(e, y, sig, a, p):
    for m in range(e.shape[0]):
        ey = e[m] * y[m]
        a[m, 0, 0] = e[m] + ey
        a[m, 0, 1] = ey
        a[m, 1, 0] = -ey
        a[m, 1, 1] = e[m] - ey
        p[m, 0] = sig * (e[m] + ey)
        p[m, 1] = sig * ey


@numba.njit(**_JIT)
def _matern52(e, y, sig, M1, M2, a, p):
    for m in range(e.shape[0]):
        ym = y[m]
        h = 0.5 * ym * ym
        for r in range(3):
            for c in range(3):
                one = 1.0 if r == c else 0.0
                a[m, r, c] = e[m] * (one + ym * M1[r, c] + h * M2[r, c])
        for c in range(3):
            p[m, c] = sig * a[m, 0, c]


@numba.njit(**_JIT)
def _rotation(ec, es, alpha, sig, a, p):
    """``[[ec + alpha es, es], [-es, ec - alpha es]]`` (SHO) or, with ``alpha = 0`` and ``es``
    negated, the scaled rotation ``[[ec, -es'], [es', ec]]`` (Celerite, Cosine)."""
    for m in range(ec.shape[0]):
        aes = alpha * es[m]
        a[m, 0, 0] = ec[m] + aes
        a[m, 0, 1] = es[m]
        a[m, 1, 0] = -es[m]
        a[m, 1, 1] = ec[m] - aes
        p[m, 0] = sig * (ec[m] + aes)
        p[m, 1] = sig * es[m]


@numba.njit(**_JIT)
def _scaled_rotation(e, c, s, sig, a, p):
    """``[[e c, -e s], [e s, e c]]``, ``p = sig (e c, -e s)`` (``e`` empty: ``e = 1``)."""
    one = e.shape[0] == 0
    for m in range(c.shape[0]):
        ec = c[m] if one else e[m] * c[m]
        es = s[m] if one else e[m] * s[m]
        a[m, 0, 0] = ec
        a[m, 0, 1] = -es
        a[m, 1, 0] = es
        a[m, 1, 1] = ec
        p[m, 0] = sig * ec
        p[m, 1] = sig * -es


# Matern-5/2's constant matrices (the class's _M52 and its square)
_M52 = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [-1.0, -3.0, -2.0]])
_M52_SQ = _M52 @ _M52
_EMPTY = np.empty(0)


def fill(kind: str, fields: tuple[np.ndarray, ...], sig: float, out: Any = None,
         alpha: float = 0.0) -> tuple[np.ndarray, np.ndarray] | None:
    """The transitions ``a (..., N, m, m)`` and output vectors ``p (..., N, m)`` of the
    elementary kernel ``kind`` from its elementwise fields (float64 arrays of the steps' shape
    ``(..., N)``, computed by the caller with NumPy), or None where the compiled path does not
    apply (then the caller assembles them with NumPy).

    ``fields``: ``matern32, matern52: (e, y)`` (``e = exp(-y)``); ``sho: (ec, es)`` with
    ``alpha = 1/(2 quality)``; ``celerite: (e, cos, sin)``; ``cosine: (cos, sin)``.  ``sig``:
    the factor of ``p = sig a^T e_0`` (``sigma``; 1 for Celerite).  ``out``: a float64
    ``(..., N, m, m)`` array or view (e.g. a diagonal block of a sum's transitions) to write
    ``a`` into; every entry is written.
    """
    m = ORDERS[kind]
    shape = tuple(fields[0].shape)
    if any(f.dtype != np.float64 or tuple(f.shape) != shape for f in fields):
        return None
    if out is None:
        out = _buf.empty(shape + (m, m), np.float64)  # large ones recycled
    elif out.dtype != np.float64 or tuple(out.shape) != shape + (m, m):
        return None
    a3 = out.reshape((-1, m, m))
    if a3.__array_interface__["data"][0] != out.__array_interface__["data"][0]:
        return None  # the reshape copied: writes would not reach ``out``
    flat = [np.ascontiguousarray(f).reshape(-1) for f in fields]
    p = _buf.empty(shape + (m,), np.float64)
    p2 = p.reshape((-1, m))
    if kind == "matern32":
        _matern32(flat[0], flat[1], sig, a3, p2)
    elif kind == "matern52":
        _matern52(flat[0], flat[1], sig, _M52, _M52_SQ, a3, p2)
    elif kind == "sho":
        _rotation(flat[0], flat[1], alpha, sig, a3, p2)
    elif kind == "celerite":
        _scaled_rotation(flat[0], flat[1], flat[2], sig, a3, p2)
    elif kind == "cosine":
        _scaled_rotation(_EMPTY, flat[0], flat[1], sig, a3, p2)
    else:
        raise ValueError(f"unknown kernel kind {kind!r}")
    return out, p
