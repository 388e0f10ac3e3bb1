"""The kernel-selection policies and ``PivotInfo.method`` (the kernel that ran).

The torch policy :func:`semisep.backends.torch.select.select_kernel` is a pure function of
descriptors, so its whole table -- CUDA rows included -- is tested here without a GPU.  End to
end, ``return_info=True`` must report the kernel that ran on CPU tensors and NumPy arrays, and
the backend's fused -> chunked fallback is exercised with the Triton entry point replaced by a
stand-in (the real kernels need CUDA; tests/test_cuda.py runs them there).
"""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

import semisep as ss
from semisep.backends.numpy import NumpyBackend
from semisep.backends.numpy import select_kernel as numpy_select
from semisep.reference import dense_resolvent_diagonal

torch = pytest.importorskip("torch")

from semisep.backends import torch as torch_backend  # noqa: E402
from semisep.backends.torch.select import (  # noqa: E402
    FALLBACK,
    KERNELS,
    OPERATIONS,
    chunk_length_for,
    pivot_chunk_length,
    select_kernel,
)

DEVICES = ("cpu", "cuda", "meta", "mps")


def _expected(operation, method, device_type, needs_grad, complex_shift, n, numba, triton):
    """The decision table of select_kernel's docstring, written out row by row."""
    fused_ok = (operation == "resolvent_diagonal_shifted" and device_type == "cuda" and triton
                and complex_shift and n >= 2 and not needs_grad)
    if method in ("reference", "chunked"):
        return method
    if method == "sequential":
        return "sequential" if device_type == "cpu" and numba else ValueError
    if method == "fused":
        return "fused" if fused_ok else ValueError
    assert method == "auto"
    if device_type == "cpu" and numba:
        return "sequential"
    return "fused" if fused_ok else "chunked"


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("method", ("auto",) + KERNELS)
def test_torch_table(operation, method):
    """Every combination of the descriptors against the table in the docstring."""
    for device_type, grad, cshift, n, numba, triton in itertools.product(
        DEVICES, (False, True), (False, True), (1, 2, 64), (False, True), (False, True)
    ):
        want = _expected(operation, method, device_type, grad, cshift, n, numba, triton)
        kw = dict(device_type=device_type, needs_grad=grad, complex_shift=cshift, n=n,
                  numba_available=numba, triton_available=triton)
        if want is ValueError:
            with pytest.raises(ValueError, match=f"method='{method}'"):
                select_kernel(operation, method, **kw)
        else:
            assert select_kernel(operation, method, **kw) == want, kw


def test_torch_table_named_rows():
    """The rows users meet, spelled out (CPU auto, CUDA auto with and without the fused gate)."""
    kw = dict(numba_available=True, triton_available=True, n=1024)
    op = "resolvent_diagonal_shifted"
    assert select_kernel(op, "auto", device_type="cpu", complex_shift=True, **kw) == "sequential"
    assert select_kernel(op, "auto", device_type="cuda", complex_shift=True, **kw) == "fused"
    assert select_kernel(op, "auto", device_type="cuda", complex_shift=True, needs_grad=True,
                         **kw) == "chunked"
    assert select_kernel(op, "auto", device_type="cuda", complex_shift=False, **kw) == "chunked"
    assert select_kernel("logdet", "auto", device_type="cuda", complex_shift=True, **kw) == "chunked"
    assert select_kernel(op, "auto", device_type="cuda", complex_shift=True, n=1024,
                         numba_available=True, triton_available=False) == "chunked"
    assert select_kernel("solve", "auto", device_type="cpu", n=8, numba_available=False) == "chunked"
    assert FALLBACK == {"fused": "chunked"}


