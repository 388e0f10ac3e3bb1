"""Host reads of tensor values, deferred so that one public call reads the device once.

On a GPU every read of a value on the host (``bool(t)``, ``t.item()``, ``t.tolist()``) waits
for the queued kernels: a host sync.  A public call needs a few such decisions -- the kernel's
own (does a pivot need the guard? is the singular certificate met?) and the operator's (are the
entries inside the kernels' safe range? is a result singular? is a log-determinant real?).
They are all 0-d bool tensors computed on the device, and they are read together:

* :func:`read_flags` reads the kernel's flags in one ``tolist`` -- and, inside a
  :class:`HostReads` scope, the flags the operator deferred (:meth:`HostReads.defer`) in the
  same read;
* what a kernel learns from that read about its outputs (``singular`` all False, ``guarded``
  all zero, a real log-determinant) it records with :func:`note`, so that the operator's later
  questions (:meth:`HostReads.any`) cost no read;
* a deferred flag marked ``stop`` that reads False raises :class:`StopCall` at that read: the
  call's results are void (e.g. entries outside the safe range: the operator scales the
  problem and runs it again) and the operator decides on the host.

A call made of several such calls (``TridiagonalPlusLowRank``: two or three tridiagonal calls
and the capacitance checks) opens a **spanning** scope (:meth:`HostReads.spanning`): the
scopes its sub-calls open join it, and none of them reads.  Each question a sub-call asks is
answered with the value of the common path (no pivot needed the guard, nothing singular, the
argument checks pass: ``read_flags(..., expect=...)`` and :meth:`HostReads.any`), the actual
flag being deferred with that value as its expectation; the call's one read
(:meth:`HostReads.settle`) reads them all and raises :class:`StopCall` where one differs.
Every value then computed is the value of the sub-calls read one by one (the same operations,
the same branches); where the read raises, the call runs again with its sub-calls reading as
they go, and decides (raises, scales, guards) as they do.

Outside a scope (NumPy, CPU tensors, whose values the host reads without a sync) nothing is
deferred and :func:`read_flags` reads the kernel's flags alone.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch

__all__ = ["HostReads", "StopCall", "note", "read_flags"]

_local = threading.local()

#: the NumPy dtype of a real torch dtype (payloads of :meth:`HostReads.settle_with`)
_NUMPY = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


class StopCall(Exception):  # noqa: N818 - a control-flow signal, not an error
    """A deferred flag marked ``stop`` read False: the results computed so far are void."""


class _Joined(Exception):  # noqa: N818 - never raised
    """The ``Stop`` of a scope that joined a spanning one: its StopCall goes to the spanning
    call, which runs again as a whole (a sub-call must not redo its own part alone)."""


class HostReads:
    """The host reads of one public call (a context manager; scopes nest, per thread).

    ``defer(name, flag, stop=False)``: ``flag`` (0-d bool tensor) is read at the next read of
    the scope; ``value(name)`` gives it.  ``any(*items)``: for each item, a tensor ``t`` (is
    any element nonzero?) or a pair ``(t, "imag")`` (is any imaginary part nonzero?) or None
    (False), as a list of bools -- from the kernels' notes where they made one, else read in one
    host sync together with whatever is still deferred (in a spanning scope: not read, see
    :meth:`spanning`).  A scope created while a spanning one is active joins it: its state is
    the spanning scope's."""

    #: raised at a read where a flag deferred with ``stop=True`` is False
    Stop: type[Exception] = StopCall
    #: the scope that holds the state: this one, or the spanning scope it joined
    _root: HostReads
    _span: bool

    def __init__(self, *, span: bool = False, assume: dict[str, bool] | None = None) -> None:
        outer = current()
        root = outer._root if outer is not None and outer._root._span else None
        self._outer: HostReads | None = None
        if root is not None:  # joins the spanning call's scope
            self._root = root
            self.Stop = _Joined
            return
        self._root = self
        self._span = span
        self._assume = dict(assume or {})
        # (name, flag, expected value or None): a read raises StopCall where a flag is not
        # the value expected
        self._pending: list[tuple[str, torch.Tensor, bool | None]] = []
        self._values: dict[str, bool] = {}
        self._known: dict[tuple[int, str], tuple[torch.Tensor, bool]] = {}

    def spanning(self, assume: dict[str, bool] | None = None) -> HostReads:
        """A new scope for a call made of sub-calls, read once (module docstring): inside it,
        questions are answered with the common path's values (``any``: nothing nonzero) and
        checked at :meth:`settle`.  ``assume``: tags answered without a check, where the
        spanning call's results are the same either way (``{"imag": True}``: a real problem's
        result kept complex, imaginary parts zero or not)."""
        return HostReads(span=True, assume=assume)

    @property
    def speculating(self) -> bool:
        """Whether questions are answered without a read (a spanning scope, or one joined to it)."""
        return self._root._span

    def __enter__(self) -> HostReads:
        self._outer = getattr(_local, "reads", None)
        _local.reads = self
        return self

    def __exit__(self, *exc: Any) -> None:
        _local.reads = self._outer

    def defer(self, name: str, flag: torch.Tensor, stop: bool = False, expect: bool | None = None) -> None:
        """``stop``: as ``expect=True``; ``expect``: a read raises StopCall where ``flag`` is not it."""
        self._root._pending.append((name, flag.reshape(()), True if stop else expect))

    def defer_finite(self, name: str, x: torch.Tensor) -> None:
        """Defer "every entry of ``x`` is finite" as ``name``, with ``stop``."""
        self.defer(name, torch.isfinite(x).all(), stop=True)

    def note(self, t: torch.Tensor, tag: str, value: bool) -> None:
        self._root._known[(id(t), tag)] = (t, bool(value))  # t kept alive: its id stays its own

    def value(self, name: str) -> bool:
        if name not in self._root._values:
            self.settle()
        return self._root._values[name]

    def any(self, *items: Any) -> list[bool]:
        return self._answer(items, read=not self.speculating)

    def settle(self, *items: Any) -> list[bool]:
        """:meth:`any` read now, in a spanning scope too: the items and every flag still
        deferred in one host sync (StopCall where one is not the value expected)."""
        return self._answer(items, read=True)

    def settle_with(self, payload: torch.Tensor, *flags: torch.Tensor) -> tuple[Any, list[bool]]:
        """:meth:`settle` of the 0-d bool ``flags`` (None reads False) that also brings
        ``payload``'s values to the host, in the same host sync: ``(payload as a NumPy array of
        its dtype, flag values)``; StopCall as :meth:`settle`.
        For a small tensor the host computes on (an r x r matrix whose singular values would
        cost a sync each on the device)."""
        todo = [f.reshape(()) for f in flags if f is not None]
        extra = self._take()
        ts = todo + [t for _, t, _ in extra]
        real = payload.detach().resolve_conj()
        real = torch.view_as_real(real) if real.is_complex() else real
        parts = [real.reshape(-1).to(torch.float64)]
        if ts:
            parts.insert(0, torch.stack(ts).to(torch.float64))
        host = torch.cat(parts).cpu().numpy()  # the one host sync
        vals = [bool(v) for v in host[:len(ts)]]
        out = np.ascontiguousarray(host[len(ts):].astype(_NUMPY[real.dtype]).reshape(real.shape))
        if payload.is_complex():  # (..., 2) reals -> complex, exactly
            out = out.view(np.result_type(out.dtype, np.complex64))[..., 0]
        if extra:
            self._store(extra, vals[len(todo):])
        read = iter(vals[:len(todo)])
        return out, [False if f is None else next(read) for f in flags]

    def _answer(self, items: tuple, read: bool) -> list[bool]:
        root = self._root
        out: list[bool | None] = []
        todo: list[torch.Tensor] = []
        for item in items:
            t, tag = item if isinstance(item, tuple) else (item, "any")
            if t is None or (tag == "imag" and not t.is_complex()):
                out.append(False)
                continue
            known = root._known.get((id(t), tag))
            if known is not None and known[0] is t:
                out.append(known[1])
                continue
            value = None if read else root._assume.get(tag, False)
            if value is None or tag not in root._assume:  # to read, or to check at the read
                flag = (t.imag != 0).any() if tag == "imag" else t.any()
            if value is not None:  # the common path's answer, checked at the spanning call's read
                if tag not in root._assume:
                    self.defer(tag, flag, expect=False)
                self.note(t, tag, value)
                out.append(value)
                continue
            out.append(None)
            todo.append(flag)
        if not read:
            return out  # type: ignore[return-value]
        vals = iter(_read(self, todo))
        res = []
        for item, v in zip(items, out, strict=True):
            if v is None:
                v = next(vals)
                t, tag = item if isinstance(item, tuple) else (item, "any")
                self.note(t, tag, v)  # asked again: no second read
            res.append(v)
        return res

    def _take(self) -> list[tuple[str, torch.Tensor, bool | None]]:
        root = self._root
        pending, root._pending = root._pending, []
        return pending

    def _store(self, pending: list[tuple[str, torch.Tensor, bool | None]], values: list[bool]) -> None:
        self._root._values.update((n, v) for (n, _, _), v in zip(pending, values, strict=True))
        if any(e is not None and v != e for (_, _, e), v in zip(pending, values, strict=True)):
            raise StopCall


