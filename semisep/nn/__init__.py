"""torch modules built on semisep's exact structured algorithms (requires torch).

``import semisep`` does not import this subpackage (nor torch); ``import semisep.nn`` does.

* :class:`BirmanSchwingerCore` -- resolvent-diagonal features of ``H0 + diag(v) + U V^T``.
* :class:`SemiseparableMatrix`, :func:`create_semiseparable_from_dense` -- a trainable
  ``H = T + U V^T`` module.
* :func:`hilbert_schmidt_norm_sq` -- O(N) Hilbert-Schmidt norm of the Birman-Schwinger operator.
* :mod:`semisep.nn.functional` -- :func:`masked_resolvent_diagonal` (exact ``G_ii`` at per-row
  kept positions, with what skipping saves stated and measured).
* :mod:`semisep.nn.sparse` -- :class:`SparseBKCore`, :class:`LearnedSparsityG_ii`,
  :class:`SparseBKBlock` (learned sparsity for ``G_ii``).
* :mod:`semisep.nn.multiscale` -- :class:`BKLayer` (full resolution) and
  :class:`MultiScaleBKLayer`; :mod:`semisep.nn._flops` counts their FLOPs.
"""

from . import functional
from .birman_schwinger import BirmanSchwingerCore
from .free_resolvent import hilbert_schmidt_norm_sq, hilbert_schmidt_norm_sq_ref, laplacian_pivots
from .functional import MaskedResolvent, masked_resolvent_diagonal
from .multiscale import (
    AdaptiveDownsampling,
    AdaptiveUpsampling,
    BKCore,
    BKLayer,
    MultiScaleBKLayer,
)
from .semiseparable_matrix import SemiseparableMatrix, create_semiseparable_from_dense
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

__all__ = [
    "BirmanSchwingerCore",
    "SemiseparableMatrix",
    "create_semiseparable_from_dense",
    "hilbert_schmidt_norm_sq",
    "hilbert_schmidt_norm_sq_ref",
    "laplacian_pivots",
    "functional",
    "MaskedResolvent",
    "masked_resolvent_diagonal",
    "ImportancePredictor",
    "LearnedInterpolator",
    "LearnedSparsityG_ii",
    "SparseBKBlock",
    "SparseBKCore",
    "gumbel_sigmoid",
    "linear_interpolate",
    "topk_mask",
    "AdaptiveDownsampling",
    "AdaptiveUpsampling",
    "BKCore",
    "BKLayer",
    "MultiScaleBKLayer",
]
