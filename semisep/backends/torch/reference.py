"""Reference twins of the torch backend's kernels: plain sequential loops over N.

Written with out-of-place torch ops only, so that ordinary autograd differentiates through
them (to any order, and in forward mode): ``method="reference"`` runs them, and the tests use
them as the oracle for the chunked and compiled kernels.  They are deliberately written
differently from the fast kernels (e.g. :func:`_resolvent_ref_combine` uses the formula of
docs/mathematics.md, not :func:`semisep.backends.torch.forward._combine_resolvent`'s).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import SINGULAR_FACTOR
from .chunks import _cabs1, _real_dtype, _sgn1, _wrap_angle


def _pivots_ref(alpha: torch.Tensor, beta: torch.Tensor, pivmin: torch.Tensor):
    """Reference twin of :func:`_pivots_chunked`: a plain sequential loop over N.

    ``alpha (B, N)``, ``beta (B, N-1)``, ``pivmin (B,)``.  Returns ``(g, d, guarded_mask)``, each
    ``(B, N)``: the guarded LU pivots ``d_i`` and ``g_i = 1/d_i``.  Written with out-of-place
    torch ops only, so ordinary autograd can differentiate through it (the tests' oracle).
    """
    B, N = alpha.shape
    if N == 0:
        empty = alpha.new_zeros(B, 0)
        return empty, empty, torch.zeros(B, 0, dtype=torch.bool, device=alpha.device)
    pm = pivmin.to(_real_dtype(alpha.dtype))
    a_cols = alpha.unbind(1)
    b_cols = beta.unbind(1)
    ds, gs, masks = [], [], []
    g = None
    for i in range(N):
        d = a_cols[0] if i == 0 else torch.addcmul(a_cols[i], b_cols[i - 1], g, value=-1)
        small = d.abs() < pm
        if small.any():  # the guard: pivmin * d/|d|, pivmin where d == 0
            d = torch.where(small, pm * _sgn1(d), d)
        g = torch.reciprocal(d)
        ds.append(d)
        gs.append(g)
        masks.append(small)
    return torch.stack(gs, 1), torch.stack(ds, 1), torch.stack(masks, 1)


def _affine_scan_ref(m: torch.Tensor, f: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """Reference twin of :func:`_affine_scan_chunked`: a plain loop over N.

    ``m (B, N)``, ``f (B, N, k)``; ``y_i = m_i y_{i-1} + f_i`` with ``y_{-1} = 0`` (``reverse``:
    ``y_i = m_i y_{i+1} + f_i`` with ``y_N = 0``).  Returns ``y (B, N, k)``."""
    B, N, k = f.shape
    order = range(N - 1, -1, -1) if reverse else range(N)
    ys: list[Any] = [None] * N
    y = torch.zeros(B, k, dtype=torch.result_type(m, f), device=f.device)
    for i in order:
        y = m[:, i, None] * y + f[:, i]
        ys[i] = y
    return torch.stack(ys, 1) if N else f.new_zeros(B, 0, k)


def _gtsv_ref(alpha, upper, lower, f, pivmin):
    """``A x = f`` by Gaussian elimination with partial pivoting (LAPACK ``?gtsv``), a plain
    loop over N in out-of-place torch ops (the row exchanges as ``torch.where``), so ordinary
    autograd differentiates it; the reference twin of the numpy backend's ``_solve_row``.

    ``alpha (B, N)``, ``b, c (B, N-1)`` upper and lower, ``f (B, N, k)``, ``pivmin (B,)``.
    Returns ``(x, singular)``: singular where some ``|Re U_ii| + |Im U_ii| < SINGULAR_FACTOR *
    pivmin`` (``cond_2(A) > 1/(8 eps)``)."""
    U, U1, U2, swaps, rows = _gtsv_ref_factor(alpha, upper, lower, f)
    B, N = alpha.shape
    pm = pivmin.to(_real_dtype(alpha.dtype))
    singular = (_cabs1(U) < SINGULAR_FACTOR * pm[:, None]).any(dim=1)
    xs: list = [None] * N
    for i in range(N - 1, -1, -1):
        t = rows[i]
        if i + 1 < N:
            t = t - U1[:, i, None] * xs[i + 1]
        if i + 2 < N:
            t = t - U2[:, i, None] * xs[i + 2]
        xs[i] = t / U[:, i, None]
    return torch.stack(xs, dim=1), singular


def _gtsv_ref_factor(alpha, upper, lower, f=None):
    """``P A = L U`` with partial pivoting (LAPACK ``?gtsv``), out-of-place torch ops:
    ``(U_diag (B, N), U_1 (B, N), U_2 (B, N), swaps (B,) int64, rows)``, ``rows`` the N rows of
    ``L^{-1} P f`` ((B, k) each; None without ``f``)."""
    B, N = alpha.shape
    zero = alpha.new_zeros(B)
    di = alpha[:, 0]
    dui = upper[:, 0] if N > 1 else zero
    us, u1s, u2s = [], [], []
    swaps = torch.zeros(B, dtype=torch.int64, device=alpha.device)
    rows = None if f is None else [f[:, 0]]
    for i in range(N - 1):
        dl, dn = lower[:, i], alpha[:, i + 1]
        dun = upper[:, i + 1] if i < N - 2 else zero
        swap = _cabs1(di) < _cabs1(dl)
        piv = torch.where(swap, dl, di)
        other = torch.where(swap, di, dl)
        safe = torch.where(piv == 0, torch.ones_like(piv), piv)
        fact = other / safe  # 0 where both are 0; no where() around it, which would cut the gradient
        us.append(piv)
        u1s.append(torch.where(swap, dn, dui))
        u2s.append(torch.where(swap, dun, zero))
        di, dui = torch.where(swap, dui - fact * dn, dn - fact * dui), torch.where(swap, -fact * dun, dun)
        swaps = swaps + swap.to(torch.int64)
        if rows is not None:
            xi, xn = rows[i], f[:, i + 1]
            sw = swap[:, None]
            rows[i] = torch.where(sw, xn, xi)
            rows.append(torch.where(sw, xi - fact[:, None] * xn, xn - fact[:, None] * xi))
    us.append(di)
    u1s.append(zero)
    u2s.append(zero)
    return torch.stack(us, 1), torch.stack(u1s, 1), torch.stack(u2s, 1), swaps, rows


def _logdet_pivoted_ref(alpha, upper, lower, pivmin):
    """``log det A`` from the pivoted factorization ``P A = L U``: ``sum_i log U_ii`` plus
    ``i pi`` per row exchange, imaginary part wrapped into (-pi, pi]; out-of-place ops, so
    autograd gives ``d log det / d alpha_j = G_jj`` through any pivot.  Returns
    ``(ld, singular)`` with the certificate of :func:`_gtsv_ref`."""
    U, _, _, swaps, _ = _gtsv_ref_factor(alpha, upper, lower)
    cdt = torch.complex64 if _real_dtype(alpha.dtype) == torch.float32 else torch.complex128
    ld = torch.log(U.to(cdt)).sum(dim=1)
    pm = pivmin.to(_real_dtype(alpha.dtype))
    singular = (_cabs1(U) < SINGULAR_FACTOR * pm[:, None]).any(dim=1) | ~torch.isfinite(ld)
    if not U.is_complex():  # the phase exactly: pi per negative pivot and per exchange, mod 2 pi
        odd = ((U < 0).sum(dim=1) + swaps) % 2
        return torch.complex(ld.real, odd.to(ld.real.dtype) * math.pi), singular
    ang = ld.imag + math.pi * (swaps % 2).to(ld.real.dtype)
    return torch.complex(ld.real, _wrap_angle(ang)), singular


def _resolvent_ref_combine(alpha, beta, gL, gR):
    """``G_ii = 1/(alpha_i - beta_{i-1} gL_{i-1} - beta_i gR_{i+1})`` (the formula of
    docs/mathematics.md, kept deliberately different from :func:`_combine_resolvent`)."""
    B, N = alpha.shape
    zero = alpha.new_zeros(B, 1)
    left = torch.cat([zero, beta * gL[:, :-1]], dim=1) if N > 1 else zero[:, :N]
    right = torch.cat([beta * gR[:, 1:], zero], dim=1) if N > 1 else zero[:, :N]
    return 1.0 / (alpha - left - right)
