"""Kernel launches and host syncs of the torch backend's chunked path (the CUDA path), counted
on CPU tensors.

Launches: every non-view aten op dispatched (a ``TorchDispatchMode``) is ~ one kernel launch on
CUDA.  With the chunk lengths capped and every scan over chunks of log depth, the count of a
chunked call is ``a + b log2(N)`` once the caps are reached (N >= 2^14): the target "at
N = 2^20 at most 1.5x the count at N = 2^14" is checked from N = 2^14, 2^16 and 2^17 (the
increments per doubling must be equal, and ``c(2^20) = c(2^14) + 2 (c(2^17) - c(2^14))``),
which keeps the test at seconds; ``SEMISEP_LAUNCH_N20=1`` also measures N = 2^20 directly.

Host syncs: ``Tensor.__bool__``, ``item``, ``tolist``, ``cpu``, ``numpy``, ``__array__``,
``__int__``, ``__float__`` and ``__index__`` are patched to count (on CPU they are not syncs, but
they are exactly the places that would sync on CUDA), with the torch backend's NumPy host views
switched off as on a CUDA tensor; a ``.numpy()`` of the result of ``.cpu()`` counts once.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import semisep as ss  # noqa: E402
import semisep.backends.torch as tb  # noqa: E402
from semisep.backends import get_backend  # noqa: E402
from semisep.backends.torch.chunks import _affine_scan_chunked  # noqa: E402
from semisep.backends.torch.reference import _affine_scan_ref  # noqa: E402


class _Launches(TorchDispatchMode):
    """Counts the non-view aten ops dispatched inside the ``with`` block; those dispatched inside
    the chunk-boundary repair (:func:`semisep.backends.torch._boundary.repair_planar`, which runs
    only where a carry disagrees with the previous chunk's last pivot) are counted apart, in
    ``repair`` (:func:`semisep.backends.torch._boundary.repair_extrema` is the entry point)."""

    def __init__(self):
        super().__init__()
        self.n = 0
        self.repair = 0
        self.in_repair = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            if self.in_repair:
                self.repair += 1
            else:
                self.n += 1
        return func(*args, **(kwargs or {}))


#: ops whose output size depends on the values: a host sync on CUDA
_SYNCING_OPS = ("aten::nonzero", "aten::masked_select", "aten::nonzero_static")


class _ValueShapedOps(TorchDispatchMode):
    """Counts the ops whose output shape depends on tensor values (``nonzero``, boolean-mask
    indexing, ``masked_select``): each is a host sync on CUDA."""

    def __init__(self, count):
        super().__init__()
        self.count = count

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        index = args[1] if name == "aten::index" and len(args) > 1 else ()
        if name in _SYNCING_OPS or any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index):
            self.count["repair" if self.count["in_repair"] else "n"] += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _repair_counted_apart(mode):
    """Route the ops of the boundary repair into ``mode.repair``."""
    from semisep.backends.torch import _boundary

    real = _boundary.repair_extrema

    def wrapped(*a, **kw):
        mode.in_repair = True
        try:
            return real(*a, **kw)
        finally:
            mode.in_repair = False

    _boundary.repair_extrema = wrapped
    try:
        yield
    finally:
        _boundary.repair_extrema = real


_SYNC_NAMES = ("__bool__", "item", "tolist", "cpu", "numpy", "__array__", "__int__", "__float__", "__index__")


@contextlib.contextmanager
def _syncs(monkeypatch):
    """Counts the host reads of tensor values (see the module docstring)."""
    count = {"n": 0, "repair": 0, "in_repair": False}
    fresh: set[int] = set()
    from semisep.backends.torch import _boundary

    real_repair = _boundary.repair_extrema

    def repair(*a, **kw):  # the boundary repair's syncs are counted apart, in count["repair"]
        count["in_repair"] = True
        try:
            return real_repair(*a, **kw)
        finally:
            count["in_repair"] = False

    def wrap(name, f):
        def g(self, *a, **kw):
            if name in ("numpy", "__array__") and id(self) in fresh:
                fresh.discard(id(self))  # x.cpu().numpy(): one transfer
            else:
                count["repair" if count["in_repair"] else "n"] += 1
            out = f(self, *a, **kw)
            if name == "cpu":
                fresh.add(id(out))
            return out
        return g

    with monkeypatch.context() as m:
        m.setattr(tb, "_host_view", lambda t: None)  # as on CUDA: no NumPy views of the values
        m.setattr(_boundary, "repair_extrema", repair)
        for name in _SYNC_NAMES:
            m.setattr(torch.Tensor, name, wrap(name, getattr(torch.Tensor, name)))
        with _ValueShapedOps(count):
            yield count


def _problem(n, cplx=False, grad=False, seed=0):
    rng = np.random.default_rng(seed)
    d = torch.tensor(-2.0 + rng.uniform(-1, 1, (1, n)))
    lo = torch.tensor(rng.uniform(0.5, 1, (1, n - 1)))
    up = torch.tensor(rng.uniform(0.5, 1, (1, n - 1)))
    if cplx:
        d = d + 0.1j * torch.tensor(rng.uniform(-1, 1, (1, n)))
    return d.requires_grad_(grad), lo, up


Z = 0.3 + 0.01j


def _rhs(n):
    return torch.tensor(np.random.default_rng(1).standard_normal((1, n)))


# each case: (T, args) -> the public call, real T at complex z (the shift form), real T at real
# z (a real problem), complex T, logdet, solve
_CALLS = {
    "resolvent real T, complex z": lambda T, n: T.resolvent_diagonal(Z, method="chunked"),
    "resolvent real T, real z": lambda T, n: T.resolvent_diagonal(0.3, method="chunked"),
    "resolvent complex T": lambda T, n: T.resolvent_diagonal(Z, method="chunked"),
    "logdet": lambda T, n: T.logdet(Z, method="chunked"),
    "solve": lambda T, n: T.solve(_rhs(n), Z, method="chunked"),
}


def _operator(case, n, grad=False):
    d, lo, up = _problem(n, cplx=case == "resolvent complex T", grad=grad)
    if case == "resolvent real T, real z":
        d = (d + 5.0) if not grad else d  # away from the spectrum: no pivot needs the guard
    return d, ss.Tridiagonal(d, lo, up)


def _loss(out):
    return (out.real.sum() if out.is_complex() else out.sum()) if out.dim() == 1 else out.abs().square().sum()


def _launch_counts(case, n, backward):
    d, T = _operator(case, n, grad=backward)
    out = _CALLS[case](T, n)  # warm-up (first-call caches)
    if backward:
        _loss(out).backward()
    d, T = _operator(case, n, grad=backward)
    m = _Launches()
    with _repair_counted_apart(m), m:
        out = _CALLS[case](T, n)
    assert get_backend("torch").kernel_ran("chunked") == "chunked"  # not the compiled sweeps
    assert m.repair <= _REPAIR_BOUND, m.repair
    if not backward:
        return m.n
    loss = _loss(out)
    mb = _Launches()
    with _repair_counted_apart(mb), mb:
        loss.backward()
    assert mb.repair <= _REPAIR_BOUND, mb.repair
    assert d.grad is not None and torch.isfinite(d.grad).all()
    return mb.n


def _repair_bound():
    """An upper bound, independent of N, on the ops of one boundary repair: at most
    ``MAX_ROUNDS`` rounds, each re-running at most ``ceil(L / BLOCK)`` blocks of ``BLOCK`` steps
    (two ops each) plus a bounded number of gathers, checks and writes per block, and the set-up;
    L is capped (``_PIVOT_CAP``), so the bound does not grow with N."""
    from semisep.backends.torch import _boundary
    from semisep.backends.torch.chunks import _pivot_chunk_length

    L = _pivot_chunk_length(1 << 30)
    blocks = -(-L // _boundary.BLOCK)
    per_block = 2 * _boundary.BLOCK + 60
    return 4 * (_boundary.MAX_ROUNDS * blocks * per_block + 60)  # both sweeps of both passes


_REPAIR_BOUND = _repair_bound()


def _repair_sync_bound():
    """An upper bound, independent of N, on the host syncs of the boundary repair of one kernel
    call in its gathered form (CPU's; the fixed-shape form of accelerators has none:
    tests/test_chunk_accuracy.py): the trigger's ``nonzero``, then per block of each round the
    filters of the chunks still running (boolean indexing of three index tensors), for both
    passes."""
    from semisep.backends.torch import _boundary
    from semisep.backends.torch.chunks import _pivot_chunk_length

    blocks = -(-_pivot_chunk_length(1 << 30) // _boundary.BLOCK)
    return 2 * (1 + _boundary.MAX_ROUNDS * (blocks + 1) * 3)


_REPAIR_SYNC_BOUND = _repair_sync_bound()


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("case", list(_CALLS))
def test_launches_grow_like_log_n(case, backward):
    """Launches per chunked call: equal increments per doubling of N beyond the chunk-length
    caps, and the extrapolated N = 2^20 count at most 1.5x the N = 2^14 count.  The
    chunk-boundary repair runs only where carries disagree (a data-dependent few per cent of the
    chunks); its ops are counted apart and checked against a bound that does not grow with N
    (:func:`_repair_bound`)."""
    if backward and case == "resolvent real T, real z":
        pytest.skip("the same autograd path as complex T (real alpha, complex G)")
    c14, c16, c17 = (_launch_counts(case, 1 << k, backward) for k in (14, 16, 17))
    assert c16 - c14 == 2 * (c17 - c16), (c14, c16, c17)  # a + b log2(N)
    c20 = c14 + 2 * (c17 - c14)
    assert c20 <= 1.5 * c14, (c14, c17, c20)
    if os.environ.get("SEMISEP_LAUNCH_N20"):
        assert _launch_counts(case, 1 << 20, backward) == c20


def test_affine_scan_no_overflow_across_chunks():
    """The log-depth chunk scan composes multipliers across many chunks: products far outside
    the floating-point range (here 2^4096 and (2 sqrt 2)^4096) must not turn a zero prefix of
    the right-hand side into NaN (``inf * 0``), and the values must match the sequential loop."""
    N = 4096
    f = torch.zeros(2, N, 3, dtype=torch.float64)
    f[:, -10:] = torch.randn(2, 10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for m in (torch.full((2, N), 2.0, dtype=torch.float64),
              torch.full((2, N), 2.0 + 2.0j, dtype=torch.complex128)):
        ff = f.to(m.dtype)
        yr = _affine_scan_ref(m, ff, False)
        assert torch.isfinite(yr).all()
        for L in (1, 4, 16, 64):
            y = _affine_scan_chunked(m, ff, False, L)
            torch.testing.assert_close(y, yr, rtol=1e-13, atol=0)
    # and underflow: multipliers 1/4 with the mass at the start (products reach 2^-8192)
    m = torch.full((1, N), 0.25, dtype=torch.float64)
    f = torch.zeros(1, N, 1, dtype=torch.float64)
    f[:, :3] = 1.0
    f[:, -1] = 1e-300
    yr = _affine_scan_ref(m, f, False)
    torch.testing.assert_close(_affine_scan_chunked(m, f, False, 8), yr, rtol=1e-13, atol=0)
    # complex64 chunk products in the subnormal range (0.5^140 = 2^-140): their mantissa scaling
    # must not form 2^140 (inf in float32)
    m = torch.full((1, 1400), 0.5 + 0.0j, dtype=torch.complex64)
    f = torch.randn(1, 1400, 2, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    yr = _affine_scan_ref(m, f, False)
    torch.testing.assert_close(_affine_scan_chunked(m, f, False, 140), yr, rtol=1e-5, atol=1e-6)


_C = torch.complex128
_KERNEL_CALLS = {
    "resolvent_diagonal_shifted": lambda bk, d, lo, up, pm: bk.resolvent_diagonal_shifted(
        d, torch.tensor([Z], dtype=_C), lo * up, pm, method="chunked"),
    "resolvent_diagonal real": lambda bk, d, lo, up, pm: bk.resolvent_diagonal(
        d + 5.0, lo * up, pm, "chunked"),
    "resolvent_diagonal complex": lambda bk, d, lo, up, pm: bk.resolvent_diagonal(
        d.to(_C) - Z, (lo * up).to(_C), pm, "chunked"),
    "logdet": lambda bk, d, lo, up, pm: bk.logdet(d.to(_C) - Z, (lo * up).to(_C), pm, "chunked"),
    "solve": lambda bk, d, lo, up, pm: bk.solve(d.to(_C) - Z, up.to(_C), lo.to(_C),
                                                _rhs(d.shape[1]).to(_C)[..., None], pm, "chunked"),
}


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "grad"])
@pytest.mark.parametrize("name", list(_KERNEL_CALLS))
def test_chunked_kernels_sync_at_most_once(name, grad, monkeypatch):
    """Each chunked backend kernel (the pivot-guard certificate, the singular certificate and the
    solve's first backward-error test deferred to one read), and its backward, reads the
    device at most once where no pivot needs the guard, besides the chunk-boundary repair of the
    complex sweeps, whose syncs (its trigger's ``nonzero`` always, more where chunks are re-run)
    are counted apart and bounded independently of N."""
    bk = get_backend("torch")
    n = 4096
    d, lo, up = _problem(n)
    pm = torch.full((1,), 1e-13, dtype=torch.float64)
    d = d.detach().requires_grad_(grad)
    _KERNEL_CALLS[name](bk, d, lo, up, pm)  # warm-up
    with _syncs(monkeypatch) as s:
        out = _KERNEL_CALLS[name](bk, d, lo, up, pm)
    assert bk.kernel_ran("chunked") == "chunked"
    assert s["n"] <= 1, s["n"]
    assert s["repair"] <= _REPAIR_SYNC_BOUND, s["repair"]
    assert not bool(out[2].any())
    if grad:
        loss = _loss(out[0] if out[0].dim() < 3 else out[0][..., 0])
        with _syncs(monkeypatch) as s:
            loss.backward()
        assert s["n"] <= 1, s["n"]
        assert s["repair"] <= _REPAIR_SYNC_BOUND, s["repair"]
        assert d.grad is not None and torch.isfinite(d.grad).all()


@pytest.mark.xfail(strict=True, reason=(
    "the operators still read the device outside the kernel: the range-scaling decision "
    "(tridiagonal._range_scale) and the singular raise (_raise_if_singular) on every call, and for "
    "logdet/solve the guarded-pivot certificate trigger (_certify_if_guarded) and logdet's "
    "real-result test: 3 (resolvent), 4 (logdet), 5 (solve, with b's finiteness check) per call"))
@pytest.mark.parametrize("case", ["resolvent real T, complex z", "logdet", "solve"])
def test_public_call_syncs_at_most_once(case, monkeypatch):
    """The target: at most one host sync per public call without ``return_info``."""
    d, T = _operator(case, 4096)
    _CALLS[case](T, 4096)
    with _syncs(monkeypatch) as s:
        _CALLS[case](T, 4096)
    assert s["n"] <= 1, s["n"]
