"""The torch backend's kernel-selection policy: one pure function, its docstring the table.

:func:`select_kernel` takes descriptors of a call (which operation, the ``method`` argument, the
device type, whether autograd needs the result, whether the shift is complex, N, which
optional libraries import) and returns the name of the kernel that runs.  It reads no tensor,
no global state and no environment, so every row of its table is testable without the device
it names.  :class:`semisep.backends.torch.TorchBackend` calls it at each kernel entry point
and records what it returned (and the fallback below) for ``PivotInfo.method``; then
:func:`chunk_length_for` gives the chunk length of that kernel for the call.
"""

from __future__ import annotations

from numbers import Integral

__all__ = ["KERNELS", "OPERATIONS", "FALLBACK", "QUASISEPARABLE_KERNELS", "chunk_length_for",
           "pivot_chunk_length", "select_kernel", "select_quasiseparable_kernel"]

#: The kernel names :func:`select_kernel` returns; each is also a ``method=`` value.
KERNELS = ("sequential", "chunked", "fused", "reference")

#: The backend entry points the table covers.  ``resolvent_diagonal_shifted`` is the shift form
#: (``alpha = diag - shift`` formed in registers) that ``Tridiagonal.resolvent_diagonal`` uses
#: without ``indices``; with ``indices`` the torch backend computes the full diagonal
#: (``resolvent_diagonal``) and gathers.
OPERATIONS = ("resolvent_diagonal", "resolvent_diagonal_shifted", "logdet", "solve")

#: A kernel that may decline a call at run time, and the kernel that then runs instead: the
#: fused Triton kernels decline the rows where a pivot would need the guard (their registers
#: hold no guarded second pass), and the chunked torch ops run those rows; they also run the
#: whole call where the Triton kernels fail to compile or launch.
FALLBACK = {"fused": "chunked"}


