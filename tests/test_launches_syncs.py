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
import functools
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


#: ops that read device values on the host: a host sync on CUDA -- those whose output size
#: depends on the values, and the dense solvers' error check (``torch.linalg.solve``, ``inv``,
#: ``cholesky`` ... read their LAPACK ``info`` codes to raise; the ``_ex`` variants with
#: ``check_errors=False`` do not)
_SYNCING_OPS = ("aten::nonzero", "aten::masked_select", "aten::nonzero_static", "aten::_linalg_check_errors")
#: the SVD checks its convergence codes on the host inside the op (no ``_ex`` variant): a sync
#: on CUDA that cannot be deferred, counted apart (``count["svd"]``)
_SVD_OPS = ("aten::_linalg_svd",)


class _ValueShapedOps(TorchDispatchMode):
    """Counts the ops that sync on CUDA (:data:`_SYNCING_OPS`, boolean-mask indexing), and the
    SVDs apart (:data:`_SVD_OPS`)."""

    def __init__(self, count):
        super().__init__()
        self.count = count

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        index = args[1] if name == "aten::index" and len(args) > 1 else ()
        if name in _SVD_OPS:
            self.count["svd"] += 1
        elif name in _SYNCING_OPS or any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
                                         for i in index):
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
    count = {"n": 0, "repair": 0, "svd": 0, "in_repair": False}
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
    # a + b log2(N), to within two ops: one clean-clone CI run counted one op more at 2^16 and
    # 2^17 outside the repair (1171, 1198, 1211 against 1171, 1197, 1210 alone); not reproduced
    # in isolation or after the neighbouring test files, so a state left by an earlier test in
    # the same worker is the suspect.  The growth bound below is the target.
    assert abs((c16 - c14) - 2 * (c17 - c16)) <= 2, (c14, c16, c17)
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


#: the public calls: ``_CALLS`` and a tensor z (its finiteness check deferred too)
_PUBLIC_CALLS = {**_CALLS, "resolvent, tensor z": lambda T, n: T.resolvent_diagonal(
    torch.tensor([Z, 2 * Z]), method="chunked")}


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "grad"])
@pytest.mark.parametrize("case", list(_PUBLIC_CALLS))
def test_public_call_syncs_at_most_once(case, grad, monkeypatch):
    """The target: at most one host sync per public call without ``return_info``.  The
    operator's decisions (the range scaling, the argument checks, the singular raise, the
    guarded-pivot certificate, logdet's real result) are deferred to the kernel's one read
    (:mod:`semisep.backends.torch.reads`).  The chunk-boundary repair's syncs are counted
    apart (see :func:`test_chunked_kernels_sync_at_most_once`).  ``grad``: the forward under
    autograd (its backward: :func:`test_chunked_kernels_sync_at_most_once`)."""
    d, T = _operator(case, 4096, grad=grad)
    _PUBLIC_CALLS[case](T, 4096)
    with _syncs(monkeypatch) as s:
        out = _PUBLIC_CALLS[case](T, 4096)
    assert get_backend("torch").kernel_ran("chunked") == "chunked"
    assert out.requires_grad == grad
    assert s["n"] <= 1, s["n"]
    assert s["repair"] <= _REPAIR_SYNC_BOUND, s["repair"]


@contextlib.contextmanager
def _as_on_a_device(monkeypatch):
    """The torch backend's NumPy host views switched off, as for a CUDA tensor: the operators
    then defer their reads (:mod:`semisep.backends.torch.reads`)."""
    with monkeypatch.context() as m:
        m.setattr(tb, "_host_view", lambda t: None)
        yield


def _deferred_and_eager(monkeypatch, call):
    """``call()`` with the reads deferred (as on a device) and read as they go (CPU)."""
    with _as_on_a_device(monkeypatch):
        deferred = call()
    return deferred, call()


_SCALED_CALLS = {
    "resolvent, complex z": lambda T, s: T.resolvent_diagonal(Z * s, method="chunked"),
    "resolvent, real z": lambda T, s: T.resolvent_diagonal(0.3 * s, method="chunked"),
    "logdet": lambda T, s: T.logdet(0.3 * s, method="chunked"),
    "solve": lambda T, s: T.solve(_rhs(T.n), Z * s, method="chunked"),
}