def test_torch_table_errors():
    op = "resolvent_diagonal_shifted"
    with pytest.raises(ValueError, match="method='fused'.*needs CUDA tensors; got a tensor on cpu"):
        select_kernel(op, "fused", device_type="cpu", complex_shift=True, n=8, triton_available=True)
    with pytest.raises(ValueError, match="method='fused'.*needs triton"):
        select_kernel(op, "fused", device_type="cuda", complex_shift=True, n=8)
    with pytest.raises(ValueError, match="method='fused'.*no backward"):
        select_kernel(op, "fused", device_type="cuda", complex_shift=True, n=8, needs_grad=True,
                      triton_available=True)
    with pytest.raises(ValueError, match="method='fused'.*complex shift"):
        select_kernel(op, "fused", device_type="cuda", n=8, triton_available=True)
    with pytest.raises(ValueError, match="method='fused'.*N >= 2"):
        select_kernel(op, "fused", device_type="cuda", complex_shift=True, n=1, triton_available=True)
    with pytest.raises(ValueError, match="method='fused'.*shift form"):
        select_kernel("solve", "fused", device_type="cuda", complex_shift=True, n=8, triton_available=True)
    with pytest.raises(ValueError, match="method='sequential'.*needs CPU tensors; got a tensor on cuda"):
        select_kernel("logdet", "sequential", device_type="cuda")
    with pytest.raises(ValueError, match="method='sequential'.*could not be imported"):
        select_kernel("logdet", "sequential", device_type="cpu", numba_available=False)
    with pytest.raises(ValueError, match="operation"):
        select_kernel("bogus", "auto", device_type="cpu")
    with pytest.raises(ValueError, match="method"):
        select_kernel("solve", "bogus", device_type="cpu")


def test_numpy_table():
    for op in ("resolvent_diagonal", "resolvent_diagonal_shifted", "logdet", "solve"):
        assert numpy_select(op, "reference") == "reference"
        assert numpy_select(op, "auto") == numpy_select(op, "sequential") == "sequential"
    sel = "resolvent_diagonal_selected"
    assert numpy_select(sel, "reference", 100, np.array([3])) == "reference"
    assert numpy_select(sel, "auto", 100, np.array([3, 50])) == "sequential-selected"  # K <= N/4
    assert numpy_select(sel, "sequential", 100, np.array([0, 99] * 20)) == "sequential"  # K > N/4, spread
    assert numpy_select(sel, "auto", 100, np.arange(75, 100)) == "sequential-selected"  # K = N/4
    assert numpy_select(sel, "auto", 100, np.arange(74, 100)) == "sequential"  # K > N/4
    assert numpy_select(sel, "auto", 100, np.array([], np.int64)) == "sequential-selected"


# ------------------------------------------------------------------------------------------------
# end to end: PivotInfo.method and requested_method
# ------------------------------------------------------------------------------------------------
def _tri_np(n=12, batch=(2,)):
    rng = np.random.default_rng(0)
    return ss.Tridiagonal(rng.standard_normal(batch + (n,)), rng.standard_normal(batch + (n - 1,)))


def _tri_torch(n=12, batch=(2,), requires_grad=False):
    T = _tri_np(n, batch)
    d = torch.tensor(T.diag, requires_grad=requires_grad)
    off = torch.tensor(T.lower, requires_grad=requires_grad)
    return ss.Tridiagonal(d, off)


def _calls(T, method, like):
    b = like(np.ones(T.batch_shape + (T.shape[-1],)))
    return {
        "resolvent_diagonal": lambda: T.resolvent_diagonal(0.3 + 0.5j, method=method, return_info=True),
        "resolvent_diagonal_real_z": lambda: T.resolvent_diagonal(0.3, method=method, return_info=True),
        "logdet": lambda: T.logdet(0.5j, method=method, return_info=True),
        "solve": lambda: T.solve(b, 0.5j, method=method, return_info=True),
    }


@pytest.mark.parametrize("method, ran", [("auto", "sequential"), ("sequential", "sequential"),
                                         ("chunked", "chunked"), ("reference", "reference")])
@pytest.mark.parametrize("grad", [False, True])
def test_torch_cpu_reports_kernel(method, ran, grad):
    T = _tri_torch(requires_grad=grad)
    for name, call in _calls(T, method, torch.as_tensor).items():
        _, info = call()
        assert info.method == ran, name
        assert info.requested_method == method, name


@pytest.mark.parametrize("method, ran", [("auto", "sequential"), ("chunked", "chunked"),
                                         ("reference", "reference")])
def test_torch_cpu_selected_reports_kernel(method, ran):
    """With ``indices=`` the torch backend computes the full diagonal and gathers."""
    T = _tri_torch()
    G, info = T.resolvent_diagonal(0.5j, indices=[1, 4], method=method, return_info=True)
    assert info.method == ran and info.requested_method == method
    Gd = dense_resolvent_diagonal(T.diag.numpy(), T.lower.numpy(), None, 0.5j)
    np.testing.assert_allclose(G.numpy(), Gd[..., [1, 4]], rtol=1e-12)


def test_torch_fused_on_cpu_raises():
    T = _tri_torch()
    with pytest.raises(ValueError, match="method='fused'.*CUDA"):
        T.resolvent_diagonal(0.5j, method="fused")
    with pytest.raises(ValueError, match="method='fused'"):
        T.logdet(0.5j, method="fused")


