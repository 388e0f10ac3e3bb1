"""The Dask backend against the NumPy backend and the dense reference: chains split into 1..64
chunks, guarded pivots and decoupled blocks inside and at chunk boundaries, singular matrices,
the graph's task inputs, the threaded scheduler and a LocalCluster of two worker processes."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import semisep as ss  # noqa: E402
from semisep.backends import backend_for  # noqa: E402
from semisep.errors import BackendError, SingularMatrixError  # noqa: E402

from .helpers import compute_recording_tasks  # noqa: E402

TOL = 1e-12


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "biu":
        a, b = a.astype(float), b.astype(float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), np.finfo(float).tiny))


def chain(n, batch=2, seed=0, complex_=False):
    rng = np.random.default_rng(seed)
    d = rng.uniform(-1, 1, (batch, n))
    lo = rng.uniform(0.5, 1.5, n - 1)
    up = rng.uniform(0.5, 1.5, n - 1)
    if complex_:
        d = d + 1j * rng.uniform(-0.2, 0.2, (batch, n))
    return d, lo, up


def as_dask(d, lo, up, nchunks, batch_chunk=2):
    n = d.shape[-1]
    c = max(1, -(-n // nchunks))
    return ss.Tridiagonal(da.from_array(d, chunks=(batch_chunk, c)), da.from_array(lo, chunks=c),
                          None if up is None else da.from_array(up, chunks=c))


def check_all(d, lo, up, nchunks, zs, rhs_seed=1):
    Tn = ss.Tridiagonal(d, lo, up)
    Td = as_dask(d, lo, up, nchunks)
    assert Td.backend.name == "dask"
    rng = np.random.default_rng(rhs_seed)
    b = rng.standard_normal(d.shape)
    for z in zs:
        G = Td.resolvent_diagonal(z)
        assert isinstance(G, da.Array)
        assert rel(G.compute(), Tn.resolvent_diagonal(z)) <= TOL, (nchunks, z)
        assert rel(Td.logdet(z).compute(), Tn.logdet(z)) <= TOL, (nchunks, z)
        assert rel(Td.solve(b, z).compute(), Tn.solve(b, z)) <= TOL, (nchunks, z)


@pytest.mark.parametrize("nchunks", [1, 3, 64])
def test_values_match_numpy(nchunks):
    zs = [0.3, -1.7 + 1e-3j] if nchunks < 64 else [0.3]  # 64 chunks: task-count bound, one shift
    with dask.config.set(scheduler="threads"):
        check_all(*chain(256), nchunks, zs)
        check_all(*chain(192, complex_=True, seed=3), nchunks, [0.1 + 0.0j])


def test_against_dense_reference_and_symmetric_storage():
    d, lo, _ = chain(40, batch=1, seed=5)
    Td = as_dask(d, lo, None, 7)
    z = 0.2 + 0.1j
    Tn = ss.Tridiagonal(d, lo)
    M = Tn.to_dense()[0] - z * np.eye(40)
    with dask.config.set(scheduler="sync"):
        assert rel(Td.resolvent_diagonal(z).compute()[0], np.diag(np.linalg.inv(M))) <= 1e-12
        sign, ld = np.linalg.slogdet(M)
        assert abs(Td.logdet(z).compute()[0] - (ld + np.log(sign))) <= 1e-12 * abs(ld)


def guarded_chain(n, boundaries):
    """A real symmetric chain at z = 0 whose leading minors vanish at chosen positions: at each
    ``i`` in ``boundaries`` the block structure is decoupled before ``i`` (``beta_{i-1} = 0``)
    and ``alpha_i = 0``, so the LU pivot ``d_i`` is exactly zero and guarded, while the matrix
    stays invertible (``beta_i != 0``)."""
    rng = np.random.default_rng(7)
    d = rng.uniform(0.5, 1.5, (1, n)) * rng.choice([-1, 1], (1, n))
    lo = rng.uniform(0.5, 1.5, n - 1)
    for i in boundaries:
        d[0, i] = 0.0
        lo[i - 1] = 0.0
    return d, lo


@pytest.mark.parametrize("nchunks", [1, 4, 8])
def test_guarded_pivots_and_decoupled_blocks_at_and_inside_chunk_boundaries(nchunks):
    n = 64  # chunks of 16 (4 chunks) or 8 (8 chunks): 15, 31 end a chunk, 24, 48 start one
    d, lo = guarded_chain(n, [8, 15, 24, 31, 48])
    d = np.concatenate([d, d])  # two rows in two row blocks
    Tn = ss.Tridiagonal(d, lo)
    _, info = Tn.resolvent_diagonal(0.0, return_info=True)
    assert info.total_guarded > 0  # the test exercises the guard
    b = np.random.default_rng(2).standard_normal((2, n))
    Td = as_dask(d, lo, None, nchunks, batch_chunk=1)
    M = Tn.to_dense()[0]
    with dask.config.set(scheduler="threads"):
        G = Td.resolvent_diagonal(0.0).compute()
        assert rel(G, Tn.resolvent_diagonal(0.0)) <= TOL
        assert rel(G[0], np.diag(np.linalg.inv(M))) <= 1e-12
        sign, ld = np.linalg.slogdet(M)
        assert rel(Td.logdet(0.0).compute(), Tn.logdet(0.0)) <= TOL
        assert abs(Td.logdet(0.0).compute()[0] - (ld + np.log(complex(sign)))) <= 1e-12 * abs(ld)
        x = Td.solve(b, 0.0).compute()
        assert rel(x, Tn.solve(b, 0.0)) <= TOL
        assert rel(x[0], np.linalg.solve(M, b[0])) <= 1e-12


@pytest.mark.parametrize("where", [16, 15, 20])  # a chunk's first, last, an inner position
def test_singular_raises_at_compute_time(where):
    n = 64
    d, lo = guarded_chain(n, [])
    d[0, where] = 0.0  # a 1 x 1 zero block decoupled from both neighbours
    lo[where - 1] = 0.0
    lo[where] = 0.0
    Tn = ss.Tridiagonal(d, lo)
    Td = as_dask(d, lo, None, 4)
    b = np.ones((1, n))
    for call in (lambda T: T.resolvent_diagonal(0.0), lambda T: T.logdet(0.0), lambda T: T.solve(b, 0.0)):
        with pytest.raises(SingularMatrixError):
            call(Tn)
        lazy = call(Td)  # building the graph does not raise
        with pytest.raises(SingularMatrixError), dask.config.set(scheduler="sync"):
            lazy.compute()


def test_backend_selection():
    x = da.ones((2, 8), chunks=4)
    assert backend_for(x, np.ones(7)).name == "dask"
    T = ss.Tridiagonal(x, np.ones(7))  # the NumPy array is wrapped
    assert isinstance(T.lower, da.Array)
    torch = pytest.importorskip("torch")
    with pytest.raises(BackendError, match="dask"):
        backend_for(x, torch.ones(7))


def test_tree_scan_many_chunks(monkeypatch):
    """More chunks than the scan's fan-in: the scan becomes a tree (three levels here)."""
    from semisep.backends.dask import _graph

    monkeypatch.setattr(_graph, "FAN", 3)
    d, lo, up = chain(300, batch=1, seed=11)
    Tn = ss.Tridiagonal(d, lo, up)
    Td = as_dask(d, lo, up, 20)  # chunks of 15
    assert Td.diag.numblocks[1] > _graph.FAN ** 2
    with dask.config.set(scheduler="sync"):
        z = 0.4 + 0.02j
        assert rel(Td.resolvent_diagonal(z).compute(), Tn.resolvent_diagonal(z)) <= TOL
        b = np.arange(300.0)[None]
        assert rel(Td.solve(b, z).compute(), Tn.solve(b, z)) <= TOL


