"""Accuracy of the Dask graph at chunk boundaries against NumPy's sequential sweep.

The carries into the chunks come from a scan over 2 x 2 transfer matrices, accurate only
relative to the products' norms; near a state localised close to ``z`` the elements just after
a boundary lost up to two digits before the boundary repair (:mod:`semisep.backends.dask._repair`).
Chains (those of ``tests/test_chunk_accuracy.py``): non-symmetric disordered (``diag = -2 +
U(-1, 1)``, lower and upper ``U(0.5, 1.5)``), symmetric disordered, clean, at ``Im z = 1e-4``,
split into 1 .. 64 chunks (64 chunks of 64 elements).  Bound: complex128 G within 1e-12
relative of NumPy's elementwise wherever ``|G_ii| >= 1e-8 max |G|``; logdet and solve within
1e-12 relative (max-norm).
"""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import semisep as ss  # noqa: E402
from semisep.backends.numpy import chunk_passes as cp  # noqa: E402

from .helpers import compute_recording_tasks  # noqa: E402

N = 4096


def _chain(kind: str, B: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    if kind == "clean":
        return np.full((B, n), -2.0), np.ones((B, n - 1)), np.ones((B, n - 1))
    diag = -2.0 + rng.uniform(-1, 1, (B, n))
    if kind == "disordered":
        return diag, np.ones((B, n - 1)), np.ones((B, n - 1))
    return diag, rng.uniform(0.5, 1.5, (B, n - 1)), rng.uniform(0.5, 1.5, (B, n - 1))


def _elementwise(G, Gref) -> float:
    """Max relative error over the elements with ``|Gref| >= 1e-8 max |Gref|`` (per row)."""
    a = np.abs(Gref)
    keep = a >= 1e-8 * a.max(axis=1, keepdims=True)
    return float(np.max((np.abs(G - Gref) / np.where(keep, a, 1))[keep]))


def _maxnorm(x, ref) -> float:
    return float(np.abs(x - ref).max() / np.abs(ref).max())


def _dask(d, lo, up, nchunks):
    c = -(-d.shape[1] // nchunks)
    return ss.Tridiagonal(*(da.from_array(x, chunks=(x.shape[0], c)) for x in (d, lo, up)),
                          check_finite=False)


CASES = [("nonsymmetric", 0.5 + 1e-4j), ("nonsymmetric", -1.3 + 1e-4j), ("disordered", 0.5 + 1e-4j),
         ("disordered", -2.7 + 1e-4j), ("clean", -1.0 + 1e-4j)]


@pytest.mark.parametrize("nchunks", [1, 7, 64])
@pytest.mark.parametrize("kind,z", CASES, ids=[f"{k}-{z.real}" for k, z in CASES])
def test_resolvent_diagonal_elementwise_at_chunk_boundaries(kind, z, nchunks):
    d, lo, up = _chain(kind, 3, N)
    Gn = ss.Tridiagonal(d, lo, up).resolvent_diagonal(z)
    with dask.config.set(scheduler="threads"):
        G = _dask(d, lo, up, nchunks).resolvent_diagonal(z, check_finite=False).compute()
    assert _elementwise(G, Gn) <= 1e-12


@pytest.mark.parametrize("kind,z", CASES[:3], ids=[f"{k}-{z.real}" for k, z in CASES[:3]])
def test_logdet_and_solve_at_chunk_boundaries(kind, z):
    d, lo, up = _chain(kind, 3, N)
    Tn = ss.Tridiagonal(d, lo, up)
    b = np.random.default_rng(1).standard_normal(d.shape)
    Td = _dask(d, lo, up, 64)
    with dask.config.set(scheduler="threads"):
        ld, x = dask.compute(Td.logdet(z), Td.solve(b, z))
    assert _maxnorm(ld, Tn.logdet(z)) <= 1e-12
    assert _maxnorm(x, Tn.solve(b, z)) <= 1e-12


def test_sweep_of_shifts_at_chunk_boundaries():
    """The shift form with a chunked array of shifts (the LDOS sweep's path)."""
    d, lo, up = _chain("disordered", 1, 2048, seed=2)
    zs = np.array([0.5, -2.7, -1.0]) + 1e-4j
    Gn = ss.Tridiagonal(d, lo, up).resolvent_diagonal(zs[:, None])
    Td = _dask(d, lo, up, 32)
    with dask.config.set(scheduler="threads"):
        G = Td.resolvent_diagonal(da.from_array(zs[:, None], chunks=(1, 1)), check_finite=False).compute()
    assert _elementwise(G.reshape(3, -1), Gn.reshape(3, -1)) <= 1e-12


def _blocks(rng, B, C, cplx, shifted=True):
    """A chunk's blocks as :mod:`semisep.backends.numpy.chunk_passes` takes them: ``(diag, shift,
    b_in, beta (strided rows: a view of the coupling block), b_out)``."""
    diag = -2.0 + rng.uniform(-1, 1, (B, C))
    blk = rng.uniform(0.5, 1.5, (B, C))
    shift = np.full(B, 0.5 + 1e-4j) if cplx else (np.full(B, 0.25) if shifted else None)
    return diag, shift, rng.uniform(0.5, 1.5, B), blk[:, : C - 1], blk[:, C - 1]


@pytest.mark.parametrize("cplx", [False, True])
def test_pivot_and_repair_sweeps_match_their_twins(cplx):
    rng = np.random.default_rng(5)
    B, C = 4, 300
    diag, shift, b_in, beta, b_out = _blocks(rng, B, C, cplx)
    g_in = rng.standard_normal(B) * (1 + 0.3j if cplx else 1)
    pm = np.full(B, 1e-290)
    diag[1, 40] = shift[1].real if cplx else 0.25  # a guarded pivot in row 1 (decoupled before it)
    beta.base[1, 39] = 0.0
    for rev in (False, True):
        g = cp.pivot_sweep(diag, shift, b_in, beta, b_out, rev, g_in, pm)
        gr = cp.pivot_sweep_ref(diag, shift, b_in, beta, b_out, rev, g_in, pm)
        assert np.abs(g - gr).max() <= 1e-13 * np.abs(gr).max()
        tol = 16 * np.finfo(float).eps
        g_new = g_in * (1 + 1e-9)
        g_new[3] = g_in[3] * 1.5
        rows = np.array([0, 2, 3])
        ref = np.abs(g_new - g_in) / np.abs(g_in)
        args = (diag, shift, b_in, beta, b_out, rev)
        out = cp.repair_sweep(*args, g_in, g_new, pm, rows, tol, ref, 16, 64)
        want = cp.repair_sweep_ref(*args, g_in, g_new, pm, rows, tol, ref, 16, 64)
        assert np.array_equal(out[0], want[0]) and np.array_equal(out[1], want[1])
        assert np.abs(out[2] - want[2]).max() <= 1e-13 * np.abs(want[2]).max()
        # the recursion contracts here (outside the band): the runs merge after a few blocks, and
        # the stored run's last ratio (which stands) equals a whole run's from the new carry
        status, steps, _ = out
        full = cp.pivot_sweep(*args, g_new, pm)
        assert (status == 1).all() and (steps < C).all()
        assert np.abs(g[rows] - full[rows]).max() <= tol * np.abs(full[rows]).max()
    # a run that reaches the chunk's end unmerged hands on the new last ratio
    r3 = np.array([3])  # its carry moved by half: not merged after 6 steps
    short = (diag[:, :6], shift, b_in, beta[:, :5], beta[:, 5], False)
    st, n, end = cp.repair_sweep(*short, g_in, g_new, pm, r3, tol, ref, 16, 64)
    assert st[0] == 0 and n[0] == 6
    assert end[0] == cp.pivot_sweep(*short, g_new, pm)[3]


def test_repair_stalls_where_the_recursion_does_not_contract():
    """A clean chain inside its band at small Im z: the distance between the two runs does not
    shrink, so the re-run stops after ``stall`` steps instead of running the whole chunk."""
    B, C = 1, 4096
    blocks = (np.zeros((B, C)), np.full(B, 1e-6j), np.ones(B), np.ones((B, C - 1)), np.ones(B), False)
    pm = np.full(B, 1e-290)
    g_in = np.array([0.3 + 0.1j])
    g_new = g_in * (1 + 1e-10)
    status, steps, last = cp.repair_sweep(*blocks, g_in, g_new, pm, np.array([0]), 16 * 2.2e-16,
                                          np.abs(g_new - g_in) / np.abs(g_in), 16, 256)
    assert status[0] == 2 and steps[0] == 256
    short = (blocks[0][:, :256], blocks[1], blocks[2], blocks[3][:, :255], np.ones(B), False)
    assert last[0] == cp.pivot_sweep(*short, g_new, pm)[0]


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("C", [1, 2, 7, 300])
def test_chunk_pass_kernels_match_their_twins(cplx, C):
    """The transfer pair, the resolvent chunk from carries (and the ratios leaving it) and the
    pair of ratio sweeps against their plain twins, on strided coupling views and with a
    guarded pivot inside the chunk."""
    rng = np.random.default_rng(7)
    B = 3
    diag, shift, b_in, beta, b_out = _blocks(rng, B, C, cplx, shifted=cplx)
    if C > 2:
        diag[2, C // 2] = shift[2].real if cplx else 0.0  # a zero pivot at the decoupled site
        beta.base[2, C // 2 - 1] = 0.0
    pm = np.full(B, 1e-12)
    ML, MR = cp.transfer_pair(diag, shift, b_in, beta, b_out)
    WL, WR = cp.transfer_pair_ref(diag, shift, b_in, beta, b_out)
    assert np.abs(ML - WL).max() <= 1e-12 and np.abs(MR - WR).max() <= 1e-12
    cdt = complex if cplx else float
    gL = (rng.standard_normal(B) * (1 + 0.2j if cplx else 1)).astype(cdt)
    gR = (rng.standard_normal(B) * (1 - 0.1j if cplx else 1)).astype(cdt)
    got = cp.resolvent_chunk(diag, shift, b_in, beta, b_out, gL, gR, pm)
    want = cp.resolvent_chunk_ref(diag, shift, b_in, beta, b_out, gL, gR, pm)
    assert np.abs(got[0] - want[0]).max() <= 1e-12 * np.abs(want[0]).max()
    assert np.array_equal(got[1], want[1]) and np.array_equal(got[2], want[2])
    for k in (3, 4):
        assert np.abs(got[k] - want[k]).max() <= 1e-12 * np.abs(want[k]).max()
    # the pair of sweeps in one loop: the two single sweeps' values
    pair = cp.pivot_sweep_pair(diag, shift, b_in, beta, b_out, gL, gR, pm)
    for k, (rev, g0) in enumerate(((False, gL), (True, gR))):
        single = cp.pivot_sweep(diag, shift, b_in, beta, b_out, rev, g0, pm)
        assert np.array_equal(pair[k], single)
        assert np.abs(single - want[3 + k]).max() <= 1e-12 * np.abs(want[3 + k]).max()


def test_resolvent_graph_moves_only_a_few_numbers_per_row():
    """Every task of the resolvent graph but the resolvent pass (which writes G) returns O(B)
    numbers per chunk, independent of the chunk's length: nothing chunk-sized is handed from
    one task to another (or between workers) but the inputs and G; the repair tasks read their
    neighbours' few numbers."""
    from dask.core import get_dependencies

    B, n, nchunks = 2, 1 << 13, 8
    d, lo, up = _chain("disordered", B, n)
    G = _dask(d, lo, up, nchunks).resolvent_diagonal(0.5 + 1e-4j, check_finite=False)
    dsk, sizes = compute_recording_tasks(G)

    def kind(k):
        return str(k[0] if isinstance(k, tuple) else k).split("-")[0]

    own = [k for k in sizes
           if "semisep-resolvent" in str(k) and kind(k) not in ("resolvent", "pick", "semisep")]
    kinds = {kind(k) for k in own}
    assert {"transfer", "scan_states", "sweeps", "repair"} <= kinds
    per_chunk = 10 * 16 * B  # ten complex numbers per row
    for k in own:
        bound = per_chunk * nchunks if kind(k) == "scan_states" else per_chunk
        assert sizes[k] <= bound, (k, sizes[k])
    chunk_bytes = 16 * B * (n // nchunks)
    assert per_chunk * nchunks < chunk_bytes / 4
    for k in own:
        if kind(k) == "repair":  # its own chunk's blocks and its neighbours' few numbers
            big = [dep for dep in get_dependencies(dsk, k) if sizes.get(dep, chunk_bytes) > per_chunk]
            assert len(big) == 2, k