@pytest.mark.parametrize("method, ran", [("auto", "sequential"), ("sequential", "sequential"),
                                         ("reference", "reference")])
def test_numpy_reports_kernel(method, ran):
    T = _tri_np()
    for name, call in _calls(T, method, np.asarray).items():
        _, info = call()
        assert info.method == ran and info.requested_method == method, name


@pytest.mark.parametrize("method", ["auto", "sequential"])
def test_numpy_selected_reports_kernel(method):
    T = _tri_np(n=40)
    Gd = dense_resolvent_diagonal(T.diag, T.lower, None, 0.5j)
    few = [3, 17]  # K <= N/4: the selected-entry kernel
    G, info = T.resolvent_diagonal(0.5j, indices=few, method=method, return_info=True)
    assert info.method == "sequential-selected" and info.requested_method == method
    np.testing.assert_allclose(G, Gd[..., few], rtol=1e-12)
    many = [0, 39] * 12  # K > N/4 and spread out: the full kernel, then a gather
    G, info = T.resolvent_diagonal(0.5j, indices=many, method=method, return_info=True)
    assert info.method == "sequential"
    np.testing.assert_allclose(G, Gd[..., many], rtol=1e-12)
    _, info = T.resolvent_diagonal(0.5j, indices=few, method="reference", return_info=True)
    assert info.method == "reference"


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_lowrank_reports_kernel(lib):
    """The Woodbury paths (fused sweeps, or the composed solves) fill PivotInfo from the same
    record."""
    rng = np.random.default_rng(1)
    T = _tri_np(n=16, batch=())
    U, V = rng.standard_normal((16, 2)), rng.standard_normal((16, 2))
    cases = [("auto", "sequential"), ("reference", "reference")]
    if lib == "torch":
        T = ss.Tridiagonal(torch.tensor(T.diag), torch.tensor(T.lower))
        U, V = torch.tensor(U), torch.tensor(V)
        cases.append(("chunked", "chunked"))
    op = ss.TridiagonalPlusLowRank(T, U, V)
    b = np.ones(16) if lib == "numpy" else torch.ones(16, dtype=torch.float64)
    for method, ran in cases:
        for info in (op.resolvent_diagonal(0.5j, method=method, return_info=True)[1],
                     op.solve(b, 0.5j, method=method, return_info=True)[1],
                     op.logdet(0.5j, method=method, return_info=True)[1]):
            assert info.pivots
            for key, p in info.pivots.items():
                assert p.method == ran and p.requested_method == method, (method, key)


# ------------------------------------------------------------------------------------------------
# the fused -> chunked fallback, with a stand-in for the Triton entry point
# ------------------------------------------------------------------------------------------------
def _pretend_fused(monkeypatch, result):
    """The policy answers "fused" (as on CUDA with triton) and the Triton entry point returns
    ``result(diag, shift, beta, pivmin)``; records the calls."""
    calls = []

    def fake_select(operation, method, **kw):
        if operation == "resolvent_diagonal_shifted" and method in ("auto", "fused"):
            return "fused"
        return select_kernel(operation, method, **kw)

    def fake_fused(diag, shift, beta, pivmin, **kw):
        calls.append(diag.shape)
        out = result(diag, shift, beta, pivmin)
        if out is None:  # every row declined: the entry point's (G, guarded, singular, declined)
            B, N = diag.shape
            return (torch.full((B, N), float("nan"), dtype=shift.dtype), torch.zeros(B, dtype=torch.int64),
                    torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool))
        return (*out, None)

    monkeypatch.setattr(torch_backend, "select_kernel", fake_select)
    monkeypatch.setattr(torch_backend._triton, "resolvent_diagonal_fused", fake_fused)
    return calls


@pytest.mark.parametrize("method", ["auto", "fused"])
def test_fused_declined_runs_chunked(monkeypatch, method):
    T = _tri_torch()
    want = T.resolvent_diagonal(0.3 + 0.5j, method="reference")
    calls = _pretend_fused(monkeypatch, lambda *a: None)  # declined: a pivot needs the guard
    G, info = T.resolvent_diagonal(0.3 + 0.5j, method=method, return_info=True)
    assert calls and info.method == "chunked" and info.requested_method == method
    torch.testing.assert_close(G, want, rtol=1e-12, atol=0)