def test_task_inputs_are_order_chunk():
    """Run the graph with a callback recording every task's result, then check that no task's
    inputs (its dependencies' results) exceed a few chunks, and that the scan tasks read only
    a few numbers per chunk."""
    from dask.core import get_dependencies

    n, nchunks = 1 << 14, 16
    C = n // nchunks
    d, lo, up = chain(n, batch=1, seed=4)
    Td = as_dask(d, lo, up, nchunks)
    G = Td.resolvent_diagonal(0.1 + 0.01j)
    dsk, sizes = compute_recording_tasks(G.sum())
    inputs = {k: sum(sizes.get(dep, 0) for dep in get_dependencies(dsk, k)) for k in dsk}
    chunk_bytes = C * 16  # one complex128 chunk of one row
    total = n * 16
    assert max(inputs.values()) <= 4 * chunk_bytes < total / 2
    scans = [k for k in dsk if "scan_states" in str(k) or "compose-" in str(k)]
    assert scans  # their inputs: both transfer matrices and a coupling per chunk and row
    assert max(inputs[k] for k in scans) <= (2 * 64 + 16) * nchunks


def test_ldos_sweep_reduces_lazily():
    from semisep.distributed import ldos

    R, n = 3, 200
    d = np.random.default_rng(9).uniform(-1, 1, (R, n))
    T = ss.Tridiagonal(da.from_array(d, chunks=(R, 50)), da.ones(n - 1, chunks=50))
    E = np.linspace(-2.5, 2.5, 24)
    eta = 0.05
    ref = ss.Tridiagonal(d, np.ones(n - 1)).resolvent_diagonal(E[:, None] + 1j * eta).imag / np.pi
    assert (ref > 0).all()
    with dask.config.set(scheduler="threads"):
        full = ldos(T, E, eta)
        assert full.shape == (24, R, n)
        assert rel(full.compute(), ref) <= TOL
        avg = ldos(T, E, eta, average="realisations")
        assert avg.shape == (24, n)
        assert rel(avg.compute(), ref.mean(axis=1)) <= TOL
        dos = ldos(T, E, eta, average="all")
        assert rel(dos.compute(), ref.mean(axis=(1, 2))) <= TOL
    # the reduction's graph never holds a (n_E, R, N) block: every block of rho is one chunk
    assert max(np.prod(b) for b in [tuple(max(c) for c in full.chunks)]) <= 8 * R * 50


