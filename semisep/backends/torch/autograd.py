"""The torch backend's autograd Functions: O(N) memory and time backward passes.

With any input requiring grad the kernels go through ``torch.autograd.Function`` s that save
only O(N) tensors and whose backward is the O(N) recipe of docs/mathematics.md, evaluated with
the chunked affine scan (or the compiled scans on CPU).  torch's complex convention: for a real
loss ``L`` torch hands the backward ``grad_output = dL/d conj(y)``-style cotangents; the
holomorphic recipe is applied to ``gbar = conj(grad_output)`` and the results are conjugated.
Double backward is not supported: the backward raises under ``create_graph=True``
(:func:`once_differentiable`), and forward-mode AD (dual tensors) raises at the call
(:func:`_reject_forward_ad`).  ``method="reference"`` instead differentiates through its plain
loop with ordinary autograd, to any order and in forward mode.
"""

from __future__ import annotations

import functools

import torch
import torch.autograd.forward_ad as _fwad

from .bridge import _pivots_sequential_numpy, call_numpy
from .chunks import _affine_scan_chunks_, _chunk_layout, _from_chunks_scaled, _real_dtype, _scan_chunk_length
from .forward import (
    _combine_resolvent,
    _logdet_forward,
    _resolvent_forward,
    _resolvent_shifted_chunked,
    _solve_forward,
    _solve_stable,
)
from .pivots import _pivots_chunked


def once_differentiable(backward):
    """The autograd Functions' backward is first-order only: under ``create_graph=True``
    (double backward, ``torch.autograd.functional.hessian``) it raises instead of returning a
    gradient that carries no graph (which would make every second derivative through it a
    silent zero).  torch's own ``once_differentiable`` raises only when a grad_output requires
    grad, and the first backward of ``loss.sum()`` hands it one that does not."""

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "semisep: double backward (create_graph=True, hessian, a gradient penalty) is not "
                "supported through the O(N) kernels; use method='reference' (plain torch ops, "
                "differentiable to any order) or torch.autograd.functional with create_graph=False"
            )
        return backward(ctx, *grads)

    return wrapper


def _reject_forward_ad(*xs) -> None:
    """Forward-mode AD (``torch.autograd.forward_ad``, ``torch.func.jvp``) is not implemented by
    the O(N) kernels: raise instead of dropping the tangent."""
    for x in xs:
        if isinstance(x, torch.Tensor) and _fwad.unpack_dual(x).tangent is not None:
            raise NotImplementedError(
                "semisep: forward-mode AD (dual tensors) is not supported by the O(N) kernels; "
                "use reverse mode, or method='reference' (plain torch ops, which support it)"
            )


