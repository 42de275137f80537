r"""One ScaleGMN message-passing layer, forward-only or bidirectional.

Every hidden node ``i`` carries a forward feature ``h_i`` that transforms with ``q_i`` and, in the bidirectional
model, a backward feature ``g_i`` that transforms with ``1 / q_i`` (as a backpropagated signal does). An edge
``j -> i`` carries ``e_ji`` that transforms with ``q_i / q_j``. Then

.. math::
    m_i &= \sum_{j \to i} \mathrm{ScaleEq}\big((A e_{ji}) \odot (B h_j)\big)
        && \text{transforms with } (q_i / q_j)\, q_j = q_i \\
    n_j &= \sum_{j \to i} \mathrm{ScaleEq}\big((C e_{ji}) \odot (D g_i)\big)
        && \text{transforms with } (q_i / q_j) / q_i = 1 / q_j \\
    h_i' &= h_i + \mathrm{ScaleEq}([h_i \,\|\, m_i];\ \mathrm{canon}(g_i), \mathrm{canon}(n_i)) \\
    g_i' &= g_i + \mathrm{ScaleEq}([g_i \,\|\, n_i];\ \mathrm{canon}(h_i), \mathrm{canon}(m_i)) \\
    e_{ji}' &= e_{ji} + (W e_{ji}) \odot \phi(\mathrm{canon}(e_{ji}), \mathrm{canon}(h_i), \mathrm{canon}(h_j), \dots)
               + (P h_i) \odot (R g_j)

The backward message needs no reciprocal ``1 / w`` (unstable) and, unlike reusing the forward weight for the
backward direction, it is exactly equivariant for positive scales, not just for sign flips.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from .blocks import ScaleEq, ScaleInv, canon, squash
from .dense import Layered, dense_conv


class ScaleGMNConv(MessagePassing):
    r"""ScaleGMN layer (see module docstring for the update rules).

    Args:
        hidden: feature size ``d`` of nodes and edges.
        symmetry: ``"scale"`` (ReLU nets), ``"sign"`` (tanh nets) or ``"none"`` (symmetry-broken ablation).
        bidirectional: also pass backward messages along reversed edges into ``g``.
        dropout: dropout inside the invariant MLPs (training only).

    Shapes:
        ``h, g (N, d)``, ``e (E, d)``, ``edge_index (2, E)`` -> ``h', g' (N, d)``, ``e' (E, d)``; or, on the dense
        layered form (:mod:`workbench.metanet.dense`, ``edge_index`` a :class:`~workbench.metanet.dense.Layered`),
        ``h, g (B, n, d)``, ``e`` a list of ``(B, n_{l+1}, n_l, d)`` -> the same.
    """

    def __init__(self, hidden: int, symmetry: str, bidirectional: bool = True, dropout: float = 0.0):
        super().__init__(aggr="sum", flow="source_to_target")
        self.hidden, self.symmetry, self.bidirectional = hidden, symmetry, bidirectional
        d = hidden
        self.msg_e = nn.Linear(d, d, bias=False)
        self.msg_h = nn.Linear(d, d, bias=False)
        self.msg = ScaleEq(d, 0, d, symmetry, dropout=dropout)
        self.update_h = ScaleEq(2 * d, 2 * d if bidirectional else 0, d, symmetry, dropout=dropout)
        self.edge_w = nn.Linear(d, d, bias=False)
        self.edge_inv = ScaleInv(d, 0, d, symmetry, dropout=dropout)
        # node-side inputs of the edge update, projected per node and gathered per edge
        n_side = 2 * d if bidirectional else d
        self.edge_side_dst = nn.Linear(n_side, d, bias=False)
        self.edge_side_src = nn.Linear(n_side, d, bias=False)
        if bidirectional:
            self.bmsg_e = nn.Linear(d, d, bias=False)
            self.bmsg_g = nn.Linear(d, d, bias=False)
            self.bmsg = ScaleEq(d, 0, d, symmetry, dropout=dropout)
            self.update_g = ScaleEq(2 * d, 2 * d, d, symmetry, dropout=dropout)
            self.edge_p = nn.Linear(d, d, bias=False)
            self.edge_r = nn.Linear(d, d, bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, h: Tensor, g: Tensor | None, e: Tensor | list[Tensor],
                edge_index: Tensor | Layered) -> tuple[Tensor, Tensor | None, Tensor | list[Tensor]]:
        if isinstance(edge_index, Layered):  # the dense layered form: same rules, no gathers or scatters
            return dense_conv(self, h, g, e, edge_index)
        s = self.symmetry
        m = self.propagate(edge_index, v=self.msg_h(h), e=e, direction="forward")  # (N, d) ~ q_i
        if self.bidirectional:
            # reversed edges: the message from i travels to j; e_ji keeps its (q_i / q_j) transformation
            n = self.propagate(edge_index.flip(0), v=self.bmsg_g(g), e=e, direction="backward")  # (N, d) ~ 1/q_j
            h_new = squash(h + self.update_h(torch.cat([h, m], -1), torch.cat([canon(g, s), canon(n, s)], -1)), s)
            g_new = squash(g + self.update_g(torch.cat([g, n], -1), torch.cat([canon(h, s), canon(m, s)], -1)), s)
            side = torch.cat([canon(h_new, s), canon(g_new, s)], -1)  # (N, 2d) invariant
            e_new = self.edge_updater(edge_index, a=self.edge_side_dst(side), b=self.edge_side_src(side),
                                      p=self.edge_p(h_new), r=self.edge_r(g_new), e=e)
            return h_new, g_new, squash(e_new, s)
        else:
            h_new, g_new = squash(h + self.update_h(torch.cat([h, m], -1)), s), None
            side = canon(h_new, s)
            e_new = self.edge_updater(edge_index, a=self.edge_side_dst(side), b=self.edge_side_src(side),
                                      p=None, r=None, e=e)
        return h_new, g_new, squash(e_new, s)

    def message(self, v_j: Tensor, e: Tensor, direction: str) -> Tensor:
        if direction == "forward":
            return self.msg(self.msg_e(e) * v_j)  # (E, d) ~ (q_i / q_j) q_j
        return self.bmsg(self.bmsg_e(e) * v_j)  # (E, d); v_j = D g at the original target

    def edge_update(self, a_i: Tensor, b_j: Tensor, p_i: Tensor | None, r_j: Tensor | None, e: Tensor) -> Tensor:
        out = e + self.edge_w(e) * self.edge_inv(e, pre=a_i + b_j)  # (E, d) ~ q_i / q_j
        if p_i is not None:
            out = out + p_i * r_j  # q_i * (1 / q_j)
        return out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(hidden={self.hidden}, symmetry={self.symmetry!r}, "
                f"bidirectional={self.bidirectional})")