def current() -> HostReads | None:
    """The innermost active :class:`HostReads` of this thread, or None."""
    return getattr(_local, "reads", None)


def note(t: torch.Tensor, tag: str, value: bool) -> None:
    """Record in the active scope (if any) what a read showed about ``t``: ``tag`` "any" (some
    element nonzero) or "imag" (some imaginary part nonzero) is ``value``."""
    reads = current()
    if reads is not None:
        reads.note(t, tag, value)


def read_flags(*flags: torch.Tensor, expect: tuple | None = None) -> list[Any]:
    """The 0-d bool tensors ``flags`` as Python bools, read in **one** host sync (on CUDA each
    ``bool(t)`` would be a sync of its own), together with the flags the active
    :class:`HostReads` scope deferred (:class:`StopCall` where one marked ``stop`` is False):
    the chunked kernels defer every decision that depends on values to one such read per call.

    ``expect``: per flag, the value the caller's common path takes (or None: a value it only
    records).  In a spanning scope (:meth:`HostReads.spanning`) nothing is read: each flag is
    deferred with its expected value, which is returned (None where None)."""
    reads = current()
    if expect is not None and reads is not None and reads.speculating:
        for f, e in zip(flags, expect, strict=True):
            if e is not None:
                reads.defer("flag", f, expect=e)
        return list(expect)
    return _read(reads, flags)


def _read(reads: HostReads | None, flags: Any) -> list[bool]:
    """:func:`read_flags`' one host sync: ``flags`` and what ``reads`` (its spanning scope) deferred."""
    extra = reads._take() if reads is not None else []
    if not flags and not extra:
        return []
    ts = [f.reshape(()) for f in flags] + [t for _, t, _ in extra]
    vals = [bool(v) for v in torch.stack(ts).tolist()]
    if extra:
        reads._store(extra, vals[len(flags):])  # type: ignore[union-attr]
    return vals[:len(flags)]
