"""torch engine of the quasiseparable algorithms (docs/mathematics.md, "Quasiseparable
operators"): the functions ``factor``, ``solve``, ``inverse_diagonal`` and ``matvec`` that
:mod:`semisep.quasiseparable` calls, on tensors in the kernels' layout (a leading batch axis of
length B or 1; see :mod:`semisep.backends.numpy.quasiseparable`).

Three paths, chosen per call:

* **CPU tensors** run the numba kernels of :mod:`semisep.backends.numpy.quasiseparable` on
  zero-copy NumPy views, as ``torch.library.custom_op`` operators (``semisep::qs_factor``,
  ``semisep::qs_solve``, ``semisep::qs_matvec``) with ``register_fake`` (shapes) and
  ``register_autograd`` (exact backward, O(N r^2) memory per element):

  - ``qs_factor``: the adjoint sweep
    :func:`~semisep.backends.numpy.quasiseparable_grad.factor_backward_kernel` over the stored
    states ``M_i``;
  - ``qs_solve`` (``x = U^{-1} L^{-1} f``): ``fbar = A^{-T} xbar`` (the transposed solve on
    the same factors), ``dbar_i = -yhat_i . x_i`` with ``yhat = U^{-T} xbar = L^T fbar``, and
    the strict parts by
    :func:`~semisep.backends.numpy.quasiseparable.bilinear_grad_kernel`:
    ``(g, ht, b)`` from ``(u, v) = (-x, yhat)``, ``(p, qt, a)`` from ``(-fbar, y)`` with
    ``y = L^{-1} f = U x``;
  - ``qs_matvec`` (``y = A x``): ``xbar = A^T ybar``, ``alphabar_i = ybar_i . x_i``, the lower
    form from ``(ybar, x)``, the upper form from ``(x, ybar)``.

  Complex tensors follow torch's convention (the conjugate of the holomorphic derivative):
  every backward runs the real formulas on the conjugated forward arrays.
  ``inverse_diagonal`` has no custom backward: with gradients it runs the chunked scan form
  (below) on the (differentiable) factors, so ``resolvent_diagonal`` is differentiable too,
  through the scan's autograd graph (O(N r^2) memory, O(L + log N) ops).
* **Other devices**: the **chunked scan form** of
  :mod:`semisep.backends.torch.quasiseparable_scan` (plain torch ops, ``O(L + log N)`` ops per
  call, differentiable by autograd), whose factorization hands the rows it cannot take (a
  singular chunk block, a guarded pivot) to the loop below.
* The **portable loop** (the ``*_loop`` functions): the same recursions as torch ops in a
  Python loop over N, vectorised over the batch; correct on any device and differentiable by
  autograd, but O(N) small kernel launches.

The policy is :func:`~semisep.backends.torch.select.select_quasiseparable_kernel`;
every engine function takes the operator's per-call ``method`` (``"auto"``, ``"chunked"``,
``"loop"``, ``"sequential"``) and, for ``"chunked"``, a ``chunk_length`` (None: the
N-dependent default of :func:`~semisep.backends.torch.quasiseparable_scan.chunk_length`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..numpy import quasiseparable as K
from ..numpy.quasiseparable_grad import factor_backward_kernel
from . import quasiseparable_scan as scan
from .select import select_quasiseparable_kernel

__all__ = ["factor", "solve", "inverse_diagonal", "matvec", "kernel_ran",
           "factor_loop", "solve_loop", "inverse_diagonal_loop", "matvec_loop"]

# --------------------------------------------------------------------------------------------
# bridging
# --------------------------------------------------------------------------------------------
def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().resolve_conj().resolve_neg().contiguous().numpy()


def _npc(t: torch.Tensor) -> np.ndarray:
    """The conjugate (for complex) as a NumPy array."""
    x = _np(t)
    return np.conj(x) if np.iscomplexobj(x) else x


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def _reduce(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum a per-row gradient over the axes that ``like`` broadcasts (length 1)."""
    dims = [i for i, (gs, ls) in enumerate(zip(grad.shape, like.shape, strict=True))
            if ls == 1 and gs != 1]
    if dims:
        grad = grad.sum(dim=dims, keepdim=True)
    return grad.to(like.dtype)


