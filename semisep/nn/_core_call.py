"""The structured computation of :class:`~semisep.nn.BirmanSchwingerCore`: the resolvent
diagonal of ``H = H0 + diag(v) [+ U V^T]`` with its precision policy, eager, checkpointed, or
as one opaque custom op under ``torch.compile`` / ``torch.export``.

* :func:`structured` is the eager computation (``precision`` policy included): the resolvent
  diagonal ``G`` (B, N), the guarded-pivot counts, the capacitance condition estimates and the
  rows recomputed in float64.  It reads values on the host (the pivot statistics, the upgrade
  decision, the singular fallback).
* :class:`CheckpointedCore` saves only ``v, U, V, z`` and recomputes :func:`structured` in
  backward.
* Under a tracing compiler the whole computation is the custom op ``semisep::bk_core_call``
  (:data:`BK_CORE_CALL`, described by an :class:`~semisep.backends.torch.opspec.OpSpec`): its
  kernel runs :func:`structured` on real values (every branch, warning and error of the eager
  path, the same values bit for bit) and returns the features ``[Re G, Im G]`` in ``v``'s
  dtype, with the statistics of ``G`` the diagnostics need (:func:`g_stats`); its backward
  runs :func:`structured` again with autograd and applies ``torch.autograd.grad`` (the op
  saves its inputs only: the checkpointed form, whatever the module's checkpointing flag,
  with gradients equal to the plain path's).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from ..backends.torch.ops import on_worker, recomputed_vjp
from ..backends.torch.opspec import OpSpec, define

__all__ = ["BK_CORE_CALL", "CheckpointedCore", "compiled_call", "compute_dtype", "g_stats",
           "structured"]


def _lowrank_class():
    import semisep as ss

    cls = getattr(ss, "TridiagonalPlusLowRank", None)
    if cls is None:
        raise ImportError("semisep.TridiagonalPlusLowRank is not available in this installation")
    return cls


def _as_real_tensor(x: Any, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    return t.to(device=like.device, dtype=torch.float64)


def compute_dtype(precision: str, v: torch.Tensor) -> torch.dtype:
    """The real dtype the computation runs in: ``precision``'s, or for ``"auto"`` float64 for
    a float64 ``v`` and float32 otherwise."""
    if precision == "float64":
        return torch.float64
    if precision == "float32":
        return torch.float32
    return torch.float64 if v.dtype == torch.float64 else torch.float32


def resolvent(v: torch.Tensor, U, V, z, real_dtype: torch.dtype):
    """``G`` (B, N) complex, guarded (B,) int64, capacitance condition (B,) float64 or an
    empty tensor, computed in ``real_dtype``'s precision."""
    import semisep as ss

    n = v.shape[-1]
    cdt = torch.complex64 if real_dtype == torch.float32 else torch.complex128
    vv = v.to(real_dtype)
    T = ss.Tridiagonal(vv - 2.0, torch.ones(n - 1, dtype=real_dtype, device=v.device))
    zz = z.to(cdt) if isinstance(z, torch.Tensor) else z
    B = v.shape[0]
    if U is not None:
        H = _lowrank_class()(T, U.to(real_dtype), V.to(real_dtype))
        G, info = H.resolvent_diagonal(zz, return_info=True)
        pivs = list(info.pivots.values())
        cond = _as_real_tensor(info.capacitance_cond, v).reshape(-1).expand(B)
    else:
        G, info = T.resolvent_diagonal(zz, return_info=True)
        pivs = [info]
        cond = torch.zeros(0, dtype=torch.float64, device=v.device)
    guarded = sum(np.broadcast_to(np.asarray(p.pivots_guarded), (B,)).astype(np.int64)
                  for p in pivs)
    guarded = torch.as_tensor(guarded, dtype=torch.int64, device=v.device)
    return G, guarded, cond


def structured(v, U, V, z, precision: str, threshold: float):
    """The whole structured computation, precision policy included.

    Returns ``(G, guarded, cond, upgraded)``: G (B, N) complex in the compute precision
    (complex128 where the whole batch fell back to float64), guarded (B,) int64, cond (B,)
    float64 (empty without a low-rank term), upgraded (B,) bool (rows recomputed in float64)."""
    from .. import errors

    SingularMatrixError = errors.SingularMatrixError
    ill = getattr(errors, "IllConditionedWarning", None)  # defined with TridiagonalPlusLowRank

    rdt = compute_dtype(precision, v)
    auto_low = precision == "auto" and rdt != torch.float64
    try:
        with warnings.catch_warnings():
            if auto_low and ill is not None:  # the policy below handles it: no warning
                warnings.simplefilter("ignore", ill)
            G, guarded, cond = resolvent(v, U, V, z, rdt)
    except SingularMatrixError:
        if not auto_low:
            raise
        # singular (T - zI or the capacitance matrix) to working precision in the low
        # precision: the whole batch is recomputed in float64 (and raises if still singular)
        G, guarded, cond = resolvent(v, U, V, z, torch.float64)
        return G, guarded, cond, torch.ones(v.shape[0], dtype=torch.bool, device=v.device)
    upgraded = torch.zeros(v.shape[0], dtype=torch.bool, device=v.device)
    if auto_low:
        with torch.no_grad():
            bad = (guarded > 0) | ~torch.isfinite(torch.view_as_real(G)).all(-1).all(-1)
            if cond.numel():
                bad = bad | ~(cond <= threshold)
        if bool(bad.any()):
            idx = torch.nonzero(bad).reshape(-1)
            zsub = z
            if isinstance(z, torch.Tensor) and z.dim() > 0:
                zsub = z.expand(v.shape[0])[idx]
            G2, g2, c2 = resolvent(v[idx], U, V, zsub, torch.float64)
            G = G.index_put((idx,), G2.to(G.dtype))
            guarded = guarded.clone()
            guarded[idx] = g2
            if cond.numel():
                cond = cond.clone()
                cond[idx] = c2
            upgraded = bad
    return G, guarded, cond, upgraded


