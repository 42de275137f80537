"""A network as a graph (Kalogeropoulos et al. 2024, sec. 3): one node per neuron (MLP) or channel (CNN), inputs
included; node feature = bias (0 on input nodes); one forward edge per weight connection; edge feature = the weight
(MLP) or the k x k kernel flattened row-major (CNN). Dense-layer edges in a CNN graph carry their scalar in the
centre slot of the k*k vector, marked by ``edge_mask``.

:func:`to_graph` builds the PyG ``Batch`` for B networks directly with tensor ops (no per-network ``Data``
objects), on the parameters' device; :func:`from_graph` is its exact inverse.

Edge order inside a layer is the row-major order of its weight ``(out, in)``: edge ``i * in + j`` goes from input
node ``j`` to output node ``i``, so flattening a weight tensor gives the edge features without any gather.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Batch

from .nets import NetSpec, Params, SpecError, check_params, n_networks

__all__ = ["NODE_INPUT", "NODE_HIDDEN", "NODE_OUTPUT", "GraphLayout", "graph_layout", "edge_values", "node_values",
           "to_graph", "from_graph"]

NODE_INPUT, NODE_HIDDEN, NODE_OUTPUT = 0, 1, 2


@dataclass(frozen=True)
class GraphLayout:
    """The weight-independent structure of one network's graph.

    Attributes:
        node_offsets: first node index of each layer of neurons (len = n_layers + 2, last = n_nodes).
        edge_offsets: first edge index of each weight layer (len = n_layers + 1, last = n_edges).
        edge_index: ``(2, E)`` source (row 0) -> target (row 1).
        node_type: ``(n,)`` positional type: every input and output node its own, one per hidden layer.
        node_kind: ``(n,)`` NODE_INPUT / NODE_HIDDEN / NODE_OUTPUT.
        node_layer: ``(n,)`` layer of neurons the node belongs to (0 = inputs).
        edge_layer: ``(E,)`` weight layer of the edge.
        edge_mask: ``(E, edge_dim)`` which slots of an edge feature hold a weight.
    """

    node_offsets: tuple[int, ...]
    edge_offsets: tuple[int, ...]
    edge_index: Tensor
    node_type: Tensor
    node_kind: Tensor
    node_layer: Tensor
    edge_layer: Tensor
    edge_mask: Tensor
    n_node_types: int
    dense_slot: int

    @property
    def n_nodes(self) -> int:
        return self.node_offsets[-1]

    @property
    def n_edges(self) -> int:
        return self.edge_offsets[-1]

    def to(self, device) -> "GraphLayout":
        move = {k: getattr(self, k).to(device) for k in ("edge_index", "node_type", "node_kind", "node_layer",
                                                        "edge_layer", "edge_mask")}
        return GraphLayout(self.node_offsets, self.edge_offsets, n_node_types=self.n_node_types,
                           dense_slot=self.dense_slot, **move)


@functools.lru_cache(maxsize=64)
def _layout_cached(spec: NetSpec, device: str) -> GraphLayout:
    # built on the CPU whatever torch's ambient default device is (e.g. inside ``with torch.device("meta")``, used
    # to count a model's parameters): a layout made there would be cached, shape-only, for every later caller
    with torch.device("cpu"):
        return _build_layout(spec).to(device)


def _build_layout(spec: NetSpec) -> GraphLayout:
    widths = spec.widths
    node_offsets = [0]
    for w in widths:
        node_offsets.append(node_offsets[-1] + w)
    src, dst, edge_layer, edge_offsets = [], [], [], [0]
    for layer in range(spec.n_layers):
        n_in, n_out = widths[layer], widths[layer + 1]
        i = torch.arange(n_out).repeat_interleave(n_in)
        j = torch.arange(n_in).repeat(n_out)
        src.append(node_offsets[layer] + j)
        dst.append(node_offsets[layer + 1] + i)
        edge_layer.append(torch.full((n_in * n_out,), layer))
        edge_offsets.append(edge_offsets[-1] + n_in * n_out)
    edge_index = torch.stack([torch.cat(src), torch.cat(dst)])
    n_hidden_layers = len(widths) - 2
    node_type, node_kind, node_layer = [], [], []
    for layer, w in enumerate(widths):
        node_layer.append(torch.full((w,), layer))
        if layer == 0:
            node_type.append(torch.arange(w))
            node_kind.append(torch.full((w,), NODE_INPUT))
        elif layer == len(widths) - 1:
            node_type.append(widths[0] + n_hidden_layers + torch.arange(w))
            node_kind.append(torch.full((w,), NODE_OUTPUT))
        else:
            node_type.append(torch.full((w,), widths[0] + layer - 1))
            node_kind.append(torch.full((w,), NODE_HIDDEN))
    edge_dim = spec.edge_dim
    dense_slot = edge_dim // 2
    edge_layer_t = torch.cat(edge_layer)
    edge_mask = torch.ones(edge_offsets[-1], edge_dim, dtype=torch.bool)
    if spec.kind == "cnn":
        dense = edge_layer_t >= spec.n_conv
        edge_mask[dense] = False
        edge_mask[dense, dense_slot] = True
    layout = GraphLayout(
        tuple(node_offsets), tuple(edge_offsets), edge_index, torch.cat(node_type), torch.cat(node_kind),
        torch.cat(node_layer), edge_layer_t, edge_mask, widths[0] + n_hidden_layers + widths[-1], dense_slot,
    )
    return layout


def graph_layout(spec: NetSpec, device: torch.device | str = "cpu") -> GraphLayout:
    """The cached :class:`GraphLayout` of ``spec`` on ``device``."""
    return _layout_cached(spec, str(torch.device(device)))


def edge_values(spec: NetSpec, params: Params) -> Tensor:
    """``(B, E, edge_dim)`` edge features of B networks (the weights in graph order)."""
    n_nets = n_networks(params)
    edge_dim = spec.edge_dim
    parts = []
    for layer, (w, _) in enumerate(params):
        if spec.is_conv(layer):
            parts.append(w.reshape(n_nets, -1, edge_dim))  # (B, out*in, k*k)
        elif edge_dim == 1:
            parts.append(w.reshape(n_nets, -1, 1))
        else:  # dense layer of a CNN: scalar in the centre slot
            slot = torch.zeros(n_nets, w.shape[1] * w.shape[2], edge_dim, dtype=w.dtype, device=w.device)
            slot[:, :, edge_dim // 2] = w.reshape(n_nets, -1)
            parts.append(slot)
    return torch.cat(parts, dim=1)


def node_values(spec: NetSpec, params: Params) -> Tensor:
    """``(B, n_nodes)`` node features of B networks: 0 for inputs, then the biases layer by layer."""
    b0 = params[0][1]
    inputs = torch.zeros(b0.shape[0], spec.widths[0], dtype=b0.dtype, device=b0.device)
    return torch.cat([inputs] + [b for _, b in params], dim=1)


def to_graph(spec: NetSpec, params: Params, *, check: bool = True) -> Batch:
    """B networks as one PyG ``Batch`` of B disjoint graphs.

    Args:
        spec: the networks' architecture.
        params: batched parameters (see :mod:`workbench.nets`).
        check: validate shapes and reject NaN/inf values with an error naming the layer.

    Shapes:
        ``x (B*n, 1)``, ``edge_index (2, B*E)``, ``edge_attr (B*E, edge_dim)``, ``edge_mask (B*E, edge_dim)``,
        ``node_type / node_kind / node_layer / batch (B*n,)``, ``edge_layer (B*E,)``, ``ptr (B+1,)``.
        For the Small CNN Zoo CNN: n = 59, E = 688, edge_dim = 9.
    """
    n_nets = check_params(spec, params, finite=True) if check else n_networks(params)
    device = params[0][1].device
    layout = graph_layout(spec, device)
    n, e = layout.n_nodes, layout.n_edges
    graph_ids = torch.arange(n_nets, device=device)
    edge_index = (layout.edge_index[:, None, :] + (graph_ids * n)[None, :, None]).reshape(2, -1)  # (2, B*E)
    data = Batch(
        x=node_values(spec, params).reshape(-1, 1),
        edge_index=edge_index,
        edge_attr=edge_values(spec, params).reshape(n_nets * e, -1),
        edge_mask=layout.edge_mask.repeat(n_nets, 1),
        node_type=layout.node_type.repeat(n_nets),
        node_kind=layout.node_kind.repeat(n_nets),
        node_layer=layout.node_layer.repeat(n_nets),
        edge_layer=layout.edge_layer.repeat(n_nets),
        batch=graph_ids[:, None].expand(n_nets, n).reshape(-1),  # repeat_interleave without its host sync on CUDA
        ptr=torch.arange(n_nets + 1, device=device) * n,
    )
    # PyG has no public constructor for a Batch whose graphs are already concatenated: Batch.from_data_list over
    # one Data per network costs 2-6x this whole function in its collate alone (B = 16..512 digits MLPs/CNNs, one
    # CPU thread), so the per-graph bookkeeping it would write (what get_example/to_data_list read) is set here the
    # way from_data_list sets it. tests/test_graphs.py checks it against PyG's own collate and separate.
    data._num_graphs = n_nets
    node_slices = torch.arange(n_nets + 1) * n
    edge_slices = torch.arange(n_nets + 1) * e
    data._slice_dict = {
        k: (edge_slices if k in ("edge_index", "edge_attr", "edge_mask", "edge_layer") else node_slices)
        for k in ("x", "edge_index", "edge_attr", "edge_mask", "node_type", "node_kind", "node_layer", "edge_layer")
    }
    zeros = torch.zeros(n_nets, dtype=torch.long)
    data._inc_dict = {k: zeros for k in data._slice_dict}
    data._inc_dict["edge_index"] = node_slices[:-1]
    return data


def from_graph(spec: NetSpec, graph: Batch | tuple[Tensor, Tensor]) -> Params:
    """Batched parameters from graph values: the exact inverse of :func:`to_graph`.

    Args:
        graph: a ``Batch`` from :func:`to_graph` (its ``x`` and ``edge_attr`` are read), or a tuple
            ``(node_values, edge_values)`` with node values ``(B*n,)``, ``(B*n, 1)`` or ``(B, n)`` and edge
            values ``(B*E, edge_dim)`` or ``(B, E, edge_dim)`` -- e.g. a metanetwork's outputs.
    """
    nodes, edges = (graph.x, graph.edge_attr) if isinstance(graph, Batch) else graph
    n, e, edge_dim = spec.n_nodes, spec.n_edges, spec.edge_dim
    if nodes.numel() % n:
        raise SpecError(f"{nodes.numel()} node values are not a whole number of graphs with {n} nodes ({spec.describe()})")
    n_nets = nodes.numel() // n
    if edges.numel() != n_nets * e * edge_dim:
        raise SpecError(
            f"edge values of shape {tuple(edges.shape)} do not fit {n_nets} graphs with {e} edges of size {edge_dim}"
        )
    nodes = nodes.reshape(n_nets, n)
    edges = edges.reshape(n_nets, e, edge_dim)
    params = []
    node_pos, edge_pos = spec.widths[0], 0
    for layer in range(spec.n_layers):
        n_in, n_out = spec.widths[layer], spec.widths[layer + 1]
        block = edges[:, edge_pos : edge_pos + n_in * n_out]  # (B, out*in, edge_dim)
        if spec.is_conv(layer):
            weight = block.reshape(n_nets, *spec.weight_shape(layer))
        else:
            weight = block[..., edge_dim // 2].reshape(n_nets, n_out, n_in)
        params.append((weight, nodes[:, node_pos : node_pos + n_out]))
        node_pos += n_out
        edge_pos += n_in * n_out
    return params
