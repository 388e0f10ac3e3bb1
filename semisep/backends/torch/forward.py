"""The torch backend's forward kernels without autograd, shared by the autograd Functions and
the no-grad paths: the resolvent diagonal, the log-determinant and the solve, on the chunked
sweeps (any device), the compiled kernels (CPU, through :mod:`.bridge`) or the reference loops.

Each returns the result with the contract's ``guarded`` counts and ``singular`` flags
(:mod:`semisep.backends`), plus what the backward needs (the pivots).  Elimination without row
exchanges is not backward stable through a tiny or guarded pivot, so the chunked ``solve``
refines iteratively to LAPACK ``?gtsv``'s backward error and hands rows that do not get there to
the pivoted solve (:func:`_solve_stable`); ``"sequential"`` and ``"reference"`` pivot.
"""

from __future__ import annotations

import math

import torch

from .. import SINGULAR_FACTOR
from .bridge import _numpy_kernel, _numpy_kernels_available, _pivots_sequential_numpy, call_numpy
from .chunks import (
    _affine_scan_chunked,
    _cabs1,
    _real_dtype,
    _scan_chunk_length,
    _to_chunks,
    _wrap_angle,
)
from .pivots import _pivots_chunked, _pivots_chunked_shifted
from .reads import note, read_flags
from .reference import _affine_scan_ref, _gtsv_ref, _pivots_ref

__all__ = ["read_flags"]  # re-exported: the one host read of a call (:mod:`.reads`)


def _both_pivots(alpha, beta, pivmin, method: str, L: int | None, guard: str = "auto"):
    """``(gL, gR, guarded)``: both pivot sweeps and the number of guarded pivots per row (both
    sweeps).  Chunked: left and right sweeps run as one batch of ``2B`` rows (the right sweep is
    the left sweep of the reversed sequence).  ``guard="defer"`` (chunked): a fourth element
    ``ok`` (see :func:`_pivots_chunked`)."""
    B, N = alpha.shape
    ok = None
    if method == "reference":
        a2 = torch.cat([alpha, alpha.flip(1)], dim=0)
        b2 = torch.cat([beta, beta.flip(1)], dim=0)
        g, _, m = _pivots_ref(a2, b2, torch.cat([pivmin, pivmin], dim=0))
        gl, gr = g[:B], g[B:]
    else:
        (gl, gr), _, m, *rest = _pivots_chunked(alpha, beta, pivmin, L, both=True, mask_none=True,
                                                guard=guard)
        ok = rest[0] if rest else None
    if m is None:
        guarded = torch.zeros(B, dtype=torch.int64, device=alpha.device)
        note(guarded, "any", False)
    else:
        guarded = (m[:B].sum(dim=1) + m[B:].sum(dim=1)).to(torch.int64)
    if guard == "defer" and method != "reference":
        return gl, gr.flip(1), guarded, ok
    return gl, gr.flip(1), guarded


def _combine_resolvent(gL, gR, beta):
    """``G_ii = gL_i / (1 - beta_i gL_i gR_{i+1})`` (``G_{N-1} = gL_{N-1}``), which equals
    ``1/(alpha_i - beta_{i-1} gL_{i-1} - beta_i gR_{i+1})`` and stays finite (0) where an exact
    zero leading minor makes ``gL_i = 0``."""
    if gL.shape[1] <= 1:
        return gL.clone()
    G = torch.empty(gL.shape, dtype=torch.result_type(gL, beta), device=gL.device)
    corr = torch.mul(beta, gL[:, :-1], out=G[:, :-1])  # (in place: G's storage as scratch)
    corr.mul_(gR[:, 1:]).neg_().add_(1.0)
    torch.div(gL[:, :-1], corr, out=G[:, :-1])
    G[:, -1] = gL[:, -1]
    return G


def _resolvent_flags(G, pivmin, cert_ok: bool | None = None):
    """Contract: singular where some ``|gamma_i| = |1/G_ii| < SINGULAR_FACTOR * pivmin``
    (NaN-aware: a non-finite G counts as singular).  ``cert_ok``: the value of
    :func:`_resolvent_cert` already read by the caller (None: read it here for a complex G).
    Where the certificate holds, the flags (all False) are noted (:func:`.reads.note`)."""
    if G.shape[0] == 0 or G.shape[1] == 0:
        return torch.zeros(G.shape[0], dtype=torch.bool, device=G.device)
    pm = pivmin.to(_real_dtype(G.dtype))[:, None]
    if cert_ok is None and G.is_complex():  # cheap certificate first (one reduction)
        cert_ok = bool(_resolvent_cert(G, pivmin))
    if cert_ok:
        out = torch.zeros(G.shape[0], dtype=torch.bool, device=G.device)
        note(out, "any", False)
        return out
    return (~(G.abs() * (SINGULAR_FACTOR * pm) <= 1.0)).any(dim=1)


