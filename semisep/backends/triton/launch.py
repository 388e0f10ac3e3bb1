"""Launch geometry of the fused kernels in plain Python (no triton, no torch): chunk counts,
grids, rows per launch and the largest element offset a kernel forms.

The kernels (:mod:`.kernels`) index in 64-bit integers where some offset may pass 2^30
(:attr:`LaunchPlan.index64`), so offsets are bounded by memory, not by 2^31.  The grids must
stay within CUDA's limits, ``x <= 2^31 - 1`` and ``y, z <= 65535``: every grid here puts its
large dimension (lanes, rows, or rows x blocks) on ``x`` and at most 2 (the sweep direction)
on ``y``; where ``x`` would still exceed its limit, the batch is launched in slabs of
:attr:`LaunchPlan.rows` rows.  The arithmetic is written here once, so that the launches use
it and the tests check it for any shape without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["INDEX32_LIMIT", "MAX_GRID", "LaunchPlan", "default_chunk_length", "launch_plan"]

#: CUDA's grid limits (x, y, z), in programs.
MAX_GRID = (2**31 - 1, 65535, 65535)

#: Offsets from this size on are formed in int64 (int32's limit with a factor-2 margin).
INDEX32_LIMIT = 2**30


def default_chunk_length(n: int) -> int:
    """Chunk length L: 4, or N if smaller (the fastest of L = 4, 8, 16 on an H100; the
    performance page has the figures).  Longer chunks make the per-lane tiles and chains
    longer; shorter ones make the chunk scan longer."""
    return int(max(1, min(4, n)))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _next_power_of_2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


@dataclass(frozen=True)
class LaunchPlan:
    """How one call of the fused kernels is launched.

    ``nc = ceil(N / L)`` chunks per row; ``sblk`` chunks per block of the two-level scan and
    ``nb = ceil(nc / sblk)`` blocks per row; ``rows`` batch rows per launch (the batch runs in
    ``ceil(B / rows)`` slabs, one slab unless a grid would exceed :data:`MAX_GRID`).
    ``grids[name]`` is the grid of kernel ``name`` for a slab of ``rows`` rows; ``max_offset``
    the largest element offset (counted in reals) that any kernel adds to one of its pointers
    within a slab; :attr:`index64` whether the kernels index in int64 (``max_offset`` at
    least 2^30: a factor-2 margin below int32's limit for the lanes past the end)."""

    B: int
    N: int
    L: int
    nc: int
    block: int
    sblk: int
    nb: int
    rows: int
    grids: dict[str, tuple[int, ...]]
    max_offset: int

    @property
    def carry_block(self) -> int:
        """Blocks per step of the walk over the block totals (one program per row and
        direction): ``min(sblk, next_power_of_2(nb))``."""
        return min(self.sblk, _next_power_of_2(self.nb))

    def grids_for(self, rows: int) -> dict[str, tuple[int, ...]]:
        """The grids for a slab of ``rows <= self.rows`` rows."""
        if not 0 < rows <= self.rows:
            raise ValueError(f"a slab has 1 .. {self.rows} rows, got {rows}")
        return _grids(rows, self.nc, self.nb, self.block)

    @property
    def index64(self) -> bool:
        return self.max_offset >= INDEX32_LIMIT

    def slabs(self) -> list[tuple[int, int]]:
        """The row ranges ``[r0, r1)`` launched one after the other."""
        return [(r0, min(r0 + self.rows, self.B)) for r0 in range(0, self.B, self.rows)]


def _grids(rows: int, nc: int, nb: int, block: int) -> dict[str, tuple[int, ...]]:
    lanes = _cdiv(rows * nc, block)  # one lane per (row, chunk)
    return {
        "transfer": (lanes,),
        "second_pass": (lanes,),
        "serial_scan": (rows, 2),  # program (row, direction)
        "block_total": (rows * nb, 2),  # program (row x block, direction)
        "block_carry": (rows, 2),
        "chunk_carry": (rows * nb, 2),
    }


def _max_offset(rows: int, N: int, nc: int, nb: int, sd: int, sb: int, diag_complex: bool,
                beta_complex: bool) -> int:
    """Largest element offset (reals) of any array a kernel addresses within ``rows`` rows."""
    m = rows * nc
    return max(
        2 * rows * N,  # G, complex
        16 * m,  # P: (2, 8, M) transfer matrices
        4 * m,  # carries: (2, M, 2)
        16 * rows * nb,  # block totals (2, 8, rows nb); carried-in states (2, 4, rows nb)
        (2 if diag_complex else 1) * ((rows - 1) * sd + N),
        (2 if beta_complex else 1) * ((rows - 1) * sb + max(N - 1, 0)),
        2 * rows,  # z
    ) - 1


def launch_plan(B: int, N: int, L: int, *, block: int = 128, scan_block: int | None = None,
                single: bool = False, sd: int | None = None, sb: int | None = None,
                diag_complex: bool = False, beta_complex: bool = False) -> LaunchPlan:
    """The :class:`LaunchPlan` for ``B`` rows of length ``N >= 1`` in chunks of ``L``.

    ``block``: lanes per program of the transfer and second passes; ``scan_block``: chunks
    per block of the scan (default 256 for ``single`` precision, else 128; at most the next
    power of two of ``nc``); ``sd``, ``sb``: row strides of diag and beta in elements
    (default N and N - 1; 0 for a shared row); ``diag_complex``, ``beta_complex``: whether
    they are complex.  Raises ValueError where a single row exceeds the grid limits (more
    than ``(2^31 - 1) * block`` chunks: far beyond any device's memory)."""
    if B < 0 or N < 1 or L < 1 or block < 1:
        raise ValueError(f"launch_plan needs B >= 0, N >= 1, L >= 1, block >= 1; got "
                         f"B={B}, N={N}, L={L}, block={block}")
    nc = _cdiv(N, L)
    sblk = min(scan_block or (256 if single else 128), _next_power_of_2(nc))
    nb = _cdiv(nc, sblk)
    x_max = MAX_GRID[0]
    rows = min(max(B, 1), x_max, x_max // nb, (x_max * block) // nc)
    if rows < 1:
        raise ValueError(f"a row of N = {N} in chunks of L = {L} needs more than {x_max} "
                         f"programs of {block} lanes")
    grids = _grids(rows, nc, nb, block)
    for name, grid in grids.items():  # by construction; the check guards edits
        if any(g > lim for g, lim in zip(grid, MAX_GRID, strict=False)):
            raise ValueError(f"grid {grid} of {name} exceeds CUDA's limits {MAX_GRID}")
    sd = N if sd is None else sd
    sb = max(N - 1, 0) if sb is None else sb
    return LaunchPlan(B=B, N=N, L=L, nc=nc, block=block, sblk=sblk, nb=nb, rows=rows, grids=grids,
                      max_offset=_max_offset(rows, N, nc, nb, sd, sb, diag_complex, beta_complex))
