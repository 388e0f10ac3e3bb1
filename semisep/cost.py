"""Exact byte and FLOP accounting for semisep's operators and algorithms.

Every function here is pure (integers in, integers or dicts out) and states its counting rule.
The tests (``tests/test_cost.py``) check each count against something measured: array sizes
(``.nbytes``), the bytes torch keeps for backward (``torch.autograd.graph.saved_tensors_hooks``)
and operation counts of instrumented implementations of the algorithms.

Byte-counting rules
-------------------
* An array of shape ``s`` and dtype ``d`` takes ``prod(s) * itemsize(d)`` bytes; complex
  dtypes take twice their real part's itemsize (complex64: 8, complex128: 16).
* Broadcast arrays count once, at the shape they are *stored* with (an operator built from a
  ``(N-1,)`` off-diagonal and a ``(B, N)`` diagonal holds ``(N-1) + B N`` numbers).
* "Saved for backward" counts each distinct storage torch keeps alive for the backward pass once
  (the measurement dedupes by storage, as the allocator does).

FLOP-counting rules (one flop = one real floating-point operation)
-------------------------------------------------------------------

::

    ==========================  ======  =============================================================
    operation                   flops   note
    ==========================  ======  =============================================================
    real  +, -, *, /            1
    complex + complex           2
    real +/- complex            1       only the real part changes
    real * complex              2
    complex * complex           6       4 mul + 2 add
    1 / complex                 5       ``conj(x) / (x.re^2 + x.im^2)``: 2 mul + 1 add + 2 div
    complex / real              2
    real / complex              7       reciprocal (5) then real * complex (2)
    complex / complex           11      ``|y|^2`` (3) + ``x * conj(y)`` (6) + 2 div
    negation, conj, copies      0
    complex log                 6       ``log|x|^2`` (2 mul + add + log) + halving + ``atan2``
    ==========================  ======  =============================================================

"complex" below means the shifted matrix ``A = T - z I`` is complex (complex ``z`` or complex
``T``); ``complex=False`` counts the same algorithm in real arithmetic.  Counts are per batch row;
multiply by the number of rows.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "itemsize",
    "complex_dtype_of",
    "array_nbytes",
    "tridiagonal_nbytes",
    "lowrank_nbytes",
    "dense_nbytes",
    "resolvent_diagonal_flops",
    "logdet_flops",
    "solve_flops",
    "thomas_solve_flops",
    "resolvent_diagonal_backward_flops",
    "logdet_backward_flops",
    "solve_backward_flops",
    "lu_solve_flops",
    "woodbury_resolvent_diagonal_flops",
    "woodbury_resolvent_diagonal_backward_flops",
    "dense_resolvent_diagonal_flops",
    "core_saved_bytes",
    "dense_core_saved_bytes",
    "core_memory",
    "FLOP_RULES",
]

#: The table above as data: ``FLOP_RULES[(op, kind_x, kind_y)]`` with kinds "R"/"C".
FLOP_RULES = {
    ("add", "R", "R"): 1, ("add", "R", "C"): 1, ("add", "C", "R"): 1, ("add", "C", "C"): 2,
    ("mul", "R", "R"): 1, ("mul", "R", "C"): 2, ("mul", "C", "R"): 2, ("mul", "C", "C"): 6,
    ("div", "R", "R"): 1, ("div", "C", "R"): 2, ("div", "R", "C"): 7, ("div", "C", "C"): 11,
    ("recip", "R"): 1, ("recip", "C"): 5, ("log", "R"): 1, ("log", "C"): 6,
}

_ITEMSIZE = {
    "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8,
    "complex32": 4, "complex64": 8, "complex128": 16,
    "int32": 4, "int64": 8, "bool": 1, "uint8": 1, "int8": 1,
}
_COMPLEX_OF = {"float32": "complex64", "float64": "complex128", "float16": "complex32",
               "complex64": "complex64", "complex128": "complex128", "complex32": "complex32"}


def _dtype_name(dtype: Any) -> str:
    s = str(dtype)
    if s.startswith("torch."):
        s = s[len("torch."):]
    if s.startswith("<class 'numpy."):
        s = s[len("<class 'numpy."):-2]
    aliases = {"float": "float32", "double": "float64", "cfloat": "complex64",
               "cdouble": "complex128", "half": "float16", "long": "int64", "int": "int32"}
    return aliases.get(s, s)


def itemsize(dtype: Any) -> int:
    """Bytes per element of ``dtype`` (a NumPy or torch dtype, or its name)."""
    name = _dtype_name(dtype)
    if name not in _ITEMSIZE:
        raise ValueError(f"unknown dtype {dtype!r}")
    return _ITEMSIZE[name]


def complex_dtype_of(dtype: Any) -> str:
    """Name of the complex dtype with ``dtype``'s precision (float32 -> complex64)."""
    name = _dtype_name(dtype)
    if name not in _COMPLEX_OF:
        raise ValueError(f"no complex counterpart for dtype {dtype!r}")
    return _COMPLEX_OF[name]


