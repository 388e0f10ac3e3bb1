"""``torch.compile`` support: the :class:`~semisep.Tridiagonal` operations as opaque custom ops.

Under a tracing compiler (``torch.compiler.is_compiling()``) :meth:`TorchBackend.traced_call`
sends ``Tridiagonal.resolvent_diagonal``, ``logdet`` and ``solve`` here instead of through the
eager code, which reads values on the host (the finiteness checks, the power-of-two range
scaling, the singularity checks that raise) and calls numba kernels that dynamo cannot trace.
Each call becomes one node of the graph:

* ``semisep::tridiagonal_call(which, diag, lower, upper, z, ...)`` runs the eager method
  ``which`` (``"resolvent_diagonal"``, ``"logdet"`` or ``"solve"``) on its inputs: every check,
  scaling and error of the eager path happens inside, on real values, with the same results
  (bitwise: it *is* the eager code).  ``register_fake`` gives the output's shape and dtype from
  the input metadata by the eager rules (broadcasting of ``T``'s batch, ``z`` and ``b``'s
  batch; ``result_dtype`` promotion; ``logdet`` complex).
* ``semisep::tridiagonal_call_backward(which, grad, ...)`` is its vector-Jacobian product:
  the eager method is run again with autograd on the needed inputs and
  ``torch.autograd.grad`` applied, so the gradients are those of the eager autograd Functions
  (same O(N) backward kernels, same conjugation convention).  The forward is recomputed
  rather than saved, so nothing of the eager path's internal state crosses the op boundary;
  the price is one extra forward sweep in the backward.  A custom op's kernel runs below the
  autograd dispatch key, where no graph is recorded, so the recomputation runs on a worker
  thread (fresh dispatch state, grad mode on) and the caller waits for it.
  ``register_autograd`` wires the two.

A Python-scalar ``z`` (or ``indices``) is a constant of the graph: another value compiles
again; pass ``z`` as a tensor to vary it without recompiling.

Not covered (these keep the eager code, entered through ``torch.compiler.disable``: a graph
break, so ``fullgraph=True`` raises): ``return_info=True`` (a :class:`~semisep.PivotInfo` of
NumPy arrays), ``logdet`` of a real ``T - zI`` (its result is real or complex depending on the
signs of the determinants), and non-tensor arrays for ``z``, ``b`` or ``indices``.  Double
backward raises, as in eager mode.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

import torch

__all__ = ["traced_call"]

_WHICH = ("resolvent_diagonal", "logdet", "solve")
#: kinds of a Python-scalar z, encoded for the op schema as ``(re, im)`` plus a kind code
_Z_KINDS = {bool: 1, int: 2, float: 3, complex: 4}


def _encode_z(z: Any) -> tuple[torch.Tensor | None, list[float], int]:
    """``(tensor or None, [re, im], kind)``; kind 0 is a tensor."""
    if isinstance(z, torch.Tensor):
        return z, [0.0, 0.0], 0
    if isinstance(z, complex):
        return None, [z.real, z.imag], _Z_KINDS[complex]
    kind = _Z_KINDS[bool] if isinstance(z, bool) else _Z_KINDS[int] if isinstance(z, int) else _Z_KINDS[float]
    return None, [float(z), 0.0], kind


def _decode_z(z: torch.Tensor | None, zs: list[float], kind: int) -> Any:
    if kind == 0:
        return z
    re, im = zs
    return {1: lambda: bool(re), 2: lambda: int(re), 3: lambda: float(re),
            4: lambda: complex(re, im)}[kind]()


def _eager(which: str, diag, lower, upper, z, b, indices, method: str, check_finite_op: bool,
           check_finite: bool) -> torch.Tensor:
    """The eager operator method on real tensors (outside any trace)."""
    from ...tridiagonal import Tridiagonal

    T = Tridiagonal(diag, lower, upper, check_finite=check_finite_op)
    if which == "resolvent_diagonal":
        return T.resolvent_diagonal(z, indices=indices, method=method, check_finite=check_finite)
    if which == "logdet":
        return T.logdet(z, method=method, check_finite=check_finite)
    return T.solve(b, z, method=method, check_finite=check_finite)


# --------------------------------------------------------------------------------------------
# the forward op
# --------------------------------------------------------------------------------------------
@torch.library.custom_op("semisep::tridiagonal_call", mutates_args=())
def _call(which: str, diag: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor | None,
          z: torch.Tensor | None, z_scalar: list[float], z_kind: int, b: torch.Tensor | None,
          indices: list[int] | None, method: str, check_finite_op: bool,
          check_finite: bool) -> torch.Tensor:
    out = _eager(which, diag, lower, upper, _decode_z(z, z_scalar, z_kind), b, indices, method,
                 check_finite_op, check_finite)
    if which == "logdet" and not out.is_complex():  # not reached from traced_call (real T - zI)
        out = out.to(torch.complex64 if out.dtype == torch.float32 else torch.complex128)
    return out.contiguous()


def _out_meta(which: str, diag, lower, upper, z, z_scalar, z_kind, b, indices):
    """``(shape, dtype)`` of the forward op's output, by the eager rules (no values read)."""
    from ..._validation import broadcast_shapes, split_rhs
    from .. import get_backend

    bk = get_backend("torch")
    n = int(diag.shape[-1])
    op_shapes = {"diag": tuple(diag.shape[:-1]), "lower": tuple(lower.shape[:-1])}
    if upper is not None:
        op_shapes["upper"] = tuple(upper.shape[:-1])
    op_batch = broadcast_shapes(op_shapes)
    tdtype = bk.result_dtype(*(x for x in (diag, lower, upper) if x is not None))
    zval = _decode_z(z, z_scalar, z_kind)
    shapes = {"operator": op_batch, "z": tuple(z.shape) if z is not None else ()}
    dt_args = [diag.new_empty(0, dtype=tdtype), zval]
    tail: tuple[int, ...]
    if which == "solve":
        is_vec, b_batch, k = split_rhs(b, len(op_batch), n)
        shapes["b"] = b_batch
        dt_args.append(b)
        tail = (n,) if is_vec else (n, k)
    else:
        tail = (n if indices is None else len(indices),)
    batch = broadcast_shapes(shapes)
    dtype = bk.result_dtype(*dt_args)
    if which == "logdet":
        return batch, (torch.complex64 if dtype in (torch.float32, torch.complex64) else torch.complex128)
    return batch + tail, dtype


