r"""The global scale of a ReLU network, and the normalisation that keeps ScaleGMN's update homogeneous in it.

Multiplying every weight and bias of a network by ``c > 0`` is not a symmetry (it changes the network), and a ScaleGMN
with positive-scale symmetry sees it as such: under that group a feature's magnitude *is* the group action, so the
model cannot squash it (``blocks.squash``) and its products of features -- a message :math:`(A e_{ji}) \odot (B h_j)`
is of degree 2 in the input's magnitude, the edge update's :math:`(P h_i) \odot (R g_j)` of degree 2 in features that
are already products -- compound over layers: the update of ``c theta`` grew like ``c^8`` (bench/README.md, "Scale
response").

The fix keeps exact equivariance. The l1 path norm of a network's graph,

.. math::
    P(\theta) = \mathbf{1}^\top M_L \cdots M_1 \mathbf{1}, \qquad M_l[i, j] = \|w^{(l)}_{ij}\|_1

(the sum over all input-to-output paths of the product of the edges' kernel norms), is *invariant* under the
scaling group -- along a path the factors :math:`q_i / q_j` telescope to 1 (input and output nodes have
:math:`q = 1`), and permutations and sign flips only reorder or leave the norms -- and *homogeneous* of degree
``L`` (the number of weight layers) under the global rescale: :math:`P(c\theta) = c^L P(\theta)`. With
:math:`s(\theta) = P(\theta)^{1/L}` the model runs on :math:`\theta / s` and scales its update back:

.. math::
    \theta' = \theta + s(\theta)\, \delta(\theta / s(\theta))

Since the group acts linearly and ``s`` is invariant, :math:`g(\theta)/s(g\theta) = g(\theta / s(\theta))`: the map
stays exactly equivariant, and the update of :math:`c\theta` is exactly ``c`` times that of :math:`\theta` (degree 1).
A network with no nonzero path (``P = 0``: a dead layer) keeps ``s = 1``; the product is accumulated layer by layer
with a renormalisation, so weights of 1e-15 or 1e15 neither underflow nor overflow.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..nets import NetSpec, Params, n_networks

__all__ = ["path_norm_scale", "rescale"]


def path_norm_scale(spec: NetSpec, params: Params) -> Tensor:
    """``s = P^(1/L)`` per network (see the module docstring): ``(B,)``, 1 where no path has a nonzero product.

    Invariant under every element of the scaling group (permutations, positive scales, sign flips) and
    ``s(c theta) = c s(theta)`` for ``c > 0``."""
    n_nets, dtype = n_networks(params), params[0][0].dtype
    v = torch.ones(n_nets, spec.widths[0], dtype=dtype, device=params[0][0].device)  # (B, n_0)
    log_p = torch.zeros(n_nets, dtype=dtype, device=v.device)
    alive = torch.ones(n_nets, dtype=torch.bool, device=v.device)
    for layer, (w, _) in enumerate(params):
        m = w.abs().flatten(3).sum(-1) if spec.is_conv(layer) else w.abs()  # (B, out, in): l1 norm of each edge
        v = torch.bmm(m, v[..., None])[..., 0]  # (B, out): path sums into each node, up to the factor exp(log_p)
        top = v.amax(1)  # (B,)
        alive = alive & (top > 0)
        top = torch.where(top > 0, top, torch.ones_like(top))
        log_p, v = log_p + top.log(), v / top[:, None]
    log_p = log_p + v.sum(1).clamp_min(torch.finfo(dtype).tiny).log()
    return torch.where(alive, (log_p / spec.n_layers).exp(), torch.ones_like(log_p))


def rescale(params: Params, factor: Tensor) -> Params:
    """Every weight and bias of network ``b`` times ``factor[b]`` (``(B,)``)."""
    return [(w * factor.reshape(-1, *[1] * (w.dim() - 1)), b * factor.reshape(-1, *[1] * (b.dim() - 1)))
            for w, b in params]
