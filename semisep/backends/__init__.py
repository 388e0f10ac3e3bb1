"""The narrow kernel boundary.

A backend supplies (1) a handful of array-plumbing helpers, so that the core algorithms in
``semisep/tridiagonal.py`` etc. are written once for every array library, and (2) the three
kernels that need speed or autograd care.  Everything else lives in the core.

Kernel contract (shared by every backend)
-----------------------------------------
All kernel inputs are already broadcast and flattened to a leading batch dimension ``B``
and share one dtype (real or complex, 32 or 64 bit); they may be non-contiguous views.
With ``A = T - z I`` for one batch row:

* ``alpha``: ``(B, N)``, ``alpha_i = A[i, i]``
* ``beta``:  ``(B, N-1)``, ``beta_i = A[i, i+1] * A[i+1, i]``
* ``upper``, ``lower``: ``(B, N-1)``, the upper and lower off-diagonals (``A[i, i+1]`` and
  ``A[i+1, i]``; only ``solve`` and the Woodbury kernels need them apart)
* ``pivmin``: ``(B,)`` real, the pivot guard: a pivot ``d`` with ``|d| < pivmin`` is replaced
  by ``pivmin * d/|d|`` (``pivmin`` if ``d == 0``) and counted.
* every kernel returns ``(result, guarded, singular)`` with ``guarded`` an int64 ``(B,)`` array
  counting guarded pivots and ``singular`` a bool ``(B,)`` array, True where the row's matrix is
  singular to working precision (``SINGULAR_FACTOR = 4``):
    - resolvent_diagonal: some ``|gamma_i| < 4 pivmin``, ``gamma_i = 1/G_ii``
      (``|G_ii| <= ||A^{-1}||_2``, so this certifies ``cond_2(A) > 1/(4 eps)``; a guarded
      singular matrix comes back with some ``|G_ii| ~ 1/pivmin``, which the factor 4 catches);
    - logdet, solve (left sweep only): the last pivot, before guarding, has
      ``|d_{N-1}| < 4 pivmin``, or a pivot ``d_k`` (k < N-1) was guarded where
      ``|beta_k| <= pivmin**2`` (a singular leading block decoupled from the rest).
      Where a pivot was guarded the core also runs resolvent_diagonal's certificate, since the
      guard can make a singular matrix look regular to the left sweep alone.

The kernels:

``resolvent_diagonal(alpha, beta, pivmin, method) -> (G (B, N), guarded, singular)``
    ``G_ii = 1/(alpha_i - beta_{i-1} gL_{i-1} - beta_i gR_{i+1})`` from the LU / UL pivots
    (docs/mathematics.md).

``logdet(alpha, beta, pivmin, method) -> (ld (B,), guarded, singular)``
    ``log det A = sum_i log d_i`` with ``d_i = 1/gL_i``; complex dtype in, complex out with the
    imaginary part in (-pi, pi]; real dtype in, *complex* out too (``log`` of a negative
    determinant has imaginary part pi); the core decides whether to return it as real.

``solve(alpha, b, c, f, pivmin, method) -> (x (B, N, k), guarded, singular)``
    ``A x = f`` for ``f`` of shape ``(B, N, k)``.

``resolvent_diagonal_selected(alpha, beta, pivmin, indices, method) -> (G (B, K), guarded, singular)``
    ``G_ii`` at the K positions ``indices`` (int64 numpy array, 0 <= i < N) only.  The base
    class computes the full diagonal and gathers (correct, differentiable, no saving); a backend
    may override it with a kernel that skips work (the NumPy backend stops the left sweep at
    ``max(indices)``, the right sweep at ``min(indices)``, and combines only at ``indices``).
    ``singular`` is judged at the selected positions only.

The shift form (optional, ``Backend.takes_shift = True``)
    ``resolvent_diagonal_shifted(diag, shift, beta, pivmin, method)`` takes ``alpha`` as
    ``diag (B, N) - shift (B,)`` with ``diag`` and ``beta`` in ``T``'s own dtype (real for a real
    ``T``, so a stride-0 batch axis of a shared diagonal stays a view), and forms ``alpha`` in
    registers: the (B, N) array ``alpha`` is never written.  The core then takes ``pivmin``
    from ``Backend.shifted_amax_abs(diag, shift, batch)`` (written once in the base class on
    the ``min_max`` / ``maximum`` plumbing): ``amax_abs`` of ``alpha`` from the min and max of
    ``T``'s diagonal (shape ``op_batch + (N,)``) and the shift rows.  The default
    ``resolvent_diagonal_shifted`` forms ``alpha`` and calls ``resolvent_diagonal``.

Optional fused Woodbury kernels (``fused_woodbury = True``; the NumPy backend has them, and the
torch backend runs them on CPU tensors that need no gradient, ``woodbury_fusable``), used by
``TridiagonalPlusLowRank.resolvent_diagonal`` in place of two solves and dense products; with
``A = tridiag(c, alpha, b) = L D M`` (no row exchanges):

``woodbury_forward(alpha, b, c, U, V, pivmin, shift=None) -> sweeps``
    ``X = A^{-1} U`` (one solve's forward and back sweeps) and ``K - I = V^T X``, summed
    while the back sweep runs; ``sweeps`` is the
    backend's own state object with at least ``sweeps.KmI`` (B, r, r) ``= K - I`` and
    ``sweeps.guarded`` (B,), ``sweeps.singular`` (B,) as for ``solve``.  ``shift`` (B,): the
    diagonal of ``A`` is ``alpha - shift`` (a backend with ``takes_shift`` accepts T's own,
    possibly real, diagonal and off-diagonals and z).
``woodbury_correction(sweeps, Kinv, subtract_from=None) -> (B, N)``
    ``sum_k X_ik W_ik`` with ``W = A^{-T} V K^{-T}``; with ``subtract_from`` (a (B, N) array of
    the working dtype that the caller owns) the sum is subtracted from it in place and it is
    returned.  The backend may then reuse the sweeps' storage.
``woodbury_release(sweeps)``
    The sweeps are no longer needed (a caller that wanted K alone, or stopped after the
    forward pass): the backend may reuse their storage.

``TridiagonalPlusLowRank.logdet`` and ``solve`` use the forward pass alone, for ``K``.

The torch backend's kernels are differentiable (``torch.autograd.Function`` with the O(N)
backward of docs/mathematics.md) with respect to every tensor argument except ``pivmin``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BackendError

__all__ = ["Backend", "KernelNamespaceBase", "backend_for", "get_backend", "SINGULAR_FACTOR"]

#: ``|1/G_ii| < SINGULAR_FACTOR * pivmin`` marks a matrix singular to working precision.
SINGULAR_FACTOR = 4.0


class KernelNamespaceBase:
    """What the covariance kernels' array namespaces (``backend.linalg.KernelNamespace``) share:
    assembly written once on the namespace's own ``zeros`` and ``asarray``."""

    def zeros(self, shape: Any) -> Any:
        raise NotImplementedError

    def asarray(self, x: Any) -> Any:
        raise NotImplementedError

    def matrix(self, rows: Any, out: Any = None) -> Any:
        """``(..., m, n)`` from an m x n nested list of broadcastable ``(...)`` arrays, written
        entry by entry into ``out`` (a view into a larger array) or one new allocation (the
        torch namespace's copies are recorded by autograd)."""
        if out is None:
            shape = np.broadcast_shapes(*(tuple(np.shape(x)) for row in rows for x in row))
            out = self.zeros(tuple(shape) + (len(rows), len(rows[0])))
        for i, row in enumerate(rows):
            for j, x in enumerate(row):
                out[..., i, j] = x
        return out

    def const(self, m: Any) -> Any:
        """A constant matrix in this namespace's dtype (no gradient)."""
        return self.asarray(np.asarray(m, dtype=np.float64))