@_call.register_fake
def _(which, diag, lower, upper, z, z_scalar, z_kind, b, indices, method, check_finite_op,
      check_finite):
    shape, dtype = _out_meta(which, diag, lower, upper, z, z_scalar, z_kind, b, indices)
    return diag.new_empty(shape, dtype=dtype)


# --------------------------------------------------------------------------------------------
# the backward op: the eager VJP, recomputed on a worker thread
# --------------------------------------------------------------------------------------------
_GRAD_INPUTS = (1, 2, 3, 4, 7)  # diag, lower, upper, z, b among the forward op's arguments
_worker: concurrent.futures.ThreadPoolExecutor | None = None


def _grad_worker() -> concurrent.futures.ThreadPoolExecutor:
    global _worker
    if _worker is None:
        _worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="semisep-vjp")
    return _worker


def _vjp(which, grad, ins, z_scalar, z_kind, indices, method, needs):
    """Gradients of the eager method w.r.t. the inputs ``ins = (diag, lower, upper, z, b)``
    where ``needs``; an empty tensor elsewhere."""
    with torch.enable_grad():
        leaves = [None if x is None else x.detach().requires_grad_(need)
                  for x, need in zip(ins, needs, strict=True)]
        diag, lower, upper, z, b = leaves
        out = _eager(which, diag, lower, upper, _decode_z(z, z_scalar, z_kind), b, indices,
                     method, False, False)
        if which == "logdet" and not out.is_complex():
            out = out.to(grad.dtype)
        wrt = [x for x in leaves if x is not None and x.requires_grad]
        gs = iter(torch.autograd.grad(out, wrt, grad, allow_unused=True) if wrt else ())
    res = []
    for x in leaves:
        if x is None or not x.requires_grad:
            res.append(ins[0].new_empty(0))
        else:
            g = next(gs)
            # an input the result does not depend on has gradient zero
            res.append(torch.zeros_like(x) if g is None else g.contiguous())
    return res


