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

Outside a scope (NumPy, CPU tensors, whose values the host reads without a sync) nothing is
deferred and :func:`read_flags` reads the kernel's flags alone.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

__all__ = ["HostReads", "StopCall", "note", "read_flags"]

_local = threading.local()


class StopCall(Exception):  # noqa: N818 - a control-flow signal, not an error
    """A deferred flag marked ``stop`` read False: the results computed so far are void."""


class HostReads:
    """The host reads of one public call (a context manager; scopes nest, per thread).

    ``defer(name, flag, stop=False)``: ``flag`` (0-d bool tensor) is read at the next read of
    the scope; ``value(name)`` gives it.  ``any(*items)``: for each item, a tensor ``t`` (is
    any element nonzero?) or a pair ``(t, "imag")`` (is any imaginary part nonzero?) or None
    (False), as a list of bools -- from the kernels' notes where they made one, else read in one
    host sync together with whatever is still deferred."""

    #: raised at a read where a flag deferred with ``stop=True`` is False
    Stop = StopCall

    def __init__(self) -> None:
        self._pending: list[tuple[str, torch.Tensor]] = []
        self._stop: set[str] = set()
        self._values: dict[str, bool] = {}
        self._known: dict[tuple[int, str], tuple[torch.Tensor, bool]] = {}
        self._outer: HostReads | None = None

    def __enter__(self) -> HostReads:
        self._outer = getattr(_local, "reads", None)
        _local.reads = self
        return self

    def __exit__(self, *exc: Any) -> None:
        _local.reads = self._outer

    def defer(self, name: str, flag: torch.Tensor, stop: bool = False) -> None:
        self._pending.append((name, flag.reshape(())))
        if stop:
            self._stop.add(name)

    def defer_finite(self, name: str, x: torch.Tensor) -> None:
        """Defer "every entry of ``x`` is finite" as ``name``, with ``stop``."""
        self.defer(name, torch.isfinite(x).all(), stop=True)

    def note(self, t: torch.Tensor, tag: str, value: bool) -> None:
        self._known[(id(t), tag)] = (t, bool(value))  # t kept alive: its id stays its own

    def value(self, name: str) -> bool:
        if name not in self._values:
            self.any()
        return self._values[name]

    def any(self, *items: Any) -> list[bool]:
        out: list[bool | None] = []
        todo: list[torch.Tensor] = []
        for item in items:
            t, tag = item if isinstance(item, tuple) else (item, "any")
            if t is None or (tag == "imag" and not t.is_complex()):
                out.append(False)
                continue
            known = self._known.get((id(t), tag))
            if known is not None and known[0] is t:
                out.append(known[1])
                continue
            out.append(None)
            todo.append((t.imag != 0).any() if tag == "imag" else t.any())
        vals = iter(read_flags(*todo))
        res = []
        for item, v in zip(items, out, strict=True):
            if v is None:
                v = next(vals)
                t, tag = item if isinstance(item, tuple) else (item, "any")
                self.note(t, tag, v)  # asked again: no second read
            res.append(v)
        return res

    def _take(self) -> list[tuple[str, torch.Tensor]]:
        pending, self._pending = self._pending, []
        return pending

    def _store(self, names: list[str], values: list[bool]) -> None:
        self._values.update(zip(names, values, strict=True))
        if any(not self._values[n] for n in names if n in self._stop):
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


def read_flags(*flags: torch.Tensor) -> list[bool]:
    """The 0-d bool tensors ``flags`` as Python bools, read in **one** host sync (on CUDA each
    ``bool(t)`` would be a sync of its own), together with the flags the active
    :class:`HostReads` scope deferred (:class:`StopCall` where one marked ``stop`` is False):
    the chunked kernels defer every decision that depends on values to one such read per call."""
    reads = current()
    extra = reads._take() if reads is not None else []
    if not flags and not extra:
        return []
    ts = [f.reshape(()) for f in flags] + [t for _, t in extra]
    vals = [bool(v) for v in torch.stack(ts).tolist()]
    if extra:
        reads._store([n for n, _ in extra], vals[len(flags):])  # type: ignore[union-attr]
    return vals[:len(flags)]