def _prod(shape) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def array_nbytes(shape: tuple[int, ...], dtype: Any) -> int:
    """``prod(shape) * itemsize(dtype)``."""
    return _prod(shape) * itemsize(dtype)


# ================================================================================================
# operator storage
# ================================================================================================
def tridiagonal_nbytes(n: int, dtype: Any = "float64", diag_batch: tuple[int, ...] = (),
                       off_batch: tuple[int, ...] = (), symmetric: bool = False) -> int:
    """Bytes a :class:`semisep.Tridiagonal` holds: ``diag`` stored as ``diag_batch + (N,)``,
    ``lower`` (and ``upper`` unless ``symmetric``) as ``off_batch + (N-1,)``, all in ``dtype``
    (the operator's promoted dtype)."""
    off = array_nbytes(tuple(off_batch) + (n - 1,), dtype)
    return array_nbytes(tuple(diag_batch) + (n,), dtype) + off * (1 if symmetric else 2)


def lowrank_nbytes(n: int, r: int, dtype: Any = "float64", factor_batch: tuple[int, ...] = (),
                   **tridiagonal: Any) -> int:
    """Bytes a ``TridiagonalPlusLowRank(T, U, V)`` holds: ``T`` (see
    :func:`tridiagonal_nbytes`, keyword arguments passed on) plus ``U`` and ``V`` stored as
    ``factor_batch + (N, r)`` in ``dtype``."""
    return tridiagonal_nbytes(n, dtype, **tridiagonal) + 2 * array_nbytes(
        tuple(factor_batch) + (n, r), dtype)


def dense_nbytes(n: int, dtype: Any = "float64", batch: tuple[int, ...] = ()) -> int:
    """Bytes of dense ``batch + (N, N)`` matrices."""
    return array_nbytes(tuple(batch) + (n, n), dtype)


# ================================================================================================
# FLOPs: tridiagonal algorithms (docs/mathematics.md), per batch row
# ================================================================================================
def _k(complex: bool):
    """(add, mul, recip) costs for the arithmetic of ``A``'s entries."""
    return (2, 6, 5) if complex else (1, 1, 1)


def resolvent_diagonal_flops(n: int, complex: bool = True) -> int:
    """``diag((T - zI)^{-1})`` from the pivots, given ``alpha`` (N) and ``beta`` (N-1).

    Algorithm counted (the fused two-sided form of the compiled kernel)::

        left:  tL_0 = alpha_0;  tL_i = alpha_i - beta_{i-1} gL_{i-1};  gL_i = 1/tL_i
        right: tR_{N-1} = alpha_{N-1};  tR_i = alpha_i - beta_i gR_{i+1};  gR_i = 1/tR_i
        combine, reusing one sweep's t_i:
               G_ii = 1/(tL_i - beta_i gR_{i+1}) = 1/(tR_i - beta_{i-1} gL_{i-1})
               (G_00 = 1/tR_0 and G_{N-1,N-1} = 1/tL_{N-1} need no neighbour term)

    Each sweep ``r + (N-1)(m + a + r)``, the combine ``(N-2)(m + a) + N r`` (``N >= 2``).
    Complex: ``2 (5 + 13 (N-1)) + 8 (N-2) + 5 N = 39 N - 32``; real: ``9 N - 8``; ``N = 1``
    is one reciprocal.  (The plain twin ``resolvent_diagonal_ref`` forms ``gamma_i = alpha_i -
    beta_{i-1} gL_{i-1} - beta_i gR_{i+1}`` from scratch: ``N (m + a)`` more.)
    """
    a, m, r = _k(complex)
    if n <= 0:
        return 0
    if n == 1:
        return r
    sweep = r + (n - 1) * (m + a + r)
    return 2 * sweep + (n - 2) * (m + a) + n * r


