"""Reference computations for quasiseparable matrices (imports nothing from the rest of semisep).

``S[i, i] = diag_i``, ``S[i, j] = p_i . (a_{i-1} ... a_{j+1} q_j)`` (i > j),
``S[i, j] = g_j . (b_{j-1} ... b_{i+1} h_i)`` (i < j); ``g = h = b = None``: symmetric.
Leading dimensions broadcast; everything runs in complex128.

* :func:`qsm_to_dense`: the dense matrix built entry by entry from the definition (each column
  propagates its own vector ``a_{i-1} ... a_{j+1} q_j``), O(N^2 r^2): the oracle for small N
  together with SciPy/NumPy dense LU.
* ``sequential_*``: an independent O(N) implementation for large N (a plain Python loop over
  N, vectorised over the batch with ``einsum``, no pivot guard), written as an *LDU*
  factorization ``S - zI = L D U'`` with unit ``U'`` whose generators are scaled by the pivots
  (``hh_i = ht_i / d_i``), so its state update ``M_{i+1} = a_i M_i b_i^T + d_i qt_i hh_i^T``
  and its sweeps differ in order and rounding from the compiled kernels.
"""

from __future__ import annotations

import numpy as np

__all__ = ["qsm_to_dense", "sequential_qsm_logdet", "sequential_qsm_solve",
           "sequential_qsm_resolvent_diagonal", "sequential_qsm_matvec"]


def _layout(diag, p, q, a, g, h, b, z=0.0):
    if g is None:
        g, h, b = p, q, a
    arrs = [np.asarray(x, dtype=np.complex128) for x in (diag, p, q, a, g, h, b)]
    diag, p, q, a, g, h, b = arrs
    z = np.asarray(z, dtype=np.complex128)
    n = diag.shape[-1]
    batch = np.broadcast_shapes(diag.shape[:-1], z.shape, p.shape[:-2], q.shape[:-2],
                                a.shape[:-3], g.shape[:-2], h.shape[:-2], b.shape[:-3])
    alpha = diag - (z[..., None] if z.ndim else z)

    count = int(np.prod(batch))

    def rows(x, tail):
        core = x.shape[x.ndim - tail:]
        return np.broadcast_to(x, batch + core).reshape((count,) + core)

    a = np.broadcast_to(a, a.shape[:-3] + (n,) + a.shape[-2:])
    b = np.broadcast_to(b, b.shape[:-3] + (n,) + b.shape[-2:])
    return (rows(alpha, 1), rows(p, 2), rows(q, 2), rows(a, 3), rows(g, 2), rows(h, 2),
            rows(b, 3), batch, n)


def qsm_to_dense(diag, p, q, a, g=None, h=None, b=None, z=0.0):
    """Dense ``S - z I`` (..., N, N), complex128, entry by entry from the definition."""
    alpha, p, q, a, g, h, b, batch, n = _layout(diag, p, q, a, g, h, b, z)
    A = np.zeros((alpha.shape[0], n, n), np.complex128)
    A[:, np.arange(n), np.arange(n)] = alpha
    for j in range(n):
        v = q[:, j]  # a_{i-1} ... a_{j+1} q_j for the current i
        w = h[:, j]
        for i in range(j + 1, n):
            A[:, i, j] = np.einsum("br,br->b", p[:, i], v)
            A[:, j, i] = np.einsum("br,br->b", g[:, i], w)
            v = np.einsum("brs,bs->br", a[:, i], v)
            w = np.einsum("brs,bs->br", b[:, i], w)
    return A.reshape(batch + (n, n))


def _ldu(alpha, p, q, a, g, h, b):
    B, n = alpha.shape
    M = np.zeros((B, p.shape[2], g.shape[2]), np.complex128)
    d = np.empty((B, n), np.complex128)
    qt = np.empty(p.shape[:1] + (n, p.shape[2]), np.complex128)
    hh = np.empty(g.shape[:1] + (n, g.shape[2]), np.complex128)
    for i in range(n):
        Mg = np.einsum("brs,bs->br", M, g[:, i])
        d[:, i] = alpha[:, i] - np.einsum("br,br->b", p[:, i], Mg)
        qt[:, i] = (q[:, i] - np.einsum("brs,bs->br", a[:, i], Mg)) / d[:, i, None]
        hh[:, i] = (h[:, i] - np.einsum("brs,bts,bt->br", b[:, i], M, p[:, i])) / d[:, i, None]
        M = (np.einsum("brs,bst,but->bru", a[:, i], M, b[:, i])
             + d[:, i, None, None] * qt[:, i, :, None] * hh[:, i, None, :])
    return d, qt, hh


def sequential_qsm_logdet(diag, p, q, a, g=None, h=None, b=None, z=0.0):
    """``log det(S - z I)`` (...,) complex128 from the LDU pivots, imaginary part in (-pi, pi]."""
    alpha, p, q, a, g, h, b, batch, n = _layout(diag, p, q, a, g, h, b, z)
    d, _, _ = _ldu(alpha, p, q, a, g, h, b)
    phase = np.ones(d.shape[0], np.complex128)
    for i in range(n):
        phase = phase * d[:, i] / np.abs(d[:, i])
        phase /= np.abs(phase)
    return (np.log(np.abs(d)).sum(-1) + 1j * np.angle(phase)).reshape(batch)


