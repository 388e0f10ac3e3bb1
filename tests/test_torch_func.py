"""torch.func transforms of the Tridiagonal operations and of BirmanSchwingerCore.

Inside a transform, ``resolvent_diagonal``, ``logdet`` and ``solve`` go through the custom op
``semisep::tridiagonal_call`` (semisep/backends/torch/ops.py): ``torch.func.grad``/``vjp`` use
its autograd rule, ``torch.vmap`` its batching rule (the vmapped dimension folded into the
operator's batch).  Oracles: eager autograd on the same inputs (gradients, rtol 1e-12) and a
Python loop over the vmapped dimension (values and per-sample gradients).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import semisep as ss  # noqa: E402
from semisep.errors import NonFiniteError, SingularMatrixError  # noqa: E402

RTOL = 1e-12
f64 = torch.float64
func = torch.func


def _close(a, w):
    assert a.dtype == w.dtype and a.shape == w.shape, (a.dtype, w.dtype, a.shape, w.shape)
    torch.testing.assert_close(a, w, rtol=RTOL, atol=0)


def _data(N=7, V=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = torch.rand(V, N, generator=g, dtype=f64) - 2.5
    lo = 0.5 + torch.rand(N - 1, generator=g, dtype=f64)
    up = 0.5 + torch.rand(N - 1, generator=g, dtype=f64)
    return D, lo, up


def _eager_grads(fn, args):
    args = [a.detach().clone().requires_grad_() for a in args]
    val = fn(*args)
    grads = torch.autograd.grad(val, args, allow_unused=True, materialize_grads=True)
    return val.detach(), grads


def _scalar(y):
    return (torch.view_as_real(y) if y.is_complex() else y).sin().sum()


OPS = {
    "resolvent_diagonal": lambda T, z, b: T.resolvent_diagonal(z),
    "resolvent_indices": lambda T, z, b: T.resolvent_diagonal(z, indices=[5, 0, 2]),
    "logdet": lambda T, z, b: T.logdet(z),
    "solve": lambda T, z, b: T.solve(b, z),
    "solve_matrix": lambda T, z, b: T.solve(torch.stack([b, 2 * b], -1), z),
}


@pytest.mark.parametrize("name", list(OPS))
def test_grad_and_vjp_equal_eager_autograd(name):
    """torch.func.grad / grad_and_value (argnums over diag, both off-diagonals, z, b) and
    torch.func.vjp give eager autograd's values and gradients."""
    D, lo, up = _data()
    d = D[0]
    z = torch.tensor(0.3 + 0.5j)
    b = torch.linspace(-1.0, 1.0, d.shape[-1], dtype=f64)

    def loss(d, lo, up, z, b):
        return _scalar(OPS[name](ss.Tridiagonal(d, lo, up), z, b))

    args = (d, lo, up, z, b)
    want_val, want = _eager_grads(loss, args)
    got = func.grad(loss, argnums=(0, 1, 2, 3, 4))(*args)
    for a, w in zip(got, want, strict=True):
        _close(a, w)
    got, val = func.grad_and_value(loss, argnums=(0, 3))(*args)
    _close(val, want_val)
    _close(got[0], want[0])
    _close(got[1], want[3])
    # vjp of the (complex, non-scalar) result with a complex cotangent
    out, pull = func.vjp(lambda d, z: OPS[name](ss.Tridiagonal(d, lo, up), z, b), d, z)
    cot = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
    dd, zz = d.clone().requires_grad_(), z.clone().requires_grad_()
    ref = OPS[name](ss.Tridiagonal(dd, lo, up), zz, b)
    _close(out, ref.detach())
    for a, w in zip(pull(cot), torch.autograd.grad(ref, (dd, zz), cot), strict=True):
        _close(a, w)


def test_real_logdet_keeps_its_real_or_complex_result():
    """``logdet`` of a real T - zI: real where every determinant is positive (as eager), and
    its gradient equals eager's."""
    D, lo, _ = _data()
    for shift in (-5.0, 0.3):
        def f(d, shift=shift):
            return ss.Tridiagonal(d, lo).logdet(torch.tensor(shift, dtype=f64))

        for d in (D[0], D):
            want = f(d)
            got = func.vmap(f)(d) if d.dim() == 2 else func.grad(lambda d: f(d).real.sum())(d)
            if d.dim() == 2:
                _close(got, torch.stack([f(x) for x in d]) if want.dtype == f64 else want)
            else:
                _, gw = _eager_grads(lambda d: f(d).real.sum(), [d])
                _close(got, gw[0])
    assert ss.Tridiagonal(D[0], lo).logdet(-5.0).dtype == f64