def logdet_flops(n: int, complex: bool = True) -> int:
    """``log det(T - zI) = sum_i log d_i`` over the LU pivots.

    Algorithm counted: ``d_0 = alpha_0``; ``d_i = alpha_i - beta_{i-1} / d_{i-1}`` computed as
    ``gL_{i-1} = 1/d_{i-1}`` (recip) then ``alpha_i - beta_{i-1} gL_{i-1}``; ``log`` of every
    pivot and ``N-1`` additions.  Complex: ``(N-1)(5+6+2) + 6N + 2(N-1)``; the real count uses
    the real log (1 flop) -- a negative determinant's phase is a sign count, 0 flops.

    This is the torch chunked (GPU) path's algorithm.  The compiled CPU kernel instead runs the
    pivoted elimination of :func:`solve_flops` (no right-hand side) on the balanced similar
    matrix and takes one ``log`` of the renormalised pivot product; that count is not modelled
    here.
    """
    a, m, r = _k(complex)
    lg = FLOP_RULES[("log", "C" if complex else "R")]
    if n <= 0:
        return 0
    return (n - 1) * (r + m + a) + n * lg + (n - 1) * a


def solve_flops(n: int, k: int = 1, complex: bool = True, exchanges: int = 0) -> int:
    """``(T - zI)^{-1} F`` for ``F`` (N, k) by Gaussian elimination with partial pivoting
    (LAPACK ``?gtsv``), as the compiled kernel runs it.

    Algorithm counted: at step ``i`` (``i = 0 .. N-2``) rows ``i`` and ``i+1`` are
    ``[d_i, du_i, 0]`` and ``[c_i, alpha_{i+1}, b_{i+1}]``; the larger of ``|d_i|``, ``|c_i|``
    (in ``|Re| + |Im|``) is the pivot ``u_i``::

        rinv_i = 1/u_i;  l = (other) rinv_i                       recip + mul
        d_{i+1} = (row i+1 or i) - l (row i or i+1) at column i+1     mul + add
            (without an exchange as alpha_{i+1} - (c_i du_i) rinv_i:  + mul, off the chain)
        fill u2_i = -l b_{i+1}, only after an exchange                mul
        v1_i = rinv_i u1_i;  v2_i = rinv_i u2_i (after an exchange)   mul (+ mul)
        x_{i+1} = f_{i+1} - l x_i  (or exchanged)                     k (mul + add)
        y_i = rinv_i x_i  (once x_i is final)                         k mul
        y_{N-1} = x_{N-1} / d_{N-1}                                   recip + k mul
        back:  x_i = y_i - v2_i x_{i+2} - v1_i x_{i+1}                k (2 mul + 2 add),
               one term fewer at i = N-2

    ``exchanges`` is the number of steps that exchanged rows (0 .. N-1; the count depends on
    the values, as LAPACK's ``ipiv`` shows).  Every step costs ``recip + 3 mul + add`` (one
    ``mul`` either for the fill of an exchange or for ``c_i du_i`` without one).  A zero
    subdiagonal entry without an exchange skips its multiplier and ``c_i du_i`` (two ``mul``
    fewer per such step, not modelled).  ``F`` is promoted to the matrix's
    dtype first (as the kernels do).
    """
    a, m, r = _k(complex)
    if n <= 0:
        return 0
    if n == 1:
        return r + k * m
    factor = (n - 1) * (r + 3 * m + a) + r
    scaled = (n - 1) * m + exchanges * m
    fwd = (n - 1) * (m + a) + n * m
    back = (m + a) + (n - 2) * (2 * m + 2 * a)
    return factor + scaled + k * (fwd + back)