def select_kernel(operation: str, method: str, *, device_type: str, needs_grad: bool = False,
                  complex_shift: bool = False, n: int = 0, numba_available: bool = True,
                  triton_available: bool = False) -> str:
    """The kernel that runs ``operation`` for ``method`` on these inputs.

    Parameters
    ----------
    operation : one of :data:`OPERATIONS`
    method : "auto" | "sequential" | "chunked" | "fused" | "reference"
        The caller's ``method=`` argument (already checked to be one of these).
    device_type : str
        ``tensor.device.type`` of the inputs: "cpu", "cuda", "meta", ...
    needs_grad : bool
        Autograd records the call (grad mode on and some input requires grad).
    complex_shift : bool
        The shift ``z`` of the shift form is complex (only read for
        ``"resolvent_diagonal_shifted"``).
    n : int
        The matrix size N.
    numba_available : bool
        The NumPy backend's compiled kernels import.
    triton_available : bool
        triton imports (the fused kernels also need ``device_type == "cuda"``).

    Decision table (the first matching row wins):

    ===============  ==============================================================  ==============
    ``method``       condition                                                       kernel
    ===============  ==============================================================  ==============
    ``"reference"``  any                                                             ``reference``
    ``"chunked"``    any                                                             ``chunked``
    ``"sequential"`` ``device_type == "cpu"`` and ``numba_available``                ``sequential``
    ``"sequential"`` otherwise                                                       ValueError
    ``"fused"``      ``operation == "resolvent_diagonal_shifted"``,                  ``fused`` [a]
                     ``device_type == "cuda"``, ``triton_available``,
                     ``complex_shift``, ``n >= 2``, not ``needs_grad``
    ``"fused"``      otherwise                                                       ValueError
    ``"auto"``       ``device_type == "cpu"`` and ``numba_available``                ``sequential``
    ``"auto"``       the ``"fused"`` condition above holds                           ``fused`` [a]
    ``"auto"``       otherwise (CUDA and other devices; CPU without numba)           ``chunked``
    ===============  ==============================================================  ==============

    [a] The fused kernels may decline rows at run time (a pivot needs the guard), or fail to
    compile or launch; then ``FALLBACK["fused"]``, the chunked kernel, runs those rows (or
    the call) and is what the backend reports.

    The kernels:

    * ``sequential``: the NumPy backend's compiled (numba) sweeps on zero-copy views of CPU
      tensors; under autograd an ``autograd.Function`` whose forward keeps the pivots and whose
      backward runs the O(N) reverse-mode scans.
    * ``chunked``: the chunked parallel scan in plain torch ops (any device; under autograd
      the same forward inside an ``autograd.Function`` with the chunked affine-scan backward).
    * ``fused``: the Triton kernels of :mod:`semisep.backends.triton` (the chunked
      scan with the chunks held in registers); no backward.
    * ``reference``: a plain sequential loop of torch ops (tests; ordinary autograd).

    Within a kernel, the layout (shift form or formed ``alpha``, real or complex off-diagonal
    products, with or without an ``autograd.Function``) follows from the inputs and computes
    the same values; it is not a choice of kernel.
    """
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {OPERATIONS}, got {operation!r}")
    if method in ("reference", "chunked"):
        return method
    cpu_compiled = device_type == "cpu" and numba_available
    if method == "sequential":
        if device_type != "cpu":
            raise ValueError(
                f"method='sequential' runs the compiled CPU kernels and needs CPU tensors; "
                f"got a tensor on {device_type}; use method='chunked' (or 'auto')"
            )
        if not numba_available:
            raise ValueError("method='sequential' needs semisep.backends.numpy (numba kernels), "
                             "which could not be imported; use method='chunked'")
        return "sequential"
    fused_why = _fused_unavailable(operation, device_type=device_type, needs_grad=needs_grad,
                                   complex_shift=complex_shift, n=n, triton_available=triton_available)
    if method == "fused":
        if fused_why is not None:
            raise ValueError(f"method='fused' (the Triton kernels) {fused_why}; "
                             f"use method='chunked' (or 'auto')")
        return "fused"
    if method == "auto":
        if cpu_compiled:
            return "sequential"
        return "fused" if fused_why is None else "chunked"
    raise ValueError(f"method must be one of {('auto',) + KERNELS}, got {method!r}")


def _fused_unavailable(operation: str, *, device_type: str, needs_grad: bool, complex_shift: bool,
                       n: int, triton_available: bool) -> str | None:
    """Why the fused kernels cannot run this call (a phrase for the error), or None."""
    if operation != "resolvent_diagonal_shifted":
        return ("computes the resolvent diagonal only, in the shift form "
                "(Tridiagonal.resolvent_diagonal without indices)")
    if device_type != "cuda":
        return f"needs CUDA tensors; got a tensor on {device_type}"
    if not triton_available:
        return "needs triton, which could not be imported"
    if not complex_shift:
        return "needs a complex shift z"
    if n < 2:
        return f"needs N >= 2, got N = {n}"
    if needs_grad:
        return "has no backward; the call needs a gradient"
    return None


def chunk_length_for(kernel: str, chunk_length: int | None = None) -> int | None:
    """The chunk length ``L`` that ``kernel`` runs with, given the call's ``chunk_length``
    keyword (:class:`~semisep.backends.torch.TorchBackend`'s kernel methods take it per call;
    there is no process-wide setting).

    ==============  ======================  ==================================================
    ``kernel``      ``chunk_length``        ``L``
    ==============  ======================  ==================================================
    any             not a positive integer  ValueError
    ``chunked``     None                    None: the kernel's N-dependent defaults, one for
                                            the pivot sweeps (``chunks._pivot_chunk_length``)
                                            and one for the affine scans
                                            (``chunks._scan_chunk_length``)
    ``chunked``     ``L >= 1``              ``L`` for every chunked sweep and scan of the call
    ``fused``       None                    None: :func:`semisep.backends.triton.default_chunk_length`
    ``fused``       ``L >= 1``              ``L``; the declined rows run ``chunked`` with the same ``L``
    ``sequential``  any valid               None (the kernel has no chunks)
    ``reference``   any valid               None
    ==============  ======================  ==================================================
    """
    if chunk_length is not None:
        if isinstance(chunk_length, bool) or not isinstance(chunk_length, Integral) or chunk_length < 1:
            raise ValueError(f"chunk_length must be a positive integer or None, got {chunk_length!r}")
        chunk_length = int(chunk_length)
    if kernel not in ("chunked", "fused"):
        return None
    return chunk_length


