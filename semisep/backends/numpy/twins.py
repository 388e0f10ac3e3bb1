"""Plain NumPy twins of the compiled kernels: a Python loop over ``N``, vectorised over the
batch, written independently of the kernels' scalar helpers; tests compare every compiled kernel
with its twin, and ``method="reference"`` runs them.
"""

from __future__ import annotations

import numpy as np

from .. import SINGULAR_FACTOR
from .pivoted import _logdet_from_phase
from .woodbury import _WOODBURY_GROWTH


# --------------------------------------------------------------------------------------------
# plain NumPy twins (loop over N, vectorised over the batch)
# --------------------------------------------------------------------------------------------
def _guard_ref(d, pivmin):
    a = np.abs(d)
    small = a < pivmin
    if not small.any():
        return d, small
    unit = np.where(a == 0, 1.0, d / np.where(a == 0, 1.0, a))
    if not np.iscomplexobj(d):
        unit = np.where(a == 0, 1.0, np.sign(d))
    return np.where(small, pivmin * unit, d).astype(d.dtype), small


def left_pivots_ref(alpha, beta, pivmin):
    B, N = alpha.shape
    gL = np.empty_like(alpha)
    guarded = np.zeros(B, np.int64)
    singular = np.zeros(B, bool)
    gl = None
    for i in range(N):
        d = alpha[:, i] if i == 0 else alpha[:, i] - beta[:, i - 1] * gl
        if i == N - 1:
            singular |= np.abs(d) < SINGULAR_FACTOR * pivmin
        d, small = _guard_ref(d, pivmin)
        guarded += small
        if i < N - 1:
            singular |= small & (np.abs(beta[:, i]) <= pivmin * pivmin)
        gl = 1.0 / d
        gL[:, i] = gl
    return gL, guarded, singular


def right_pivots_ref(alpha, beta, pivmin):
    B, N = alpha.shape
    gR = np.empty_like(alpha)
    guarded = np.zeros(B, np.int64)
    gr = None
    for i in range(N - 1, -1, -1):
        d = alpha[:, i] if i == N - 1 else alpha[:, i] - beta[:, i] * gr
        d, small = _guard_ref(d, pivmin)
        guarded += small
        gr = 1.0 / d
        gR[:, i] = gr
    return gR, guarded


def resolvent_diagonal_ref(alpha, beta, pivmin):
    gL, gl_guarded, _ = left_pivots_ref(alpha, beta, pivmin)
    gR, gr_guarded = right_pivots_ref(alpha, beta, pivmin)
    gam = alpha.copy()
    gam[:, 1:] -= beta * gL[:, :-1]
    gam[:, :-1] -= beta * gR[:, 1:]
    singular = (np.abs(gam) < SINGULAR_FACTOR * pivmin[:, None]).any(axis=1)
    return 1.0 / gam, gl_guarded + gr_guarded, singular


