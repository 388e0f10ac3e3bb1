"""Learned sparsity for the resolvent diagonal ``G_ii``.

A layer that needs the features ``[Re G_ii, Im G_ii]`` of ``H = H0 + diag(v)`` (``H0`` the
discrete Laplacian: diagonal ``-2``, off-diagonals ``1``) at a shift ``z`` learns which positions
to compute exactly and fills the others with an interpolator:

    logits = predictor(x)                              (B, N)
    m      = GumbelSigmoid_ST(logits, tau)  (train)    (B, N), values in {0, 1}
             TopK(logits, k = round(N (1 - s)))  (eval)
    G      = diag((H - z I)^{-1}) at {i : m_i = 1}     exact (semisep.nn.functional)
    F_i    = m_i [Re G_ii, Im G_ii] + (1 - m_i) interp_i          (B, N, 2)

``interp`` sees only the kept values (and the mask, and ``v`` for the learned interpolator): a
skipped position never receives a value computed at that position.

Gradients.  Straight-through: the forward uses the hard mask, the backward the soft sigmoid, so
``dF_i/dlogit_i = (exact_i - interp_i) dsigma_i/dlogit_i``.  With gradients enabled the exact
diagonal is computed at *every* position (the O(N) backward of the resolvent needs every pivot
anyway -- see :mod:`semisep.nn.functional`), and ``exact_i`` at a skipped position enters only
this gradient, never the forward value.  Without gradients (``torch.no_grad()`` / inference)
only the kept positions are combined, and on the chunked path the second in-chunk pivot pass is
skipped in chunks without a kept position.

Sparsity.  ``sparsity_ratio = 1 - mean(m)`` is measured on the mask of the forward pass;
``sparsity_loss() = (sparsity - target)^2`` (differentiable through the straight-through mask).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..tridiagonal import Tridiagonal
from .functional import laplacian_resolvent_diagonal_masked

__all__ = [
    "gumbel_sigmoid",
    "topk_mask",
    "linear_interpolate",
    "ImportancePredictor",
    "LearnedInterpolator",
    "LearnedSparsityG_ii",
    "SparseBKCore",
    "SparseBKBlock",
    "laplacian_resolvent_diagonal",
]


# ==================================================================================================
# masks
# ==================================================================================================
def gumbel_sigmoid(
    logits: torch.Tensor, tau: float = 1.0, hard: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Relaxed Bernoulli sample with keep-probability ``sigmoid(logits)``.

    ``soft = sigmoid((logits + l) / tau)`` with logistic noise ``l = log u - log(1 - u)``,
    ``u ~ U(0, 1)`` (the difference of two Gumbel variables), so ``P(soft > 1/2) =
    sigmoid(logits)`` exactly.  ``hard=True`` returns the straight-through mask
    ``1[soft > 1/2] - soft.detach() + soft``: values in {0, 1}, gradient of ``soft``.
    Shape of ``logits``.
    """
    u = torch.rand(logits.shape, dtype=logits.dtype, device=logits.device, generator=generator)
    tiny = torch.finfo(logits.dtype).tiny
    u = u.clamp(tiny, 1.0 - torch.finfo(logits.dtype).eps)
    soft = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / tau)
    if not hard:
        return soft
    return (soft > 0.5).to(soft.dtype) - soft.detach() + soft


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """0/1 mask (float, shape of ``scores`` (..., N)) keeping the ``k`` largest scores of each
    row; ties go to the lower index (stable sort), so the mask is deterministic."""
    n = scores.shape[-1]
    k = int(min(max(k, 0), n))
    order = torch.sort(scores.detach(), dim=-1, descending=True, stable=True).indices[..., :k]
    out = torch.zeros_like(scores, dtype=scores.dtype)
    return out.scatter(-1, order, 1.0)


