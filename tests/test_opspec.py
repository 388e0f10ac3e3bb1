"""The op generator of semisep/backends/torch/opspec.py on what the five kernel ops do not use:
several differentiable results, an optional tensor input, a batching rule, a schema default.

A toy op ``semisep::opspec_toy(x, w?, s) -> (y1 = s x w, y2 = x^2, count)`` (``w`` None:
``y1 = s x``; ``count`` a non-differentiable flag) described once and compared with plain
torch autograd of the same expressions: eager and ``torch.func`` gradients with either or both
results used, ``torch.vmap`` (also of ``grad``) against a loop, ``torch.compile(fullgraph=True)``
and ``torch.library.opcheck``.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from semisep.backends.torch.opspec import OpSpec, define  # noqa: E402


def _forward(x, w, s, tag):
    y1 = x * s if w is None else x * w * s
    return y1, x * x, torch.full(x.shape[:1], tag, dtype=torch.int64)


def _fake(x, w, s, tag):
    shape = torch.broadcast_shapes(x.shape, x.shape if w is None else w.shape)
    dt = x.dtype if w is None else torch.promote_types(x.dtype, w.dtype)
    count = x.new_empty(shape[:1], dtype=torch.int64)
    return x.new_empty(shape, dtype=dt), x.new_empty(shape, dtype=dt), count


def _backward(grads, saved, opts, needs, dtypes):
    """Holomorphic: ``dL/dx = g1 s w + 2 g2 x``, ``dL/dw = g1 s x`` (a None cotangent is zero)."""
    g1, g2 = grads
    x, w, s = saved["x"], saved["w"], opts["s"]
    dx = None
    if g1 is not None:
        dx = g1 * s if w is None else g1 * w * s
    if g2 is not None:
        dx = 2 * g2 * x if dx is None else dx + 2 * g2 * x
    dw = None if (w is None or g1 is None) else g1 * x * s
    if dx is not None and dx.shape != x.shape:  # x broadcast against w: sum it back
        dx = dx.sum_to_size(x.shape)
    if dw is not None and dw.shape != w.shape:
        dw = dw.sum_to_size(w.shape)
    return dx, dw


TOY = define(OpSpec(
    name="opspec_toy",
    schema="(Tensor x, Tensor? w, float s, int tag=7) -> (Tensor y1, Tensor y2, Tensor count)",
    differentiable=("x", "w"), returned=3, result_grads=2, save=("x", "w"),
    forward=_forward, fake=_fake, backward=_backward,
    grad_shapes=lambda s: (s["x"].shape, None if s["w"] is None else s["w"].shape),
    vmap_inputs=lambda t: t,  # elementwise: the vmapped dimension first broadcasts as it is
))


def _plain(x, w, s):
    return (x * s if w is None else x * w * s), x * x


def _loss(y1, y2, which):
    parts = {"both": (y1, y2), "first": (y1,), "second": (y2,)}[which]
    return sum((torch.view_as_real(y) if y.is_complex() else y).sin().sum() for y in parts)


def _data(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, generator=g, dtype=dtype)
    w = torch.randn(3, 5, generator=g, dtype=dtype)
    return x, w


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=str)
@pytest.mark.parametrize("which", ["both", "first", "second"])
@pytest.mark.parametrize("with_w", [True, False])
def test_eager_and_func_grad_equal_plain_autograd(dtype, which, with_w):
    x0, w0 = _data(dtype)
    w0 = w0 if with_w else None
    x = x0.clone().requires_grad_()
    w = None if w0 is None else w0.clone().requires_grad_()
    y1, y2, count = TOY(x, w, 0.5)
    assert count.dtype == torch.int64 and int(count[0]) == 7 and not count.requires_grad
    leaves = [t for t in (x, w) if t is not None]
    got = torch.autograd.grad(_loss(y1, y2, which), leaves, allow_unused=True)
    xr = x0.clone().requires_grad_()
    wr = None if w0 is None else w0.clone().requires_grad_()
    ref_leaves = [t for t in (xr, wr) if t is not None]
    want = torch.autograd.grad(_loss(*_plain(xr, wr, 0.5), which), ref_leaves, allow_unused=True)
    for a, b in zip(got, want, strict=True):
        if b is None:  # y2 alone does not depend on w: a zero gradient
            assert torch.equal(a, torch.zeros_like(w0))
        else:
            torch.testing.assert_close(a, b, rtol=1e-14, atol=0)
    if with_w:
        fg = torch.func.grad(lambda x, w: _loss(*TOY(x, w, 0.5)[:2], which), argnums=(0, 1))(x0, w0)
        for a, b in zip(fg, want, strict=True):
            torch.testing.assert_close(a, torch.zeros_like(x0) if b is None else b, rtol=1e-14, atol=0)


def test_second_derivative_raises():
    x0, w0 = _data(torch.float64)
    x = x0.clone().requires_grad_()
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(_loss(*TOY(x, w0, 0.5)[:2], "both"), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.func.grad(lambda y: torch.func.grad(
            lambda x: _loss(*TOY(x, w0, 0.5)[:2], "both"))(y).sum())(x0)


@pytest.mark.parametrize("with_w", [True, False])
def test_vmap_and_per_sample_grad_equal_a_loop(with_w):
    x0, w0 = _data(torch.complex128)
    w1 = w0[0] if with_w else None  # not vmapped: broadcast to every sample

    def f(x):
        return TOY(x, w1, 0.5)[:2]

    got = torch.vmap(f)(x0)
    for k in range(2):
        torch.testing.assert_close(got[k], torch.stack([f(x)[k] for x in x0]), rtol=1e-14, atol=0)
    grad = torch.func.grad(lambda x: _loss(*f(x), "both"))
    torch.testing.assert_close(torch.vmap(grad)(x0), torch.stack([grad(x) for x in x0]),
                               rtol=1e-14, atol=0)
    if with_w:  # per-sample gradients of the unbatched input too
        gw = torch.func.grad(lambda x, w: _loss(*TOY(x, w, 0.5)[:2], "first"), argnums=1)
        torch.testing.assert_close(torch.vmap(gw, in_dims=(0, None))(x0, w1),
                                   torch.stack([gw(x, w1) for x in x0]), rtol=1e-14, atol=0)


def test_compile_fullgraph_and_opcheck():
    from torch._dynamo.testing import CompileCounterWithBackend

    cnt = CompileCounterWithBackend("aot_eager")
    fn = torch.compile(lambda x, w: _loss(*TOY(x, w, 0.5)[:2], "both"), backend=cnt, fullgraph=True)
    for seed in (0, 1):
        x0, w0 = _data(torch.complex128, seed)
        xs = [x0.clone().requires_grad_() for _ in range(2)]
        got, want = fn(xs[0], w0), _loss(*TOY(xs[1], w0, 0.5)[:2], "both")
        assert torch.equal(got, want)
        got.backward()
        want.backward()
        torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-14, atol=0)
    assert cnt.frame_count == 1
    x0, w0 = _data(torch.complex128)
    for w in (w0.clone().requires_grad_(), None):
        torch.library.opcheck(TOY.forward_op, (x0.clone().requires_grad_(), w, 0.5))
        torch.library.opcheck(TOY.forward_op, (x0.clone().requires_grad_(), w, 0.5, 3))
