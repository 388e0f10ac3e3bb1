"""
Fitting a Gaussian process by its exact log-likelihood
======================================================

A damped oscillator (SHO) plus a Matern-3/2 trend, observed at 600 irregular times with white
noise.  :mod:`semisep.kernels` turns the kernel into a :class:`semisep.Quasiseparable`
covariance, whose factorization gives the log-likelihood in O(N); with torch parameters the
gradient of the log-likelihood with respect to every hyperparameter is exact (an O(N) adjoint
sweep), so a plain optimiser fits them.  We check the likelihood and its gradient against dense
linear algebra, fit, and plot the posterior, whose variance at the data points comes from the
inverse diagonal ``diag(C^{-1})`` without any N x N matrix.
"""

# %%
# Data from a known process
# -------------------------
import matplotlib.pyplot as plt
import numpy as np
import torch

from semisep import kernels

rng = np.random.default_rng(4)
N = 600
t = np.sort(rng.uniform(0.0, 60.0, N))
true = kernels.SHO(omega=1.1, quality=4.0, sigma=1.0) + kernels.Matern32(scale=8.0, sigma=0.6)
noise_true = 0.25
L = np.linalg.cholesky(true(t) + 1e-10 * np.eye(N))  # a dense draw, for the data only
y = L @ rng.standard_normal(N) + noise_true * rng.standard_normal(N)

tt = torch.tensor(t)
yt = torch.tensor(y)


def model(raw):
    """Positive hyperparameters from unconstrained ones (log scale)."""
    omega, quality, s1, scale, s2, noise = torch.exp(raw)
    kern = kernels.SHO(omega=omega, quality=quality, sigma=s1) + kernels.Matern32(scale=scale, sigma=s2)
    return kern, noise


def log_likelihood(raw):
    kern, noise = model(raw)
    f = kern.to_operator(tt, diag=noise**2).factor()  # one factorization: solve and logdet
    alpha = f.solve(yt)
    return -0.5 * (yt @ alpha + f.logdet().real + N * np.log(2 * np.pi))


# %%
# The likelihood and its gradient against dense linear algebra
# ------------------------------------------------------------
# At a starting guess, the O(N) value and its autograd gradient agree with the dense
# ``slogdet`` / ``solve`` formula differentiated by torch itself.

raw0 = torch.log(torch.tensor([0.8, 2.0, 0.7, 4.0, 0.4, 0.5], dtype=torch.float64)).requires_grad_()
ll = log_likelihood(raw0)
(g,) = torch.autograd.grad(ll, raw0)


def dense_log_likelihood(raw):
    kern, noise = model(raw)
    C = kern(tt) + noise**2 * torch.eye(N, dtype=torch.float64)
    return -0.5 * (yt @ torch.linalg.solve(C, yt) + torch.linalg.slogdet(C)[1] + N * np.log(2 * np.pi))


lld = dense_log_likelihood(raw0)
(gd,) = torch.autograd.grad(lld, raw0)
print(f"log-likelihood {ll.item():.10f} (dense {lld.item():.10f})")
print(f"gradient max relative difference {((g - gd).abs().max() / gd.abs().max()).item():.1e}")
assert abs(ll.item() - lld.item()) <= 1e-10 * abs(lld.item())
assert torch.allclose(g, gd, rtol=1e-8, atol=1e-8 * gd.abs().max().item())

# %%
# Fitting
# -------
# Adam on the negative log-likelihood; every step is one O(N) forward and backward.

raw = raw0.detach().clone().requires_grad_()
opt = torch.optim.Adam([raw], lr=0.05)
history = []
for _step in range(150):
    opt.zero_grad()
    loss = -log_likelihood(raw)
    loss.backward()
    opt.step()
    history.append(-loss.item())

names = ["omega", "quality", "sigma_SHO", "scale", "sigma_M32", "noise"]
fitted = torch.exp(raw.detach()).numpy()
truth = [1.1, 4.0, 1.0, 8.0, 0.6, noise_true]
for n_, f_, t_ in zip(names, fitted, truth, strict=True):
    print(f"{n_:10s} fitted {f_:7.3f}   true {t_:7.3f}")
assert history[-1] > history[0] + 10  # the fit improved the likelihood by far
assert abs(fitted[0] - 1.1) < 0.1 and abs(fitted[5] - noise_true) < 0.05

