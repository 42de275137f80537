"""Gauge freedom: Toeplitz unrolling, distance to convolutions, counting, and the numerical symmetry directions."""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from workbench.gauge import (
    conv_output_size,
    conv_to_toeplitz,
    conv_vs_dense_directions,
    dense_equivalent_spec,
    distance_to_convolution,
    gauge_counts,
    gauge_table,
    kernel_index_map,
    project_to_convolution,
    scaling_tangents,
    symmetry_directions,
    toeplitz_to_conv,
    unroll_cnn,
)
from workbench.forward_pass import forward
from workbench.nets import NetSpec, SpecError, flatten_params, init_params, small_cnn_zoo_spec
from workbench.symmetry import SymmetryError, act, random_element, unit_scaling
from workbench.viz.gauge import compute_scaling_demo, directions_figure, scaling_widget, toeplitz_figure

F64 = torch.float64


@st.composite
def conv_layers(draw):
    kernel = draw(st.sampled_from([1, 3, 5]))
    stride = draw(st.sampled_from([1, 2]))
    padding = draw(st.sampled_from([0, 1]))
    size = max(kernel - 2 * padding, 1) + draw(st.integers(0, 4))
    return draw(st.integers(1, 4)), draw(st.integers(1, 3)), kernel, size, stride, padding


# -- the Toeplitz view ----------------------------------------------------------------------------------------
@given(layer=conv_layers(), seed=st.integers(0, 2**16))
def test_toeplitz_matches_conv2d(layer, seed):
    n_out, n_in, k, size, stride, padding = layer
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(n_out, n_in, k, k, generator=gen, dtype=F64)
    images = torch.randn(5, n_in, size, size, generator=gen, dtype=F64)
    matrix = conv_to_toeplitz(weight, size, stride, padding)
    ho, wo = conv_output_size(size, k, stride, padding)
    assert matrix.shape == (n_out * ho * wo, n_in * size * size)
    expected = F.conv2d(images, weight, stride=stride, padding=padding).reshape(5, -1)
    torch.testing.assert_close(images.reshape(5, -1) @ matrix.T, expected, rtol=1e-12, atol=1e-12)


@given(layer=conv_layers(), seed=st.integers(0, 2**16))
def test_toeplitz_round_trip(layer, seed):
    n_out, n_in, k, size, stride, padding = layer
    weight = torch.randn(n_out, n_in, k, k, generator=torch.Generator().manual_seed(seed), dtype=F64)
    matrix = conv_to_toeplitz(weight, size, stride, padding)
    back = toeplitz_to_conv(matrix, n_out, n_in, k, size, stride, padding)
    # kernel entries that only ever meet padding do not appear in the matrix and come back as 0
    seen = torch.zeros(k * k + 1, dtype=torch.bool)
    seen[kernel_index_map(k, size, stride, padding).unique()] = True
    seen = seen[: k * k].reshape(k, k)
    torch.testing.assert_close(back[..., seen], weight[..., seen], rtol=0, atol=1e-14)
    assert back[..., ~seen].eq(0).all()
    torch.testing.assert_close(conv_to_toeplitz(back, size, stride, padding), matrix, rtol=0, atol=1e-14)
    assert distance_to_convolution(matrix, n_out, n_in, k, size, stride, padding) < 1e-12


def test_toeplitz_keeps_leading_dims_and_checks_shapes():
    weight = torch.randn(2, 3, 4, 2, 3, 3, dtype=F64)
    matrix = conv_to_toeplitz(weight, 6, 1, 1)
    assert matrix.shape == (2, 3, 4 * 36, 2 * 36)
    torch.testing.assert_close(matrix[1, 2], conv_to_toeplitz(weight[1, 2], 6, 1, 1))
    torch.testing.assert_close(toeplitz_to_conv(matrix, 4, 2, 3, 6, 1, 1), weight)
    with pytest.raises(SpecError, match="is not a 4 x 3 conv"):
        toeplitz_to_conv(matrix[0, 0], 4, 3, 3, 6, 1, 1)
    with pytest.raises(SpecError, match="does not fit a 2x2 input"):
        conv_to_toeplitz(torch.randn(1, 1, 5, 5), 2)


