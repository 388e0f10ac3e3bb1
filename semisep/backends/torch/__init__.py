"""The torch backend: :class:`TorchBackend`, the kernels of :mod:`semisep.backends` on tensors.

Notation for one batch row: ``A = T - z I`` (N x N tridiagonal), ``alpha_i = A[i, i]``,
``b_i = A[i, i+1]``, ``c_i = A[i+1, i]``, ``beta_i = b_i c_i``; the mathematics is in
docs/mathematics.md.  One module per role:

=====================  ==========================================================================
``select``             the whole kernel-selection policy, one pure function with its table
``__init__``           :class:`TorchBackend`: validation-free dispatch of each kernel call
``forward``            forward kernels without autograd (resolvent diagonal, logdet, solve)
``opspec``             ``OpSpec`` and ``define``: one description per differentiable op, its
                       custom ops, autograd Functions and vmap rules generated from it
``autograd``           the differentiable kernels, each described once (an ``OpSpec``):
                       custom ops with O(N) backward passes
``pivots``             the chunked pivot sweeps (the CUDA path; plain torch ops)
``chunks``             the chunk layout and the chunked affine scan
``reference``          plain-loop twins of every kernel (``method="reference"``, test oracles)
``bridge``             the one bridge to the NumPy backend's compiled kernels (CPU tensors)
``pool``               scratch memory of the chunked path
``reads``              host reads deferred to one host sync per public call
``masked``             the masked chunked resolvent sweep of :mod:`semisep.nn`
``ops``                ``torch.compile``: each public call as one opaque custom op
``quasiseparable``     the quasiseparable kernels as torch custom ops (the scan form off the CPU:
                       ``quasiseparable_scan``)
``linalg``             the small dense namespace the operators use
=====================  ==========================================================================

The fused Triton kernels (CUDA, ``method="fused"``) live in
:mod:`semisep.backends.triton`.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np
import torch

from .. import Backend, _cast_rows
from .. import triton as _triton
from . import linalg as _linalg_ns
from .autograd import (
    LOGDET,
    RESOLVENT_DIAGONAL,
    RESOLVENT_DIAGONAL_SHIFTED,
    RESOLVENT_DIAGONAL_SHIFTED_CHUNKED,
    SOLVE,
)
from .bridge import (
    _host_view,
    _np_view,
    _numpy_kernel,
    _numpy_kernels_available,
    _TorchWoodburySweeps,
    numpy_backend,
)
from .chunks import _cabs1, _real_dtype
from .forward import (
    _logdet_forward,
    _resolvent_cert,
    _resolvent_flags,
    _resolvent_forward,
    _resolvent_shifted_chunked,
    _solve_forward,
    read_flags,
)
from .opspec import reject_forward_ad as _reject_forward_ad
from .pivots import _resolvent_chunked_shifted
from .pool import release_host_pool
from .reads import HostReads
from .reference import _logdet_pivoted_ref, _pivots_ref, _resolvent_ref_combine
from .select import FALLBACK, chunk_length_for, pivot_chunk_length, select_kernel

__all__ = ["TorchBackend", "default_backend", "release_host_pool"]

_transforms_active = torch._C._are_functorch_transforms_active


class TorchBackend(Backend):
    """semisep's torch backend (CPU and CUDA tensors).

    Transforms: under ``torch.compile``/``torch.export`` tracing and inside ``torch.func``
    transforms (:meth:`tracing`), ``Tridiagonal.resolvent_diagonal``, ``logdet`` and ``solve``
    become one opaque custom op each (:meth:`traced_call`, :mod:`semisep.backends.torch.ops`)
    with the eager results, errors and gradients.  ``torch.func.grad``, ``grad_and_value``,
    ``vjp`` and ``vmap`` (also nested, and ``vmap(grad)``: per-sample gradients) work through
    them; ``jvp`` and second derivatives raise.  The cases the module docstring lists break
    the compiled graph, or raise under ``torch.export`` or ``vmap``.

    Kernels (contract in :mod:`semisep.backends`): ``resolvent_diagonal``, ``logdet``, ``solve``,
    each returning ``(result, guarded, singular)`` and differentiable w.r.t. every tensor input
    except ``pivmin`` (O(N) backward; double backward raises).

    ``method`` (the kernel for each call is chosen by one pure function,
    :func:`semisep.backends.torch.select.select_kernel`, whose docstring is the decision table;
    ``PivotInfo.method`` reports the kernel that ran, :meth:`kernel_ran`):

    * ``"chunked"``: the chunked parallel scan of the module docstring (plain torch ops, same code
      on CPU and CUDA; depth ~ 2L + log(N/L) vectorised steps).
    * ``"sequential"``: CPU tensors only: the compiled (numba) sequential sweeps of the numpy
      backend, called zero-copy; backward uses the chunked affine scans.
    * ``"fused"``: CUDA tensors with triton installed, the shift-form resolvent diagonal at a
      complex shift without autograd only: the fused Triton kernels of
      :mod:`semisep.backends.triton` (the chunked scan with the chunks kept in
      registers).  The rows where a pivot would need the guard are declined and run through
      ``"chunked"`` alone (merged; ``"chunked"`` is reported); if the kernels fail to
      compile or launch, ``"chunked"`` runs the call (one RuntimeWarning per error type).
      Other calls with ``method="fused"`` raise a ValueError.
    * ``"reference"``: a plain sequential torch loop over N (slow; tests only); its gradients come
      from ordinary autograd through the loop.
    * ``"auto"``: ``"sequential"`` on CPU (``"chunked"`` if the numpy backend's compiled kernels
      cannot be imported); on CUDA ``"fused"`` where it applies, else ``"chunked"`` (also on
      other non-CPU devices).  An explicit ``method="chunked"`` always runs the plain torch ops.

    ``chunk_length`` (a keyword of each kernel call): the chunk length ``L`` of the
    ``"chunked"`` and ``"fused"`` kernels; None (the default) lets the kernel choose its own
    N-dependent length (:func:`semisep.backends.torch.select.chunk_length_for` documents both).
    The other kernels ignore it.  The operators take it per call too
    (``Tridiagonal.resolvent_diagonal(..., chunk_length=)``), and ``PivotInfo.chunk_length``
    reports the length that ran (:meth:`chunk_length_ran`).
    """

    name = "torch"
    methods = ("sequential", "chunked", "fused", "reference")
    takes_chunk_length = True
    linalg = _linalg_ns

    def __init__(self) -> None:
        self._ran = threading.local()  # the kernel each thread's last call ran (Backend.kernel_ran)

    # -- plumbing ---------------------------------------------------------------------------
    def tracing(self) -> bool:
        """True under ``torch.compile``/``torch.export`` tracing (``is_compiling`` covers both)
        or inside a ``torch.func`` transform."""
        return torch.compiler.is_compiling() or _transforms_active()

    def traced_call(self, which: str, op: Any, **kwargs: Any) -> Any:
        """One opaque custom op per call (:mod:`semisep.backends.torch.ops`)."""
        from .ops import traced_call

        return traced_call(which, op, **kwargs)

    def is_array(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def asarray(self, x: Any, like: Any = None) -> Any:
        """``x`` as a tensor on ``like``'s device (tensors are returned as they are when already
        there); Python and NumPy scalars/lists keep NumPy's dtype (float64, complex128, int64)."""
        device = like.device if isinstance(like, torch.Tensor) else None
        if isinstance(x, torch.Tensor):
            return x if device is None or x.device == device else x.to(device)
        # through NumPy, so that Python floats become float64 (complex128), never torch's
        # default dtype: 0.3 + 0.1j must not be rounded to complex64
        return torch.as_tensor(np.asarray(x), device=device)

    def result_dtype(self, *xs: Any) -> Any:
        """Promote like torch does, except that an integer/bool result becomes float64 (torch's
        default dtype is never consulted).  Tensors take part with their dtype; Python (and
        NumPy) scalars only by kind (bool < int < float < complex), as in torch."""
        dt = None
        scalars = []
        for x in xs:
            if x is None:
                continue
            if isinstance(x, torch.Tensor):
                dt = x.dtype if dt is None else torch.promote_types(dt, x.dtype)
            elif isinstance(x, np.ndarray):
                t = torch.from_numpy(np.ascontiguousarray(x))
                dt = t.dtype if dt is None else torch.promote_types(dt, t.dtype)
            else:
                v = x.item() if isinstance(x, np.generic) else x
                if not isinstance(v, (bool, int, float, complex)):
                    raise TypeError(f"cannot take the dtype of {type(x).__name__}")
                scalars.append(v)
        if dt is None or not (dt.is_floating_point or dt.is_complex):
            dt = torch.float64
        for v in scalars:
            dt = torch.result_type(torch.empty((), dtype=dt), v)
        if dt not in (torch.float32, torch.float64, torch.complex64, torch.complex128):
            raise TypeError(f"dtype {dt} is not supported; use float32/float64/complex64/complex128")
        return dt

    def astype(self, x: Any, dtype: Any) -> Any:
        return x.to(dtype)

    def zeros(self, shape: tuple[int, ...], dtype: Any, like: Any) -> Any:
        device = like.device if isinstance(like, torch.Tensor) else None
        return torch.zeros(tuple(shape), dtype=dtype, device=device)

    def concat(self, xs: list[Any], axis: int) -> Any:
        return torch.cat(list(xs), dim=axis)

    def broadcast_to(self, x: Any, shape: tuple[int, ...]) -> Any:
        return torch.broadcast_to(x, tuple(shape))

    def is_complex(self, dtype: Any) -> bool:
        return bool(dtype.is_complex)

    def eps(self, dtype: Any) -> float:
        return float(torch.finfo(dtype).eps)

    # The three reductions below run on NumPy views for CPU tensors: torch's CPU isfinite/all
    # and aminmax are several times slower than NumPy's on large arrays.
    def all_finite(self, x: Any) -> bool:
        v = _host_view(x.conj() if x.is_conj() else x)  # conj: same finiteness, no copy
        return bool(np.isfinite(v).all()) if v is not None else bool(torch.isfinite(x).all())

    def all_finite_many(self, xs: list[Any]) -> bool:
        """All of ``xs`` finite: NumPy views on CPU, one host sync for all on a device."""
        if all(_host_view(x) is not None for x in xs):
            return all(self.all_finite(x) for x in xs)
        return bool(torch.stack([torch.isfinite(x).all() for x in xs]).all())

    def amax_abs(self, x: Any, axis: int) -> Any:
        if x.shape[axis] == 0:
            shape = list(x.shape)
            del shape[axis]
            return x.new_zeros(shape, dtype=_real_dtype(x.dtype))
        if x.is_complex():
            return x.abs().amax(dim=axis)
        v = _host_view(x)
        if v is not None:  # max|v| = max(max v, -min v), no |v| array
            return torch.from_numpy(np.asarray(np.maximum(v.max(axis=axis), -v.min(axis=axis))))
        lo, hi = torch.aminmax(x, dim=axis)  # one pass, no |x| array (on the device too)
        return torch.maximum(hi, -lo)

    def min_max(self, x: Any) -> tuple[Any, Any]:
        v = _host_view(x)
        if v is not None:
            return torch.from_numpy(np.asarray(v.min(axis=-1))), torch.from_numpy(np.asarray(v.max(axis=-1)))
        return torch.aminmax(x, dim=-1)

    def maximum(self, a: Any, b: Any) -> Any:
        return torch.maximum(a, b)

    def host_reads(self, like: Any) -> HostReads | None:
        """A :class:`~semisep.backends.torch.reads.HostReads` scope for tensors whose values
        the host cannot read without a sync (a device other than the CPU); None for CPU
        tensors and under tracing or a ``torch.func`` transform."""
        if _host_view(like) is not None or self.tracing():
            return None
        return HostReads()

    def to_numpy(self, x: Any) -> Any:
        if _transforms_active():  # host data under torch.func.grad: the values under the wrappers
            from .ops import host_values

            with torch._C._DisableFuncTorch():
                return host_values(x).detach().resolve_conj().resolve_neg().cpu().numpy()
        return x.detach().resolve_conj().resolve_neg().cpu().numpy()

    # -- the shift form (contract in semisep.backends) ------------------------------------------
    takes_shift = True

    def resolvent_diagonal_shifted(self, diag, shift, beta, pivmin, method="auto", *, chunk_length=None):
        """On CPU (``"sequential"``): the NumPy backend's shift-form kernels on zero-copy views
        (no (B, N) ``alpha``, a shared off-diagonal stays a stride-0 view); under autograd
        through the op ``RESOLVENT_DIAGONAL_SHIFTED`` of :mod:`.autograd` (its O(N) backward
        gives ``diag``, ``z`` and the off-diagonals their gradients).  ``"chunked"`` without
        autograd, real ``diag`` and ``beta``, complex shift: :func:`_resolvent_chunked_shifted`
        (then, where a pivot needs the guard, the shifted sweeps with the guarded pass); the
        same under autograd through ``RESOLVENT_DIAGONAL_SHIFTED_CHUNKED``.  Otherwise
        ``alpha = diag - shift`` is formed and :meth:`resolvent_diagonal` runs."""
        if method != "reference":
            _reject_forward_ad(diag, shift, beta)
        # conjugate / negative views resolved: the kernels view complex tensors as real
        diag, shift, beta = (x.resolve_conj().resolve_neg() for x in (diag, shift, beta))
        grad = self._needs_grad(diag, shift, beta)
        kernel, L = self._select("resolvent_diagonal_shifted", method, diag, chunk_length,
                                 needs_grad=grad, complex_shift=shift.is_complex())
        if kernel == "fused":
            out = self._fused(diag, shift, beta, pivmin, L)
            if out is not None:
                return out
            kernel = FALLBACK["fused"]  # failed or declined: chunked runs
            self._note_kernel(kernel, pivot_chunk_length(kernel, L, diag.shape[-1]))
        if kernel == "sequential" and grad:
            return RESOLVENT_DIAGONAL_SHIFTED(diag, shift, beta, pivmin.detach())
        if (kernel == "chunked" and grad and shift.is_complex()
                and not diag.is_complex() and not beta.is_complex()):
            return RESOLVENT_DIAGONAL_SHIFTED_CHUNKED(diag, shift, beta, pivmin.detach(), L)
        if (kernel == "chunked" and not grad and shift.is_complex()
                and not diag.is_complex() and not beta.is_complex()):
            with torch.no_grad():  # the layouts straight from diag, shift and beta (no alpha)
                out = _resolvent_chunked_shifted(diag, shift, beta, pivmin.detach(), L=L,
                                                 defer=True)
                if out is not None:  # the guard certificate and the singular one, in one host sync
                    G, ok = out
                    pm = pivmin.detach().to(diag.dtype)
                    ok_h, cert_ok = read_flags(ok, _resolvent_cert(G, pm), expect=(True, True))
                    if ok_h:  # no pivot needed the guard
                        guarded = torch.zeros(diag.shape[0], dtype=torch.int64, device=diag.device)
                        return G, guarded, _resolvent_flags(G, pm, cert_ok)
                return _resolvent_shifted_chunked(diag, shift, beta, pivmin.detach(), L)[:3]
        if kernel == "sequential":
            p = pivmin.detach().to(_real_dtype(shift.dtype))
            G, guarded, singular = numpy_backend().resolvent_diagonal_shifted(
                _np_view(diag), _np_view(shift), _np_view(beta), _np_view(p)
            )
            return (torch.from_numpy(np.asarray(G)), torch.from_numpy(np.asarray(guarded, dtype=np.int64)),
                    torch.from_numpy(np.asarray(singular, dtype=bool)))
        # alpha = diag - shift formed (as Backend.resolvent_diagonal_shifted), then
        # resolvent_diagonal with the kernel chosen here
        dtype = self.result_dtype(diag, shift, beta)
        alpha = (diag - shift.to(dtype)[:, None]).to(dtype)
        return self.resolvent_diagonal(alpha, _cast_rows(self, beta, dtype), pivmin, kernel, chunk_length=L)

    def _fused(self, diag, shift, beta, pivmin, L):
        """The fused Triton kernels (:func:`semisep.backends.triton.resolvent_diagonal_fused`)
        for the shift form: ``(G, guarded, singular)``, or None where the whole batch must run
        the chunked kernel -- every row declined, or the kernels failed to compile or launch
        (any exception: no C compiler, a driver error; warned once per error type, never
        raised).  Where only some rows declined (a pivot needs the guard), those rows alone
        run through the chunked kernel and are merged in; the call then reports
        ``"chunked"``."""
        try:
            with torch.no_grad():
                G, guarded, singular, declined = _triton.resolvent_diagonal_fused(
                    diag, shift, beta, pivmin.detach(), L=L)
        except Exception as exc:  # noqa: BLE001 - any failure falls back, never raises
            _warn_fused_failed(exc)
            return None
        if declined is None:
            return G, guarded, singular
        rows = declined.nonzero().squeeze(1)  # a host sync, only where rows declined
        if rows.numel() == diag.shape[0]:
            return None
        Gc, gc, sc = self.resolvent_diagonal_shifted(diag[rows], shift[rows], beta[rows],
                                                     pivmin.detach()[rows], "chunked", chunk_length=L)
        G[rows], guarded[rows], singular[rows] = Gc.to(G.dtype), gc, sc
        return G, guarded, singular

    # -- fused Woodbury kernels: the NumPy backend's, on CPU tensors without autograd -------
    fused_woodbury = True

    def woodbury_fusable(self, method: str, *inputs) -> bool:
        """The NumPy backend's fused Woodbury kernels (zero-copy views) serve a call when
        ``method`` is "auto" or "sequential", every tensor among ``inputs`` is a plain CPU
        tensor (not a torch.func wrapper) and none needs a gradient: they have no backward,
        so a call under autograd takes the composed path, whose solves and products do."""
        if method not in ("auto", "sequential") or not _numpy_kernels_available():
            return False
        tensors = [x for x in inputs if isinstance(x, torch.Tensor)]
        if self._needs_grad(*tensors):
            return False
        return all(_host_view(x) is not None for x in tensors)

    def woodbury_forward(self, alpha, upper, lower, U, V, pivmin, shift=None):
        """:meth:`NumpyBackend.woodbury_forward` on zero-copy views; the sweeps' ``KmI``,
        ``guarded`` and ``singular`` come back as tensors."""
        _reject_forward_ad(alpha, upper, lower, U, V, shift)
        self._note_kernel("sequential")
        p = pivmin.detach().to(_real_dtype(alpha.dtype if shift is None else shift.dtype))
        inner = numpy_backend().woodbury_forward(
            _np_view(alpha), _np_view(upper), _np_view(lower), _np_view(U), _np_view(V), _np_view(p),
            shift=None if shift is None else _np_view(shift),
        )
        return _TorchWoodburySweeps(inner)

    def woodbury_correction(self, sweeps, Kinv, subtract_from=None):
        target = None if subtract_from is None else subtract_from.detach().numpy()
        out = numpy_backend().woodbury_correction(sweeps.inner, _np_view(Kinv), subtract_from=target)
        return subtract_from if subtract_from is not None else torch.from_numpy(out)

    def woodbury_release(self, sweeps):
        numpy_backend().woodbury_release(sweeps.inner)

    # -- kernels ----------------------------------------------------------------------------
    def _select(self, operation: str, method: str, x: torch.Tensor, chunk_length: int | None,
                needs_grad: bool = False, complex_shift: bool = False) -> tuple[str, int | None]:
        """``(kernel, L)``: the kernel for this call by
        :func:`~semisep.backends.torch.select.select_kernel` (the whole policy) and its chunk
        length by :func:`~semisep.backends.torch.select.chunk_length_for`, recorded for
        :meth:`kernel_ran` and :meth:`chunk_length_ran`."""
        self.check_method(method)
        n = int(x.shape[-1])
        kernel = select_kernel(operation, method, device_type=x.device.type, needs_grad=needs_grad,
                               complex_shift=complex_shift, n=n,
                               numba_available=_numpy_kernels_available(),
                               triton_available=_triton.HAVE_TRITON)
        L = chunk_length_for(kernel, chunk_length)
        self._note_kernel(kernel, pivot_chunk_length(kernel, L, n))
        return kernel, L

    @staticmethod
    def _needs_grad(*xs) -> bool:
        return torch.is_grad_enabled() and any(isinstance(x, torch.Tensor) and x.requires_grad for x in xs)

    def resolvent_diagonal(self, alpha, beta, pivmin, method="auto", *, chunk_length=None):
        """``G_ii = [(T - zI)^{-1}]_ii`` for ``alpha (B, N)``, ``beta (B, N-1)``, ``pivmin (B,)``.

        Returns ``(G (B, N), guarded (B,) int64, singular (B,) bool)``; ``guarded`` counts the
        guarded pivots of both sweeps (LU and UL)."""
        if method != "reference":
            _reject_forward_ad(alpha, beta)
        grad = self._needs_grad(alpha, beta)
        method, L = self._select("resolvent_diagonal", method, alpha, chunk_length, needs_grad=grad)
        pivmin = pivmin.detach().to(_real_dtype(alpha.dtype))
        if method == "reference":  # plain loop, differentiable by ordinary autograd
            gL, _, mL = _pivots_ref(alpha, beta, pivmin)
            gRr, _, mR = _pivots_ref(alpha.flip(1), beta.flip(1), pivmin)
            G = _resolvent_ref_combine(alpha, beta, gL, gRr.flip(1))
            return G, (mL.sum(1) + mR.sum(1)).to(torch.int64), _resolvent_flags(G, pivmin)
        if grad:
            return RESOLVENT_DIAGONAL(alpha, beta, pivmin, method, L)
        with torch.no_grad():
            if method == "sequential":  # fused compiled kernel, no pivots kept
                return _numpy_kernel("resolvent_diagonal", alpha, beta, pivmin)
            G, guarded, singular, _, _ = _resolvent_forward(alpha, beta, pivmin, method, L)
            return G, guarded, singular

    def logdet(self, alpha, beta, pivmin, method="auto", *, chunk_length=None):
        """``log det(T - zI)`` for one matrix per batch row: ``(ld (B,) complex, guarded, singular)``;
        the imaginary part in (-pi, pi] (complex also for real input)."""
        if method != "reference":
            _reject_forward_ad(alpha, beta)
        grad = self._needs_grad(alpha, beta)
        method, L = self._select("logdet", method, alpha, chunk_length, needs_grad=grad)
        pivmin = pivmin.detach().to(_real_dtype(alpha.dtype))
        if method == "reference":  # plain pivoted loop, differentiable by ordinary autograd
            # det A depends on the products beta_i only: eliminate the balanced similar matrix
            # with lower m_i = sqrt(|beta_i|) and upper beta_i / m_i (as the numpy kernel); m is
            # a constant here, so the gradient reaches beta through beta / m only
            with torch.no_grad():
                m = _cabs1(beta).sqrt()
                c = m.to(beta.dtype)
                m = torch.where(m == 0, torch.ones_like(m), m).to(beta.dtype)
            ld, singular = _logdet_pivoted_ref(alpha, beta / m, c, pivmin)
            return ld, torch.zeros(alpha.shape[0], dtype=torch.int64, device=alpha.device), singular
        if grad:
            return LOGDET(alpha, beta, pivmin, method, L)
        with torch.no_grad():
            ld, guarded, singular, _ = _logdet_forward(alpha, beta, pivmin, method, L)
            return ld, guarded, singular

    def solve(self, alpha, upper, lower, f, pivmin, method="auto", *, chunk_length=None):
        """``x = (T - zI)^{-1} f`` for ``alpha (B, N)``, ``b, c (B, N-1)``, ``f (B, N, k)``:
        ``(x (B, N, k), guarded, singular)``."""
        if method != "reference":
            _reject_forward_ad(alpha, upper, lower, f)
        grad = self._needs_grad(alpha, upper, lower, f)
        method, L = self._select("solve", method, alpha, chunk_length, needs_grad=grad)
        pivmin = pivmin.detach().to(_real_dtype(alpha.dtype))
        if method == "reference":  # plain loops, differentiable by ordinary autograd
            x, guarded, singular, _ = _solve_forward(alpha, upper, lower, f, pivmin, "reference", None)
            return x, guarded, singular
        if grad:
            return SOLVE(alpha, upper, lower, f, pivmin, method, L)
        with torch.no_grad():
            x, guarded, singular, _ = _solve_forward(alpha, upper, lower, f, pivmin, method, L)
            return x, guarded, singular

    def resolvent_diagonal_masked(self, alpha, beta, pivmin, keep, chunk_length=None):
        """``G_ii`` at the positions where ``keep (B, N)`` is True, by the chunked scan with the
        second in-chunk pass skipped in chunks that need no pivot
        (:func:`semisep.backends.torch.masked.masked_resolvent_chunked`; no autograd).

        Returns ``(values (K,), steps_run, steps_full)`` (row-major kept values, and the
        second-pass steps run / those of a full pass)."""
        from .masked import masked_resolvent_chunked

        with torch.no_grad():
            return masked_resolvent_chunked(alpha, beta, pivmin.detach(), keep,
                                            chunk_length_for("chunked", chunk_length))


_FUSED_FAILURES: set[str] = set()


def _warn_fused_failed(exc: Exception) -> None:
    """One RuntimeWarning per exception type that the fused Triton kernels raised."""
    key = type(exc).__name__
    if key not in _FUSED_FAILURES:
        _FUSED_FAILURES.add(key)
        warnings.warn(f"the fused Triton kernels failed ({key}: {exc}); the chunked kernel runs "
                      f"instead (warned once per error type)", RuntimeWarning, stacklevel=3)


#: The instance :func:`semisep.backends.get_backend` returns for "torch".
default_backend = TorchBackend()

