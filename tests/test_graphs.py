"""The graph view of a batch of networks: exact in both directions, correct PyG bookkeeping, and edges/nodes that
mean what the paper says (edge = weight from a source neuron to a target neuron, node = bias)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.data import Batch

from workbench.graphs import (
    NODE_HIDDEN,
    NODE_INPUT,
    NODE_OUTPUT,
    edge_values,
    from_graph,
    graph_layout,
    node_values,
    to_graph,
)
from workbench.nets import NetSpec, SpecError, init_params, select, small_cnn_zoo_spec


from strategies import net_specs  # noqa: E402  (shared with the other property tests)


def random_params(spec, n, seed, dtype=torch.float32):
    """Gaussian parameters (not the init's uniform) so that every value is distinct with probability 1."""
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn((n, *spec.weight_shape(l)), generator=gen, dtype=dtype),
         torch.randn((n, *spec.bias_shape(l)), generator=gen, dtype=dtype))
        for l in range(spec.n_layers)
    ]


def node_id(spec, layer, index):
    """Node number of neuron/channel ``index`` in layer of neurons ``layer`` (0 = inputs) of one graph."""
    return sum(spec.widths[:layer]) + index


GRAPH_KEYS = {"x", "edge_index", "edge_attr", "edge_mask", "node_type", "node_kind", "node_layer", "edge_layer"}