# ------------------------------------------------------------------------------------------------
# a real cluster: two worker processes, one thread each, a memory limit per worker
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       memory_limit="480MiB", dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_cluster_values_match_numpy(client):
    d, lo, up = chain(4096, batch=2, seed=12)
    Tn = ss.Tridiagonal(d, lo, up)
    Td = as_dask(d, lo, up, 8)
    z = 0.25 + 0.01j
    b = np.random.default_rng(0).standard_normal((2, 4096))
    G, ld, x = dask.compute(Td.resolvent_diagonal(z), Td.logdet(z), Td.solve(b, z))
    assert rel(G, Tn.resolvent_diagonal(z)) <= TOL
    assert rel(ld, Tn.logdet(z)) <= TOL
    assert rel(x, Tn.solve(b, z)) <= TOL
    assert sorted(client.has_what()) and len(client.scheduler_info()["workers"]) == 2


def test_cluster_chain_larger_than_a_worker(client):
    """Inputs (diag, lower: 2 x 8 N bytes) plus output (16 N bytes) exceed one worker's memory
    limit; the chain is generated on the workers and the output reduced there.  The middle of
    the chain is checked against NumPy on a window around it (with eta = 0.5 the resolvent's
    dependence on far sites decays like exp(-c |i - j|), far below rounding over 2000 sites)."""
    n, C = 1 << 24, 1 << 20
    workers = client.scheduler_info()["workers"].values()
    limit = min(w["memory_limit"] for w in workers)
    assert 32 * n > limit
    rng = da.random.default_rng(3)
    diag = rng.uniform(-1.0, 1.0, n, chunks=C)
    lower = rng.uniform(0.5, 1.5, n - 1, chunks=C)
    T = ss.Tridiagonal(diag, lower, check_finite=False)
    z = 0.3 + 0.5j
    G = T.resolvent_diagonal(z, check_finite=False)
    lo, hi, w = n // 2 - 100, n // 2 + 100, 2000
    mean_im, window, dw, lw = dask.compute(G.imag.mean(), G[lo:hi], diag[lo - w:hi + w],
                                           lower[lo - w:hi + w - 1])
    ref = ss.Tridiagonal(dw, lw).resolvent_diagonal(z)[w:-w]
    assert rel(window, ref) <= TOL
    assert 0 < mean_im <= 1 / 0.5
    rss = client.run(lambda: __import__("psutil").Process().memory_info().rss)
    assert max(rss.values()) < limit