def features_of(G: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[Re G, Im G]`` (B, N, 2) in ``dtype``."""
    return torch.stack([G.real, G.imag], dim=-1).to(dtype)


def g_stats(G: torch.Tensor) -> torch.Tensor:
    """``[all entries of G finite, max |G_ii|]`` as a float64 (2,) tensor (not read here)."""
    Gd = G.detach()
    finite = torch.isfinite(torch.view_as_real(Gd)).all()
    mx = Gd.abs().max() if Gd.numel() else torch.zeros((), dtype=torch.float64, device=G.device)
    return torch.stack([finite.to(torch.float64), mx.to(torch.float64)])


class CheckpointedCore(torch.autograd.Function):
    """Structure-aware checkpoint: saves only ``v, U, V, z`` and recomputes :func:`structured`
    (with the same precision policy) inside backward.  Gradients are those of the plain path:
    the same operations run, then ``torch.autograd.grad``.  ``z`` is a tensor, or None with the
    Python-scalar shift in ``zc`` (a Function's tensor slots take tensors; a constant shift is
    not differentiated)."""

    @staticmethod
    def forward(ctx, opts, v, U, V, z):
        zc, precision, threshold = opts
        with torch.no_grad():
            G, guarded, cond, upgraded = structured(v, U, V, zc if z is None else z, precision,
                                                    threshold)
        ctx.opts = opts
        ctx.save_for_backward(v, U, V, z)
        ctx.mark_non_differentiable(guarded, cond, upgraded)
        return G, guarded, cond, upgraded

    @staticmethod
    def backward(ctx, gG, _g1, _g2, _g3):
        zc, precision, threshold = ctx.opts
        saved = ctx.saved_tensors
        needs = ctx.needs_input_grad[1:]
        with torch.enable_grad():
            inputs = [None if x is None else x.detach().requires_grad_(bool(need))
                      for x, need in zip(saved, needs, strict=True)]
            v, U, V, z = inputs
            G = structured(v, U, V, zc if z is None else z, precision, threshold)[0]
            wrt = [x for x, need in zip(inputs, needs, strict=True) if x is not None and need]
            grads = iter(torch.autograd.grad(G, wrt, gG, allow_unused=True)) if wrt else iter(())
        out: list[Any] = [None]
        for x, need in zip(inputs, needs, strict=True):
            out.append(next(grads) if (x is not None and need) else None)
        return tuple(out)


# --------------------------------------------------------------------------------------------
# the compiled form: one custom op
# --------------------------------------------------------------------------------------------
_TENSORS = ("v", "U", "V", "z")


def _decode_z(z: torch.Tensor | None, zs: list[float]) -> Any:
    return z if z is not None else complex(zs[0], zs[1])


def _op_forward(v, U, V, z, z_scalar, precision, threshold):
    G, guarded, cond, upgraded = structured(v, U, V, _decode_z(z, z_scalar), precision, threshold)
    return (features_of(G, v.dtype), guarded, cond.contiguous(), upgraded, g_stats(G))


def _op_fake(v, U, V, z, z_scalar, precision, threshold):
    B, n = v.shape
    return (v.new_empty((B, n, 2)), v.new_empty((B,), dtype=torch.int64),
            v.new_empty((B if U is not None else 0,), dtype=torch.float64),
            v.new_empty((B,), dtype=torch.bool), v.new_empty((2,), dtype=torch.float64))


def _vjp(grad, ins, z_scalar, precision, threshold, needs):
    def compute(v, U, V, z):
        G = structured(v, U, V, _decode_z(z, z_scalar), precision, threshold)[0]
        return features_of(G, v.dtype)

    return recomputed_vjp(compute, ins, needs, grad)


def _op_backward(grads, saved, opts, needs, dtypes):
    """The eager VJP, recomputed with autograd on the worker thread (a custom op's kernel runs
    below the autograd key, where no graph is recorded)."""
    ins = tuple(saved[k] for k in _TENSORS)
    return on_worker(_vjp, ins[0].device, grads[0], ins, opts["z_scalar"], opts["precision"],
                     opts["threshold"], needs)


#: ``semisep::bk_core_call(v, U, V, z, z_scalar, precision, threshold)`` -> ``(features,
#: guarded, cond, upgraded, g_stats)``: :func:`structured` on real values (module docstring).
BK_CORE_CALL = define(OpSpec(
    name="bk_core_call",
    schema="(Tensor v, Tensor? U, Tensor? V, Tensor? z, float[] z_scalar, str precision, "
           "float threshold) -> (Tensor features, Tensor guarded, Tensor cond, Tensor upgraded, "
           "Tensor g_stats)",
    differentiable=_TENSORS, returned=5, result_grads=1, save=_TENSORS,
    forward=_op_forward, fake=_op_fake, backward=_op_backward,
    grad_shapes=lambda s: tuple(None if s[k] is None else tuple(s[k].shape) for k in _TENSORS),
    conjugation="torch",
))


def compiled_call(v, U, V, z, precision: str, threshold: float):
    """Under a tracing compiler: ``(features, guarded, cond, upgraded, g_stats)`` from one
    :data:`BK_CORE_CALL` node."""
    zt = z if isinstance(z, torch.Tensor) else None
    zs = [0.0, 0.0] if zt is not None else [complex(z).real, complex(z).imag]
    return BK_CORE_CALL(v, U, V, zt, zs, precision, float(threshold))
