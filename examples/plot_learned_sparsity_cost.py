"""
What learned sparsity costs and saves, in FLOPs
================================================

:class:`semisep.nn.SparseBKCore` (and :class:`semisep.nn.LearnedSparsityG_ii`) compute the
resolvent diagonal :math:`G_{ii}` exactly at the positions a small network marks as important
and interpolate the rest.  Whether that saves anything depends on what skipping a position can
skip.  :math:`G_{ii} = g^L_i / (1 - \\beta_i g^L_i g^R_{i+1})` needs the left pivot
:math:`g^L_i` and the right pivot :math:`g^R_{i+1}`, and both come from first-order recursions
over the whole chain: whatever the mask, the sweeps stay O(N).  This example counts, with the
pure FLOP-accounting functions of :mod:`semisep.cost` and :mod:`semisep.nn._flops` and torch's
own :class:`torch.utils.flop_counter.FlopCounterMode`, what is saved and what is spent.
No timings here: ``benchmarks/bench_sparse.py`` measures wall time next to these counts.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from semisep.cost import resolvent_diagonal_flops
from semisep.nn import BKLayer, MultiScaleBKLayer, SparseBKCore, masked_resolvent_diagonal
from semisep.nn._flops import selected_resolvent_flops

rng = np.random.default_rng(0)
torch.manual_seed(0)

# %%
# 1. The compiled kernel with shared indices
# ------------------------------------------
# ``semisep.backends.numpy.resolvent_diagonal_selected_kernel`` sweeps left up to the last kept
# index and right down to the first one, and combines only at the kept indices.  Against the
# full kernel (:func:`semisep.cost.resolvent_diagonal_flops`), for one row of N = 4096:
# kept indices scattered at random, or kept as one contiguous run at the start.

N = 4096
full = resolvent_diagonal_flops(N, complex=True)
sparsities = np.linspace(0.0, 0.9, 10)
ratio_random, ratio_block = [], []
for s in sparsities:
    k = max(1, round(N * (1 - s)))
    random_idx = rng.choice(N, size=k, replace=False)
    ratio_random.append(selected_resolvent_flops(N, random_idx) / full)
    ratio_block.append(selected_resolvent_flops(N, np.arange(k)) / full)
print(f"full kernel: {full:,} FLOPs per row ({full / N:.1f} per position)")
for s, a, b in zip(sparsities, ratio_random, ratio_block, strict=True):
    print(f"  sparsity {s:.1f}: selected/full FLOPs, random {a:.2f}, one block {b:.2f}")

# %%
# 2. The chunked torch path with per-row masks
# --------------------------------------------
# :func:`semisep.nn.masked_resolvent_diagonal` with ``method="chunked"`` skips the second
# in-chunk pass of a chunk of length L only if no kept position needs a pivot from it.  Its
# ``work`` dict reports the steps it actually ran.  A random mask leaves almost no chunk empty
# (probability about :math:`s^L`); a clustered mask (4 kept blocks per row) does.

B, Nt = 4, 2048
v = torch.randn(B, Nt, dtype=torch.float64)
off = torch.ones(Nt - 1, dtype=torch.float64)
measured = {"random": [], "4 blocks per row": []}
for s in sparsities[1:]:
    keep = 1 - s
    rand_mask = torch.rand(B, Nt) < keep
    block_mask = torch.zeros(B, Nt, dtype=torch.bool)
    width = max(1, int(round(Nt * keep / 4)))
    for b in range(B):
        for start in np.sort(rng.choice(Nt - width, size=4, replace=False)):
            block_mask[b, start : start + width] = True
    for name, mask in (("random", rand_mask), ("4 blocks per row", block_mask)):
        mr = masked_resolvent_diagonal(v - 2.0, off, None, 1j, mask, method="chunked")
        measured[name].append(mr.work["second_pass_steps"] / mr.work["second_pass_steps_full"])
        # the values it did compute are exact
        full_G = masked_resolvent_diagonal(v - 2.0, off, None, 1j, torch.ones_like(mask),
                                           method="sequential").dense(0.0)
        assert torch.allclose(mr.values, full_G[mr.mask], rtol=1e-12, atol=0)

fig, axes = plt.subplots(1, 2, figsize=(10, 4))
ax = axes[0]
ax.plot(sparsities, ratio_random, "o-", label="random indices")
ax.plot(sparsities, ratio_block, "s-", label="one contiguous block")
ax.axhline(1, color="grey", lw=0.8)
ax.set_xlabel("sparsity (fraction of positions skipped)")
ax.set_ylabel("FLOPs selected / full kernel")
ax.set_title(f"NumPy kernel, shared indices, N = {N}")
ax.legend()
ax = axes[1]
for name, ys in measured.items():
    ax.plot(sparsities[1:], ys, "o-", label=name)
ax.axhline(1, color="grey", lw=0.8)
ax.set_xlabel("sparsity")
ax.set_ylabel("second-pass steps run / full (measured)")
ax.set_title(f"torch chunked scan, per-row masks, N = {Nt}")
ax.legend()
fig.tight_layout()

# %%
# The counts say what the module docstring says: a random mask saves (almost) nothing in the
# sweeps until :math:`s^L` becomes sizeable (here L = 16: at s = 0.9, :math:`0.9^{16} \approx
# 0.19` of the chunks are empty); clustered masks skip whole chunks.

for s, r in zip(sparsities[1:], measured["random"], strict=True):
    assert r > 0.97 or s > 0.7, (s, r)
assert measured["4 blocks per row"][-1] < 0.5

# %%
# 3. What the network that chooses the positions costs
# ----------------------------------------------------
# The exact :math:`G_{ii}` costs a few dozen FLOPs per position.  The importance predictor and
# the learned interpolator are small networks, but they run at every position with
# ``d_model``-wide inputs.  FLOPs of one eval forward of :class:`semisep.nn.SparseBKCore`
# (``d_model = 64``, sparsity 0.5) by :class:`torch.utils.flop_counter.FlopCounterMode`
# (matrix products and convolutions; the resolvent runs outside torch's operators and is
# counted by :func:`semisep.cost.resolvent_diagonal_flops`):

d_model, Bn, Nn = 64, 2, 512
core = SparseBKCore(d_model, Nn, target_sparsity=0.5).eval()
x = torch.randn(Bn, Nn, d_model)
vn = torch.randn(Bn, Nn)
with torch.no_grad():
    core.predictor(x)  # warm-up outside the counter
    with FlopCounterMode(display=False) as fc_pred:
        logits = core.predictor(x)
    mask = torch.zeros(Bn, Nn, dtype=torch.bool)
    mask[torch.arange(Bn)[:, None], logits.topk(core.num_kept(Nn), dim=1).indices] = True
    kept = torch.randn(Bn, Nn, 2)
    with FlopCounterMode(display=False) as fc_interp:
        core.interpolator(kept, mask, vn)
per_pos = {
    "exact G_ii (all positions)": resolvent_diagonal_flops(Nn) / Nn,
    "importance predictor": fc_pred.get_total_flops() / (Bn * Nn),
    "learned interpolator": fc_interp.get_total_flops() / (Bn * Nn),
}
for name, f in per_pos.items():
    print(f"{name:>28}: {f:8.1f} FLOPs per position")
assert per_pos["importance predictor"] > per_pos["exact G_ii (all positions)"]

fig, ax = plt.subplots(figsize=(6.5, 3.2))
ax.barh(list(per_pos), list(per_pos.values()), color=["C0", "C3", "C3"])
ax.set_xscale("log")
ax.set_xlabel("FLOPs per position (log scale)")
ax.set_title(f"SparseBKCore, d_model = {d_model}: cost of choosing vs cost of computing")
fig.tight_layout()

# %%
# 4. What does save: fewer positions for the whole layer
# ------------------------------------------------------
# :class:`semisep.nn.MultiScaleBKLayer` runs the BK core at half resolution.  That halves the
# *layer* (projections, MLP and resolvent), not just the cheap resolvent, and its ``stats``
# carry the counted FLOPs of the call (:mod:`semisep.nn._flops`).

with torch.no_grad():
    _, st_full = BKLayer(d_model, Nn)(x)
    _, st_ms = MultiScaleBKLayer(d_model, Nn)(x)
print(f"BKLayer {st_full['flops']:,} FLOPs, MultiScaleBKLayer {st_ms['flops']:,} FLOPs "
      f"(saved ratio {st_ms['flops_saved_ratio']:.2f})")
assert st_ms["flops"] < st_full["flops"]

# %%
# When not to use learned sparsity
# --------------------------------
# * **For speed of the resolvent itself**: never, on these counts.  The sweeps are O(N) whatever
#   the mask; with random masks only the combine step is skipped (panel 1, random: the selected
#   kernel does *more* work than the fused full one at low sparsity), and the predictor alone
#   costs more per position than the exact :math:`G_{ii}` (panel 3).
# * **With gradients**: the O(N) backward needs every pivot, so the training path computes the
#   full diagonal anyway (exact gradients, no saving).
# * **Accuracy**: interpolated positions are approximations of an exact quantity that was
#   cheap to compute.
# * It can pay only when the mask is clustered in blocks much longer than the chunk length (the
#   chunked path skips whole chunks, panel 2) *and* the choosing network is shared with work the
#   model does anyway.  To cut a BK model's cost, reduce the positions the whole layer sees
#   (section 4) rather than the resolvent's.