def thomas_solve_flops(n: int, k: int = 1, complex: bool = True, with_pivots: bool = True) -> int:
    """``A^{-1} F`` for ``F`` (N, k) by the Thomas algorithm on the LU pivots (no row
    exchanges): the solves inside the fused Woodbury kernels and the chunked (GPU) path's first
    solve.

    Algorithm counted::

        pivots: gL_0 = 1/alpha_0; gL_i = 1/(alpha_i - beta_{i-1} gL_{i-1})   (omitted when
                ``with_pivots=False``: a second solve with the same matrix reuses them)
        m_i = c_{i-1} gL_{i-1}                       (i = 1..N-1, shared by the k columns)
        y_0 = f_0;  y_i = f_i - m_i y_{i-1}
        x_{N-1} = gL_{N-1} y_{N-1};  x_i = gL_i (y_i - b_i x_{i+1})

    ``F`` is promoted to the matrix's dtype first (as the kernels do), so a complex run does
    complex arithmetic throughout.
    """
    a, m, r = _k(complex)
    if n <= 0:
        return 0
    piv = (r + (n - 1) * (m + a + r)) if with_pivots else 0
    mults = (n - 1) * m
    fwd = (n - 1) * (m + a)
    back = m + (n - 1) * (m + a + m)
    return piv + mults + k * (fwd + back)


def resolvent_diagonal_backward_flops(n: int, complex: bool = True) -> int:
    """Backward of the resolvent diagonal (docs/mathematics.md), given ``G, gL, gR`` and the
    cotangent ``gbar`` (N), producing ``dL/dalpha`` (N) and ``dL/db, dL/dc`` (N-1)::

        s_i = gbar_i G_ii^2                                    2 mul per i
        rho_j = beta_{j-1} gR_j^2,  lambda_j = beta_j gL_j^2   2 mul per j (N-1 each)
        SL_j = rho_j SL_{j-1} + s_j;  SR_j = lambda_j SR_{j+1} + s_j   mul + add per step
        [G D G]_jj = SL_j + SR_j - s_j                         2 add per j
        kappa_j = gR_{j+1} SL_j + gL_j SR_{j+1}                2 mul + add (N-1)
        dL/db_j = c_j kappa_j,  dL/dc_j = b_j kappa_j          2 mul (N-1)

    (``dL/dalpha = -[GDG]`` and ``dL/dz = sum [GDG]`` are a negation and a sum: ``N-1`` adds.)
    """
    a, m, _ = _k(complex)
    if n <= 0:
        return 0
    s = 2 * m * n
    coef = 2 * (2 * m) * (n - 1)
    scans = 2 * (n - 1) * (m + a)
    gdg = 2 * a * n
    kappa = (n - 1) * (2 * m + a)
    dbc = 2 * m * (n - 1)
    dz = (n - 1) * a
    return s + coef + scans + gdg + kappa + dbc + dz


def logdet_backward_flops(n: int, complex: bool = True) -> int:
    """Backward of log det given ``gL`` (the resolvent diagonal ``G`` is recomputed: its
    :func:`resolvent_diagonal_flops` is included)::

        d/da_j = gbar G_jj ;  d/db_j = -gbar c_j gL_j G_{j+1,j+1};  d/dc_j = -gbar b_j gL_j G_{j+1}

    per j: ``gbar G_jj`` (1 mul), ``gL_j * (gbar G_{j+1})`` (1 mul), times ``c_j`` and ``b_j``
    (2 mul).
    """
    _, m, _ = _k(complex)
    return resolvent_diagonal_flops(n, complex) + m * n + 3 * m * max(n - 1, 0)


def solve_backward_flops(n: int, k: int = 1, complex: bool = True, exchanges: int = 0) -> int:
    """Backward of ``x = A^{-1} f`` given ``x``: ``r = A^{-T} xbar`` (a pivoted solve of the
    transpose, :func:`solve_flops`, with ``exchanges`` its own row exchanges), ``df = r``,
    ``da_j = -sum_k r_jk x_jk``, ``db_j = -sum_k r_jk x_{j+1,k}``, ``dc_j = -sum_k r_{j+1,k} x_jk``
    (one multiply and, over columns, one add each)."""
    a, m, _ = _k(complex)
    rsolve = solve_flops(n, k, complex, exchanges)
    prods = (n + 2 * (n - 1)) * (k * m + (k - 1) * a)
    return rsolve + prods


