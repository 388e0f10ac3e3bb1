"""The :class:`~semisep.Tridiagonal` operations as opaque custom ops: ``torch.compile``,
``torch.export`` and ``torch.func``.

Under a tracing compiler (``torch.compiler.is_compiling()``, true under ``torch.export`` too)
or a ``torch.func`` transform (``torch._C._are_functorch_transforms_active()``),
:meth:`TorchBackend.traced_call` sends ``Tridiagonal.resolvent_diagonal``, ``logdet`` and
``solve`` here instead of through the eager code, which reads values on the host (the
finiteness checks, the power-of-two range scaling, the singularity checks that raise) and calls
numba kernels that neither dynamo nor functorch can trace.  Each call
becomes one node of the graph:

* ``semisep::tridiagonal_call(which, diag, lower, upper, z, ...)`` runs the eager method
  ``which`` (``"resolvent_diagonal"``, ``"logdet"`` or ``"solve"``) on its inputs: every check,
  scaling and error of the eager path happens inside, on real values, with the same results
  (bitwise: it *is* the eager code).  ``register_fake`` gives the output's shape and dtype from
  the input metadata by the eager rules (broadcasting of ``T``'s batch, ``z`` and ``b``'s
  batch; ``result_dtype`` promotion; ``logdet`` complex).
* ``semisep::tridiagonal_call_backward(which, grad, ...)`` is its vector-Jacobian product:
  the eager method is run again with autograd on the needed inputs and
  ``torch.autograd.grad`` applied, so the gradients are those of the eager kernel ops
  (same O(N) backward kernels, same conjugation convention).  The forward is recomputed
  rather than saved, so nothing of the eager path's internal state crosses the op boundary;
  the price is one extra forward sweep in the backward.  A custom op's kernel runs below the
  autograd dispatch key, where no graph is recorded, so the recomputation runs on a worker
  thread (fresh dispatch state, grad mode on) and the caller waits for it.
  ``register_autograd`` wires the two.

``torch.func``: the forward kernel, too, runs on the worker thread while a transform is
active (the eager code asks the thread's transform stack, :meth:`TorchBackend.tracing`, and
would route the call back here; the stack is per-thread).  The ops are entered through
``_TransformCall``, an autograd Function with ``setup_context`` and the same backward
(``torch.func.grad`` refuses the Function that ``register_autograd`` generates, which has
none), whose backward calls ``_BackwardCall`` (first order only: its own backward raises).  Both ops have a
``register_vmap`` rule: with ``R`` the rank of the per-sample result's batch
(``broadcast(T's batch, z.shape, b's batch)``), every tensor input becomes ``(V | 1, 1, ..., 1,
*per-sample shape)`` with the vmapped dimension ``V`` first and size-1 dimensions up to batch
rank ``R``, and one call computes ``(V, *per-sample result)`` (out_dims 0) by the operators'
own broadcasting; ``b``'s vector/matrix reading (``torch.linalg.solve``'s rule) is that of the
per-sample shapes.  The backward rule expands unvmapped inputs to ``V`` so that each sample
gets its own gradient.  So ``grad``, ``grad_and_value``, ``vjp``, ``vmap`` (nested too) and
``vmap(grad)`` work; ``jvp`` (forward mode) and double backward raise, as in eager mode.

A Python-scalar ``z`` (or ``indices``) is a constant of the graph: another value compiles
again; pass ``z`` as a tensor to vary it without recompiling.

Not covered by the op: ``return_info=True`` (a :class:`~semisep.PivotInfo` of NumPy arrays),
``logdet`` of a real ``T - zI`` (its result is real or complex depending on the signs of the
determinants), and non-tensor arrays for ``z``, ``b`` or ``indices``.  Under ``torch.compile``
these keep the eager code, entered through ``torch.compiler.disable``: a graph break, so
``fullgraph=True`` raises; ``torch.export`` raises a RuntimeError naming what to export
instead.  Under ``torch.func`` host arrays become tensors; a real ``logdet`` is the op's
complex result made real when no imaginary part is nonzero (under ``vmap``: in the whole
vmapped batch); ``return_info=True`` adds the ``PivotInfo`` of a second, undifferentiated
eager call on the values under the transform's wrappers (``host_values``, which
``TorchBackend.to_numpy`` also uses for host reads) and raises under ``vmap``, where those
values are the whole batch rather than the sample's.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import torch

__all__ = ["host_values", "traced_call"]

_transforms_active = torch._C._are_functorch_transforms_active

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
           check_finite: bool, return_info: bool = False) -> Any:
    """The eager operator method on real tensors (outside any trace or transform)."""
    from ...tridiagonal import Tridiagonal

    T = Tridiagonal(diag, lower, upper, check_finite=check_finite_op)
    if which == "resolvent_diagonal":
        return T.resolvent_diagonal(z, indices=indices, method=method, check_finite=check_finite,
                                    return_info=return_info)
    if which == "logdet":
        return T.logdet(z, method=method, check_finite=check_finite, return_info=return_info)
    return T.solve(b, z, method=method, check_finite=check_finite, return_info=return_info)


_worker: concurrent.futures.ThreadPoolExecutor | None = None
_WORKER_NAME = "semisep-op"


def _worker_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _worker
    if _worker is None:
        _worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=_WORKER_NAME)
    return _worker


def _on_worker(fn, device: torch.device, *args: Any) -> Any:
    """``fn(*args)`` on the worker thread, the caller waiting: a fresh thread has its own
    dispatch state (grad mode on, no torch.func transform on its stack), on the caller's CUDA
    device and stream.  Exceptions propagate unchanged.  Called on the worker itself (nothing
    in semisep does), it runs inline rather than wait for itself."""
    if threading.current_thread().name.startswith(_WORKER_NAME):
        return fn(*args)
    run = fn
    if device.type == "cuda":
        stream = torch.cuda.current_stream(device)

        def run(*a):
            with torch.cuda.device(device), torch.cuda.stream(stream):
                return fn(*a)

    return _worker_pool().submit(run, *args).result()


# --------------------------------------------------------------------------------------------
# the forward op
# --------------------------------------------------------------------------------------------
@torch.library.custom_op("semisep::tridiagonal_call", mutates_args=())
def _call(which: str, diag: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor | None,
          z: torch.Tensor | None, z_scalar: list[float], z_kind: int, b: torch.Tensor | None,
          indices: list[int] | None, method: str, check_finite_op: bool,
          check_finite: bool) -> torch.Tensor:
    args = (which, diag, lower, upper, _decode_z(z, z_scalar, z_kind), b, indices, method,
            check_finite_op, check_finite)
    # below a torch.func transform the eager code would see the thread's transform stack (not
    # its inputs) and route back here: run it where that stack is empty
    out = _on_worker(_eager, diag.device, *args) if _transforms_active() else _eager(*args)
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
    return _on_worker(_vjp, diag.device, which, grad, ins, z_scalar, z_kind, indices, method, needs)


@_call_backward.register_fake
def _(which, grad, diag, lower, upper, z, z_scalar, z_kind, b, indices, method, needs):
    return [x.new_empty(x.shape) if (x is not None and need) else diag.new_empty(0)
            for x, need in zip((diag, lower, upper, z, b), needs, strict=True)]


def _setup(ctx, inputs, output):
    which, diag, lower, upper, z, z_scalar, z_kind, b, indices, method, _, _ = inputs
    ctx.save_for_backward(diag, lower, upper, z, b)
    ctx.args = (which, z_scalar, z_kind, indices, method)


def _backward(ctx, grad, vjp=None):
    which, z_scalar, z_kind, indices, method = ctx.args
    diag, lower, upper, z, b = ctx.saved_tensors
    ins = (diag, lower, upper, z, b)
    needs = [bool(ctx.needs_input_grad[i]) and ins[k] is not None
             for k, i in enumerate(_GRAD_INPUTS)]
    grads: list[Any] = [None] * 12
    if grad is None or not any(needs):
        return tuple(grads)
    out = (vjp or _call_backward)(which, grad, diag, lower, upper, z, z_scalar, z_kind, b,
                                  indices, method, needs)
    for k, i in enumerate(_GRAD_INPUTS):
        if needs[k]:
            grads[i] = out[k]
    return tuple(grads)


_call.register_autograd(_backward, setup_context=_setup)


class _BackwardCall(torch.autograd.Function):
    """:func:`_call_backward` inside a ``torch.func`` transform (whose backward runs with the
    inputs still tracked): first order only, as in eager mode."""

    generate_vmap_rule = True

    @staticmethod
    def forward(which, grad, diag, lower, upper, z, z_scalar, z_kind, b, indices, method, needs):
        return tuple(_call_backward(which, grad, diag, lower, upper, z, z_scalar, z_kind, b,
                                    indices, method, needs))

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            "semisep: double backward (a second torch.func.grad, hessian, jacrev of a "
            "gradient) is not supported through the O(N) kernels; use method='reference' "
            "(plain torch ops, differentiable to any order)")


class _TransformCall(torch.autograd.Function):
    """:func:`_call` with the same autograd rule, for ``torch.func`` transforms: the autograd
    Function that ``register_autograd`` generates defines no ``setup_context``, so
    ``torch.func.grad`` refuses it; this one does.  Its ``vmap`` rule is generated: the
    forward and backward are vmapped, reaching the ops' own ``register_vmap`` rules."""

    generate_vmap_rule = True

    @staticmethod
    def forward(which, diag, lower, upper, z, z_scalar, z_kind, b, indices, method,
                check_finite_op, check_finite):
        return _call(which, diag, lower, upper, z, z_scalar, z_kind, b, indices, method,
                     check_finite_op, check_finite)

    setup_context = staticmethod(_setup)

    @staticmethod
    def backward(ctx, grad):
        return _backward(ctx, grad, _BackwardCall.apply)

    @staticmethod
    def jvp(ctx, *tangents):
        raise NotImplementedError(
            "semisep: forward-mode AD (torch.func.jvp, jacfwd) is not supported by the O(N) "
            "kernels; use reverse mode (grad, vjp, jacrev), or method='reference'")


