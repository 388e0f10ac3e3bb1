"""
Local density of states of a disordered (Anderson) chain
=========================================================

A tight-binding chain with hopping 1 and on-site energies :math:`\\varepsilon_i`,

.. math:: H = \\sum_i \\varepsilon_i\\, |i\\rangle\\langle i|
          + \\sum_i \\big(|i\\rangle\\langle i+1| + |i+1\\rangle\\langle i|\\big),

has the local density of states (LDOS) at site :math:`i`, broadened by :math:`\\eta > 0`,

.. math:: \\rho_i(E) = -\\tfrac{1}{\\pi}\\, \\operatorname{Im} G_{ii}(E + i\\eta),
          \\qquad G(z) = (z - H)^{-1}.

:meth:`semisep.Tridiagonal.resolvent_diagonal` returns
:math:`\\operatorname{diag}((H - zI)^{-1}) = -\\operatorname{diag}\\,G(z)`, every site at once in
O(N), so :math:`\\rho_i(E) = \\operatorname{Im}[(H - zI)^{-1}]_{ii} / \\pi`.  An array of shifts
``z`` of shape ``(n_E,)`` broadcasts against the (unbatched) chain and gives the whole site x energy map
in one call.

We check three things:

1. the clean chain (:math:`\\varepsilon_i = 0`) against its closed form,
2. the DOS sum rule :math:`\\int \\rho_i(E)\\, dE = 1` for every site, disorder or not,
3. that disorder localises: the LDOS of a disordered chain is a set of sharp peaks that differ
   from site to site, where the clean chain's is smooth.
"""

import matplotlib.pyplot as plt
import numpy as np

import semisep as ss

N = 400          # sites
eta = 0.05       # broadening (the imaginary part of z)
W = 3.0          # disorder strength: eps_i uniform in [-W/2, W/2]
rng = np.random.default_rng(1)

clean = ss.Tridiagonal(np.zeros(N), np.ones(N - 1))
dirty = ss.Tridiagonal(rng.uniform(-W / 2, W / 2, N), np.ones(N - 1))

E = np.linspace(-3.5, 3.5, 701)
z = E + 1j * eta                                 # (n_E,): one shift per energy
ldos_clean = clean.resolvent_diagonal(z).imag / np.pi   # (n_E, N)
ldos_dirty = dirty.resolvent_diagonal(z).imag / np.pi

# %%
# The clean chain against its closed form
# ---------------------------------------
# The open chain of N sites has eigenvalues :math:`E_k = 2\cos(k\pi/(N+1))` and eigenvectors
# :math:`\psi_k(i) = \sqrt{2/(N+1)}\,\sin(k i \pi/(N+1))`, so
# :math:`\rho_i(E) = \frac{1}{\pi}\sum_k |\psi_k(i)|^2\, \eta / ((E_k - E)^2 + \eta^2)` exactly.
# Far from the ends and for :math:`N \to \infty, \eta \to 0` this tends to the band DOS
# :math:`1 / (\pi\sqrt{4 - E^2})` (dashed).

k = np.arange(1, N + 1)
Ek = 2 * np.cos(k * np.pi / (N + 1))
psi2 = 2 / (N + 1) * np.sin(np.outer(np.arange(1, N + 1), k) * np.pi / (N + 1)) ** 2  # (site, k)
lorentz = eta / np.pi / ((Ek[None, :] - E[:, None]) ** 2 + eta**2)                  # (E, k)
ldos_exact = lorentz @ psi2.T                                                        # (E, site)

err = np.max(np.abs(ldos_clean - ldos_exact)) / np.max(ldos_exact)
print(f"clean chain: max |semisep - closed form| / max LDOS = {err:.2e}")
assert err < 1e-10, err

