"""
A density of states on a chunked chain with Dask
================================================

The density of states of the 1-d Anderson model ``H = -Laplacian + W v`` (``v`` uniform in
``[-1/2, 1/2]``), averaged over sites and disorder realisations, from the exact resolvent
diagonal.  The chain is a Dask array in chunks along its length: semisep builds a task graph
(a transfer pass per chunk, a scan of a few numbers per chunk, a second pass per chunk), so
no task ever holds more than one chunk -- the same code runs a chain longer than one
machine's memory on a cluster.  Here a local scheduler runs it, and we check it against the
in-memory NumPy computation and, without disorder, against the closed-form density of states
``rho(E) = 1 / (pi sqrt(E (4 - E)))`` of the clean chain (band ``0 < E < 4``).
"""

# %%
# The chain, in chunks
# --------------------
import dask
import dask.array as da
import matplotlib.pyplot as plt
import numpy as np

import semisep as ss
from semisep.distributed import ldos

N, chunk, R = 1 << 17, 1 << 15, 4  # 131,072 sites in 4 chunks; 4 disorder realisations
energies = np.linspace(-2.0, 6.0, 161)
eta = 0.02

rng = da.random.default_rng(7)


def chain(W):
    """R realisations of ``2 + W v`` on the diagonal, -1 off it, as a chunked dask array."""
    diag = 2.0 + W * (rng.uniform(-0.5, 0.5, (R, N), chunks=(R, chunk)))
    return ss.Tridiagonal(diag, -np.ones(N - 1), check_finite=False)


# %%
# The density of states, lazily, then computed
# --------------------------------------------
# ``ldos(..., average="all")`` is ``Im G_ii(E + i eta) / pi`` (semisep's ``G = (T - z I)^{-1}``,
# the sign opposite to the retarded Green's function) averaged over sites and
# realisations: one lazy array of shape ``(n_E,)`` whose graph reduces each chunk first.

curves = {}
with dask.config.set(scheduler="threads"):
    for W in (0.0, 1.0, 3.0):
        T = chain(W)
        dos = ldos(T, energies, eta, average="all")
        curves[W], diag = dask.compute(dos, T.diag)
        if W == 1.0:  # the same numbers in memory, without Dask
            Tn = ss.Tridiagonal(diag, -np.ones(N - 1))
            G = Tn.resolvent_diagonal((energies + 1j * eta)[:, None])
            in_memory = (G.imag / np.pi).mean(axis=(1, 2))  # G = (T - zI)^{-1}: rho = +Im G / pi
            err = np.abs(curves[W] - in_memory).max()
            print(f"W = 1: dask vs in-memory NumPy, max difference {err:.1e}")
            assert err < 1e-10

# %%
# The clean chain against the closed form
# ---------------------------------------
# With broadening ``eta`` the exact DOS is the closed form convolved with a Lorentzian; away
# from the band edges (where it diverges) and with ``eta`` small they agree to ``O(eta)``.

inside = (energies > 0.5) & (energies < 3.5)
closed = 1 / (np.pi * np.sqrt(energies[inside] * (4 - energies[inside])))
rel = np.abs(curves[0.0][inside] - closed) / closed
print(f"clean chain vs closed form (0.5 < E < 3.5): max relative difference {rel.max():.1e}")
assert rel.max() < 0.05
# the sum rule: the DOS integrates to one (less the Lorentzian tails outside the grid, ~ eta)
for W, c in curves.items():
    print(f"W = {W}: integral of the DOS over the grid {np.trapezoid(c, energies):.3f}")
    assert abs(np.trapezoid(c, energies) - 1) < 0.03

fig, ax = plt.subplots(figsize=(7, 4))
for W, c in curves.items():
    ax.plot(energies, c, label=f"W = {W:g}")
E = np.linspace(0.05, 3.95, 200)
ax.plot(E, 1 / (np.pi * np.sqrt(E * (4 - E))), "k:", label="closed form, W = 0")
ax.set_xlabel("E")
ax.set_ylabel("density of states")
ax.set_ylim(0, 1.2)
ax.legend()
fig.tight_layout()
plt.show()