class Backend:
    """Base class: the plumbing every backend provides.  See the module docstring."""

    name: str = "abstract"
    methods: tuple[str, ...] = ()
    #: The backend's dense array namespace (module ``semisep.backends.<name>.linalg``): small
    #: r x r solves, QR/SVD, flips, cumulative sums, dtype maps -- one module per array library,
    #: so that operator code never asks which library it holds.
    linalg: Any = None
    #: True for a backend whose kernels return lazy arrays (Dask): the core then leaves the
    #: singularity checks, the certificate and the decisions that need values to the backend's
    #: graph, which raises at compute time.
    lazy: bool = False

    def tracing(self) -> bool:
        """True while a tracing compiler (``torch.compile``) traces the caller: the operators
        then defer the checks that read values and hand their O(N) algorithms to
        :meth:`traced_call`."""
        return False

    def traced_call(self, which: str, op: Any, **kwargs: Any) -> Any:
        """``op.<which>(**kwargs)`` as the tracing compiler's graph should hold it (only called
        when :meth:`tracing` is True)."""
        raise NotImplementedError

    # -- plumbing ---------------------------------------------------------------------------
    def is_array(self, x: Any) -> bool:
        raise NotImplementedError

    def asarray(self, x: Any, like: Any = None) -> Any:
        """Convert ``x`` (array, scalar, list) to this backend's array type (on ``like``'s device)."""
        raise NotImplementedError

    def result_dtype(self, *xs: Any) -> Any:
        """Promoted floating dtype of arrays and Python scalars; integers and bools -> float64."""
        raise NotImplementedError

    def astype(self, x: Any, dtype: Any) -> Any:
        raise NotImplementedError

    def zeros(self, shape: tuple[int, ...], dtype: Any, like: Any) -> Any:
        raise NotImplementedError

    def concat(self, xs: list[Any], axis: int) -> Any:
        raise NotImplementedError

    def broadcast_to(self, x: Any, shape: tuple[int, ...]) -> Any:
        raise NotImplementedError

    def is_complex(self, dtype: Any) -> bool:
        raise NotImplementedError

    def eps(self, dtype: Any) -> float:
        raise NotImplementedError

    def all_finite(self, x: Any) -> bool:
        raise NotImplementedError

    def all_finite_many(self, xs: list[Any]) -> bool:
        """``all_finite`` of every array in ``xs`` (a backend may read them in one host sync)."""
        return all(self.all_finite(x) for x in xs)

    def amax_abs(self, x: Any, axis: int) -> Any:
        """A scale ``s`` with ``max|x|/sqrt(2) <= s <= max|x|`` along ``axis`` (0 for an empty
        axis), real dtype.  Used for ``pivmin``; ``s <= max|x|`` keeps the singularity
        certificate valid (``pivmin <= eps ||A||_2``)."""
        raise NotImplementedError

    def min_max(self, x: Any) -> tuple[Any, Any]:
        """``(min, max)`` of a real array along its last axis (non-empty)."""
        raise NotImplementedError

    def maximum(self, a: Any, b: Any) -> Any:
        """Elementwise maximum of two real arrays (NaN-propagating)."""
        raise NotImplementedError

    def to_numpy(self, x: Any) -> Any:
        raise NotImplementedError

    def host_reads(self, like: Any) -> Any:
        """A scope in which one public call reads the values it decides on (deferred flags,
        the kernels' own) in one host sync (:class:`semisep.backends.torch.reads.HostReads`),
        or None where reading values costs no host sync (NumPy arrays, CPU tensors): the
        operator then reads them as it goes."""
        return None

    # -- kernels ----------------------------------------------------------------------------
    def resolvent_diagonal(self, alpha, beta, pivmin, method="auto"):
        raise NotImplementedError

    def logdet(self, alpha, beta, pivmin, method="auto"):
        raise NotImplementedError

    def solve(self, alpha, upper, lower, f, pivmin, method="auto"):
        raise NotImplementedError

    #: whether the core should call the shift-form kernel (see the module docstring)
    takes_shift: bool = False

    def resolvent_diagonal_shifted(self, diag, shift, beta, pivmin, method="auto"):
        """Default: form ``alpha = diag - shift`` in the result dtype and call the kernel."""
        dtype = self.result_dtype(diag, shift, beta)
        alpha = self.astype(diag - self.astype(shift, dtype)[:, None], dtype)  # one (B, N) array
        return self.resolvent_diagonal(alpha, _cast_rows(self, beta, dtype), pivmin, method=method)

    def shifted_amax_abs(self, diag, shift, batch):
        """``max(max|Re alpha|, max|Im alpha|)`` per row of ``alpha = diag - shift`` without
        forming it: ``diag`` is ``T``'s own diagonal ``(..., N)``, ``shift`` the (B,) rows of
        ``z``, ``batch`` the full batch shape.  Rounding is monotone, so
        ``max_i |fl(d_i - c)| = max(fl(max d - c), fl(c - min d))`` and this equals
        :meth:`amax_abs` of the formed ``alpha`` (measured the same way) exactly."""
        cplx = self.is_complex
        parts = (diag.real, diag.imag) if cplx(diag.dtype) else (diag,)
        shifts = (shift.real, shift.imag) if cplx(shift.dtype) else (shift,)
        scale = self.zeros(tuple(shift.shape), shifts[0].dtype, like=shift)
        for k, c in enumerate(shifts):
            if k < len(parts):
                lo, hi = (self.broadcast_to(m, tuple(batch)).reshape((-1,)) for m in self.min_max(parts[k]))
                scale = self.maximum(scale, self.maximum(hi - c, c - lo))
            else:  # a real diagonal: Im alpha = -Im z
                scale = self.maximum(scale, abs(c))
        return scale

    #: whether the optional fused Woodbury kernels below exist (module docstring)
    fused_woodbury: bool = False

    def woodbury_fusable(self, method: str, *inputs: Any) -> bool:
        """Whether the fused Woodbury kernels serve a call with ``method`` on these inputs
        (T's arrays, U, V, z).  Default: the backend has them and ``method`` is "auto" or
        "sequential"."""
        return self.fused_woodbury and method in ("auto", "sequential")

    def woodbury_forward(self, alpha, upper, lower, U, V, pivmin, shift=None):
        raise NotImplementedError

    def woodbury_correction(self, sweeps, Kinv, subtract_from=None):
        raise NotImplementedError

    def woodbury_release(self, sweeps):
        """Default: nothing to give back."""

    def resolvent_diagonal_selected(self, alpha, beta, pivmin, indices, method="auto", **kwargs):
        """Default: the full diagonal, then a gather (see the module docstring); ``kwargs``
        (``chunk_length``) go to :meth:`resolvent_diagonal`."""
        G, guarded, singular = self.resolvent_diagonal(alpha, beta, pivmin, method=method, **kwargs)
        return G[:, indices], guarded, singular

    def resolvent_diagonal_masked(self, alpha, beta, pivmin, keep, chunk_length=None):
        """``G_ii`` where ``keep (B, N)`` is True, with the chunked scan's second pass skipped in
        chunks that need no pivot: ``(values (K,), steps_run, steps_full)``.  Optional (the
        torch backend has it, for :func:`semisep.nn.masked_resolvent_diagonal`)."""
        raise NotImplementedError(f"the {self.name} backend has no chunked masked resolvent kernel")

    # -- what ran --------------------------------------------------------------------------
    #: Per-thread record of the kernel the last kernel call on this backend ran (a
    #: ``threading.local``, so concurrent calls from different threads do not mix); None on a
    #: backend that keeps no record.  A backend that keeps one writes it at every kernel entry
    #: point (and again where a kernel declines and another runs), before returning.
    _ran: Any = None

    #: whether the kernels take a ``chunk_length`` keyword (the torch backend's chunked and
    #: fused kernels); the operators reject a chunk length on a backend without it
    takes_chunk_length: bool = False

    def _note_kernel(self, kernel: str, chunk_length: int | None = None) -> str:
        """Record ``kernel`` (and the chunk length of its pivot sweeps, None for a kernel
        without chunks) as what this thread's current kernel call runs; returns ``kernel``."""
        if self._ran is not None:
            self._ran.kernel = kernel
            self._ran.chunk_length = chunk_length
        return kernel

    def chunk_length_ran(self) -> int | None:
        """The chunk length of the kernel this thread's last kernel call ran (for
        ``PivotInfo.chunk_length``; read it right after the call); None for a kernel without
        chunks or a backend that keeps no record."""
        return None if self._ran is None else getattr(self._ran, "chunk_length", None)

    def kernel_ran(self, method: str) -> str:
        """The kernel that this thread's last kernel call on this backend ran (for
        ``PivotInfo.method``; read it right after the call), or ``method`` on a backend that
        keeps no record."""
        kernel = None if self._ran is None else getattr(self._ran, "kernel", None)
        return method if kernel is None else kernel

    def check_method(self, method: str) -> str:
        if method not in ("auto",) + self.methods:
            raise ValueError(
                f"method={method!r} is not available on the {self.name} backend; "
                f"choose one of {('auto',) + self.methods}"
            )
        return method


