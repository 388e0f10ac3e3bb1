"""What a new user hits first: empty batches, odd tensors, unsupported dtypes and arguments,
seed-era names, package attributes.  Each error must name the argument and what is accepted."""

from __future__ import annotations

import numpy as np
import pytest

import semisep as ss
from semisep import reference as ref

torch = pytest.importorskip("torch")

TORCH_METHODS = ["auto", "chunked", "reference", "sequential"]


@pytest.mark.parametrize("method", TORCH_METHODS)
@pytest.mark.parametrize("batch", [(0,), (2, 0)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex64])
def test_torch_empty_batch_every_method(method, batch, dtype):
    T = ss.Tridiagonal(torch.zeros(*batch, 5, dtype=dtype), torch.zeros(4, dtype=dtype))
    assert T.resolvent_diagonal(1j, method=method).shape == (*batch, 5)
    assert T.logdet(1j, method=method).shape == batch
    assert T.solve(torch.zeros(*batch, 5, dtype=dtype), 1j, method=method).shape == (*batch, 5)


def _neg_or_conj_z():
    zc = torch.tensor([0.5 + 1j, 0.2 + 2j, -0.3 + 3j], dtype=torch.complex128)
    return {
        "neg-bit real batch": torch._neg_view(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)),
        "neg-bit from conj().imag": torch.tensor([1 + 1j, 2 + 2j, 3 - 1j], dtype=torch.complex128)
        .conj().imag,
        "conj-bit complex batch": zc.conj(),
        "neg-bit scalar": torch._neg_view(torch.tensor(0.5, dtype=torch.float64)),
    }


@pytest.mark.parametrize("name", list(_neg_or_conj_z()))
@pytest.mark.parametrize("method", ["auto", "sequential", "chunked"])
def test_torch_z_with_negative_or_conjugate_bit(name, method):
    z = _neg_or_conj_z()[name]
    rng = np.random.default_rng(1)
    d, e = rng.uniform(5, 6, (3, 6)), rng.uniform(0.5, 1, 5)   # spectrum away from every z
    T = ss.Tridiagonal(torch.from_numpy(d), torch.from_numpy(e))
    zn = z.resolve_conj().resolve_neg().numpy()
    expect = ref.dense_resolvent_diagonal(d, e, None, zn)   # z batch-shaped (3,) or scalar
    got = T.resolvent_diagonal(z, method=method)
    np.testing.assert_allclose(got.numpy(), expect, rtol=1e-8)
    b = torch._neg_view(torch.ones(3, 6, dtype=torch.float64))
    x = T.solve(b, z, method=method)
    xr = ref.dense_solve(d, e, None, -np.ones((3, 6)), zn)
    np.testing.assert_allclose(x.numpy(), xr, rtol=1e-8)


# --- item: dtype policy at the constructors ---------------------------------------------------

UNSUPPORTED_NP = [np.longdouble, np.clongdouble, np.float16, object]


@pytest.mark.parametrize("dtype", UNSUPPORTED_NP, ids=lambda d: np.dtype(d).name)
def test_numpy_unsupported_dtypes_rejected_at_constructor(dtype):
    name = np.dtype(dtype).name
    with pytest.raises(TypeError, match=rf"diag has dtype {name}.*supported: float32, float64"):
        ss.Tridiagonal(np.ones(4, dtype), np.ones(3))
    T = ss.Tridiagonal(np.ones(4), np.ones(3))
    with pytest.raises(TypeError, match=rf"U has dtype {name}"):
        ss.TridiagonalPlusLowRank(T, np.ones((4, 1), dtype), np.ones((4, 1)))
    with pytest.raises(TypeError, match=rf"b has dtype {name}"):
        T.solve(np.ones(4, dtype), 1j)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_half_dtypes_rejected_at_constructor(dtype):
    dt = getattr(torch, dtype)
    with pytest.raises(TypeError, match=rf"lower has dtype {dtype}.*cast to float32"):
        ss.Tridiagonal(torch.ones(4), torch.ones(3, dtype=dt))


# --- item: errors that name the argument --------------------------------------------------------

