"""semisep.testing can fail: the conformance mixin rejects deliberately wrong operators, the
assert helpers report where, and the strategies produce what they promise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import semisep as ss
from semisep.testing import (
    OperatorConformance,
    assert_allclose_relative,
    assert_operator_close,
    default_rtol,
)
from semisep.testing import strategies as sst
from semisep.tests import test_conformance_tridiagonal as tc

# -------------------------------------------------------------------------------------------
# deliberately wrong operators
# -------------------------------------------------------------------------------------------


class _Wrapped:
    """Delegates to a Tridiagonal; subclasses break one method."""

    def __init__(self, T):
        self._T = T

    def __getattr__(self, name):
        return getattr(self._T, name)

    def __matmul__(self, x):
        return self.matvec(x)


class _ResolventOff(_Wrapped):
    def resolvent_diagonal(self, z=0.0, **kw):
        return self._T.resolvent_diagonal(z, **kw) * (1 + 1e-6)


class _SolveOff(_Wrapped):
    def solve(self, b, z=0.0, **kw):
        x = self._T.solve(b, z, **kw)
        return x + 1e-6 * np.abs(x).max()


class _LogdetPhaseOff(_Wrapped):
    def logdet(self, z=0.0, **kw):
        return self._T.logdet(z, **kw) + 1e-6j


class _ConjugateTranspose(_Wrapped):
    @property
    def T(self):
        T = self._T.T
        return ss.Tridiagonal(np.conj(T.diag), np.conj(T.lower), np.conj(T.upper_))


class _RmatvecIsMatvec(_Wrapped):
    def rmatvec(self, x):
        return self._T.matvec(x)


class _BroadcastsWrongSizes(_Wrapped):
    """Zero-pads or truncates a right-hand side of the wrong length instead of raising."""

    def solve(self, b, z=0.0, **kw):
        n = self._T.n
        b = np.asarray(b)
        if b.shape[-1] != n:
            b = b[..., :n] if b.shape[-1] > n else b
        return self._T.solve(b, z, **kw)


def _bad_conformance(wrapper):
    class Bad(tc.TestTridiagonalNonsymmetric):
        def make_operator(self, rng, dtype, batch_shape):
            T, dense = super().make_operator(rng, dtype, batch_shape)
            return wrapper(T), dense

    return Bad()


Z = 0.5 + 1.0j


def test_resolvent_diagonal_off_by_1e_6_fails():
    bad = _bad_conformance(_ResolventOff)
    with pytest.raises(AssertionError, match="resolvent_diagonal"):
        bad.test_resolvent_diagonal(np.complex128, (3,), Z)


def test_solve_off_by_1e_6_fails():
    bad = _bad_conformance(_SolveOff)
    with pytest.raises(AssertionError, match="solve"):
        bad.test_solve(np.float64, (), Z)


def test_logdet_phase_off_fails():
    bad = _bad_conformance(_LogdetPhaseOff)
    with pytest.raises(AssertionError, match="logdet"):
        bad.test_logdet(np.complex128, (2, 1), Z)


def test_conjugate_transpose_fails():
    bad = _bad_conformance(_ConjugateTranspose)
    with pytest.raises(AssertionError):
        bad.test_transpose(np.complex128, ())


def test_rmatvec_that_is_matvec_fails():
    bad = _bad_conformance(_RmatvecIsMatvec)
    with pytest.raises(AssertionError, match="rmatvec"):
        bad.test_matvec_rmatvec(np.float64, (3,))


def test_silently_truncating_rhs_fails():
    bad = _bad_conformance(_BroadcastsWrongSizes)
    with pytest.raises(AssertionError, match="accepted b of shape"):
        bad.test_wrong_shape_errors(np.float64, ())


def test_a_wrong_torch_variant_fails_and_is_named():
    """Only the torch conversion is wrong (its diagonal 1 % off): every value test fails, and
    the message names the variant that failed."""
    pytest.importorskip("torch")

    class BadTorch(tc.TestTridiagonalNonsymmetric):
        variants = (("numpy", "auto"), ("torch", "chunked"))

        def convert_operator(self, op, library):
            T = tc._to_torch(op)
            return ss.Tridiagonal(T.diag * 1.01, T.lower, T.upper)

    for test in ("test_solve", "test_logdet", "test_resolvent_diagonal"):
        with pytest.raises(AssertionError, match=r"\[torch, chunked\]"):
            getattr(BadTorch(), test)(np.complex128, (3,), Z)


def test_the_correct_operator_passes_the_same_calls():
    """The control: the unbroken operator passes exactly the calls that fail above."""
    good = tc.TestTridiagonalNonsymmetric()
    good.test_resolvent_diagonal(np.complex128, (3,), Z)
    good.test_solve(np.float64, (), Z)
    good.test_logdet(np.complex128, (2, 1), Z)
    good.test_transpose(np.complex128, ())
    good.test_matvec_rmatvec(np.float64, (3,))
    good.test_wrong_shape_errors(np.float64, ())


def test_dense_of_the_wrong_shape_is_reported():
    class WrongDense(tc.TestTridiagonalNonsymmetric):
        def make_operator(self, rng, dtype, batch_shape):
            T, dense = super().make_operator(rng, dtype, batch_shape)
            return T, dense[..., :-1, :-1]

    with pytest.raises(AssertionError, match="op.shape"):
        WrongDense().test_shape_dtype_nbytes(np.float64, (3,))


def test_ill_conditioned_problem_is_skipped_not_passed():
    class Singularish(OperatorConformance):
        def make_operator(self, rng, dtype, batch_shape):
            T = ss.Tridiagonal(np.ones(4, dtype), np.ones(3, dtype))  # eigenvalue 1 + 2cos(.)
            return T, T.to_dense()

    lam = 1 + 2 * np.cos(np.pi / 5)  # an eigenvalue of T
    with pytest.raises(pytest.skip.Exception, match="vacuous"):
        Singularish().test_resolvent_diagonal(np.float32, (), lam + 1e-9j)


def test_mixin_without_make_operator_says_so():
    with pytest.raises(NotImplementedError, match="make_operator"):
        OperatorConformance().test_to_dense(np.float64, ())


# -------------------------------------------------------------------------------------------
# assert helpers
# -------------------------------------------------------------------------------------------


def test_assert_allclose_relative_message_locates_the_worst_entry():
    desired = np.ones((2, 3))
    actual = desired.copy()
    actual[1, 2] += 1e-3
    actual[0, 1] += 1e-9
    with pytest.raises(AssertionError) as info:
        assert_allclose_relative(actual, desired, rtol=1e-6)
    msg = str(info.value)
    assert "1 of 6 entries differ" in msg
    assert "max abs error 0.001 at index (1, 2)" in msg
    assert "max rel error 0.001 at index (1, 2)" in msg
    assert_allclose_relative(actual, desired, rtol=2e-3)  # within a looser tolerance


def test_assert_allclose_relative_nan_and_shape():
    with pytest.raises(AssertionError, match="1 of 2"):
        assert_allclose_relative([1.0, np.nan], [1.0, 2.0], rtol=1.0)
    with pytest.raises(AssertionError, match="shape mismatch"):
        assert_allclose_relative(np.ones(3), np.ones((3, 1)), rtol=1.0)
    assert_allclose_relative([np.inf], [np.inf], rtol=0.0)


def test_assert_allclose_relative_zero_desired_needs_atol():
    with pytest.raises(AssertionError):
        assert_allclose_relative([1e-20], [0.0], rtol=1e-3)
    assert_allclose_relative([1e-20], [0.0], rtol=1e-3, atol=1e-19)


def test_assert_operator_close_passes_and_fails(rng):
    d, lo, up = rng.standard_normal(6), rng.standard_normal(5), rng.standard_normal(5)
    T = ss.Tridiagonal(d, lo, up)
    dense = T.to_dense()
    assert_operator_close(T, dense)
    wrong = dense.copy()
    wrong[2, 3] += 1e-6
    with pytest.raises(AssertionError, match="to_dense"):
        assert_operator_close(T, wrong)
    with pytest.raises(AssertionError, match="shape"):
        assert_operator_close(T, dense[:-1, :-1])
    # the transpose of a non-symmetric matrix is a different operator
    with pytest.raises(AssertionError):
        assert_operator_close(T.T, dense)


def test_default_rtol_scales_with_eps_and_n():
    assert default_rtol(np.float32, 10) / default_rtol(np.float64, 10) == pytest.approx(
        np.finfo(np.float32).eps / np.finfo(np.float64).eps
    )
    assert default_rtol(np.float64, 20) == 2 * default_rtol(np.float64, 10)


# -------------------------------------------------------------------------------------------
# strategies
# -------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(sst.tridiagonals())
def test_tridiagonals_well_conditioned_promise(T):
    A = T.to_dense().astype(np.complex128)
    smin = np.linalg.svd(A, compute_uv=False)[..., -1]
    eps = np.finfo(T.dtype).eps
    assert np.all(smin >= 1 - 10 * T.n * eps), "sigma_min(T) >= 1 promised by well_conditioned"


@settings(max_examples=20, deadline=None)
@given(sst.tridiagonals(n=st.integers(2, 6), batch_shape=(2,), dtype=np.complex64,
                        symmetric=True))
def test_tridiagonals_fixed_arguments(T):
    assert T.shape[0] == 2 and 2 <= T.n <= 6
    assert T.dtype == np.complex64 and T.is_symmetric_storage


@settings(max_examples=40, deadline=None)
@given(sst.complex_shifts(on_axis=False, near_axis=False, min_imag=0.25))
def test_complex_shifts_respect_bounds(z):
    assert isinstance(z, complex) and 0.25 <= abs(z.imag) <= 3 and abs(z.real) <= 3


@settings(max_examples=60, deadline=None, derandomize=True)
@given(sst.complex_shifts())
def test_complex_shifts_include_the_real_axis_and_near_it(z):
    """Every draw is one of the documented kinds: a real float on the axis, a complex at
    ``Im z = +-{1e-3, 1e-6, 1e-9}`` near it, or a complex with ``0.1 <= |Im z| <= 3``; always
    ``|Re z| <= 3``.  (That each kind occurs: the next test.)"""
    if isinstance(z, float):
        assert abs(z) <= 3
        return
    assert isinstance(z, complex) and abs(z.real) <= 3
    assert abs(z.imag) in (1e-3, 1e-6, 1e-9) or 0.1 <= abs(z.imag) <= 3, z


@settings(max_examples=60, deadline=None, derandomize=True)
@given(sst.complex_shifts(on_axis=False, near_axis=False))
def test_complex_shifts_off_axis_only_when_asked(z):
    assert isinstance(z, complex) and 0.1 <= abs(z.imag) <= 3 and abs(z.real) <= 3


def test_complex_shifts_cover_all_kinds():
    seen = set()

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(sst.complex_shifts())
    def collect(z):
        if isinstance(z, float):
            seen.add("real")
        elif abs(z.imag) < 1e-2:
            seen.add("near")
        else:
            seen.add("off")

    collect()
    assert seen == {"real", "near", "off"}


class _DenseTridiagonalPlusLowRank:
    """Stand-in for semisep.TridiagonalPlusLowRank(T, U, V) (dense, for the strategy tests)."""

    def __init__(self, T, U, V):
        self.args = (T, U, V)

    def to_dense(self):
        T, U, V = self.args
        return T.to_dense() + U @ np.swapaxes(V, -1, -2)


class _DenseSemiseparable:
    """Stand-in for semisep.Semiseparable(diag, P, Q, R=None, S=None)."""

    def __init__(self, diag, P, Q, R=None, S=None):
        if R is None:
            R, S = Q, P
        self.args = (diag, P, Q, R, S)

    def to_dense(self):
        d, P, Q, R, S = self.args
        lower = np.tril(P @ np.swapaxes(Q, -1, -2), -1)
        upper = np.triu(R @ np.swapaxes(S, -1, -2), 1)
        return lower + upper + d[..., None] * np.eye(d.shape[-1])


STRUCTURED = [
    ("TridiagonalPlusLowRank", sst.tridiagonal_plus_low_ranks, _DenseTridiagonalPlusLowRank),
    ("Semiseparable", sst.semiseparables, _DenseSemiseparable),
]


@pytest.mark.parametrize("name, strategy, stand_in", STRUCTURED)
def test_structured_strategies_without_their_class_raise_when_used(
    monkeypatch, name, strategy, stand_in
):
    """Importing semisep.testing works without the class; using the strategy raises a clear
    ImportError that names it."""
    monkeypatch.delattr(ss, name, raising=False)

    @settings(max_examples=1, deadline=None)
    @given(strategy())
    def use(op):
        raise AssertionError("unreachable: the strategy must raise")  # pragma: no cover

    with pytest.raises(ImportError, match=name):
        use()


@pytest.mark.parametrize("name, strategy, stand_in", STRUCTURED)
@pytest.mark.parametrize("symmetric", [False, True])
def test_structured_strategies_keep_the_well_conditioned_promise(
    monkeypatch, name, strategy, stand_in, symmetric
):
    """With the class present (the real one when this semisep has it, else a dense
    stand-in): sigma_min >= 1/2, and symmetric=True gives a symmetric matrix."""
    if not hasattr(ss, name):
        monkeypatch.setattr(ss, name, stand_in, raising=False)
    cls = getattr(ss, name)

    @settings(max_examples=25, deadline=None)
    @given(strategy(dtype=st.sampled_from([np.float64, np.complex128]), symmetric=symmetric))
    def check(op):
        assert isinstance(op, cls)
        A = np.asarray(op.to_dense())
        smin = np.linalg.svd(A, compute_uv=False)[..., -1]
        assert np.all(smin >= 0.5 - 1e-12), f"sigma_min = {smin.min()} < 1/2"
        if symmetric:
            np.testing.assert_allclose(A, np.swapaxes(A, -1, -2), rtol=0, atol=1e-14)

    check()


def test_well_conditioned_false_reaches_ill_conditioned_matrices():
    """The sigma_min check above is not vacuous: without the promise it is broken."""
    from hypothesis import find

    def smin(T):
        return np.linalg.svd(T.to_dense(), compute_uv=False).min()

    T = find(sst.tridiagonals(n=8, batch_shape=(), dtype=np.float64, well_conditioned=False),
             lambda T: smin(T) < 0.5, settings=settings(max_examples=500, database=None))
    assert smin(T) < 0.5


@pytest.mark.parametrize("what", ["resolvent_diagonal", "logdet", "solve", "matvec"])
def test_gradcheck_catches_a_missing_gradient(what):
    """An operator that silently drops the gradient of its diagonal fails the torch checks.
    (Skipped, like the checks themselves, where semisep's torch backend is not available.)"""

    class DetachedDiagonal(tc.TestTridiagonalNonsymmetric):
        def make_torch_operator(self, params):
            d, lo, up = params
            return ss.Tridiagonal(d.detach(), lo, up)

    bad = DetachedDiagonal()
    good = tc.TestTridiagonalNonsymmetric()
    getattr(good, f"test_torch_gradcheck_{what}")()  # skips here if no torch backend
    with pytest.raises(AssertionError, match="gradcheck"):
        getattr(bad, f"test_torch_gradcheck_{what}")()