CONV_CASES = [(3, 2, 3, 8, 1, 0), (4, 1, 3, 9, 2, 1), (2, 3, 1, 5, 1, 0), (3, 2, 5, 7, 1, 1)]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_per_channel_scale_stays_conv_per_position_does_not(case):
    n_out, n_in, k, size, stride, padding = case
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(n_out, n_in, k, k, generator=gen, dtype=F64)
    matrix = conv_to_toeplitz(weight, size, stride, padding)
    positions = math.prod(conv_output_size(size, k, stride, padding))
    q_channel = torch.exp(torch.empty(n_out, dtype=F64).uniform_(-2, 2, generator=gen))
    q_in = torch.exp(torch.empty(n_in, dtype=F64).uniform_(-2, 2, generator=gen))
    # q_out per channel on rows and 1/q_in per input channel on columns: what the CNN's group does
    scaled = q_channel.repeat_interleave(positions)[:, None] * matrix / q_in.repeat_interleave(size * size)[None, :]
    assert distance_to_convolution(scaled, n_out, n_in, k, size, stride, padding) < 1e-12
    q_neuron = torch.exp(torch.empty(n_out * positions, dtype=F64).uniform_(-2, 2, generator=gen))
    assert distance_to_convolution(q_neuron[:, None] * matrix, n_out, n_in, k, size, stride, padding) > 0.1
    dense = torch.randn_like(matrix)
    assert distance_to_convolution(dense, n_out, n_in, k, size, stride, padding) > 0.5


def test_projection_is_orthogonal():
    gen = torch.Generator().manual_seed(1)
    n_out, n_in, k, size, stride, padding = 3, 2, 3, 6, 2, 1
    ho = conv_output_size(size, k, stride, padding)[0]
    m = torch.randn(n_out * ho * ho, n_in * size * size, generator=gen, dtype=F64)
    p = project_to_convolution(m, n_out, n_in, k, size, stride, padding)
    # idempotent, and the residual is orthogonal to every convolution
    torch.testing.assert_close(project_to_convolution(p, n_out, n_in, k, size, stride, padding), p)
    other = conv_to_toeplitz(torch.randn(n_out, n_in, k, k, generator=gen, dtype=F64), size, stride, padding)
    assert abs(float(((m - p) * other).sum())) < 1e-10


# -- counting -------------------------------------------------------------------------------------------------
def test_gauge_counts():
    relu = gauge_counts(NetSpec.mlp((3, 4, 5, 2), "relu"))
    assert relu.n_hidden == 9 and relu.scaling_dim == 9 and relu.sign_group_log2 == 0
    assert relu.perm_group_order == math.factorial(4) * math.factorial(5) == 2880
    assert relu.perm_group_log10 == pytest.approx(math.log10(2880))
    assert relu.gauge_ratio == pytest.approx(9 / NetSpec.mlp((3, 4, 5, 2)).n_params)
    tanh = gauge_counts(small_cnn_zoo_spec("tanh"))
    assert (tanh.n_params, tanh.n_hidden, tanh.scaling) == (4970, 48, "sign")
    assert (tanh.scaling_dim, tanh.sign_group_log2) == (0, 48)
    assert tanh.perm_group_log10 == pytest.approx(3 * math.log10(math.factorial(16)))


def test_gauge_table_and_conv_vs_dense():
    zoo = small_cnn_zoo_spec("relu")
    table = gauge_table({"cnn": zoo, "cnn as mlp": dense_equivalent_spec(zoo)})
    assert isinstance(table, pd.DataFrame) and list(table.index) == ["cnn", "cnn as mlp"]
    assert table.loc["cnn", "scaling_dim"] == 48
    assert table.loc["cnn as mlp", "scaling_dim"] == 16 * (15 * 15 + 7 * 7 + 3 * 3)
    per_layer = conv_vs_dense_directions(zoo)
    assert per_layer["conv scaling directions"].tolist() == [16, 16, 16]
    assert per_layer["dense scaling directions"].tolist() == [16 * 225, 16 * 49, 16 * 9]
    assert (per_layer["dense scaling directions"] > per_layer["conv scaling directions"]).all()


@given(seed=st.integers(0, 2**16), stride=st.sampled_from([1, 2]), padding=st.sampled_from([0, 1]),
       activation=st.sampled_from(["relu", "tanh"]))
