"""torch.compile, torch.export and the host reads of :class:`semisep.nn.BirmanSchwingerCore`.

Under a tracing compiler the core's structured computation is one custom op
(``semisep::bk_core_call``, :mod:`semisep.nn._core_call`) whose kernel runs the eager code
on real values, and its diagnostics are device tensors read lazily
(:mod:`semisep.nn._diagnostics`).  The oracle is the eager call on the same inputs: the op's
forward runs without autograd (as the eager forward does when nothing needs a gradient, and as
the checkpointed forward does), so against an eager call under ``torch.no_grad`` it is equal
bit for bit, and against an eager call that records a graph (other kernels, same mathematics)
equal to a tolerance from the dtype's eps.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch._dynamo.testing import CompileCounterWithBackend  # noqa: E402

from semisep.errors import NonFiniteError  # noqa: E402
from semisep.nn import BirmanSchwingerCore  # noqa: E402

from .test_launches_syncs import _syncs  # noqa: E402

N = 16


def _tol(dtype):
    return 256 * torch.finfo(dtype).eps


def _run(fn, core, v, z=None):
    """Features, diagnostics and the gradients of a loss w.r.t. ``v`` and the parameters."""
    core.zero_grad()
    vv = v.clone().requires_grad_()
    feats, diag = fn(vv) if z is None else fn(vv, z)
    feats.square().sum().backward()
    return feats.detach(), diag, [vv.grad] + [p.grad.clone() for p in core.parameters()]


def _close(a, w, dtype):
    tol = _tol(dtype)
    torch.testing.assert_close(a, w, rtol=tol, atol=tol * float(w.abs().max()))


_KEYS = ("all_finite", "pivots_guarded", "max_abs_G", "resolvent_bound", "capacitance_condition",
         "schatten_s2", "precision_upgrades", "rank", "memory_bytes", "operator_memory_savings")


def _same_diagnostics(got, want, rel):
    for key in _KEYS:
        if want[key] is None or isinstance(want[key], (bool, int)):
            assert got[key] == want[key], key
        else:
            assert got[key] == pytest.approx(want[key], rel=rel, abs=0), key
    torch.testing.assert_close(got["schatten_s2_per_sample"], want["schatten_s2_per_sample"],
                               rtol=rel, atol=0)


def _check_against_eager(core, fn, vs, dtype, z=None, upgrades=None):
    """Per call: compiled features, gradients and diagnostics against eager (with autograd,
    to eps) and the compiled forward against eager under no_grad (bitwise)."""
    for k, v in enumerate(vs):
        want_f, want_d, want_g = _run(core, core, v, z)
        got_f, got_d, got_g = _run(fn, core, v, z)
        assert got_d.pending  # nothing read by the compiled call
        assert got_f.dtype == v.dtype and got_f.shape == (v.shape[0], N, 2)
        _close(got_f, want_f, dtype)
        assert len(got_g) == 1 + len(list(core.parameters()))
        for a, w in zip(got_g, want_g, strict=True):
            _close(a, w, dtype)
        _same_diagnostics(got_d, want_d, rel=_tol(dtype))
        if upgrades is not None:
            upgrades(k, got_d["precision_upgrades"])
        with torch.no_grad():
            nog_f, nog_d = core(v) if z is None else core(v, z)
            got_f, got_d = fn(v) if z is None else fn(v, z)
        assert torch.equal(got_f, nog_f)
        assert got_d["max_abs_G"] == nog_d["max_abs_G"]
        assert got_d["precision_upgrades"] == nog_d["precision_upgrades"]


@pytest.mark.parametrize("low_rank", [True, False], ids=["low-rank", "tridiagonal"])
def test_fullgraph_inductor_float64(low_rank):
    """``torch.compile(core, fullgraph=True)`` (inductor, CPU), float64: features, gradients
    (v, U, V) and diagnostics equal eager's; three calls with new values compile one frame
    per grad mode; a tensor z that needs a gradient gets eager's gradient; the statistics
    count every call."""
    torch.manual_seed(0)
    core = BirmanSchwingerCore(N, use_semiseparable=low_rank, init_scale=0.3, dtype=torch.float64)
    torch._dynamo.reset()
    cnt = CompileCounterWithBackend("inductor")
    fn = torch.compile(core, backend=cnt, fullgraph=True)
    g = torch.Generator().manual_seed(1)
    vs = [torch.randn(3, N, dtype=torch.float64, generator=g) for _ in range(3)]
    _check_against_eager(core, fn, vs, torch.float64)
    assert cnt.frame_count == 2  # one graph per grad mode (dynamo guards on it), none per call
    assert core.get_statistics()["calls"] == 4 * len(vs)  # eager, compiled, and both without grad
    # a tensor z that needs a gradient: one more graph (z an input), its gradient equal eager's
    z = torch.tensor(0.3 + 0.8j, requires_grad=True)
    grads = []
    for f in (core, fn):
        zz = z.detach().clone().requires_grad_()
        f(vs[0], zz)[0].sum().backward()
        grads.append(zz.grad)
    _close(grads[1], grads[0], torch.float64)


def test_fullgraph_auto_precision_upgrades_some_rows():
    """precision="auto" with float32 input: rows whose capacitance condition exceeds the
    threshold are recomputed in float64 inside the op; in every call some rows and not all are
    upgraded; features, gradients and diagnostics equal eager's; three calls compile one frame
    per grad mode."""
    torch.manual_seed(0)
    core = BirmanSchwingerCore(N, init_scale=0.5, precision="auto",
                               precision_upgrade_threshold=5.0, dtype=torch.float32)
    torch._dynamo.reset()
    cnt = CompileCounterWithBackend("inductor")
    fn = torch.compile(core, backend=cnt, fullgraph=True)
    g = torch.Generator().manual_seed(2)
    vs = [2 * torch.randn(6, N, generator=g) for _ in range(3)]

    def upgrades(k, n):
        assert 0 < n < 6, (k, n)

    _check_against_eager(core, fn, vs, torch.float32, upgrades=upgrades)
    assert cnt.frame_count == 2  # one graph per grad mode, none per call


def test_checkpointing_under_compile():
    """enable_gradient_checkpointing=True under fullgraph compile: the op saves only its
    inputs and recomputes in backward, as the eager checkpoint does: features and gradients
    equal the eager checkpointed call's bit for bit; a NaN in ``v`` raises eager's error from
    the compiled call, with nothing recompiled."""
    torch.manual_seed(0)
    core = BirmanSchwingerCore(N, init_scale=0.3, enable_gradient_checkpointing=True,
                               dtype=torch.float64)
    torch._dynamo.reset()
    cnt = CompileCounterWithBackend("aot_eager")
    fn = torch.compile(core, backend=cnt, fullgraph=True)
    g = torch.Generator().manual_seed(3)
    for _ in range(2):
        v = torch.randn(2, N, dtype=torch.float64, generator=g)
        want_f, _, want_g = _run(core, core, v)
        got_f, _, got_g = _run(fn, core, v)
        assert torch.equal(got_f, want_f)
        for a, w in zip(got_g, want_g, strict=True):
            assert torch.equal(a, w)
    assert cnt.frame_count == 1
    # the eager checks run inside the op, at run time: a NaN potential raises eager's error
    bad = torch.randn(2, N, dtype=torch.float64, generator=g)
    bad[1, 3] = float("nan")
    bad.requires_grad_()  # as the calls above (dynamo guards on requires_grad)
    with pytest.raises(NonFiniteError):
        core(bad)
    with pytest.raises(NonFiniteError):
        fn(bad)
    assert cnt.frame_count == 1


@pytest.mark.parametrize("low_rank", [True, False], ids=["low-rank", "tridiagonal"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_eager_forward_adds_no_host_sync_and_the_read_costs_one(low_rank, dtype, monkeypatch):
    """Eager forward on CPU with the host views off (as on a device): the diagnostics and the
    statistics add no host sync to those of the structured computation itself; the first
    read of the diagnostics is one sync, later reads none; the statistics are one sync."""
    torch.manual_seed(0)
    core = BirmanSchwingerCore(64, use_semiseparable=low_rank, dtype=dtype)
    v = torch.randn(4, 64, dtype=dtype)
    core(v)
    with _syncs(monkeypatch) as s:
        core._structured(v, core.U, core.V, complex(0.0, core.epsilon))
    structured = s["n"]
    with _syncs(monkeypatch) as s:
        _, d = core(v)
    assert d.pending
    assert s["n"] == structured, (s["n"], structured)
    with _syncs(monkeypatch) as s:
        first = d["max_abs_G"]
    assert s["n"] == 1 and not d.pending
    with _syncs(monkeypatch) as s:
        assert dict(d)["max_abs_G"] == first and len(d) == 12 and "schatten_s2" in d
    assert s["n"] == 0
    with _syncs(monkeypatch) as s:
        stats = core.get_statistics()
    assert s["n"] == 1 and stats["calls"] == 2
    assert stats["last"]["max_abs_G"] == first


def test_lazy_diagnostics_read_like_a_dict():
    """Every dict access reads the values (iteration, items, equality, get, renamed keys)."""
    core = BirmanSchwingerCore(N, dtype=torch.float64)
    v = torch.randn(2, N, dtype=torch.float64)
    for access in (list, lambda d: d.items(), lambda d: d.get("rank"), repr,
                   lambda d: {**d}, lambda d: "rank" in d):
        _, d = core(v)
        assert d.pending
        access(d)
        assert not d.pending
    _, d = core(v)
    with pytest.raises(KeyError, match="capacitance_condition"):
        d["condition_number"]
    assert isinstance(d["all_finite"], bool) and isinstance(d["pivots_guarded"], int)


def test_statistics_ring_buffer_keeps_the_last_calls():
    """history_size=2: the history holds the last two calls, oldest first; the counters all."""
    core = BirmanSchwingerCore(N, history_size=2, dtype=torch.float64)
    seen = [core(torch.randn(b, N, dtype=torch.float64))[1] for b in (1, 2, 3)]
    s = core.get_statistics()
    assert s["calls"] == 3 and s["history_length"] == 2
    assert s["max_abs_G_max"] == max(d["max_abs_G"] for d in seen[1:])
    assert [b for b, _ in core.get_memory_profile()["history"]] == [2, 3]
    assert core.get_memory_profile()["batch_size"] == 3
    empty = BirmanSchwingerCore(N, history_size=0, dtype=torch.float64)
    empty(torch.randn(2, N, dtype=torch.float64))
    assert empty.get_statistics() == {"calls": 1, "history_length": 0,
                                      "precision_upgrades_total": 0}


class _Model(torch.nn.Module):
    """A model holding the core: a linear mixing of the input into the potential, the core,
    and a linear head on the features."""

    def __init__(self, dtype):
        super().__init__()
        self.mix = torch.nn.Linear(N, N, dtype=dtype)
        self.core = BirmanSchwingerCore(N, init_scale=0.3, dtype=dtype)
        self.head = torch.nn.Linear(2, 1, dtype=dtype)

    def forward(self, x):
        feats, diag = self.core(torch.tanh(self.mix(x)))
        return self.head(feats).squeeze(-1), diag


def test_model_holding_the_core_compiles_fullgraph():
    """``torch.compile(model, fullgraph=True)`` (inductor) of a model with layers around the
    core: outputs and every parameter's gradient equal eager's over three training-style
    calls with new inputs, one frame compiled; the diagnostics come back unread."""
    torch.manual_seed(0)
    model = _Model(torch.float64)
    torch._dynamo.reset()
    cnt = CompileCounterWithBackend("inductor")
    fn = torch.compile(model, backend=cnt, fullgraph=True)
    g = torch.Generator().manual_seed(4)
    for _ in range(3):
        x = torch.randn(4, N, dtype=torch.float64, generator=g)
        res = []
        for f in (model, fn):
            model.zero_grad()
            out, diag = f(x)
            out.square().sum().backward()
            res.append((out.detach(), diag, [p.grad.clone() for p in model.parameters()]))
        (want, want_d, want_g), (got, got_d, got_g) = res
        assert got_d.pending
        _close(got, want, torch.float64)
        assert len(got_g) == 6
        for a, w in zip(got_g, want_g, strict=True):
            _close(a, w, torch.float64)
        _same_diagnostics(got_d, want_d, rel=_tol(torch.float64))
    assert cnt.frame_count == 1