# --------------------------------------------------------------------------------------------
# torch.vmap: the vmapped dimension folded into the operators' own batch dimensions
# --------------------------------------------------------------------------------------------
def _front(x: torch.Tensor | None, dim: int | None, size: int, expand: bool) -> torch.Tensor | None:
    """``x`` with its vmapped dimension first; an input not vmapped gets a leading dimension of
    size 1 (broadcast) or, with ``expand``, of ``size`` (a view)."""
    if x is None:
        return None
    if dim is None:
        return x.expand((size,) + tuple(x.shape)) if expand else x.unsqueeze(0)
    return x.movedim(dim, 0)


def _fold(tensors: list, dims: list, size: int, expand: bool) -> list:
    """``diag, lower, upper, z, b`` (vmapped dimensions at ``dims``) as one batched call's
    arguments: each with the vmapped dimension first, then size-1 dimensions up to the rank
    ``R`` of the per-sample result's batch, then its own per-sample shape.  The operator's
    broadcasting of ``T``'s batch against ``z`` and ``b``'s batch then gives the per-sample
    batches stacked along dimension 0."""
    diag, lower, upper, z, b = (_front(x, d, size, expand) for x, d in zip(tensors, dims, strict=True))
    assert diag is not None and lower is not None
    op_rank = max(x.dim() - 2 for x in (diag, lower, upper) if x is not None)
    ranks = [diag.dim() - 2, lower.dim() - 2, None if upper is None else upper.dim() - 2,
             None if z is None else z.dim() - 1, None]
    if b is not None:  # torch.linalg.solve's rule on the per-sample shapes
        bs = tuple(b.shape[1:])
        ranks[4] = len(bs) - (1 if len(bs) == 1 or len(bs) == op_rank + 1 else 2)
    rank = max(r for r in ranks if r is not None)
    out = []
    for x, r in zip((diag, lower, upper, z, b), ranks, strict=True):
        out.append(None if x is None else x[(slice(None),) + (None,) * (rank - r)])
    return out


