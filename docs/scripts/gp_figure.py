"""Draw docs/_static/gp_posterior.png: a Gaussian-process posterior computed with semisep.

300 noisy samples of an SHO + Matern-3/2 process on irregular times with a gap; the posterior
mean and a 2-sigma band on a grid (cross-covariance solves through one factorization), and the
posterior standard deviation at the data points from the inverse diagonal
``sqrt(sigma_n^2 - sigma_n^4 diag(C^{-1}))``.

Run from the repository root: ``PYTHONPATH=. python docs/scripts/gp_figure.py`` (needs
matplotlib, in the ``bench`` extra).  The PNG is committed; re-run only when the page changes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from semisep import kernels  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "_static" / "gp_posterior.png"


def main() -> None:
    rng = np.random.default_rng(3)
    kern = kernels.SHO(omega=1.5, quality=4.0, sigma=1.0) + kernels.Matern32(scale=6.0, sigma=0.6)
    t = np.sort(np.concatenate([rng.uniform(0, 18, 200), rng.uniform(26, 40, 100)]))
    noise = 0.25**2
    # one draw of the process plus noise (dense Cholesky: 300 points)
    L = np.linalg.cholesky(kern(t) + 1e-10 * np.eye(t.size))
    y = L @ rng.standard_normal(t.size) + np.sqrt(noise) * rng.standard_normal(t.size)

    C = kern.to_operator(t, diag=noise)
    f = C.factor()
    alpha = f.solve(y)
    s = np.linspace(0, 40, 500)
    Kts = kern(t, s)
    mean_s = Kts.T @ alpha
    var_s = kern(s[:1], s[:1])[0, 0] - np.sum(Kts * f.solve(Kts), axis=0)
    if var_s.min() < -1e-12:
        raise RuntimeError(f"negative posterior variance {var_s.min():.2e}: a wrong solve")
    sd_s = np.sqrt(np.abs(var_s))                # |.|: rounding-level negatives only (checked)
    sd_data = np.sqrt(noise - noise**2 * C.resolvent_diagonal(0))

    fig, (ax, bx) = plt.subplots(2, 1, figsize=(7.0, 4.6), sharex=True,
                                 gridspec_kw={"height_ratios": [2.2, 1]})
    ax.fill_between(s, mean_s - 2 * sd_s, mean_s + 2 * sd_s, color="C0", alpha=0.25, lw=0,
                    label="posterior mean ± 2 sd")
    ax.plot(s, mean_s, color="C0", lw=1.4)
    ax.plot(t, y, ".", color="k", ms=3, label="data (noise sd 0.25)")
    ax.set_ylabel("y")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.set_title("SHO + Matern-3/2 kernel, N = 300, via semisep.kernels", fontsize=10)
    bx.plot(s, sd_s, color="C0", lw=1.2, label="posterior sd on a grid (solves)")
    bx.plot(t, sd_data, ".", color="C3", ms=3, label="posterior sd at the data (inverse diagonal)")
    bx.set_xlabel("t")
    bx.set_ylabel("sd")
    bx.set_ylim(0, None)
    bx.legend(loc="upper left", fontsize=8, frameon=False)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=90)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
