"""FLOP counts of the layers in :mod:`semisep.nn` as pure functions (integers in, dicts out).

The resolvent diagonal of the BK core is counted by :func:`laplacian_resolvent_flops` (the
fused two-sided algorithm the kernels run, with the core's real off-diagonals and complex shift:
``29 N - 16`` real flops per row); everything else by the rules below (one flop = one real
floating-point operation, ``semisep.cost.FLOP_RULES`` per scalar operation):

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
=====================================  =====================================================

Each function returns a dict of named parts plus ``"total"``; ``"matmul"`` and ``"conv"`` hold
exactly what ``torch.utils.flop_counter.FlopCounterMode`` counts for the module; the totals are
checked in ``tests/test_multiscale.py`` against an independent tally of a real forward (aten ops
with a per-op cost table, the resolvent by the backend's NumPy twin on counting scalars).
Counts are for the whole batch of ``B`` sequences.
"""

from __future__ import annotations

from ..cost import FLOP_RULES

__all__ = ["linear_flops", "layernorm_flops", "laplacian_resolvent_flops", "bk_core_flops",
           "bk_layer_flops",
           "selected_resolvent_flops", "chunked_masked_resolvent_flops",
           "multiscale_bk_layer_flops", "GELU_FLOPS"]

GELU_FLOPS = 8


def linear_flops(rows: int, d_in: int, d_out: int, bias: bool = True) -> dict:
    """``y = x W^T + b`` for ``rows`` vectors: matmul ``2 rows d_in d_out``, bias ``rows d_out``."""
    return {"matmul": 2 * rows * d_in * d_out, "elementwise": rows * d_out if bias else 0}


def layernorm_flops(rows: int, d: int) -> int:
    return rows * (7 * d + 2)


def laplacian_resolvent_flops(n: int) -> int:
    """One row of ``G = diag((H0 + diag(v) - z I)^{-1})``, ``v`` (n,) real, ``H0``'s off-diagonals
    real (``beta_i = 1 * 1``, formed once per call, not per row), ``z`` complex, in the fused
    two-sided form of the compiled kernel (:func:`semisep.cost.resolvent_diagonal_flops`)::

        alpha_i = (v_i - 2) - z                   real - real (1), real - complex (1): 2 n
        tL_i = alpha_i - beta_{i-1} gL_{i-1};  gL_i = 1/tL_i
        tR_i = alpha_i - beta_i gR_{i+1};      gR_i = 1/tR_i
                                                  each sweep: 5 + (2 + 2 + 5)(n - 1)
        G_ii = 1/(tL_i - beta_i gR_{i+1})  or  1/(tR_i - beta_{i-1} gL_{i-1})
                                                  (2 + 2)(n - 2) + 5 n

    (a real ``beta`` times a complex pivot is two real products).  Total ``29 n - 16`` for
    ``n >= 2``.  The pivot guards (comparisons) and the per-row guard threshold are not
    counted."""
    if n <= 0:
        return 0
    a_rr, a_rc = FLOP_RULES[("add", "R", "R")], FLOP_RULES[("add", "R", "C")]
    a_cc = FLOP_RULES[("add", "C", "C")]
    m_rc, r_c = FLOP_RULES[("mul", "R", "C")], FLOP_RULES[("recip", "C")]
    alpha = n * (a_rr + a_rc)
    if n == 1:
        return alpha + r_c
    sweeps = 2 * (r_c + (n - 1) * (m_rc + a_cc + r_c))
    combine = (n - 2) * (m_rc + a_cc) + n * r_c
    return alpha + sweeps + combine


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
        G = diag((H0 + diag(v) - z I)^{-1})    laplacian_resolvent_flops(n) per row
        u = h + [Re G, Im G] W_f + b_f          linear(n, 2, d) + n d
        y = W_2 gelu(W_1 u + b_1) + b_2         linear(n, d, hidden) + gelu + linear(n, hidden, d)
    """
    rows = batch * n
    p: dict = {}
    _add(p, linear_flops(rows, d, 1))
    p["resolvent"] = batch * laplacian_resolvent_flops(n)
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


# ================================================================================================
# selected / masked resolvent diagonals (the work the kernels in semisep.backends.numpy and
# semisep.nn.functional actually do)
# ================================================================================================
_CADD, _CMUL, _CREC, _CDIV = 2, 6, 5, 11


def selected_resolvent_flops(n: int, indices) -> int:
    """One row of ``semisep.backends.numpy.resolvent_diagonal_selected_kernel`` (complex):
    the left sweep over pivots ``0 .. hi-1`` (``hi = max(indices)``): ``5 + 13 (hi - 1)``; the
    right sweep from ``N-1`` down to ``lo + 1`` (``lo = min(indices)``): ``5 + 13 (N - 2 - lo)``;
    the combine ``gamma = alpha - beta gL - beta gR``, ``G = 1/gamma`` at each of the K indices:
    ``2 * 6 + 2 * 2 + 5 = 21`` (the end terms at ``i = 0`` and ``i = N-1`` are skipped).
    With every index this is the full kernel's work up to the fused right sweep's reuse of
    ``alpha_i - beta_i gR_{i+1}``; compare with :func:`semisep.cost.resolvent_diagonal_flops`."""
    idx = [int(i) for i in indices]
    if not idx:
        return 0
    lo, hi = min(idx), max(idx)
    step = _CMUL + _CADD + _CREC
    left = (_CREC + (hi - 1) * step) if hi >= 1 else 0
    right = (_CREC + (n - 2 - lo) * step) if lo < n - 1 else 0
    comb = 0
    for i in idx:
        comb += _CREC + (_CMUL + _CADD) * ((i > 0) + (i < n - 1))
    return left + right + comb


def chunked_masked_resolvent_flops(batch: int, n: int, chunk: int, active_chunks: int, kept: int) -> dict:
    """The chunked pivot scan of the torch backend, both sweeps, complex, as run by
    ``semisep.nn.functional.masked_resolvent_diagonal(method="chunked")``.

    ``nc = ceil(n / chunk)`` chunks per row and sweep (``2 batch nc`` in all):

    * pass (i), every chunk: ``chunk`` steps of ``new = alpha cur - betap prev`` on 2-vectors
      (4 complex mul + 2 complex add = 28);
    * scan (ii): ``ceil(log2 nc)`` levels, at most ``nc - 1`` 2x2 complex products per level and
      row (8 mul + 4 add = 56) -- an upper bound (level ``l`` forms ``nc - 2^l`` products,
      counted exactly here);
    * pass (iii), ``active_chunks`` (row, chunk) pairs only: ``chunk`` steps of
      ``d = alpha - betap g`` (6 + 2), ``g = 1/d`` (5) = 13;
    * combine at the ``kept`` entries: ``beta gL gR`` (2 mul), ``1 - .`` (1), ``gL / .`` (11) = 24.

    Renormalisation (power-of-two scalings) and the guard check are not counted.
    """
    nc = -(-n // chunk)
    rows = 2 * batch
    p1 = rows * nc * chunk * (4 * _CMUL + 2 * _CADD)
    scan = 0
    off = 1
    while off < nc:
        scan += rows * (nc - off) * (8 * _CMUL + 4 * _CADD)
        off *= 2
    p3 = active_chunks * chunk * (_CMUL + _CADD + _CREC)
    comb = kept * (2 * _CMUL + 1 + _CDIV)
    return {"pass1": p1, "scan": scan, "pass2": p3, "combine": comb, "total": p1 + scan + p3 + comb}