@pytest.mark.parametrize("name", list(OPS))
def test_vmap_over_potentials_equals_a_loop(name):
    """vmap over a batch of potentials (V, N), with z shared, z one per potential, and a
    right-hand side per potential; nested vmap over (W, V, N)."""
    D, lo, up = _data(V=4)
    b = torch.linspace(-1.0, 1.0, D.shape[-1], dtype=f64)
    zs = torch.tensor([0.3 + 0.5j, -0.2 + 0.1j, 0.5 + 1.0j, 0.1j])
    z0 = torch.tensor(0.3 + 0.5j)

    def f(d, z, b):
        return OPS[name](ss.Tridiagonal(d, lo, up), z, b)

    _close(func.vmap(f, in_dims=(0, None, None))(D, z0, b), torch.stack([f(d, z0, b) for d in D]))
    _close(func.vmap(f, in_dims=(0, 0, None))(D, zs, b),
           torch.stack([f(d, z, b) for d, z in zip(D, zs, strict=True)]))
    B = torch.stack([b * (k + 1) for k in range(4)])
    _close(func.vmap(f, in_dims=(None, 0, 0))(D[0], zs, B),
           torch.stack([f(D[0], z, bb) for z, bb in zip(zs, B, strict=True)]))
    # nested, the outer vmap over dimension 1
    W = torch.stack([D, D + 0.25])  # (2, 4, N)
    got = func.vmap(func.vmap(f, in_dims=(0, None, None)), in_dims=(1, None, None))(
        W.transpose(0, 1), z0, b)
    want = torch.stack([torch.stack([f(d, z0, b) for d in Dk]) for Dk in W])
    _close(got, want)


def test_vmap_with_batched_operator_and_z_grid():
    """Per sample: a batched T (2, N) against a z of shape (3, 1) -> (3, 2, N); vmapped over
    V samples (V, 3, 2, N), z vmapped too."""
    D, lo, up = _data(V=6)
    D = D.reshape(3, 2, -1)  # V = 3 samples of a (2, N) batch
    Z = torch.tensor([[[0.1 + 0.5j], [0.2j], [-0.4 + 0.3j]]] * 3) * torch.arange(1, 4)[:, None, None]

    def f(d, z):
        return ss.Tridiagonal(d, lo, up).resolvent_diagonal(z)

    got = func.vmap(f)(D, Z)
    assert got.shape == (3, 3, 2, D.shape[-1])
    _close(got, torch.stack([f(d, z) for d, z in zip(D, Z, strict=True)]))


@pytest.mark.parametrize("name", ["resolvent_diagonal", "logdet", "solve"])
def test_per_sample_gradients(name):
    """vmap(grad(loss)) over potentials: each row is the eager gradient of that sample's
    loss (w.r.t. diag and z)."""
    D, lo, up = _data(V=3)
    b = torch.linspace(-1.0, 1.0, D.shape[-1], dtype=f64)
    zs = torch.tensor([0.3 + 0.5j, -0.2 + 0.1j, 0.5 + 1.0j])

    def loss(d, z):
        return _scalar(OPS[name](ss.Tridiagonal(d, lo, up), z, b))

    got = func.vmap(func.grad(loss, argnums=(0, 1)))(D, zs)
    for k in range(3):
        _, want = _eager_grads(loss, [D[k], zs[k]])
        _close(got[0][k], want[0])
        _close(got[1][k], want[1])
    # grad of a loss over a vmapped batch equals eager autograd of the batched call
    def batch_loss(D):
        return func.vmap(lambda d: OPS[name](ss.Tridiagonal(d, lo, up), zs[0], b))(D).abs().sum()

    _, want = _eager_grads(lambda D: OPS[name](ss.Tridiagonal(D, lo, up), zs[0], b).abs().sum(), [D])
    _close(func.grad(batch_loss)(D), want[0])


