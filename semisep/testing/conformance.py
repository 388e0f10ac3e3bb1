"""``OperatorConformance``: a battery of tests every semisep operator type must pass.

Modelled on linear_operator's ``LinearOperatorTestCase``: a test class that subclasses the mixin
supplies a constructor and its dense equivalent, and inherits every value test (and, with
torch, the gradient tests)::

    import numpy as np
    import semisep as ss
    from semisep.testing import OperatorConformance

    class TestMyTridiagonal(OperatorConformance):
        def make_operator(self, rng, dtype, batch_shape):
            n = 9
            d = rng.uniform(-2, 2, batch_shape + (n,)).astype(dtype)
            off = rng.uniform(-1, 1, batch_shape + (n - 1,)).astype(dtype)
            T = ss.Tridiagonal(d, off)
            return T, T.to_dense()

pytest then collects ``test_shape_dtype_nbytes``, ``test_to_dense``, ``test_matvec_rmatvec``,
``test_transpose``, ``test_solve``, ``test_logdet``, ``test_resolvent_diagonal``,
``test_batch_broadcasting``, ``test_wrong_shape_errors`` and the ``test_torch_gradcheck_*``
tests, parametrized (by the class's ``pytest_generate_tests``) over the class attributes
:attr:`~OperatorConformance.dtypes`, :attr:`~OperatorConformance.batch_shapes` and
:attr:`~OperatorConformance.shifts`.  Every test method can also be called directly with
explicit arguments, e.g. ``TestMyTridiagonal().test_solve(np.float64, (3,), 0.5 + 1j)``.

Tolerances
----------
Results are compared with NumPy's dense LAPACK routines (``numpy.linalg.solve``, ``slogdet``,
``inv``) evaluated in complex128 / float64 on the dense matrix.  The tolerance is the standard
forward-error bound of a backward-stable method, per batch element::

    tol = C * N * eps(dtype) * cond_2(A),      A = dense - z I

(Higham, *Accuracy and Stability of Numerical Algorithms*, section 7.1 and Theorem 9.3:
``forward error <= cond * backward error``, and LU of a tridiagonal matrix without pivoting has
backward error ``O(N eps)`` times its growth factor, which is bounded for the diagonally
dominant, Hermitian-shifted and generic random problems these tests use).  ``C`` is
:attr:`~OperatorConformance.tolerance_factor` (10).  The error measures are normwise:

* solve: ``||x - x_ref||_inf <= tol * ||x_ref||_inf``;
* resolvent diagonal: ``max_i |G_ii - G_ref_ii| <= tol * ||A^{-1}||_2``
  (``|delta G_ii| <= ||delta(A^{-1})||_2``);
* log det: ``|delta log det| = |tr(A^{-1} delta A)| <= N ||A^{-1}||_2 ||delta A||_2``, so
  ``|ld - ld_ref| <= tol`` (imaginary parts compared modulo 2 pi);
* products (``matvec``, ``to_dense``): ``8 N eps`` relative to ``max (|A| |x|)``
  (:func:`semisep.testing.asserts.assert_operator_close`).

A tolerance above :attr:`~OperatorConformance.max_tolerance` (1e-2) would say nothing: such a
combination of dtype and shift is *skipped* with the condition number in the reason (visible
with ``pytest -rs``), never silently passed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from .asserts import _like, assert_allclose_relative, assert_operator_close, default_rtol, to_numpy

__all__ = ["OperatorConformance"]


def _np_dtype(dtype: Any) -> np.dtype:
    """NumPy dtype of a NumPy or torch dtype (``torch.complex128`` -> ``complex128``)."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return np.dtype(str(dtype).replace("torch.", ""))


def _dtype_id(dtype: Any) -> str:
    return _np_dtype(dtype).name


def _wrap(x: np.ndarray) -> np.ndarray:
    """Angles into (-pi, pi]."""
    return np.pi - np.mod(np.pi - x, 2 * np.pi)