def test_unrolled_cnn_computes_the_same_function(seed, stride, padding, activation):
    spec = NetSpec.cnn(2, (3, 2), 3, kernel_size=3, stride=stride, padding=padding, activation=activation, image_size=7)
    gen = torch.Generator().manual_seed(seed)
    params = init_params(spec, 2, gen, dtype=F64)
    x = torch.randn(6, 2, 7, 7, generator=gen, dtype=F64)
    mlp, mlp_params = unroll_cnn(spec, params)
    assert mlp == dense_equivalent_spec(spec) and mlp.kind == "mlp"
    torch.testing.assert_close(forward(mlp, mlp_params, x), forward(spec, params, x), rtol=1e-12, atol=1e-12)


def test_dense_scaling_of_unrolled_cnn_keeps_function_but_leaves_convolutions():
    """The poster's claim, end to end: per-neuron scales of the unrolled CNN are symmetries of the function, but
    the scaled matrices are no longer convolutions; the CNN's own per-channel scales keep them convolutions."""
    spec = NetSpec.cnn(1, (3, 3), 2, kernel_size=3, activation="relu", image_size=6)
    gen = torch.Generator().manual_seed(3)
    params = init_params(spec, 1, gen, dtype=F64)
    x = torch.randn(10, 1, 6, 6, generator=gen, dtype=F64)
    mlp, mlp_params = unroll_cnn(spec, params)
    dense_g = random_element(mlp, 1, "scale", gen, scale_range=(0.25, 4.0), dtype=F64)
    dense_scaled = act(mlp, dense_g, mlp_params)
    torch.testing.assert_close(forward(mlp, dense_scaled, x), forward(spec, params, x), rtol=1e-10, atol=1e-12)
    args = (3, 1, 3, 6, 1, 0)
    assert distance_to_convolution(dense_scaled[0][0][0], *args) > 0.1
    conv_g = random_element(spec, 1, "scale", gen, scale_range=(0.25, 4.0), dtype=F64)
    _, conv_scaled = unroll_cnn(spec, act(spec, conv_g, params))
    assert distance_to_convolution(conv_scaled[0][0][0], *args) < 1e-12
    assert distance_to_convolution(conv_scaled[1][0][0], 3, 3, 3, 4, 1, 0) < 1e-12


