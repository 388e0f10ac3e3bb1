"""FLOP counts of the layers in :mod:`semisep.nn` as pure functions (integers in, dicts out).

The resolvent diagonal is counted by :func:`semisep.cost.resolvent_diagonal_flops` (the fused
pivot sweeps, ``33 N - 23`` real flops per row for a complex shift); everything else by the rules
below (one flop = one real floating-point operation, as in :mod:`semisep.cost`):

=====================================  =====================================================
operation                              flops
=====================================  =====================================================
matmul ``(m, k) @ (k, n)``              ``2 m k n`` (a multiply-add counted as 2; the rule of
                                       ``torch.utils.flop_counter``, which the tests use)
bias add / residual add / scale         1 per element
Conv1d ``C_in -> C_out``, kernel ``k``  ``2 L C_out (C_in / groups) k`` (+ bias ``L C_out``)
LayerNorm over ``d``                    ``7 d + 2`` per row: mean (d), centre (d), square (d),
                                       sum (d), rsqrt of var + eps (2), normalise (d),
                                       scale and shift (2 d)
GELU                                   8 per element (a stated convention: erf is not one flop)
softmax over a pair                    8: max, 2 subtractions, 2 exp, sum, 2 divisions
forming ``alpha = v - 2 - z``           2 per position (real add, then real - complex)
=====================================  =====================================================

Each function returns a dict of named parts plus ``"total"``; ``"matmul"`` and ``"conv"`` hold
exactly what ``torch.utils.flop_counter.FlopCounterMode`` counts for the module (checked in
``tests/test_multiscale.py``).  Counts are for the whole batch of ``B`` sequences.
"""

from __future__ import annotations

from ..cost import resolvent_diagonal_flops

__all__ = ["linear_flops", "layernorm_flops", "bk_core_flops", "bk_layer_flops",
           "multiscale_bk_layer_flops", "GELU_FLOPS"]

GELU_FLOPS = 8


def linear_flops(rows: int, d_in: int, d_out: int, bias: bool = True) -> dict:
    """``y = x W^T + b`` for ``rows`` vectors: matmul ``2 rows d_in d_out``, bias ``rows d_out``."""
    return {"matmul": 2 * rows * d_in * d_out, "elementwise": rows * d_out if bias else 0}


def layernorm_flops(rows: int, d: int) -> int:
    return rows * (7 * d + 2)


def _add(acc: dict, part: dict) -> dict:
    for k, v in part.items():
        acc[k] = acc.get(k, 0) + v
    return acc


def _total(parts: dict) -> dict:
    parts = {k: int(v) for k, v in parts.items() if k != "total"}
    parts["total"] = sum(parts.values())
    return parts


def bk_core_flops(batch: int, n: int, d: int, hidden: int) -> dict:
    """The BK core shared by :class:`~semisep.nn.multiscale.BKLayer` and the low-resolution branch
    of :class:`~semisep.nn.multiscale.MultiScaleBKLayer`, on ``h (B, n, d)``::

        v = h w_v + b_v                        linear(n, d, 1)
        G = diag((H0 + diag(v) - z I)^{-1})    2 n (alpha) + resolvent_diagonal_flops(n) per row
        u = h + [Re G, Im G] W_f + b_f          linear(n, 2, d) + n d
        y = W_2 gelu(W_1 u + b_1) + b_2         linear(n, d, hidden) + gelu + linear(n, hidden, d)
    """
    rows = batch * n
    p: dict = {}
    _add(p, linear_flops(rows, d, 1))
    p["resolvent"] = batch * (2 * n + resolvent_diagonal_flops(n, complex=True))
    _add(p, linear_flops(rows, 2, d))
    p["elementwise"] += rows * d
    _add(p, linear_flops(rows, d, hidden))
    p["gelu"] = rows * hidden * GELU_FLOPS
    _add(p, linear_flops(rows, hidden, d))
    return _total(p)


def bk_layer_flops(batch: int, n: int, d: int, hidden: int) -> dict:
    """Full-resolution :class:`~semisep.nn.multiscale.BKLayer`: ``out = x + core(LayerNorm(x))``."""
    p = {"layernorm": layernorm_flops(batch * n, d)}
    _add(p, bk_core_flops(batch, n, d, hidden))
    p.pop("total")
    p["elementwise"] += batch * n * d  # residual
    return _total(p)


def multiscale_bk_layer_flops(batch: int, n: int, d: int, hidden: int, refine_kernel: int = 3) -> dict:
    """:class:`~semisep.nn.multiscale.MultiScaleBKLayer` at length ``n`` (``m = ceil(n/2)``)::

        h = LayerNorm(x)                                  layernorm(n, d)
        s = h w_s + b_s; w = softmax over each pair       linear(2m, d, 1) + 8 m
        h_low_j = w_0 h_{2j} + w_1 h_{2j+1}               3 m d
        y_low = core(h_low)                               bk_core_flops(m)
        up_{2j+p} = a_p * y_low_j + c_p                   2 (2m) d   (cropped to n after)
        r = DepthwiseConv1d_k(h + up)                     n d + conv(n, d, d, k, groups=d) + n d
        out = x + g_low * up + g_ref * r                  4 n d
    """
    m = -(-n // 2)
    rows = batch * n
    p = {"layernorm": layernorm_flops(rows, d)}
    _add(p, linear_flops(batch * 2 * m, d, 1))
    p["softmax"] = batch * m * 8
    p["elementwise"] += batch * m * d * 3
    core = bk_core_flops(batch, m, d, hidden)
    core.pop("total")
    _add(p, core)
    p["elementwise"] += batch * 2 * m * d * 2
    p["elementwise"] += rows * d  # h + up
    p["conv"] = 2 * rows * d * refine_kernel
    p["elementwise"] += rows * d  # conv bias
    p["elementwise"] += 4 * rows * d
    return _total(p)
