"""One description per differentiable op (:class:`OpSpec`), every frontend generated from it
(:func:`define`).

A description gives the op's schema (tensor inputs, optional ones among them, options,
outputs), which inputs are differentiable, which outputs are the call's result (the first
``result_grads`` of them differentiable) and which are residuals for the backward, what the
backward saves, the forward and backward callables, the conjugation rule for complex tensors,
the fake (meta) shape rule and, optionally, the batching rule for ``torch.vmap``.
:func:`define` builds from it

* the custom op ``semisep::<name>`` (``torch.library.custom_op``, with ``register_fake`` and
  ``register_autograd``, and ``register_vmap`` where the description has a batching rule) and
  its vector-Jacobian product ``semisep::<name>_backward`` (with its own fake and batching
  rules), so ``torch.compile``, ``torch.export`` and ``torch.library.opcheck`` see two opaque
  nodes;
* two ``torch.autograd.Function`` s: one for eager calls (``forward(ctx, ...)``, no per-call
  signature binding) and one with ``setup_context``, the form ``torch.func`` accepts.  Both
  run the forward and backward callables without the dispatcher; where the description has a
  batching rule the ``setup_context`` one calls the two ops instead (its vmap rule is
  generated, so ``torch.vmap`` reaches the ops' batching rules).

Calling the :class:`DefinedOp` picks the frontend: the forward op under ``torch.compile`` /
``torch.export``, the ``setup_context`` Function under a ``torch.func`` transform, the eager
Function otherwise.

Conjugation rules:

* ``"holomorphic"``: torch hands the backward ``grad_output = dL/d conj(y)``-style cotangents;
  the generated backward passes ``gbar = conj(grad_output)`` to the recipe, which returns
  holomorphic derivatives ``dL/dx``, and conjugates them.
* ``"torch"``: the recipe takes and returns torch's convention (a compiled kernel that
  conjugates in registers, or ``torch.autograd.grad`` itself).

Either way a real input gets the real part, cast to its dtype.  Double backward is not
supported: the eager backward raises under ``create_graph=True`` (a gradient that carries no
graph would make every second derivative through it a silent zero); under a ``torch.func``
transform and on the compiled path the backward's own node raises when differentiated.
Forward-mode AD raises (:func:`reject_forward_ad` at the call, the Functions' ``jvp``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.autograd.forward_ad as _fwad

__all__ = ["DOUBLE_BACKWARD", "DefinedOp", "OpSpec", "define", "reject_forward_ad"]

DOUBLE_BACKWARD = (
    "semisep: double backward (create_graph=True, hessian, a gradient penalty, a second "
    "torch.func.grad) is not supported through the O(N) kernels; use method='reference' (plain "
    "torch ops, differentiable to any order) or torch.autograd.functional with create_graph=False")

_FORWARD_AD = ("semisep: forward-mode AD (dual tensors, torch.func.jvp, jacfwd) is not supported "
               "by the O(N) kernels; use reverse mode (grad, vjp, jacrev), or method='reference' "
               "(plain torch ops, which support it)")

_transforms_active = torch._C._are_functorch_transforms_active

#: dtype codes of the backward op's ``int[] dtypes`` (-1: an absent or non-float input, which
#: gets no gradient)
_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)
_CODE = {dt: k for k, dt in enumerate(_DTYPES)}


def reject_forward_ad(*xs) -> None:
    """Forward-mode AD (``torch.autograd.forward_ad``, ``torch.func.jvp``) is not implemented by
    the O(N) kernels: raise instead of dropping the tangent."""
    for x in xs:
        if isinstance(x, torch.Tensor) and _fwad.unpack_dual(x).tangent is not None:
            raise NotImplementedError(_FORWARD_AD)


@dataclass(frozen=True)
class OpSpec:
    """One differentiable op, described once; :func:`define` builds its frontends.

    ``name``: the ops are ``semisep::<name>`` and ``semisep::<name>_backward``.
    ``schema``: the forward's torch schema without the name, e.g. ``"(Tensor alpha, Tensor?
    beta, str method) -> (Tensor G, Tensor gL)"``; ``Tensor?`` inputs may be None; the
    non-tensor arguments are options passed on to the backward.  ``differentiable``: the
    inputs that get gradients, in order (an optional one that is None gets none).
    ``returned``: the first ``returned`` outputs are the call's result, the rest residuals for
    the backward; of the result the first ``result_grads`` outputs are differentiable (the
    rest are flags).  ``save``: the input and output names the backward reads (None where an
    optional input is).  ``forward(*inputs) -> outputs`` (a tuple, or one tensor for a
    one-output schema; none aliasing an input; the residuals are made contiguous).
    ``fake(*inputs) -> outputs``: empty tensors of the outputs' shapes, dtypes and strides
    (contiguous).  ``backward(grads, saved, options, needs, dtypes) -> one tensor or None per
    differentiable input`` (None: not needed, or zero): ``grads`` the differentiable
    results' cotangents (conjugated per ``conjugation``; None for a result that has none,
    never all None), ``saved`` and ``options`` dicts by name, ``needs`` which gradients
    are wanted, ``dtypes`` the differentiable inputs' dtypes (None for an absent one).
    ``grad_shapes(saved)``: the differentiable inputs' shapes (None for an absent one), for
    the backward's fake and batching rules.  ``conjugation``: ``"holomorphic"`` or
    ``"torch"`` (module docstring).

    ``vmap_inputs`` (optional, the batching rule): given the tensor inputs by name (None for
    an absent optional one), each with the vmapped dimension first (size ``V``, or 1 for an
    input that is not vmapped; in the backward, ``V`` for every input: expanded views),
    returns them such that one call of the op computes the ``V`` samples' outputs stacked
    along dimension 0 (e.g. padded with size-1 dimensions to the op's own batch rank).  The
    generated rules move the vmapped dimensions to the front, call the forward (backward) op
    on the rule's inputs (its saved tensors, with the cotangents expanded to ``V``) and
    reshape each gradient to ``(V, *per-sample input shape)``; so the saved tensors of a
    batchable op are its inputs, and nested ``vmap`` reaches the same rule again.
    """

    name: str
    schema: str
    differentiable: tuple[str, ...]
    returned: int
    result_grads: int
    save: tuple[str, ...]
    forward: Callable[..., Any]
    fake: Callable[..., Any]
    backward: Callable[..., Any]
    grad_shapes: Callable[[dict], tuple]
    conjugation: str = "holomorphic"
    vmap_inputs: Callable[[dict], dict] | None = None


class DefinedOp:
    """The frontends :func:`define` built from one :class:`OpSpec`: ``forward_op`` and
    ``backward_op`` (the custom ops), ``eager_function`` and ``function`` (autograd Functions;
    the second in the ``setup_context`` form that ``torch.func`` accepts).  Calling it runs,
    under ``torch.compile`` / ``torch.export``, the forward op with its registered autograd
    (dynamo does not trace a Function's ``jvp``); under a ``torch.func`` transform
    ``function``; otherwise ``eager_function``; and returns the result outputs (a tuple, the
    residuals dropped)."""

    def __init__(self, spec: OpSpec, forward_op: Any, backward_op: Any, eager_function: Any,
                 function: Any, single: bool = False) -> None:
        self.spec, self.forward_op, self.backward_op = spec, forward_op, backward_op
        self.eager_function, self.function = eager_function, function
        self._single = single  # a one-output schema: the op returns a tensor, not a tuple

    def __call__(self, *args: Any) -> tuple:
        if torch.compiler.is_compiling():  # the op with its registered autograd: one graph node
            out = self.forward_op(*args)
            return (out,) if self._single else out[: self.spec.returned]
        if _transforms_active():
            return self.function.apply(*args)[: self.spec.returned]
        return self.eager_function.apply(*args)[: self.spec.returned]


def _conj(g: torch.Tensor) -> torch.Tensor:
    return g.conj() if g.is_complex() else g


def _schema_type(t: str) -> str:
    """A parsed argument type back in schema syntax (``Optional[List[int]]`` is ``int[]?``)."""
    if t.startswith("Optional["):
        return _schema_type(t[len("Optional["):-1]) + "?"
    if t.startswith("List["):
        return _schema_type(t[len("List["):-1]) + "[]"
    return t


def _code(x: Any) -> int:
    return _CODE.get(x.dtype, -1) if isinstance(x, torch.Tensor) else -1


def _front(x: torch.Tensor | None, dim: int | None, size: int, expand: bool) -> torch.Tensor | None:
    """``x`` with its vmapped dimension first; one not vmapped gets a leading dimension of size
    1 or, with ``expand``, of ``size`` (a view)."""
    if x is None:
        return None
    if dim is None:
        return x.expand((size,) + tuple(x.shape)) if expand else x.unsqueeze(0)
    return x.movedim(dim, 0)


def define(spec: OpSpec) -> DefinedOp:
    """Register ``spec``'s custom ops and build its autograd Functions (module docstring)."""
    if not 1 <= spec.result_grads <= spec.returned:
        raise ValueError("result_grads must be between 1 and returned")
    if spec.conjugation not in ("holomorphic", "torch"):
        raise ValueError(f"conjugation must be 'holomorphic' or 'torch', got {spec.conjugation!r}")
    parsed = torch._C.parse_schema(f"semisep::{spec.name}{spec.schema}")
    args = [(a.name, _schema_type(str(a.type))) for a in parsed.arguments]
    names = [n for n, _ in args]
    outs = [r.name for r in parsed.returns]
    single = len(outs) == 1
    tensor_idx = [i for i, (_, t) in enumerate(args) if t.startswith("Tensor")]
    options = [(n, t) for n, t in args if not t.startswith("Tensor")]
    opt_idx = [names.index(n) for n, _ in options]
    opt_names = tuple(n for n, _ in options)
    diff_idx = [names.index(n) for n in spec.differentiable]
    where = [("in", names.index(n)) if n in names else ("out", outs.index(n)) for n in spec.save]
    holo = spec.conjugation == "holomorphic"
    n_grads, n_saved = spec.result_grads, len(spec.save)
    n_args = len(names)
    # trailing arguments left at their schema defaults may be dropped by the dispatcher
    defaults = tuple(a.default_value for a in parsed.arguments)

    def fwd_impl(*inputs):
        if len(inputs) < n_args:
            inputs = inputs + defaults[len(inputs):]
        out = spec.forward(*inputs)
        if single:
            return out
        # residuals contiguous (a chunk layout's padded view is not)
        return tuple(out[: spec.returned]) + tuple(r.contiguous() for r in out[spec.returned:])

    fwd = torch.library.custom_op(f"semisep::{spec.name}", fwd_impl, mutates_args=(),
                                  schema=spec.schema)
    def fake_impl(*inputs):
        if len(inputs) < n_args:
            inputs = inputs + defaults[len(inputs):]
        return spec.fake(*inputs)

    fwd.register_fake(fake_impl)

    opt_schema = "".join(f", {t} {n}" for n, t in options)
    bwd_schema = (f"(Tensor?[] grads, Tensor?[] saved{opt_schema}, int[] dtypes, bool[] needs) "
                  "-> Tensor[]")

    def finish(raw, needs, dts):
        """The recipe's gradients by the conjugation rule, cast to the inputs' dtypes; None
        where not needed."""
        res: list[torch.Tensor | None] = []
        for g, need, dt in zip(raw, needs, dts, strict=True):
            if not need or g is None:  # (a needed None: vjp makes it zero)
                res.append(None)
                continue
            g = _conj(g) if holo else g
            if not dt.is_complex and g.is_complex():  # a real input gets the real part
                g = g.real
            res.append(g.to(dt))
        return res

    def vjp(grads, saved, opts, dtypes, needs):
        """The gradients (None where not needed); ``dtypes`` the inputs' dtype codes."""
        gs = [None if g is None else _conj(g) for g in grads] if holo else list(grads)
        dts = [None if c < 0 else _DTYPES[c] for c in dtypes]
        sv = dict(zip(spec.save, saved, strict=True))
        res = finish(spec.backward(gs, sv, dict(zip(opt_names, opts, strict=True)), needs, dts),
                     needs, dts)
        if any(need and g is None for g, need in zip(res, needs, strict=True)):
            # a needed gradient the recipe left None (no path from the used results): zero
            like = _like(saved)
            res = [like.new_zeros(shape, dtype=dt) if need and g is None else g
                   for g, need, shape, dt in zip(res, needs, spec.grad_shapes(sv), dts, strict=True)]
        return res

    def _like(saved):
        return next(x for x in saved if x is not None)

    def bwd_impl(grads, saved, *rest):
        res = vjp(grads, saved, rest[:-2], rest[-2], list(rest[-1]))
        like = _like(saved)
        return [like.new_empty(0) if g is None else g for g in res]  # no None in Tensor[]

    bwd = torch.library.custom_op(f"semisep::{spec.name}_backward", bwd_impl, mutates_args=(),
                                  schema=bwd_schema)

    @bwd.register_fake
    def _(grads, saved, *rest):
        shapes = spec.grad_shapes(dict(zip(spec.save, saved, strict=True)))
        like = _like(saved)
        return [like.new_empty(s, dtype=_DTYPES[c]) if need else like.new_empty(0)
                for s, c, need in zip(shapes, rest[-2], rest[-1], strict=True)]

    if spec.vmap_inputs is not None:
        _register_vmap(spec, fwd, bwd, names, tensor_idx, single, defaults)

    def setup_context(ctx, inputs, output):
        if single:
            output = (output,)
        if len(inputs) < n_args:
            inputs = tuple(inputs) + defaults[len(inputs):]
        ctx.save_for_backward(*[inputs[i] if kind == "in" else output[i] for kind, i in where])
        ctx.options = tuple(inputs[i] for i in opt_idx)
        ctx.dtypes = [_code(inputs[i]) for i in diff_idx]
        ctx.mark_non_differentiable(*output[spec.result_grads:])
        ctx.set_materialize_grads(False)  # no zero cotangents made for the residuals

    def _first_order(ctx, *grads):
        raise RuntimeError(DOUBLE_BACKWARD)

    bwd.register_autograd(_first_order)  # the compiled path's double backward raises too

    # the backward inside a torch.func transform, whose backward runs with grad mode on and the
    # inputs tracked: a node whose own backward raises (first order only, as in eager)
    run_bwd = bwd if spec.vmap_inputs is not None else bwd_impl  # the op: its vmap rule

    def backward_forward(*a):
        grads, saved, rest = a[:n_grads], a[n_grads:n_grads + n_saved], a[n_grads + n_saved:]
        return tuple(run_bwd(list(grads), list(saved), *rest))

    backward_function = type(f"{spec.name}_backward_function", (torch.autograd.Function,), {
        "forward": staticmethod(backward_forward),
        "setup_context": staticmethod(lambda ctx, inputs, output: None),
        "backward": staticmethod(_first_order),
        "generate_vmap_rule": spec.vmap_inputs is not None,
    })

    def backward_by(run):
        """The Function's backward, the vector-Jacobian product computed by ``run``."""
        def backward(ctx, *grads):
            needs = [bool(ctx.needs_input_grad[i]) for i in diff_idx]
            res: list[Any] = [None] * len(names)
            grads = grads[:n_grads]
            if not any(needs) or all(g is None for g in grads):  # the cotangents are zero
                return tuple(res)
            gs = run(grads, ctx.saved_tensors, ctx.options, ctx.dtypes, needs)
            for k, i in enumerate(diff_idx):
                if needs[k]:
                    res[i] = gs[k]
            return tuple(res)
        return backward

    def run_eager(grads, saved, options, dtypes, needs):
        if torch.is_grad_enabled():  # create_graph=True: raise now, not at the second backward
            raise RuntimeError(DOUBLE_BACKWARD)
        return vjp(grads, saved, options, dtypes, needs)

    def run_transformed(grads, saved, options, dtypes, needs):
        return backward_function.apply(*grads, *saved, *options, dtypes, needs)

    def run_op(grads, saved, options, dtypes, needs):
        return bwd(list(grads), list(saved), *options, dtypes, needs)

    fwd.register_autograd(backward_by(run_op), setup_context=setup_context)

    def jvp(ctx, *tangents):
        raise NotImplementedError(_FORWARD_AD)

    def eager_forward(ctx, *inputs):
        out = fwd_impl(*inputs)
        setup_context(ctx, inputs, out)
        return (out,) if single else out

    run_fwd = fwd if spec.vmap_inputs is not None else fwd_impl  # the op: its vmap rule

    def transformed_forward(*inputs):
        out = run_fwd(*inputs)
        return (out,) if single else out

    def transformed_setup(ctx, inputs, output):
        setup_context(ctx, inputs, output[0] if single else output)

    doc = f"``semisep::{spec.name}`` with its backward, generated by :func:`define`"
    # eager: forward(ctx, ...) (a setup_context Function binds its arguments by signature at
    # every call); torch.func accepts only the setup_context form
    eager_function = type(f"{spec.name}_eager_function", (torch.autograd.Function,), {
        "__doc__": doc + " (eager calls).", "forward": staticmethod(eager_forward),
        "backward": staticmethod(backward_by(run_eager)), "jvp": staticmethod(jvp),
    })
    function = type(f"{spec.name}_function", (torch.autograd.Function,), {
        "__doc__": doc + " (under torch.func transforms).",
        "forward": staticmethod(transformed_forward),
        "setup_context": staticmethod(transformed_setup),
        "backward": staticmethod(backward_by(run_transformed)), "jvp": staticmethod(jvp),
        "generate_vmap_rule": spec.vmap_inputs is not None,
    })
    return DefinedOp(spec, fwd, bwd, eager_function, function, single)


def _register_vmap(spec: OpSpec, fwd: Any, bwd: Any, names: list[str], tensor_idx: list[int],
                   single: bool, defaults: tuple) -> None:
    """The two ops' ``register_vmap`` rules from ``spec.vmap_inputs`` (:class:`OpSpec`)."""
    tensor_names = [names[i] for i in tensor_idx]

    def fwd_vmap(info, in_dims, *args):
        size = info.batch_size
        if len(args) < len(names):  # trailing defaults dropped by the dispatcher
            in_dims = tuple(in_dims) + (None,) * (len(names) - len(args))
            args = args + defaults[len(args):]
        ins = spec.vmap_inputs({names[i]: _front(args[i], in_dims[i], size, False) for i in tensor_idx})
        new = list(args)
        for i, n in zip(tensor_idx, tensor_names, strict=True):
            new[i] = ins[n]
        out = fwd(*new)
        return out, (0 if single else (0,) * len(out))

    def bwd_vmap(info, in_dims, grads, saved, *rest):
        size = info.batch_size
        gdims, sdims = in_dims[0], in_dims[1]
        grads = [None if g is None else _front(g, d, size, True) for g, d in zip(grads, gdims, strict=True)]
        folded = spec.vmap_inputs({n: _front(x, d, size, True)  # expanded: one gradient per sample
                                   for n, x, d in zip(spec.save, saved, sdims, strict=True)})
        outs = bwd(grads, [folded[n] for n in spec.save], *rest)
        per_sample = {n: x if (x is None or d is None) else x.select(d, 0)
                      for n, x, d in zip(spec.save, saved, sdims, strict=True)}
        shapes = spec.grad_shapes(per_sample)
        res, out_dims = [], []
        for g, shape, need in zip(outs, shapes, rest[-1], strict=True):
            if not need:
                res.append(g)
                out_dims.append(None)
            else:  # drop the padding: the per-sample gradient has the per-sample input's shape
                res.append(g.reshape((size,) + tuple(shape)))
                out_dims.append(0)
        return res, out_dims

    fwd.register_vmap(fwd_vmap)
    bwd.register_vmap(bwd_vmap)
