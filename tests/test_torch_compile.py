"""torch.compile of the Tridiagonal operations (semisep/backends/torch/ops.py).

Under tracing, ``resolvent_diagonal``, ``logdet`` and ``solve`` become one opaque custom op
each (``semisep::tridiagonal_call``, with ``semisep::tridiagonal_call_backward`` as its
vector-Jacobian product).  The oracle is the eager call on the same inputs: values and
gradients must agree to rounding (the op runs the eager code itself; only the surrounding
elementwise ops are compiled).  Most tests use ``backend="aot_eager"`` (the graph through
AOTAutograd without code generation, quick); one runs inductor.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import semisep as ss  # noqa: E402
from semisep.errors import NonFiniteError, SingularMatrixError  # noqa: E402

RTOL = 1e-12


def _problem(N=7, seed=0, cplx_z=True):
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    d = (torch.rand(2, N, generator=g, dtype=f64) - 2.5).requires_grad_()
    lo = (0.5 + torch.rand(N - 1, generator=g, dtype=f64)).requires_grad_()
    up = (0.5 + torch.rand(2, N - 1, generator=g, dtype=f64)).requires_grad_()
    if cplx_z:
        z = torch.tensor([[0.1 + 0.5j], [-0.3 + 0.2j], [0.7 + 1.0j]], requires_grad=True)
    else:
        z = torch.tensor([[0.4], [-0.1], [0.25]], dtype=f64, requires_grad=True)
    b = torch.randn(3, 2, N, 2, dtype=f64, generator=g).requires_grad_()
    return d, lo, up, z, b


def _ops(d, lo, up, z, b):
    """The three operations on a non-symmetric batched T (batch (2,)), a batch of z (3, 1)
    and right-hand sides (3, 2, N, 2): results of batch shape (3, 2)."""
    T = ss.Tridiagonal(d, lo, up)
    G = T.resolvent_diagonal(z)
    x = T.solve(b, z)
    out = [G, x]
    if z.is_complex():
        out.append(T.logdet(z))
    return out


def _loss(*args):
    total = 0
    for y in _ops(*args):
        total = total + (torch.view_as_real(y) if y.is_complex() else y).sin().sum()
    return total


def _grads(fn, args):
    args = [a.detach().clone().requires_grad_() for a in args]
    outs = fn(*args)
    loss = sum((torch.view_as_real(y) if y.is_complex() else y).sin().sum() for y in outs)
    loss.backward()
    return [o.detach() for o in outs], [a.grad for a in args]


@pytest.mark.parametrize("cplx_z", [True, False])
def test_fullgraph_values_and_gradients_match_eager(cplx_z):
    """fullgraph=True: no graph break anywhere in the three operations (constructor included);
    values and the gradients w.r.t. diag, both off-diagonals, z and b equal eager's."""
    args = _problem(cplx_z=cplx_z)
    want_out, want_g = _grads(_ops, args)
    got_out, got_g = _grads(torch.compile(_ops, fullgraph=True, backend="aot_eager"), args)
    assert len(got_out) == (3 if cplx_z else 2)
    for a, w in zip(got_out + got_g, want_out + want_g, strict=True):
        assert a.dtype == w.dtype and a.shape == w.shape
        torch.testing.assert_close(a, w, rtol=RTOL, atol=0)


def test_inductor_fullgraph_matches_eager():
    """The default backend (inductor, C++ code generation) on the issue's loss: real diag,
    shared off-diagonal of ones, complex tensor z, all three operations."""
    def loss(d, z):
        T = ss.Tridiagonal(d, torch.ones(d.shape[-1] - 1, dtype=d.dtype))
        return (T.resolvent_diagonal(z).abs().sum() + T.logdet(z).real
                + T.solve(torch.ones_like(d), z).real.sum())

    d = torch.linspace(-2.5, -1.5, 6, dtype=torch.float64)
    z = torch.tensor(0.1 + 0.5j)
    res = []
    for fn in (loss, torch.compile(loss, fullgraph=True)):
        dd, zz = d.clone().requires_grad_(), z.clone().requires_grad_()
        val = fn(dd, zz)
        val.backward()
        res.append((val.detach(), dd.grad, zz.grad))
    for a, w in zip(res[1], res[0], strict=True):
        torch.testing.assert_close(a, w, rtol=RTOL, atol=0)


