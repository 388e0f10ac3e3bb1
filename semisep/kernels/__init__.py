"""Stationary 1-d covariance kernels in quasiseparable (state-space) form.

A kernel ``k(tau)`` here is the covariance of a linear stochastic differential equation, so on
sorted coordinates ``t (..., N)`` its matrix ``K[i, j] = k(|t_i - t_j|)`` is quasiseparable:

    K[i, j] = p_i . (a_{i-1} a_{i-2} ... a_{j+1} q_j)   (i > j),   K symmetric,

with ``a_i = Phi(t_i - t_{i-1})`` the state transition over one step (a decaying matrix such as
``exp(-dt / scale)``, never ``exp(t / scale)``), ``p_i = a_i^T u`` and ``q_j = v`` where
``k(tau) = u^T Phi(tau) v``.  Generators stay bounded at any time span.

* ``kernel.to_generators(t) -> (diag, p, q, a)``: ``diag (..., N)``, ``p, q (..., N, r)``,
  ``a (..., N, r, r)``;
* ``kernel.to_operator(t, diag=None)``: the symmetric :class:`semisep.Quasiseparable`
  ``K + diag(diag)`` (``diag``: white-noise variance, scalar or ``(..., N)``);
* ``kernel(t1, t2=None)``: the dense matrix from the closed form, for checking;
* ``k1 + k2`` (order ``r1 + r2``, block-diagonal states), ``k1 * k2`` (order ``r1 r2``,
  Kronecker products), ``c * k`` (a scaled kernel).

Parameter names follow tinygp's ``tinygp.kernels.quasisep``.  NumPy in, NumPy out; a torch
tensor among the coordinates or parameters gives torch tensors, built with torch operations so
that gradients flow to every parameter.

>>> import numpy as np
>>> from semisep import kernels
>>> t = np.sort(np.random.default_rng(0).uniform(0, 10, 6))
>>> k = kernels.Matern32(scale=1.5, sigma=2.0) + kernels.SHO(omega=3.0, quality=0.3)
>>> d, p, q, a = k.to_generators(t)
>>> d.shape, p.shape, q.shape, a.shape
((6,), (6, 4), (6, 4), (6, 4, 4))
>>> bool(np.allclose(p[4] @ a[3] @ a[2] @ q[1], k(t)[4, 1]))
True
"""

from ._core import Kernel, Product, Scale, Sum
from ._terms import SHO, Celerite, Cosine, Exp, Matern32, Matern52

__all__ = ["Kernel", "Sum", "Product", "Scale", "Exp", "Matern32", "Matern52", "Cosine", "SHO",
           "Celerite"]
