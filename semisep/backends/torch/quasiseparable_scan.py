"""The chunked scan form of the quasiseparable recursions (docs/mathematics.md, "The chunked scan
form of the quasiseparable recursions"): ``factor_scan``, ``solve_scan``,
``inverse_diagonal_scan`` and ``matvec_scan``, in plain torch ops on any device, with the
arguments and results of the portable loops of :mod:`semisep.backends.torch.quasiseparable`
(arrays in the kernels' layout: a leading batch axis of length B or 1; transitions with an N
axis of length N or 1).

Layout.  A length-N sequence is cut into ``nc = ceil(N/L)`` chunks of length ``L`` (padded at
the end) and laid out as ``(L, B, nc, ...)``, so that each step of a loop over ``L`` is one
batched torch op over ``batch x chunks``.  Every call is ``O(L + log nc)`` ops (one kernel
launch each on a GPU), never a loop over N.

* **Linear recursions** (the matvec's two state sweeps, the solve's two triangular sweeps,
  the inverse diagonal's ``Psi`` recursion) are affine maps ``X -> A X R + C`` of an ``r x k``
  state (``R`` the identity except for ``Psi``).  :func:`_affine_scan`: (i) per chunk, the
  composed map (products ``A_c``, ``R_c`` held as a mantissa and an integer power of two,
  renormalised every few steps and after each composition, so that a long product of
  decaying transitions never meets a growing partner as ``0 * inf``), (ii) an inclusive
  Hillis-Steele scan of the composed maps over the chunks, giving each chunk's incoming
  state, (iii) per chunk, the exact recursion from that state.
* **The factorization** (the LU state ``M``, a matrix Riccati recursion) is scanned in its
  *scattering* form: a block of rows ``[i, k)`` maps the incoming states ``(phi_i, psi_{k-1})``
  to ``(phi_k, psi_{i-1})`` by a bounded matrix ``T = [[T11, T12], [T21, T22]]`` (with
  ``T12 = -M_k`` for the leading block), blocks compose by the Redheffer star product, and
  ``M_k = T11 M_i (I + T21 M_i)^{-1} T22 - T12``.  Per chunk ``T`` is built row by row dividing
  only by the chunk's own LU pivots; a Hillis-Steele scan of star products gives the carries
  ``M`` at the chunk starts; then the exact LU step (without the guard) runs inside every
  chunk from its carry.
  Unlike the transfer-matrix (Moebius) form, whose ``2r x 2r`` products grow like ``e^{+c t}``
  and ``e^{-c t}`` together, the star product composes bounded quantities (no renormalisation).
  Rows where some chunk-local pivot falls below ``pivmin`` (a singular chunk block, impossible
  for positive-definite matrices), where a pivot falls below ``pivmin`` (the loop guards
  it), where a pivot is not finite, or where the exact recursion from chunk c's carry ends
  more than ``sqrt(eps)`` (relative) away from chunk c + 1's carry are recomputed by the
  portable loop (one host sync per factorization, which also returns the guard counts).

Gradients: autograd through the torch ops; the graph keeps ``O(N r^2)`` numbers per
recursion (each of the ``L`` steps of passes (i) and (iii) saves its ``(B, nc, r, r)``
operands; the chunk scan ``O(nc log nc r^2)``), several times the sequential kernels' exact
backward.
"""

from __future__ import annotations

import math

import torch

from .chunks import _times_pow2

__all__ = ["chunk_length", "factor_scan", "solve_scan", "inverse_diagonal_scan", "matvec_scan"]


_L_MIN, _L_MAX = 4, 16
#: pass (i) of the affine scan renormalises its products every ``_RENORM`` steps.  A one-sided
#: product that underflows to 0 between two renormalisations is harmless (its contribution is
#: below rounding); the exponents matter where a small left product meets a large right one.
_RENORM = 8


