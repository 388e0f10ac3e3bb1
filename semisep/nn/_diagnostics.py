"""The diagnostics of :class:`~semisep.nn.BirmanSchwingerCore`: computed on the device, read
on the host once, when first asked for; and the per-call statistics kept as device tensors.

A forward computes every diagnostic as a 0-d tensor (no host read) and returns them in a
:class:`Diagnostics` mapping, which reads them all in **one** host sync (a stacked float64
tensor's ``tolist``) at the first access of any entry (``d[key]``, ``get``, ``in``, ``len``,
iteration, ``keys``/``values``/``items``, ``==``, ``repr``, ``dict(d)``); later accesses read
nothing.  A forward whose diagnostics nobody reads adds no host sync, and under
``torch.compile(fullgraph=True)`` the tensors are outputs of the graph, read after the
compiled call.

The per-call statistics (:meth:`BirmanSchwingerCore.get_statistics`, ``get_memory_profile``)
are a ring buffer of one float64 row per call (:data:`HISTORY_COLUMNS`) and three int64
counters (calls, precision upgrades, last batch size), updated in place on the device by
every forward, eager or compiled; they are read (one host sync) when asked for.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .free_resolvent import laplacian_pivots, schatten_parts

__all__ = ["Diagnostics", "HISTORY_COLUMNS", "CallStatistics", "diagnostics"]


class Diagnostics(dict):
    """The forward diagnostics: a dict whose seed-era keys say what replaced them.  Built by a
    forward, its device-computed entries are read lazily, all in one host sync at the first
    access (module docstring); a :class:`ValueError` of the Hilbert-Schmidt norm's
    computation (a decoupled chain) is raised at that access."""

    RENAMED = {
        "condition_number": "use 'capacitance_condition' (cond of the Woodbury capacitance "
                            "matrix; None without a low-rank term) and 'resolvent_bound'",
        "memory_savings": "use 'operator_memory_savings' (this operator's arrays against a dense "
                          "N x N matrix); the training-step saving is "
                          "core.estimate_memory_usage(B)['memory_savings']",
        "mourre_ok": "removed: the seed's Mourre check returned a constant",
    }

    def __init__(self, *args: Any, pending: dict | None = None, static: dict | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: name -> 0-d tensor still on the device (None once read)
        self._pending = pending
        #: host values the entries are finished with (:func:`_finish`)
        self._static = static

    @property
    def pending(self) -> bool:
        """Whether the device values are still unread (reading any entry reads them)."""
        return self._pending is not None

    def _resolve(self) -> None:
        if self._pending is None:
            return
        names = list(self._pending)
        vals = torch.stack([self._pending[k].reshape(()).to(torch.float64)
                            for k in names]).tolist()
        self._pending = None
        super().update(_finish(self._static or {}, dict(zip(names, vals, strict=True))))

    def __missing__(self, key: Any) -> Any:
        if key in self.RENAMED:
            raise KeyError(f"diagnostics[{key!r}] is not provided: {self.RENAMED[key]}")
        raise KeyError(key)

    def __getitem__(self, key: Any) -> Any:
        self._resolve()
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._resolve()
        return super().get(key, default)

    def __contains__(self, key: Any) -> bool:
        self._resolve()
        return super().__contains__(key)

    def __iter__(self):
        self._resolve()
        return super().__iter__()

    def __len__(self) -> int:
        self._resolve()
        return super().__len__()

    def keys(self):
        self._resolve()
        return super().keys()

    def values(self):
        self._resolve()
        return super().values()

    def items(self):
        self._resolve()
        return super().items()

    def copy(self) -> dict:
        self._resolve()
        return dict(super().items())

    def __eq__(self, other: object) -> bool:
        self._resolve()
        return super().__eq__(other)

    __hash__ = None

    def __repr__(self) -> str:
        self._resolve()
        return super().__repr__()


#: the columns of a statistics row (one per call), in order
HISTORY_COLUMNS = ("all_finite", "pivots_guarded", "max_abs_G", "resolvent_bound",
                   "capacitance_condition", "schatten_s2", "precision_upgrades", "memory_bytes",
                   "operator_memory_savings", "batch_size")
_INTS = ("pivots_guarded", "precision_upgrades", "memory_bytes", "batch_size")
_OPTIONAL = ("resolvent_bound", "capacitance_condition")  # NaN in a row: None


def _finish(static: dict, vals: dict) -> dict:
    """The diagnostics entries from the values read (``vals``) and the host ones (``static``)."""
    if vals.get("hs_decoupled"):
        raise ValueError("hilbert_schmidt_norm_sq: a zero off-diagonal entry or pivot ratio; "
                         "the chain decouples -- sum the blocks separately")
    hermitian = (not static["use_semiseparable"]) or bool(vals.get("sym", 1.0))
    min_im = vals["min_im"]
    out = {
        "all_finite": bool(vals["finite"]),
        "pivots_guarded": int(vals["guarded"]),
        "max_abs_G": vals["max_abs"],
        "resolvent_bound": (1.0 / min_im) if (hermitian and min_im > 0) else None,
        "capacitance_condition": vals["cond"] if static["has_cond"] else None,
        "schatten_s2": vals["s2"],
    }
    out.update(static["fixed"])
    out["precision_upgrades"] = int(vals["ups"])
    return {k: out[k] for k in _ORDER}


_ORDER = ("all_finite", "pivots_guarded", "max_abs_G", "resolvent_bound", "capacitance_condition",
          "schatten_s2", "schatten_s2_per_sample", "precision_upgrades", "rank", "use_semiseparable",
          "memory_bytes", "operator_memory_savings")


def diagnostics(core: Any, v: torch.Tensor, z: Any, gstats: torch.Tensor, guarded: torch.Tensor,
                cond: torch.Tensor, upgraded: torch.Tensor, sym: torch.Tensor | None,
                rdt: torch.dtype) -> tuple[Diagnostics, torch.Tensor]:
    """The diagnostics of one call (no host read) and its statistics row (float64
    ``len(HISTORY_COLUMNS)``, on ``v``'s device).  ``gstats``: :func:`~._core_call.g_stats`
    of ``G``; ``sym``: the 0-d "``U V^T`` symmetric" flag (None without a low-rank term)."""
    with torch.no_grad():
        B, n = v.shape
        dev = v.device
        f64 = torch.float64
        # a Python z is filled in on the device (a host-to-device copy would wait on a GPU)
        zd = z.detach().to(torch.complex128) if isinstance(z, torch.Tensor) else torch.full(
            (), complex(z), dtype=torch.complex128, device=dev)
        G0, _, gR = laplacian_pivots(n, zd, device=dev)
        hs2, decoupled = schatten_parts(v.detach().abs(), G0, gR, torch.ones(n - 1, dtype=f64,
                                                                            device=dev))
        s2 = torch.sqrt(hs2)
        zero = torch.zeros((), dtype=f64, device=dev)
        has_cond = cond.numel() > 0
        parts = {
            "finite": gstats[0],
            "max_abs": gstats[1],
            "min_im": zd.imag.abs().min().to(dev),
            "ups": upgraded.sum(),
            "guarded": guarded.sum(),
            "cond": cond.max() if has_cond else zero,
            "s2": s2.max() if s2.numel() else zero,
            "hs_decoupled": decoupled,
        }
        if sym is not None:
            parts["sym"] = sym
        parts = {k: t.reshape(()).to(device=dev, dtype=f64) for k, t in parts.items()}
        item = torch.empty((), dtype=rdt).element_size()
        op_bytes = B * n * item + (n - 1) * item + 2 * n * core.rank * item
        dense = B * n * n * item
        fixed = {"schatten_s2_per_sample": s2, "rank": core.rank,
                 "use_semiseparable": core.use_semiseparable, "memory_bytes": int(op_bytes),
                 "operator_memory_savings": 1.0 - op_bytes / dense if dense else 0.0}
        diag = Diagnostics(pending=parts, static={
            "use_semiseparable": core.use_semiseparable, "has_cond": has_cond, "fixed": fixed})
        # the statistics row: the same values, None as NaN
        nan = torch.full((), math.nan, dtype=f64, device=dev)
        hermitian = parts["sym"] != 0 if sym is not None else torch.ones((), dtype=torch.bool,
                                                                           device=dev)
        min_im = parts["min_im"]
        bound = torch.where(hermitian & (min_im > 0), 1.0 / min_im, nan)
        row = torch.stack([
            parts["finite"], parts["guarded"], parts["max_abs"], bound,
            parts["cond"] if has_cond else nan, parts["s2"], parts["ups"],
            torch.full((), float(op_bytes), dtype=f64, device=dev),
            torch.full((), fixed["operator_memory_savings"], dtype=f64, device=dev),
            torch.full((), float(B), dtype=f64, device=dev)])
    return diag, row


class CallStatistics:
    """The per-call statistics of a core, on the device: ``rows`` (history_size,
    len(:data:`HISTORY_COLUMNS`)) float64, a ring buffer, and ``counters`` (3,) int64: calls,
    precision upgrades, last batch size.  :meth:`record` updates them in place (no host read;
    traceable by ``torch.compile``); :meth:`read` reads them in one host sync."""

    def __init__(self, history_size: int, device: Any = None) -> None:
        self.rows = torch.zeros(history_size, len(HISTORY_COLUMNS), dtype=torch.float64,
                                device=device)
        self.counters = torch.zeros(3, dtype=torch.int64, device=device)

    def record(self, row: torch.Tensor, upgrades: torch.Tensor, batch_size: int) -> None:
        if self.counters.device != row.device:  # the module moved: the statistics follow
            self.rows = self.rows.to(row.device)
            self.counters = self.counters.to(row.device)
        h = self.rows.shape[0]
        with torch.no_grad():
            if h:
                slot = torch.remainder(self.counters[:1], h)
                self.rows.index_copy_(0, slot, row.to(torch.float64)[None])
            one = torch.ones((), dtype=torch.int64, device=row.device)
            self.counters[:2].add_(torch.stack([one, upgrades.reshape(()).to(torch.int64)]))
            self.counters[2:].fill_(batch_size)

    def read(self) -> tuple[int, int, int | None, list[dict]]:
        """``(calls, precision upgrades, last batch size or None, history)``: the kept rows,
        oldest first, as dicts by :data:`HISTORY_COLUMNS` (ints as ints, NaN as None)."""
        h = self.rows.shape[0]
        flat = torch.cat([self.counters.to(torch.float64), self.rows.reshape(-1)]).tolist()
        calls, ups, last = (int(x) for x in flat[:3])
        width = len(HISTORY_COLUMNS)
        rows = [flat[3 + k * width: 3 + (k + 1) * width] for k in range(h)]
        kept = min(calls, h)
        order = [(calls - kept + k) % h for k in range(kept)]
        hist = []
        for k in order:
            rec = dict(zip(HISTORY_COLUMNS, rows[k], strict=True))
            for key in _INTS:
                rec[key] = int(rec[key])
            rec["all_finite"] = bool(rec["all_finite"])
            for key in _OPTIONAL:
                if rec[key] != rec[key]:
                    rec[key] = None
            hist.append(rec)
        return calls, ups, (last if calls else None), hist