# ================================================================================================
# FLOPs: dense r x r solves and the Woodbury resolvent diagonal
# ================================================================================================
def lu_solve_flops(r: int, k: int, complex: bool = True) -> int:
    """Gaussian elimination without pivoting of an r x r matrix and ``k`` right-hand sides::

        for p: for i > p:  l = K_ip / K_pp  (div);  for j > p: K_ij -= l K_pj (mul + add)
        forward:  y_i -= K_ip y_p   (mul + add), i > p
        back:     x_i = (y_i - sum_{j>i} K_ij x_j) / K_ii   (mul + add per term, one div)

    ``sum_p (r-1-p) (div + (r-1-p)(mul+add)) + k [r(r-1)/2 (mul+add) * 2 + r div]``.
    """
    a, m, _ = _k(complex)
    d = FLOP_RULES[("div", "C", "C")] if complex else 1
    fact = sum((r - 1 - p) * (d + (r - 1 - p) * (m + a)) for p in range(r))
    per_rhs = r * (r - 1) // 2 * (m + a) * 2 + r * d
    return fact + k * per_rhs


def woodbury_resolvent_diagonal_flops(n: int, r: int, complex: bool = True) -> int:
    """Exact Woodbury resolvent diagonal of ``H = T + U V^T`` (docs/mathematics.md)::

        G0 = diag(A^{-1})                          resolvent_diagonal_flops(N)
        gL (LU pivots)                             5 + 13 (N-1), computed once for the solves:
                                                   A and A^T share them (beta_i = b_i c_i)
        X = A^{-1} U,  Y = A^{-T} V                two solves with r columns each,
                                                   thomas_solve_flops(N, r, with_pivots=False)
        K = I + V^T X                              r^2 dot products of length N, + r for I
        W^T = K^{-1} Y^T                           lu_solve_flops(r, N)
        G_ii = G0_ii - sum_k X_ik W_ik             N (r mul + r add)

    ``U``, ``V`` are promoted to the dtype of ``A`` (as the kernels do); like every count here it
    starts from ``alpha``, ``beta``, ``upper``, ``lower`` (forming ``beta = upper lower`` is the
    caller's).
    """
    a, m, rc = _k(complex)
    if r == 0:
        return resolvent_diagonal_flops(n, complex)
    piv = rc + (n - 1) * (m + a + rc)
    solves = 2 * thomas_solve_flops(n, r, complex, with_pivots=False)
    kmat = r * r * (n * m + (n - 1) * a) + r  # + I: real + complex, 1 flop each
    lu = lu_solve_flops(r, n, complex)
    corr = n * r * (m + a)
    return resolvent_diagonal_flops(n, complex) + piv + solves + kmat + lu + corr


def woodbury_resolvent_diagonal_backward_flops(n: int, r: int, complex: bool = True) -> int:
    """Reverse mode through the steps of :func:`woodbury_resolvent_diagonal_flops` (the
    composition, as autograd runs it), cotangent ``gbar`` (N)::

        G = G0 - sum_k X_ik W_ik:  Xbar = -gbar W, Wbar = -gbar X          2 N r mul
        W^T = K^{-1} Y^T:          Z = K^{-T} Wbar^T (lu_solve_flops(r, N), K^T factorised
                                   again);  Ybar = Z^T;  Kbar = -Z W       r^2 (N mul + (N-1) add)
        K = I + V^T X:             Xbar += V Kbar      N r (r mul + (r-1) add) + N r add
                                   Vbar = X Kbar^T     N r (r mul + (r-1) add)
        X = A^{-1} U:              P = A^{-T} Xbar (a solve, r columns, pivots reused); Ubar = P
        Y = A^{-T} V:              Q = A^{-1} Ybar (a solve, r columns);  Vbar += Q   N r add
        dalpha_j = -sum_k (P_jk X_jk + Q_jk Y_jk)      (2r mul + (2r-1) add) per j
        db_j = -sum_k (P_jk X_{j+1,k} + Q_{j+1,k} Y_jk), dc_j likewise: 2 (N-1)(2r mul +
                                                       (2r-1) add)
        G0:                        resolvent_diagonal_backward_flops(N), added into dalpha,
                                   db, dc: (N + 2(N-1)) add
    """
    a, m, _ = _k(complex)
    if r == 0:
        return resolvent_diagonal_backward_flops(n, complex)
    corr = 2 * n * r * m
    wstep = lu_solve_flops(r, n, complex) + r * r * (n * m + (n - 1) * a)
    kstep = n * r * (r * m + (r - 1) * a) + n * r * a + n * r * (r * m + (r - 1) * a)
    solves = 2 * thomas_solve_flops(n, r, complex, with_pivots=False)
    vacc = n * r * a
    nprod = n + 2 * (n - 1)
    prods = nprod * (2 * r * m + (2 * r - 1) * a)
    g0 = resolvent_diagonal_backward_flops(n, complex) + nprod * a
    return corr + wstep + kstep + solves + vacc + prods + g0


