"""The torch backend's differentiable kernels: each described once (:class:`OpSpec`), every
frontend generated from the description (:func:`define`).

A description gives the op's schema (tensor inputs, options, outputs), which inputs are
differentiable, which outputs are the call's result and which are residuals for the
backward, what the backward saves, the forward and backward callables, the conjugation rule
for complex tensors and the fake (meta) shape rule.  :func:`define` builds from it

* the custom op ``semisep::<name>`` (``torch.library.custom_op``, with ``register_fake`` and
  ``register_autograd``) and its vector-Jacobian product ``semisep::<name>_backward`` (with
  its own fake rule), so ``torch.compile``, ``torch.export`` and ``torch.library.opcheck``
  see two opaque nodes;
* two ``torch.autograd.Function`` s running the same forward and backward callables without
  the dispatcher: one for eager calls (``forward(ctx, ...)``, no per-call signature binding)
  and one with ``setup_context``, the form ``torch.func`` accepts.

Calling the :class:`DefinedOp` picks the frontend: the forward op under ``torch.compile`` /
``torch.export``, the ``setup_context`` Function under a ``torch.func`` transform, the eager
Function otherwise.  (:mod:`semisep.backends.torch.ops` wraps whole operator calls; its
recomputation on a worker thread reaches these ops eagerly.)

The backward passes are the O(N) recipes of docs/mathematics.md: they save only O(N) tensors
and run the chunked affine scan (or the compiled scans on CPU).  Conjugation rules:

* ``"holomorphic"``: torch hands the backward ``grad_output = dL/d conj(y)``-style cotangents;
  the generated backward passes ``gbar = conj(grad_output)`` to the recipe, which returns
  holomorphic derivatives ``dL/dx``, and conjugates them.
* ``"kernel"``: the compiled kernel conjugates in registers (no conjugated copies); the recipe
  takes and returns torch's convention.

Either way a real input gets the real part, cast to its dtype.  Double backward is not
supported: the eager backward raises under ``create_graph=True`` (a gradient that carries no
graph would make every second derivative through it a silent zero); under a ``torch.func``
transform and on the compiled path the backward's own node raises when differentiated.
Forward-mode AD raises (:func:`_reject_forward_ad` at the call, the Functions' ``jvp``).
``method="reference"`` instead differentiates through its plain loop with ordinary
autograd, to any order and in forward mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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

_DOUBLE_BACKWARD = (
    "semisep: double backward (create_graph=True, hessian, a gradient penalty, a second "
    "torch.func.grad) is not supported through the O(N) kernels; use method='reference' (plain "
    "torch ops, differentiable to any order) or torch.autograd.functional with create_graph=False")

_transforms_active = torch._C._are_functorch_transforms_active


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




# --------------------------------------------------------------------------------------------
# the description and the generator
# --------------------------------------------------------------------------------------------
_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


@dataclass(frozen=True)
class OpSpec:
    """One differentiable kernel, described once; :func:`define` builds its frontends.

    ``name``: the ops are ``semisep::<name>`` and ``semisep::<name>_backward``.
    ``schema``: the forward's torch schema without the name, e.g. ``"(Tensor alpha, Tensor
    beta, str method) -> (Tensor G, Tensor gL)"``; its non-tensor arguments are options passed
    on to the backward.  ``differentiable``: the inputs that get gradients, in order.
    ``returned``: the first ``returned`` outputs are the call's result, the rest residuals for
    the backward; of the result only the first ``result_grads`` outputs are differentiable
    (the rest are flags; one differentiable result, ``result_grads=1``, is what
    :func:`define` supports).  ``save``: the input and output names the backward reads.
    ``forward(*inputs) -> outputs`` (a tuple, every output a tensor, none aliasing an input;
    the residuals are made contiguous).  ``fake(*inputs) -> outputs``: empty tensors of the
    outputs' shapes, dtypes and strides (contiguous).
    ``backward(grads, saved, options, needs, dtypes) -> one tensor or None per
    differentiable input``: ``grads`` the result's cotangents (conjugated per ``conjugation``),
    ``saved`` and ``options`` dicts by name, ``needs`` which gradients are wanted, ``dtypes``
    the differentiable inputs' dtypes.  ``grad_shapes(saved)``: the differentiable inputs'
    shapes, for the backward's fake rule.  ``conjugation``: ``"holomorphic"`` or ``"kernel"``
    (module docstring).
    """

    name: str
    schema: str
    differentiable: tuple[str, ...]
    returned: int
    result_grads: int
    save: tuple[str, ...]
    forward: Callable[..., tuple]
    fake: Callable[..., tuple]
    backward: Callable[..., tuple]
    grad_shapes: Callable[[dict], tuple]
    conjugation: str = "holomorphic"


class DefinedOp:
    """The frontends :func:`define` built from one :class:`OpSpec`: ``forward_op`` and
    ``backward_op`` (the custom ops), ``eager_function`` and ``function`` (autograd Functions
    running the same forward and backward callables without the dispatcher hop; the second in
    the ``setup_context`` form that ``torch.func`` accepts).  Calling it runs, under
    ``torch.compile`` / ``torch.export``, the forward op with its registered autograd (dynamo
    does not trace a Function's ``jvp``); under a ``torch.func`` transform ``function``;
    otherwise ``eager_function``; and returns the result outputs (the residuals dropped)."""

    def __init__(self, spec: OpSpec, forward_op: Any, backward_op: Any, eager_function: Any,
                 function: Any) -> None:
        self.spec, self.forward_op, self.backward_op = spec, forward_op, backward_op
        self.eager_function, self.function = eager_function, function

    def __call__(self, *args: Any) -> tuple:
        if torch.compiler.is_compiling():  # the op with its registered autograd: one graph node
            return self.forward_op(*args)[: self.spec.returned]
        if _transforms_active():
            return self.function.apply(*args)[: self.spec.returned]
        return self.eager_function.apply(*args)[: self.spec.returned]


def _conj(g: torch.Tensor) -> torch.Tensor:
    return g.conj() if g.is_complex() else g


def _schema_type(t: str) -> str:
    """A parsed argument type back in schema syntax (``Optional[int]`` is ``int?``)."""
    return t[len("Optional["):-1] + "?" if t.startswith("Optional[") else t


def define(spec: OpSpec) -> DefinedOp:
    """Register ``spec``'s custom ops and build its autograd Function (module docstring)."""
    if spec.result_grads != 1:
        raise ValueError("one differentiable result per op (result_grads=1)")
    if spec.conjugation not in ("holomorphic", "kernel"):
        raise ValueError(f"conjugation must be 'holomorphic' or 'kernel', got {spec.conjugation!r}")
    parsed = torch._C.parse_schema(f"semisep::{spec.name}{spec.schema}")
    args = [(a.name, _schema_type(str(a.type))) for a in parsed.arguments]
    names = [n for n, _ in args]
    outs = [r.name for r in parsed.returns]
    options = [(n, t) for n, t in args if not t.startswith("Tensor")]
    opt_idx = [names.index(n) for n, _ in options]
    diff_idx = [names.index(n) for n in spec.differentiable]
    where = [("in", names.index(n)) if n in names else ("out", outs.index(n)) for n in spec.save]
    holo = spec.conjugation == "holomorphic"

    def fwd_impl(*inputs):
        out = spec.forward(*inputs)  # residuals contiguous (a chunk layout's padded view is
        return out[: spec.returned] + tuple(r.contiguous() for r in out[spec.returned:])  # not)

    fwd = torch.library.custom_op(f"semisep::{spec.name}", fwd_impl, mutates_args=(),
                                  schema=spec.schema)
    fwd.register_fake(spec.fake)

    opt_schema = "".join(f", {t} {n}" for n, t in options)
    bwd_schema = f"(Tensor[] grads, Tensor[] saved{opt_schema}, int[] dtypes, bool[] needs) -> Tensor[]"

    opt_names = tuple(n for n, _ in options)

    def vjp(grads, saved, opts, dtypes, needs):
        """The gradients (None where not needed) by the conjugation rule, cast to the inputs'
        dtypes (codes in ``dtypes``)."""
        gs = [_conj(g) for g in grads] if holo else list(grads)
        dts = [_DTYPES[c] for c in dtypes]
        raw = spec.backward(gs, dict(zip(spec.save, saved, strict=True)),
                            dict(zip(opt_names, opts, strict=True)), needs, dts)
        res: list[torch.Tensor | None] = []
        for g, need, dt in zip(raw, needs, dts, strict=True):
            if not need or g is None:
                res.append(None)
                continue
            g = _conj(g) if holo else g
            if not dt.is_complex and g.is_complex():  # a real input gets the real part
                g = g.real
            res.append(g.to(dt))
        return res

    def bwd_impl(grads, saved, *rest):
        res = vjp(grads, saved, rest[:-2], rest[-2], list(rest[-1]))
        return [saved[0].new_empty(0) if g is None else g for g in res]  # no None in Tensor[]

    bwd = torch.library.custom_op(f"semisep::{spec.name}_backward", bwd_impl, mutates_args=(),
                                  schema=bwd_schema)

    @bwd.register_fake
    def _(grads, saved, *rest):
        shapes = spec.grad_shapes(dict(zip(spec.save, saved, strict=True)))
        return [saved[0].new_empty(s, dtype=_DTYPES[c]) if need else saved[0].new_empty(0)
                for s, c, need in zip(shapes, rest[-2], rest[-1], strict=True)]

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*[inputs[i] if kind == "in" else output[i] for kind, i in where])
        ctx.options = tuple(inputs[i] for i in opt_idx)
        ctx.dtypes = [_DTYPES.index(inputs[i].dtype) for i in diff_idx]
        ctx.mark_non_differentiable(*output[spec.result_grads:])
        ctx.set_materialize_grads(False)  # no zero cotangents made for the residuals

    n_grads, n_saved = spec.result_grads, len(spec.save)

    def _first_order(ctx, *grads):
        raise RuntimeError(_DOUBLE_BACKWARD)

    bwd.register_autograd(_first_order)  # the compiled path's double backward raises too

    # the backward inside a torch.func transform, whose backward runs with grad mode on and the
    # inputs tracked: a node whose own backward raises (first order only, as in eager)
    def backward_forward(*a):
        grads, saved, rest = a[:n_grads], a[n_grads:n_grads + n_saved], a[n_grads + n_saved:]
        return tuple(bwd_impl(list(grads), list(saved), *rest))

    backward_function = type(f"{spec.name}_backward_function", (torch.autograd.Function,), {
        "forward": staticmethod(backward_forward),
        "setup_context": staticmethod(lambda ctx, inputs, output: None),
        "backward": staticmethod(_first_order),
    })

    def backward_by(run):
        """The Function's backward, the vector-Jacobian product computed by ``run``."""
        def backward(ctx, *grads):
            needs = [bool(ctx.needs_input_grad[i]) for i in diff_idx]
            res: list[Any] = [None] * len(names)
            if not any(needs) or grads[0] is None:  # None: the result's cotangent is zero
                return tuple(res)
            gs = run(grads[:n_grads], ctx.saved_tensors, ctx.options, ctx.dtypes, needs)
            for k, i in enumerate(diff_idx):
                if needs[k]:
                    res[i] = gs[k]
            return tuple(res)
        return backward

    def run_eager(grads, saved, options, dtypes, needs):
        if torch.is_grad_enabled():  # create_graph=True: raise now, not at the second backward
            raise RuntimeError(_DOUBLE_BACKWARD)
        return vjp(grads, saved, options, dtypes, needs)

    def run_transformed(grads, saved, options, dtypes, needs):
        return backward_function.apply(*grads, *saved, *options, dtypes, needs)

    def run_op(grads, saved, options, dtypes, needs):
        return bwd(list(grads), list(saved), *options, dtypes, needs)

    fwd.register_autograd(backward_by(run_op), setup_context=setup_context)

    def jvp(ctx, *tangents):
        raise NotImplementedError(
            "semisep: forward-mode AD (dual tensors, torch.func.jvp) is not supported by the "
            "O(N) kernels; use reverse mode, or method='reference' (plain torch ops)")

    def eager_forward(ctx, *inputs):
        out = fwd_impl(*inputs)
        setup_context(ctx, inputs, out)
        return out

    doc = f"``semisep::{spec.name}`` with its O(N) backward, generated by :func:`define`"
    # eager: forward(ctx, ...) (a setup_context Function binds its arguments by signature at
    # every call); torch.func accepts only the setup_context form
    eager_function = type(f"{spec.name}_eager_function", (torch.autograd.Function,), {
        "__doc__": doc + " (eager calls).", "forward": staticmethod(eager_forward),
        "backward": staticmethod(backward_by(run_eager)), "jvp": staticmethod(jvp),
    })
    function = type(f"{spec.name}_function", (torch.autograd.Function,), {
        "__doc__": doc + " (under torch.func transforms).",
        "forward": staticmethod(fwd_impl), "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward_by(run_transformed)), "jvp": staticmethod(jvp),
    })
    return DefinedOp(spec, fwd, bwd, eager_function, function)


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
    conjugation="kernel",
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