@pytest.mark.parametrize("scale", [2.0 ** -400, 2.0 ** 400, 1.0])
@pytest.mark.parametrize("case", list(_SCALED_CALLS))
def test_deferred_reads_same_results(case, scale, monkeypatch):
    """Deferring the range test to the kernel's read changes no value: entries outside the
    kernels' safe range (the kernel's results dropped, the problem scaled and run again) and
    inside it give bit for bit the results of the eager path."""
    d, lo, up = _problem(512)
    T = ss.Tridiagonal(d * scale, lo * scale, up * scale)
    got, want = _deferred_and_eager(monkeypatch, lambda: _SCALED_CALLS[case](T, scale))
    assert torch.equal(got, want)
    assert torch.isfinite(got).all()


def test_deferred_reads_non_finite_and_singular(monkeypatch):
    """The deferred checks raise what the eager ones raise: a NaN in ``b`` (NonFiniteError
    naming b), a singular ``T - zI`` (the same SingularMatrixError); with ``check_finite=False``
    a NaN entry (a NaN scale: the range test fails, the host finds nothing to scale, the call
    runs again unscaled) raises the eager path's SingularMatrixError."""
    d, lo, up = _problem(257)
    T = ss.Tridiagonal(d, lo, up)
    b = _rhs(257)
    b[0, 3] = float("nan")
    with _as_on_a_device(monkeypatch), pytest.raises(ss.errors.NonFiniteError, match="^b contains"):
        T.solve(b, Z, method="chunked")
    zs = torch.tensor([Z, float("nan")])
    with _as_on_a_device(monkeypatch), pytest.raises(ss.errors.NonFiniteError, match="^b contains"):
        T.solve(b, zs, method="chunked")  # b first, as read as they go
    for call in (lambda: T.resolvent_diagonal(zs, method="chunked"), lambda: T.logdet(zs, method="chunked"),
                 lambda: T.solve(b.nan_to_num(), zs, method="chunked")):
        with _as_on_a_device(monkeypatch), pytest.raises(ss.errors.NonFiniteError, match="^z contains"):
            call()
    S = ss.Tridiagonal(torch.zeros(2, 257, dtype=torch.float64), torch.ones(2, 256, dtype=torch.float64))
    S.diag[0] = 3.0  # batch row 1 singular at z = 0 (odd N, zero diagonal)
    for call in (lambda: S.resolvent_diagonal(0.0, method="chunked"),
                 lambda: S.logdet(0.0, method="chunked"),
                 lambda: S.solve(b.nan_to_num(), 0.0, method="chunked")):
        with pytest.raises(ss.errors.SingularMatrixError) as eager:
            call()
        with _as_on_a_device(monkeypatch), pytest.raises(ss.errors.SingularMatrixError) as deferred:
            call()
        assert str(deferred.value) == str(eager.value)
        assert "batch index (1,)" in str(eager.value)
    Tn = ss.Tridiagonal(d.clone(), lo, up, check_finite=False)
    Tn.diag[0, 5] = float("nan")
    for deferred in (True, False):  # a NaN G counts as singular, as on the eager path
        with contextlib.ExitStack() as stack:
            if deferred:
                stack.enter_context(_as_on_a_device(monkeypatch))
            with pytest.raises(ss.errors.SingularMatrixError, match="at batch index"):
                Tn.resolvent_diagonal(Z, method="chunked", check_finite=False)


def _low_rank(n, symmetric, r=2, seed=3, cplx=False):
    rng = np.random.default_rng(seed)
    d, lo, up = _problem(n, cplx=cplx)
    U, V = (torch.tensor(rng.standard_normal((n, r)) * 0.1) for _ in range(2))
    return ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, None if symmetric else up), U, V)


