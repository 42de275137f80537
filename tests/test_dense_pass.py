"""The dense layered pass (workbench/metanet/dense.py) against the PyG pass it replaces by default.

Both paths run the same modules with the same parameters; they must agree to float rounding on random architectures
(MLP and CNN, ReLU and tanh, bidirectional or not, symmetric or the symmetry-broken ablation, with and without the
gate) in float32 and float64, in value and gradient, whatever the chunking. The equivariance tests of
tests/test_metanet.py run on the default (dense) path; the PyG path keeps its own equivariance test here.
"""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.equivariance import assert_equivariant
from workbench.errors import ConfigError
from workbench.graphs import edge_values, node_values, to_graph
from workbench.metanet import ScaleGMN
from workbench.metanet import dense as dense_module
from workbench.metanet.dense import Layered, chunk_networks, layered
from workbench.nets import NetSpec, init_params
from workbench.symmetry import group_for

#: agreement of the two paths, relative to the largest update: a few roundings of the longest chain
TOL = {torch.float32: 2e-5, torch.float64: 1e-12}


def make_spec(kind: str, widths: list[int], activation: str) -> NetSpec:
    if kind == "mlp":
        return NetSpec.mlp((3, *widths, 2), activation)
    return NetSpec.cnn(2, widths, 2, kernel_size=3, padding=1, activation=activation, image_size=5)


def make_model(spec, dtype, *, bidirectional=True, symmetry=None, gate=True, seed=0):
    torch.manual_seed(seed)
    model = ScaleGMN.for_spec(spec, hidden=8, n_layers=2, bidirectional=bidirectional, symmetry=symmetry,
                              gate=gate).to(dtype).eval()
    with torch.no_grad():  # updates as large as the inputs, so a disagreement is not hidden by a 0.01 scale
        model.out_scale_w.fill_(1.0)
        model.out_scale_b.fill_(1.0)
        if gate:
            model.gate_scale_w.fill_(0.5)
            model.gate_scale_b.fill_(0.5)
        if model.scale_norm:  # the scale feature in use (ReLU networks; it starts at 0)
            model.scale_embed.normal_()
            if bidirectional:
                model.scale_embed_g.normal_()
    return model


@torch.no_grad()
def update(model, params, path):
    """theta' - theta on ``path``, flattened per network: ``(B, n_params)``."""
    new = model(params, path=path)
    return torch.cat([t.reshape(t.shape[0], -1) for (w0, b0), (w1, b1) in zip(params, new)
                      for t in (w1 - w0, b1 - b0)], 1)


def relative_gap(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(["mlp", "cnn"]), widths=st.lists(st.integers(1, 5), min_size=1, max_size=3),
       activation=st.sampled_from(["relu", "tanh"]), bidirectional=st.booleans(), broken=st.booleans(),
       gate=st.booleans(), double=st.booleans(), seed=st.integers(0, 2**16))
def test_dense_pass_equals_the_pyg_pass(kind, widths, activation, bidirectional, broken, gate, double, seed):
    dtype = torch.float64 if double else torch.float32
    spec = make_spec(kind, widths, activation)
    model = make_model(spec, dtype, bidirectional=bidirectional, symmetry="none" if broken else None, gate=gate,
                       seed=seed)
    params = init_params(spec, 3, torch.Generator().manual_seed(seed), dtype=dtype)
    dense, pyg = update(model, params, "dense"), update(model, params, "pyg")
    assert float(pyg.abs().max()) > 1e-3  # the update carries the metanet's work: agreeing is not trivial
    assert relative_gap(dense, pyg) < TOL[dtype]