def dense_resolvent_diagonal_flops(n: int, complex: bool = True) -> int:
    """Dense baseline: LU of the N x N matrix and N right-hand sides (the identity),
    :func:`lu_solve_flops` ``(N, N)`` -- ``~ (8/3 + 8) N^3`` complex flops."""
    return lu_solve_flops(n, n, complex)


# ================================================================================================
# memory model of BirmanSchwingerCore (semisep.nn) in training
# ================================================================================================
def core_saved_bytes(n: int, r: int, batch: int, compute_dtype: Any = "float32",
                     checkpointing: bool = False, input_dtype: Any = None,
                     z_bytes: int = 0, shift_form: bool = False,
                     param_dtype: Any = None) -> int:
    """Bytes torch keeps for backward after ``BirmanSchwingerCore.forward`` (parameters
    excluded: they are held anyway), at batch ``B``, as the implementation stores them.

    ``f`` = itemsize of the compute dtype (float32: 4), ``c = 2 f`` (its complex dtype).

    Checkpointed (``enable_gradient_checkpointing=True``): only the inputs,
    ``B N itemsize(input_dtype) + z_bytes`` (``z_bytes``: a shift tensor that requires grad).

    Plain, ``r = 0`` (tridiagonal only), by storage::

        B N f         the real diagonal v - 2, kept by the subtraction alpha = diag - z
                      (the pivot-guard scale is computed on detached copies and keeps nothing)
        (N-1) c       beta = b c, on the off-diagonal as held (unbatched, a broadcast view)
        3 B N c       G, gL, gR (the resolvent Function's O(N) backward state)

    Plain, ``r > 0`` (Woodbury): the above, plus the solve's alpha ``B N c`` and::

        (N-1) c           the off-diagonal (b = c) as promoted for the solve (unbatched)
        2 B N r c         the solve's solution [X, Y] (B, N, 2r) (its right-hand side [U, V]
                          is not kept: the solve's backward needs only the solution)
        B N r c           X read as real, (B 2r, N) in the compute dtype, for the real-by-complex
                          product K = I + V^T X (V stays real: no complex copy of it exists)
        N r f             V cast to the compute dtype, kept by that product -- only when
                          ``param_dtype`` differs from ``compute_dtype`` (otherwise the product
                          keeps the parameter itself, which is not counted)
        3 B r^2 c + 4 B r K, its LU factors and K^{-1} (kept by the matmul), int32 pivots
        B N r c           W^T = K^{-1} Y^T
        B f               the solve's pivot threshold pivmin (B,), real: its backward solves
                          the transposed system with the same guard

    i.e. ``B N (f + 4c) + 4 B N r c + 2 (N-1) c + 3 B r^2 c + 4 B r + B f [+ N r f]`` (r > 0) and
    ``B N (f + 3c) + (N-1) c`` (r = 0).  ``param_dtype``: the dtype of the parameters U, V
    (default: ``compute_dtype``).

    ``shift_form=True`` (CPU tensors: the resolvent's autograd Function takes ``diag`` and
    ``z`` apart): no subtraction keeps the ``B N f`` diagonal, and ``beta`` is saved in ``T``'s
    own real dtype, ``(N-1) f`` instead of ``(N-1) c``.  Checked against
    ``saved_tensors_hooks`` in ``tests/test_nn_core.py`` (exact when written); a row upgraded
    to float64 by ``precision="auto"`` adds its float64 twin (not included).
    """
    if checkpointing:
        return batch * n * itemsize(input_dtype or compute_dtype) + int(z_bytes)
    f = itemsize(compute_dtype)
    c = 2 * f
    B = batch
    diag_kept = 0 if shift_form else B * n * f
    beta_kept = (n - 1) * (f if shift_form else c)
    if r == 0:
        return diag_kept + 3 * B * n * c + beta_kept
    cast_v = (param_dtype is not None
              and _dtype_name(param_dtype) != _dtype_name(compute_dtype))
    return (diag_kept + 4 * B * n * c + 4 * B * n * r * c + beta_kept + (n - 1) * c
            + 3 * B * r * r * c + 4 * B * r + B * f + (n * r * f if cast_v else 0))