def _torch_backend_or_skip() -> Any:
    torch = pytest.importorskip("torch")
    from ..backends import get_backend
    from ..errors import BackendError

    try:
        get_backend("torch")
    except BackendError as exc:
        pytest.skip(f"semisep's torch backend is not available: {exc}")
    return torch


class OperatorConformance:
    """Test mixin: subclass it in a ``Test*`` class and implement :meth:`make_operator`.

    Class attributes (override as needed):
    """

    #: dtypes the value tests run in.
    dtypes: Sequence[Any] = (np.float32, np.float64, np.complex64, np.complex128)
    #: batch shapes the value tests run with.
    batch_shapes: Sequence[tuple[int, ...]] = ((), (3,), (2, 1))
    #: shifts ``z``: off the real axis, and near it (``Im z = 1e-3``).
    shifts: Sequence[complex] = (0.5 + 1.0j, -0.7 + 0.05j, 0.3 + 1e-3j)
    #: ``C`` in ``tol = C * N * eps * cond``.
    tolerance_factor: float = 10.0
    #: tolerances above this are vacuous; the test is skipped with the reason.
    max_tolerance: float = 1e-2
    #: whether ``op.nbytes`` must be below the bytes of the dense array (for N >= 8).
    compressed: bool = True
    #: run the ``torch.autograd.gradcheck`` tests (needs :meth:`make_torch_params` and
    #: :meth:`make_torch_operator`).
    supports_torch: bool = False
    #: the shift used by the gradient checks (a gradient with respect to ``z`` is checked too).
    torch_shift: complex = 0.3 + 0.8j
    #: ``(library, method)`` pairs each O(N) value test (solve, logdet, resolvent diagonal)
    #: runs under, one after the other: the operator on ``library``'s arrays (``"numpy"`` as
    #: built, ``"torch"`` through :meth:`convert_operator`; skipped where torch is missing),
    #: the calls with ``method=method`` (none for ``"auto"``).  A failure names its variant.
    variants: Sequence[tuple[str, str]] = (("numpy", "auto"),)
    #: base seed; each test derives its own generator from it and the test's parameters.
    seed: int = 20240611

    # -- hooks ------------------------------------------------------------------------------
    def make_operator(
        self, rng: np.random.Generator, dtype: Any, batch_shape: tuple[int, ...]
    ) -> tuple[Any, np.ndarray]:
        """Return ``(op, dense)``: an operator of ``dtype`` and ``batch_shape``, and the NumPy
        array ``(*batch_shape, N, N)`` it represents.  Use ``rng`` for all randomness."""
        raise NotImplementedError("subclasses of OperatorConformance implement make_operator")

    def make_torch_params(self, rng: np.random.Generator) -> tuple[Any, ...]:
        """Return the complex128 torch tensors (leaves) that :meth:`make_torch_operator` builds
        the operator from; every one is checked by ``gradcheck``."""
        raise NotImplementedError("set supports_torch = True only with make_torch_params")

    def make_torch_operator(self, params: Sequence[Any]) -> Any:
        """Build the operator from the tensors of :meth:`make_torch_params` (differentiably)."""
        raise NotImplementedError("set supports_torch = True only with make_torch_operator")

    def convert_operator(self, op: Any, library: str) -> Any:
        """Return ``op`` rebuilt on ``library``'s arrays (``"torch"``: CPU tensors, no
        gradient), for the :attr:`variants` that name another library than NumPy."""
        raise NotImplementedError(f"{type(self).__name__} lists a {library!r} variant but does "
                                  "not implement convert_operator")

    # -- parametrization ----------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: Any) -> None:
        """Parametrize ``dtype``, ``batch_shape`` and ``z`` from the class attributes."""
        if "dtype" in metafunc.fixturenames:
            ids = [_dtype_id(d) for d in self.dtypes]
            metafunc.parametrize("dtype", list(self.dtypes), ids=ids)
        if "batch_shape" in metafunc.fixturenames:
            shapes = [tuple(s) for s in self.batch_shapes]
            metafunc.parametrize("batch_shape", shapes, ids=[f"batch{s}" for s in shapes])
        if "z" in metafunc.fixturenames:
            metafunc.parametrize("z", list(self.shifts), ids=[f"z={z}" for z in self.shifts])

    # -- helpers ------------------------------------------------------------------------------
    def _rng(self, *key: Any) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(repr(key).encode())])

    def _build(self, dtype: Any, batch_shape: tuple[int, ...], *key: Any) -> tuple[Any, np.ndarray]:
        rng = self._rng(type(self).__name__, _dtype_id(dtype), tuple(batch_shape), *key)
        op, dense = self.make_operator(rng, dtype, tuple(batch_shape))
        dense = np.asarray(dense)
        if dense.ndim < 2 or dense.shape[-1] != dense.shape[-2]:
            raise TypeError(f"make_operator returned a dense array of shape {dense.shape}; "
                            "it must be (*batch_shape, N, N)")
        return op, dense

    def _tolerance(self, dense: np.ndarray, dtype: Any, z: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(tol, inv_norm)`` per batch element: ``C N eps cond_2(A)`` and ``||A^{-1}||_2``."""
        n = dense.shape[-1]
        A = _shifted(dense, z)
        s = np.linalg.svd(A, compute_uv=False)
        smin = s[..., -1]
        with np.errstate(divide="ignore"):
            cond = s[..., 0] / smin
            inv_norm = 1.0 / smin
        tol = self.tolerance_factor * n * float(np.finfo(_np_dtype(dtype)).eps) * cond
        worst = float(np.max(tol)) if tol.size else 0.0
        if not worst <= self.max_tolerance:
            pytest.skip(
                f"cond_2(A - zI) up to {float(np.max(cond)):.3g} at z = {z}: the tolerance "
                f"{worst:.3g} for {_dtype_id(dtype)} would be vacuous (> {self.max_tolerance})"
            )
        return tol, inv_norm

    def _variants(self, op: Any) -> Iterator[tuple[Any, dict[str, Any], str]]:
        """``(op on the variant's library, the calls' keyword arguments, a label)`` for each
        of :attr:`variants` that can run here."""
        for library, method in self.variants:
            if library == "torch":
                try:
                    _torch_backend_or_skip()
                except pytest.skip.Exception:
                    continue
            conv = op if library == "numpy" else self.convert_operator(op, library)
            yield conv, ({} if method == "auto" else {"method": method}), f"[{library}, {method}] "

    @staticmethod
    def _rhs(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        x = rng.standard_normal(shape)
        if _np_dtype(dtype).kind == "c":
            x = x + 1j * rng.standard_normal(shape)
        return x.astype(_np_dtype(dtype))

    # -- structure ----------------------------------------------------------------------------
    def test_shape_dtype_nbytes(self, dtype: Any, batch_shape: tuple[int, ...]) -> None:
        op, dense = self._build(dtype, batch_shape)
        n = dense.shape[-1]
        assert dense.shape == tuple(batch_shape) + (n, n), (
            f"make_operator's dense array has shape {dense.shape}, expected batch_shape "
            f"{tuple(batch_shape)} + (N, N)"
        )
        assert tuple(op.shape) == dense.shape, f"op.shape {tuple(op.shape)} != {dense.shape}"
        assert _np_dtype(op.dtype) == np.dtype(dtype), f"op.dtype {op.dtype} != {np.dtype(dtype)}"
        assert _np_dtype(to_numpy(op.to_dense()).dtype) == np.dtype(dtype)
        nbytes = op.nbytes
        assert isinstance(nbytes, (int, np.integer)) and nbytes > 0, f"op.nbytes = {nbytes!r}"
        if self.compressed and n >= 8:
            dense_nbytes = int(np.prod(dense.shape)) * np.dtype(dtype).itemsize
            assert nbytes < dense_nbytes, (
                f"op.nbytes = {nbytes} is not below the dense array's {dense_nbytes} bytes"
            )

    def test_to_dense(self, dtype: Any, batch_shape: tuple[int, ...]) -> None:
        op, dense = self._build(dtype, batch_shape)
        D = to_numpy(op.to_dense())
        scale = np.abs(dense).max(axis=(-2, -1), keepdims=True)
        rtol = default_rtol(dtype, dense.shape[-1])
        assert D.shape == dense.shape
        assert np.all(np.abs(D - dense) <= rtol * scale), "op.to_dense() differs from dense"

    def test_matvec_rmatvec(self, dtype: Any, batch_shape: tuple[int, ...]) -> None:
        op, dense = self._build(dtype, batch_shape)
        assert_operator_close(op, dense)

    def test_transpose(self, dtype: Any, batch_shape: tuple[int, ...]) -> None:
        """``op.T`` is the transpose -- never the conjugate transpose."""
        op, dense = self._build(dtype, batch_shape)
        assert_operator_close(op.T, np.swapaxes(dense, -1, -2), seed=1)

    # -- the O(N) algorithms --------------------------------------------------------------------
    def test_solve(self, dtype: Any, batch_shape: tuple[int, ...], z: Any) -> None:
        """``op.solve(b, z)`` vs ``numpy.linalg.solve(dense - z I, b)``, vector and matrix b,
        under every variant."""
        op0, dense = self._build(dtype, batch_shape)
        tol, _ = self._tolerance(dense, dtype, z)
        n = dense.shape[-1]
        A = _shifted(dense, z)
        for op, kw, tag in self._variants(op0):
            rng = self._rng("solve-rhs", _dtype_id(dtype), tuple(batch_shape), z)
            like = op.to_dense()
            for shape in (tuple(batch_shape) + (n,), tuple(batch_shape) + (n, 2)):
                b = self._rhs(rng, shape, dtype)
                vec = len(shape) == len(batch_shape) + 1
                x = to_numpy(op.solve(_like(b, like), z, **kw))
                ref = np.linalg.solve(A, b[..., None] if vec else b)
                ref = ref[..., 0] if vec else ref
                assert x.shape == ref.shape, f"{tag}solve: shape {x.shape}, expected {ref.shape}"
                axes = (-1,) if vec else (-2, -1)
                err = np.abs(x - ref).max(axis=axes)
                size = np.abs(ref).max(axis=axes)
                kind = "vector" if vec else "matrix"
                assert np.all(err <= tol * size), (
                    f"{tag}solve ({kind} b), z = {z}: max ||x - x_ref||/||x_ref|| = "
                    f"{float(np.max(err / size)):.3g} exceeds C N eps cond = "
                    f"{float(np.max(tol)):.3g}"
                )

    def test_logdet(self, dtype: Any, batch_shape: tuple[int, ...], z: Any) -> None:
        """``op.logdet(z)`` vs ``numpy.linalg.slogdet(dense - z I)``; imag part in (-pi, pi];
        under every variant."""
        op0, dense = self._build(dtype, batch_shape)
        tol, _ = self._tolerance(dense, dtype, z)
        sign, logabs = np.linalg.slogdet(_shifted(dense, z))
        ref_imag = np.angle(sign)
        for op, kw, tag in self._variants(op0):
            ld = np.asarray(to_numpy(op.logdet(z, **kw)))
            assert ld.shape == tuple(batch_shape), (
                f"{tag}logdet: shape {ld.shape}, expected {batch_shape}")
            err = np.abs(ld.real - logabs) + np.abs(_wrap(np.imag(ld) - ref_imag))
            assert np.all(err <= tol), (
                f"{tag}logdet, z = {z}: max |ld - ld_ref| = {float(np.max(err)):.3g} exceeds "
                f"C N eps cond = {float(np.max(tol)):.3g}"
            )
            im = np.imag(ld)
            assert np.all((im > -np.pi) & (im <= np.pi)), f"{tag}Im logdet outside (-pi, pi]: {im}"

    def test_resolvent_diagonal(self, dtype: Any, batch_shape: tuple[int, ...], z: Any) -> None:
        """``op.resolvent_diagonal(z)`` vs ``diag(inv(dense - z I))``, under every variant."""
        op0, dense = self._build(dtype, batch_shape)
        tol, inv_norm = self._tolerance(dense, dtype, z)
        ref = np.diagonal(np.linalg.inv(_shifted(dense, z)), axis1=-2, axis2=-1)
        want = np.result_type(np.dtype(dtype), z)  # a Python scalar z is "weak" (NEP 50)
        for op, kw, tag in self._variants(op0):
            G = to_numpy(op.resolvent_diagonal(z, **kw))
            assert G.shape == ref.shape, (
                f"{tag}resolvent_diagonal: shape {G.shape}, expected {ref.shape}")
            assert G.dtype == want, f"{tag}resolvent_diagonal: dtype {G.dtype}, expected {want}"
            err = np.abs(G - ref).max(axis=-1)
            assert np.all(err <= tol * inv_norm), (
                f"{tag}resolvent_diagonal, z = {z}: max |G - G_ref| / ||A^-1||_2 = "
                f"{float(np.max(err / inv_norm)):.3g} exceeds C N eps cond = "
                f"{float(np.max(tol)):.3g}"
            )

    # -- broadcasting and errors ----------------------------------------------------------------
    def test_batch_broadcasting(self, dtype: Any, batch_shape: tuple[int, ...]) -> None:
        """``z`` arrays broadcast against the batch; a 1-d ``b`` broadcasts over the batch."""
        op, dense = self._build(dtype, batch_shape)
        batch = tuple(batch_shape)
        n = dense.shape[-1]
        like = op.to_dense()
        zs = np.asarray(self.shifts[:2], dtype=np.complex128)
        zarr = zs.reshape((len(zs),) + (1,) * len(batch))
        rtol = default_rtol(np.result_type(np.dtype(dtype), np.complex64), n)
        G = to_numpy(op.resolvent_diagonal(_like(zarr, like)))
        assert G.shape == (len(zs),) + batch + (n,), f"resolvent_diagonal(z array): {G.shape}"
        ld = to_numpy(op.logdet(_like(zarr, like)))
        assert ld.shape == (len(zs),) + batch, f"logdet(z array): shape {ld.shape}"
        for k, zk in enumerate(zs):
            zk = complex(zk)
            # two code paths (a per-row shift against a scalar one) round differently; each is
            # accurate normwise, so the difference is bounded relative to the largest |G_ii|
            assert_allclose_relative(G[k], to_numpy(op.resolvent_diagonal(zk)), rtol,
                                     atol=rtol * float(np.max(np.abs(G[k]), initial=0)),
                                     err_msg=f"resolvent_diagonal(z array)[{k}] vs scalar z")
            assert_allclose_relative(ld[k], to_numpy(op.logdet(zk)), rtol,
                                     atol=rtol * max(1.0, float(np.max(np.abs(ld[k]), initial=0))),
                                     err_msg=f"logdet(z array)[{k}] vs scalar z")
        b = self._rhs(self._rng("bcast", _dtype_id(dtype), batch), (n,), dtype)
        z = self.shifts[0]
        x = to_numpy(op.solve(_like(b, like), z))
        assert x.shape == batch + (n,), f"solve with b (N,): shape {x.shape}"
        bb = np.broadcast_to(b, batch + (n,)).copy()
        assert_allclose_relative(x, to_numpy(op.solve(_like(bb, like), z)), rtol,
                                 atol=rtol * float(np.max(np.abs(x), initial=0)),
                                 err_msg="solve: b (N,) vs b broadcast to the batch")
        y = to_numpy(op.matvec(_like(b, like)))
        assert y.shape == batch + (n,), f"matvec with b (N,): shape {y.shape}"

    def test_wrong_shape_errors(self, dtype: Any, batch_shape: tuple[int, ...]) -> None:
        """Right-hand sides of the wrong size raise ValueError (ShapeError), never broadcast."""
        op, dense = self._build(dtype, batch_shape)
        batch = tuple(batch_shape)
        n = dense.shape[-1]
        like = op.to_dense()
        z = self.shifts[0]
        calls: list[tuple[str, Callable[[Any], Any]]] = [
            ("solve", lambda b: op.solve(b, z)),
            ("matvec", op.matvec),
            ("rmatvec", op.rmatvec),
        ]
        bad = [batch + (n + 1,), batch + (n + 1, 2), (n + 1,)]
        if batch and batch[-1] > 1:
            bad.append(batch[:-1] + (batch[-1] + 1, n))  # batch dimensions that do not broadcast
        for shape in bad:
            b = _like(np.ones(shape, np.dtype(dtype)), like)
            for name, fn in calls:
                with pytest.raises(ValueError):
                    fn(b)
                    raise AssertionError(f"{name} accepted b of shape {shape} for N = {n}, "
                                         f"batch {batch}")  # pragma: no cover

    # -- gradients (torch) ----------------------------------------------------------------------
    def _gradcheck(self, what: str) -> None:
        if not self.supports_torch:
            pytest.skip(f"{type(self).__name__} sets supports_torch = False")
        torch = _torch_backend_or_skip()
        rng = self._rng("torch", what)
        params = tuple(self.make_torch_params(rng))
        for p in params:
            assert p.dtype == torch.complex128 and p.requires_grad, (
                "make_torch_params must return complex128 leaves with requires_grad=True"
            )
        z = torch.tensor(self.torch_shift, dtype=torch.complex128, requires_grad=True)
        k = len(params)
        probe = self.make_torch_operator(params)
        n = int(probe.shape[-1])
        batch = tuple(int(s) for s in probe.shape[:-2])
        b_np = self._rhs(rng, batch + (n,), np.complex128)
        b = torch.tensor(b_np, dtype=torch.complex128, requires_grad=True)

        def fn(*a: Any) -> Any:
            op = self.make_torch_operator(a[:k])
            if what == "resolvent_diagonal":
                return op.resolvent_diagonal(a[k])
            if what == "logdet":
                return op.logdet(a[k])
            if what == "solve":
                return op.solve(a[k + 1], a[k])
            return op.matvec(a[k])

        inputs = params + ((b,) if what == "matvec" else (z, b) if what == "solve" else (z,))
        # gradcheck's defaults (eps=1e-6, atol=1e-5, rtol=1e-3): central differences in
        # complex128 are accurate to O(eps_fd^2 + eps/eps_fd) ~ 1e-10 here, so a wrong gradient
        # (not rounding) is what trips them.
        from torch.autograd.gradcheck import GradcheckError

        try:
            ok = torch.autograd.gradcheck(fn, inputs)
        except GradcheckError as exc:
            raise AssertionError(f"torch.autograd.gradcheck of {what} failed: {exc}") from exc
        assert ok, f"torch.autograd.gradcheck of {what} returned False"

    def test_torch_gradcheck_resolvent_diagonal(self) -> None:
        self._gradcheck("resolvent_diagonal")

    def test_torch_gradcheck_logdet(self) -> None:
        self._gradcheck("logdet")

    def test_torch_gradcheck_solve(self) -> None:
        self._gradcheck("solve")

    def test_torch_gradcheck_matvec(self) -> None:
        self._gradcheck("matvec")


def _shifted(dense: np.ndarray, z: Any) -> np.ndarray:
    """``dense - z I`` in complex128 (float64 for real data and real z)."""
    z = np.asarray(z)
    dt = np.result_type(dense.dtype, z.dtype, np.float64)
    n = dense.shape[-1]
    return dense.astype(dt) - z.astype(dt)[..., None, None] * np.eye(n, dtype=dt)