# %%
# The posterior at the data points, from the inverse diagonal
# -----------------------------------------------------------
# With ``C = K + s^2 I``: mean ``y - s^2 C^{-1} y`` and variance ``s^2 - s^4 (C^{-1})_{ii}``.
# ``resolvent_diagonal(0)`` is ``diag(C^{-1})``, O(N r^3), never an N x N array.

with torch.no_grad():
    kern, noise = model(raw)
    C = kern.to_operator(tt, diag=noise**2)
    alpha = C.factor().solve(yt)
    mean = (yt - noise**2 * alpha).numpy()
    var = (noise**2 - noise**4 * C.resolvent_diagonal(0).real).numpy()
    Cd = kern(tt) + noise**2 * torch.eye(N, dtype=torch.float64)
    Kd = kern(tt)
    var_dense = torch.diag(Kd - Kd @ torch.linalg.solve(Cd, Kd)).numpy()
print(f"posterior variance vs dense: max abs difference {np.abs(var - var_dense).max():.1e}")
assert np.allclose(var, var_dense, rtol=1e-8, atol=1e-12)

fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(8, 6), gridspec_kw={"height_ratios": [3, 1]})
sd = np.sqrt(np.maximum(var, 0.0))
ax0.plot(t, y, ".", ms=3, color="0.5", label="data")
ax0.plot(t, mean, color="C0", label="posterior mean")
ax0.fill_between(t, mean - 2 * sd, mean + 2 * sd, color="C0", alpha=0.25, label="2 sd")
ax0.set_xlabel("t")
ax0.legend(loc="upper right")
ax1.plot(history)
ax1.set_xlabel("Adam step")
ax1.set_ylabel("log-likelihood")
fig.tight_layout()
plt.show()

# %%
# Time against N, next to dense
# -----------------------------
# One log-likelihood evaluation (NumPy, fitted kernel) by the quasiseparable factorization and by
# a dense Cholesky factorization, timed when this page was built (medians of a few runs on the
# documentation machine, one thread each; the performance pages have the controlled
# measurements).  The structured cost grows like N, the dense one like N^3.

import time  # noqa: E402

import scipy.linalg as sla  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

kern_np = kernels.SHO(omega=float(fitted[0]), quality=float(fitted[1]), sigma=float(fitted[2])) + \
    kernels.Matern32(scale=float(fitted[3]), sigma=float(fitted[4]))
noise2 = float(fitted[5]) ** 2


def ll_structured(ts, ys):
    f = kern_np.to_operator(ts, diag=noise2).factor()
    return -0.5 * (ys @ f.solve(ys) + f.logdet().real + ts.size * np.log(2 * np.pi))


def ll_dense(ts, ys):
    c, low = sla.cho_factor(kern_np(ts) + noise2 * np.eye(ts.size))
    return -0.5 * (ys @ sla.cho_solve((c, low), ys) + 2 * np.log(np.diag(c)).sum()
                   + ts.size * np.log(2 * np.pi))


def median_time(fn, *args, repeats=5):
    fn(*args)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - t0)
    return float(np.median(out))


sizes = [250, 500, 1000, 2000, 4000, 8000]
t_qs, t_dense = [], []
# one thread for BLAS too: a batch of one runs semisep's kernels on one thread
limit = threadpool_limits(1)
for n in sizes:
    ts = np.sort(rng.uniform(0.0, n / 10, n))
    ys = rng.standard_normal(n)
    if n <= 2000:
        assert abs(ll_structured(ts, ys) - ll_dense(ts, ys)) <= 1e-9 * abs(ll_dense(ts, ys))
    t_qs.append(median_time(ll_structured, ts, ys))
    t_dense.append(median_time(ll_dense, ts, ys, repeats=3) if n <= 2000 else np.nan)
    print(f"N = {n:5d}: quasiseparable {t_qs[-1] * 1e3:8.2f} ms   dense Cholesky "
          f"{t_dense[-1] * 1e3:8.2f} ms")
limit.restore_original_limits()

fig, ax = plt.subplots(figsize=(6, 4))
ax.loglog(sizes, t_qs, "o-", label="semisep (quasiseparable)")
ax.loglog(sizes, t_dense, "s-", label="dense Cholesky (SciPy)")
ax.set_xlabel("N")
ax.set_ylabel("one log-likelihood [s]")
ax.legend()
fig.tight_layout()
plt.show()
