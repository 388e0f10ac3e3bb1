"""The torch backend's differentiable kernels, each described once (an
:class:`~semisep.backends.torch.opspec.OpSpec`) and every frontend generated from the
description (:func:`~semisep.backends.torch.opspec.define`: the custom ops ``semisep::<name>``
and ``semisep::<name>_backward`` with their fake rules and registered autograd, an eager
``autograd.Function`` and a ``setup_context`` one for ``torch.func``).

The five ops: ``resolvent_diagonal``, ``resolvent_diagonal_shifted`` (CPU, the compiled
kernels), ``resolvent_diagonal_shifted_chunked``, ``logdet`` and ``solve``.  The backward passes
are the O(N) recipes of docs/mathematics.md: they save only O(N) tensors and run the chunked
affine scan (or the compiled scans on CPU).  (:mod:`semisep.backends.torch.ops` wraps whole
operator calls, also through :func:`~semisep.backends.torch.opspec.define`; its recomputation
on a worker thread reaches these ops eagerly.)  ``method="reference"`` instead differentiates
through its plain loop with ordinary autograd, to any order and in forward mode.
"""

from __future__ import annotations

import torch

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
from .opspec import OpSpec, define
from .pivots import _pivots_chunked


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


# --------------------------------------------------------------------------------------------
# the five descriptions
# --------------------------------------------------------------------------------------------
def _flags_fake(B: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return like.new_empty(B, dtype=torch.int64), like.new_empty(B, dtype=torch.bool)


def _resolvent_forward_op(alpha, beta, pivmin, method, L):
    G, guarded, singular, gL, gR = _resolvent_forward(alpha, beta, pivmin, method, L, need_pivots=True)
    return G, guarded, singular, gL, gR


def _resolvent_fake(alpha, beta, pivmin, method, L):
    B, N = alpha.shape
    return (alpha.new_empty(B, N), *_flags_fake(B, alpha), alpha.new_empty(B, N), alpha.new_empty(B, N))


def _resolvent_backward_op(grads, saved, opts, needs, dtypes):
    (gbar,) = grads
    beta, G, gL, gR = saved["beta"], saved["G"], saved["gL"], saved["gR"]
    if opts["method"] == "sequential":  # CPU tensors: the compiled in-place scans; no (B, N-1)
        return call_numpy("resolvent_diagonal_backward", gbar.to(G.dtype), G, gL, gR,  # dbeta
                          beta.to(G.dtype), want_dbeta=needs[1])               # unless needed
    return _resolvent_backward(gbar, G, gL, gR, beta, opts["L"])


#: ``(alpha (B, N), beta (B, N-1)) -> G = diag(A^{-1})`` (with the guard counts and singular
#: flags), the O(N) backward of :func:`_resolvent_backward`; saves beta, G, gL, gR.
RESOLVENT_DIAGONAL = define(OpSpec(
    name="resolvent_diagonal",
    schema="(Tensor alpha, Tensor beta, Tensor pivmin, str method, int? L) "
           "-> (Tensor G, Tensor guarded, Tensor singular, Tensor gL, Tensor gR)",
    differentiable=("alpha", "beta"), returned=3, result_grads=1, save=("beta", "G", "gL", "gR"),
    forward=_resolvent_forward_op, fake=_resolvent_fake, backward=_resolvent_backward_op,
    grad_shapes=lambda s: (s["G"].shape, s["beta"].shape),
))


def _shifted_forward_op(diag, shift, beta, pivmin):
    dtype = torch.promote_types(torch.promote_types(diag.dtype, shift.dtype), beta.dtype)
    G, gL, gR, guarded, singular = call_numpy(
        "resolvent_diagonal_shifted_with_pivots", diag, shift, beta, pivmin.to(_real_dtype(dtype)))
    return G, guarded, singular, gL, gR


def _shifted_fake(diag, shift, beta, pivmin):
    dtype = torch.promote_types(torch.promote_types(diag.dtype, shift.dtype), beta.dtype)
    B, N = diag.shape
    G = diag.new_empty(B, N, dtype=dtype)
    return (G, *_flags_fake(B, diag), torch.empty_like(G), torch.empty_like(G))


def _shifted_backward_op(grads, saved, opts, needs, dtypes):
    (gG,) = grads
    beta, G, gL, gR = saved["beta"], saved["G"], saved["gL"], saved["gR"]
    # a real diagonal gets the real part written contiguous by the kernel (no strided copy of
    # a complex result's .real in AccumulateGrad); the shift's gradient is the row sum the
    # kernel accumulates
    da, db, dsum = call_numpy(
        "resolvent_diagonal_backward", gG.to(G.dtype), G, gL, gR, beta, want_dbeta=needs[2],
        conjugate=True, real_dalpha=G.is_complex() and not dtypes[0].is_complex, return_sum=True)
    return da, -dsum, db


#: ``(diag (B, N), shift (B,), beta (B, N-1)) -> G = diag(A^{-1})``, ``A = tridiag(beta;
#: diag - shift)``, on CPU tensors with the compiled kernels: ``alpha`` is never formed, a real
#: ``beta`` costs real products in both directions, and the backward kernel conjugates in
#: registers.  ``dL/ddiag = dL/dalpha``, ``dL/dshift = -sum_i dL/dalpha_i``.  Saves beta, G,
#: gL, gR.
RESOLVENT_DIAGONAL_SHIFTED = define(OpSpec(
    name="resolvent_diagonal_shifted",
    schema="(Tensor diag, Tensor shift, Tensor beta, Tensor pivmin) "
           "-> (Tensor G, Tensor guarded, Tensor singular, Tensor gL, Tensor gR)",
    differentiable=("diag", "shift", "beta"), returned=3, result_grads=1,
    save=("beta", "G", "gL", "gR"), forward=_shifted_forward_op, fake=_shifted_fake,
    backward=_shifted_backward_op,
    grad_shapes=lambda s: (s["G"].shape, s["G"].shape[:1], s["beta"].shape),
    conjugation="torch",
))


def _shifted_chunked_forward_op(diag, shift, beta, pivmin, L):
    G, guarded, singular, gl, gr, _ = _resolvent_shifted_chunked(diag, shift, beta, pivmin, L)
    return G, guarded, singular, gl, gr


def _shifted_chunked_fake(diag, shift, beta, pivmin, L):
    B, N = diag.shape
    G = diag.new_empty(B, N, dtype=shift.dtype)
    return (G, *_flags_fake(B, diag), torch.empty_like(G), torch.empty_like(G))


def _shifted_chunked_backward_op(grads, saved, opts, needs, dtypes):
    (gbar,) = grads
    G, gL, gR = saved["G"], saved["gL"], saved["gR"]
    beta = saved["beta"].to(_real_dtype(dtypes[1]))  # in the shift's precision, as the forward
    dalpha, dbeta = _resolvent_backward(gbar.to(G.dtype), G, gL, gR, beta, opts["L"])
    return dalpha.real, dalpha.sum(dim=1).neg_(), dbeta


#: ``(diag (B, N) real, shift (B,) complex, beta (B, N-1) real) -> G`` by the chunked sweeps
#: (any device) in the shift form, in the shift's precision: the chunk layouts are written
#: straight from ``diag`` and the shift, so ``alpha`` is never formed and ``beta`` stays real
#: in both directions (bitwise the same G as the alpha form).  ``dL/ddiag = Re dL/dalpha``,
#: ``dL/dshift = -sum_i dL/dalpha_i``, ``dL/dbeta = Re`` of the complex one.  Saves beta, G,
#: gL, gR.
RESOLVENT_DIAGONAL_SHIFTED_CHUNKED = define(OpSpec(
    name="resolvent_diagonal_shifted_chunked",
    schema="(Tensor diag, Tensor shift, Tensor beta, Tensor pivmin, int? L) "
           "-> (Tensor G, Tensor guarded, Tensor singular, Tensor gL, Tensor gR)",
    differentiable=("diag", "shift", "beta"), returned=3, result_grads=1,
    save=("beta", "G", "gL", "gR"), forward=_shifted_chunked_forward_op,
    fake=_shifted_chunked_fake, backward=_shifted_chunked_backward_op,
    grad_shapes=lambda s: (s["G"].shape, s["G"].shape[:1], s["beta"].shape),
))


def _logdet_forward_op(alpha, beta, pivmin, method, L):
    ld, guarded, singular, gL = _logdet_forward(alpha, beta, pivmin, method, L)
    return ld, guarded, singular, gL


def _logdet_fake(alpha, beta, pivmin, method, L):
    B, N = alpha.shape
    cdt = torch.complex64 if alpha.dtype in (torch.float32, torch.complex64) else torch.complex128
    return alpha.new_empty(B, dtype=cdt), *_flags_fake(B, alpha), alpha.new_empty(B, N)


def _logdet_backward_op(grads, saved, opts, needs, dtypes):
    gbar = grads[0][:, None]
    alpha, beta, pivmin, gL = saved["alpha"], saved["beta"], saved["pivmin"], saved["gL"]
    if opts["method"] == "sequential":
        gR, _ = _pivots_sequential_numpy(alpha, beta, pivmin, right=True)
    else:
        g, _, _ = _pivots_chunked(alpha.flip(1), beta.flip(1), pivmin, opts["L"])
        gR = g.flip(1)
    G = _combine_resolvent(gL, gR, beta)
    return gbar * G, -gbar * gL[:, :-1] * G[:, 1:]


#: ``(alpha, beta) -> log det A``; backward ``d/dalpha_j = G_jj``, ``d/dbeta_j = -gL_j
#: G_{j+1,j+1}`` (from ``d log det/d b_j = G_{j+1,j}`` and ``G_{j+1,j} = -c_j gL_j
#: G_{j+1,j+1}``).  Saves alpha, beta, pivmin, gL; the right sweep is recomputed.
LOGDET = define(OpSpec(
    name="logdet",
    schema="(Tensor alpha, Tensor beta, Tensor pivmin, str method, int? L) "
           "-> (Tensor ld, Tensor guarded, Tensor singular, Tensor gL)",
    differentiable=("alpha", "beta"), returned=3, result_grads=1,
    save=("alpha", "beta", "pivmin", "gL"), forward=_logdet_forward_op, fake=_logdet_fake,
    backward=_logdet_backward_op, grad_shapes=lambda s: (s["alpha"].shape, s["beta"].shape),
))


def _solve_forward_op(alpha, upper, lower, f, pivmin, method, L):
    x, guarded, singular, gL = _solve_forward(alpha, upper, lower, f, pivmin, method, L)
    return x, guarded, singular, gL


def _solve_fake(alpha, upper, lower, f, pivmin, method, L):
    B, N = alpha.shape
    dtype = torch.promote_types(alpha.dtype, f.dtype)
    gL = alpha.new_empty(B, N) if method == "chunked" else alpha.new_empty(0)
    return f.new_empty(f.shape, dtype=dtype), *_flags_fake(B, alpha), gL


def _solve_backward_op(grads, saved, opts, needs, dtypes):
    alpha, b, c, pivmin, x, gL = (saved[k] for k in ("alpha", "b", "c", "pivmin", "x", "gL"))
    xbar = grads[0].to(x.dtype)
    aw, bw, cw = (t.to(x.dtype) for t in (alpha, b, c))
    # A^T: swap b and c (same LU pivots, which depend on b c only)
    r, _ = _solve_stable(aw, cw, bw, xbar, pivmin, opts["method"], opts["L"], gL if gL.numel() else None)
    da = -(r * x).sum(dim=2)
    db = -(r[:, :-1] * x[:, 1:]).sum(dim=2)
    dc = -(r[:, 1:] * x[:, :-1]).sum(dim=2)
    return da, db, dc, r


#: ``(alpha, b, c, f (B, N, k)) -> x = A^{-1} f``; backward ``r = A^{-T} xbar`` (b and c
#: swapped), ``da_j = -sum_k r_jk x_jk``, ``db_j = -sum_k r_jk x_{j+1,k}``, ``dc_j = -sum_k
#: r_{j+1,k} x_jk``, ``df = r``; both solves backward stable (:func:`_solve_stable`).  Saves
#: alpha, b, c, pivmin, x and the chunked path's LU pivots, O(N k).
SOLVE = define(OpSpec(
    name="solve",
    schema="(Tensor alpha, Tensor b, Tensor c, Tensor f, Tensor pivmin, str method, int? L) "
           "-> (Tensor x, Tensor guarded, Tensor singular, Tensor gL)",
    differentiable=("alpha", "b", "c", "f"), returned=3, result_grads=1,
    save=("alpha", "b", "c", "pivmin", "x", "gL"), forward=_solve_forward_op, fake=_solve_fake,
    backward=_solve_backward_op,
    grad_shapes=lambda s: (s["alpha"].shape, s["b"].shape, s["c"].shape, s["x"].shape),
))