def dense_core_saved_bytes(n: int, batch: int, compute_dtype: Any = "float32") -> int:
    """Saved-for-backward bytes of the dense counterpart ``diag(inv(H - zI))``
    (``torch.linalg.inv`` keeps its (B, N, N) complex output): ``B N^2 c``."""
    return batch * n * n * 2 * itemsize(compute_dtype)


def core_memory(n: int, r: int, batch: int, input_dtype: Any = "float32",
                param_dtype: Any = "float32", checkpointing: bool = False,
                precision: str = "auto", shift_form: bool = False, device: Any = None) -> dict:
    """Memory of one training step of a model that uses ``BirmanSchwingerCore`` (Adam).

    Keys (bytes)::

        tridiagonal_bytes  the batch's tridiagonal operator: diag (B, N) + off-diagonal (N-1),
                           compute dtype
        lowrank_bytes      the parameters U, V: 2 N r, parameter dtype
        activation_bytes   saved between forward and backward: :func:`core_saved_bytes`
        recompute_bytes    with checkpointing, the activations the backward rebuilds (the
                           plain path's saved bytes, alive while this core's backward runs);
                           0 without.  For one core the peak is therefore *not* lower with
                           checkpointing; in a stack of L cores only one is rebuilt at a time,
                           so L * activation_bytes + one recompute_bytes is the stack's peak
        gradient_bytes     gradients of U, V: 2 N r
        optimizer_bytes    Adam's state: two moments (4 N r) and a float32 ``step`` scalar per
                           parameter tensor (8 bytes)
        total_bytes        the sum of the six: the peak during backward
        dense_total_bytes  the same step with a dense learned N x N matrix in place of U V^T:
                           dense operators B N^2 (compute dtype), parameter + gradient + two
                           moments 4 N^2 (parameter dtype), saved (B, N, N) complex inverse
        memory_savings     1 - total_bytes / dense_total_bytes: the training step's saving
                           (the forward diagnostics' ``operator_memory_savings`` is another
                           quantity: the batch operator's arrays against dense matrices)

    ``precision``: "auto" computes in ``input_dtype``, "float32"/"float64" in that dtype.
    ``shift_form``: the CPU autograd path (:func:`core_saved_bytes`).  ``device`` (a torch
    device or its name), when given, decides it instead: ``shift_form = (device type == "cpu")``,
    so that a GPU step can be planned from a CPU process.
    """
    if device is not None:
        shift_form = str(device).split(":")[0] == "cpu"
    compute = input_dtype if precision == "auto" else precision
    f = itemsize(compute)
    p = itemsize(param_dtype)
    tri = (batch * n + (n - 1)) * f
    low = 2 * n * r * p
    act = core_saved_bytes(n, r, batch, compute, checkpointing, input_dtype,
                           shift_form=shift_form, param_dtype=param_dtype)
    rec = (core_saved_bytes(n, r, batch, compute, False, input_dtype, shift_form=shift_form,
                            param_dtype=param_dtype) if checkpointing else 0)
    grads = 2 * n * r * p  # U.grad, V.grad
    opt = (4 * n * r * p + 2 * 4) if r else 0
    total = tri + low + act + rec + grads + opt
    dense_total = batch * n * n * f + 4 * n * n * p + dense_core_saved_bytes(n, batch, compute)
    return {
        "tridiagonal_bytes": tri,
        "lowrank_bytes": low,
        "activation_bytes": act,
        "recompute_bytes": rec,
        "gradient_bytes": grads,
        "optimizer_bytes": opt,
        "parameter_bytes": low,
        "total_bytes": total,
        "dense_total_bytes": dense_total,
        "memory_savings": 1.0 - total / dense_total,
        "batch_size": batch,
        "checkpointing": bool(checkpointing),
    }