mid = N // 2
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(E, ldos_exact[:, mid], lw=4, alpha=0.35, label="closed form (finite chain)")
ax.plot(E, ldos_clean[:, mid], label=f"semisep, clean, site {mid}")
ax.plot(E, ldos_dirty[:, mid], lw=0.8, label=f"semisep, disordered W = {W}, site {mid}")
inside = np.abs(E) < 2
ax.plot(E[inside], 1 / (np.pi * np.sqrt(4 - E[inside] ** 2)), "k--", lw=1,
        label=r"band DOS $1/(\pi\sqrt{4-E^2})$")
ax.set_xlabel("E")
ax.set_ylabel(r"$\rho_i(E)$")
ax.set_ylim(0, 1.6)
ax.set_title(rf"LDOS at the middle site, N = {N}, $\eta$ = {eta}")
ax.legend(fontsize="small")
fig.tight_layout()

# %%
# The DOS sum rule
# ----------------
# Each :math:`\rho_i` is a sum of Lorentzians with weights :math:`|\psi_k(i)|^2` summing to one,
# so :math:`\int_{-\infty}^{\infty} \rho_i(E)\, dE = 1` exactly, for any potential.  The
# substitution :math:`E = s\tan\theta` maps the whole real line onto
# :math:`(-\pi/2, \pi/2)` with a bounded integrand (it tends to :math:`\eta/(\pi s)` per site
# at the ends), so Gauss-Legendre quadrature in :math:`\theta` checks the rule with no
# truncated tail.

s = 2.0
x, w = np.polynomial.legendre.leggauss(3000)
theta = x * np.pi / 2
E_q = s * np.tan(theta)
jac = (np.pi / 2) * w * s / np.cos(theta) ** 2          # dE = s sec^2(theta) d(theta)
for name, T in (("clean", clean), ("disordered", dirty)):
    rho = T.resolvent_diagonal(E_q + 1j * eta).imag / np.pi   # (n_q, N)
    per_site = jac @ rho
    worst = np.max(np.abs(per_site - 1))
    print(f"{name:>10}: integral of rho_i over E, worst site: |. - 1| = {worst:.1e}")
    assert worst < 1e-6, worst

# %%
# Localisation in a site x energy map
# -----------------------------------
# In the clean chain every eigenstate spreads over the whole chain: the LDOS varies smoothly
# with the site.  With disorder the states localise within a few sites (the localisation length
# at the band centre is about :math:`105/W^2 \approx 12` sites for W = 3), and the map breaks
# into short bright streaks: each eigenvalue shows up only at the sites its state lives on.
# A smaller broadening, :math:`\eta = 0.01`, resolves the individual states.

eta_map = 0.01
map_clean = clean.resolvent_diagonal(E + 1j * eta_map).imag / np.pi
map_dirty = dirty.resolvent_diagonal(E + 1j * eta_map).imag / np.pi

shown = 150  # the first 150 sites, so that single states are visible
fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
for ax, data, title in ((axes[0], map_clean, "clean"), (axes[1], map_dirty, f"disordered, W = {W}")):
    im = ax.imshow(data[:, :shown], origin="lower", aspect="auto", extent=(0, shown, E[0], E[-1]),
                   cmap="magma", vmin=0, vmax=2.0)
    ax.set_xlabel("site i")
    ax.set_title(rf"{title}, $\eta$ = {eta_map}")
axes[0].set_ylabel("E")
fig.colorbar(im, ax=axes, label=r"$\rho_i(E)$")

# %%
# A number that says the same: the inverse participation ratio of the LDOS over sites,
# :math:`\sum_i \rho_i^2 / (\sum_i \rho_i)^2`, is about :math:`1/N` for extended states and
# much larger for localised ones (averaged over the band centre, :math:`|E| < 1`, at
# :math:`\eta = 0.01`).

band = np.abs(E) < 1
ipr = lambda r: np.mean(np.sum(r[band] ** 2, axis=1) / np.sum(r[band], axis=1) ** 2)  # noqa: E731
print(f"IPR x N: clean {ipr(map_clean) * N:.2f}, disordered {ipr(map_dirty) * N:.2f}")
assert ipr(map_dirty) > 4 * ipr(map_clean)
