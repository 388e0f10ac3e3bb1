"""
Verifying a factorization: tridiagonal plus low rank
=====================================================

:func:`semisep.factorize` approximates a dense ``H`` (N x N) by ``T + U V^T``: a tridiagonal
``T`` plus a rank-``r`` term, by alternating projection (keep the three central diagonals, take
the best rank-``r`` approximation of the rest, repeat).  :func:`semisep.check_factorization` is
the judge: it compares the dense matrix with the structured operator and reports the relative
Frobenius error, the largest entry-wise error and an estimate of the relative spectral error.

Here ``H`` is built as exactly that structure plus noise, so we know the answer: the error
should fall with the rank until ``r`` reaches the true rank, then stay at the noise level.
"""

import json
import os
import subprocess
import sys
import tempfile

import matplotlib.pyplot as plt
import numpy as np

import semisep as ss

N, r_true, noise = 120, 4, 1e-6
rng = np.random.default_rng(0)
d = rng.standard_normal(N)
e = rng.standard_normal(N - 1)
T_true = np.diag(d) + np.diag(e, 1) + np.diag(e, -1)
U = rng.standard_normal((N, r_true)) / np.sqrt(N)
V = rng.standard_normal((N, r_true)) / np.sqrt(N)
E = rng.standard_normal((N, N))
H = T_true + 3 * U @ V.T
H += noise * np.linalg.norm(H) / np.linalg.norm(E) * E     # ||noise||_F / ||H||_F = 1e-6

# %%
# Error against rank
# ------------------
# One factorization per rank; ``op.factorization`` records how the alternating projection ran.

ranks = list(range(0, 7))
errors, iterations = [], []
for r in ranks:
    op = ss.factorize(H, rank=r)
    rep = ss.check_factorization(H, op, rtol=1e-4)
    errors.append(rep.relative_error)
    iterations.append(op.factorization.iterations)
    print(f"rank {r}: relative error {rep.relative_error:.2e} after {op.factorization.iterations}"
          f" iteration(s), stop: {op.factorization.stop_reason}")

# %%
# Below the true rank the error is that of the missing singular directions.  At the true rank
# it drops to the noise level within a few iterations.  Above it, the extra rank can only fit
# noise: the error stays at the noise level and the alternating projection converges slowly
# (it may run to ``max_iter``) -- a rank past the knee of this curve costs time and buys
# nothing.

# below the true rank the error is that of the missing singular directions; at and above it,
# the noise level (the best any rank-r fit of this H can do is of the order of the noise)
assert errors[r_true - 1] > 100 * noise
assert errors[r_true] < 10 * noise

fig, ax = plt.subplots(figsize=(6.5, 4))
ax.semilogy(ranks, errors, "o-", label="semisep.factorize")
ax.axhline(noise, color="grey", ls="--", label=r"noise level $\|E\|_F / \|H\|_F$")
ax.axvline(r_true, color="grey", ls=":", label=f"true rank {r_true}")
ax.set_xlabel("rank r")
ax.set_ylabel(r"$\|H - (T + UV^T)\|_F \;/\; \|H\|_F$")
ax.set_title(f"factorize on T + rank {r_true} + noise, N = {N}")
ax.legend()
fig.tight_layout()

# %%
# What ``check_factorization`` reports
# ------------------------------------
# At the true rank, with a tolerance of 1e-4 on the relative Frobenius error:

op = ss.factorize(H, rank=r_true)
report = ss.check_factorization(H, op, rtol=1e-4)
for key, value in report.as_dict().items():
    print(f"{key:>16}: {value}")
assert report.passes

# %%
# The factors are an operator like any other: its resolvent diagonal in O(N r) agrees with the
# dense inverse of the fitted matrix.

z = 0.3 + 0.1j
G = op.resolvent_diagonal(z)
G_dense = np.diag(np.linalg.inv(op.to_dense() - z * np.eye(N)))
print(f"resolvent diagonal vs dense inverse: max rel err "
      f"{np.max(np.abs(G - G_dense) / np.abs(G_dense)):.1e}")
assert np.allclose(G, G_dense, rtol=1e-9, atol=0)

# %%
# The same from the command line
# ------------------------------
# ``python -m semisep verify FILE.npy --rank R --rtol TOL`` loads a square matrix, factorizes it
# and prints the same report; the exit code is 0 when the error is within ``--rtol``, 1 when not,
# 2 for unreadable input.  ``--json`` prints it machine-readably.

repo = os.path.dirname(os.path.dirname(os.path.abspath(ss.__file__)))
env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "H.npy")
    np.save(path, H)
    for rank in (r_true - 1, r_true):
        cmd = [sys.executable, "-m", "semisep", "verify", path, "--rank", str(rank), "--rtol", "1e-4"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        print(f"$ python -m semisep verify H.npy --rank {rank} --rtol 1e-4   (exit code {done.returncode})")
        print(done.stdout.replace(path, "H.npy"))
        assert done.returncode == (0 if rank >= r_true else 1), done.stderr
    done = subprocess.run(cmd + ["--json"], capture_output=True, text=True, env=env, timeout=300)
    out = json.loads(done.stdout)
    assert out["passes"] and abs(out["relative_error"] - report.relative_error) < 1e-12