def pivot_chunk_length(kernel: str, chunk_length: int | None, n: int) -> int | None:
    """The chunk length of the pivot sweeps that ``kernel`` runs for N = ``n``, given the
    ``L`` of :func:`chunk_length_for` (what ``PivotInfo.chunk_length`` reports):

    ==============  ================  =====================================================
    ``kernel``      ``L``             pivot sweeps' chunk length
    ==============  ================  =====================================================
    ``chunked``     None              ``chunks._pivot_chunk_length(n)``
    ``fused``       None              :func:`semisep.backends.triton.default_chunk_length`
    either          ``L >= 1``        ``min(L, n)`` (at least 1)
    other kernels   any               None (no chunks)
    ==============  ================  =====================================================

    (The chunked kernel's affine scans -- the backward, the solve's substitutions -- take
    ``L`` too, or their own default ``chunks._scan_chunk_length(n)`` where ``L`` is None.)"""
    if kernel not in ("chunked", "fused"):
        return None
    if chunk_length is not None:
        return max(1, min(int(chunk_length), int(n)))
    if kernel == "chunked":
        from .chunks import _pivot_chunk_length

        return _pivot_chunk_length(int(n))
    from ..triton.launch import default_chunk_length

    return default_chunk_length(int(n))


#: The kernels of the quasiseparable operations (each also a ``method=`` value):
#: :func:`select_quasiseparable_kernel`.
QUASISEPARABLE_KERNELS = ("sequential", "chunked", "loop")


def select_quasiseparable_kernel(operation: str, method: str, *, device_type: str,
                                 needs_grad: bool = False) -> str:
    """The kernel that runs a quasiseparable ``operation`` (``"factor"``, ``"solve"``,
    ``"inverse_diagonal"``, ``"matvec"``) for ``method``:

    ================  ===============================================  ==============
    ``method``        condition                                        kernel
    ================  ===============================================  ==============
    ``"chunked"``     any                                              ``chunked``
    ``"loop"``        any                                              ``loop``
    ``"sequential"``  ``device_type == "cpu"``                         ``sequential``
    ``"sequential"``  otherwise                                        ValueError
    ``"auto"``        CPU, ``inverse_diagonal`` with ``needs_grad``    ``chunked``
    ``"auto"``        CPU otherwise                                    ``sequential``
    ``"auto"``        any other device                                 ``chunked``
    ================  ===============================================  ==============

    ``sequential``: the numba kernels (CPU custom ops, exact backward); ``chunked``: the scan
    form of :mod:`semisep.backends.torch.quasiseparable_scan` (torch ops, differentiable by
    autograd: the inverse diagonal has no compiled backward, and the scan's graph replaces a
    Python loop over N); ``loop``: the portable Python loop over N."""
    if method in ("chunked", "loop"):
        return method
    if method == "sequential":
        if device_type != "cpu":
            raise ValueError(f"method='sequential' runs the compiled CPU kernels; got a tensor on "
                             f"{device_type}; use 'chunked' or 'auto'")
        return "sequential"
    if method != "auto":
        raise ValueError(f"method must be one of {('auto',) + QUASISEPARABLE_KERNELS}, got {method!r}")
    if device_type != "cpu":
        return "chunked"
    if operation == "inverse_diagonal" and needs_grad:
        return "chunked"
    return "sequential"