def test_no_recompile_on_new_values_of_the_same_shapes():
    """One frame compiled for two calls with fresh tensors (new values, same shapes/dtypes);
    the graph holds one custom op per operation."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm

    torch.compile(_ops, backend=backend, fullgraph=True)(*_problem())
    calls = [n for g in graphs for n in g.graph.nodes
             if n.target is torch.ops.semisep.tridiagonal_call.default]
    assert [n.args[0] for n in calls] == ["resolvent_diagonal", "solve", "logdet"]
    torch._dynamo.reset()
    cnt = CompileCounterWithBackend("aot_eager")
    fn = torch.compile(_loss, backend=cnt, fullgraph=True)
    for seed in (1, 2):
        fn(*_problem(seed=seed)).backward()
    assert cnt.frame_count == 1
    # a new N recompiles (the fake op's shapes follow it) and still matches eager
    args = _problem(N=11, seed=3)
    want_out, want_g = _grads(_ops, args)
    got_out, got_g = _grads(torch.compile(_ops, backend=cnt, fullgraph=True), args)
    for a, w in zip(got_out + got_g, want_out + want_g, strict=True):
        torch.testing.assert_close(a, w, rtol=RTOL, atol=0)


def test_errors_raise_from_the_compiled_call():
    """The eager checks run inside the op: NaN in diag (the constructor's deferred check), and
    a singular T - zI, raise the eager errors."""
    def f(d, z):
        return ss.Tridiagonal(d, torch.ones(2, dtype=d.dtype)).resolvent_diagonal(z)

    fn = torch.compile(f, fullgraph=True, backend="aot_eager")
    z = torch.tensor(0.5j)
    with pytest.raises(NonFiniteError, match="diag"):
        fn(torch.tensor([1.0, float("nan"), 2.0], dtype=torch.float64), z)
    # [[0, 1, 0], [1, 0, 1], [0, 1, 0]] has eigenvalue 0
    with pytest.raises(SingularMatrixError):
        fn(torch.zeros(3, dtype=torch.float64), torch.tensor(0.0 + 0.0j))


def test_range_scaling_inside_the_op():
    """Entries far beyond the kernels' safe range are scaled by a power of two in the eager
    code; the compiled call gives the same values and gradients."""
    def f(d, z):
        return ss.Tridiagonal(d, torch.full((4,), 1e250, dtype=d.dtype)).resolvent_diagonal(z)

    d = torch.linspace(-3e250, 2e250, 5, dtype=torch.float64)
    z = torch.tensor(1e249 + 5e249j, dtype=torch.complex128)
    want_out, want_g = _grads(lambda d, z: [f(d, z)], [d, z])
    got_out, got_g = _grads(lambda d, z: [torch.compile(f, fullgraph=True, backend="aot_eager")(d, z)],
                            [d, z])
    for a, w in zip(got_out + got_g, want_out + want_g, strict=True):
        torch.testing.assert_close(a, w, rtol=RTOL, atol=0)


def test_python_scalar_z_and_indices():
    """A Python complex z keeps its weak typing (float32 T -> complex64), and ``indices``
    selects entries, inside the fullgraph."""
    def f(d):
        T = ss.Tridiagonal(d, torch.ones(5, dtype=d.dtype))
        return T.resolvent_diagonal(0.25 + 0.5j, indices=[4, 0, 2]), T.logdet(1j)

    d = torch.linspace(-1.0, 1.0, 6, dtype=torch.float32)
    want = f(d)
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(d)
    for a, w in zip(got, want, strict=True):
        assert a.dtype == w.dtype == torch.complex64
        torch.testing.assert_close(a, w, rtol=1e-6, atol=0)


def test_value_dependent_cases_break_the_graph_and_match_eager():
    """``logdet`` of a real T - zI (real or complex result by the determinants' signs) and
    ``return_info=True`` (NumPy arrays) run the eager code behind a graph break: fine without
    fullgraph, an error with it."""
    def f(d, z):
        T = ss.Tridiagonal(d, torch.ones(d.shape[-1] - 1, dtype=d.dtype))
        G, info = T.resolvent_diagonal(z, return_info=True)
        return T.logdet(z), G, info.pivots_guarded.sum()

    d = torch.linspace(-2.5, 1.5, 6, dtype=torch.float64)
    for z in (torch.tensor(0.3, dtype=torch.float64), torch.tensor(-5.0, dtype=torch.float64)):
        want = f(d, z)
        got = torch.compile(f, backend="aot_eager")(d, z)
        assert got[0].dtype == want[0].dtype and got[2] == want[2]
        torch.testing.assert_close(got[0], want[0], rtol=RTOL, atol=0)
        torch.testing.assert_close(got[1], want[1], rtol=RTOL, atol=0)
    assert want[0].dtype == torch.float64  # z = -5: T - zI positive definite: real result
    torch._dynamo.reset()  # else the cached graph-broken frames of f are reused
    with pytest.raises(Exception, match="disable"):
        torch.compile(f, fullgraph=True, backend="aot_eager")(d, z)


def test_custom_ops_pass_opcheck():
    """torch.library.opcheck: schema, fake (meta) outputs against the real ones, the autograd
    registration, and AOT dispatch, for the three operations."""
    d, lo, up, z, b = (a.detach() for a in _problem())
    z = z.requires_grad_()
    d = d.requires_grad_()
    op = torch.ops.semisep.tridiagonal_call.default
    base = dict(z_scalar=[0.0, 0.0], z_kind=0, indices=None, method="auto",
                check_finite_op=True, check_finite=True)
    for which, bb in (("resolvent_diagonal", None), ("logdet", None), ("solve", b)):
        args = (which, d, lo, up, z)
        kwargs = dict(base, b=bb)
        torch.library.opcheck(op, args, kwargs)


# semisep.nn.BirmanSchwingerCore under torch.compile(fullgraph=True): tests/test_nn_compile.py


def test_deferred_check_follows_the_transpose_and_double_backward_raises():
    """``T.T`` of an operator built under tracing keeps the finiteness check; a second
    derivative through the compiled call raises (as eager's does), never a silent zero."""
    def f(d, z):
        T = ss.Tridiagonal(d, torch.ones(2, dtype=d.dtype), torch.full((2,), 2.0, dtype=d.dtype))
        return T.T.resolvent_diagonal(z).abs().sum()

    fn = torch.compile(f, fullgraph=True, backend="aot_eager")
    z = torch.tensor(0.5j)
    with pytest.raises(NonFiniteError, match="diag"):
        fn(torch.tensor([1.0, float("nan"), 2.0], dtype=torch.float64), z)
    d = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64, requires_grad=True)
    (gd,) = torch.autograd.grad(fn(d, z), d, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        gd.sum().backward()


# --------------------------------------------------------------------------------------------
# the kernel ops generated from their descriptions (semisep/backends/torch/autograd.py)
# --------------------------------------------------------------------------------------------
def _kernel_cases(method, dtype=torch.complex128, seed=5, B=2, N=9):
    """``(name, defined op, args)`` for each of the five described kernels: a diagonally
    dominant ``alpha``, ``pivmin`` tiny, chunk length 4 (several chunks)."""
    from semisep.backends.torch import autograd as A

    g = torch.Generator().manual_seed(seed)
    rdt = torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32
    cdt = torch.complex128 if rdt == torch.float64 else torch.complex64

    def t(*shape, dt=dtype):
        return torch.randn(*shape, generator=g, dtype=dt)

    pm = torch.full((B,), 1e-30, dtype=rdt)
    shift = t(B, dt=cdt) + 0.5j
    cases = [("resolvent_diagonal", A.RESOLVENT_DIAGONAL, (t(B, N) + 3, t(B, N - 1), pm, method, 4)),
             ("logdet", A.LOGDET, (t(B, N) + 3, t(B, N - 1), pm, method, 4)),
             ("solve", A.SOLVE, (t(B, N) + 3, t(B, N - 1), t(B, N - 1), t(B, N, 2), pm, method, 4))]
    if method == "sequential":
        cases.append(("resolvent_diagonal_shifted", A.RESOLVENT_DIAGONAL_SHIFTED,
                      (t(B, N, dt=rdt), shift, t(B, N - 1, dt=rdt).abs(), pm)))
    else:
        cases.append(("resolvent_diagonal_shifted_chunked", A.RESOLVENT_DIAGONAL_SHIFTED_CHUNKED,
                      (t(B, N, dt=rdt), shift, t(B, N - 1, dt=rdt).abs(), pm, 4)))
    return cases


def _with_grad(args):
    """The differentiable tensor arguments (all but ``pivmin``, the last tensor) requiring grad."""
    n_tensors = sum(isinstance(a, torch.Tensor) for a in args)
    out, k = [], 0
    for a in args:
        if isinstance(a, torch.Tensor):
            k += 1
            a = a.detach().clone().requires_grad_(k < n_tensors)
        out.append(a)
    return out


def _kernel_loss(op, args):
    y = op(*args)[0]
    return (torch.view_as_real(y) if y.is_complex() else y).sin().sum()


@pytest.mark.parametrize("dtype", [torch.complex128, torch.float64], ids=str)
@pytest.mark.parametrize("method", ["sequential", "chunked"])
def test_kernel_ops_pass_opcheck(method, dtype):
    """Every op :func:`define` generated: schema, fake outputs (shapes, dtypes, strides) against
    the real ones, the autograd registration, and AOT dispatch through the backward op and
    its fake rule."""
    for name, op, args in _kernel_cases(method, dtype):
        if dtype == torch.float64 and "shifted" in name:
            continue  # the shift forms take a complex shift; covered by the complex128 run
        torch.library.opcheck(op.forward_op, tuple(_with_grad(args)))


@pytest.mark.parametrize("method", ["sequential", "chunked"])
def test_kernel_ops_compile_fullgraph_and_match_eager(method):
    """``torch.compile(fullgraph=True)`` of each kernel op called directly: one graph with the
    forward op, values bitwise and gradients to rounding equal to eager; fresh values of the
    same shapes compile nothing new."""
    from torch._dynamo.testing import CompileCounterWithBackend

    for name, op, args in _kernel_cases(method):
        torch._dynamo.reset()
        cnt = CompileCounterWithBackend("aot_eager")
        fn = torch.compile(lambda *a, op=op: _kernel_loss(op, a), backend=cnt, fullgraph=True)
        for seed in (5, 6):
            args = next(c for c in _kernel_cases(method, seed=seed) if c[0] == name)[2]
            eager, comp = _with_grad(args), _with_grad(args)
            want = _kernel_loss(op, eager)
            got = fn(*comp)
            assert torch.equal(got, want), name
            want.backward()
            got.backward()
            for a, w in zip(comp, eager, strict=True):
                if isinstance(a, torch.Tensor) and a.requires_grad:
                    torch.testing.assert_close(a.grad, w.grad, rtol=RTOL, atol=0)
        assert cnt.frame_count == 1, name


@pytest.mark.parametrize("method", ["sequential", "chunked"])
def test_kernel_ops_grad_is_the_eager_gradient(method):
    """``torch.func.grad`` through each generated autograd Function (called directly, not via
    an operator) gives the eager gradient bit for bit; a second ``grad`` raises."""
    for name, op, args in _kernel_cases(method):
        x0, rest = args[0], list(args[1:])

        def f(x, op=op, rest=rest):
            return _kernel_loss(op, [x, *rest])

        got = torch.func.grad(f)(x0)
        x = x0.clone().requires_grad_()
        f(x).backward()
        assert torch.equal(got, x.grad), name
        with pytest.raises(RuntimeError, match="double backward"):
            torch.func.grad(lambda y, f=f: torch.func.grad(f)(y).abs().sum())(x0)