def test_fused_ran_is_reported(monkeypatch):
    T = _tri_torch()
    want = T.resolvent_diagonal(0.3 + 0.5j, method="reference")

    other = torch_backend.TorchBackend()  # its own record: the stand-in must not write ours

    def stand_in(diag, shift, beta, pivmin):  # the chunked kernel's values, as the fused give
        return other.resolvent_diagonal_shifted(diag, shift, beta, pivmin, "chunked")

    calls = _pretend_fused(monkeypatch, stand_in)
    G, info = T.resolvent_diagonal(0.3 + 0.5j, return_info=True)
    assert calls and info.method == "fused" and info.requested_method == "auto"
    torch.testing.assert_close(G, want, rtol=1e-12, atol=0)


def test_chunk_length_table():
    """:func:`chunk_length_for`'s table: invalid values raise for every kernel; the chunked
    kernels get the call's value (None: their own default); the others none."""
    for kernel in KERNELS:
        for bad in (0, -1, 1.5, True, "8"):
            with pytest.raises(ValueError, match="chunk_length"):
                chunk_length_for(kernel, bad)
        for L in (None, 1, 7, np.int64(64)):
            want = (None if L is None else int(L)) if kernel in ("chunked", "fused") else None
            got = chunk_length_for(kernel, L)
            assert got == want and (got is None or type(got) is int), (kernel, L)


def test_chunk_length_is_per_call_and_reaches_the_kernels(monkeypatch):
    """No backend-wide setting: ``chunk_length`` given to one call reaches the chunked kernel,
    the fused kernels and the chunked run of their declined rows; it changes the chunk layout
    only (values agree to rounding with the default length)."""
    bk = torch_backend.TorchBackend()
    assert not hasattr(bk, "chunk_length")
    g = torch.Generator().manual_seed(4)
    d = torch.rand(2, 12, generator=g, dtype=torch.float64) - 0.5
    beta = 0.5 + torch.rand(2, 11, generator=g, dtype=torch.float64)
    shift = torch.tensor([0.3 + 0.5j, -0.2 + 0.1j])
    pm = torch.full((2,), 1e-300, dtype=torch.float64)
    seen, lengths = [], []
    real_chunked = torch_backend._resolvent_chunked_shifted

    def spy(*a, L=None, **kw):
        seen.append(L)
        return real_chunked(*a, L=L, **kw)

    monkeypatch.setattr(torch_backend, "_resolvent_chunked_shifted", spy)
    G3 = bk.resolvent_diagonal_shifted(d, shift, beta, pm, "chunked", chunk_length=3)[0]
    G = bk.resolvent_diagonal_shifted(d, shift, beta, pm, "chunked")[0]
    assert seen == [3, None]
    torch.testing.assert_close(G3, G, rtol=1e-12, atol=0)
    calls = _pretend_fused(monkeypatch, lambda *a: None)  # every row declined
    stand_in = torch_backend._triton.resolvent_diagonal_fused

    def fused_with_L(diag, shift, beta, pivmin, L=None):
        lengths.append(L)
        return stand_in(diag, shift, beta, pivmin)

    monkeypatch.setattr(torch_backend._triton, "resolvent_diagonal_fused", fused_with_L)
    Gf = bk.resolvent_diagonal_shifted(d, shift, beta, pm, "auto", chunk_length=5)[0]
    assert calls and lengths == [5] and seen == [3, None, 5]
    torch.testing.assert_close(Gf, G, rtol=1e-12, atol=0)


def test_pivot_chunk_length_table():
    """:func:`pivot_chunk_length`: the chunked and fused kernels report the call's ``L`` (at most
    N) or their own default; the kernels without chunks None."""
    from semisep.backends.torch.chunks import _pivot_chunk_length
    from semisep.backends.triton import default_chunk_length

    for n in (1, 5, 100, 4096):
        assert pivot_chunk_length("chunked", None, n) == _pivot_chunk_length(n)
        assert pivot_chunk_length("fused", None, n) == default_chunk_length(n)
        for kernel in ("chunked", "fused"):
            assert pivot_chunk_length(kernel, 7, n) == min(7, n)
        for kernel in ("sequential", "reference"):
            assert pivot_chunk_length(kernel, None, n) is None
            assert pivot_chunk_length(kernel, 7, n) is None