def _resolvent_cert(G, pivmin) -> torch.Tensor:
    """0-d bool tensor: True certifies that no row of ``G (B, N)`` is singular by
    :func:`_resolvent_flags`' test.  Complex G: from ``|G| <= sqrt(2) max(|re G|, |im G|)``
    (one reduction; False where it cannot certify, or NaN).  Real G: the test itself (the
    pass the flags would take anyway), so that its outcome is read with the kernel's flags."""
    if G.shape[0] == 0 or G.shape[1] == 0:
        return torch.zeros((), dtype=torch.bool, device=G.device)
    if not G.is_complex():
        pm = pivmin.to(G.dtype)[:, None]
        return (G.abs() * (SINGULAR_FACTOR * pm) <= 1.0).all()
    pm = pivmin.to(_real_dtype(G.dtype))
    m = torch.view_as_real(G).reshape(G.shape[0], -1).abs().amax(dim=1)  # NaN-propagating
    return (m * (math.sqrt(2.0) * SINGULAR_FACTOR) * pm <= 1.0).all()


def _left_flags(mask, alpha, beta, gL, pivmin):
    """Contract for logdet / solve: the last pivot *before guarding*,
    ``d_{N-1} = alpha_{N-1} - beta_{N-2} gL_{N-2}``, has ``|d_{N-1}| < SINGULAR_FACTOR * pivmin``,
    or a pivot ``d_k`` (k < N-1) was guarded where ``|beta_k| <= pivmin**2`` (a singular leading
    block decoupled from the rest).  NaN-aware."""
    B, N = mask.shape
    if N == 0:
        return torch.zeros(B, dtype=torch.bool, device=mask.device)
    pm = pivmin.to(_real_dtype(alpha.dtype))
    d_last = alpha[:, -1] - beta[:, -1] * gL[:, -2] if N > 1 else alpha[:, 0]
    sing = ~(d_last.abs() >= SINGULAR_FACTOR * pm)
    if N > 1:
        sing |= (mask[:, :-1] & (beta.abs() <= (pm * pm)[:, None])).any(dim=1)
    return sing


def _logdet_from_pivots(d: torch.Tensor, L: int | None = None) -> torch.Tensor:
    """``sum_i log d_i`` as a complex number with imaginary part in (-pi, pi].

    Real ``d``: the phase is exactly ``pi (number of negative pivots mod 2)``, 0 or pi (an
    integer count, no sum of rounded angles), as the sequential kernel's.  Complex ``d``: the
    angles are summed chunk by chunk and each partial sum reduced mod 2 pi before the chunk
    sums are added, so the rounding error of the imaginary part is ~eps (L + N/L) pi rather
    than ~eps N pi."""
    B, N = d.shape
    cdt = torch.complex64 if _real_dtype(d.dtype) == torch.float32 else torch.complex128
    if N == 0:
        return torch.zeros(B, dtype=cdt, device=d.device)
    mag = torch.log(d.abs()).sum(dim=1)
    if not d.is_complex():
        return torch.complex(mag, _odd_pi((d < 0).sum(dim=1), mag.dtype)).to(cdt)
    ang = torch.angle(d)
    L = _scan_chunk_length(N) if L is None else L
    part = _wrap_angle(_to_chunks(ang, L, 0.0).sum(dim=0))  # (B, nc)
    ang = _wrap_angle(part.sum(dim=1))
    return torch.complex(mag, ang).to(cdt)


