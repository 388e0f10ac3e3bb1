"""Multi-scale BK layers: the BK core at half resolution.

:class:`BKLayer` is the full-resolution reference layer; :class:`MultiScaleBKLayer` runs the same
core on a learned downsampling ``N -> ceil(N/2)``, upsamples it back with learned
position-specific weights and refines at full resolution with a depthwise convolution.  Both
return ``(output, stats)``; ``stats["flops"]`` and ``stats["flops_saved_ratio"]`` are *counted*
for the shapes of the call by the pure functions of :mod:`semisep.nn._flops` -- never constants
-- and ``benchmarks/bench_sparse.py`` measures the wall-clock ratio next to them.

The BK core on ``h (B, n, d)`` (``H0``: discrete Laplacian, diagonal -2, off-diagonals 1)::

    v = h w_v + b_v                              (B, n)      the potential
    G = diag((H0 + diag(v) - z I)^{-1})          (B, n)      exact, O(n), O(n) backward
    u = h + [Re G, Im G] W_f + b_f                (B, n, d)
    y = W_2 gelu(W_1 u + b_1) + b_2               (B, n, d)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._args import check_int, check_shift, reject_seed_kwargs
from ._flops import bk_layer_flops, multiscale_bk_layer_flops
from .sparse import laplacian_resolvent_diagonal

__all__ = ["BKCore", "BKLayer", "AdaptiveDownsampling", "AdaptiveUpsampling", "MultiScaleBKLayer"]


def _check_layer_args(d_model: Any, n_seq: Any, hidden: Any, z: Any):
    """Validated ``(d_model, n_seq, hidden, z)`` of a BK layer; errors name the argument."""
    d_model = check_int("d_model", d_model, 1)
    n_seq = check_int("n_seq", n_seq, 1)
    hidden = None if hidden is None else check_int("hidden", hidden, 1)
    return d_model, n_seq, hidden, check_shift("z", z)


def _check_input(x: Any, n_seq: int, d_model: int) -> tuple[int, int, int]:
    """``x.shape`` as ``(B, N, d)`` after checking ``x`` is a (B, n_seq, d_model) float tensor."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[1:] != (n_seq, d_model):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (B, n_seq, d_model) = (B, {n_seq}, "
                         f"{d_model}), got {got}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a real floating tensor, got dtype {x.dtype}")
    B, N, D = x.shape
    return int(B), int(N), int(D)


class BKCore(nn.Module):
    """The BK core of the module docstring: ``forward(h (B, n, d), z) -> y (B, n, d)``."""

    def __init__(self, d_model: int, hidden: int | None = None, method: str = "auto"):
        super().__init__()
        hidden = hidden or 2 * d_model
        self.d_model, self.hidden, self.method = d_model, hidden, method
        self.v_proj = nn.Linear(d_model, 1)
        self.feat_proj = nn.Linear(2, d_model)
        self.fc1 = nn.Linear(d_model, hidden)
        self.fc2 = nn.Linear(hidden, d_model)

    def forward(self, h: torch.Tensor, z: Any = 1j) -> torch.Tensor:
        v = self.v_proj(h)[..., 0]
        G = laplacian_resolvent_diagonal(v, z, method=self.method)
        if not G.is_complex():  # a real z off the spectrum: G is real, Im G = 0
            G = torch.complex(G, torch.zeros_like(G))
        u = h + self.feat_proj(torch.view_as_real(G).to(h.dtype))
        return self.fc2(nn.functional.gelu(self.fc1(u)))


class BKLayer(nn.Module):
    """Full-resolution BK layer: ``out = x + BKCore(LayerNorm(x))``.

    ``forward(x (B, N, d_model), z=1j) -> (out (B, N, d_model), stats)`` with
    ``stats["flops"]`` = :func:`semisep.nn._flops.bk_layer_flops` for this call's shapes."""

    def __init__(
        self, d_model: int, n_seq: int, hidden: int | None = None, z: Any = 1j, method: str = "auto",
        **seed_kwargs: Any,
    ):
        super().__init__()
        reject_seed_kwargs("BKLayer", seed_kwargs)
        d_model, n_seq, hidden, z = _check_layer_args(d_model, n_seq, hidden, z)
        self.n_seq = n_seq
        self.norm = nn.LayerNorm(d_model)
        self.core = BKCore(d_model, hidden, method)
        self.z = z

    def forward(self, x: torch.Tensor):
        B, N, D = _check_input(x, self.n_seq, self.core.d_model)
        out = x + self.core(self.norm(x), self.z)
        return out, {"flops": bk_layer_flops(B, N, D, self.core.hidden)["total"]}