@pytest.mark.parametrize("family", ["mlp-relu", "cnn-tanh"])
def test_dense_gradients_equal_the_pyg_gradients(family):
    spec = make_spec(family[:3], [4, 3], family[4:])
    model = make_model(spec, torch.float64)
    params = init_params(spec, 4, torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = {}
    for path in ("dense", "pyg"):
        model.zero_grad()
        sum((w ** 2).sum() + b.sum() for w, b in model(params, path=path)).backward()
        grads[path] = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    assert grads["dense"].keys() == grads["pyg"].keys() and len(grads["pyg"]) > 20
    for k, ref in grads["pyg"].items():
        assert float((grads["dense"][k] - ref).abs().max()) <= 1e-10 * (float(ref.abs().max()) + 1e-12), k


def test_a_transposed_edge_layout_is_caught():
    """Negative control for the comparison above: edges read column-major (edge ``j -> i`` taken as ``[j, i]``: the
    right shapes, the wrong edges -- the bug class of converting graph outputs back to weights) must not pass."""
    spec = NetSpec.mlp((3, 4, 5, 2), "relu")
    model = make_model(spec, torch.float64)
    params = init_params(spec, 3, torch.Generator().manual_seed(2), dtype=torch.float64)
    pyg = update(model, params, "pyg")
    original = Layered.edge_parts

    def column_major(self, e):
        sizes = [o * i for i, o in zip(self.widths[:-1], self.widths[1:])]
        return [p.unflatten(1, (i, o)).transpose(1, 2)
                for p, i, o in zip(e.split(sizes, 1), self.widths[:-1], self.widths[1:])]

    try:
        Layered.edge_parts = column_major
        wrong = update(model, params, "dense")
    finally:
        Layered.edge_parts = original
    assert relative_gap(update(model, params, "dense"), pyg) < TOL[torch.float64]
    assert relative_gap(wrong, pyg) > 1e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunks_do_not_change_the_result(dtype, monkeypatch):
    spec = NetSpec.mlp((5, 6, 4, 3), "relu")
    model = make_model(spec, dtype)
    params = init_params(spec, 7, torch.Generator().manual_seed(3), dtype=dtype)
    whole = update(model, params, "dense")
    calls = []
    monkeypatch.setattr(dense_module, "CHUNK_ELEMENTS", 1)  # one network per chunk
    original = ScaleGMN.layered_deltas

    def counted(self, part, feature=None):
        calls.append(part[0][0].shape[0])
        return original(self, part, feature)
    monkeypatch.setattr(ScaleGMN, "layered_deltas", counted)
    chunked = update(model, params, "dense")
    assert calls == [1] * 7
    assert relative_gap(chunked, whole) < TOL[dtype]


def test_chunk_sizes_are_even_and_bounded():
    assert chunk_networks(32, 1440, 16, elements=2 ** 18) == [11, 11, 10]
    assert chunk_networks(5, 10, 4, elements=10 ** 6) == [5]
    assert chunk_networks(3, 10 ** 6, 64, elements=2 ** 18) == [1, 1, 1]  # never fewer than one network
    for n in (1, 7, 64, 257):
        sizes = chunk_networks(n, 216, 16, elements=2 ** 16)
        assert sum(sizes) == n and max(sizes) - min(sizes) <= 1 and max(sizes) * 216 * 16 <= 2 ** 16


@pytest.mark.parametrize("family", ["mlp-tanh", "cnn-relu"])
def test_the_layered_form_is_the_graph_in_pyg_order(family):
    spec = make_spec(family[:3], [4, 3], family[4:])
    lay = layered(spec)
    params = init_params(spec, 2, torch.Generator().manual_seed(0))
    graph = to_graph(spec, params)
    edges = edge_values(spec, params)  # (B, E, F) in PyG's edge order
    src, dst = graph.edge_index[:, :spec.n_edges]
    for l, part in enumerate(lay.edge_parts(edges)):  # (B, out, in, F): entry [b, i, j] is edge j -> i
        lo, hi = lay.edge_offsets[l], lay.edge_offsets[l + 1]
        i = torch.arange(part.shape[1]).repeat_interleave(part.shape[2])
        j = torch.arange(part.shape[2]).repeat(part.shape[1])
        assert torch.equal(dst[lo:hi], lay.offsets[l + 1] + i) and torch.equal(src[lo:hi], lay.offsets[l] + j)
        assert torch.equal(part.flatten(1, 2), edges[:, lo:hi])
    nodes = node_values(spec, params)[..., None]  # (B, n, 1)
    assert torch.equal(torch.cat(lay.node_parts(nodes), 1), nodes)
    assert [p.shape[1] for p in lay.node_parts(nodes)] == list(spec.widths)


@pytest.mark.parametrize("family", ["mlp-relu", "cnn-tanh"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_pyg_path_stays_equivariant(family, dtype):
    spec = make_spec(family[:3], [4, 3], family[4:])
    model = make_model(spec, dtype, gate=False)
    model.path = "pyg"
    params = init_params(spec, 3, torch.Generator().manual_seed(1), dtype=dtype)

    def deltas(p):
        return [(w1 - w0, b1 - b0) for (w0, b0), (w1, b1) in zip(p, model(p))]
    rtol = 1e-3 if dtype == torch.float32 else None
    assert_equivariant(deltas, spec, params, group_for(spec, perm=True), n_elements=2,
                       generator=torch.Generator().manual_seed(2), rtol=rtol)


def test_the_path_is_checked():
    model = ScaleGMN.for_spec(NetSpec.mlp((3, 4, 2), "tanh"), hidden=4, n_layers=1)
    assert model.path == "dense"
    with pytest.raises(ConfigError, match="ScaleGMN.path is 'sparse'"):
        model.path = "sparse"
    with pytest.raises(ConfigError, match="path is 'fast'"):
        model(init_params(model.spec, 1), path="fast")
