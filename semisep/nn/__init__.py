"""torch modules built on semisep's exact structured algorithms (requires torch).

``import semisep`` does not import this subpackage (nor torch); ``import semisep.nn`` does.

* :class:`BirmanSchwingerCore` -- resolvent-diagonal features of ``H0 + diag(v) + U V^T``.
* :class:`SemiseparableMatrix`, :func:`create_semiseparable_from_dense` -- a trainable
  ``H = T + U V^T`` module.
* :func:`hilbert_schmidt_norm_sq` -- O(N) Hilbert-Schmidt norm of the Birman-Schwinger operator.
"""

from .birman_schwinger import (
    BirmanSchwingerCore,
    hilbert_schmidt_norm_sq,
    hilbert_schmidt_norm_sq_ref,
    laplacian_pivots,
)
from .semiseparable_matrix import SemiseparableMatrix, create_semiseparable_from_dense

__all__ = [
    "BirmanSchwingerCore",
    "SemiseparableMatrix",
    "create_semiseparable_from_dense",
    "hilbert_schmidt_norm_sq",
    "hilbert_schmidt_norm_sq_ref",
    "laplacian_pivots",
]