def chunk_length(n: int) -> int:
    """``L = 2^round(log2 sqrt(N))`` clipped to [4, 16].  A call costs about ``c1 L + c2
    log2(N/L)`` ops with ``c1`` (the ops of one step of passes (i) and (iii), ~60 for the
    factorization) close to ``c2`` (the ops of one level of the chunk scan, ~50), so short
    chunks minimise the launches; the scan's extra work ``O((N/L) log(N/L))`` keeps L from 1.
    Beyond ``N = 2^8`` the chunk count grows instead, and the op count grows like
    ``log2 N``."""
    if n <= 1:
        return _L_MIN
    return int(min(_L_MAX, max(_L_MIN, 2 ** round(0.5 * math.log2(n)))))


# --------------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------------
class _Layout:
    """Chunking of a length-``n`` axis into ``nc`` chunks of length ``L``."""

    def __init__(self, n: int, L: int | None):
        self.n = n
        self.L = chunk_length(n) if L is None else max(1, int(L))
        self.nc = max(1, -(-n // self.L))

    def put(self, x: torch.Tensor, fill: float = 0.0, rows: int = 1) -> torch.Tensor:
        """``(B, N, *tail) -> (L, B', nc, *tail)`` with the batch axis expanded to ``rows``
        (``B' = max(B, rows)``), contiguous, so that the per-step batched products need no
        broadcasting copies; an N axis of length 1 (a transition shared by every step,
        N > 1) -> ``(1, B', nc, *tail)``, repeated by :func:`_steps`."""
        if x.shape[0] < rows:
            x = x.expand((rows,) + tuple(x.shape[1:]))
        B, m = x.shape[0], x.shape[1]
        tail = tuple(x.shape[2:])
        if m != self.n:
            return x.reshape((1, B, 1) + tail).expand((1, B, self.nc) + tail).contiguous()
        pad = self.nc * self.L - self.n
        if pad:
            x = torch.cat([x, x.new_full((B, pad) + tail, fill)], 1)
        return x.reshape((B, self.nc, self.L) + tail).movedim(2, 0).contiguous()

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """``(L, B, nc, *tail) -> (B, N, *tail)``."""
        B = x.shape[1]
        return x.movedim(0, 2).reshape((B, self.nc * self.L) + tuple(x.shape[3:]))[:, :self.n]


def _steps(x: torch.Tensor, L: int) -> list[torch.Tensor]:
    """The ``L`` steps of a laid-out tensor (a shared one repeated), as one ``unbind``: its
    backward is one stack, where ``x[t]`` per step would scatter into a full-size zero
    gradient ``L`` times."""
    return list(x.unbind(0)) if x.shape[0] > 1 else [x[0]] * L


def _rows(*xs: torch.Tensor) -> int:
    return max(x.shape[0] for x in xs)


def _flip(x: torch.Tensor, n: int) -> torch.Tensor:
    """Reverse the N axis (a shared transition, N axis of length 1, is left alone)."""
    return x.flip(1) if x.shape[1] == n and n > 1 else x


# --------------------------------------------------------------------------------------------
# renormalised products: a mantissa with max |entry| in [1/2, 1) and an integer exponent
# --------------------------------------------------------------------------------------------
def _real(dtype: torch.dtype) -> torch.dtype:
    return torch.empty((), dtype=dtype).real.dtype


def _normalise(P: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``P 2^e`` as ``(P 2^-k, e + k)`` with ``2^k > max|P|`` per matrix (exact; ``k`` at least
    the smallest normal exponent, so the factor ``2^-k`` is finite)."""
    m = torch.view_as_real(P).abs().amax(dim=(-3, -2, -1)) if P.is_complex() \
        else P.abs().amax(dim=(-2, -1))
    k = torch.frexp(m.clamp_min(torch.finfo(m.dtype).tiny))[1].to(e.dtype)
    return P * torch.exp2(-k)[..., None, None], e + k


def _ldexp(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``x 2^e`` for matrices ``x`` (``e`` per matrix) by the chunked scan's exact power-of-two
    product :func:`~semisep.backends.torch.chunks._times_pow2` (``0 * 2^e = 0``, no
    intermediate over/underflow where the product has none)."""
    return _times_pow2(x, e.to(torch.int64)[..., None, None])


# --------------------------------------------------------------------------------------------
# the affine scan X_{s+1} = A_s X_s R_s + C_s, X_0 = 0
# --------------------------------------------------------------------------------------------
def _affine_scan(A: torch.Tensor, C: torch.Tensor, R: torch.Tensor | None = None) -> torch.Tensor:
    """States before every step, ``(L, B, nc, r, k)``, of ``X -> A_s X R_s + C_s`` from
    ``X = 0`` along the flattened (chunk, step) order.

    ``A (L or 1, B or 1, nc or 1, r, r)``, ``C (L, B, nc, r, k)``, ``R`` like ``A`` with
    ``k x k`` matrices, or None (the identity)."""
    L, B, nc = C.shape[0], C.shape[1], C.shape[2]
    r, k = C.shape[-2], C.shape[-1]
    rdt = _real(C.dtype)
    As, Cs = _steps(A, L), _steps(C, L)
    Rs = None if R is None else _steps(R, L)
    # (i) per chunk: P = A_{L-1} ... A_0, Q = R_0 ... R_{L-1}, Z = the chunk's map applied to 0
    Z = Cs[0]
    P = As[0].expand(B, nc, r, r)
    Q = None if Rs is None else Rs[0].expand(B, nc, k, k)
    eP = eQ = torch.zeros((B, nc), dtype=rdt, device=C.device)
    for t in range(1, L):
        At = As[t]
        Z = At @ Z + Cs[t] if Rs is None else At @ Z @ Rs[t] + Cs[t]
        P = At @ P
        if Q is not None and Rs is not None:
            Q = Q @ Rs[t]
        if t % _RENORM == 0 or t == L - 1:
            P, eP = _normalise(P, eP)
            if Q is not None:
                Q, eQ = _normalise(Q, eQ)
    if L == 1:
        P, eP = _normalise(P, eP)
        if Q is not None:
            Q, eQ = _normalise(Q, eQ)
    # (ii) inclusive Hillis-Steele scan over the chunks: (P, Q, Z) of chunks 0..c
    s = 1
    while s < nc:
        Pl, Zl = P[:, :-s], Z[:, :-s]
        Pr, Zr = P[:, s:], Z[:, s:]
        if Q is None:
            Zn = _ldexp(Pr @ Zl, eP[:, s:]) + Zr
        else:
            Zn = _ldexp(Pr @ Zl @ Q[:, s:], eP[:, s:] + eQ[:, s:]) + Zr
            Qn, eQn = _normalise(Q[:, :-s] @ Q[:, s:], eQ[:, :-s] + eQ[:, s:])
            Q = torch.cat([Q[:, :s], Qn], 1)
            eQ = torch.cat([eQ[:, :s], eQn], 1)
        Pn, ePn = _normalise(Pr @ Pl, eP[:, s:] + eP[:, :-s])
        P = torch.cat([P[:, :s], Pn], 1)
        eP = torch.cat([eP[:, :s], ePn], 1)
        Z = torch.cat([Z[:, :s], Zn], 1)
        s *= 2
    # (iii) from each chunk's incoming state, the exact recursion
    X = torch.cat([torch.zeros_like(Z[:, :1]), Z[:, :-1]], 1)
    out = [X]
    for t in range(L - 1):
        At = As[t]
        X = At @ X + Cs[t] if Rs is None else At @ X @ Rs[t] + Cs[t]
        out.append(X)
    return torch.stack(out, 0)


def _outer(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u[..., :, None] * v[..., None, :]


def _mv(A: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (A @ x[..., None])[..., 0]


def _sweep(lay: _Layout, P: torch.Tensor, Q: torch.Tensor, A: torch.Tensor,
           f: torch.Tensor, d: torch.Tensor | None) -> torch.Tensor:
    """Forward sweep ``y_i = (f_i - P_i . phi_i)/d_i``, ``phi_{i+1} = A_i phi_i + Q_i y_i``
    (``d`` None: no division), as the affine scan with ``A_i - Q_i P_i^T/d_i``; returns ``y``
    ``(B, N, k)``."""
    if d is None:
        Ah = A - _outer(Q, P)
        C = Q[..., :, None] * f[..., None, :]
    else:
        Ah = A - _outer(Q / d[..., None], P)
        C = (Q / d[..., None])[..., :, None] * f[..., None, :]
    B = max(Ah.shape[0], C.shape[0])
    phi = lay.take(_affine_scan(lay.put(Ah, rows=B), lay.put(C, rows=B)))
    y = f - (P[..., :, None] * phi).sum(-2)
    return y if d is None else y / d[..., None]


# --------------------------------------------------------------------------------------------
# the engine functions
# --------------------------------------------------------------------------------------------
def matvec_scan(alpha, p, q, a, g, h, b, x, L: int | None = None):
    """``A x`` (``x (B, N, k)``): the forward state ``f`` and backward state ``e`` by two
    affine scans."""
    n = x.shape[1]
    B = _rows(alpha, p, q, a, g, h, b, x)
    lay = _Layout(n, L)
    x = x.to(alpha.dtype)
    y = (alpha[..., None] * x).expand(B, n, x.shape[2])
    if p.shape[2]:
        f = lay.take(_affine_scan(lay.put(a, rows=B), lay.put(q[..., :, None] * x[..., None, :], rows=B)))
        y = y + (p[..., :, None] * f).sum(-2)
    if g.shape[2]:
        fl = [_flip(t, n) for t in (g, h, b, x)]
        e = lay.take(_affine_scan(lay.put(fl[2].mT, rows=B),
                                  lay.put(fl[0][..., :, None] * fl[3][..., None, :], rows=B)))
        y = y + _flip((fl[1][..., :, None] * e).sum(-2), n)
    return y


def solve_scan(d, qt, ht, p, a, g, b, f, transpose=False, L: int | None = None):
    """``A^{-1} f`` from the factors (``transpose``: ``A^{-T} f``): the two triangular sweeps
    of :func:`semisep.backends.torch.quasiseparable.solve_loop` as affine scans."""
    if transpose:
        P1, Q1, A1, P2, Q2, A2 = g, ht, b, qt, p, a
    else:
        P1, Q1, A1, P2, Q2, A2 = p, qt, a, ht, g, b
    n = f.shape[1]
    lay = _Layout(n, L)
    f = f.to(d.dtype)
    B = _rows(d, qt, ht, p, a, g, b, f)
    f = f.expand(B, n, f.shape[2])
    y = _sweep(lay, P1, Q1, A1, f, d if transpose else None) if P1.shape[2] else (
        f / d[..., None] if transpose else f)
    fl = [_flip(t, n) for t in (P2, Q2, A2, y, d)]
    if P2.shape[2]:
        x = _sweep(lay, fl[0], fl[1], fl[2].mT, fl[3], None if transpose else fl[4])
    else:
        x = fl[3] if transpose else fl[3] / fl[4][..., None]
    return _flip(x, n)


def inverse_diagonal_scan(d, qt, ht, p, a, g, b, L: int | None = None):
    """``diag(A^{-1})``: ``G_i = (1 + ht_i . Psi_i qt_i)/d_i`` with the backward recursion
    ``Psi_{i-1} = bh_i^T Psi_i ah_i + g_i p_i^T/d_i`` as a two-sided affine scan."""
    n = d.shape[1]
    B = _rows(d, qt, ht, p, a, g, b)
    inv = 1 / d
    if p.shape[2] == 0 or g.shape[2] == 0:
        return inv.expand(B, n)
    ah = a - _outer(qt, p)
    bh = b - _outer(ht * inv[..., None], g)
    C = _outer(g, p * inv[..., None])
    lay = _Layout(n, L)
    fl = [_flip(t, n) for t in (bh, ah, C)]
    Psi = _flip(lay.take(_affine_scan(lay.put(fl[0].mT, rows=B), lay.put(fl[2], rows=B),
                                      lay.put(fl[1], rows=B))), n)
    G = (1 + (ht * _mv(Psi, qt)).sum(-1)) * inv
    return G.expand(B, n)


# --------------------------------------------------------------------------------------------
# the factorization: scattering matrices of chunks, their star-product scan, the LU step
# --------------------------------------------------------------------------------------------
def _chunk_scattering(lay, B, alpha, p, q, a, g, h, b, pivmin):
    """Per chunk the scattering matrix ``(T11, T12, T21, T22)`` ``(B, nc, .)`` built row by row
    (docs/mathematics.md), and a ``(B,)`` flag: some chunk-local pivot below ``pivmin``."""
    al, pl, ql, gl, hl, aa, bb = (_steps(lay.put(x, 1.0 if x is alpha else 0.0, rows=B), lay.L)
                                  for x in (alpha, p, q, g, h, a, b))
    nc = lay.nc
    valid = _steps(lay.put(torch.ones((1, lay.n), dtype=torch.bool, device=alpha.device), False),
                   lay.L)
    rl, ru = p.shape[2], g.shape[2]
    dt, dev = alpha.dtype, alpha.device
    V11 = torch.eye(rl, dtype=dt, device=dev).expand(B, nc, rl, rl)
    V22 = torch.eye(ru, dtype=dt, device=dev).expand(B, nc, ru, ru)
    V12 = alpha.new_zeros((B, nc, rl, ru))
    V21 = alpha.new_zeros((B, nc, ru, rl))
    small = torch.zeros((B, nc), dtype=torch.bool, device=dev)
    piv = pivmin.to(dev)[:, None]
    for t in range(lay.L):
        pt, gt, at, bt = pl[t], gl[t], aa[t], bb[t]
        V12g = _mv(V12, gt)
        s = al[t] + (pt * V12g).sum(-1)
        small = small | ((s.abs() < piv) & valid[t])
        u = _mv(V11.mT, pt) / s[..., None]
        w = hl[t] + _mv(bt, _mv(V12.mT, pt))
        e = ql[t] + _mv(at, V12g)
        k = _mv(V22, gt)
        V11 = at @ V11 - _outer(e, u)
        V12 = at @ V12 @ bt.mT - _outer(e / s[..., None], w)
        V21 = V21 - _outer(k, u)
        V22 = V22 @ bt.mT - _outer(k / s[..., None], w)
    return (V11, V12, V21, V22), small.any(1)


def _star(T, U):
    """The Redheffer star product: block ``T`` followed by block ``U`` (to its right)."""
    T11, T12, T21, T22 = T
    U11, U12, U21, U22 = U
    rl = T11.shape[-1]
    eye = torch.eye(rl, dtype=T11.dtype, device=T11.device)
    Z = torch.linalg.solve_ex(eye - T12 @ U21, torch.cat([T11, T12 @ U22], -1))[0]
    ZT, ZU = Z[..., :rl], Z[..., rl:]
    return (U11 @ ZT, U12 + U11 @ ZU, T21 + T22 @ (U21 @ ZT), T22 @ (U22 + U21 @ ZU))


def _carries(T):
    """``M`` at every chunk start, ``(B, nc, rl, ru)``: minus the ``T12`` block of the star
    product of the chunks before it (a Hillis-Steele scan)."""
    nc = T[0].shape[1]
    s = 1
    while s < nc:
        new = _star(tuple(x[:, :-s] for x in T), tuple(x[:, s:] for x in T))
        T = tuple(torch.cat([x[:, :s], y], 1) for x, y in zip(T, new, strict=True))
        s *= 2
    T12 = T[1]
    return torch.cat([torch.zeros_like(T12[:, :1]), -T12[:, :-1]], 1)


def _absmax(x: torch.Tensor) -> torch.Tensor:
    """``max |Re|, |Im|`` over all but the leading axis."""
    x = x.detach()
    x = torch.view_as_real(x) if x.is_complex() else x
    return x.abs().flatten(1).amax(1) if x[0].numel() else x.new_zeros(x.shape[0])


def _finite_rows(x: torch.Tensor) -> torch.Tensor:
    x = x.detach()
    return torch.isfinite(torch.view_as_real(x) if x.is_complex() else x).flatten(1).all(1)


def _carry_mismatch(M_end: torch.Tensor, M_in: torch.Tensor) -> torch.Tensor:
    """Per row, ``max_c |M_end[c] - M_in[c+1]|`` relative to ``max |M_in|`` (0 for one chunk)."""
    if M_in.shape[1] < 2 or M_in[0].numel() == 0:
        return M_in.new_zeros(M_in.shape[0], dtype=_real(M_in.dtype))
    diff = _absmax(M_end[:, :-1] - M_in[:, 1:])
    return diff / _absmax(M_in).clamp_min(torch.finfo(diff.dtype).tiny)


def _tol(d: torch.Tensor) -> float:
    return float(torch.finfo(_real(d.dtype)).eps) ** 0.5


def factor_scan(alpha, p, q, a, g, h, b, pivmin, L: int | None = None):
    """``(d, qt, ht, guarded (NumPy), last_small (NumPy), delta)`` as
    :func:`semisep.backends.torch.quasiseparable.factor_loop`, by the chunked scan (module
    docstring); rows it cannot take are recomputed by the loop."""
    from .quasiseparable import factor_loop

    n = alpha.shape[1]
    B = _rows(alpha, p, q, a, g, h, b)
    rl, ru = p.shape[2], g.shape[2]
    piv = pivmin.to(alpha.device).expand(B)
    lay = _Layout(n, L)
    if rl and ru and n:
        T, local_small = _chunk_scattering(lay, B, alpha, p, q, a, g, h, b, piv)
        M = _carries(T)
    else:
        local_small = torch.zeros(B, dtype=torch.bool, device=alpha.device)
        M = alpha.new_zeros((B, lay.nc, rl, ru))
    M_in = M
    al, pl, ql, gl, hl, aa, bb = (_steps(lay.put(x, 1.0 if x is alpha else 0.0, rows=B), lay.L)
                                  for x in (alpha, p, q, g, h, a, b))
    ds, qts, hts = [], [], []
    for t in range(lay.L):
        # the LU step without the guard: a row with a pivot below pivmin goes to the loop
        at, bt = aa[t], bb[t]
        u = _mv(M, gl[t])
        v = _mv(M.mT, pl[t])
        s = al[t] - (pl[t] * u).sum(-1)
        qt = (ql[t] - _mv(at, u)) / s[..., None]
        ht = hl[t] - _mv(bt, v)
        M = at @ M @ bt.mT + _outer(qt, ht)
        ds.append(s)
        qts.append(qt)
        hts.append(ht)
    M_end = M
    d = lay.take(torch.stack(ds, 0))
    mag = d.detach().abs()
    delta = torch.zeros_like(d.detach())
    last = mag[:, -1] < 4.0 * piv if n else torch.zeros_like(local_small)
    out = [d, lay.take(torch.stack(qts, 0)), lay.take(torch.stack(hts, 0)), delta]
    # rows the scan cannot take: a singular chunk block, a non-finite or inaccurate carry (the
    # exact recursion from chunk c's carry must end where the scan's carry of chunk c + 1
    # starts, to sqrt(eps) relative), a guarded pivot
    gsum = (mag < piv[:, None]).sum(1)
    bad = local_small | (gsum > 0) | ~_finite_rows(d) | (_carry_mismatch(M_end, M_in) > _tol(d))
    flags = torch.stack([gsum, last.to(torch.int64), bad.to(torch.int64)]).cpu().numpy()
    g_np, last_np, bad_np = flags[0], flags[1].astype(bool), flags[2].astype(bool)
    if bad_np.any():
        rows = torch.as_tensor(bad_np.nonzero()[0], device=alpha.device)
        s0, s1, s2, s3, s4, s5, s6 = (x if x.shape[0] == 1 else x[rows]
                                      for x in (alpha, p, q, a, g, h, b))
        ld, lqt, lht, lg, lls, ldel = factor_loop(s0, s1, s2, s3, s4, s5, s6, piv[rows])
        out = [x.clone() for x in out]
        for x, y in zip(out, (ld, lqt, lht, ldel), strict=True):
            x[rows] = y
        g_np[bad_np] = lg
        last_np[bad_np] = lls
    d, qt, ht, delta = out
    return d, qt, ht, g_np, last_np, delta