def _grad_for(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Cast a gradient to its input's dtype: a real input gets the real part."""
    if not x.is_complex() and g.is_complex():
        g = g.real
    return g.to(x.dtype)


def _resolvent_backward(gbar, G, gL, gR, beta, L=None):
    """Holomorphic-convention cotangents of ``G = diag(A^{-1})`` given ``gbar = dL/dG``.

    ``s_i = gbar_i G_ii^2``; ``SL_j = rho_j SL_{j-1} + s_j`` with ``rho_j = beta_{j-1} gR_j^2``;
    ``SR_j = lambda_j SR_{j+1} + s_j`` with ``lambda_j = beta_j gL_j^2``;
    ``dL/dalpha_j = -(SL_j + SR_j - s_j)``, ``dL/dbeta_j = gR_{j+1} SL_j + gL_j SR_{j+1}``.
    The two scans run as one chunked scan over ``2B`` rows (``SR`` as the forward scan of the
    reversed sequence), built directly in the chunk layout and scanned in place; temporaries of
    size ``B x N`` are made one at a time (peak ~ 6 of them besides the inputs)."""
    B, N = G.shape
    if N == 0 or B == 0:
        return G.new_zeros(B, N), G.new_zeros(B, max(N - 1, 0))
    if L is None:
        L = _scan_chunk_length(N)
    L = max(1, min(int(L), N))
    nc = -(-N // L)
    s = torch.mul(gbar, G)
    s.mul_(G)

    def rho():  # rho_j = beta_{j-1} gR_j^2 at j = 1..N-1 (rho_0 = 0: offset 1)
        t = torch.mul(gR[:, 1:], gR[:, 1:])
        return t.mul_(beta)

    def lam_rev():  # lambda reversed: lam_{N-1-i} = beta_{N-1-i} gL_{N-1-i}^2 at i = 1..N-1
        t = torch.mul(gL[:, :-1], gL[:, :-1])
        return t.mul_(beta).flip(1)

    Mc = _chunk_layout([(B, rho), (B, lam_rev)], 1, N, L, nc, 0.0, None)[..., None]
    Fc = _chunk_layout([s, (B, lambda: s.flip(1))], 0, N, L, nc, 0.0, None)[..., None]
    S = _affine_scan_chunks_(Mc, Fc)[..., 0]  # (L, 2B, nc)
    del Mc, Fc
    SL = _from_chunks_scaled(S[:, :B], N, None)
    SR = _from_chunks_scaled(S[:, B:], N, None)
    del S
    SR = SR.flip(1)
    dbeta = torch.mul(gR[:, 1:], SL[:, :-1])
    dbeta.addcmul_(gL[:, :-1], SR[:, 1:])
    dalpha = SL.add_(SR).sub_(s).neg_()
    return dalpha, dbeta


class _ResolventDiagonalFn(torch.autograd.Function):
    """``(alpha, beta) -> G = diag(A^{-1})`` with the O(N) backward; saves beta, G, gL, gR
    (4 N-vectors per row)."""

    @staticmethod
    def forward(ctx, alpha, beta, pivmin, method, L):
        G, guarded, singular, gL, gR = _resolvent_forward(alpha, beta, pivmin, method, L, need_pivots=True)
        ctx.save_for_backward(beta, G, gL, gR)
        ctx.L, ctx.alpha_dtype, ctx.method = L, alpha.dtype, method
        ctx.mark_non_differentiable(guarded, singular)
        return G, guarded, singular

    @staticmethod
    @once_differentiable
    def backward(ctx, gG, _g1, _g2):
        beta, G, gL, gR = ctx.saved_tensors
        gbar = gG.conj() if gG.is_complex() else gG
        if ctx.method == "sequential":  # CPU tensors: the compiled in-place scans
            want_db = ctx.needs_input_grad[1]
            dalpha, dbeta = call_numpy("resolvent_diagonal_backward", gbar.to(G.dtype), G, gL, gR,
                                       beta.to(G.dtype), want_dbeta=want_db)
            if not want_db:  # the off-diagonals need no gradient: no (B, N-1) array formed
                dalpha = dalpha.conj() if dalpha.is_complex() else dalpha
                if not ctx.alpha_dtype.is_complex and dalpha.is_complex():
                    dalpha = dalpha.real
                return dalpha.to(ctx.alpha_dtype), None, None, None, None
        else:
            dalpha, dbeta = _resolvent_backward(gbar, G, gL, gR, beta, ctx.L)
        if dalpha.is_complex():
            dalpha, dbeta = dalpha.conj(), dbeta.conj()
        if not ctx.alpha_dtype.is_complex and dalpha.is_complex():
            dalpha = dalpha.real
        return dalpha.to(ctx.alpha_dtype), _grad_for(beta, dbeta), None, None, None


class _ResolventShiftedFn(torch.autograd.Function):
    """``(diag, shift, beta) -> G = diag(A^{-1})``, ``A = tridiag(beta; diag - shift)``, on CPU
    tensors with the compiled kernels; the O(N) backward.

    ``diag (B, N)`` real or complex (a stride-0 batch view is fine), ``shift (B,)``, ``beta
    (B, N-1)`` in ``T``'s own dtype (real for a real ``T``).  ``alpha`` is never formed, a real
    ``beta`` costs real products in both directions, and the backward kernel conjugates in
    registers (``conjugate=True``), so no conjugated copy is made.  Gradients: ``dL/ddiag =
    dL/dalpha`` (its real part for a real ``diag``), ``dL/dshift = -sum_i dL/dalpha_i``,
    ``dL/dbeta`` from the kernel.  Saves beta, G, gL, gR (4 N-vectors per row)."""

    @staticmethod
    def forward(ctx, diag, shift, beta, pivmin):
        dtype = torch.promote_types(torch.promote_types(diag.dtype, shift.dtype), beta.dtype)
        G, gL, gR, guarded, singular = call_numpy(
            "resolvent_diagonal_shifted_with_pivots", diag, shift, beta, pivmin.to(_real_dtype(dtype)))
        ctx.save_for_backward(beta, G, gL, gR)
        ctx.diag_dtype, ctx.shift_dtype = diag.dtype, shift.dtype
        ctx.mark_non_differentiable(guarded, singular)
        return G, guarded, singular

    @staticmethod
    @once_differentiable
    def backward(ctx, gG, _g1, _g2):
        beta, G, gL, gR = ctx.saved_tensors
        need_diag, need_shift, need_beta = ctx.needs_input_grad[:3]
        # a real diagonal gets the real part written contiguous by the kernel (no strided
        # copy of a complex result's .real in AccumulateGrad); the shift's gradient is the
        # row sum the kernel accumulates
        real_diag = G.is_complex() and not ctx.diag_dtype.is_complex
        da, db, dsum = call_numpy(
            "resolvent_diagonal_backward", gG.to(G.dtype), G, gL, gR, beta,
            want_dbeta=need_beta, conjugate=True, real_dalpha=real_diag, return_sum=True,
        )
        g_diag = _grad_for(torch.empty(0, dtype=ctx.diag_dtype), da) if need_diag else None
        g_shift = None
        if need_shift:
            g_shift = _grad_for(torch.empty(0, dtype=ctx.shift_dtype), -dsum)
        g_beta = _grad_for(beta, db) if need_beta else None
        return g_diag, g_shift, g_beta, None


class _ResolventShiftedChunkedFn(torch.autograd.Function):
    """``(diag, shift, beta) -> G = diag(A^{-1})``, ``A = tridiag(beta; diag - shift)``, by the
    chunked sweeps (any device) in the shift form, with the O(N) chunked backward.

    ``diag (B, N)`` and ``beta (B, N-1)`` real (stride-0 batch views are fine), ``shift (B,)``
    complex; the work runs in the shift's precision.  The chunk layouts are written straight
    from ``diag`` and the shift (:func:`_pivots_chunked_shifted`), so ``alpha`` is never formed
    and ``beta`` stays real in both directions (bitwise the same G as the alpha form).
    Gradients (holomorphic convention, as :class:`_ResolventDiagonalFn`): ``dL/ddiag =
    Re dL/dalpha``, ``dL/dshift = -sum_i dL/dalpha_i``, ``dL/dbeta = Re`` of the complex one.
    Saves beta, G, gL, gR."""

    @staticmethod
    def forward(ctx, diag, shift, beta, pivmin, L):
        G, guarded, singular, gl, gr, beta_w = _resolvent_shifted_chunked(diag, shift, beta, pivmin, L)
        ctx.save_for_backward(beta_w, G, gl, gr)
        ctx.L = L
        ctx.dtypes = (diag.dtype, shift.dtype, beta.dtype)
        ctx.mark_non_differentiable(guarded, singular)
        return G, guarded, singular

    @staticmethod
    @once_differentiable
    def backward(ctx, gG, _g1, _g2):
        beta, G, gL, gR = ctx.saved_tensors
        diag_dtype, shift_dtype, beta_dtype = ctx.dtypes
        need_diag, need_shift, need_beta = ctx.needs_input_grad[:3]
        dalpha, dbeta = _resolvent_backward(gG.to(G.dtype).conj(), G, gL, gR, beta, ctx.L)
        dalpha = dalpha.conj()  # dL/dalpha (holomorphic convention); dbeta is made real below
        g_diag = dalpha.real.to(diag_dtype) if need_diag else None
        g_shift = dalpha.sum(dim=1).neg_().to(shift_dtype) if need_shift else None
        g_beta = dbeta.real.to(beta_dtype) if need_beta else None
        return g_diag, g_shift, g_beta, None, None


class _LogdetFn(torch.autograd.Function):
    """``(alpha, beta) -> log det A``; backward ``d/dalpha_j = G_jj``,
    ``d/dbeta_j = -gL_j G_{j+1,j+1}`` (from ``d log det/d b_j = G_{j+1,j}`` and
    ``G_{j+1,j} = -c_j gL_j G_{j+1,j+1}``).  Saves alpha, beta, pivmin, gL; the right sweep is
    recomputed in the backward."""

    @staticmethod
    def forward(ctx, alpha, beta, pivmin, method, L):
        ld, guarded, singular, gL = _logdet_forward(alpha, beta, pivmin, method, L)
        ctx.save_for_backward(alpha, beta, pivmin, gL)
        ctx.method, ctx.L = method, L
        ctx.mark_non_differentiable(guarded, singular)
        return ld, guarded, singular

    @staticmethod
    @once_differentiable
    def backward(ctx, gld, _g1, _g2):
        alpha, beta, pivmin, gL = ctx.saved_tensors
        if ctx.method == "sequential":
            gR, _ = _pivots_sequential_numpy(alpha, beta, pivmin, right=True)
        else:
            g, _, _ = _pivots_chunked(alpha.flip(1), beta.flip(1), pivmin, ctx.L)
            gR = g.flip(1)
        G = _combine_resolvent(gL, gR, beta)
        gbar = gld.conj()[:, None]
        dalpha = gbar * G
        dbeta = -gbar * gL[:, :-1] * G[:, 1:]
        return _grad_for(alpha, dalpha.conj()), _grad_for(beta, dbeta.conj()), None, None, None


class _SolveFn(torch.autograd.Function):
    """``(alpha, b, c, f) -> x = A^{-1} f``; backward ``r = A^{-T} xbar`` (swap b and c),
    ``da_j = -sum_k r_jk x_jk``, ``db_j = -sum_k r_jk x_{j+1,k}``,
    ``dc_j = -sum_k r_{j+1,k} x_jk``, ``df = r``; both solves backward stable
    (:func:`_solve_stable`).  Saves alpha, b, c, pivmin, x (and the LU pivots on the chunked
    path), O(N k)."""

    @staticmethod
    def forward(ctx, alpha, b, c, f, pivmin, method, L):
        x, guarded, singular, gL = _solve_forward(alpha, b, c, f, pivmin, method, L)
        ctx.save_for_backward(alpha, b, c, pivmin, x, gL)
        ctx.method, ctx.L, ctx.dtypes = method, L, (alpha.dtype, f.dtype)
        ctx.mark_non_differentiable(guarded, singular)
        return x, guarded, singular

    @staticmethod
    @once_differentiable
    def backward(ctx, gx, _g1, _g2):
        alpha_t, b, c, pivmin, x, gL = ctx.saved_tensors
        alpha, f = (torch.empty(0, dtype=dt) for dt in ctx.dtypes)  # dtype carriers only
        xbar = gx.conj() if gx.is_complex() else gx
        xbar = xbar.to(x.dtype)
        aw, bw, cw = (t.to(x.dtype) for t in (alpha_t, b, c))
        # A^T: swap b and c (same LU pivots, which depend on b c only)
        r, _ = _solve_stable(aw, cw, bw, xbar, pivmin, ctx.method, ctx.L, gL if gL.numel() else None)
        da = -(r * x).sum(dim=2)
        db = -(r[:, :-1] * x[:, 1:]).sum(dim=2)
        dc = -(r[:, 1:] * x[:, :-1]).sum(dim=2)
        if r.is_complex():
            da, db, dc, r = da.conj(), db.conj(), dc.conj(), r.conj()
        return (_grad_for(alpha, da), _grad_for(b, db), _grad_for(c, dc), _grad_for(f, r),
                None, None, None)

