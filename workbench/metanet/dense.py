r"""ScaleGMN on the dense layered form of a network's graph: the fast path of every pass the workbench runs.

Every graph the workbench builds (:func:`workbench.graphs.to_graph`) is *layered*: its nodes are the neurons (or
channels) of consecutive layers, and the edges of weight layer ``l`` join every node of layer ``l`` to every node of
layer ``l + 1`` -- a complete bipartite graph, whose edge features are the weight tensor itself. In that form (in
the spirit of PyG's dense layers, ``DenseGCNConv`` and friends, which trade ``edge_index`` for a dense adjacency)

* node features are one tensor ``h (B, n, d)`` over the networks of a batch, the nodes of layer ``l`` the slice
  ``h[:, o_l:o_{l+1}]``;
* the edge features of weight layer ``l`` are ``e_l (B, n_{l+1}, n_l, d)`` -- entry ``[b, i, j]`` is edge ``j -> i``,
  PyG's edge ``o_l + i n_l + j`` of network ``b``;
* the gather of a node feature onto the edges is a broadcast, ``h_j -> h_l[:, None, :, :]`` and
  ``h_i -> h_{l+1}[:, :, None, :]``, with no index tensor and no copy;
* the scatter-sum of messages into their targets is a sum over an axis: forward messages
  :math:`m_i = \sum_j \mu_{ji}` sum over ``j`` (``dim=2``), backward messages :math:`n_j = \sum_i \nu_{ji}` over ``i``
  (``dim=1``);
* a sum of node terms on an edge, :math:`a_i + b_j + \beta`, is one broadcast add of two node tensors (the bias
  folded into the node term), and every node-level linear map runs once per node, not once per edge.

The functions here compute the same update rules as :class:`~workbench.metanet.ScaleGMNConv` and
:meth:`~workbench.metanet.ScaleGMN.graph_deltas` (the PyG path, which stays the reference and the path for graph
tensors), with the same modules and parameters; ``tests/test_dense_pass.py`` checks that both agree to float rounding.
Every operation is the same per-node or per-edge map, so equivariance is unchanged.

Networks are independent in the pass, so :func:`layered_deltas` runs a batch in chunks of networks small enough that
each edge tensor stays in the CPU's cache (:data:`CHUNK_ELEMENTS`); on a 2-core EPYC that alone made the element-wise
chains several times faster than on whole-batch tensors of megabytes (bench/README.md, "Metanetwork speed").
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nets import NetSpec, Params
from .blocks import ScaleEq, ScaleInv, canon, squash

__all__ = ["Layered", "layered", "dense_conv", "inv_on_edges", "eq_on_edges", "CHUNK_ELEMENTS", "chunk_networks",
           "split_networks"]

#: elements of one edge-feature tensor per chunk of networks (2**17 float32 = 512 KiB: it and the few tensors an
#: element-wise chain reads stay in a core's L2 / the shared L3; bench/metanet.py --chunk sweeps it)
CHUNK_ELEMENTS = 2 ** 18


@dataclass(frozen=True)
class Layered:
    r"""The layered structure of one architecture's graph (what ``edge_index`` holds in the PyG path).

    Edge features of a batch are one tensor ``e (B, E, d)`` in PyG's edge order (weight layer by weight layer, each
    row-major ``(out, in)``); :meth:`edge_parts` views weight layer ``l``'s part as ``(B, n_{l+1}, n_l, d)``.

    Attributes:
        widths: nodes per layer ``(n_0, ..., n_L)``.
        offsets: first node of each layer (len L + 2; the last is the number of nodes).
        edge_offsets: first edge of each weight layer (len L + 1; the last is the number of edges).
        conv: per weight layer, whether its edges carry a kernel (``edge_dim`` numbers) or one scalar.
        slot: the slot of a dense layer's scalar in the edge feature.
        g_zero_on_hidden: the caller's promise that the backward features ``g`` are exactly 0 on every hidden node
            (true before the first layer of an equivariant model: they start there). A backward message into ``j``
            then comes only from output nodes: :math:`\mathrm{ScaleEq}((C e) \odot (D g)_i)` is exactly 0 when
            :math:`g_i = 0` (the equivariant factor :math:`\Gamma x` of 0 is 0), so only the last weight layer's
            edges are computed (for a digits MLP 160 of 1,440 edges, for its CNN 80 of 216).
    """

    widths: tuple[int, ...]
    offsets: tuple[int, ...]
    edge_offsets: tuple[int, ...]
    conv: tuple[bool, ...]
    slot: int
    g_zero_on_hidden: bool = False

    @property
    def n_layers(self) -> int:
        return len(self.widths) - 1

    # split, not sliced: the backward of a split is one concatenation, that of L slices L zero-filled full tensors
    def node_parts(self, x: Tensor) -> tuple[Tensor, ...]:
        """The features of every layer's nodes: ``x (B, n, c) -> (B, n_l, c)`` for l = 0..L (views)."""
        return x.split(self.widths, 1)

    def edge_parts(self, e: Tensor) -> list[Tensor]:
        """The features of every weight layer's edges: ``e (B, E, c) -> (B, n_{l+1}, n_l, c)`` for l = 0..L-1."""
        sizes = [o * i for i, o in zip(self.widths[:-1], self.widths[1:])]
        return [p.unflatten(1, (o, i)) for p, i, o in zip(e.split(sizes, 1), self.widths[:-1], self.widths[1:])]

    def _on_layers(self, op, pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
        """``op(a_l, b_l)`` for every weight layer ``l`` (operands broadcasting to ``(B, n_{l+1}, n_l, c)``) as one
        ``(B, E, c)`` tensor: concatenated under autograd, written into one buffer without it (a one shot: ``out=``
        spares the concatenation's pass over the edges)."""
        if torch.is_grad_enabled():
            return torch.cat([op(a, b).flatten(1, 2) for a, b in pairs], 1)
        a, b = pairs[0]
        shape = torch.broadcast_shapes(a.shape, b.shape)
        out = torch.empty(shape[0], self.edge_offsets[-1], shape[-1], dtype=torch.result_type(a, b), device=a.device)
        for part, (a, b) in zip(self.edge_parts(out), pairs):
            op(a, b, out=part)
        return out

    def on_edges(self, op, dst: Tensor, src: Tensor) -> Tensor:
        """``op(dst_i, src_j)`` (``torch.add`` or ``torch.mul``) on every edge ``j -> i``, broadcast from node tensors
        ``(B, n, c)`` (no gather): ``(B, E, c)``."""
        d, s = self.node_parts(dst), self.node_parts(src)
        return self._on_layers(op, [(d[l + 1][:, :, None], s[l][:, None]) for l in range(self.n_layers)])

    def times_src(self, e: Tensor, src: Tensor) -> Tensor:
        """``e_ji * src_j`` on every edge (the forward message's product): ``(B, E, c)``."""
        s = self.node_parts(src)
        return self._on_layers(torch.mul, [(part, s[l][:, None]) for l, part in enumerate(self.edge_parts(e))])

    def times_dst(self, e: Tensor, dst: Tensor) -> Tensor:
        """``e_ji * dst_i`` on every edge (the backward message's product): ``(B, E, c)``."""
        d = self.node_parts(dst)
        return self._on_layers(torch.mul, [(part, d[l + 1][:, :, None]) for l, part in enumerate(self.edge_parts(e))])

    def sum_into_targets(self, mu: Tensor) -> Tensor:
        """``m_i = sum_j mu_ji`` (a sum over each layer's in-axis): ``(B, E, c) -> (B, n, c)``, 0 on input nodes."""
        parts = [part.sum(2) for part in self.edge_parts(mu)]  # (B, n_{l+1}, c)
        return torch.cat([parts[0].new_zeros(parts[0].shape[0], self.widths[0], parts[0].shape[-1]), *parts], 1)

    def sum_into_sources(self, nu: Tensor) -> Tensor:
        """``n_j = sum_i nu_ji`` (a sum over each layer's out-axis): ``(B, E, c) -> (B, n, c)``, 0 on output nodes."""
        parts = [part.sum(1) for part in self.edge_parts(nu)]  # (B, n_l, c)
        return torch.cat([*parts, parts[0].new_zeros(parts[0].shape[0], self.widths[-1], parts[0].shape[-1])], 1)


@functools.lru_cache(maxsize=64)
def layered(spec: NetSpec) -> Layered:
    """The :class:`Layered` structure of ``spec``'s graph (node and edge order as :func:`workbench.graphs.to_graph`)."""
    offsets, edge_offsets = [0], [0]
    for w in spec.widths:
        offsets.append(offsets[-1] + w)
    for n_in, n_out in zip(spec.widths[:-1], spec.widths[1:]):
        edge_offsets.append(edge_offsets[-1] + n_in * n_out)
    return Layered(tuple(spec.widths), tuple(offsets), tuple(edge_offsets),
                   tuple(spec.is_conv(l) for l in range(spec.n_layers)), spec.edge_dim // 2)


def chunk_networks(n_nets: int, n_edges: int, hidden: int, elements: int | None = None) -> list[int]:
    """Sizes of the chunks a batch of ``n_nets`` networks runs in: as equal as possible, each with at most
    ``elements`` (default :data:`CHUNK_ELEMENTS`) edge-feature entries, and at least one network per chunk."""
    elements = CHUNK_ELEMENTS if elements is None else elements
    per_chunk = max(1, elements // max(1, n_edges * hidden))
    n_chunks = -(-n_nets // per_chunk)
    base, extra = divmod(n_nets, n_chunks)
    return [base + 1] * extra + [base] * (n_chunks - extra)


def split_networks(params: Params, sizes: list[int]) -> list[Params]:
    """``params`` of B networks as consecutive chunks of ``sizes`` networks (views, no copy)."""
    pieces = [(w.split(sizes), b.split(sizes)) for w, b in params]
    return [[(ws[k], bs[k]) for ws, bs in pieces] for k in range(len(sizes))]


# -- the invariant and equivariant blocks on edges --------------------------------------------------------------------
# Edge tensors carry most of the pass's memory traffic, so on them the blocks of blocks.py run with fewer passes:
# W canon(x) is computed as (W x) / ||x||, the edge update as one addcmul, and the element-wise chains with the
# longest autograd backward (squash, the sign-symmetrised SiLU pair) have hand-written ones. (Stacking the maps that
# read the same features into one product was tried and is slower: bench/README.md.)
class _EvenSiLU(torch.autograd.Function):
    r""":math:`\sigma(c + a) + \sigma(c - a)` (even in ``a``: the sign symmetrisation of :class:`ScaleInv`), with the
    backward :math:`\partial c = s_+ + s_-`, :math:`\partial a = s_+ - s_-` from the two SiLU derivatives ``s``."""

    @staticmethod
    def forward(ctx, c: Tensor, a: Tensor) -> Tensor:
        plus, minus = c + a, c - a  # (R, h) each
        if not any(ctx.needs_input_grad):  # a one shot (forward runs in no-grad mode anyway: ctx knows)
            return F.silu(plus, inplace=True).add_(F.silu(minus, inplace=True))
        ctx.save_for_backward(plus, minus)
        ctx.c_shape = c.shape
        return F.silu(plus).add_(F.silu(minus))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor]:
        plus, minus = ctx.saved_tensors
        s_plus = torch.ops.aten.silu_backward(grad, plus)
        s_minus = torch.ops.aten.silu_backward(grad, minus)
        grad_c = (s_plus + s_minus).sum_to_size(ctx.c_shape) if ctx.needs_input_grad[0] else None
        return grad_c, s_plus.sub_(s_minus)


class _Squash(torch.autograd.Function):
    r""":func:`~workbench.metanet.blocks.squash` for sign (and no) symmetry, ``y = x r`` with :math:`r = 1 / (1 + s)`,
    :math:`s = \sqrt{\overline{x^2} + \epsilon}`, and the backward
    :math:`\partial x = r\,\partial y - x\,(\partial y \cdot x)\, r^2 / (d s)`: three passes over the edges where
    autograd's chain of pow, mean, add, sqrt, add and div takes about eight."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        s = (x.pow(2).mean(-1, keepdim=True) + 1e-12).sqrt()  # (R, 1) invariant
        r = 1 / (1 + s)
        ctx.save_for_backward(x, s, r)
        return x * r

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        x, s, r = ctx.saved_tensors
        coef = (grad * x).sum(-1, keepdim=True) * r * r / (x.shape[-1] * s)  # (R, 1)
        return torch.addcmul(grad * r, x, coef, value=-1)


def squash_edges(x: Tensor, symmetry: str) -> Tensor:
    """:func:`~workbench.metanet.blocks.squash` of edge features (:class:`_Squash` for sign and no symmetry)."""
    return x if symmetry == "scale" else _Squash.apply(x)


def inv_norm(x: Tensor) -> Tensor:
    """``1 / ||x||`` per row, 1 where ``x`` is 0 (as :func:`~workbench.metanet.blocks.canon`): ``(R, d) -> (R, 1)``."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return 1 / torch.where(norm > 0, norm, torch.ones_like(norm))


def phi_hidden(inv: ScaleInv, x: Tensor, wx: Tensor, c: Tensor) -> Tensor:
    r"""The hidden layer of :class:`ScaleInv` from ``wx`` = its ``lin_x(x)`` on the raw ``x`` and its whole additive
    term ``c`` (its bias plus any side inputs): :math:`\sigma(c + W x) + \sigma(c - W x)` (sign),
    :math:`\sigma(W x / \|x\| + c)` (scale: ``W canon(x)``, a row scaling of ``W x``) or :math:`\sigma(W x + c)`."""
    if inv.symmetry == "sign":
        return _EvenSiLU.apply(c, wx)  # (R, h) invariant: even in W x
    if inv.symmetry == "scale":
        wx = wx * inv_norm(x)  # W canon(x), invariant
    return inv.act(wx + c)


def inv_on_edges(inv: ScaleInv, x: Tensor, c: Tensor | None = None) -> Tensor:
    """:class:`ScaleInv` of edge features ``x`` with its whole additive term ``c`` given (None: its bias)."""
    return inv.out(inv.drop(phi_hidden(inv, x, inv.lin_x(x), inv.bias if c is None else c)))


def eq_on_edges(eq: ScaleEq, x: Tensor) -> Tensor:
    """:class:`ScaleEq` of per-edge features ``x`` with no side input (the messages)."""
    if eq.gamma is None:
        return inv_on_edges(eq.inv, x)
    gx = eq.gamma(x)  # ~ x
    return gx * inv_on_edges(eq.inv, x) if torch.is_grad_enabled() else gx.mul_(inv_on_edges(eq.inv, x))


# -- one message-passing layer --------------------------------------------------------------------------------------
def _backward_messages(layer: nn.Module, g: Tensor, e: Tensor, lay: Layered) -> Tensor:
    r""":math:`n_j = \sum_i \mathrm{ScaleEq}\big((C e_{ji}) \odot (D g)_i\big)`: ``(B, n, d)``, ~ ``1 / q_j``; with
    ``lay.g_zero_on_hidden`` from the last weight layer's edges alone (the others' messages are exactly 0)."""
    if not lay.g_zero_on_hidden or layer.bmsg.gamma is None:  # the symmetry-broken model maps 0 to a constant
        y = lay.times_dst(layer.bmsg_e(e), layer.bmsg_g(g))  # (B, E, d) ~ (q_i / q_j) / q_i
        return lay.sum_into_sources(eq_on_edges(layer.bmsg, y))
    u_out = lay.node_parts(layer.bmsg_g(g))[-1]  # (B, n_L, d): D g on the output nodes
    y = layer.bmsg_e(lay.edge_parts(e)[-1]) * u_out[:, :, None]  # (B, n_L, n_{L-1}, d) ~ (1 / q_j)
    n_last = eq_on_edges(layer.bmsg, y).sum(1)  # (B, n_{L-1}, d) ~ 1 / q_j
    before, after = lay.offsets[-3], lay.widths[-1]
    return torch.cat([n_last.new_zeros(n_last.shape[0], before, n_last.shape[-1]), n_last,
                      n_last.new_zeros(n_last.shape[0], after, n_last.shape[-1])], 1)


def dense_conv(layer: nn.Module, h: Tensor, g: Tensor | None, e: Tensor,
               lay: Layered) -> tuple[Tensor, Tensor | None, Tensor]:
    r""":class:`~workbench.metanet.ScaleGMNConv`'s update rules (its module docstring) on the dense layered form.

    .. math::
        m_i = \sum_j \mathrm{ScaleEq}\big((A e_{ji}) \odot (B h)_j\big) \quad\text{(a sum over the in-axis)},\qquad
        n_j = \sum_i \mathrm{ScaleEq}\big((C e_{ji}) \odot (D g)_i\big) \quad\text{(over the out-axis)}

    and the node and edge updates as there, the edge update's invariant side input
    :math:`a_i + b_j + \beta` formed from per-node projections by one broadcast add per weight layer.

    Shapes:
        ``h, g (B, n, d)``, ``e (B, E, d)`` -> the same.
    """
    s = layer.symmetry
    x = lay.times_src(layer.msg_e(e), layer.msg_h(h))  # (B, E, d) ~ (q_i / q_j) q_j
    m = lay.sum_into_targets(eq_on_edges(layer.msg, x))  # (B, n, d) ~ q_i
    if layer.bidirectional:
        n = _backward_messages(layer, g, e, lay)  # (B, n, d) ~ 1 / q_j
        h_new = squash(h + layer.update_h(torch.cat([h, m], -1), torch.cat([canon(g, s), canon(n, s)], -1)), s)
        g_new = squash(g + layer.update_g(torch.cat([g, n], -1), torch.cat([canon(h, s), canon(m, s)], -1)), s)
        side = torch.cat([canon(h_new, s), canon(g_new, s)], -1)  # (B, n, 2d) invariant
    else:
        h_new, g_new = squash(h + layer.update_h(torch.cat([h, m], -1)), s), None
        side = canon(h_new, s)  # (B, n, d) invariant
    a = layer.edge_side_dst(side) + layer.edge_inv.bias  # (B, n, d) invariant, phi's bias folded in
    c = lay.on_edges(torch.add, a, layer.edge_side_src(side))  # (B, E, d) invariant: a_i + b_j + beta
    new = torch.addcmul(e, layer.edge_w(e), inv_on_edges(layer.edge_inv, e, c))  # (B, E, d) ~ q_i / q_j
    if layer.bidirectional:
        new = new + lay.on_edges(torch.mul, layer.edge_p(h_new), layer.edge_r(g_new))  # q_i * (1 / q_j)
    return h_new, g_new, squash_edges(new, s)