def _public_calls(T, L, method="chunked"):
    b = torch.ones(T.batch_shape + (T.shape[-1],), dtype=torch.float64)
    kw = dict(method=method, chunk_length=L, return_info=True)
    return {
        "resolvent_diagonal": lambda: T.resolvent_diagonal(0.3 + 0.5j, **kw),
        "resolvent_diagonal_real_z": lambda: T.resolvent_diagonal(0.3, **kw),
        "indices": lambda: T.resolvent_diagonal(0.3 + 0.5j, indices=[4, 0], **kw),
        "logdet": lambda: T.logdet(0.5j, **kw),
        "solve": lambda: T.solve(b, 0.5j, **kw),
    }



def _spy_chunk_lengths(monkeypatch) -> list:
    """The ``chunk_length`` argument of every ``chunk_length_for`` call the torch backend
    makes from now on (the list fills as kernels run)."""
    seen: list = []
    real = torch_backend.chunk_length_for

    def spy(kernel, chunk_length=None):
        seen.append(chunk_length)
        return real(kernel, chunk_length)

    monkeypatch.setattr(torch_backend, "chunk_length_for", spy)
    return seen

@pytest.mark.parametrize("grad", [False, True])
def test_public_chunk_length_reaches_the_kernel_and_is_reported(monkeypatch, grad):
    """``Tridiagonal``'s ``chunk_length`` keyword reaches the kernel call (its layout only: the
    values agree with the default length to rounding) and ``PivotInfo.chunk_length`` reports
    the length that ran: ``min(L, N)``, the chunked default, None without chunks."""
    from semisep.backends.torch.chunks import _pivot_chunk_length

    seen = _spy_chunk_lengths(monkeypatch)
    n = 40
    T = _tri_torch(n=n, requires_grad=grad)
    want = {k: c()[0] for k, c in _public_calls(T, None, "sequential").items()}
    for L, reported in ((3, 3), (None, _pivot_chunk_length(n)), (1000, n)):
        for name, call in _public_calls(T, L).items():
            seen.clear()
            out, info = call()
            assert seen and seen[0] == L, (name, L, seen)
            assert info.method == "chunked" and info.chunk_length == reported, (name, L, info)
            torch.testing.assert_close(out, want[name], rtol=1e-10, atol=0)
            if grad:  # the backward runs with the same length
                (torch.view_as_real(out) if out.is_complex() else out).sum().backward()
    for name, call in _public_calls(T, 3, "sequential").items():
        assert call()[1].chunk_length is None, name
    for name, call in _public_calls(T, 3, "reference").items():
        assert call()[1].chunk_length is None, name


def test_fused_reports_its_chunk_length(monkeypatch):
    """The fused kernels report their chunk length (the call's, or their default); rows they
    decline run chunked with the same length, which is then reported."""
    from semisep.backends.triton import default_chunk_length

    T = _tri_torch(n=12)
    other = torch_backend.TorchBackend()
    _pretend_fused(monkeypatch, lambda d, s, b, p: other.resolvent_diagonal_shifted(d, s, b, p, "chunked"))
    assert T.resolvent_diagonal(0.3 + 0.5j, return_info=True)[1].chunk_length == default_chunk_length(12)
    _, info = T.resolvent_diagonal(0.3 + 0.5j, chunk_length=5, return_info=True)
    assert info.method == "fused" and info.chunk_length == 5
    monkeypatch.undo()
    _pretend_fused(monkeypatch, lambda *a: None)  # every row declined
    _, info = T.resolvent_diagonal(0.3 + 0.5j, chunk_length=5, return_info=True)
    assert info.method == "chunked" and info.chunk_length == 5


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "8"])
def test_public_chunk_length_is_validated(bad):
    T = _tri_torch()
    for call in _public_calls(T, bad).values():
        with pytest.raises(ValueError, match="chunk_length must be a positive integer or None"):
            call()


def test_numpy_takes_no_chunk_length():
    """The NumPy backend has no chunked kernels: ``chunk_length=None`` is accepted (and None
    reported), any other value raises naming the argument."""
    T = _tri_np()
    b = np.ones(T.batch_shape + (T.shape[-1],))
    calls = {"resolvent_diagonal": lambda L: T.resolvent_diagonal(0.5j, chunk_length=L, return_info=True),
             "logdet": lambda L: T.logdet(0.5j, chunk_length=L, return_info=True),
             "solve": lambda L: T.solve(b, 0.5j, chunk_length=L, return_info=True)}
    for name, call in calls.items():
        assert call(None)[1].chunk_length is None, name
        with pytest.raises(ValueError, match="chunk_length=8: the numpy backend"):
            call(8)