def logdet_ref(alpha, beta, pivmin):
    """Twin of :func:`logdet_kernel`: the pivoted elimination of :func:`solve_ref` (no
    right-hand side) on the balanced similar matrix (lower ``m = sqrt(|beta|)``, upper
    ``beta / m``, as the kernel), ``log det = sum log U_ii + i pi (exchanges)``."""
    B, N = alpha.shape
    m = np.sqrt(_cabs1_ref(beta))
    safe = np.where(m == 0, 1.0, m)
    b = (beta / safe).astype(alpha.dtype)
    c = m.astype(alpha.dtype)
    u, swaps = _gtsv_factor_ref(alpha, b, c)
    singular = (_cabs1_ref(u) < SINGULAR_FACTOR * np.asarray(pivmin)[:, None]).any(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        logabs = np.log(np.abs(u)).sum(axis=1)
        phase = np.ones(B, alpha.dtype)  # real stays real (a signed zero would flip the angle)
        for i in range(N):  # unit numbers multiplied as the kernel's running product
            phase = phase * (u[:, i] / np.abs(u[:, i]))
            phase = phase / np.abs(phase)
    phase = np.where(swaps % 2 == 1, -phase, phase)
    return _logdet_from_phase(logabs, phase), np.zeros(B, np.int64), singular


def _gtsv_factor_ref(alpha, upper, lower):
    """U's diagonal (B, N) and the number of row exchanges (B,) of the pivoted elimination
    (:func:`solve_ref`'s, without the right-hand side)."""
    B, N = alpha.shape
    u = np.zeros((B, N), alpha.dtype)
    swaps = np.zeros(B, np.int64)
    di = alpha[:, 0].copy()
    dui = upper[:, 0] if N > 1 else np.zeros(B, alpha.dtype)
    for i in range(N - 1):
        dl, dn = lower[:, i], alpha[:, i + 1]
        dun = upper[:, i + 1] if i < N - 2 else np.zeros(B, alpha.dtype)
        swap = _cabs1_ref(di) < _cabs1_ref(dl)
        piv = np.where(swap, dl, di)
        other = np.where(swap, di, dl)
        with np.errstate(divide="ignore", invalid="ignore"):
            fact = np.where(other == 0, 0, other / np.where(piv == 0, 1, piv))
        u[:, i] = piv
        di, dui = np.where(swap, dui - fact * dn, dn - fact * dui), np.where(swap, -fact * dun, dun)
        swaps += swap
    u[:, N - 1] = di
    return u, swaps


def _cabs1_ref(x):
    return np.abs(x.real) + np.abs(x.imag) if np.iscomplexobj(x) else np.abs(x)


def solve_ref(alpha, upper, lower, f, pivmin):
    """Twin of :func:`solve_kernel`: Gaussian elimination with partial pivoting (LAPACK
    ``?gtsv``), written as a loop over N vectorised over the batch, the row exchanges as
    ``np.where``; U's diagonal and two superdiagonals stored, then back substitution."""
    B, N = alpha.shape
    dt = np.result_type(alpha, upper, lower, f)
    x = np.array(f, dtype=dt, copy=True)
    u = np.zeros((B, N), dt)
    u1 = np.zeros((B, N), dt)
    u2 = np.zeros((B, N), dt)
    q = SINGULAR_FACTOR * np.asarray(pivmin)
    di = alpha[:, 0].astype(dt)
    dui = upper[:, 0].astype(dt) if N > 1 else np.zeros(B, dt)
    for i in range(N - 1):
        dl = lower[:, i].astype(dt)
        dn = alpha[:, i + 1].astype(dt)
        dun = upper[:, i + 1].astype(dt) if i < N - 2 else np.zeros(B, dt)
        swap = _cabs1_ref(di) < _cabs1_ref(dl)
        piv = np.where(swap, dl, di)
        other = np.where(swap, di, dl)
        with np.errstate(divide="ignore", invalid="ignore"):
            fact = np.where(other == 0, 0, other / np.where(piv == 0, 1, piv))
        u[:, i] = piv
        u1[:, i] = np.where(swap, dn, dui)
        u2[:, i] = np.where(swap, dun, 0)
        new_d = np.where(swap, dui - fact * dn, dn - fact * dui)
        new_du = np.where(swap, -fact * dun, dun)
        xi, xn = x[:, i].copy(), x[:, i + 1].copy()
        sw = swap[:, None]
        x[:, i] = np.where(sw, xn, xi)
        x[:, i + 1] = np.where(sw, xi - fact[:, None] * xn, xn - fact[:, None] * xi)
        di, dui = new_d, new_du
    u[:, N - 1] = di
    singular = (_cabs1_ref(u) < q[:, None]).any(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(N - 1, -1, -1):
            t = x[:, i]
            if i + 1 < N:
                t = t - u1[:, i][:, None] * x[:, i + 1]
            if i + 2 < N:
                t = t - u2[:, i][:, None] * x[:, i + 2]
            x[:, i] = t / u[:, i][:, None]
    return x, np.zeros(B, np.int64), singular


def woodbury_forward_ref(alpha, upper, lower, U, V, pivmin, shift=None):
    """Twin of :func:`woodbury_forward_kernel` (pivots from :func:`left_pivots_ref`):
    ``(X, K - I, gL, guarded, singular)`` with ``X = A^{-1} U`` as a (B, N, r) array."""
    if shift is not None:
        alpha = alpha - np.asarray(shift)[:, None]
    upper, lower = np.asarray(upper, alpha.dtype), np.asarray(lower, alpha.dtype)
    B, N = alpha.shape
    gL, guarded, singular = left_pivots_ref(alpha, upper * lower, pivmin)
    if N > 1:  # element growth counts with the guarded pivots (see _forward_sweep)
        cap = np.asarray(pivmin) * (_WOODBURY_GROWTH / np.finfo(alpha.dtype).eps)
        guarded = guarded + (_cabs1_ref((lower * gL[:, :-1]) * upper) > cap[:, None]).sum(axis=1)
    X = np.array(np.broadcast_to(U, (B,) + U.shape[-2:]), dtype=alpha.dtype)
    for i in range(1, N):
        X[:, i] -= (lower[:, i - 1] * gL[:, i - 1])[:, None] * X[:, i - 1]
    X[:, N - 1] *= gL[:, N - 1][:, None]
    for i in range(N - 2, -1, -1):
        X[:, i] = gL[:, i][:, None] * (X[:, i] - upper[:, i][:, None] * X[:, i + 1])
    KmI = np.swapaxes(np.broadcast_to(V, (B,) + V.shape[-2:]), -1, -2) @ X
    return X, KmI.astype(alpha.dtype), gL, guarded, singular


def woodbury_correction_ref(gL, upper, lower, X, V, Kinv):
    """Twin of :func:`woodbury_correction_kernel`: ``W = A^{-T} V K^{-T}`` stored, then
    ``sum_k X_ik W_ik``."""
    N = gL.shape[1]
    upper, lower = np.asarray(upper, gL.dtype), np.asarray(lower, gL.dtype)
    P = np.array(np.broadcast_to(V, X.shape) @ np.swapaxes(Kinv, -1, -2), dtype=gL.dtype)
    P[:, 0] *= gL[:, 0][:, None]
    for i in range(1, N):
        P[:, i] = gL[:, i][:, None] * (P[:, i] - upper[:, i - 1][:, None] * P[:, i - 1])
    for i in range(N - 2, -1, -1):
        P[:, i] -= (gL[:, i] * lower[:, i])[:, None] * P[:, i + 1]
    return (X * P).sum(axis=-1)