def _odd_pi(count: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``pi`` where the integer ``count`` is odd, else 0: the phase of a product of real
    numbers ``count`` of which are negative, exactly."""
    return (count % 2).to(dtype) * math.pi


def _solve_with_pivots(gL, upper, lower, f, method, L=None):
    """``A x = f`` given the LU pivots: ``y_i = f_i - c_{i-1} gL_{i-1} y_{i-1}``,
    ``x_i = gL_i y_i - gL_i b_i x_{i+1}``.  ``f (B, N, k)`` -> ``x (B, N, k)``."""
    B, N, k = f.shape
    zero = gL.new_zeros(B, 1)
    m1 = torch.cat([zero, -lower * gL[:, :-1]], dim=1)  # (B, N)
    m2 = torch.cat([-gL[:, :-1] * upper, zero], dim=1)
    def scan(m, f_, reverse):
        if method == "reference":
            return _affine_scan_ref(m, f_, reverse)
        return _affine_scan_chunked(m, f_, reverse, L)

    y = scan(m1, f, reverse=False)
    return scan(m2, gL[:, :, None] * y, reverse=True)


def _resolvent_shifted_chunked(diag, shift, beta, pivmin, L):
    """``(G, guarded, singular, gL, gR, beta_w)`` for ``alpha = diag - shift`` (real ``diag``
    and ``beta``, complex ``shift``) from both sweeps of :func:`_pivots_chunked_shifted` (the
    guarded pass where a pivot needs it), in the shift's precision; ``beta_w`` is ``beta`` in
    that precision (real)."""
    rdt = _real_dtype(shift.dtype)
    beta_w = beta.to(rdt)
    B = diag.shape[0]
    for guard in ("defer", "force"):  # one host sync unless a pivot needs the guard
        (gl, grr), _, m, *ok = _pivots_chunked_shifted(diag, shift, beta_w, pivmin, L=L, guard=guard)
        gr = grr.flip(1)
        del grr
        G = _combine_resolvent(gl, gr, beta_w)
        cert = _resolvent_cert(G, pivmin.to(rdt))
        if guard == "force":
            cert_ok = None
            break
        ok_h, cert_ok = read_flags(ok[0], cert, expect=(True, True))
        if ok_h:
            break
    if m is None:
        guarded = torch.zeros(B, dtype=torch.int64, device=diag.device)
        note(guarded, "any", False)
    else:
        guarded = (m[:B].sum(dim=1) + m[B:].sum(dim=1)).to(torch.int64)
    return G, guarded, _resolvent_flags(G, pivmin.to(rdt), cert_ok), gl, gr, beta_w


def _resolvent_forward(alpha, beta, pivmin, method, L, need_pivots=False):
    """``(G, guarded, singular, gL, gR)``.  ``"sequential"``: result and flags from the numpy
    kernel, the saved pivots from its separate left/right sweeps."""
    if method == "sequential":
        if not need_pivots:
            G, guarded, singular = _numpy_kernel("resolvent_diagonal", alpha, beta, pivmin)
            return G, guarded, singular, None, None
        G, gL, gR, guarded, singular = call_numpy(
            "resolvent_diagonal_with_pivots", alpha, beta, pivmin.to(_real_dtype(alpha.dtype)))
        return G, guarded, singular, gL, gR
    if method == "reference":
        gL, gR, guarded = _both_pivots(alpha, beta, pivmin, method, L)
        G = _combine_resolvent(gL, gR, beta)
        return G, guarded.to(torch.int64), _resolvent_flags(G, pivmin), gL, gR
    gL, gR, guarded, ok = _both_pivots(alpha, beta, pivmin, method, L, guard="defer")
    G = _combine_resolvent(gL, gR, beta)
    # the call's one host sync
    ok_h, cert_ok = read_flags(ok, _resolvent_cert(G, pivmin), expect=(True, True))
    if not ok_h:  # some pivot needs the guard: the guarded sweeps
        gL, gR, guarded = _both_pivots(alpha, beta, pivmin, method, L, guard="force")
        G = _combine_resolvent(gL, gR, beta)
        cert_ok = None
    return G, guarded.to(torch.int64), _resolvent_flags(G, pivmin, cert_ok), gL, gR


def _logdet_forward(alpha, beta, pivmin, method, L):
    """``(ld, guarded, singular, gL)``."""
    if method == "sequential":
        ld, guarded, singular = _numpy_kernel("logdet", alpha, beta, pivmin)
        gL, _ = _pivots_sequential_numpy(alpha, beta, pivmin, right=False)
        return ld, guarded, singular, gL
    if method == "reference":
        gL, d, mask = _pivots_ref(alpha, beta, pivmin)
        ld = _logdet_from_pivots(d)
        singular = _left_flags(mask, alpha, beta, gL, pivmin) | ~torch.isfinite(ld)
        return ld, mask.sum(dim=1).to(torch.int64), singular, gL
    # one host sync unless a pivot needs the guard: the guard certificate, and what the caller
    # asks next (any row singular? a real problem's log-determinant real?), read together
    gL, d, mask, ok = _pivots_chunked(alpha, beta, pivmin, L, guard="defer")
    ld = _logdet_from_pivots(d)
    singular = _left_flags(mask, alpha, beta, gL, pivmin) | ~torch.isfinite(ld)
    imag = (ld.imag != 0).any() if not alpha.is_complex() else torch.zeros_like(ok)
    ok_h, sing_h, imag_h = read_flags(ok, singular.any(), imag, expect=(True, False, None))
    if not ok_h:  # some pivot needs the guard: the guarded sweep
        gL, d, mask = _pivots_chunked(alpha, beta, pivmin, L, guard="force")
        ld = _logdet_from_pivots(d)
        singular = _left_flags(mask, alpha, beta, gL, pivmin) | ~torch.isfinite(ld)
        return ld, mask.sum(dim=1).to(torch.int64), singular, gL
    guarded = mask.sum(dim=1).to(torch.int64)
    note(guarded, "any", False)
    note(singular, "any", sing_h)
    if not alpha.is_complex() and imag_h is not None:  # None: not read (a spanning call's)
        note(ld, "imag", imag_h)
    return ld, guarded, singular, gL


_REFINE_STEPS = 3  # iterative-refinement steps of the chunked solve before the pivoted fallback


_REFINE_TOL = 4.0  # accept where ||A x - f|| <= _REFINE_TOL eps (||A|| ||x|| + ||f||), per column


def _apply_rows(alpha, upper, lower, x):
    """``A x`` for ``x (B, N, k)``."""
    y = alpha[:, :, None] * x
    if alpha.shape[1] > 1:
        y = y + torch.nn.functional.pad(upper[:, :, None] * x[:, 1:], (0, 0, 0, 1))
        y = y + torch.nn.functional.pad(lower[:, :, None] * x[:, :-1], (0, 0, 1, 0))
    return y


def _backward_ok(alpha, upper, lower, f, x, finite: list | None = None):
    """Per row: every column's normwise backward error ``||A x - f||_inf / (||A||_inf
    ||x||_inf + ||f||_inf)`` is at most ``_REFINE_TOL eps`` (False where NaN); also the
    residual ``f - A x``.  ``finite``: a list to which a 0-d bool tensor is appended, True
    where every entry of ``x`` is finite (from ``max |x|``, which propagates NaN)."""
    r = f - _apply_rows(alpha, upper, lower, x)
    eps = torch.finfo(_real_dtype(alpha.dtype)).eps
    anorm = _cabs1(alpha)
    if alpha.shape[1] > 1:
        pad = torch.nn.functional.pad
        anorm = anorm + pad(_cabs1(upper), (0, 1)) + pad(_cabs1(lower), (1, 0))
    anorm = anorm.amax(dim=1)  # (B,), within a factor sqrt(2) above ||A||_inf
    num = _cabs1(r).amax(dim=1)  # (B, k)
    xmax = _cabs1(x).amax(dim=1)
    if finite is not None:
        finite.append(torch.isfinite(xmax).all())
    den = anorm[:, None] * xmax + _cabs1(f).amax(dim=1)
    ok = (num <= _REFINE_TOL * eps * den).all(dim=1)
    return ok, r


def _solve_stable(alpha, upper, lower, f, pivmin, method, L, gL=None):
    """``A x = f`` backward stable on every path: ``"sequential"`` is the compiled pivoted
    solve (LAPACK ``?gtsv``'s elimination); ``"reference"`` its torch-loop twin
    :func:`_gtsv_ref`; ``"chunked"`` (the CUDA path) cannot exchange rows inside its scans, so
    it solves with the LU pivots ``gL`` (:func:`_solve_with_pivots`), then takes up to
    ``_REFINE_STEPS`` steps of iterative refinement with the residual in working precision
    until the normwise backward error of every column is at most ``_REFINE_TOL eps``; rows
    that do not get there (element growth beyond what refinement repairs) are solved by the
    pivoted solve (the compiled kernel through a host copy where numba is available, else the
    torch loop on the tensor's device).  Returns ``(x, steps)``."""
    if method == "sequential":
        x, _, _ = _numpy_kernel("solve", alpha, upper, lower, f, pivmin)
        return x.to(f.device), 0
    if method == "reference":
        return _gtsv_ref(alpha, upper, lower, f, pivmin)[0], 0
    if gL is None:
        gL, _, _ = _pivots_chunked(alpha, upper * lower, pivmin, L)
    x = _solve_with_pivots(gL, upper, lower, f, "chunked", L)
    return _refine(alpha, upper, lower, f, pivmin, L, gL, x)


def _refine(alpha, upper, lower, f, pivmin, L, gL, x, flags=(), done=None, expect=None):
    """The iterative refinement and pivoted fallback of :func:`_solve_stable` from the first
    solution ``x``.  ``flags``: the caller's 0-d bool tensors, read in the same host sync as the
    first backward-error test; ``done(values) -> bool``: given their values, True stops before
    refining (the caller then ignores the result).  Returns ``(x, steps)``, or ``(x, steps,
    values)`` where ``flags`` were given; with ``flags``, the last value tells whether the first
    ``x`` is finite.  ``expect``: the flags' common-path values (:func:`.reads.read_flags`).
    One host sync when the first solve is good enough."""
    steps = 0
    fin: list = []
    ok, r = _backward_ok(alpha, upper, lower, f, x, fin if flags else None)
    want = None if expect is None else (True, *expect, *(True,) * len(fin))
    good, *values = read_flags(ok.all(), *flags, *fin, expect=want)
    if done is not None and done(values):
        return x, steps, values
    while not good and steps < _REFINE_STEPS:
        x = x + _solve_with_pivots(gL, upper, lower, r, "chunked", L)
        steps += 1
        ok, r = _backward_ok(alpha, upper, lower, f, x)
        good = bool(ok.all())
    if not good:
        bad = (~ok).nonzero()[:, 0]
        args = (alpha[bad], upper[bad], lower[bad], f[bad], pivmin[bad])
        if _numpy_kernels_available():
            xb, _, _ = _numpy_kernel("solve", *(t.cpu() for t in args))
            xb = xb.to(f.device)
        else:
            xb, _ = _gtsv_ref(*args)
        x = x.index_copy(0, bad, xb.to(x.dtype))
    return (x, steps, values) if flags else (x, steps)


def _solve_forward(alpha, upper, lower, f, pivmin, method, L):
    """``(x, guarded, singular, gL)``; ``gL`` the chunked path's LU pivots (an empty tensor
    elsewhere).  ``guarded`` counts the guarded LU pivots of the chunked path (zero for the
    pivoted solves); ``singular`` is the pivoted factorization's certificate
    (:func:`_gtsv_ref`), on the chunked path the LU sweep's (:func:`_left_flags`) or a
    non-finite result."""
    B = alpha.shape[0]
    none = alpha.new_zeros(0)
    if method == "sequential":
        x, guarded, singular = _numpy_kernel("solve", alpha, upper, lower, f, pivmin)
        return x, guarded, singular, none
    if method == "reference":
        x, singular = _gtsv_ref(alpha, upper, lower, f, pivmin)
        return x, torch.zeros(B, dtype=torch.int64, device=alpha.device), singular, none
    beta = upper * lower
    # one host sync in the common case: the pivot-guard certificate, the singular flags and the
    # first solve's backward error are read together
    gL, _, mask, ok = _pivots_chunked(alpha, beta, pivmin, L, guard="defer")
    singular = _left_flags(mask, alpha, beta, gL, pivmin)
    x = _solve_with_pivots(gL, upper, lower, f, "chunked", L)
    x, steps, (ok_h, sing_h, fin_h) = _refine(alpha, upper, lower, f, pivmin, L, gL, x,
                                              flags=(ok, singular.any()),
                                              done=lambda v: not v[0] or v[1], expect=(True, False))
    if not ok_h:  # some pivot needs the guard: the guarded sweep, then as before
        gL, _, mask = _pivots_chunked(alpha, beta, pivmin, L, guard="force")
        singular = _left_flags(mask, alpha, beta, gL, pivmin)
        x = _solve_with_pivots(gL, upper, lower, f, "chunked", L)
        if not bool(singular.any()):
            x, _ = _refine(alpha, upper, lower, f, pivmin, L, gL, x)
    elif sing_h:  # the caller raises: no refinement of a singular system
        return x, mask.sum(dim=1).to(torch.int64), singular, gL
    singular = singular | ~torch.isfinite(x).all(dim=2).all(dim=1)
    guarded = mask.sum(dim=1).to(torch.int64)
    if ok_h:  # no guard ran; the first x kept where no step was taken
        note(guarded, "any", False)
        if steps == 0:
            note(singular, "any", not fin_h)
    return x, guarded, singular, gL