@torch.library.custom_op("semisep::tridiagonal_call_backward", mutates_args=())
def _call_backward(which: str, grad: torch.Tensor, diag: torch.Tensor, lower: torch.Tensor,
                   upper: torch.Tensor | None, z: torch.Tensor | None, z_scalar: list[float],
                   z_kind: int, b: torch.Tensor | None, indices: list[int] | None, method: str,
                   needs: list[bool]) -> list[torch.Tensor]:
    ins = (diag, lower, upper, z, b)
    run = _vjp
    if diag.device.type == "cuda":  # the worker joins the caller's device and stream
        stream = torch.cuda.current_stream(diag.device)

        def run(*args):
            with torch.cuda.device(diag.device), torch.cuda.stream(stream):
                return _vjp(*args)

    return _grad_worker().submit(run, which, grad, ins, z_scalar, z_kind, indices, method,
                                 needs).result()


@_call_backward.register_fake
def _(which, grad, diag, lower, upper, z, z_scalar, z_kind, b, indices, method, needs):
    return [x.new_empty(x.shape) if (x is not None and need) else diag.new_empty(0)
            for x, need in zip((diag, lower, upper, z, b), needs, strict=True)]


def _setup(ctx, inputs, output):
    which, diag, lower, upper, z, z_scalar, z_kind, b, indices, method, _, _ = inputs
    ctx.save_for_backward(diag, lower, upper, z, b)
    ctx.args = (which, z_scalar, z_kind, indices, method)


def _backward(ctx, grad):
    which, z_scalar, z_kind, indices, method = ctx.args
    diag, lower, upper, z, b = ctx.saved_tensors
    ins = (diag, lower, upper, z, b)
    needs = [bool(ctx.needs_input_grad[i]) and ins[k] is not None
             for k, i in enumerate(_GRAD_INPUTS)]
    grads: list[Any] = [None] * 12
    if grad is None or not any(needs):
        return tuple(grads)
    out = _call_backward(which, grad, diag, lower, upper, z, z_scalar, z_kind, b, indices,
                         method, needs)
    for k, i in enumerate(_GRAD_INPUTS):
        if needs[k]:
            grads[i] = out[k]
    return tuple(grads)


_call.register_autograd(_backward, setup_context=_setup)


# --------------------------------------------------------------------------------------------
# the entry point from Tridiagonal
# --------------------------------------------------------------------------------------------
def traced_call(which: str, op: Any, *, z: Any, b: Any = None, indices: Any = None,
                method: str = "auto", check_finite: bool = True, return_info: bool = False) -> Any:
    """``op.<which>(...)`` under a tracing compiler: one :func:`_call` node where the arguments
    allow it, else the eager method behind ``torch.compiler.disable`` (see the module
    docstring).  ``op`` is a torch :class:`~semisep.Tridiagonal` whose constructor deferred its
    finiteness check to here (``op._deferred_check``)."""
    if which not in _WHICH:
        raise ValueError(f"which must be one of {_WHICH}, got {which!r}")
    scalar_z = isinstance(z, (bool, int, float, complex))
    ok = (not return_info and (scalar_z or isinstance(z, torch.Tensor))
          and (which != "solve" or isinstance(b, torch.Tensor))
          and (indices is None or (isinstance(indices, (list, tuple))
                                   and all(isinstance(i, int) for i in indices))))
    if ok and which == "logdet":  # complex T - zI (by result_dtype's promotion rule)
        ok = op.diag.is_complex() or (z.is_complex() if isinstance(z, torch.Tensor)
                                      else isinstance(z, complex))
    if not ok:
        return _eager_disabled(which, op, z, b, indices, method, check_finite, return_info)
    zt, zs, kind = _encode_z(z)
    return _call(which, op.diag, op.lower, op.upper, zt, zs, kind, b,
                 None if indices is None else [int(i) for i in indices], method,
                 bool(getattr(op, "_deferred_check", False)), bool(check_finite))


@torch.compiler.disable
def _eager_disabled(which, op, z, b, indices, method, check_finite, return_info):
    """The eager method, run outside the graph (a graph break)."""
    if getattr(op, "_deferred_check", False):
        from ..._validation import check_finite as require_finite

        require_finite(op.backend, diag=op.diag, lower=op.lower, upper=op.upper)
    if which == "resolvent_diagonal":
        return op.resolvent_diagonal(z, indices=indices, method=method, check_finite=check_finite,
                                     return_info=return_info)
    if which == "logdet":
        return op.logdet(z, method=method, check_finite=check_finite, return_info=return_info)
    return op.solve(b, z, method=method, check_finite=check_finite, return_info=return_info)