def _lowrank_pair(sym, seed=0, B=2, n=300, r=3, C=64):
    rng = np.random.default_rng(seed)
    d = rng.uniform(-1, 1, (B, n))
    lo, up = rng.uniform(0.5, 1.5, n - 1), None if sym else rng.uniform(0.5, 1.5, n - 1)
    U, V = rng.standard_normal((B, n, r)), rng.standard_normal((n, r))
    Hn = ss.TridiagonalPlusLowRank(ss.Tridiagonal(d, lo, up), U, V)
    Td = ss.Tridiagonal(da.from_array(d, chunks=(1, C)), da.from_array(lo, chunks=C),
                        None if sym else da.from_array(up, chunks=C))
    return Hn, ss.TridiagonalPlusLowRank(Td, da.from_array(U, chunks=(1, C, r)), V)  # V: NumPy, wrapped


@pytest.mark.parametrize("sym", [False, True])
def test_lowrank_on_dask_matches_numpy(sym):
    Hn, Hd = _lowrank_pair(sym)
    assert Hd.backend.name == "dask" and isinstance(Hd.U, da.Array) and isinstance(Hd.V, da.Array)
    rng = np.random.default_rng(4)
    b, bm = rng.standard_normal((2, 300)), rng.standard_normal((2, 300, 2))
    for z in (0.3 + 0.01j, 3.0):  # complex inside the spectrum; real outside it
        G, ld, x, xm = Hd.resolvent_diagonal(z), Hd.logdet(z), Hd.solve(b, z), Hd.solve(bm, z)
        assert all(isinstance(v, da.Array) for v in (G, ld, x, xm))
        with dask.config.set(scheduler="threads"):
            G, ld, x, xm = dask.compute(G, ld, x, xm)
        assert rel(G, Hn.resolvent_diagonal(z)) <= TOL, z
        assert rel(ld, Hn.logdet(z)) <= TOL, z
        assert rel(x, Hn.solve(b, z)) <= TOL, z
        assert rel(xm, Hn.solve(bm, z)) <= TOL, z


def test_lowrank_on_dask_against_dense_and_rank_zero():
    Hn, Hd = _lowrank_pair(False, seed=3, B=1, n=60, r=2, C=16)
    z = -0.4 + 0.2j
    M = Hn.to_dense()[0] - z * np.eye(60)
    with dask.config.set(scheduler="sync"):
        assert rel(Hd.resolvent_diagonal(z).compute()[0], np.diag(np.linalg.inv(M))) <= 1e-12
        sign, lad = np.linalg.slogdet(M)
        assert abs(Hd.logdet(z).compute()[0] - (lad + np.log(sign))) <= 1e-12 * abs(lad)
        H0 = ss.TridiagonalPlusLowRank(Hd.tridiagonal, da.zeros((60, 0), chunks=16), np.zeros((60, 0)))
        assert rel(H0.resolvent_diagonal(z).compute(), Hd.tridiagonal.resolvent_diagonal(z).compute()) == 0