def linear_interpolate(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill skipped positions by linear interpolation between the nearest kept neighbours.

    ``values (B, N, C)``, ``mask (B, N)`` (bool or 0/1).  For a skipped ``i`` with nearest kept
    ``p < i < q``: ``((q - i) values_p + (i - p) values_q) / (q - p)``; before the first kept
    position the first kept value, after the last the last one.  Kept positions return their
    value.  Only kept entries of ``values`` are read (skipped ones may hold anything finite or
    not).  Differentiable w.r.t. the kept values.  ``ValueError`` if a row keeps nothing.
    """
    keep = mask.detach() > 0.5 if mask.dtype != torch.bool else mask
    B, N = keep.shape
    if not bool(keep.any(dim=1).all()):
        raise ValueError("linear_interpolate: a row keeps no position; nothing to interpolate from")
    pos = torch.arange(N, device=keep.device).expand(B, N)
    prev = torch.where(keep, pos, torch.full_like(pos, -1)).cummax(dim=1).values
    nxt = torch.where(keep, pos, torch.full_like(pos, N)).flip(1).cummin(dim=1).values.flip(1)
    p = torch.where(prev >= 0, prev, nxt)  # no kept neighbour on the left: use the right one
    q = torch.where(nxt < N, nxt, prev)  # and vice versa
    vals = torch.where(keep[..., None], values, torch.zeros_like(values))  # never read a skipped entry
    vp = vals.gather(1, p[..., None].expand(-1, -1, vals.shape[-1]))
    vq = vals.gather(1, q[..., None].expand(-1, -1, vals.shape[-1]))
    span = (q - p).to(values.dtype)
    w = torch.where(span > 0, (pos - p).to(values.dtype) / span.clamp(min=1), torch.zeros_like(span))
    return vp + w[..., None] * (vq - vp)


# ==================================================================================================
# networks
# ==================================================================================================
class ImportancePredictor(nn.Module):
    """Per-position importance logits ``(B, N)`` from features ``x (B, N, d_model)``.

    ``context_kernel=1``: the position-wise MLP ``d_model -> d_model/2 -> 1`` (ReLU).
    ``context_kernel=k > 1``: a context-encoding predictor: ``Linear(d, h)`` -> GELU ->
    ``Conv1d(h, h, k)`` over the sequence (``k`` neighbours of context) -> GELU -> ``Linear(h, 1)``.
    The last bias starts at ``logit(init_keep)`` so the initial keep rate is about ``init_keep``.
    """

    def __init__(
        self, d_model: int, context_kernel: int = 1, hidden: int | None = None, init_keep: float = 0.5
    ):
        super().__init__()
        h = hidden or max(d_model // 2, 1)
        self.inp = nn.Linear(d_model, h)
        self.context = (
            nn.Conv1d(h, h, context_kernel, padding=context_kernel // 2) if context_kernel > 1 else None
        )
        self.out = nn.Linear(h, 1)
        p = min(max(init_keep, 1e-4), 1 - 1e-4)
        with torch.no_grad():
            self.out.bias.fill_(math.log(p / (1 - p)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        if self.context is None:
            h = torch.relu(h)
        else:
            h = nn.functional.gelu(h)
            h = nn.functional.gelu(self.context(h.transpose(1, 2)).transpose(1, 2)[:, : x.shape[1]])
        return self.out(h)[..., 0]


class LearnedInterpolator(nn.Module):
    """Learned fill for skipped positions: linear interpolation plus a learned correction.

    Input channels per position: the linear interpolation of the kept features (2), the mask
    (1) and the potential ``v`` (1); three ``Conv1d`` layers (kernel ``kernel``, ReLU) give a
    correction (2 channels) that starts at zero, so an untrained interpolator *is* the linear
    one.  ``forward(kept (B, N, 2), mask (B, N), v (B, N)) -> (B, N, 2)``.
    """

    def __init__(self, hidden: int = 16, kernel: int = 3):
        super().__init__()
        pad = kernel // 2
        self.net = nn.Sequential(
            nn.Conv1d(4, hidden, kernel, padding=pad),
            nn.ReLU(),
            nn.Conv1d(hidden, hidden, kernel, padding=pad),
            nn.ReLU(),
            nn.Conv1d(hidden, 2, kernel, padding=pad),
        )
        with torch.no_grad():
            self.net[-1].weight.zero_()
            self.net[-1].bias.zero_()

    def forward(self, kept: torch.Tensor, mask: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        lin = linear_interpolate(kept, mask)
        m = (mask.detach() > 0.5).to(lin.dtype) if mask.dtype != torch.bool else mask.to(lin.dtype)
        inp = torch.cat([lin, m[..., None], v.to(lin.dtype)[..., None]], dim=-1).transpose(1, 2)
        return lin + self.net(inp).transpose(1, 2)


def laplacian_resolvent_diagonal(v: torch.Tensor, z: Any = 1j, **kwargs: Any) -> torch.Tensor:
    """Full ``diag((H0 + diag(v) - z I)^{-1})`` (B, N) complex, ``H0`` the discrete Laplacian;
    differentiable (O(N) backward of the torch backend)."""
    rdt = v.real.dtype if v.is_complex() else v.dtype
    ones = torch.ones(v.shape[-1] - 1, dtype=rdt, device=v.device)
    return Tridiagonal(v - 2.0, ones).resolvent_diagonal(z, **kwargs)


# ==================================================================================================
# the sparse core
# ==================================================================================================
class LearnedSparsityG_ii(nn.Module):
    """Resolvent-diagonal features with a learned choice of the positions computed exactly.

    Parameters
    ----------
    d_model, n_seq : int
        Feature width of ``x`` and the sequence length ``N`` (``n_seq`` is recorded for the
        statistics; any ``N`` is accepted at run time).
    target_sparsity : float in [0, 1)
        Fraction ``s`` of positions to skip.  At eval exactly ``k = round(N (1 - s))`` (Python's
        ``round``, at least 1) positions per row are kept (top-k of the logits).
    tau : float
        Gumbel-sigmoid temperature (training).
    interpolation_method : "learned" | "linear"
        How skipped positions are filled (:class:`LearnedInterpolator` / :func:`linear_interpolate`).
    context_kernel : int
        Context width of the :class:`ImportancePredictor` (1: position-wise MLP).
    method : str
        Resolvent kernel method (``semisep.nn.functional.masked_resolvent_diagonal``).

    Notes
    -----
    ``forward(x (B, N, d_model), v (B, N) real, z=1j, training=None)`` returns
    ``(features (B, N, 2), mask (B, N), sparsity_ratio)``: ``features = [Re, Im]``; ``mask``
    1 = computed exactly, 0 = interpolated (straight-through in training: values 0/1, gradient of
    the soft mask); ``sparsity_ratio`` the measured fraction of skipped positions (0-d tensor).
    In training a row that would keep nothing keeps its highest-logit position.
    """

    def __init__(
        self,
        d_model: int,
        n_seq: int,
        target_sparsity: float = 0.5,
        tau: float = 1.0,
        interpolation_method: str = "learned",
        context_kernel: int = 5,
        method: str = "auto",
        interpolator_hidden: int = 16,
    ):
        super().__init__()
        if not 0.0 <= target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in [0, 1), got {target_sparsity}")
        if interpolation_method not in ("learned", "linear"):
            raise ValueError(
                f"interpolation_method must be 'learned' or 'linear', got {interpolation_method!r}"
            )
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.d_model, self.n_seq = int(d_model), int(n_seq)
        self.target_sparsity = float(target_sparsity)
        self.tau = float(tau)
        self.interpolation_method = interpolation_method
        self.method = method
        self.predictor = ImportancePredictor(
            d_model, context_kernel=context_kernel, init_keep=1.0 - target_sparsity
        )
        self.interpolator = (
            LearnedInterpolator(interpolator_hidden) if interpolation_method == "learned" else None
        )
        self._last_mask: torch.Tensor | None = None
        self._stats = {"calls": 0, "skipped": 0, "positions": 0}

    def num_kept(self, n: int) -> int:
        """Positions kept per row at eval: ``max(1, round(N (1 - target_sparsity)))``."""
        return max(1, int(round(n * (1.0 - self.target_sparsity))))

    def make_mask(self, logits: torch.Tensor, training: bool) -> torch.Tensor:
        """Straight-through Gumbel-sigmoid mask (training) or deterministic top-k (eval)."""
        if not training:
            return topk_mask(logits, self.num_kept(logits.shape[-1]))
        m = gumbel_sigmoid(logits, self.tau, hard=True)
        empty = ~(m.detach() > 0.5).any(dim=1)
        if bool(empty.any()):  # keep the most important position of an empty row
            fix = torch.zeros_like(m).scatter(1, logits.detach().argmax(dim=1, keepdim=True), 1.0)
            m = m + (fix * empty[:, None].to(m.dtype)).detach()
        return m

    def interpolate(self, kept: torch.Tensor, mask: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.interpolator is None:
            return linear_interpolate(kept, mask)
        return self.interpolator(kept, mask, v)

    def forward(self, x: torch.Tensor, v: torch.Tensor, z: Any = 1j, training: bool | None = None):
        if x.ndim != 3 or v.ndim != 2 or x.shape[:2] != v.shape:
            raise ValueError(
                f"expected x (B, N, d_model) and v (B, N); got {tuple(x.shape)} and {tuple(v.shape)}"
            )
        training = self.training if training is None else bool(training)
        logits = self.predictor(x)
        m = self.make_mask(logits, training)
        keep = m.detach() > 0.5
        grad = torch.is_grad_enabled() and (
            m.requires_grad or v.requires_grad or any(p.requires_grad for p in self.parameters())
        )
        if grad:
            # full diagonal: the backward needs every pivot; values at skipped positions enter
            # only the straight-through gradient (exact_i - interp_i), never the forward value
            exact = torch.view_as_real(laplacian_resolvent_diagonal(v, z, method=self.method))
        else:
            mr = laplacian_resolvent_diagonal_masked(v, z, keep, method=self.method)
            exact = torch.view_as_real(mr.dense(0.0))  # 0 is a placeholder times m_i = 0 below
        kept = torch.where(keep[..., None], exact, torch.zeros_like(exact))
        interp = self.interpolate(kept, keep, v)
        mm = m.to(exact.dtype)[..., None]
        features = mm * exact + (1.0 - mm) * interp
        sparsity = 1.0 - keep.to(exact.dtype).mean()
        self._last_mask = m
        self._stats["calls"] += 1
        self._stats["skipped"] += int((~keep).sum())
        self._stats["positions"] += keep.numel()
        self._last = {
            "sparsity_ratio": float(sparsity),
            "num_computed": float(keep.sum(1).float().mean()),
            "n": keep.shape[1],
        }
        return features, m, sparsity

    def sparsity_loss(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(1 - mean(mask) - target_sparsity)^2`` on ``mask`` (default: the last forward's
        straight-through mask, so its gradient reaches the predictor)."""
        m = self._last_mask if mask is None else mask
        if m is None:
            raise RuntimeError("sparsity_loss() needs a forward pass first (or pass the mask)")
        return (1.0 - m.mean() - self.target_sparsity) ** 2

    def get_sparsity_stats(self) -> dict:
        """Measured statistics: the last forward's ``sparsity_ratio`` and ``num_computed`` (mean
        kept per row), the mean sparsity over all calls since :meth:`reset_stats`, the target."""
        last = getattr(self, "_last", None) or {
            "sparsity_ratio": float("nan"),
            "num_computed": float("nan"),
            "n": 0,
        }
        pos = self._stats["positions"]
        return {
            "target_sparsity": self.target_sparsity,
            "sparsity_ratio": last["sparsity_ratio"],
            "num_computed": last["num_computed"],
            "n_seq": last["n"],
            "mean_sparsity_ratio": self._stats["skipped"] / pos if pos else float("nan"),
            "calls": self._stats["calls"],
        }

    def reset_stats(self) -> None:
        self._stats = {"calls": 0, "skipped": 0, "positions": 0}


class SparseBKCore(LearnedSparsityG_ii):
    """The sparse BK core of the seed API: position-wise MLP importance predictor
    (``d_model -> d_model/2 -> 1``), learned interpolation by default.

    ``SparseBKCore(d_model, n_seq, target_sparsity=0.5, tau=1.0)``;
    ``forward(x (B, N, d_model), v (B, N), z=1j) -> (features (B, N, 2), mask (B, N),
    sparsity_ratio)``.  See :class:`LearnedSparsityG_ii` for the definitions.
    """

    def __init__(
        self,
        d_model: int,
        n_seq: int,
        target_sparsity: float = 0.5,
        tau: float = 1.0,
        interpolation_method: str = "learned",
        method: str = "auto",
        interpolator_hidden: int = 16,
    ):
        super().__init__(
            d_model,
            n_seq,
            target_sparsity,
            tau,
            interpolation_method,
            context_kernel=1,
            method=method,
            interpolator_hidden=interpolator_hidden,
        )


class SparseBKBlock(nn.Module):
    """Residual block around a sparse G_ii core.

    ``h = LayerNorm(x)``; ``v = h W_v`` (B, N) (the potential); ``F = core(h, v, z)`` (B, N, 2);
    ``out = x + F W_o`` with ``W_o: 2 -> d_model``.

    ``get_sparsity_loss()`` = ``sparsity_loss_weight * core.sparsity_loss()`` for the last forward;
    ``get_sparsity_stats()`` the core's measured statistics.
    """

    def __init__(
        self,
        d_model: int,
        n_seq: int,
        target_sparsity: float = 0.5,
        tau: float = 1.0,
        interpolation_method: str = "learned",
        context_kernel: int = 5,
        z: Any = 1j,
        sparsity_loss_weight: float = 0.01,
        method: str = "auto",
    ):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.v_proj = nn.Linear(d_model, 1)
        self.core = LearnedSparsityG_ii(
            d_model,
            n_seq,
            target_sparsity,
            tau,
            interpolation_method,
            context_kernel=context_kernel,
            method=method,
        )
        self.out_proj = nn.Linear(2, d_model)
        self.z = z
        self.sparsity_loss_weight = float(sparsity_loss_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        v = self.v_proj(h)[..., 0]
        f, _, _ = self.core(h, v, self.z)
        return x + self.out_proj(f)

    def get_sparsity_loss(self) -> torch.Tensor:
        return self.sparsity_loss_weight * self.core.sparsity_loss()

    def get_sparsity_stats(self) -> dict:
        return self.core.get_sparsity_stats()
