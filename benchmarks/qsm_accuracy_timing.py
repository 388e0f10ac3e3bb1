"""Accuracy and rough timing of semisep.Quasiseparable on Gaussian-process covariances.

    PYTHONPATH=. python benchmarks/qsm_accuracy_timing.py [--quick]

1. c*span sweep (Exp and Matern-3/2 kernels in the stable transition form, white noise 0.1,
   N = 2000): normwise relative errors of solve, logdet and the inverse diagonal against dense
   LAPACK (numpy.linalg).
2. N = 2^15 .. 2^17 (Matern-3/2, c*span = 1e4): the same against the plain-loop twin
   semisep.reference.quasiseparable.
3. Median times at N = 2^17 for factor + logdet + solve (r = 2: Matern-3/2, r = 3: Exp +
   Matern-3/2), torch CPU forward and forward+backward, with scipy.linalg.solve_banded on a
   tridiagonal of the same N and dense Cholesky at N = 4096 as reference points.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import scipy.linalg as sla

import semisep as ss
from semisep import reference as ref


def gp_generators(t, kind, scale=1.0, sigma=1.0):
    """(p, q, a) of a stationary kernel, transitions a_i = e^{F (t_i - t_{i-1})}."""
    dt = np.diff(t, prepend=t[0])
    n = len(t)
    if kind == "exp":
        a = np.exp(-dt / scale)
        return sigma**2 * a[:, None], np.ones((n, 1)), a[:, None, None]
    lam = np.sqrt(3.0) / scale
    e = np.exp(-lam * dt)
    A = np.empty((n, 2, 2))
    A[:, 0, 0] = e * (1 + lam * dt)
    A[:, 0, 1] = e * dt
    A[:, 1, 0] = -e * lam**2 * dt
    A[:, 1, 1] = e * (1 - lam * dt)
    q = np.tile([sigma**2, 0.0], (n, 1))
    return A[:, 0, :], q, A


def dense_kernel(t, kind, scale=1.0, sigma=1.0):
    r = np.abs(t[:, None] - t) / scale
    if kind == "exp":
        return sigma**2 * np.exp(-r)
    r = r * np.sqrt(3.0)
    return sigma**2 * (1 + r) * np.exp(-r)


def block_sum(*gens):
    """Generators of the sum of kernels: p, q concatenated, a block diagonal."""
    p = np.concatenate([g[0] for g in gens], axis=1)
    q = np.concatenate([g[1] for g in gens], axis=1)
    r = p.shape[1]
    a = np.zeros((p.shape[0], r, r))
    k = 0
    for g in gens:
        s = g[0].shape[1]
        a[:, k:k + s, k:k + s] = g[2]
        k += s
    return p, q, a


def rel(x, y):
    return float(np.linalg.norm(np.ravel(x - y)) / np.linalg.norm(np.ravel(y)))


def median_time(fn, reps=5):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main(quick: bool) -> None:
    rng = np.random.default_rng(0)
    noise = 0.1
    print("1. c*span sweep, N = 2000, vs dense (normwise relative errors)")
    print(f"{'kernel':8s} {'c*span':>8s} {'solve':>9s} {'logdet':>9s} {'diag inv':>9s}")
    n = 2000
    for kind in ("exp", "matern32"):
        for cspan in (1.0, 1e1, 1e2, 1e3, 1e4):
            t = np.sort(rng.uniform(0, cspan, n))
            p, q, a = gp_generators(t, kind)
            op = ss.Quasiseparable(np.full(n, 1.0 + noise), p, q, a)
            K = dense_kernel(t, kind) + noise * np.eye(n)
            y = rng.standard_normal(n)
            fac = op.factor()
            e1 = rel(fac.solve(y), np.linalg.solve(K, y))
            e2 = abs(fac.logdet() - np.linalg.slogdet(K)[1]) / abs(np.linalg.slogdet(K)[1])
            e3 = rel(fac.resolvent_diagonal(), np.diag(np.linalg.inv(K)))
            print(f"{kind:8s} {cspan:8.0e} {e1:9.1e} {e2:9.1e} {e3:9.1e}")

    print("\n2. Matern-3/2, c*span = 1e4, vs the plain-loop twin")
    sizes = (2**15,) if quick else (2**15, 2**16, 2**17)
    for n in sizes:
        t = np.sort(rng.uniform(0, 1e4, n))
        p, q, a = gp_generators(t, "matern32")
        d = np.full(n, 1.0 + noise)
        op = ss.Quasiseparable(d, p, q, a)
        y = rng.standard_normal(n)
        e1 = rel(op.solve(y), ref.sequential_qsm_solve(d, p, q, a, rhs=y).real)
        ld_ref = ref.sequential_qsm_logdet(d, p, q, a).real
        e2 = abs(op.logdet() - ld_ref) / abs(ld_ref)
        e3 = rel(op.resolvent_diagonal(), ref.sequential_qsm_resolvent_diagonal(d, p, q, a).real)
        print(f"N = 2^{int(np.log2(n))}: solve {e1:.1e}, logdet {e2:.1e}, diag inv {e3:.1e}")

    print("\n3. timings at N = 2^17 (median of 5, seconds; under load)")
    n = 2**17
    t = np.sort(rng.uniform(0, 1e4, n))
    y = rng.standard_normal(n)
    m32 = gp_generators(t, "matern32")
    gens = {2: m32, 3: block_sum(gp_generators(t, "exp", 3.0), m32)}
    import torch

    for r, (p, q, a) in gens.items():
        d = np.full(n, 1.0 + noise)
        op = ss.Quasiseparable(d, p, q, a)

        def loglik(op=op):
            fac = op.factor()
            return fac.logdet() + y @ fac.solve(y)

        loglik()
        tf = median_time(loglik)
        ti = median_time(op.resolvent_diagonal)
        tens = [torch.tensor(x, requires_grad=True) for x in (d, p, q, a)]
        yt = torch.tensor(y)

        def tloglik(grad, tens=tens, yt=yt):
            K = ss.Quasiseparable(*tens)
            fac = K.factor()
            out = fac.logdet() + (yt * fac.solve(yt)).sum()
            if grad:
                out.backward()
            return out

        tloglik(True)
        with torch.no_grad():
            tt = median_time(lambda: tloglik(False))
        tfb = median_time(lambda: tloglik(True))
        print(f"r = {r}: numpy factor+logdet+solve {tf:.4f}; inverse diagonal {ti:.4f}; "
              f"torch forward {tt:.4f}, forward+backward {tfb:.4f} ({tfb / tt:.1f}x)")
    ab = np.vstack([np.r_[0.0, np.full(n - 1, -1.0)], np.full(n, 2.5), np.r_[np.full(n - 1, -1.0), 0.0]])
    tb = median_time(lambda: sla.solve_banded((1, 1), ab, y))
    print(f"scipy.linalg.solve_banded, tridiagonal, N = 2^17: {tb:.4f}")
    nd = 4096
    td = np.sort(rng.uniform(0, 1e2, nd))
    K = dense_kernel(td, "matern32") + noise * np.eye(nd)
    tc = median_time(lambda: sla.cho_solve(sla.cho_factor(K), y[:nd]), reps=3)
    pd, qd, ad = gp_generators(td, "matern32")
    opd = ss.Quasiseparable(np.full(nd, 1.0 + noise), pd, qd, ad)
    tq = median_time(lambda: opd.factor().solve(y[:nd]), reps=3)
    print(f"N = 4096 Matern-3/2: dense Cholesky solve {tc:.4f}, Quasiseparable {tq:.5f}")


if __name__ == "__main__":
    main("--quick" in sys.argv)