def test_lowrank_on_dask_singular_capacitance_raises_at_compute_time():
    """``v^T A^{-1} u = -1`` makes ``K = 1 + v^T A^{-1} u = 0``: ``H - zI`` is singular while
    ``A = T - zI`` is not."""
    rng = np.random.default_rng(8)
    n, z = 128, 0.25 + 0.1j
    d, lo = rng.uniform(-1, 1, n), rng.uniform(0.5, 1.5, n - 1)
    u = rng.standard_normal((n, 1))
    x = ss.Tridiagonal(d, lo).solve(u, z)
    v = -x / (x[:, 0] @ x[:, 0])  # the transpose product: v^T x = -1
    H = ss.TridiagonalPlusLowRank(ss.Tridiagonal(da.from_array(d, chunks=32), da.from_array(lo, chunks=32)),
                                  u, v)
    for lazy in (H.resolvent_diagonal(z), H.logdet(z), H.solve(np.ones(n), z)):
        with pytest.raises(SingularMatrixError, match="capacitance"), dask.config.set(scheduler="sync"):
            lazy.compute()


def test_lowrank_on_dask_return_info_is_a_clear_error():
    _, Hd = _lowrank_pair(True, n=64, C=16)
    for call in (lambda: Hd.resolvent_diagonal(0.1j, return_info=True),
                 lambda: Hd.logdet(0.1j, return_info=True),
                 lambda: Hd.solve(np.ones(64), 0.1j, return_info=True)):
        with pytest.raises(BackendError, match="return_info"):
            call()


def test_lowrank_on_dask_task_results_are_order_chunk():
    """No task of the Woodbury graph produces more than a few chunks' worth of data (r columns):
    nothing of length N is gathered."""
    n, C, r = 1 << 14, 1 << 10, 2
    _, Hd = _lowrank_pair(False, seed=6, B=1, n=n, r=r, C=C)
    b = np.ones((1, n))
    # reduced on the workers: the client's own gather of a whole result is not a task's
    _, by_key = compute_recording_tasks(Hd.resolvent_diagonal(0.2 + 0.05j).sum(),
                                        Hd.solve(b, 0.2 + 0.05j).sum())
    sizes = list(by_key.values())
    chunk_bytes = C * (r + 1) * 16  # one chunk of [y, X] (k + r = 3 complex columns)
    assert max(sizes) <= 2 * chunk_bytes and 2 * chunk_bytes < n * r * 16 / 4, (max(sizes), chunk_bytes)


@pytest.mark.parametrize("cplx", [False, True])
def test_chunk_kernels_match_their_twins(cplx):
    from semisep.backends.numpy import chunks as ch

    rng = np.random.default_rng(13)
    B, C = 3, 50
    a = rng.uniform(-2, 2, (B, C)) + (1j * rng.uniform(-1, 1, (B, C)) if cplx else 0)
    bL = rng.uniform(0.5, 1.5, (B, C))
    bL[:, 0] = 0.0
    bo = rng.uniform(0.5, 1.5, B)
    shift = np.full(B, 0.3 + 0.2j if cplx else 0.3)
    for rev in (False, True):
        M = ch.transfer_matrices(a, bL, bo, shift, reverse=rev)
        Mr = ch.transfer_matrices_ref(a, bL, bo, shift, reverse=rev)
        assert rel(M, Mr) <= 1e-13
    a[0, 7] = 0.0  # a guarded pivot in row 0 (decoupled before it)
    bL[0, 7] = 0.0
    pm = np.full(B, 1e-14)
    out, ref = ch.left_chunk(a, bL[:, 1:], bo, pm, True), ch.left_chunk_ref(a, bL[:, 1:], bo, pm, True)
    assert int(out[3][0]) == int(ref[3][0]) == 1
    for x, y in zip(out, ref, strict=True):
        assert rel(x, y) <= 1e-13
    m, f = rng.standard_normal((B, C)) * 0.9, rng.standard_normal((B, C, 2))
    carry = rng.standard_normal((B, 2))
    for rev in (False, True):
        got, want = ch.affine_chunk(m, f, carry, rev), ch.affine_chunk_ref(m, f, carry, rev)
        for x, y in zip(got, want, strict=True):
            assert rel(x, y) <= 1e-13