#: low-rank calls: (call, the tridiagonal calls it makes, symmetric T and not), real and complex z
_LOW_RANK_CALLS = {
    "resolvent": (lambda H, n: H.resolvent_diagonal(Z, method="chunked"), (2, 3)),
    "resolvent, real z": (lambda H, n: H.resolvent_diagonal(0.3, method="chunked"), (2, 3)),
    "resolvent, tensor z": (lambda H, n: H.resolvent_diagonal(torch.tensor([Z, 2 * Z], dtype=_C),
                                                               method="chunked"), (2, 3)),
    "logdet": (lambda H, n: H.logdet(Z, method="chunked"), (2, 2)),
    "logdet, real z": (lambda H, n: H.logdet(0.3, method="chunked"), (2, 2)),
    "solve": (lambda H, n: H.solve(_rhs(n)[0], Z, method="chunked"), (1, 1)),
    "solve, real z": (lambda H, n: H.solve(_rhs(n)[0], 0.3, method="chunked"), (1, 1)),
}


@pytest.mark.parametrize("cplx", [False, True, "grad"], ids=["real T", "complex T", "real T, grad"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "general"])
@pytest.mark.parametrize("case", list(_LOW_RANK_CALLS))
def test_low_rank_syncs(case, symmetric, cplx, monkeypatch):
    """``TridiagonalPlusLowRank`` on a device: one host sync per public call.  Its tridiagonal
    calls join one spanning scope and read nothing (:meth:`HostReads.spanning`); their checks
    are read with the capacitance matrix (whose singular certificate and ill-conditioning test
    the host computes from that copy: no SVD on the device), the r x r solves' error flags
    and, for logdet, the sign of a real result.  The chunk-boundary repair's syncs are counted apart,
    per tridiagonal call.  "grad": T's diagonal needs a gradient (the forward under autograd)."""
    n = 2048
    call, subcalls = _LOW_RANK_CALLS[case]
    H = _low_rank(n, symmetric, cplx=cplx is True)
    if cplx == "grad":
        H.tridiagonal.diag.requires_grad_()
    call(H, n)
    with _syncs(monkeypatch) as s:
        out = call(H, n)
    assert out.requires_grad == (cplx == "grad")
    assert s["n"] <= 1, s["n"]
    assert s["repair"] <= subcalls[0 if symmetric else 1] * _REPAIR_SYNC_BOUND
    # no SVD on the device (each would sync on CUDA to read its convergence codes: there is no
    # svd_ex): the capacitance check's singular values come from K's host copy, brought with
    # the call's one read
    assert s["svd"] == 0, s["svd"]
    assert torch.isfinite(out).all()
    K = torch.eye(2, dtype=torch.complex128) + 0.01 * torch.ones(2, 2, dtype=torch.complex128)
    with _syncs(monkeypatch) as s:
        H._check_capacitance(K, "resolvent_diagonal", Z)
    assert s["n"] == 1, s["n"]


@pytest.mark.parametrize("case", list(_LOW_RANK_CALLS))
def test_low_rank_deferred_same_results(case, monkeypatch):
    """Deferred (as on a device) and read as it goes (CPU), with ``return_info``: the same
    values and the same capacitance condition numbers."""
    n = 512
    call, _ = _LOW_RANK_CALLS[case]
    H = _low_rank(n, symmetric=False)
    zz = {"resolvent": Z, "resolvent, real z": 0.3, "resolvent, tensor z": torch.tensor([Z, 2 * Z], dtype=_C),
          "logdet": Z, "logdet, real z": 0.3, "solve": Z, "solve, real z": 0.3}[case]
    info_call = {
        "resolvent": lambda: H.resolvent_diagonal(zz, method="chunked", return_info=True),
        "logdet": lambda: H.logdet(zz, method="chunked", return_info=True),
        "solve": lambda: H.solve(_rhs(n)[0], zz, method="chunked", return_info=True),
    }[case.split(",")[0]]
    (got, gi), (want, wi) = _deferred_and_eager(monkeypatch, info_call)
    assert torch.equal(got, want)
    np.testing.assert_array_equal(gi.capacitance_cond, wi.capacitance_cond)
    assert isinstance(gi.capacitance_cond, np.ndarray)
    got, want = _deferred_and_eager(monkeypatch, lambda: call(H, n))
    assert torch.equal(got, want)


