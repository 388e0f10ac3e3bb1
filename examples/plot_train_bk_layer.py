"""
Training a model with a BK layer (torch)
=========================================

:class:`semisep.nn.BKLayer` is a residual block whose core computes, for each sequence in the
batch, a potential :math:`v = h\\,w_v + b_v` from its input and the exact diagonal of the
resolvent of the Schroedinger-type operator :math:`H_0 + \\operatorname{diag}(v)`
(:math:`H_0` the discrete Laplacian) at :math:`z = i`,

.. math:: G_{ii} = \\big[(H_0 + \\operatorname{diag}(v) - zI)^{-1}\\big]_{ii},

in O(N) forward and O(N) backward (:class:`semisep.Tridiagonal` with torch tensors).
Every :math:`G_{ii}` depends on the whole sequence, so the layer mixes information along it
without attention.

The toy task: each sequence carries a hidden potential :math:`u_i = x_i \\cdot a` and the target
is :math:`\\operatorname{Im} G_{ii}` of that potential at :math:`z = i`.  A BK layer and a linear
head are trained with Adam; we plot the loss curve and check the model's gradient once against
finite differences.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

import semisep as ss
from semisep.nn import BKLayer

torch.manual_seed(0)
B, N, d = 32, 48, 4
a = torch.randn(d) / d**0.5


def make_batch(batch):
    """x (batch, N, d) and the target Im G_ii (batch, N) of the hidden potential x . a."""
    x = torch.randn(batch, N, d)
    u = x @ a
    T = ss.Tridiagonal(u - 2.0, torch.ones(N - 1))
    return x, T.resolvent_diagonal(1j).imag.float()


class BKModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bk = BKLayer(d, N)
        self.head = torch.nn.Linear(d, 1)

    def forward(self, x):
        h, stats = self.bk(x)
        return self.head(h)[..., 0]


def train(model, steps=100, lr=2e-2):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        x, y = make_batch(B)
        loss = torch.mean((model(x) - y) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


bk_model = BKModel()
x_test, y_test = make_batch(256)
with torch.no_grad():
    var = float(torch.var(y_test))
    test_before = float(torch.mean((bk_model(x_test) - y_test) ** 2)) / var
loss_bk = train(bk_model)
with torch.no_grad():
    test_after = float(torch.mean((bk_model(x_test) - y_test) ** 2)) / var
print(f"held-out MSE / Var(target): {test_before:.3f} before training, {test_after:.3f} after")
assert test_after < 0.5 * test_before

fig, ax = plt.subplots(figsize=(6.5, 4))
ax.semilogy(np.array(loss_bk) / var, label="training batches")
ax.axhline(test_after, color="grey", ls="--", label="held-out, after training")
ax.set_xlabel("step")
ax.set_ylabel("BK model: MSE / Var(target)")
ax.set_title(f"toy task: Im G_ii of a hidden potential, N = {N}")
ax.legend()
fig.tight_layout()

# %%
# What the layer costs
# --------------------
# ``BKLayer.forward`` returns its FLOP count for the call's shapes next to the output
# (:func:`semisep.nn._flops.bk_layer_flops`, counted, not estimated from timings).

with torch.no_grad():
    _, stats = bk_model.bk(x_test[:1])
print(f"BKLayer FLOPs for one sequence of N = {N}, d = {d}: {stats['flops']:,}")

# %%
# The gradient against finite differences
# ---------------------------------------
# In float64, the directional derivative of the loss along a random direction :math:`\delta`
# in parameter space, :math:`\langle \nabla L, \delta\rangle` from autograd (semisep's O(N)
# backward through the resolvent diagonal), against the central difference
# :math:`(L(\theta + h\delta) - L(\theta - h\delta)) / 2h`.

model64 = BKModel().double()
x64, y64 = make_batch(4)
x64, y64 = x64.double(), y64.double()
params = list(model64.parameters())


def loss_fn():
    return torch.mean((model64(x64) - y64) ** 2)


loss = loss_fn()
grads = torch.autograd.grad(loss, params)
delta = [torch.randn_like(p) for p in params]
directional = sum(float(torch.sum(g * dl)) for g, dl in zip(grads, delta, strict=True))
h = 1e-6
with torch.no_grad():
    for p, dl in zip(params, delta, strict=True):
        p += h * dl
    plus = float(loss_fn())
    for p, dl in zip(params, delta, strict=True):
        p -= 2 * h * dl
    minus = float(loss_fn())
    for p, dl in zip(params, delta, strict=True):
        p += h * dl
fd = (plus - minus) / (2 * h)
rel = abs(directional - fd) / abs(fd)
print(f"autograd {directional:.10f}, finite difference {fd:.10f}, relative difference {rel:.1e}")
assert rel < 1e-6

# %%
# The core operation alone, through ``torch.autograd.gradcheck`` (complex output, every
# input direction):

v = torch.randn(2, 12, dtype=torch.float64, requires_grad=True)
off = torch.ones(11, dtype=torch.float64)
ok = torch.autograd.gradcheck(lambda v: ss.Tridiagonal(v - 2.0, off).resolvent_diagonal(1j), (v,))
print(f"gradcheck of Tridiagonal.resolvent_diagonal w.r.t. the diagonal: {ok}")
assert ok
