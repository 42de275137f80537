"""Hidden-neuron permutations and scalings: the group action keeps the function, the graph view agrees with the
parameter view, and the shared equivariance helpers can fail."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from workbench.equivariance import assert_equivariant, equivariance_error, function_change
from workbench.forward_pass import forward
from workbench.graphs import to_graph
from workbench.nets import NetSpec, init_params
from workbench.symmetry import (
    GROUPS,
    GroupElement,
    SymmetryError,
    act,
    act_graph,
    compose,
    group_for,
    identity_element,
    inverse,
    random_element,
    unit_scaling,
)

N_NETS = 3


# -- strategies -----------------------------------------------------------------------------------------------
def _smallest_image(kernel: int, stride: int, padding: int, n_conv: int) -> int:
    for size in range(1, 64):
        s = size
        for _ in range(n_conv):
            s = (s + 2 * padding - kernel) // stride + 1
            if s < 1:
                break
        else:
            return size
    raise AssertionError("no image size fits")


@st.composite
def specs(draw, activation: str | None = None, kind: str | None = None) -> NetSpec:
    kind = kind or draw(st.sampled_from(["mlp", "cnn"]))
    activation = activation or draw(st.sampled_from(["relu", "tanh"]))
    depth = draw(st.integers(1, 3))
    widths = draw(st.lists(st.integers(1, 6), min_size=depth + 2, max_size=depth + 2))
    if kind == "mlp":
        return NetSpec.mlp(widths, activation)
    kernel = draw(st.sampled_from([1, 3, 5]))
    stride = draw(st.sampled_from([1, 2]))
    padding = draw(st.sampled_from([0, 1]))
    image = _smallest_image(kernel, stride, padding, depth) + draw(st.integers(0, 3))
    return NetSpec.cnn(widths[0], widths[1:-1], widths[-1], kernel, stride, padding, activation, image)


def _inputs(spec: NetSpec, n: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    if spec.kind == "mlp":
        return torch.randn(n, spec.widths[0], generator=generator, dtype=dtype)
    return torch.randn(n, spec.widths[0], spec.image_size, spec.image_size, generator=generator, dtype=dtype)


def _setup(spec, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return gen, init_params(spec, N_NETS, gen, dtype=dtype), _inputs(spec, 8, gen, dtype)


def _max_rel(a, b) -> float:
    return max(float((x - y).abs().max() / (y.abs().max() + 1e-30)) for x, y in zip(a, b))


# -- the action preserves the function ------------------------------------------------------------------------
@given(spec=specs(), seed=st.integers(0, 2**16), dtype=st.sampled_from([torch.float32, torch.float64]),
       with_perm=st.booleans())
def test_act_preserves_function(spec, seed, dtype, with_perm):
    gen, params, x = _setup(spec, seed, dtype)
    g = random_element(spec, N_NETS, group_for(spec, perm=with_perm), gen, dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert function_change(spec, params, act(spec, g, params), x) < tol


@given(spec=specs(), seed=st.integers(0, 2**16))
def test_act_graph_equals_to_graph_of_act(spec, seed):
    gen, params, _ = _setup(spec, seed)
    g = random_element(spec, N_NETS, group_for(spec, perm=True), gen)
    graph = to_graph(spec, params)
    moved = act_graph(spec, g, graph)
    expected = to_graph(spec, act(spec, g, params))
    assert torch.equal(moved.x, expected.x)
    assert torch.equal(moved.edge_attr, expected.edge_attr)
    assert torch.equal(moved.edge_index, graph.edge_index)
    assert moved.num_graphs == N_NETS
    # the input batch is left alone
    assert torch.equal(graph.x, to_graph(spec, params).x)


def test_act_graph_keeps_tuple_shapes():
    spec = NetSpec.cnn(2, (3, 4), 3, kernel_size=3, padding=1, activation="relu", image_size=5)
    gen, params, _ = _setup(spec, 0)
    g = random_element(spec, N_NETS, "perm+scale", gen)
    graph = to_graph(spec, params)
    expected = to_graph(spec, act(spec, g, params))
    nodes, edges = act_graph(spec, g, (graph.x.reshape(N_NETS, -1), graph.edge_attr.reshape(N_NETS, spec.n_edges, -1)))
    assert nodes.shape == (N_NETS, spec.n_nodes) and edges.shape == (N_NETS, spec.n_edges, spec.edge_dim)
    assert torch.equal(nodes.reshape(-1, 1), expected.x)
    nodes, edges = act_graph(spec, g, (graph.x.reshape(-1), graph.edge_attr))
    assert nodes.shape == (N_NETS * spec.n_nodes,)
    assert torch.equal(edges, expected.edge_attr)


@given(spec=specs(), seed=st.integers(0, 2**16))
def test_inverse_and_compose(spec, seed):
    gen, params, _ = _setup(spec, seed, torch.float64)
    group = group_for(spec, perm=True)
    g = random_element(spec, N_NETS, group, gen, dtype=torch.float64)
    h = random_element(spec, N_NETS, group, gen, dtype=torch.float64)
    assert _max_rel(sum(act(spec, inverse(g), act(spec, g, params)), ()), sum(params, ())) < 1e-12
    composed = act(spec, compose(g, h), params)
    in_turn = act(spec, g, act(spec, h, params))
    assert _max_rel(sum(composed, ()), sum(in_turn, ())) < 1e-12


def test_identity_is_exact_and_perm_moves_parameters():
    spec = NetSpec.mlp((3, 5, 4, 2), "relu")
    gen, params, x = _setup(spec, 1)
    same = act(spec, identity_element(spec, N_NETS), params)
    assert all(torch.equal(a, b) for a, b in zip(sum(same, ()), sum(params, ())))
    g = random_element(spec, N_NETS, "perm", gen)
    moved = act(spec, g, params)
    assert not torch.equal(moved[0][0], params[0][0])
    assert function_change(spec, params, moved, x) < 1e-5


def test_random_element_values():
    spec = NetSpec.mlp((2, 50, 40, 2), "relu")
    gen = torch.Generator().manual_seed(0)
    g = random_element(spec, 20, "perm+scale", gen, scale_range=(1e-2, 1e2))
    scales = torch.cat([s.reshape(-1) for s in g.scales])
    assert scales.min() >= 1e-2 and scales.max() <= 1e2
    assert scales.min() < 0.05 and scales.max() > 20  # log-uniform reaches both ends
    assert all(torch.equal(p.sort(dim=1).values, torch.arange(p.shape[1]).expand_as(p)) for p in g.perms)
    tanh = NetSpec.mlp((2, 50, 2), "tanh")
    signs = random_element(tanh, 20, "sign", gen).scales[0]
    assert set(signs.unique().tolist()) == {-1.0, 1.0}
    assert random_element(tanh, 4, "identity", gen).scales[0].eq(1).all()


# -- negative controls: things that are NOT symmetries must change the function --------------------------------
def _scale_nodes(spec, params, level, q):
    """Scale every node at ``level`` (0 = inputs, len(widths)-1 = outputs) by ``q`` (B, width): bias and incoming
    weights times q (if any), outgoing weights divided by q (if any) -- the group action's formula applied to
    nodes the group does not contain."""
    out = []
    for layer, (w, b) in enumerate(params):
        extra = w.dim() - 3
        if layer + 1 == level:
            w = w * q.reshape(*q.shape, 1, *([1] * extra))
            b = b * q
        if layer == level:
            w = w / q.reshape(q.shape[0], 1, -1, *([1] * extra))
        out.append((w, b))
    return out


NEGATIVE_SPECS = [
    NetSpec.mlp((4, 6, 5, 3), "relu"),
    NetSpec.cnn(2, (4, 3), 3, kernel_size=3, padding=1, activation="relu", image_size=6),
    NetSpec.mlp((4, 6, 5, 3), "tanh"),
    NetSpec.cnn(2, (4, 3), 3, kernel_size=3, stride=2, activation="tanh", image_size=7),
]


@pytest.mark.parametrize("spec", NEGATIVE_SPECS, ids=lambda s: s.family)
@pytest.mark.parametrize("level", ["input", "output"])
def test_scaling_input_or_output_nodes_changes_function(spec, level):
    gen, params, x = _setup(spec, 2)
    index = 0 if level == "input" else len(spec.widths) - 1
    q = torch.exp(torch.empty(N_NETS, spec.widths[index]).uniform_(-2, 2, generator=gen))
    assert function_change(spec, params, _scale_nodes(spec, params, index, q), x) > 1e-3


@pytest.mark.parametrize("spec", NEGATIVE_SPECS, ids=lambda s: s.family)
def test_uncoupled_scale_changes_function(spec):
    gen, params, x = _setup(spec, 3)
    g = random_element(spec, N_NETS, group_for(spec), gen)
    q = g.scales[0]
    # rows (incoming weights and bias) of hidden layer 0 only; the next layer's columns are left alone
    uncoupled = [(params[0][0] * q.reshape(*q.shape, *([1] * (params[0][0].dim() - 2))), params[0][1] * q),
                 *params[1:]]
    assert function_change(spec, params, uncoupled, x) > 1e-3
    assert function_change(spec, params, act(spec, g, params), x) < 1e-5


@pytest.mark.parametrize("spec", [s for s in NEGATIVE_SPECS if s.activation == "tanh"], ids=lambda s: s.family)
def test_positive_scale_on_tanh_changes_function(spec):
    _, params, x = _setup(spec, 4)
    changes = [function_change(spec, params, act(spec, unit_scaling(spec, 0, i, 2.0, N_NETS), params), x)
               for i in range(spec.hidden_widths[0])]
    assert max(changes) > 1e-3
    flips = [function_change(spec, params, act(spec, unit_scaling(spec, 0, i, -1.0, N_NETS), params), x)
             for i in range(spec.hidden_widths[0])]
    assert max(flips) < 1e-6


@pytest.mark.parametrize("spec", [s for s in NEGATIVE_SPECS if s.activation == "relu"], ids=lambda s: s.family)
def test_sign_flip_on_relu_changes_function(spec):
    _, params, x = _setup(spec, 5)
    changes = [function_change(spec, params, act(spec, unit_scaling(spec, 0, i, -1.0, N_NETS), params), x)
               for i in range(spec.hidden_widths[0])]
    assert max(changes) > 1e-3


# -- the activation -> group rule -----------------------------------------------------------------------------
def test_group_for_names_the_group_that_keeps_the_function():
    tanh, relu = NetSpec.mlp((3, 4, 2), "tanh"), NetSpec.cnn(1, (2,), 2, activation="relu", image_size=4)
    assert (group_for(tanh), group_for(tanh, perm=True)) == ("sign", "perm+sign")
    assert (group_for(relu), group_for(relu, perm=True)) == ("scale", "perm+scale")
    assert {group_for(s, perm=p) for s in (tanh, relu) for p in (False, True)} <= set(GROUPS)
    for spec in (tanh, relu):  # the named group keeps the function; the other activation's group does not
        gen, params, x = _setup(spec, 11)
        g = random_element(spec, N_NETS, group_for(spec, perm=True), gen)
        assert function_change(spec, params, act(spec, g, params), x) < 1e-5
        other = NetSpec.mlp(spec.widths, "relu" if spec.activation == "tanh" else "tanh") if spec.kind == "mlp" else None
        if other is not None:
            g = random_element(other, N_NETS, group_for(other), gen)
            assert function_change(spec, params, act(spec, g, params), x) > 1e-3


# -- the shared equivariance helpers --------------------------------------------------------------------------
def _roll_hidden(params):
    """A fixed relabelling of hidden layer 0: keeps the function but does not commute with permutations."""
    (w0, b0), (w1, b1), *rest = params
    return [(w0.roll(1, dims=1), b0.roll(1, dims=1)), (w1.roll(1, dims=2), b1), *rest]


@pytest.mark.parametrize("spec", NEGATIVE_SPECS, ids=lambda s: s.family)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_assert_equivariant_passes_on_equivariant_maps(spec, dtype):
    gen, params, _ = _setup(spec, 6, dtype)
    group = group_for(spec, perm=True)
    for f in (lambda p: p, lambda p: [(2 * w, 2 * b) for w, b in p], lambda p: [(w, torch.zeros_like(b)) for w, b in p]):
        assert assert_equivariant(f, spec, params, group, generator=gen) <= (1e-4 if dtype == torch.float32 else 1e-9)


@pytest.mark.parametrize("spec", NEGATIVE_SPECS, ids=lambda s: s.family)
def test_assert_equivariant_fails_on_non_equivariant_maps(spec):
    gen, params, _ = _setup(spec, 7)
    group = group_for(spec, perm=True)
    shift = lambda p: [(w + 0.1, b) for w, b in p]  # noqa: E731 -- commutes with permutations, not with scales
    with pytest.raises(AssertionError, match=r"worst relative error \S+ .* at layer \d+ (weight|bias), group element \d"):
        assert_equivariant(shift, spec, params, group, generator=gen)
    assert equivariance_error(shift, spec, params, group_for(spec), generator=gen).error > 1e-3
    assert equivariance_error(shift, spec, params, "perm", generator=gen).error < 1e-6
    assert equivariance_error(_roll_hidden, spec, params, "perm", generator=gen).error > 1e-3
    square = lambda p: [(w**2, b**2) for w, b in p]  # noqa: E731
    assert equivariance_error(square, spec, params, group_for(spec), generator=gen).error > 1e-3


def test_assert_equivariant_invariant_form():
    relu = NetSpec.mlp((4, 6, 5, 3), "relu")
    gen, params, x = _setup(relu, 8)
    logits = lambda p: forward(relu, p, x)  # noqa: E731
    l1 = lambda p: sum(w.abs().sum(dim=tuple(range(1, w.dim()))) + b.abs().sum(1) for w, b in p)  # noqa: E731
    assert assert_equivariant(logits, relu, params, "perm+scale", invariant=True, generator=gen) < 1e-4
    assert assert_equivariant(l1, relu, params, "perm", invariant=True, generator=gen) < 1e-4
    with pytest.raises(AssertionError, match="not invariant under 'scale'.*worst relative error"):
        assert_equivariant(l1, relu, params, "scale", invariant=True, generator=gen)
    tanh = NetSpec.mlp((4, 6, 5, 3), "tanh")
    _, tparams, _ = _setup(tanh, 9)
    assert equivariance_error(l1, tanh, tparams, "perm+sign", invariant=True, generator=gen).error < 1e-6  # ||theta||_1 ignores signs


# -- clear errors ---------------------------------------------------------------------------------------------
def test_group_must_match_activation():
    with pytest.raises(SymmetryError, match="tanh is odd but not positively homogeneous"):
        random_element(NetSpec.mlp((2, 3, 2), "tanh"), 1, "perm+scale")
    with pytest.raises(SymmetryError, match="relu is not odd"):
        random_element(NetSpec.mlp((2, 3, 2), "relu"), 1, "sign")
    with pytest.raises(SymmetryError, match=r"unknown group 'rotation'; valid groups are .*perm\+scale"):
        random_element(NetSpec.mlp((2, 3, 2), "relu"), 1, "rotation")
    assert set(GROUPS) == {"identity", "perm", "scale", "sign", "perm+scale", "perm+sign"}


def test_element_for_other_spec_is_rejected():
    spec = NetSpec.mlp((2, 3, 4, 2), "relu")
    other = NetSpec.mlp((2, 3, 5, 2), "relu")
    g = random_element(spec, 2, "perm+scale")
    params = init_params(other, 2)
    with pytest.raises(SymmetryError, match=r"element built for hidden widths \(3, 4\) but spec has \(3, 5\)"):
        act(other, g, params)
    with pytest.raises(SymmetryError, match=r"element built for hidden widths \(3, 4\) but spec has \(3, 5\)"):
        act_graph(other, g, to_graph(other, params))
    with pytest.raises(SymmetryError, match="element holds 2 networks but the parameters hold 3"):
        act(spec, g, init_params(spec, 3))


def test_malformed_elements_are_rejected():
    with pytest.raises(SymmetryError, match=r"perms\[0\] has shape \(2, 4\); expected \(B, 3\)"):
        GroupElement((3,), [torch.zeros(2, 4, dtype=torch.long)], [torch.ones(2, 3)])
    with pytest.raises(SymmetryError, match="must be a LongTensor"):
        GroupElement((3,), [torch.zeros(2, 3)], [torch.ones(2, 3)])
    with pytest.raises(SymmetryError, match="needs 2 permutations"):
        GroupElement((3, 4), [torch.zeros(2, 3, dtype=torch.long)], [torch.ones(2, 3)])
    with pytest.raises(SymmetryError, match="unit 7 out of range"):
        unit_scaling(NetSpec.mlp((2, 3, 2)), 0, 7, 2.0)
