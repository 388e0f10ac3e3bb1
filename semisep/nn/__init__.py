"""torch modules built on semisep's exact resolvent diagonals.

This package holds (so far) the learned-sparsity and multi-scale layers of issue 6:

* :mod:`semisep.nn.functional` -- :func:`masked_resolvent_diagonal` (exact ``G_ii`` at per-row
  kept positions, with what skipping saves stated and measured);
* :mod:`semisep.nn.sparse` -- :class:`SparseBKCore`, :class:`LearnedSparsityG_ii`,
  :class:`SparseBKBlock`;
* :mod:`semisep.nn.multiscale` -- :class:`BKLayer` (full resolution) and
  :class:`MultiScaleBKLayer`;
* :mod:`semisep.nn._flops` -- FLOP counts of these layers as pure functions.
"""

from . import functional
from .functional import MaskedResolvent, masked_resolvent_diagonal

__all__ = ["functional", "MaskedResolvent", "masked_resolvent_diagonal"]
from .sparse import (
    ImportancePredictor,
    LearnedInterpolator,
    LearnedSparsityG_ii,
    SparseBKBlock,
    SparseBKCore,
    gumbel_sigmoid,
    linear_interpolate,
    topk_mask,
)

__all__ += ["ImportancePredictor", "LearnedInterpolator", "LearnedSparsityG_ii", "SparseBKBlock",
            "SparseBKCore", "gumbel_sigmoid", "linear_interpolate", "topk_mask"]
from .multiscale import AdaptiveDownsampling, AdaptiveUpsampling, BKCore, BKLayer, MultiScaleBKLayer

__all__ += ["AdaptiveDownsampling", "AdaptiveUpsampling", "BKCore", "BKLayer", "MultiScaleBKLayer"]