# -- the numerical check --------------------------------------------------------------------------------------
def _probe(spec: NetSpec, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (spec.widths[0],) if spec.kind == "mlp" else (spec.widths[0], spec.image_size, spec.image_size)
    return torch.randn(n, *shape, generator=gen, dtype=F64)


@pytest.mark.parametrize("spec", [
    NetSpec.mlp((3, 4, 5, 3), "relu"),
    NetSpec.cnn(2, (3, 4), 3, kernel_size=3, padding=1, activation="relu", image_size=5),
], ids=lambda s: s.family)
def test_symmetry_directions_relu(spec):
    params = init_params(spec, 1, torch.Generator().manual_seed(0), dtype=F64)
    result = symmetry_directions(spec, params, _probe(spec, 40, 1))
    assert result.n_directions == result.n_tangents == result.expected_directions == sum(spec.hidden_widths)
    assert result.relative_residual < 1e-12
    assert result.jacobian_nullity >= result.n_directions
    assert result.tangents.shape == (sum(spec.hidden_widths), spec.n_params)


def test_symmetry_directions_tanh_has_no_continuous_scaling():
    spec = NetSpec.mlp((3, 4, 5, 3), "tanh")
    params = init_params(spec, 1, torch.Generator().manual_seed(0), dtype=F64)
    result = symmetry_directions(spec, params, _probe(spec, 40, 1))
    assert result.expected_directions == 0 and result.n_directions == 0
    assert result.n_tangents == 9 and result.relative_residual > 1e-4


def test_unrolled_cnn_has_one_direction_per_neuron():
    spec = NetSpec.cnn(1, (2, 2), 2, kernel_size=3, activation="relu", image_size=5)  # 5x5 -> 3x3 -> 1x1
    params = init_params(spec, 1, torch.Generator().manual_seed(2), dtype=F64)
    x = _probe(spec, 20, 3)
    conv = symmetry_directions(spec, params, x)
    mlp, mlp_params = unroll_cnn(spec, params)
    dense = symmetry_directions(mlp, mlp_params, x.reshape(20, -1))
    assert conv.n_directions == 4
    assert dense.n_directions == 2 * 9 + 2 * 1 == sum(mlp.hidden_widths)
    assert dense.relative_residual < 1e-12


def test_scaling_tangent_is_the_derivative_of_the_action():
    spec = NetSpec.cnn(2, (3,), 2, kernel_size=3, activation="relu", image_size=4)
    params = init_params(spec, 1, torch.Generator().manual_seed(4), dtype=F64)
    tangents = scaling_tangents(spec, params)
    eps = 1e-6
    for unit in range(3):
        g_plus = unit_scaling(spec, 0, unit, math.exp(eps), dtype=F64)
        g_minus = unit_scaling(spec, 0, unit, math.exp(-eps), dtype=F64)
        numeric = (flatten_params(act(spec, g_plus, params)) - flatten_params(act(spec, g_minus, params)))[0] / (2 * eps)
        torch.testing.assert_close(numeric, tangents[unit], rtol=1e-6, atol=1e-8)
    with pytest.raises(SpecError, match="single network"):
        scaling_tangents(spec, init_params(spec, 2, dtype=F64))


# -- figures --------------------------------------------------------------------------------------------------
def test_scaling_demo_figure():
    spec = NetSpec.cnn(1, (3, 3), 2, kernel_size=3, activation="relu", image_size=6)
    gen = torch.Generator().manual_seed(5)
    params = init_params(spec, 2, gen)
    x = torch.randn(12, 1, 6, 6, generator=gen)
    fig, delta = compute_scaling_demo(spec, params, 0, 1, x, log10_scale=1.5, network=1)
    assert isinstance(fig, go.Figure) and len(fig.data) == 6 and delta < 1e-5
    assert fig.data[1].y[0] == pytest.approx(10**1.5 * fig.data[0].y[0], rel=1e-5)
    with pytest.raises(SymmetryError, match="relu is not odd"):
        compute_scaling_demo(spec, params, 0, 1, x, sign_flip=True)
    tanh = NetSpec.mlp((4, 5, 3), "tanh")
    tparams = init_params(tanh, 1, gen)
    tx = torch.randn(12, 4, generator=gen)
    assert compute_scaling_demo(tanh, tparams, 0, 2, tx, sign_flip=True)[1] < 1e-6
    with pytest.raises(SymmetryError, match="not positively homogeneous"):
        compute_scaling_demo(tanh, tparams, 0, 2, tx, log10_scale=0.3)
    assert compute_scaling_demo(tanh, tparams, 0, 2, tx, log10_scale=0.3, strict=False)[1] > 1e-3


def test_toeplitz_and_directions_figures():
    weight = torch.randn(3, 2, 3, 3, generator=torch.Generator().manual_seed(6))
    fig, dist = toeplitz_figure(weight, 6, generator=torch.Generator().manual_seed(7))
    assert isinstance(fig, go.Figure) and len(fig.data) == 3
    assert dist["original"] < 1e-12 and dist["per_channel"] < 1e-12 and dist["per_position"] > 0.1
    bars = directions_figure(NetSpec.cnn(1, (2, 2), 2, kernel_size=3, activation="relu", image_size=6))
    assert list(bars.data[0].y) == [2, 2] and list(bars.data[1].y) == [2 * 16, 2 * 4]


def test_scaling_widget_builds():
    import ipywidgets as widgets

    spec = NetSpec.mlp((4, 5, 6, 3), "relu")
    box = scaling_widget(spec, init_params(spec, 1), torch.randn(8, 4))
    assert isinstance(box, widgets.VBox)
    (layer, unit, scale), view, errors = box.children[0].children, box.children[1], box.children[2]
    figure, text = view.outputs
    assert "application/vnd.plotly.v1+json" in figure["data"] and text["text"].startswith("max |delta logits|")
    layer.value = 1
    unit.value = 5
    scale.value = -2.0
    assert unit.max == 5 and scale.description == "log10 scale"
    assert "neuron 5 scaled by 0.01" in view.outputs[0]["data"]["text/plain"]
    assert float(view.outputs[1]["text"].split("=")[1]) < 1e-5
    assert errors.outputs == ()