def _low_rank_scaled(n, symmetric, scale, cplx=False, guarded=False):
    """``scale (T + U V^T)``: entries at ``2^-400`` or ``2^400`` are outside the kernels' safe
    range (each tridiagonal call scales its problem); ``guarded``: ``T - 0.3 I`` with a zero
    first pivot (the real-z sweeps need the guard)."""
    d, lo, up = _problem(n, cplx=cplx)
    if guarded:
        d = d.clone()
        d[0, 0] = 0.3
    rng = np.random.default_rng(5)
    U, V = (torch.tensor(rng.standard_normal((n, 2)) * 0.1) for _ in range(2))
    T = ss.Tridiagonal(d * scale, lo * scale, None if symmetric else up * scale)
    return ss.TridiagonalPlusLowRank(T, U * scale, V)


@pytest.mark.parametrize("kind", ["2^-400", "2^400", "guarded pivot"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "general"])
@pytest.mark.parametrize("case", list(_LOW_RANK_CALLS))
def test_low_rank_deferred_fallback_same_results(case, symmetric, kind, monkeypatch):
    """Where an answer the one-read call took without reading is wrong (entries outside the
    kernels' safe range: every tridiagonal call scales its problem; a pivot that needs the
    guard), the call runs again reading as it goes: bit for bit the results of the host path,
    at shifts scaled with the entries."""
    n = 300
    scale = {"2^-400": 2.0 ** -400, "2^400": 2.0 ** 400, "guarded pivot": 1.0}[kind]
    H = _low_rank_scaled(n, symmetric, scale, guarded=kind == "guarded pivot")
    call, _ = _LOW_RANK_CALLS[case]
    zs = {"resolvent": Z, "resolvent, real z": 0.3, "resolvent, tensor z": torch.tensor([Z, 2 * Z], dtype=_C),
          "logdet": Z, "logdet, real z": 0.3, "solve": Z, "solve, real z": 0.3}[case] * scale
    f = {"resolvent": lambda: H.resolvent_diagonal(zs, method="chunked"),
         "logdet": lambda: H.logdet(zs, method="chunked"),
         "solve": lambda: H.solve(_rhs(n)[0], zs, method="chunked")}[case.split(",")[0]]
    got, want = _deferred_and_eager(monkeypatch, f)
    assert got.dtype == want.dtype
    assert torch.equal(got, want)
    assert torch.isfinite(got).all()


@pytest.mark.parametrize("n", [300, 301], ids=["det > 0", "det < 0"])
def test_low_rank_rank_zero_deferred(n, monkeypatch):
    """Rank 0 (every call reduces to T's): one read, and bit for bit the host path's results,
    a real T's log-determinant at a real z real or complex as :meth:`Tridiagonal.logdet`
    returns it (every pivot of ``T - 0.3 I`` here is negative: the sign is ``(-1)^N``)."""
    T = ss.Tridiagonal(*_problem(n))
    H = ss.TridiagonalPlusLowRank(T, torch.zeros(n, 0, dtype=torch.float64),
                                  torch.zeros(n, 0, dtype=torch.float64))
    b = _rhs(n)[0]
    for call in (lambda: H.logdet(0.3, method="chunked"), lambda: H.resolvent_diagonal(0.3, method="chunked"),
                 lambda: H.solve(b, Z, method="chunked")):
        got, want = _deferred_and_eager(monkeypatch, call)
        assert got.dtype == want.dtype and torch.equal(got, want)
        with _syncs(monkeypatch) as s:
            call()
        assert s["n"] <= 1, s["n"]
    assert H.logdet(0.3, method="sequential").is_complex() == (n % 2 == 1)


