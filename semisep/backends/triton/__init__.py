"""Fused Triton kernels of the torch backend on CUDA (``method="fused"``).

The chunked scan of :mod:`semisep.backends.torch.pivots` with each chunk's recursion kept in
registers, for the resolvent diagonal in the shift form at a complex shift, without autograd.
One module per role:

=============  ===============================================================================
``kernels``    the mathematics (module docstring), the shared ``triton.jit`` helpers, the
               strided per-chunk kernels and the chunk scans
``tiled``      the register-tile per-chunk kernels (the default for L a power of two <= 16)
``launch``     the launch geometry in plain Python: chunks, grids within CUDA's limits, slabs
``repair``     the carries one chunk step deep, and the boundary repair (torch ops, fixed
               shapes): chunks whose carry disagrees with the previous chunk's end re-run
``ops``        the launches as the torch operator ``semisep::fused_resolvent_diagonal``
               (``torch.library.triton_op``: ``torch.compile`` traces into the kernels)
``resolvent``  :func:`resolvent_diagonal_fused`: the host side, thresholds and the certificate
=============  ===============================================================================

Triton is optional (it ships with the CUDA builds of torch); :func:`available` says whether
the kernels can run on a tensor's device.  On CPU they run under Triton's interpreter
(``TRITON_INTERPRET=1``), which the tests use.
"""

from __future__ import annotations

from .resolvent import HAVE_TRITON, available, default_chunk_length, resolvent_diagonal_fused

__all__ = ["HAVE_TRITON", "available", "default_chunk_length", "resolvent_diagonal_fused"]