def test_chunk_length_under_torch_func_and_opcheck():
    """Under ``torch.func`` the keyword travels in the operator-level op: ``vmap`` gives the
    eager values of the same chunk length bit for bit, ``grad`` its gradient (to rounding, as
    tests/test_torch_func.py: the outer ops are differentiated by functorch)."""
    T = _tri_torch(n=40, batch=(3,))
    d0, off = T.diag.detach(), T.lower.detach()

    def loss(d):
        G = ss.Tridiagonal(d, off).resolvent_diagonal(0.3 + 0.5j, method="chunked", chunk_length=3)
        return torch.view_as_real(G).sin().sum()

    d = d0.clone().requires_grad_()
    loss(d).backward()
    torch.testing.assert_close(torch.func.grad(loss)(d0), d.grad, rtol=1e-12, atol=0)
    kw = dict(method="chunked", chunk_length=3)
    vm = torch.vmap(lambda dd, oo: ss.Tridiagonal(dd, oo).logdet(0.5j, **kw))(d0, off)
    assert torch.equal(vm, ss.Tridiagonal(d0, off).logdet(0.5j, **kw))
    op = torch.ops.semisep.tridiagonal_call.default
    torch.library.opcheck(op, ("resolvent_diagonal", d0.clone().requires_grad_(), off, None,
                               torch.tensor(0.3 + 0.5j)),
                          dict(z_scalar=[0.0, 0.0], z_kind=0, b=None, indices=None, method="chunked",
                               check_finite_op=True, check_finite=True, chunk_length=3))


# ------------------------------------------------------------------------------------------------
# the record is per thread
# ------------------------------------------------------------------------------------------------
def test_record_is_per_thread():
    """Two threads calling the same backend with different methods each see their own kernel."""
    T = _tri_torch(n=64, batch=(4,))
    errors: list[str] = []
    start = threading.Barrier(2)

    def work(method, ran):
        start.wait()
        for _ in range(30):
            _, info = T.resolvent_diagonal(0.5j, method=method, return_info=True)
            if info.method != ran:
                errors.append(f"{method}: reported {info.method}")

    pairs = (("chunked", "chunked"), ("auto", "sequential"))
    threads = [threading.Thread(target=work, args=a) for a in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def test_backend_without_record_reports_request():
    """A backend that keeps no record (the base class default) reports the argument."""
    bk = NumpyBackend()
    assert bk.kernel_ran("auto") == "auto"  # nothing ran yet on this instance
    bk._ran = None
    assert bk.kernel_ran("sequential") == "sequential"


def test_lowrank_chunk_length_reaches_its_tridiagonal_calls(monkeypatch):
    """``TridiagonalPlusLowRank``'s ``chunk_length`` reaches every tridiagonal call it makes
    (the chunked kernels see it; the values agree with the sequential ones to rounding, and the
    sub-calls' ``PivotInfo`` report it); NumPy operators reject a length, as ``Tridiagonal``'s
    do; a bad value raises naming the argument."""
    seen = _spy_chunk_lengths(monkeypatch)
    rng = np.random.default_rng(5)
    n, r = 40, 2
    T = _tri_torch(n=n)
    U = torch.tensor(0.3 * rng.standard_normal((n, r)))
    V = torch.tensor(0.3 * rng.standard_normal((n, r)))
    H = ss.TridiagonalPlusLowRank(T, U, V)
    b = torch.ones(T.batch_shape + (n,), dtype=torch.float64)
    calls = {
        "resolvent_diagonal": lambda **kw: H.resolvent_diagonal(0.3 + 0.5j, **kw),
        "logdet": lambda **kw: H.logdet(0.5j, **kw),
        "solve": lambda **kw: H.solve(b, 0.5j, **kw),
    }
    for name, call in calls.items():
        want = call(method="sequential")
        seen.clear()
        out, info = call(method="chunked", chunk_length=3, return_info=True)
        assert seen and set(seen) == {3}, (name, seen)
        assert all(p.chunk_length == 3 for p in info.pivots.values()), (name, info.pivots)
        torch.testing.assert_close(out, want, rtol=1e-10, atol=0)
        with pytest.raises(ValueError, match="chunk_length must be a positive integer or None"):
            call(method="chunked", chunk_length=0)
    Hn = ss.TridiagonalPlusLowRank(_tri_np(n=n), U.numpy(), V.numpy())
    with pytest.raises(ValueError, match="chunk_length=4: the numpy backend"):
        Hn.resolvent_diagonal(0.5j, chunk_length=4)
    assert np.allclose(Hn.resolvent_diagonal(0.5j, chunk_length=None), Hn.resolvent_diagonal(0.5j))
