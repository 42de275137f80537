"""The symmetry group of a network's parameters: hidden-neuron permutations and scalings (ScaleGMN, sec. 3).

A :class:`GroupElement` holds, for every hidden layer ``l`` and every network of a batch, a permutation ``pi_l``
and a scale vector ``q_l``. Acting on parameters (:func:`act`), hidden node ``i`` of layer ``l`` takes the place
of node ``pi_l(i)`` and is multiplied by ``q_i``:

.. math::

    b_i \\to q_i\\, b_{\\pi(i)}, \\qquad w_{ij} \\to \\frac{q_i}{q_j}\\, w_{\\pi(i)\\,\\pi'(j)}

where ``pi'`` / ``q_j`` belong to the layer feeding in (identity / 1 for input and output nodes, which carry no
symmetry). For a conv layer the whole ``k x k`` kernel of edge ``j -> i`` is multiplied. ReLU is positively
homogeneous, so ``q > 0`` keeps the function; tanh is odd, so ``q in {-1, +1}`` does.

:func:`act_graph` applies the same element to graph values (node permutation + per-node scale, edge
permutation + ``q_dst / q_src``) without leaving the graph view. :func:`group_for` is the one rule from a
network's activation to its group. The checks that a map respects the group (:func:`assert_equivariant` and
friends) are in :mod:`workbench.equivariance`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Batch

from .errors import WorkbenchError
from .graphs import graph_layout
from .nets import NetSpec, Params, SpecError, check_params

__all__ = [
    "GROUPS", "ACTIVATION_GROUPS", "GroupElement", "SymmetryError", "group_for", "identity_element", "unit_scaling",
    "random_element", "compose", "inverse", "act", "act_graph",
]

GROUPS = ("identity", "perm", "scale", "sign", "perm+scale", "perm+sign")
#: the scaling group that keeps each activation's function: tanh is odd (sign flips), ReLU positively homogeneous
#: (positive scales)
ACTIVATION_GROUPS = {"tanh": "sign", "relu": "scale"}


class SymmetryError(WorkbenchError, ValueError):
    """A group element, a group name and a network description do not fit together."""


def group_for(spec: NetSpec, *, perm: bool = False) -> str:
    """The scaling group that preserves the function of ``spec``'s networks: ``"sign"`` for tanh, ``"scale"``
    for ReLU; with ``perm=True`` the full hidden-neuron group, ``"perm+sign"`` / ``"perm+scale"`` (permutations
    keep every network's function, so both forms are valid groups; callers needing both call it twice).

    The one activation -> group rule of the workbench: the model's default symmetry, the augmentation, the
    gauge counts, the widgets and the tests all ask it.
    """
    try:
        base = ACTIVATION_GROUPS[spec.activation]
    except KeyError:
        raise SymmetryError(f"no scaling group is known for activation {spec.activation!r}; "
                            f"known: {ACTIVATION_GROUPS}") from None
    return f"perm+{base}" if perm else base


# -- group elements -------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class GroupElement:
    """One element of the hidden-neuron permutation x scaling group, for each of B networks.

    Attributes:
        hidden_widths: the hidden widths of the spec the element was built for.
        perms: one LongTensor ``(B, width)`` per hidden layer; row ``b`` is a permutation of ``range(width)``.
        scales: one tensor ``(B, width)`` per hidden layer (positive for ReLU, +-1 for tanh, ones for none).
        group: the group name the element was drawn from (informative only).
    """

    hidden_widths: tuple[int, ...]
    perms: tuple[Tensor, ...]
    scales: tuple[Tensor, ...]
    group: str = "custom"

    def __post_init__(self):
        widths = tuple(int(w) for w in self.hidden_widths)
        object.__setattr__(self, "hidden_widths", widths)
        object.__setattr__(self, "perms", tuple(self.perms))
        object.__setattr__(self, "scales", tuple(self.scales))
        if len(self.perms) != len(widths) or len(self.scales) != len(widths):
            raise SymmetryError(
                f"a group element for hidden widths {widths} needs {len(widths)} permutations and scale vectors, "
                f"got {len(self.perms)} and {len(self.scales)}"
            )
        batch = None
        for layer, (perm, scale, width) in enumerate(zip(self.perms, self.scales, widths)):
            if perm.dtype != torch.long:
                raise SymmetryError(f"perms[{layer}] must be a LongTensor, got {perm.dtype}")
            for name, t in (("perms", perm), ("scales", scale)):
                if t.dim() != 2 or t.shape[1] != width:
                    raise SymmetryError(f"{name}[{layer}] has shape {tuple(t.shape)}; expected (B, {width})")
                if batch is None:
                    batch = t.shape[0]
                elif t.shape[0] != batch:
                    raise SymmetryError(f"{name}[{layer}] holds {t.shape[0]} networks but earlier tensors hold {batch}")

    @property
    def batch_size(self) -> int | None:
        """B, or None for a network without hidden layers (the trivial group)."""
        return int(self.perms[0].shape[0]) if self.perms else None

    def check(self, spec: NetSpec, n_nets: int | None = None) -> None:
        """Raise :class:`SymmetryError` unless the element fits ``spec`` (and ``n_nets`` networks)."""
        if self.hidden_widths != spec.hidden_widths:
            raise SymmetryError(
                f"element built for hidden widths {self.hidden_widths} but spec has {spec.hidden_widths} "
                f"({spec.describe()})"
            )
        if n_nets is not None and self.batch_size is not None and self.batch_size != n_nets:
            raise SymmetryError(f"element holds {self.batch_size} networks but the parameters hold {n_nets}")

    def network(self, index: int) -> "GroupElement":
        """Network ``index``'s element, keeping the batch dimension."""
        return GroupElement(
            self.hidden_widths, [p[index : index + 1] for p in self.perms],
            [s[index : index + 1] for s in self.scales], self.group,
        )

    def describe(self, index: int = 0, max_items: int = 8) -> str:
        """Short text of network ``index``'s permutations and scales (for error messages)."""
        parts = []
        for layer, (p, s) in enumerate(zip(self.perms, self.scales)):
            perm = p[index].tolist()
            scale = [float(f"{v:.3g}") for v in s[index].tolist()]
            more = " ..." if len(perm) > max_items else ""
            parts.append(f"hidden layer {layer}: perm {perm[:max_items]}{more}, scales {scale[:max_items]}{more}")
        return "; ".join(parts) if parts else "(no hidden layers)"

    def __repr__(self) -> str:
        return f"GroupElement(group={self.group!r}, hidden_widths={self.hidden_widths}, B={self.batch_size})"


def identity_element(
    spec: NetSpec, batch_size: int, *, dtype: torch.dtype = torch.float32, device=None
) -> GroupElement:
    """The identity for ``batch_size`` networks of ``spec``."""
    if isinstance(batch_size, bool) or not hasattr(batch_size, "__index__") or batch_size < 0:
        raise SymmetryError(f"batch_size must be a non-negative integer, got {batch_size!r:.80}")
    widths = spec.hidden_widths
    perms = [torch.arange(w, device=device).expand(batch_size, w).clone() for w in widths]
    scales = [torch.ones(batch_size, w, dtype=dtype, device=device) for w in widths]
    return GroupElement(widths, perms, scales, "identity")


def unit_scaling(
    spec: NetSpec, hidden_layer: int, unit: int, scale: float, batch_size: int = 1, *,
    dtype: torch.dtype = torch.float32, device=None,
) -> GroupElement:
    """The element that multiplies one hidden neuron/channel by ``scale`` and leaves everything else alone.

    Args:
        hidden_layer: index among the hidden layers (0 = the layer of ``spec.widths[1]``).
        unit: neuron (MLP) or channel (CNN) index inside that layer.
    """
    widths = spec.hidden_widths
    if not 0 <= hidden_layer < len(widths):
        raise SymmetryError(f"hidden_layer {hidden_layer} out of range: {spec.describe()} has {len(widths)} hidden layers")
    if not 0 <= unit < widths[hidden_layer]:
        raise SymmetryError(f"unit {unit} out of range: hidden layer {hidden_layer} has {widths[hidden_layer]} units")
    g = identity_element(spec, batch_size, dtype=dtype, device=device)
    g.scales[hidden_layer][:, unit] = scale
    return GroupElement(widths, g.perms, g.scales, "custom")


def _validate_group(spec: NetSpec, group: str) -> None:
    if group not in GROUPS:
        raise SymmetryError(f"unknown group {group!r}; valid groups are {GROUPS}")
    if "scale" in group and spec.activation != "relu":
        raise SymmetryError(
            f"group {group!r} does not preserve a {spec.activation} network: tanh is odd but not positively "
            "homogeneous, so only sign flips preserve the function; use 'sign' or 'perm+sign'"
        )
    if "sign" in group and spec.activation != "tanh":
        raise SymmetryError(
            f"group {group!r} does not preserve a {spec.activation} network: relu is not odd (relu(-x) != -relu(x)), "
            "so sign flips change the function; use 'scale' or 'perm+scale' (positive scales)"
        )


def random_element(
    spec: NetSpec,
    batch_size: int,
    group: str,
    generator: torch.Generator | None = None,
    *,
    scale_range: tuple[float, float] = (1e-2, 1e2),
    dtype: torch.dtype = torch.float32,
    device=None,
) -> GroupElement:
    """A random element of ``group`` for each of ``batch_size`` networks.

    Args:
        group: one of :data:`GROUPS`. ``"scale"`` needs a ReLU network, ``"sign"`` a tanh network.
        scale_range: positive scales are log-uniform on ``[low, high]``.
        generator: torch generator for reproducible draws (CPU).
    """
    _validate_group(spec, group)
    low, high = scale_range
    if not 0 < low <= high:
        raise SymmetryError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
    g = identity_element(spec, batch_size, dtype=dtype)
    perms, scales = list(g.perms), list(g.scales)
    for layer, width in enumerate(spec.hidden_widths):
        if "perm" in group:
            perms[layer] = torch.rand(batch_size, width, generator=generator).argsort(dim=1)
        if "scale" in group:
            u = torch.rand(batch_size, width, generator=generator, dtype=torch.float64)
            scales[layer] = torch.exp(math.log(low) + u * (math.log(high) - math.log(low))).to(dtype)
        elif "sign" in group:
            flips = torch.rand(batch_size, width, generator=generator) < 0.5
            scales[layer] = torch.where(flips, -1.0, 1.0).to(dtype)
    return GroupElement(
        spec.hidden_widths, [p.to(device) for p in perms], [s.to(device) for s in scales], group
    )


def compose(g: GroupElement, h: GroupElement) -> GroupElement:
    """The element ``g . h`` that acts as ``h`` first, then ``g``: ``act(compose(g, h), p) == act(g, act(h, p))``."""
    if g.hidden_widths != h.hidden_widths:
        raise SymmetryError(f"cannot compose elements for hidden widths {g.hidden_widths} and {h.hidden_widths}")
    perms, scales = [], []
    for pg, sg, ph, sh in zip(g.perms, g.scales, h.perms, h.scales):
        perms.append(torch.gather(ph, 1, pg))  # pi(i) = pi_h(pi_g(i))
        scales.append(sg * torch.gather(sh.to(sg.dtype), 1, pg))  # q_i = q_g,i * q_h,pi_g(i)
    return GroupElement(g.hidden_widths, perms, scales, "custom")


def inverse(g: GroupElement) -> GroupElement:
    """``g^-1`` with ``act(inverse(g), act(g, p)) == p``."""
    perms, scales = [], []
    for p, s in zip(g.perms, g.scales):
        inv = p.argsort(dim=1)
        perms.append(inv)
        scales.append(1.0 / torch.gather(s, 1, inv))
    return GroupElement(g.hidden_widths, perms, scales, g.group)


# -- the action on parameters ---------------------------------------------------------------------------------
def _node_perm_scale(spec: NetSpec, g: GroupElement, level: int, dtype, device):
    """Permutation ``(B, width)`` and scale ``(B, width)`` of the nodes at ``level`` (0 = inputs); ``None`` for
    input and output nodes, which stay fixed."""
    if 1 <= level <= len(spec.hidden_widths):
        return g.perms[level - 1].to(device), g.scales[level - 1].to(device=device, dtype=dtype)
    return None, None


def act(spec: NetSpec, g: GroupElement, params: Params) -> Params:
    """Apply ``g`` to batched parameters: ``b_i -> q_i b_pi(i)``, ``w_ij -> q_i w_pi(i)pi'(j) / q_j``.

    Input and output nodes are fixed. The result computes exactly the same function as ``params`` (up to float
    rounding) when ``g`` belongs to the activation's group.
    """
    n_nets = check_params(spec, params)
    g.check(spec, n_nets)
    out = []
    for layer, (w, b) in enumerate(params):
        extra = w.dim() - 3  # 0 for linear, 2 for conv (k, k)
        perm_out, q_out = _node_perm_scale(spec, g, layer + 1, w.dtype, w.device)
        perm_in, q_in = _node_perm_scale(spec, g, layer, w.dtype, w.device)
        nets = torch.arange(n_nets, device=w.device)[:, None]
        if perm_out is not None:
            w = w[nets, perm_out]  # (B, out, in, ...)
            b = b[nets, perm_out] * q_out
            w = w * q_out.reshape(*q_out.shape, 1, *([1] * extra))
        if perm_in is not None:
            w = w.transpose(1, 2)[nets, perm_in].transpose(1, 2)
            w = w / q_in.reshape(n_nets, 1, -1, *([1] * extra))
        out.append((w, b))
    return out


# -- the action on graph values -------------------------------------------------------------------------------
def _graph_gathers(spec: NetSpec, g: GroupElement, n_nets: int, dtype, device):
    """Per-network node gather ``(B, n)``, node scales ``(B, n)``, edge gather ``(B, E)`` and the scales of each
    edge's target and source node ``(B, E)``."""
    layout = graph_layout(spec, device)
    n = layout.n_nodes
    node_src = torch.arange(n, device=device).expand(n_nets, n).clone()  # (B, n)
    node_q = torch.ones(n_nets, n, dtype=dtype, device=device)
    offsets = layout.node_offsets
    for h, (perm, scale) in enumerate(zip(g.perms, g.scales)):
        start, stop = offsets[h + 1], offsets[h + 2]
        node_src[:, start:stop] = start + perm.to(device)
        node_q[:, start:stop] = scale.to(device=device, dtype=dtype)
    src, dst = layout.edge_index  # (E,), (E,)
    layer = layout.edge_layer
    node_off = torch.tensor(offsets, device=device)
    edge_off = torch.tensor(layout.edge_offsets, device=device)
    widths = torch.tensor(spec.widths, device=device)
    new_dst = node_src[:, dst] - node_off[layer + 1]  # (B, E): local index of the permuted output node
    new_src = node_src[:, src] - node_off[layer]  # (B, E): local index of the permuted input node
    edge_src = edge_off[layer] + new_dst * widths[layer] + new_src  # (B, E)
    return node_src, node_q, edge_src, node_q[:, dst], node_q[:, src]


def act_graph(
    spec: NetSpec, g: GroupElement, graph: Batch | tuple[Tensor, Tensor]
) -> Batch | tuple[Tensor, Tensor]:
    """Apply ``g`` to graph values directly: ``act_graph(spec, g, to_graph(spec, p)) == to_graph(spec, act(spec, g, p))``.

    Node ``i`` takes the value of node ``pi(i)`` times ``q_i``; edge ``j -> i`` takes the features of edge
    ``pi(j) -> pi(i)`` times ``q_i / q_j``. Structure tensors (edge_index, types, masks) are unchanged.

    Args:
        graph: a ``Batch`` from :func:`workbench.graphs.to_graph` (a new ``Batch`` is returned with ``x`` and
            ``edge_attr`` replaced), or a tuple ``(node_values, edge_values)`` with nodes ``(B*n,)``, ``(B*n, 1)``
            or ``(B, n)`` and edges ``(B*E, F)`` or ``(B, E, F)`` (returned in the same shapes).

    Shapes:
        nodes: ``(B*n, 1)``; edges: ``(B*E, edge_dim)`` for a ``Batch``.
    """
    nodes, edges = (graph.x, graph.edge_attr) if isinstance(graph, Batch) else graph
    n, e = spec.n_nodes, spec.n_edges
    if nodes.numel() % n:
        raise SpecError(f"{nodes.numel()} node values are not a whole number of graphs with {n} nodes ({spec.describe()})")
    n_nets = nodes.numel() // n
    if edges.numel() % max(n_nets * e, 1) or edges.numel() == 0:
        raise SpecError(f"edge values of shape {tuple(edges.shape)} do not fit {n_nets} graphs with {e} edges")
    g.check(spec, n_nets)
    node_src, node_q, edge_src, q_dst, q_src = _graph_gathers(spec, g, n_nets, edges.dtype, nodes.device)
    node_vals = nodes.reshape(n_nets, n, -1)  # (B, n, C)
    edge_vals = edges.reshape(n_nets, e, -1)  # (B, E, F)
    new_nodes = torch.gather(node_vals, 1, node_src[..., None].expand_as(node_vals)) * node_q[..., None].to(nodes.dtype)
    # multiply then divide, in the same order as act(), so both views agree bit for bit
    new_edges = torch.gather(edge_vals, 1, edge_src[..., None].expand_as(edge_vals)) * q_dst[..., None] / q_src[..., None]
    new_nodes = new_nodes.reshape(nodes.shape)
    new_edges = new_edges.reshape(edges.shape)
    if not isinstance(graph, Batch):
        return new_nodes, new_edges
    result = graph.clone()
    result.x = new_nodes
    result.edge_attr = new_edges
    return result