@pytest.mark.parametrize("n", [300, 301], ids=["det > 0", "det < 0"])
def test_low_rank_chunked_logdet_sign(n, monkeypatch):
    """A real problem's low-rank log-determinant on the chunked path (the CUDA path) has the
    sign of the sequential sweep's, read as it goes and in one read: the chunked phase sum of
    ``T - zI``'s N negative pivots leaves an imaginary part of order ``eps N pi`` where it is
    0 (N even), which must not read as a negative determinant."""
    T = ss.Tridiagonal(*_problem(n))
    rng = np.random.default_rng(3)
    U, V = (torch.tensor(rng.standard_normal((n, 2)) * 0.01) for _ in range(2))
    H = ss.TridiagonalPlusLowRank(T, U, V)
    want = H.logdet(0.3, method="sequential")
    for got in _deferred_and_eager(monkeypatch, lambda: H.logdet(0.3, method="chunked")):
        assert got.is_complex() == want.is_complex() == (n % 2 == 1)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


def _same_error(monkeypatch, call, error):
    """``call()`` raises ``error`` with the same message deferred (as on a device) and eager."""
    with pytest.raises(error) as eager:
        call()
    with _as_on_a_device(monkeypatch), pytest.raises(error) as deferred:
        call()
    assert str(deferred.value) == str(eager.value)
    return str(eager.value)


@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "general"])
def test_low_rank_deferred_errors(symmetric, monkeypatch):
    """The one-read low-rank calls raise what the host path raises, message for message: a NaN
    in a tensor z or in b (NonFiniteError), a NaN entry of T or U with ``check_finite=False``,
    a singular ``T - zI`` (SingularMatrixError of the tridiagonal call) and a singular
    capacitance matrix."""
    n = 257
    H = _low_rank(n, symmetric)
    zs = torch.tensor([Z, float("nan")])
    b = _rhs(n)[0]
    bn = b.clone()
    bn[3] = float("nan")
    calls = {"resolvent": lambda H, z: H.resolvent_diagonal(z, method="chunked"),
             "logdet": lambda H, z: H.logdet(z, method="chunked"),
             "solve": lambda H, z: H.solve(b, z, method="chunked")}
    for call in calls.values():
        msg = _same_error(monkeypatch, functools.partial(call, H, zs), ss.errors.NonFiniteError)
        assert msg.startswith("z contains")
    msg = _same_error(monkeypatch, lambda: H.solve(bn, Z, method="chunked"), ss.errors.NonFiniteError)
    assert msg.startswith("b contains")
    # T - zI singular at z = 0 (batch row 1: odd N, zero diagonal); H itself need not be
    d = torch.zeros(2, n, dtype=torch.float64)
    d[0] = 3.0
    lo = torch.ones(2, n - 1, dtype=torch.float64)
    rng = np.random.default_rng(7)
    U, V = (torch.tensor(rng.standard_normal((n, 2))) for _ in range(2))
    S = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, None if symmetric else 2 * lo), U, V)
    for call in calls.values():
        msg = _same_error(monkeypatch, functools.partial(call, S, 0.0), ss.SingularMatrixError)
        assert "T - z I is singular" in msg and "batch index (1,)" in msg
    # a singular capacitance matrix: H = I - e0 e0^T
    one = torch.ones(n, dtype=torch.float64)
    e0 = torch.zeros(n, 1, dtype=torch.float64)
    e0[0] = 1.0
    Tone = ss.Tridiagonal(one, torch.zeros(n - 1, dtype=torch.float64),
                          None if symmetric else torch.zeros(n - 1, dtype=torch.float64))
    Hs = ss.TridiagonalPlusLowRank(Tone, -e0, e0)
    for call in calls.values():
        msg = _same_error(monkeypatch, functools.partial(call, Hs, 0.0), ss.SingularMatrixError)
        assert "capacitance" in msg
    # NaN entries let through (check_finite=False): whatever the host path raises
    dn = H.tridiagonal.diag.clone()
    dn[0, 5] = float("nan")
    Tn = ss.Tridiagonal(dn, H.tridiagonal.lower, H.tridiagonal.upper, check_finite=False)
    Un = H.U.clone()
    Un[4, 1] = float("nan")
    unchecked = {"resolvent": lambda H: H.resolvent_diagonal(Z, method="chunked", check_finite=False),
                 "logdet": lambda H: H.logdet(Z, method="chunked", check_finite=False),
                 "solve": lambda H: H.solve(b, Z, method="chunked", check_finite=False)}
    for Hn in (ss.TridiagonalPlusLowRank(Tn, H.U, H.V, check_finite=False),
               ss.TridiagonalPlusLowRank(H.tridiagonal, Un, H.V, check_finite=False)):
        for call in unchecked.values():
            try:
                want = call(Hn)
            except Exception as exc:  # noqa: BLE001 - the host path's error, whatever it is
                _same_error(monkeypatch, functools.partial(call, Hn), type(exc))
            else:
                with _as_on_a_device(monkeypatch):
                    got = call(Hn)
                torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