def sequential_qsm_solve(diag, p, q, a, g=None, h=None, b=None, rhs=None, z=0.0):
    """``(S - z I)^{-1} rhs`` for rhs (..., N) or (..., N, k) (a vector iff its ndim is the
    batch's + 1 or 1): ``L c = rhs``, ``D w = c``, ``U' x = w``."""
    alpha, p, q, a, g, h, b, batch, n = _layout(diag, p, q, a, g, h, b, z)
    rhs = np.asarray(rhs)
    vec = rhs.ndim == 1 or rhs.ndim == len(batch) + 1
    f = (rhs[..., None] if vec else rhs).astype(np.complex128)
    f = np.broadcast_to(f, batch + f.shape[-2:]).reshape((alpha.shape[0],) + f.shape[-2:])
    d, qt, hh = _ldu(alpha, p, q, a, g, h, b)
    B, k = alpha.shape[0], f.shape[-1]
    c = np.empty((B, n, k), np.complex128)
    st = np.zeros((B, p.shape[2], k), np.complex128)
    for i in range(n):
        c[:, i] = f[:, i] - np.einsum("br,brk->bk", p[:, i], st)
        st = np.einsum("brs,bsk->brk", a[:, i], st) + qt[:, i, :, None] * c[:, i, None, :]
    w = c / d[:, :, None]
    x = np.empty_like(w)
    st = np.zeros((B, g.shape[2], k), np.complex128)
    for i in range(n - 1, -1, -1):
        x[:, i] = w[:, i] - np.einsum("br,brk->bk", hh[:, i], st)
        st = np.einsum("bsr,bsk->brk", b[:, i], st) + g[:, i, :, None] * x[:, i, None, :]
    out = x.reshape(batch + (n, k))
    return out[..., 0] if vec else out


def sequential_qsm_resolvent_diagonal(diag, p, q, a, g=None, h=None, b=None, z=0.0):
    """``diag((S - z I)^{-1})`` (..., N) from ``Z = U'^{-1} D^{-1} L^{-1}``:
    ``Z_ii = 1/d_i + hh_i^T Phi_i qt_i`` with ``Phi_i = sum_{k>i} Bh_{k,i}^T g_k p_k^T
    Ah_{k,i} / d_k`` over the transitions ``ah = a - qt p^T``, ``bh = b - hh g^T`` of the
    inverse unit factors."""
    alpha, p, q, a, g, h, b, batch, n = _layout(diag, p, q, a, g, h, b, z)
    d, qt, hh = _ldu(alpha, p, q, a, g, h, b)
    B = alpha.shape[0]
    Phi = np.zeros((B, g.shape[2], p.shape[2]), np.complex128)
    out = np.empty((B, n), np.complex128)
    for i in range(n - 1, -1, -1):
        out[:, i] = 1 / d[:, i] + np.einsum("br,brs,bs->b", hh[:, i], Phi, qt[:, i])
        ah = a[:, i] - qt[:, i, :, None] * p[:, i, None, :]
        bh = b[:, i] - hh[:, i, :, None] * g[:, i, None, :]
        Phi = (np.einsum("bsr,bst,btu->bru", bh, Phi, ah)
               + g[:, i, :, None] * p[:, i, None, :] / d[:, i, None, None])
    return out.reshape(batch + (n,))


def sequential_qsm_matvec(diag, p, q, a, g=None, h=None, b=None, x=None):
    """``S x`` for x (..., N) or (..., N, k), by the forward and backward state sums."""
    alpha, p, q, a, g, h, b, batch, n = _layout(diag, p, q, a, g, h, b)
    x = np.asarray(x)
    vec = x.ndim == 1 or x.ndim == len(batch) + 1
    xx = (x[..., None] if vec else x).astype(np.complex128)
    xx = np.broadcast_to(xx, batch + xx.shape[-2:]).reshape((alpha.shape[0],) + xx.shape[-2:])
    y = alpha[:, :, None] * xx
    B, k = alpha.shape[0], xx.shape[-1]
    st = np.zeros((B, p.shape[2], k), np.complex128)
    for i in range(n):
        y[:, i] += np.einsum("br,brk->bk", p[:, i], st)
        st = np.einsum("brs,bsk->brk", a[:, i], st) + q[:, i, :, None] * xx[:, i, None, :]
    st = np.zeros((B, g.shape[2], k), np.complex128)
    for i in range(n - 1, -1, -1):
        y[:, i] += np.einsum("br,brk->bk", h[:, i], st)
        st = np.einsum("bsr,bsk->brk", b[:, i], st) + g[:, i, :, None] * xx[:, i, None, :]
    out = y.reshape(batch + (n, k))
    return out[..., 0] if vec else out