class AdaptiveDownsampling(nn.Module):
    """Learned pooling of position pairs: ``h (B, N, d) -> (B, ceil(N/2), d)``.

    ``s_i = h_i w_s + b_s``; for each pair ``(2j, 2j+1)``: ``(w_0, w_1) = softmax(s_{2j}, s_{2j+1})``,
    ``h_low_j = w_0 h_{2j} + w_1 h_{2j+1}``.  Odd ``N``: the last position is paired with itself."""

    def __init__(self, d_model: int):
        super().__init__()
        self.score = nn.Linear(d_model, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, N, D = h.shape
        if N % 2:
            h = torch.cat([h, h[:, -1:]], dim=1)
        pairs = h.reshape(B, h.shape[1] // 2, 2, D)  # explicit sizes: B = 0 works too
        w = torch.softmax(self.score(pairs), dim=2)  # (B, m, 2, 1)
        return (w * pairs).sum(dim=2)


class AdaptiveUpsampling(nn.Module):
    """``y_low (B, m, d) -> (B, n, d)``: ``up_{2j+p} = a_p * y_low_j + c_p`` with learned
    position-parity vectors ``a_p, c_p`` (``p = 0, 1``), cropped to ``n``."""

    def __init__(self, d_model: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(2, d_model))
        self.shift = nn.Parameter(torch.zeros(2, d_model))

    def forward(self, y: torch.Tensor, n: int) -> torch.Tensor:
        B, m, D = y.shape
        up = y[:, :, None, :] * self.scale + self.shift  # (B, m, 2, D)
        return up.reshape(B, 2 * m, D)[:, :n]


class MultiScaleBKLayer(nn.Module):
    """BK layer at half resolution with learned down/upsampling and full-resolution refinement.

    ::

        h     = LayerNorm(x)                                   (B, N, d)
        h_low = AdaptiveDownsampling(h)                         (B, ceil(N/2), d)
        up    = AdaptiveUpsampling(BKCore(h_low, z), N)         (B, N, d)
        r     = DepthwiseConv1d_k(h + up)                       (B, N, d)   the refinement
        out   = x + g_low * up + g_ref * r                      (g_low, g_ref learned (d,))

    ``forward(x (B, N, d_model)) -> (out, stats)``; ``stats``: ``"flops"`` (this layer),
    ``"flops_full"`` (a :class:`BKLayer` with the same ``d_model`` and ``hidden`` at ``N``),
    ``"flops_saved_ratio" = 1 - flops / flops_full``, ``"n_low"``, all counted by
    :mod:`semisep.nn._flops` for the shapes of the call.
    """

    def __init__(
        self,
        d_model: int,
        n_seq: int,
        hidden: int | None = None,
        z: Any = 1j,
        refine_kernel: int = 3,
        method: str = "auto",
        **seed_kwargs: Any,
    ):
        super().__init__()
        reject_seed_kwargs("MultiScaleBKLayer", seed_kwargs)
        d_model, n_seq, hidden, z = _check_layer_args(d_model, n_seq, hidden, z)
        refine_kernel = check_int("refine_kernel", refine_kernel, 1)
        if refine_kernel % 2 != 1:
            raise ValueError(f"refine_kernel must be odd, got {refine_kernel}")
        self.n_seq = n_seq
        self.norm = nn.LayerNorm(d_model)
        self.down = AdaptiveDownsampling(d_model)
        self.core = BKCore(d_model, hidden, method)
        self.up = AdaptiveUpsampling(d_model)
        self.refine = nn.Conv1d(d_model, d_model, refine_kernel, padding=refine_kernel // 2, groups=d_model)
        self.g_low = nn.Parameter(torch.ones(d_model))
        self.g_ref = nn.Parameter(torch.full((d_model,), 0.1))
        self.z = z
        self.refine_kernel = refine_kernel

    def forward(self, x: torch.Tensor):
        B, N, D = _check_input(x, self.n_seq, self.norm.normalized_shape[0])
        h = self.norm(x)
        h_low = self.down(h)
        up = self.up(self.core(h_low, self.z), N)
        r = self.refine((h + up).transpose(1, 2)).transpose(1, 2)
        out = x + self.g_low * up + self.g_ref * r
        ms = multiscale_bk_layer_flops(B, N, D, self.core.hidden, self.refine_kernel)["total"]
        full = bk_layer_flops(B, N, D, self.core.hidden)["total"]
        stats = {
            "flops": ms,
            "flops_full": full,
            "flops_saved_ratio": 1.0 - ms / full if full else 0.0,  # B = 0: nothing to save
            "n_low": h_low.shape[1],
        }
        return out, stats