def _call_vmap(info, in_dims, which, diag, lower, upper, z, z_scalar, z_kind, b, indices, method,
               check_finite_op, check_finite):
    dims = [in_dims[i] for i in _GRAD_INPUTS]
    diag, lower, upper, z, b = _fold([diag, lower, upper, z, b], dims, info.batch_size, False)
    out = _call(which, diag, lower, upper, z, z_scalar, z_kind, b, indices, method, check_finite_op,
                check_finite)
    return out, 0


def _call_backward_vmap(info, in_dims, which, grad, diag, lower, upper, z, z_scalar, z_kind, b,
                        indices, method, needs):
    ins = [diag, lower, upper, z, b]
    dims = [in_dims[i + 1] for i in _GRAD_INPUTS]
    size = info.batch_size
    folded = _fold(ins, dims, size, True)  # expanded: one gradient per sample
    grad = _front(grad, in_dims[1], size, True)
    outs = _call_backward(which, grad, *folded[:4], z_scalar, z_kind, folded[4], indices, method,
                          needs)
    res, out_dims = [], []
    for g, x, d, need in zip(outs, ins, dims, needs, strict=True):
        if x is None or not need:
            res.append(g)
            out_dims.append(None)
        else:  # drop the padding: the per-sample gradient has the per-sample input's shape
            per_sample = tuple(x.shape) if d is None else tuple(x.movedim(d, 0).shape[1:])
            res.append(g.reshape((size,) + per_sample))
            out_dims.append(0)
    return res, out_dims