def test_low_rank_deferred_raises_and_warns(monkeypatch):
    """The capacitance checks read on the device raise and warn as the host ones: a singular
    ``K`` (``H = I - e0 e0^T``), an ill-conditioned one (a warning, with the caller's line),
    a negative determinant through ``K`` alone (logdet complex, imaginary part pi)."""
    n = 8
    T = ss.Tridiagonal(torch.ones(n, dtype=torch.float64), torch.zeros(n - 1, dtype=torch.float64))
    e0 = torch.zeros(n, 1, dtype=torch.float64)
    e0[0] = 1.0
    H = ss.TridiagonalPlusLowRank(T, -e0, e0)
    U = torch.zeros(n, 2, dtype=torch.float64)
    V = torch.zeros(n, 2, dtype=torch.float64)
    U[0, 0], V[0, 0] = 1.0, 1.0
    U[1, 1], V[1, 1] = -(1 - 1e-14), 1.0
    Hw = ss.TridiagonalPlusLowRank(T, U, V)
    Hn = ss.TridiagonalPlusLowRank(T, -2 * e0, e0)
    with _as_on_a_device(monkeypatch):
        for call in (lambda: H.resolvent_diagonal(0.0, method="chunked"),
                     lambda: H.solve(torch.ones(n, dtype=torch.float64), method="chunked"),
                     lambda: H.logdet(method="chunked")):
            with pytest.raises(ss.SingularMatrixError, match="capacitance"):
                call()
        with pytest.warns(ss.IllConditionedWarning, match="cond_2") as rec:
            G = Hw.resolvent_diagonal(0.0, method="chunked")
        assert len(rec) == 1 and rec[0].filename == __file__
        with pytest.warns(ss.IllConditionedWarning, match="cond_2") as rec:
            Hw.logdet(0.0, method="chunked")
        assert len(rec) == 1 and rec[0].filename == __file__
        assert torch.isfinite(G).all()
        ld = Hn.logdet(0.0, method="chunked")
    assert ld.is_complex() and ld.imag == np.pi and abs(ld.real) < 1e-15


@pytest.mark.parametrize("case", ["resolvent", "solve"])
def test_low_rank_solver_flag_read_with_the_check(case, monkeypatch):
    """On a device the r x r solves of Woodbury (``K^{-1} I``, ``K^{-1} V^T y``) run before the
    capacitance check's read, by ``torch.linalg.solve_ex`` (no host sync), and their error flag
    is read with the check's; where it is set the solve runs again as on the host path:
    the host path's values where that solve succeeds, and torch's own error, message for
    message, where it raises."""
    from semisep.backends.torch import linalg as tl

    H = _low_rank(300, symmetric=False)
    b = _rhs(300)[0]
    call = {"resolvent": lambda: H.resolvent_diagonal(Z, method="chunked"),
            "solve": lambda: H.solve(b, Z, method="chunked")}[case]
    real = tl.solve_ex
    flagged = []

    def failing(K, B):  # the factorization "failed": a void solution and the flag set
        X, ok = real(K, B)
        flagged.append(True)
        return torch.full_like(X, float("nan")), ok & False

    want = call()
    with _as_on_a_device(monkeypatch):
        monkeypatch.setattr(tl, "solve_ex", failing)
        got = call()
    assert flagged and torch.equal(got, want)

    def raising(K, B):
        raise torch.linalg.LinAlgError("linalg.solve: The solver failed because the input matrix is "
                                       "singular.")

    monkeypatch.setattr(torch.linalg, "solve", raising)
    msg = _same_error(monkeypatch, call, torch.linalg.LinAlgError)
    assert msg.startswith("linalg.solve")