def _T():
    return ss.Tridiagonal(np.ones(4), np.ones(3))


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda: _T().resolvent_diagonal(None), TypeError,
         "z must be an array or a real/complex scalar, got None"),
        (lambda: _T().logdet(10**400), TypeError, "z is an integer of 401 digits, beyond the float64 range"),
        (lambda: _T().solve(np.ones(4), None), TypeError, "z must be"),
        (lambda: ss.Tridiagonal([[1, 2, 3], [1, 2]], [1, 1]), ss.ShapeError, "diag is a ragged"),
        (lambda: _T().solve([[1, 2, 3, 4], [1, 2]], 1j), ss.ShapeError, "b is a ragged"),
        (lambda: _T().solve(np.array([1, 2, 3, None]), 1j), TypeError, "b has dtype object"),
        (lambda: _T().matvec(["a", "b", "c", "d"]), TypeError, "x has dtype"),
        (lambda: ss.Tridiagonal(None, np.ones(3)), TypeError, "diag must be an array, got None"),
        (lambda: ss.TridiagonalPlusLowRank(_T(), np.ones((4, 1)), np.ones((4, 1))).resolvent_diagonal(None),
         TypeError, "z must be"),
    ],
)
def test_numpy_argument_errors_name_the_argument(call, exc, message):
    with pytest.raises(exc, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: torch.ones(4, device="meta"), "diag is on the 'meta' device"),
        (lambda: torch.ones(4).to_sparse(), "diag has layout torch.sparse_coo"),
        (lambda: torch.nested.nested_tensor([torch.ones(4), torch.ones(2)]), "diag is a nested tensor"),
    ],
)
def test_torch_meta_sparse_nested_rejected(make, message):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that nested tensors are a prototype
        d = make()
    with pytest.raises(TypeError, match=message):
        ss.Tridiagonal(d, torch.ones(3))


# --- item: factorize argument validation --------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        ({"rank": "2"}, TypeError, "rank must be an integer, got str '2'"),
        ({"rank": 2.7}, TypeError, "rank must be an integer, got float 2.7"),
        ({"rank": True}, TypeError, "rank must be an integer"),
        ({"rank": 17}, ValueError, "rank = 17 must satisfy 0 <= rank <= N = 16"),
        ({"rank": 2, "oversample": -3}, ValueError, "oversample = -3 must satisfy 0 <= oversample"),
        ({"rank": 2, "oversample": 2.5}, TypeError, "oversample must be an integer"),
        ({"rank": 2, "power_iters": -1}, ValueError, "power_iters = -1"),
        ({"rank": 2, "max_iter": 0}, ValueError, "max_iter = 0"),
    ],
)
def test_factorize_argument_validation(kwargs, exc, message):
    H = np.eye(16) + 0.1
    with pytest.raises(exc, match=message.replace("(", r"\(").replace(")", r"\)")):
        ss.factorize(H, **kwargs)


def test_factorize_accepts_numpy_integers():
    H = np.eye(16) + 0.1
    assert ss.factorize(H, rank=np.int64(2), oversample=np.int32(3)).rank == 2


def test_check_factorization_with_a_dense_array_says_what_op_is():
    H = np.eye(4)
    with pytest.raises(TypeError, match="op must be a structured operator .*got ndarray"):
        ss.check_factorization(H, H)


# --- item: TridiagonalPlusLowRank products with a batch and a plain vector ------------------------

def test_lowrank_products_batched_operator_plain_vector(backend):  # numpy, torch (plugin)
    rng = np.random.default_rng(4)
    d, e = rng.standard_normal((11, 6)), rng.standard_normal(5)
    U, V = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    x = rng.standard_normal(6)
    conv = (lambda a: a) if backend == "numpy" else torch.from_numpy
    H = ss.TridiagonalPlusLowRank(ss.Tridiagonal(conv(d), conv(e)), conv(U), conv(V))
    D = ref.tridiagonal_to_dense(d, e) + U @ V.T
    for got, M in ((H.matvec(conv(x)), D), (H.rmatvec(conv(x)), np.swapaxes(D, -1, -2)),
                   (H @ conv(x), D)):
        got = np.asarray(got)
        assert got.shape == (11, 6)
        np.testing.assert_allclose(got, M @ x, rtol=1e-12, atol=1e-12)
    X = rng.standard_normal((11, 6, 3))
    np.testing.assert_allclose(np.asarray(H.matvec(conv(X))), D @ X, rtol=1e-12, atol=1e-12)


# --- item: subpackages as attributes ------------------------------------------------------------