_call.register_vmap(_call_vmap)
_call_backward.register_vmap(_call_backward_vmap)


# --------------------------------------------------------------------------------------------
# the entry point from Tridiagonal
# --------------------------------------------------------------------------------------------
def traced_call(which: str, op: Any, *, z: Any, b: Any = None, indices: Any = None,
                method: str = "auto", check_finite: bool = True, return_info: bool = False) -> Any:
    """``op.<which>(...)`` under a tracing compiler or a ``torch.func`` transform: one
    :func:`_call` node where the arguments allow it (see the module docstring for the rest).
    ``op`` is a torch :class:`~semisep.Tridiagonal` whose constructor deferred its finiteness
    check to here (``op._deferred_check``)."""
    if which not in _WHICH:
        raise ValueError(f"which must be one of {_WHICH}, got {which!r}")
    exporting = torch.compiler.is_exporting()
    compiling = exporting or torch.compiler.is_compiling()
    if not compiling:  # a transform: host arrays become tensors (no graph to keep them out of)
        z, b, indices = _as_tensor_args(op, z, b, indices)
    scalar_z = isinstance(z, (bool, int, float, complex))
    ok = ((scalar_z or isinstance(z, torch.Tensor))
          and (which != "solve" or isinstance(b, torch.Tensor))
          and (indices is None or (isinstance(indices, (list, tuple))
                                   and all(isinstance(i, int) for i in indices))))
    real_logdet = which == "logdet" and not (  # complex T - zI (by result_dtype's promotion rule)
        op.diag.is_complex() or (z.is_complex() if isinstance(z, torch.Tensor) else isinstance(z, complex)))
    if compiling and (not ok or return_info or real_logdet):
        if exporting:
            raise _export_error(which, return_info, real_logdet)
        return _eager_disabled(which, op, z, b, indices, method, check_finite, return_info)
    if not ok:  # what the eager method rejects, it rejects here too (with its error)
        return _eager_disabled(which, op, z, b, indices, method, check_finite, return_info)
    zt, zs, kind = _encode_z(z)
    out = (_call if compiling else _TransformCall.apply)(which, op.diag, op.lower, op.upper, zt, zs, kind, b,
                None if indices is None else [int(i) for i in indices], method,
                bool(getattr(op, "_deferred_check", False)), bool(check_finite))
    if real_logdet:
        with torch._C._DisableFuncTorch():  # a host read of the plain values
            real = not bool((_unwrapped(out).imag != 0).any())
        if real:
            out = out.real  # every determinant positive (of the whole vmapped batch under vmap)
    if not return_info:
        return out
    return out, _info(which, op, zt if kind == 0 else _decode_z(None, zs, kind), b, indices,
                      method)