_BACKENDS: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """The backend called ``name`` ("numpy", "torch" or "dask"), created on first use."""
    if name == "torch":  # the torch module's own instance: no registry write (torch.compile may
        try:  # be tracing a first call, and a write would invalidate the guards it is building)
            from .torch import default_backend
        except ImportError as exc:  # torch missing or the backend module missing
            raise BackendError(
                f"the torch backend is not available ({exc}); install semisep[torch]"
            ) from exc
        return default_backend
    if name not in _BACKENDS:
        if name == "numpy":
            from .numpy import NumpyBackend

            _BACKENDS[name] = NumpyBackend()
        elif name == "dask":
            try:
                from .dask import DaskBackend
            except ImportError as exc:  # dask missing
                raise BackendError(
                    f"the dask backend is not available ({exc}); install semisep[dask]"
                ) from exc
            _BACKENDS[name] = DaskBackend()
        else:
            raise BackendError(f"unknown backend {name!r}; semisep has 'numpy', 'torch' and 'dask'")
    return _BACKENDS[name]


def _is_torch(x: Any) -> bool:
    mod = type(x).__module__
    return mod.startswith("torch") and type(x).__name__ in (
        "Tensor", "Parameter", "FakeTensor", "FunctionalTensor")  # the last two: torch.export