def test_errors_inside_transforms():
    """The eager errors keep their types inside grad and vmap; double backward and
    forward-mode AD raise instead of returning a wrong derivative."""
    lo = torch.ones(2, dtype=f64)

    def f(d, z):
        return ss.Tridiagonal(d, lo).resolvent_diagonal(z)

    bad = torch.tensor([[1.0, float("nan"), 2.0], [1.0, 0.0, 2.0]], dtype=f64)
    with pytest.raises(NonFiniteError, match="diag"):
        func.vmap(f, in_dims=(0, None))(bad, torch.tensor(0.5j))
    with pytest.raises(NonFiniteError, match="diag"):
        func.grad(lambda d: f(d, 0.5j).abs().sum())(bad[0])
    sing = torch.zeros(2, 3, dtype=f64)  # [[0, 1, 0], [1, 0, 1], [0, 1, 0]]: eigenvalue 0
    with pytest.raises(SingularMatrixError):
        func.vmap(f, in_dims=(0, None))(sing, torch.tensor(0.0j))
    d = torch.tensor([1.0, -0.5, 2.0], dtype=f64)

    def loss(d):
        return f(d, torch.tensor(0.5j)).abs().sum()

    with pytest.raises(RuntimeError, match="double backward"):
        func.grad(lambda d: func.grad(loss)(d).sum())(d)
    with pytest.raises(NotImplementedError, match="forward-mode"):
        func.jvp(loss, (d,), (torch.ones_like(d),))


def test_return_info_under_grad_and_vmap():
    """return_info=True inside grad: the PivotInfo of the eager call; inside vmap: a clear
    error (a PivotInfo is host data of one call's batch)."""
    D, lo, _ = _data()
    z = torch.tensor(0.3 + 0.5j)
    seen = []

    def loss(d):
        G, info = ss.Tridiagonal(d, lo).resolvent_diagonal(z, return_info=True)
        seen.append(info)
        return G.abs().sum()

    got = func.grad(loss)(D[0])
    _, want = _eager_grads(loss, [D[0]])
    _close(got, want[0])
    assert seen[0].pivots_guarded.shape == seen[1].pivots_guarded.shape == ()
    assert seen[0].method == seen[1].method
    with pytest.raises(ValueError, match="vmap"):
        func.vmap(lambda d: ss.Tridiagonal(d, lo).resolvent_diagonal(z, return_info=True)[0])(D)


@pytest.mark.parametrize("low_rank", [False, True])
def test_birman_schwinger_core_grad(low_rank):
    """torch.func.grad through semisep.nn.BirmanSchwingerCore (w.r.t. v and z, and with
    functional_call w.r.t. the low-rank parameters U, V) equals eager autograd; the
    diagnostics are those of the eager call."""
    from semisep.nn import BirmanSchwingerCore

    torch.manual_seed(0)
    core = BirmanSchwingerCore(8, use_semiseparable=low_rank, init_scale=0.3, dtype=f64)
    v = torch.randn(2, 8, dtype=f64)
    z = torch.tensor(0.2 + 0.7j)
    params = {k: p.detach() for k, p in core.named_parameters()}

    seen = []

    def loss(v, z, params):
        feats, diag = func.functional_call(core, params, (v, z))
        seen.append(diag)
        return feats.square().sum()

    gv, gz, gp = func.grad(loss, argnums=(0, 1, 2))(v, z, params)
    diag = seen[0]
    args = [v, z, *params.values()]
    _, want = _eager_grads(lambda v, z, *ps: loss(v, z, dict(zip(params, ps, strict=True))), args)
    for a, w in zip([gv, gz, *gp.values()], want, strict=True):
        _close(a, w)
    assert len(gp) == (2 if low_rank else 0)
    _, want_diag = core(v, z)
    for key in ("pivots_guarded", "max_abs_G", "capacitance_condition", "all_finite"):
        if want_diag[key] is None:  # e.g. no capacitance without the low-rank term
            assert diag[key] is None, key
        else:
            assert diag[key] == pytest.approx(want_diag[key], rel=1e-12), key
    # vmap: the core's PivotInfo and diagnostics are host reads of one call's batch
    with pytest.raises(ValueError, match="vmap"):
        func.vmap(lambda v: core(v, z)[0])(v[None].expand(3, 2, 8))