# -- exact round trip ----------------------------------------------------------------------------------------------
@given(spec=net_specs(min_depth=0), n=st.integers(1, 3), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_round_trip_is_exact(spec, n, seed, dtype):
    params = random_params(spec, n, seed, dtype)
    batch = to_graph(spec, params)
    assert batch.x.dtype == batch.edge_attr.dtype == dtype
    back = from_graph(spec, batch)
    assert len(back) == len(params)
    for (w, b), (w2, b2) in zip(params, back):
        assert w2.dtype == dtype and b2.dtype == dtype
        assert torch.equal(w, w2) and torch.equal(b, b2)
    # the tuple form (B, n) / (B, E, F) -- what a metanetwork outputs -- inverts the same way
    nodes = batch.x.reshape(n, spec.n_nodes)
    edges = batch.edge_attr.reshape(n, spec.n_edges, spec.edge_dim)
    for (w, b), (w2, b2) in zip(params, from_graph(spec, (nodes, edges))):
        assert torch.equal(w, w2) and torch.equal(b, b2)
    for (w, b), (w2, b2) in zip(params, from_graph(spec, (batch.x.flatten(), batch.edge_attr))):
        assert torch.equal(w, w2) and torch.equal(b, b2)


def test_from_graph_tuple_of_new_values():
    """from_graph reads whatever values it is given: new node/edge values give the matching new params."""
    spec = NetSpec.cnn(2, (3,), 4, kernel_size=3, image_size=5)
    n = 2
    nodes = torch.arange(n * spec.n_nodes, dtype=torch.float64).reshape(n, spec.n_nodes)
    edges = torch.randn(n, spec.n_edges, spec.edge_dim, dtype=torch.float64)
    params = from_graph(spec, (nodes, edges))
    assert torch.equal(params[0][1], nodes[:, 2:5])  # conv biases after the 2 input nodes
    assert torch.equal(params[1][1], nodes[:, 5:9])
    assert torch.equal(params[0][0], edges[:, :6].reshape(n, 3, 2, 3, 3))
    assert torch.equal(params[1][0], edges[:, 6:, 4].reshape(n, 4, 3))  # dense layer: centre slot only


# -- the Small CNN Zoo graph ---------------------------------------------------------------------------------------
def test_small_cnn_zoo_graph():
    spec = small_cnn_zoo_spec("tanh")
    params = init_params(spec, 3, torch.Generator().manual_seed(0))
    batch = to_graph(spec, params)
    n, e = 59, 688
    assert (spec.n_nodes, spec.n_edges, spec.edge_dim) == (n, e, 9)
    assert batch.num_graphs == 3
    assert batch.x.shape == (3 * n, 1)
    assert batch.edge_index.shape == (2, 3 * e)
    assert batch.edge_attr.shape == (3 * e, 9)
    assert batch.edge_mask.shape == (3 * e, 9) and batch.edge_mask.dtype == torch.bool
    layout = graph_layout(spec)
    assert (layout.n_nodes, layout.n_edges) == (n, e)
    assert layout.edge_mask.shape == (e, 9)
    dense = ~layout.edge_mask.all(1)
    assert int(dense.sum()) == 160  # 16 x 10 dense head
    assert torch.equal(layout.edge_mask[~dense], torch.ones(e - 160, 9, dtype=torch.bool))
    centre_only = torch.zeros(9, dtype=torch.bool)
    centre_only[4] = True
    assert torch.equal(layout.edge_mask[dense], centre_only.expand(160, 9))
    assert torch.equal(layout.edge_layer[dense], torch.full((160,), 3))
    # the slots the mask leaves out really are empty
    attr = batch.edge_attr.reshape(3, e, 9)
    assert torch.equal(attr[:, dense][..., ~centre_only], torch.zeros(3, 160, 8))
    # per-graph type/kind counts: 1 input + 3 hidden layers + 10 outputs
    assert layout.n_node_types == 1 + 3 + 10
    assert torch.equal(torch.bincount(layout.node_kind, minlength=3), torch.tensor([1, 48, 10]))


def test_layout_is_cached_and_moves():
    spec = NetSpec.mlp((3, 4, 2), "relu")
    assert graph_layout(spec) is graph_layout(spec)
    assert graph_layout(spec).edge_index.device == torch.device("cpu")


# -- Batch bookkeeping ---------------------------------------------------------------------------------------------
@settings(max_examples=15)
@given(spec=net_specs(min_depth=0), n=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_batch_bookkeeping_matches_single_graphs(spec, n, seed):
    params = random_params(spec, n, seed)
    batch = to_graph(spec, params)
    nodes, edges = spec.n_nodes, spec.n_edges
    assert isinstance(batch, Batch)
    assert batch.num_graphs == n
    assert torch.equal(batch.ptr, torch.arange(n + 1) * nodes)
    assert torch.equal(batch.batch, torch.arange(n).repeat_interleave(nodes))
    assert batch.num_nodes == n * nodes
    # every edge stays inside its own graph
    assert torch.equal(batch.batch[batch.edge_index[0]], batch.batch[batch.edge_index[1]])
    assert torch.equal(batch.batch[batch.edge_index[0]], torch.arange(n).repeat_interleave(edges))

    singles = [to_graph(spec, select(params, i)) for i in range(n)]
    listed = batch.to_data_list()
    assert len(listed) == n
    for i, single in enumerate(singles):
        assert single.num_graphs == 1
        assert torch.equal(single.ptr, torch.tensor([0, nodes]))
        assert torch.equal(single.batch, torch.zeros(nodes, dtype=torch.long))
        for example in (batch.get_example(i), listed[i]):
            assert set(example.keys()) == GRAPH_KEYS
            assert example.num_nodes == nodes
            for key in GRAPH_KEYS:
                assert torch.equal(example[key], single[key]), f"graph {i}: {key} differs"
    # and re-batching the examples with PyG's own collate gives back the same batch
    rebatched = Batch.from_data_list(listed)
    for key in GRAPH_KEYS | {"batch", "ptr"}:
        assert torch.equal(rebatched[key], batch[key]), key


# -- edge and node semantics ---------------------------------------------------------------------------------------
def _edge_lookup(edge_index):
    return {(int(s), int(d)): k for k, (s, d) in enumerate(edge_index.t().tolist())}


@settings(max_examples=15)
@given(spec=net_specs(kinds=("mlp",), min_depth=0), n=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_mlp_edge_is_the_weight_from_source_to_target(spec, n, seed):
    params = random_params(spec, n, seed, torch.float64)
    batch = to_graph(spec, params)
    lookup = _edge_lookup(batch.edge_index)
    assert len(lookup) == n * spec.n_edges  # no duplicate edges
    for g in range(n):
        base = g * spec.n_nodes
        for layer, (w, b) in enumerate(params):
            for i in range(spec.widths[layer + 1]):
                dst = base + node_id(spec, layer + 1, i)
                assert int(batch.node_layer[dst]) == layer + 1
                assert batch.x[dst, 0] == b[g, i]
                for j in range(spec.widths[layer]):
                    k = lookup[(base + node_id(spec, layer, j), dst)]
                    assert batch.edge_attr[k, 0] == w[g, i, j]
                    assert int(batch.edge_layer[k]) == layer
        inputs = base + torch.arange(spec.widths[0])
        assert torch.equal(batch.x[inputs], torch.zeros(spec.widths[0], 1, dtype=torch.float64))
    # edges only join consecutive layers
    assert torch.equal(batch.node_layer[batch.edge_index[1]], batch.node_layer[batch.edge_index[0]] + 1)


@settings(max_examples=10)
@given(spec=net_specs(kinds=("cnn",)), seed=st.integers(0, 2**16))
def test_cnn_edge_is_the_kernel_from_source_to_target(spec, seed):
    n = 2
    params = random_params(spec, n, seed, torch.float64)
    batch = to_graph(spec, params)
    lookup = _edge_lookup(batch.edge_index)
    k2 = spec.kernel_size**2
    centre = torch.zeros(k2, dtype=torch.bool)
    centre[k2 // 2] = True
    for g in range(n):
        base = g * spec.n_nodes
        for layer, (w, b) in enumerate(params):
            for i in range(spec.widths[layer + 1]):
                dst = base + node_id(spec, layer + 1, i)
                assert batch.x[dst, 0] == b[g, i]
                for j in range(spec.widths[layer]):
                    k = lookup[(base + node_id(spec, layer, j), dst)]
                    if spec.is_conv(layer):
                        assert torch.equal(batch.edge_attr[k], w[g, i, j].flatten())
                        assert bool(batch.edge_mask[k].all())
                    else:
                        assert batch.edge_attr[k, k2 // 2] == w[g, i, j]
                        assert torch.equal(batch.edge_mask[k], centre)
                        assert torch.equal(batch.edge_attr[k][~centre], torch.zeros(k2 - 1, dtype=torch.float64))


def test_edge_and_node_values_shapes():
    spec = NetSpec.cnn(2, (3, 4), 5, kernel_size=3, image_size=6)
    params = random_params(spec, 2, 0)
    assert edge_values(spec, params).shape == (2, spec.n_edges, 9)
    nv = node_values(spec, params)
    assert nv.shape == (2, spec.n_nodes)
    assert torch.equal(nv[:, :2], torch.zeros(2, 2))
    assert torch.equal(nv[:, 2:5], params[0][1])
    assert torch.equal(nv[:, -5:], params[-1][1])


@given(spec=net_specs(min_depth=0))
def test_node_types(spec):
    layout = graph_layout(spec)
    types, kinds, layers = layout.node_type, layout.node_kind, layout.node_layer
    last = len(spec.widths) - 1
    inputs, outputs = layers == 0, layers == last
    hidden = ~(inputs | outputs)
    assert torch.equal(kinds[inputs], torch.full((spec.widths[0],), NODE_INPUT))
    assert torch.equal(kinds[outputs], torch.full((spec.widths[-1],), NODE_OUTPUT))
    assert bool((kinds[hidden] == NODE_HIDDEN).all())
    # every input node and every output node has a type nobody else has
    for mask in (inputs, outputs):
        for t in types[mask].tolist():
            assert int((types == t).sum()) == 1
    # all nodes of one hidden layer share a type; different hidden layers differ
    hidden_types = []
    for layer in range(1, last):
        t = types[layers == layer]
        assert len(t) == spec.widths[layer]
        assert bool((t == t[0]).all())
        hidden_types.append(int(t[0]))
    assert len(set(hidden_types)) == len(hidden_types)
    assert layout.n_node_types == len(set(types.tolist()))
    assert int(types.min()) == 0 and int(types.max()) == layout.n_node_types - 1


# -- errors --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_to_graph_rejects_non_finite(bad):
    spec = NetSpec.mlp((3, 4, 4, 2), "tanh")
    params = random_params(spec, 3, 0)
    params[2][0][1, 0, 0] = bad
    with pytest.raises(SpecError, match=r"layer 2 weight contains NaN or inf values \(networks \[1\]\)"):
        to_graph(spec, params)
    params[2][0][1, 0, 0] = 0.0
    params[1][1][0, 3] = bad
    with pytest.raises(SpecError, match=r"layer 1 bias contains NaN or inf"):
        to_graph(spec, params)


def test_to_graph_rejects_wrong_shapes():
    spec = NetSpec.mlp((3, 4, 2), "relu")
    params = random_params(spec, 2, 0)
    with pytest.raises(SpecError, match=r"layer 1 weight has shape \(2, 2, 3\); expected \(B, 2, 4\)"):
        to_graph(spec, [params[0], (torch.zeros(2, 2, 3), params[1][1])])


def test_from_graph_rejects_wrong_sizes():
    spec = NetSpec.mlp((3, 4, 2), "relu")  # 9 nodes, 20 edges
    batch = to_graph(spec, random_params(spec, 2, 0))
    with pytest.raises(SpecError, match=r"17 node values are not a whole number of graphs with 9 nodes"):
        from_graph(spec, (batch.x[:-1], batch.edge_attr))
    with pytest.raises(SpecError, match=r"edge values of shape \(39, 1\) do not fit 2 graphs with 20 edges of size 1"):
        from_graph(spec, (batch.x, batch.edge_attr[:-1]))
    other = NetSpec.mlp((3, 6, 2), "relu")  # 11 nodes: 18 node values are not whole graphs of it
    with pytest.raises(SpecError, match="18 node values are not a whole number of graphs with 11 nodes"):
        from_graph(other, batch)
    cnn = NetSpec.cnn(1, (2,), 2, kernel_size=3, image_size=4)  # 5 nodes, 6 edges of size 9
    cnn_batch = to_graph(cnn, random_params(cnn, 1, 0))
    with pytest.raises(SpecError, match=r"edge values of shape \(6, 1\) do not fit 1 graphs with 6 edges of size 9"):
        from_graph(cnn, (cnn_batch.x, cnn_batch.edge_attr[:, :1]))