def test_reference_and_backends_are_package_attributes():
    import subprocess
    import sys

    code = ("import semisep; print(semisep.reference.dense_resolvent_diagonal.__name__, "
            "semisep.backends.backend_for.__name__, semisep.cost.__name__, "
            "'reference' in dir(semisep))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.stdout.split() == ["dense_resolvent_diagonal", "backend_for", "semisep.cost", "True"], r.stderr
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        _ = ss.nonexistent


# --- item: operator conveniences ----------------------------------------------------------------

def _ops(backend):
    rng = np.random.default_rng(5)
    d, lo, up = rng.standard_normal((4, 6)), rng.standard_normal(5), rng.standard_normal(5)
    U, V = rng.standard_normal((6, 2)), rng.standard_normal((4, 6, 2))
    conv = (lambda a: a) if backend == "numpy" else torch.from_numpy
    T = ss.Tridiagonal(conv(d), conv(lo), conv(up))
    H = ss.TridiagonalPlusLowRank(ss.Tridiagonal(conv(d), conv(lo)), conv(U), conv(V))
    return T, H


def _data(op):
    T = getattr(op, "tridiagonal", op)
    out = {"diag": T.diag, "lower": T.lower, "upper": T.upper}
    out |= {"U": op.U, "V": op.V} if T is not op else {}
    return {k: v for k, v in out.items() if v is not None}


def _dense(op):
    return np.asarray(op.to_dense())


@pytest.mark.parametrize("which", ["T", "H"])
def test_batch_indexing(backend, which):
    op = dict(zip("TH", _ops(backend), strict=True))[which]
    D = _dense(op)
    # the selected operator holds exactly the selected data; its dense form equals the slice
    # to rounding (torch's batched and unbatched U @ V^T may round differently, ~1 ulp)
    tol = dict(rtol=0, atol=8 * np.finfo(np.float64).eps * np.abs(D).max())
    nd = {"diag": 1, "lower": 1, "upper": 1, "U": 2, "V": 2}
    for key, rows in ((1, 1), (slice(1, 3), slice(1, 3)), (np.array([0, 3]), [0, 3])):
        sub = op[key]
        for name, a in _data(sub).items():
            full = np.asarray(_data(op)[name])
            full = np.broadcast_to(full, (4,) + full.shape[full.ndim - nd[name]:])
            a = np.asarray(a)
            np.testing.assert_array_equal(np.broadcast_to(a, full[rows].shape), full[rows],
                                          err_msg=name)
        np.testing.assert_allclose(_dense(sub), D[rows], **tol)
    with pytest.raises(IndexError, match="batch dimension"):
        op[0, 1]
    with pytest.raises(IndexError, match="no batch dimension"):
        op[0][0]


@pytest.mark.parametrize("which", ["T", "H"])
def test_sums_multiples_and_identity_shifts(backend, which):
    T, H = _ops(backend)
    op = T if which == "T" else H
    D, DT = _dense(op), _dense(T)
    z = 0.3 - 0.2j
    I6 = np.eye(6)
    cases = {
        "op + op": (op + op, 2 * D), "2 * op": (2 * op, 2 * D), "op * 2.5": (op * 2.5, 2.5 * D),
        "np.float64(3) * op": (np.float64(3) * op, 3 * D), "-op": (-op, -D),
        "op - z I": (op - z * ss.identity, D - z * I6), "z I - op": (z * ss.identity - op, z * I6 - D),
        "op + T": (op + T, D + DT), "op - T": (op - T, D - DT),
        "op.shift(z)": (op.shift(z), D - z * I6),
    }
    for name, (got, want) in cases.items():
        assert type(got) is type(op), name
        np.testing.assert_allclose(_dense(got), want, rtol=1e-13, atol=1e-13, err_msg=name)
    if which == "H":
        assert (H + H).rank == 2 * H.rank


def test_shift_by_a_batch_of_z_and_its_resolvent():
    T, _ = _ops("numpy")
    zs = np.array([0.1 + 1j, 0.2 + 1j, -0.3 + 0.5j, 1j])
    S = T.shift(zs)
    np.testing.assert_allclose(S.resolvent_diagonal(0.0), T.resolvent_diagonal(zs), rtol=1e-13)


def test_to_dtype_and_device():
    T, H = _ops("torch")
    for op in (T, H):
        op32 = op.to(torch.float32)
        assert op32.dtype == torch.float32 and op32.to("cpu").dtype == torch.float32
    Tn, _ = _ops("numpy")
    with pytest.raises(TypeError, match="moves torch tensors"):
        Tn.to("cpu")


@pytest.mark.parametrize("which", ["T", "H"])
def test_resolvent_entries(backend, which):
    op = dict(zip("TH", _ops(backend), strict=True))[which]
    z = 0.3 + 0.1j
    G = np.linalg.inv(_dense(op) - z * np.eye(6))
    pairs = np.array([[0, 5], [3, 1], [2, 2], [5, 0], [4, 5]])
    got = np.asarray(op.resolvent_entries(pairs, z))
    assert got.shape == (4, 5)
    np.testing.assert_allclose(got, G[:, pairs[:, 0], pairs[:, 1]], rtol=1e-10)
    with pytest.raises(IndexError, match="0 <= i, j < N = 6"):
        op.resolvent_entries([[0, 6]], z)