class _Resolvent(torch.nn.Module):
    """A module calling the Tridiagonal operations on a potential (free Laplacian + diag)."""

    def forward(self, v, z):
        T = ss.Tridiagonal(v - 2.0, torch.ones(v.shape[-1] - 1, dtype=v.dtype))
        return T.resolvent_diagonal(z), T.solve(torch.ones_like(v), z), T.logdet(z)


@pytest.mark.parametrize("strict", [False, True])
def test_torch_export_of_tridiagonal_module(strict):
    """torch.export (non-strict and strict) of a module calling resolvent_diagonal, solve and
    logdet: the exported program holds the custom op and gives eager's values on new inputs."""
    v = torch.linspace(-0.5, 0.5, 6, dtype=f64)
    z = torch.tensor(0.1 + 0.5j)
    ep = torch.export.export(_Resolvent(), (v, z), strict=strict)
    calls = [n for n in ep.graph.nodes if n.target is torch.ops.semisep.tridiagonal_call.default]
    assert [n.args[0] for n in calls] == ["resolvent_diagonal", "solve", "logdet"]
    v2, z2 = v.flip(0) * 2, torch.tensor(-0.3 + 0.2j)
    for a, w in zip(ep.module()(v2, z2), _Resolvent()(v2, z2), strict=True):
        _close(a, w)


@pytest.mark.parametrize("low_rank", [False, True], ids=["tridiagonal", "low-rank"])
@pytest.mark.parametrize("strict", [False, True])
def test_torch_export_of_birman_schwinger_core(strict, low_rank):
    """torch.export (non-strict and strict) of a module holding BirmanSchwingerCore: the
    program holds one ``semisep::bk_core_call`` node and gives, on new inputs, the eager
    core's features under no_grad (the op's forward runs without autograd) bit for bit."""
    from semisep.nn import BirmanSchwingerCore

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.core = BirmanSchwingerCore(8, use_semiseparable=low_rank, init_scale=0.3,
                                            dtype=f64)

        def forward(self, v):
            return self.core(v)[0]

    torch.manual_seed(0)
    m = M()
    ep = torch.export.export(m, (torch.randn(2, 8, dtype=f64),), strict=strict)
    calls = [n for n in ep.graph.nodes if n.target is torch.ops.semisep.bk_core_call.default]
    assert len(calls) == 1
    v2 = torch.randn(2, 8, dtype=f64)
    with torch.no_grad():
        assert torch.equal(ep.module()(v2), m(v2))


def test_jacrev_equals_eager_jacobian():
    """torch.func.jacrev (vjp vmapped over the cotangents: the backward op's batching rule
    with the operator's inputs not vmapped) equals torch.autograd.functional.jacobian."""
    D, lo, up = _data(N=5)
    z = torch.tensor(0.2 + 0.4j)

    def f(d, up):
        T = ss.Tridiagonal(d, lo, up)
        return torch.cat([T.resolvent_diagonal(z).abs(), T.logdet(z).real[None]])

    got = func.jacrev(f, argnums=(0, 1))(D[0], up)
    want = torch.autograd.functional.jacobian(f, (D[0], up))
    for a, w in zip(got, want, strict=True):
        _close(a, w)


def test_operator_built_outside_the_transform_and_float32():
    """An operator built eagerly, differentiated w.r.t. z only inside grad; vmap over z of a
    float32 operator (complex64 result) equals the loop."""
    D, lo, up = _data()
    T = ss.Tridiagonal(D, lo, up)
    z = torch.tensor(0.2 + 0.3j)
    got = func.grad(lambda z: _scalar(T.resolvent_diagonal(z)))(z)
    _, want = _eager_grads(lambda z: _scalar(T.resolvent_diagonal(z)), [z])
    _close(got, want[0])
    T32 = ss.Tridiagonal(D.float(), lo.float(), up.float())
    zs = torch.tensor([0.1 + 0.5j, 0.3j, -0.2 + 1.0j], dtype=torch.complex64)
    out = func.vmap(T32.resolvent_diagonal)(zs)
    assert out.dtype == torch.complex64 and out.shape == (3,) + tuple(D.shape)
    torch.testing.assert_close(out, torch.stack([T32.resolvent_diagonal(z) for z in zs]),
                               rtol=1e-6, atol=0)