def _all_cpu(*ts: torch.Tensor) -> bool:
    return all(t.device.type == "cpu" for t in ts)


# --------------------------------------------------------------------------------------------
# custom operators (CPU, numba kernels)
# --------------------------------------------------------------------------------------------
@torch.library.custom_op("semisep::qs_factor", mutates_args=())
def _qs_factor(alpha: torch.Tensor, p: torch.Tensor, q: torch.Tensor, a: torch.Tensor,
               g: torch.Tensor, h: torch.Tensor, b: torch.Tensor, pivmin: torch.Tensor,
               store_states: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                            torch.Tensor, torch.Tensor, torch.Tensor,
                                            torch.Tensor]:
    d, qt, ht, guarded, last_small, Ms, delta = K.factor_kernel(
        _np(alpha), _np(p), _np(q), _np(a), _np(g), _np(h), _np(b),
        _np(pivmin).astype(np.float64), store_states,
    )
    return _t(d), _t(qt), _t(ht), _t(guarded), _t(last_small), _t(Ms), _t(delta)


@_qs_factor.register_fake
def _(alpha, p, q, a, g, h, b, pivmin, store_states):
    B = max(x.shape[0] for x in (alpha, p, q, a, g, h, b))
    n, rl, ru = alpha.shape[1], p.shape[2], g.shape[2]
    new = alpha.new_empty
    return (new((B, n)), new((B, n, rl)), new((B, n, ru)),
            torch.empty((B,), dtype=torch.int64), torch.empty((B,), dtype=torch.bool),
            new((B, n if store_states else 0, rl, ru)), new((B, n)))


def _factor_setup(ctx, inputs, output):
    alpha, p, q, a, g, h, b, _, _ = inputs
    d, qt, ht, _, _, Ms, _ = output
    ctx.save_for_backward(alpha, p, q, a, g, h, b, d, qt, ht, Ms)


def _factor_backward(ctx, dbar, qtbar, htbar, _g, _s, _m, _delta):
    alpha, p, q, a, g, h, b, d, qt, ht, Ms = ctx.saved_tensors
    if Ms.shape[1] != d.shape[1]:
        raise RuntimeError("semisep::qs_factor was run without stored states; its backward "
                           "needs store_states=True")
    dbar = torch.zeros_like(d) if dbar is None else dbar
    qtbar = torch.zeros_like(qt) if qtbar is None else qtbar
    htbar = torch.zeros_like(ht) if htbar is None else htbar
    out = factor_backward_kernel(
        *(_npc(x) for x in (p, a, g, b, d, qt, ht, Ms)),
        *(_np(x) for x in (dbar, qtbar, htbar)),
    )
    grads = [_reduce(_t(gx), like) for gx, like in zip(out, (alpha, p, q, a, g, h, b),
                                                           strict=True)]
    return (*grads, None, None)


_qs_factor.register_autograd(_factor_backward, setup_context=_factor_setup)


@torch.library.custom_op("semisep::qs_solve", mutates_args=())
def _qs_solve(d: torch.Tensor, qt: torch.Tensor, ht: torch.Tensor, p: torch.Tensor,
              a: torch.Tensor, g: torch.Tensor, b: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _t(K.solve_factored_kernel(_np(d), _np(qt), _np(ht), _np(p), _np(a), _np(g), _np(b),
                                      _np(f), False))


@_qs_solve.register_fake
def _(d, qt, ht, p, a, g, b, f):
    B = max(x.shape[0] for x in (d, qt, ht, p, a, g, b, f))
    return d.new_empty((B,) + tuple(f.shape[1:]))


def _solve_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs, output)


