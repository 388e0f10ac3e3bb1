"""The task functions of the Dask backend: plain functions of NumPy blocks (picklable, so
that ``dask.distributed`` workers run them), each touching one chunk or a few numbers.

Blocks: ``alpha (B, C)`` the chunk's diagonal of ``A = T - z I``; ``betaL (B, C)`` the coupling
entering each left-to-right step (``betaL[:, j] = beta_{s+j-1}``, zero at ``s + j = 0``);
``beta_out (B,)`` the coupling after the chunk (``beta_e``, zero for the last chunk);
``pm (B,)`` the pivot guard.  The scan's states are those of
:mod:`semisep.backends.numpy.chunks`: ``v (B, 2)`` with ``g = v[:, 1] / v[:, 0]`` the pivot
ratio entering the chunk; the second passes take the carry ratios ``gL, gR (B,)`` themselves
(repaired by :mod:`._repair`), None at the chain's ends.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ...errors import SingularMatrixError


def _chunks():
    from ..numpy import chunks

    return chunks


def first_column(betaL: np.ndarray) -> np.ndarray:
    """``betaL[:, 0]``: the coupling ``beta_{s-1}`` into a chunk (the previous one's ``beta_out``)."""
    return np.ascontiguousarray(betaL[:, 0])


def _normalise(v: np.ndarray) -> np.ndarray:
    """``v (B, m)`` scaled per row by a power of two to a largest component in [1, 2) (exact;
    zero or non-finite rows are left as they are)."""
    m = np.maximum(np.abs(v.real), np.abs(v.imag)).max(axis=tuple(range(1, v.ndim)))
    ok = (m > 0) & np.isfinite(m)
    e = np.frexp(np.where(ok, m, 1.0))[1]
    s = np.where(ok, np.ldexp(1.0, 1 - e), 1.0)
    return v * s.reshape((-1,) + (1,) * (v.ndim - 1))


def transfer(alpha, betaL, beta_out, sides: str, active=None, shift=None):
    """``(ML, MR)``: the chunk's left / right transfer matrices ``(B, 2, 2)`` (None for a side
    not in ``sides``).  ``active (B,)`` bool: the result is needed only where True; when no row
    is active the pass is skipped and ``(None, None)`` returned.  ``shift (B,)``: ``alpha`` is
    ``diag - shift`` (``alpha`` then holds ``T``'s diagonal)."""
    if active is not None and not np.any(active):
        return None, None
    ch = _chunks()
    ML = ch.transfer_matrices(alpha, betaL, beta_out, shift) if "L" in sides else None
    MR = ch.transfer_matrices(alpha, betaL, beta_out, shift, reverse=True) if "R" in sides else None
    return ML, MR


def pick(pair, i: int):
    return pair[i]


# -- the pivot guard's reductions: one read of a block, no temporaries ---------------------------
def amax_parts(x: np.ndarray) -> tuple:
    """``(max(max|Re x|, max|Im x|),)`` along the last axis (NaN where the block has one)."""
    out = None
    for p in ((x.real, x.imag) if np.iscomplexobj(x) else (x,)):
        m = np.maximum(np.max(p, axis=-1), -np.min(p, axis=-1))
        out = m if out is None else np.maximum(out, m)
    return (out,)


def max_of(*parts) -> tuple:
    """:func:`amax_parts` of several blocks combined."""
    return (functools.reduce(np.maximum, [p[0] for p in parts]),)


def lo_hi(x: np.ndarray) -> tuple:
    """``(min, max)`` along the last axis."""
    return np.min(x, axis=-1), np.max(x, axis=-1)


def lo_hi_of(*parts) -> tuple:
    """:func:`lo_hi` of several blocks combined."""
    return (functools.reduce(np.minimum, [p[0] for p in parts]),
            functools.reduce(np.maximum, [p[1] for p in parts]))


# -- scans over the chunks' few numbers --------------------------------------------------------
def _apply(kind: str, m, s):
    if kind == "moebius":
        if s is None:  # the chain's start: (p_{-1}, p_{-2}) = (1, 0)
            s = np.zeros(m.shape[:1] + (2,), m.dtype)
            s[:, 0] = 1
        return _normalise(np.einsum("bij,bj->bi", m, s))
    P, y = m
    if s is None:
        return y.copy()
    return P[:, None] * s + y


def _compose(kind: str, a, b):
    """The map ``b o a`` (``a`` first)."""
    if kind == "moebius":
        return _normalise(b @ a)
    return a[0] * b[0], b[0][:, None] * a[1] + b[1]


def seq_scan(kind: str, init, *maps):
    """States entering each map: ``s_0 = init``, ``s_{j+1} = maps[j](s_j)``; a tuple of
    ``len(maps)`` states.  ``init`` None: the chain's own start.  Skipped passes (a None map)
    give None states."""
    if any(m is None for m in maps):
        return (None,) * len(maps)
    out = []
    s = init
    for m in maps:
        out.append(s)
        s = _apply(kind, m, s)
    return tuple(out)


def compose_all(kind: str, *maps):
    """The composed map of a group of consecutive maps (first to last)."""
    if any(m is None for m in maps):
        return None
    acc = maps[0]
    for m in maps[1:]:
        acc = _compose(kind, acc, m)
    return acc


def carry_ratio(v: np.ndarray, pm: np.ndarray) -> np.ndarray:
    """The pivot ratio ``g = v1 / v0`` entering a chunk, guarded like a pivot: where the pivot
    ``d = v0 / v1`` has ``|d| < pm`` (or the state vanishes), ``g = 1/(pm * d/|d|)``."""
    v0, v1 = v[:, 0], v[:, 1]
    pm = pm.astype(np.abs(v0).dtype)
    small = (np.abs(v0) < pm * np.abs(v1)) | ((v0 == 0) & (v1 == 0))
    ph = v0 * np.conj(v1)
    a = np.abs(ph)
    ph = np.where(a == 0, 1.0, ph / np.where(a == 0, 1.0, a))
    return np.where(small, 1.0 / (pm * ph), v1 / np.where(small, 1.0, v0))


def ratio(v, pm):
    """:func:`carry_ratio` of a scanned state; None (the chain's end, or a skipped pass) stays."""
    return None if v is None else carry_ratio(v, pm)


def fold_carries(alpha, betaL, beta_out, gL, gR):
    """``alpha'`` with the carry ratios ``gL, gR (B,)`` folded into the chunk's ends (module
    docstring of :mod:`semisep.backends.numpy.chunks`); None at the chain's ends."""
    dt = np.result_type(alpha.dtype, betaL.dtype, *(g.dtype for g in (gL, gR) if g is not None))
    ap = np.array(alpha, dtype=dt, copy=True)
    if gL is not None:
        ap[:, 0] -= betaL[:, 0] * gL
    if gR is not None:
        ap[:, -1] -= beta_out * gR
    return ap


def _raise(what: str, singular: np.ndarray, row0: int) -> None:
    if np.any(singular):
        r = row0 + int(np.argmax(singular))
        raise SingularMatrixError(
            f"{what}: T - z I is singular to working precision at batch row {r} "
            f"({int(np.sum(singular))} singular rows in this block of the batch)"
        )


# -- resolvent diagonal ----------------------------------------------------------------------
def resolvent_chunk(alpha, betaL, beta_out, gL, gR, pm, row0: int, raise_singular: bool, shift=None):
    """The chunk's slice of ``diag(A^{-1})`` with the whole-chain kernel on ``alpha'``:
    ``(G (B, C), guarded (B,), singular (B,))``.  ``raise_singular``: raise
    :class:`SingularMatrixError` here when a row is singular (``|1/G_ii| < 4 pm``).
    ``shift (B,)``: ``alpha`` holds ``T``'s diagonal and ``A``'s is ``alpha - shift``, formed in
    the kernel's registers (the carries are folded into the diagonal's two end entries)."""
    from ..numpy import resolvent_diagonal_kernel, resolvent_diagonal_shifted_kernel

    if shift is None:
        ap = fold_carries(alpha, betaL, beta_out, gL, gR)
        G, guarded, singular = resolvent_diagonal_kernel(ap, betaL[:, 1:], pm)
    else:
        diag = alpha
        if gL is not None or gR is not None:
            dt = np.result_type(alpha.dtype, shift.dtype, betaL.dtype)
            diag = fold_carries(alpha.astype(dt), betaL, beta_out, gL, gR)
        G, guarded, singular = resolvent_diagonal_shifted_kernel(diag, shift, betaL[:, 1:], pm)
    if raise_singular:
        _raise("resolvent_diagonal", singular, row0)
    return G, guarded, singular


def certificate_chunk(alpha, betaL, beta_out, gL, gR, pm, active):
    """resolvent_diagonal's singularity certificate on one chunk for the ``active`` rows:
    ``(B,)`` bool (all False, without work, when no row is active)."""
    if not np.any(active):
        return np.zeros(alpha.shape[0], bool)
    _, _, singular = resolvent_chunk(alpha, betaL, beta_out, gL, gR, pm, 0, False)
    return singular & active


# -- logdet ----------------------------------------------------------------------------------
def left_chunk(alpha, betaL, beta_out, gL, pm, last: bool, want_gL: bool):
    """The guarded left sweep over the chunk from its carry ratio ``gL``: ``(gL or None,
    logabs, phase, guarded, singular)`` (:func:`semisep.backends.numpy.chunks.left_chunk`)."""
    ap = fold_carries(alpha, betaL, beta_out, gL, None)
    return _chunks().left_chunk(ap, betaL[:, 1:], beta_out, pm, last, want_gL=want_gL)


def logdet_partial(alpha, betaL, beta_out, gL, pm, last: bool):
    """``(logabs, phase, guarded, singular)`` of one chunk, each ``(B,)``."""
    return left_chunk(alpha, betaL, beta_out, gL, pm, last, False)[1:]


def sum_partials(*parts):
    """Chunk summaries ``(logabs, phase, guarded, singular)`` added up (phases multiplied)."""
    logabs, phase, guarded, singular = parts[0]
    for la, ph, gd, sg in parts[1:]:
        logabs = logabs + la
        phase = phase * ph
        phase = phase / np.abs(phase)
        guarded = guarded + gd
        singular = singular | sg
    return logabs, phase, guarded, singular


def needs_certificate(summary) -> np.ndarray:
    """Rows whose left sweep guarded a pivot and is not already judged singular."""
    _, _, guarded, singular = summary
    return (guarded > 0) & ~singular


def logdet_final(summary, cert, row0: int):
    """``log det A (B,)`` complex with the imaginary part in (-pi, pi]; raises
    :class:`SingularMatrixError` for a singular row."""
    logabs, phase, _, singular = summary
    _raise("logdet", singular | cert, row0)
    cdtype = np.result_type(logabs.dtype, np.complex64)
    return (logabs + 1j * np.angle(phase)).astype(cdtype)


def summary_field(summary, i: int):
    return summary[i]


# -- solve -----------------------------------------------------------------------------------
def solve_forward(alpha, betaL, beta_out, cL, f, g_carry, pm, last: bool):
    """Pass A of the solve on one chunk: the pivots ``gL``, the forward multipliers
    ``m_i = -c_{i-1} gL_{i-1}`` and the forward values ``y0`` from a zero carry.  Returns a
    dict (kept on the worker) holding them, the flags and the summary ``(P, y0_e)``."""
    ch = _chunks()
    pm_ = pm
    gL, _, _, guarded, singular = left_chunk(alpha, betaL, beta_out, g_carry, pm_, last, True)
    g_in = g_carry if g_carry is not None else np.zeros(alpha.shape[0], gL.dtype)
    gprev = np.concatenate([g_in[:, None], gL[:, :-1]], axis=1)
    m = -cL * gprev
    fd = f.astype(np.result_type(f.dtype, gL.dtype), copy=False)
    y0, P = ch.affine_chunk(m, fd, np.zeros((f.shape[0], f.shape[2]), fd.dtype))
    return {"gL": gL, "m": m, "f": fd, "summary": (P, y0[:, -1]), "flags": (guarded, singular)}


def solve_backward(state, y_in, bL, b_out):
    """Pass B: the forward values ``y`` from the carry ``y_in``; the back multipliers
    ``mb_i = -gL_i b_i`` and right-hand side ``gL_i y_i``, and the back values from a zero
    carry.  Returns a dict with the summary ``(Q, x0_s)``."""
    ch = _chunks()
    gL, m, f = state["gL"], state["m"], state["f"]
    carry = np.zeros((f.shape[0], f.shape[2]), f.dtype) if y_in is None else y_in
    y, _ = ch.affine_chunk(m, f, carry)
    b = np.concatenate([bL[:, 1:], b_out[:, None].astype(bL.dtype)], axis=1)
    mb = -gL * b
    fb = gL[:, :, None] * y
    x0, Q = ch.affine_chunk(mb, fb, np.zeros_like(carry), reverse=True)
    return {"mb": mb, "fb": fb, "summary": (Q, x0[:, 0])}


def solve_final(state, x_in, singular, row0: int):
    """Pass C: the chunk's slice of ``x`` from the carry ``x_in``; raises
    :class:`SingularMatrixError` for a singular row."""
    _raise("solve", singular, row0)
    mb, fb = state["mb"], state["fb"]
    carry = np.zeros((fb.shape[0], fb.shape[2]), fb.dtype) if x_in is None else x_in
    return _chunks().affine_chunk(mb, fb, carry, reverse=True)[0]


def get(d: dict, key: str) -> Any:
    return d[key]


def any_flags(*flags):
    """``(guarded (B,), singular (B,))`` of the chunks, summed / or'ed."""
    guarded = sum(f[0] for f in flags)
    singular = np.logical_or.reduce([f[1] for f in flags])
    return guarded, singular


def or_(a, b):
    return a | b


def any_of(*flags):
    """Row flags ``(B,)`` of several chunks, or'ed."""
    return np.logical_or.reduce(flags)


def flags_of(res):
    """``(guarded, singular)`` of a resolvent chunk result."""
    return res[1], res[2]


def needs_certificate_flags(flags) -> np.ndarray:
    """Rows whose left sweep guarded a pivot and is not already judged singular."""
    return (flags[0] > 0) & ~flags[1]


def zero_column(x):
    """``(B,)`` zeros in ``x``'s dtype: the coupling after the chain's last element."""
    return np.zeros(x.shape[0], x.dtype)