def _export_error(which: str, return_info: bool, real_logdet: bool) -> RuntimeError:
    why = ("return_info=True returns host arrays (a PivotInfo)" if return_info else
           "logdet of a real T - zI is real or complex depending on the determinants' signs"
           if real_logdet else "z, b and indices must be tensors, Python scalars or int lists")
    return RuntimeError(
        f"semisep: torch.export cannot hold Tridiagonal.{which} here: {why}, which a graph "
        "cannot express.  Export a module that calls it without return_info (and, for logdet, "
        "with a complex z or T); semisep.nn.BirmanSchwingerCore reads its diagnostics on the "
        "host and cannot be exported: export a module calling Tridiagonal(v - 2, ones)"
        ".resolvent_diagonal(z) instead, or use torch.compile")


def _unwrapped(x: Any, *, batched_error: str | None = None) -> Any:
    """The plain tensor under a ``torch.func`` transform's wrappers (the whole batch under
    ``vmap``); with ``batched_error``, a ValueError with that text if a vmap level wraps it."""
    F = torch._C._functorch
    while isinstance(x, torch.Tensor) and F.is_functorch_wrapped_tensor(x):
        if batched_error is not None and F.is_batchedtensor(x):
            raise ValueError(batched_error)
        x = F.get_unwrapped(x)
    return x


def host_values(x: Any) -> Any:
    """The values under a ``torch.func.grad``-type transform's wrappers, for host reads
    (diagnostics, conditioning checks); a ValueError under ``torch.vmap``, where the values
    under the wrapper are the whole batch, not the sample's."""
    return _unwrapped(x, batched_error=(
        "semisep: this operation reads values on the host (a check or diagnostic), which "
        "torch.vmap cannot batch; batch the operator (leading dimensions) instead of vmapping it"))


def _info(which: str, op: Any, z: Any, b: Any, indices: Any, method: str) -> Any:
    """The :class:`~semisep.PivotInfo` of the call under a transform: the eager method run
    again without autograd on the unwrapped inputs (host data, not differentiated)."""
    msg = (f"{which}(return_info=True) is not supported under torch.vmap: a PivotInfo holds "
           "host arrays of one call's batch; call without return_info inside vmap, or batch "
           "the operator instead of vmapping it")
    plain = [_unwrapped(x, batched_error=msg) for x in (op.diag, op.lower, op.upper, z, b)]

    def run():  # on the worker: no transform there, so detach() gives a plain tensor
        ins = [x.detach() if isinstance(x, torch.Tensor) else x for x in plain]
        with torch.no_grad():
            return _eager(which, *ins[:4], ins[4], indices, method, False, False, True)[1]

    return _on_worker(run, op.diag.device)


def _as_tensor_args(op: Any, z: Any, b: Any, indices: Any) -> tuple[Any, Any, Any]:
    """NumPy (or other host) ``z`` and ``b`` as tensors on the operator's device, ``indices``
    as a list of ints, as the eager method would take them."""
    import numpy as np

    bk = op.backend
    if not isinstance(z, (bool, int, float, complex, torch.Tensor)):
        z = bk.asarray(np.asarray(z), like=op.diag)
    if b is not None and not isinstance(b, torch.Tensor):
        b = bk.asarray(np.asarray(b), like=op.diag)
    if indices is not None and not isinstance(indices, (list, tuple)):
        arr = np.asarray(_unwrapped(indices, batched_error="indices must not be vmapped").cpu()
                         if isinstance(indices, torch.Tensor) else indices)
        if arr.ndim == 1 and arr.dtype.kind in "iu":
            indices = [int(i) for i in arr]
    elif indices is not None and all(isinstance(i, (int, np.integer)) for i in indices):
        indices = [int(i) for i in indices]
    return z, b, indices


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