def _empty_form(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = x.shape[1]
    return (np.zeros((1, n, 0), x.dtype), np.zeros((1, n, 0), x.dtype),
            np.zeros((1, 1, 0, 0), x.dtype))


def _solve_backward(ctx, xbar):
    d, qt, ht, p, a, g, b, f, x = ctx.saved_tensors
    dc, qtc, htc, pc, ac, gc, bc, xc = (_npc(t) for t in (d, qt, ht, p, a, g, b, x))
    xb = _np(xbar)
    fbar = K.solve_factored_kernel(dc, qtc, htc, pc, ac, gc, bc, xb, True)
    empty = _empty_form(xb)
    ones = np.ones((1, xb.shape[1]), xb.dtype)
    yhat = K.matvec_kernel(ones, *empty, pc, qtc, ac, fbar)  # L^T fbar = U^{-T} xbar
    y = K.matvec_kernel(dc, *empty, gc, htc, bc, xc)  # U x = L^{-1} f
    dbar = -np.sum(yhat * xc, axis=-1)
    gg, ght, gb = K.bilinear_grad_kernel(-xc, yhat, gc, htc, bc)
    gp, gqt, ga = K.bilinear_grad_kernel(-fbar, y, pc, qtc, ac)
    out = (dbar, gqt, ght, gp, ga, gg, gb, fbar)
    return tuple(_reduce(_t(o), like) for o, like in zip(out, (d, qt, ht, p, a, g, b, f),
                                                           strict=True))


_qs_solve.register_autograd(_solve_backward, setup_context=_solve_setup)


@torch.library.custom_op("semisep::qs_matvec", mutates_args=())
def _qs_matvec(alpha: torch.Tensor, p: torch.Tensor, q: torch.Tensor, a: torch.Tensor,
               g: torch.Tensor, h: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return _t(K.matvec_kernel(*(_np(t) for t in (alpha, p, q, a, g, h, b, x))))


@_qs_matvec.register_fake
def _(alpha, p, q, a, g, h, b, x):
    B = max(t.shape[0] for t in (alpha, p, q, a, g, h, b, x))
    return alpha.new_empty((B,) + tuple(x.shape[1:]))


def _matvec_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _matvec_backward(ctx, ybar):
    alpha, p, q, a, g, h, b, x = ctx.saved_tensors
    ac_, pc, qc, acc, gc, hc, bc, xc = (_npc(t) for t in (alpha, p, q, a, g, h, b, x))
    yb = _np(ybar)
    xbar = K.matvec_kernel(ac_, gc, hc, bc, pc, qc, acc, yb)  # A^T ybar (conjugated A)
    galpha = np.sum(yb * xc, axis=-1)
    gp, gq, ga = K.bilinear_grad_kernel(yb, xc, pc, qc, acc)
    gg, gh, gb = K.bilinear_grad_kernel(xc, yb, gc, hc, bc)
    out = (galpha, gp, gq, ga, gg, gh, gb, xbar)
    return tuple(_reduce(_t(o), like) for o, like in zip(out, (alpha, p, q, a, g, h, b, x),
                                                           strict=True))


_qs_matvec.register_autograd(_matvec_backward, setup_context=_matvec_setup)


# --------------------------------------------------------------------------------------------
# the engine interface
# --------------------------------------------------------------------------------------------
def _wants_grad(*ts: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in ts)


def _chunk_length(chunk_length: int | None) -> int | None:
    if chunk_length is not None and int(chunk_length) < 1:
        raise ValueError(f"chunk_length must be a positive integer, got {chunk_length!r}")
    return chunk_length


def kernel_ran(operation: str, *tensors: torch.Tensor, method: str = "auto") -> str:
    """The kernel the dispatch below runs for ``operation`` (``"factor"``, ``"solve"``,
    ``"inverse_diagonal"``, ``"matvec"``) on ``tensors``: ``"sequential"`` (the numba kernels,
    through the custom ops on CPU tensors), ``"chunked"`` (the scan form; off the CPU, and on
    CPU for an inverse diagonal that needs a gradient) or ``"loop"`` (the portable torch loop),
    for the operator's ``method``."""
    device = next((t.device.type for t in tensors if t.device.type != "cpu"), "cpu")
    return select_quasiseparable_kernel(operation, method, device_type=device,
                                             needs_grad=_wants_grad(*tensors))


def factor(alpha, p, q, a, g, h, b, pivmin, *, method="auto", chunk_length=None):
    """``(d, qt, ht, guarded (NumPy), last_small (NumPy), delta)``; the numba kernel on CPU."""
    ins = (alpha, p, q, a, g, h, b)
    kernel = kernel_ran("factor", *ins, method=method)
    if kernel == "sequential":
        d, qt, ht, guarded, last_small, _, delta = _qs_factor(*ins, pivmin, _wants_grad(*ins))
        return d, qt, ht, guarded.numpy(), last_small.numpy(), delta
    if kernel == "chunked":
        return scan.factor_scan(*ins, pivmin, L=_chunk_length(chunk_length))
    return factor_loop(alpha, p, q, a, g, h, b, pivmin)


def solve(d, qt, ht, p, a, g, b, f, transpose=False, *, method="auto", chunk_length=None):
    """``A^{-1} f`` from the factors (``transpose``: ``A^{-T} f``, no gradient)."""
    ins = (d, qt, ht, p, a, g, b, f)
    kernel = kernel_ran("solve", *ins, method=method)
    if kernel == "sequential":
        if transpose:
            return _t(K.solve_factored_kernel(*(_np(x) for x in ins), True))
        return _qs_solve(*ins)
    if kernel == "chunked":
        return scan.solve_scan(*ins, transpose, L=_chunk_length(chunk_length))
    return solve_loop(*ins, transpose)


def inverse_diagonal(d, qt, ht, p, a, g, b, *, method="auto", chunk_length=None):
    """``diag(A^{-1})``; with gradients (or off CPU) the chunked scan form."""
    ins = (d, qt, ht, p, a, g, b)
    kernel = kernel_ran("inverse_diagonal", *ins, method=method)
    if kernel == "sequential" and not _wants_grad(*ins):
        return _t(K.inverse_diagonal_kernel(*(_np(x) for x in ins)))
    if kernel == "chunked":
        return scan.inverse_diagonal_scan(*ins, L=_chunk_length(chunk_length))
    return inverse_diagonal_loop(*ins)


def matvec(alpha, p, q, a, g, h, b, x, *, method="auto", chunk_length=None):
    """``A x``."""
    ins = (alpha, p, q, a, g, h, b, x)
    kernel = kernel_ran("matvec", *ins, method=method)
    if kernel == "sequential":
        return _qs_matvec(*ins)
    if kernel == "chunked":
        return scan.matvec_scan(*ins, L=_chunk_length(chunk_length))
    return matvec_loop(*ins)


# --------------------------------------------------------------------------------------------
# the portable path: torch ops, a Python loop over N vectorised over the batch
# --------------------------------------------------------------------------------------------
def _at(x: torch.Tensor, i: int) -> torch.Tensor:
    """Step i of a transition array (N axis of length N or 1)."""
    return x[:, i if x.shape[1] > 1 else 0]


def _mv(A: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (A @ x[..., None])[..., 0]


def factor_loop(alpha, p, q, a, g, h, b, pivmin):
    """The LU recursion of :func:`semisep.backends.numpy.quasiseparable.factor_kernel`."""
    B = max(x.shape[0] for x in (alpha, p, q, a, g, h, b))
    n, rl, ru = alpha.shape[1], p.shape[2], g.shape[2]
    M = alpha.new_zeros((B, rl, ru))
    ds, qts, hts, deltas = [], [], [], []
    guarded = torch.zeros(B, dtype=torch.int64)
    last_small = torch.zeros(B, dtype=torch.bool)
    piv = pivmin.to(alpha.device)
    for i in range(n):
        u = _mv(M, g[:, i])
        v = _mv(M.mT, p[:, i])
        s = alpha[:, i] - (p[:, i] * u).sum(-1)
        small = s.detach().abs() < piv
        if i == n - 1:
            last_small = (s.detach().abs() < 4.0 * piv).cpu()
        if bool(small.any()):
            guarded += small.cpu().to(torch.int64)
            mag = s.detach().abs()
            unit = torch.where(mag > 0, s / torch.where(mag > 0, mag, 1.0), torch.ones_like(s))
            s_raw = s
            s = torch.where(small, piv * unit, s)
            deltas.append((s - s_raw).detach().expand(B))
        else:
            deltas.append(torch.zeros_like(s.detach()).expand(B))
        qt = (q[:, i] - _mv(_at(a, i), u)) / s[:, None]
        ht = h[:, i] - _mv(_at(b, i), v)
        M = _at(a, i) @ M @ _at(b, i).mT + qt[:, :, None] * ht[:, None, :]
        ds.append(s.expand(B))
        qts.append(qt.expand(B, rl))
        hts.append(ht.expand(B, ru))
    return (torch.stack(ds, 1), torch.stack(qts, 1), torch.stack(hts, 1), guarded.numpy(),
            last_small.numpy(), torch.stack(deltas, 1))


def solve_loop(d, qt, ht, p, a, g, b, f, transpose=False):
    """The two sweeps of :func:`semisep.backends.numpy.quasiseparable.solve_factored_kernel`."""
    if transpose:
        P1, Q1, A1, P2, Q2, A2 = g, ht, b, qt, p, a
    else:
        P1, Q1, A1, P2, Q2, A2 = p, qt, a, ht, g, b
    n = f.shape[1]
    B = max(x.shape[0] for x in (d, qt, ht, p, a, g, b, f))
    k = f.shape[2]
    phi = f.new_zeros((B, P1.shape[2], k)).to(d.dtype)
    ys = []
    for i in range(n):
        y = f[:, i] - (P1[:, i, :, None] * phi).sum(1)
        if transpose:
            y = y / d[:, i, None]
        phi = _at(A1, i) @ phi + Q1[:, i, :, None] * y[:, None, :]
        ys.append(y)
    psi = phi.new_zeros((B, P2.shape[2], k))
    xs: list[Any] = [None] * n
    for i in range(n - 1, -1, -1):
        x = ys[i] - (P2[:, i, :, None] * psi).sum(1)
        if not transpose:
            x = x / d[:, i, None]
        psi = _at(A2, i).mT @ psi + Q2[:, i, :, None] * x[:, None, :]
        xs[i] = x
    return torch.stack(xs, 1)


def inverse_diagonal_loop(d, qt, ht, p, a, g, b):
    """The backward recursion of :func:`semisep.backends.numpy.quasiseparable.
    inverse_diagonal_kernel`."""
    n = d.shape[1]
    B = max(x.shape[0] for x in (d, qt, ht, p, a, g, b))
    Psi = d.new_zeros((B, g.shape[2], p.shape[2]))
    out: list[Any] = [None] * n
    for i in range(n - 1, -1, -1):
        inv = 1 / d[:, i]
        out[i] = ((1 + (ht[:, i] * _mv(Psi, qt[:, i])).sum(-1)) * inv).expand(B)
        if i == 0:
            break
        ah = _at(a, i) - qt[:, i, :, None] * p[:, i, None, :]
        bh = _at(b, i) - (ht[:, i] * inv[:, None])[:, :, None] * g[:, i, None, :]
        Psi = bh.mT @ Psi @ ah + g[:, i, :, None] * (p[:, i] * inv[:, None])[:, None, :]
    return torch.stack(out, 1)


def matvec_loop(alpha, p, q, a, g, h, b, x):
    """``A x`` by the two state sweeps of :func:`semisep.backends.numpy.quasiseparable.
    matvec_kernel`."""
    n = x.shape[1]
    B = max(t.shape[0] for t in (alpha, p, q, a, g, h, b, x))
    y = [alpha[:, i, None] * x[:, i] for i in range(n)]
    st = x.new_zeros((B, p.shape[2], x.shape[2])).to(alpha.dtype)
    for i in range(n):
        y[i] = y[i] + (p[:, i, :, None] * st).sum(1)
        st = _at(a, i) @ st + q[:, i, :, None] * x[:, i, None, :]
    st = st.new_zeros((B, g.shape[2], x.shape[2]))
    for i in range(n - 1, -1, -1):
        y[i] = y[i] + (h[:, i, :, None] * st).sum(1)
        st = _at(b, i).mT @ st + g[:, i, :, None] * x[:, i, None, :]
    return torch.stack([yi.expand(B, x.shape[2]) for yi in y], 1)
