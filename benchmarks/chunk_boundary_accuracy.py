"""Accuracy of the chunked torch resolvent diagonal near chunk boundaries (issue 26, item 6).

Compares ``method="chunked"`` (the CUDA path, run on CPU) and the sequential sweep with an
extended-precision reference (both ratio sweeps in ``np.clongdouble``; x87 80-bit long double
where the platform has it): the maximum elementwise relative error, and where the chunked
path's worst elements sit relative to the chunk length.

    PYTHONPATH=. python benchmarks/chunk_boundary_accuracy.py [--n-log2 17] [--repair fixed]

``--repair fixed`` runs the boundary repair with fixed shapes (the accelerators' form, no host
sync) on CPU; by default CPU's gathered form runs.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import semisep as ss
from semisep.backends.torch.chunks import _pivot_chunk_length


def _reference(a, b):
    """``G`` of ``alpha = a``, ``beta = b`` (``np.clongdouble``) by both ratio sweeps."""
    dL, dR = np.empty_like(a), np.empty_like(a)
    dL[:, 0], dR[:, -1] = a[:, 0], a[:, -1]
    for i in range(1, a.shape[1]):
        dL[:, i] = a[:, i] - b[:, i - 1] / dL[:, i - 1]
    for i in range(a.shape[1] - 2, -1, -1):
        dR[:, i] = a[:, i] - b[:, i] / dR[:, i + 1]
    return (1 / (dL + dR - a)).astype(np.complex128)


def case(label, diag, lower, upper, z, single):
    rdt, cdt = (torch.float32, torch.complex64) if single else (torch.float64, torch.complex128)
    d, lo, up = (torch.from_numpy(x).to(rdt) for x in (diag, lower, upper))
    # the reference solves the problem the kernels see: the float32 data, and in single
    # precision alpha = diag - z rounded to complex64 as the kernels form it
    ld = np.clongdouble
    beta = (lo * up).double().numpy().astype(ld)
    if single:
        alpha = (d.to(cdt) - torch.tensor(z, dtype=cdt)).to(torch.complex128).numpy().astype(ld)
    else:
        alpha = diag.astype(ld) - ld(z)
    Gx = _reference(alpha, beta)
    T = ss.Tridiagonal(d, lo, up)
    zt = torch.tensor(z, dtype=cdt)
    with torch.no_grad():
        Gc = T.resolvent_diagonal(zt, method="chunked").to(torch.complex128).numpy()
        Gs = T.resolvent_diagonal(zt, method="sequential").to(torch.complex128).numpy()
    ec, es = (np.abs(G - Gx) / np.abs(Gx) for G in (Gc, Gs))
    L = _pivot_chunk_length(diag.shape[1])
    worst = np.argsort(ec, axis=None)[-4:]
    pos = ", ".join(f"i mod L = {int(i % diag.shape[1]) % L}" for i in worst)
    print(f"{label}: chunked {ec.max():.2e}, sequential {es.max():.2e} (L = {L}; worst: {pos})")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n-log2", type=int, default=17)
    p.add_argument("--repair", choices=("gathered", "fixed"), default="gathered")
    args = p.parse_args()
    n = 1 << args.n_log2
    if args.repair == "fixed":
        from semisep.backends.torch import _boundary

        _boundary.fixed_shapes = lambda device: True
    rng = np.random.default_rng(1)
    diag = -2.0 + rng.uniform(-1, 1, (7, n))
    lower, upper = rng.uniform(0.5, 1.5, (7, n - 1)), rng.uniform(0.5, 1.5, (7, n - 1))
    case(f"complex128, non-symmetric disordered chain, B = 7, N = {n}, z = 0.5 + 1e-4j",
         diag, lower, upper, 0.5 + 1e-4j, False)
    ones = np.ones((1, 999))
    case("complex64, clean chain, N = 1000, z = -1 + 1e-3j", np.full((1, 1000), -2.0), ones, ones,
         -1.0 + 1e-3j, True)
    d4 = -2.0 + rng.uniform(-1, 1, (4, 4096))
    case("complex64, disordered chain, B = 4, N = 4096, z = 0.5 + 1e-3j", d4, np.ones((4, 4095)),
         np.ones((4, 4095)), 0.5 + 1e-3j, True)
    d5 = -2.0 + rng.uniform(-1, 1, (4, n))
    ones5 = np.ones((4, n - 1))
    case(f"complex128, disordered chain near the band edge, B = 4, N = {n}, z = -2.7 + 1e-4j", d5, ones5,
         ones5, -2.7 + 1e-4j, False)
    case(f"complex128, clean chain inside the band, B = 4, N = {n}, z = -0.2 + 1e-4j",
         np.full((4, n), -2.0), ones5, ones5, -0.2 + 1e-4j, False)


if __name__ == "__main__":
    main()