def _is_dask(x: Any) -> bool:
    return type(x).__module__.startswith("dask.array") and type(x).__name__ == "Array"


def _cast_rows(bk: Backend, x: Any, dtype: Any) -> Any:
    """``x`` (B, n) in ``dtype``; rows broadcast from one (batch stride 0, e.g. an off-diagonal
    shared by the batch) are cast once and broadcast again instead of being materialised B times
    (which would also make autograd save B copies)."""
    stride0 = x.stride(0) if callable(getattr(x, "stride", None)) else x.strides[0]
    if x.shape[0] > 1 and stride0 == 0:
        return bk.broadcast_to(bk.astype(x[:1], dtype), tuple(x.shape))
    return bk.astype(x, dtype)


def backend_for(*arrays: Any) -> Backend:
    """The backend of the arrays among ``arrays`` (None and Python scalars are ignored).

    Dask arrays select the Dask backend (NumPy arrays among them are wrapped as dask arrays).

    Raises :class:`~semisep.errors.BackendError` when torch tensors are mixed with NumPy or dask
    arrays, or when an argument is of an array type semisep has no backend for.
    """
    kinds = set()
    for x in arrays:
        if x is None or isinstance(x, (bool, int, float, complex, np.generic)):
            continue
        if _is_torch(x):
            kinds.add("torch")
        elif _is_dask(x):
            kinds.add("dask")
        elif hasattr(x, "__array__") or isinstance(x, (list, tuple)):
            kinds.add("numpy")
        else:
            raise BackendError(f"semisep has no backend for arrays of type {type(x).__name__}")
    if "dask" in kinds and "torch" not in kinds:
        return get_backend("dask")
    if len(kinds) > 1:
        if "dask" in kinds:
            raise BackendError(
                "mixed array types: got both torch tensors and dask arrays; convert the tensors "
                "(t.numpy()) or compute the dask arrays"
            )
        raise BackendError(
            "mixed array types: got both torch tensors and NumPy arrays; convert one side "
            "(torch.as_tensor(x) or t.numpy())"
        )
    return get_backend(kinds.pop() if kinds else "numpy")
