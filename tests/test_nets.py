"""NetSpec, batched parameters and the vectorised forward pass: every network in a batch behaves exactly like the
same weights in an ordinary ``nn.Sequential``."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import torch.nn.functional as F

from workbench.forward_pass import ROUTES, conv_route, forward, im2col, prepare_inputs
from workbench.interop import from_module, to_module
from workbench.nets import (
    ACTIVATIONS,
    NetSpec,
    SpecError,
    check_params,
    flatten_params,
    init_params,
    select,
    small_cnn_zoo_spec,
    unflatten_params,
)


# -- strategies ----------------------------------------------------------------------------------------------------
from strategies import net_specs  # noqa: E402  (shared with the other property tests)


def inputs(spec: NetSpec, n: int, gen: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    if spec.kind == "mlp":
        return torch.randn(n, spec.widths[0], generator=gen, dtype=dtype)
    return torch.randn(n, spec.widths[0], spec.image_size, spec.image_size, generator=gen, dtype=dtype)


def assert_params_equal(a, b):
    assert len(a) == len(b)
    for layer, ((wa, ba), (wb, bb)) in enumerate(zip(a, b)):
        assert wa.dtype == wb.dtype and ba.dtype == bb.dtype, layer
        assert torch.equal(wa, wb), f"layer {layer} weight differs"
        assert torch.equal(ba, bb), f"layer {layer} bias differs"


MLP = NetSpec.mlp((5, 4, 3), "tanh")
CNN = NetSpec.cnn(2, (3, 4), 3, kernel_size=3, stride=1, padding=1, activation="relu", image_size=5)


# -- NetSpec -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: NetSpec.mlp((4, 3), "gelu"), r"unknown activation 'gelu'.*\('tanh', 'relu'\)"),
        (lambda: NetSpec.cnn(1, (2,), 3, activation="sigmoid", image_size=8), r"unknown activation 'sigmoid'"),
        (lambda: NetSpec("rnn", (4, 3), "relu"), r"unknown network kind 'rnn'; expected one of \('mlp', 'cnn'\)"),
        (lambda: NetSpec.mlp((4,), "relu"), r"widths must list at least two positive sizes, got \(4,\)"),
        (lambda: NetSpec.mlp((4, 0, 3), "relu"), r"widths must list at least two positive sizes, got \(4, 0, 3\)"),
        (lambda: NetSpec.mlp((4, -2, 3), "tanh"), r"at least two positive sizes"),
        (lambda: NetSpec("cnn", (1, 10), "relu", 3), r"a CNN needs at least one conv layer"),
        (lambda: NetSpec.cnn(1, (2,), 3, kernel_size=0), r"bad conv settings kernel_size=0"),
        (lambda: NetSpec.cnn(1, (2,), 3, stride=0), r"bad conv settings .*stride=0"),
        (lambda: NetSpec.cnn(1, (2,), 3, padding=-1), r"bad conv settings .*padding=-1"),
        (lambda: NetSpec("mlp", (4, 3), "relu", kernel_size=3), r"kernel_size/stride/padding only apply to CNNs"),
        # 6 -> (6-5)+1 = 2 -> (2-5)+1 = -2 at the second conv layer
        (lambda: NetSpec.cnn(1, (4, 4), 2, kernel_size=5, image_size=6),
         r"image_size=6 shrinks to nothing at conv layer 1 \(kernel 5, stride 1, padding 0\)"),
        (lambda: NetSpec.cnn(1, (4,), 2, kernel_size=3, image_size=2),
         r"image_size=2 shrinks to nothing at conv layer 0"),
    ],
)
def test_netspec_rejects_bad_descriptions(make, match):
    with pytest.raises(SpecError, match=match):
        make()


def test_netspec_accepts_the_smallest_image_that_keeps_one_pixel():
    spec = NetSpec.cnn(1, (4, 4), 2, kernel_size=5, stride=1, padding=0, image_size=9)  # 9 -> 5 -> 1
    assert spec.spatial_sizes() == [9, 5, 1]
    with pytest.raises(SpecError, match="shrinks to nothing"):
        NetSpec.cnn(1, (4, 4), 2, kernel_size=5, stride=1, padding=0, image_size=8)
    # padding counts on both sides: 5 -> 3 -> 1 fits, 4 -> 2 -> 0 does not
    assert NetSpec.cnn(1, (4, 4), 2, kernel_size=5, padding=1, image_size=5).spatial_sizes() == [5, 3, 1]
    with pytest.raises(SpecError, match="image_size=4 shrinks to nothing at conv layer 1"):
        NetSpec.cnn(1, (4, 4), 2, kernel_size=5, padding=1, image_size=4)
    # stride: 7 -> 3 -> 1 fits, 6 -> 2 -> 0 does not
    assert NetSpec.cnn(1, (4, 4), 2, kernel_size=3, stride=2, image_size=7).spatial_sizes() == [7, 3, 1]
    with pytest.raises(SpecError, match="image_size=6 shrinks to nothing at conv layer 1"):
        NetSpec.cnn(1, (4, 4), 2, kernel_size=3, stride=2, image_size=6)


def test_small_cnn_zoo_spec():
    for activation in ACTIVATIONS:
        spec = small_cnn_zoo_spec(activation)
        assert spec.widths == (1, 16, 16, 16, 10)
        assert spec.activation == activation
        assert spec.n_params == 4970
        # 3 conv layers of 3x3 kernels plus the dense head, by hand
        assert (16 * 1 * 9 + 16) + 2 * (16 * 16 * 9 + 16) + (10 * 16 + 10) == 4970
        assert (spec.kernel_size, spec.stride, spec.padding, spec.image_size) == (3, 2, 0, 32)
        assert spec.n_conv == 3 and spec.n_layers == 4
        assert spec.spatial_sizes() == [32, 15, 7, 3]
        assert sum(w.numel() + b.numel() for w, b in init_params(spec, 1)) == 4970


def test_netspec_dict_round_trip():
    for spec in (MLP, CNN, small_cnn_zoo_spec("relu")):
        assert NetSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(SpecError, match=r"unknown NetSpec fields \['depth'\]"):
        NetSpec.from_dict({**MLP.to_dict(), "depth": 3})


@given(spec=net_specs(min_depth=0), n=st.integers(1, 3))
def test_n_params_matches_init_params(spec, n):
    params = init_params(spec, n, torch.Generator().manual_seed(0))
    assert len(params) == spec.n_layers
    assert sum(w[0].numel() + b[0].numel() for w, b in params) == spec.n_params
    for layer, (w, b) in enumerate(params):
        assert tuple(w.shape) == (n, *spec.weight_shape(layer))
        assert tuple(b.shape) == (n, *spec.bias_shape(layer))
    assert flatten_params(params).shape == (n, spec.n_params)
    assert check_params(spec, params, finite=True) == n


# -- forward == nn.Module ------------------------------------------------------------------------------------------
def _check_forward_matches_module(spec, seed, n_nets, n_inputs, dtype, atol):
    gen = torch.Generator().manual_seed(seed)
    params = init_params(spec, n_nets, gen, dtype=dtype)
    x = inputs(spec, n_inputs, gen, dtype)
    out = forward(spec, params, x)
    assert out.shape == (n_nets, n_inputs, spec.n_classes)
    assert out.dtype == dtype
    with torch.no_grad():
        for i in range(n_nets):
            ref = to_module(spec, params, i)(x)
            torch.testing.assert_close(out[i], ref, atol=atol, rtol=0)


@given(spec=net_specs(), seed=st.integers(0, 2**16), n_nets=st.integers(1, 4), n_inputs=st.integers(1, 4))
def test_forward_matches_module_float32(spec, seed, n_nets, n_inputs):
    _check_forward_matches_module(spec, seed, n_nets, n_inputs, torch.float32, 1e-6)


@settings(max_examples=15)
@given(spec=net_specs(), seed=st.integers(0, 2**16), n_nets=st.integers(1, 4), n_inputs=st.integers(1, 4))
def test_forward_matches_module_float64(spec, seed, n_nets, n_inputs):
    _check_forward_matches_module(spec, seed, n_nets, n_inputs, torch.float64, 1e-12)


def test_forward_single_layer_mlp_is_affine():
    spec = NetSpec.mlp((4, 3), "tanh")  # no hidden layer: no activation anywhere
    gen = torch.Generator().manual_seed(1)
    params = init_params(spec, 2, gen, dtype=torch.float64)
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    w, b = params[0]
    expected = torch.einsum("ni,boi->bno", x, w) + b[:, None, :]
    torch.testing.assert_close(forward(spec, params, x), expected, atol=1e-14, rtol=0)
    torch.testing.assert_close(forward(spec, params, x)[1], to_module(spec, params, 1)(x), atol=1e-14, rtol=0)


def test_forward_networks_are_independent():
    """Changing network 1 leaves networks 0 and 2 bit-for-bit unchanged (no mixing across the batch)."""
    for spec in (MLP, CNN):
        gen = torch.Generator().manual_seed(3)
        params = init_params(spec, 3, gen)
        x = inputs(spec, 4, gen)
        before = forward(spec, params, x)
        changed = [(w.clone(), b.clone()) for w, b in params]
        for w, b in changed:
            w[1] += 1.0
            b[1] -= 0.5
        after = forward(spec, changed, x)
        torch.testing.assert_close(after[[0, 2]], before[[0, 2]], atol=1e-6, rtol=0)
        assert not torch.allclose(after[1], before[1])


def test_forward_rejects_wrong_inputs():
    params = init_params(MLP, 2)
    with pytest.raises(SpecError, match="inputs have 6 features"):
        forward(MLP, params, torch.randn(3, 6))
    cparams = init_params(CNN, 2)
    with pytest.raises(SpecError, match=r"inputs of shape \(3, 1, 5, 5\) do not fit"):
        forward(CNN, cparams, torch.randn(3, 1, 5, 5))


# -- the routes of the one forward pass ---------------------------------------------------------------------------
def _conv2d_reference(spec, params, x_per_net):
    """Logits (B, N, classes) with plain ``F.conv2d`` per network, network b on its own inputs ``x_per_net[b]``."""
    act = torch.tanh if spec.activation == "tanh" else torch.relu
    out = []
    for b, x in enumerate(x_per_net):
        h = x
        for layer in range(spec.n_conv):
            w, bias = params[layer]
            h = act(F.conv2d(h, w[b], bias[b], stride=spec.stride, padding=spec.padding))
        w, bias = params[-1]
        out.append(h.mean(dim=(2, 3)) @ w[b].T + bias[b])
    return torch.stack(out)


@settings(max_examples=30)
@given(spec=net_specs(kinds=("cnn",)), seed=st.integers(0, 2**16), n_nets=st.integers(1, 4),
       n_inputs=st.integers(1, 4))
def test_every_conv_route_matches_conv2d_in_float64(spec, seed, n_nets, n_inputs):
    """Both routes, shared and per-network inputs, images and precomputed patches: the logits of plain
    per-network convolutions, to float64 rounding, on random architectures (kernel, stride, padding, depth)."""
    gen = torch.Generator().manual_seed(seed)
    params = init_params(spec, n_nets, gen, dtype=torch.float64)
    shared = inputs(spec, n_inputs, gen, torch.float64)
    own = torch.randn(n_nets, *shared.shape, generator=gen, dtype=torch.float64)
    expected_shared = _conv2d_reference(spec, params, shared.expand(n_nets, *shared.shape))
    expected_own = _conv2d_reference(spec, params, own)
    for route in ROUTES:
        torch.testing.assert_close(forward(spec, params, shared, route=route), expected_shared, atol=1e-12, rtol=0)
        torch.testing.assert_close(forward(spec, params, own, per_network=True, route=route), expected_own,
                                   atol=1e-12, rtol=0)
    torch.testing.assert_close(forward(spec, params, im2col(spec, shared), patches=True), expected_shared,
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(forward(spec, params, im2col(spec, own), per_network=True, patches=True),
                               expected_own, atol=1e-12, rtol=0)


@settings(max_examples=15)
@given(spec=net_specs(kinds=("mlp",)), seed=st.integers(0, 2**16), n_nets=st.integers(1, 4))
def test_per_network_inputs_mlp(spec, seed, n_nets):
    gen = torch.Generator().manual_seed(seed)
    params = init_params(spec, n_nets, gen, dtype=torch.float64)
    own = torch.randn(n_nets, 3, spec.widths[0], generator=gen, dtype=torch.float64)
    expected = torch.stack([forward(spec, select(params, b), own[b])[0] for b in range(n_nets)])
    torch.testing.assert_close(forward(spec, params, own, per_network=True), expected, atol=1e-12, rtol=0)


def test_conv_route_follows_the_cost_of_dense_matrices():
    digits = NetSpec.cnn(1, (8, 8, 8), 10, kernel_size=3, stride=2, padding=1, image_size=8)
    assert conv_route(digits) == "dense"  # 8 -> 4 -> 2 -> 1: dense matrices cost 1.5x the convolutions
    assert conv_route(small_cnn_zoo_spec()) == "grouped"  # 32 -> 15 -> 7 -> 3: 22x
    assert conv_route(NetSpec.cnn(1, (8, 8, 8), 10, kernel_size=3, image_size=8)) == "grouped"  # stride 1: 3.6x
    assert conv_route(digits, image_size=32) == "grouped"  # the same network on larger images
    assert conv_route(NetSpec.cnn(1, (4,), 2, image_size=30)) == "dense"  # one conv layer: only patches
    cols, kw = prepare_inputs(digits, torch.zeros(5, 1, 8, 8))
    assert kw == {"patches": True} and cols.shape == (5, 16, 9)
    x, kw = prepare_inputs(small_cnn_zoo_spec(), torch.zeros(5, 1, 32, 32))
    assert kw == {} and x.shape == (5, 1, 32, 32)
    with pytest.raises(SpecError, match="MLP"):
        conv_route(MLP)


def test_dropout_per_network_rates():
    """A rate of 0 leaves a network exactly as without dropout; other rates change it; a zero-rate tensor draws
    masks but changes nothing; both routes keep networks apart."""
    for spec in (MLP, CNN, NetSpec.cnn(1, (3, 3), 2, kernel_size=3, stride=2, padding=1, image_size=8)):
        gen = torch.Generator().manual_seed(0)
        params = init_params(spec, 3, gen, dtype=torch.float64)
        x = inputs(spec, 6, gen, torch.float64)
        plain = forward(spec, params, x)
        routes = ROUTES if spec.kind == "cnn" else (None,)
        for route in routes:
            rates = torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64)
            out = forward(spec, params, x, dropout=rates, generator=torch.Generator().manual_seed(1), route=route)
            torch.testing.assert_close(out[[0, 2]], plain[[0, 2]], atol=1e-12, rtol=0)
            assert not torch.allclose(out[1], plain[1])
            zeros = forward(spec, params, x, dropout=torch.zeros(3), generator=torch.Generator(), route=route)
            torch.testing.assert_close(zeros, plain, atol=1e-12, rtol=0)
    with pytest.raises(SpecError, match="one rate per network"):
        forward(MLP, init_params(MLP, 2), torch.zeros(1, 5), dropout=torch.ones(3) * 0.1)


def test_dropout_is_inverted_and_at_its_rate():
    spec = NetSpec.mlp((1, 2000, 1), "relu")
    w0 = torch.zeros(1, 2000, 1)
    b0 = torch.ones(1, 2000)
    w1, b1 = torch.ones(1, 1, 2000) / 2000, torch.zeros(1, 1)
    out = forward(spec, [(w0, b0), (w1, b1)], torch.zeros(50, 1), dropout=0.3,
                  generator=torch.Generator().manual_seed(0))
    assert abs(float(out.mean()) - 1.0) < 0.01  # E[mask / keep] = 1


def test_forward_rejects_wrong_route_and_input_layouts():
    params = init_params(CNN, 2)
    with pytest.raises(SpecError, match="unknown conv route 'toeplitz'"):
        forward(CNN, params, torch.randn(3, 2, 5, 5), route="toeplitz")
    with pytest.raises(SpecError, match="leading dimension of 2 networks"):
        forward(CNN, params, torch.randn(3, 4, 2, 5, 5), per_network=True)
    with pytest.raises(SpecError, match="patches=True applies to CNNs only"):
        forward(MLP, init_params(MLP, 2), torch.randn(3, 5), patches=True)
    with pytest.raises(SpecError, match=r"patches of shape \(3, 7, 18\) do not fit"):
        forward(CNN, params, torch.randn(3, 7, 18), patches=True)
    with pytest.raises(SpecError, match="shrinks to nothing"):
        forward(NetSpec.cnn(1, (2, 2), 2, kernel_size=3), init_params(NetSpec.cnn(1, (2, 2), 2, kernel_size=3), 1),
                torch.randn(2, 1, 4, 4))


# -- nn.Module interop ---------------------------------------------------------------------------------------------
@given(spec=net_specs(), seed=st.integers(0, 2**16), n_nets=st.integers(1, 3),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_from_module_inverts_to_module(spec, seed, n_nets, dtype):
    params = init_params(spec, n_nets, torch.Generator().manual_seed(seed), dtype=dtype)
    index = seed % n_nets
    back_spec, back = from_module(to_module(spec, params, index), image_size=spec.image_size)
    assert back_spec == spec
    assert_params_equal(back, [(w[index : index + 1], b[index : index + 1]) for w, b in params])


def test_from_module_reads_single_layer_mlp():
    spec = NetSpec.mlp((4, 3), "relu")
    params = init_params(spec, 1)
    back_spec, back = from_module(to_module(spec, params))
    assert back_spec.widths == (4, 3)
    assert_params_equal(back, params)


def test_from_module_reads_nested_sequential_with_dropout():
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.Tanh(), nn.Dropout(0.1)),
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.Tanh(),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        nn.Linear(4, 5),
    ).eval()
    spec, params = from_module(module, image_size=7)
    assert spec == NetSpec.cnn(2, (3, 4), 5, kernel_size=3, stride=2, padding=1, activation="tanh", image_size=7)
    x = torch.randn(3, 2, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(forward(spec, params, x)[0], module(x), atol=1e-6, rtol=0)
    # the params are copies: editing the module afterwards does not change them
    with torch.no_grad():
        module[1].weight.add_(1.0)
    assert not torch.equal(params[1][0][0], module[1].weight)


@pytest.mark.parametrize(
    "module, match",
    [
        (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)),
         r"from_module cannot read BatchNorm1d; supported: Linear, Conv2d"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2)),
         r"cannot read MaxPool2d"),
        (nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 2)), r"cannot read Sigmoid"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)),
         r"exactly one activation type.*\['ReLU', 'Tanh'\]"),
        (nn.Sequential(nn.ReLU(), nn.Flatten()), r"no Linear or Conv2d layers"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 5), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                       nn.Flatten(), nn.Linear(2, 2)), r"share one square kernel size"),
        (nn.Sequential(nn.Conv2d(1, 2, (3, 1)), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)),
         r"share one square kernel size"),
        (nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)),
         r"groups=1"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3),
                       nn.ReLU(), nn.Linear(3, 2)), r"exactly one Linear layer"),
    ],
)
def test_from_module_rejects_unsupported_modules(module, match):
    with pytest.raises(SpecError, match=match):
        from_module(module, image_size=8)


def test_from_module_rejects_layers_without_bias():
    with pytest.raises(SpecError, match="every layer needs a bias"):
        from_module(nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2)))


@pytest.mark.parametrize(
    "module",
    [
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8, 3)),
        nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(5, 2)),
    ],
)
def test_from_module_rejects_inconsistent_sizes(module):
    with pytest.raises(SpecError):
        from_module(module, image_size=6)


# -- check_params --------------------------------------------------------------------------------------------------
def test_check_params_errors():
    spec = NetSpec.mlp((4, 5, 3), "relu")
    params = init_params(spec, 2)
    assert check_params(spec, params) == 2

    with pytest.raises(SpecError, match=r"has 2 layers but params has 1 \(weight, bias\) pairs"):
        check_params(spec, params[:1])
    with pytest.raises(SpecError, match=r"has 2 layers but params has 3"):
        check_params(spec, params + params[:1])

    wrong = [params[0], (torch.zeros(2, 3, 4), params[1][1])]
    with pytest.raises(SpecError, match=r"layer 1 weight has shape \(2, 3, 4\); expected \(B, 3, 5\)"):
        check_params(spec, wrong)
    wrong = [(params[0][0], torch.zeros(2, 4)), params[1]]
    with pytest.raises(SpecError, match=r"layer 0 bias has shape \(2, 4\); expected \(B, 5\)"):
        check_params(spec, wrong)
    wrong = [params[0], (params[1][0][0], params[1][1])]  # batch dimension dropped
    with pytest.raises(SpecError, match=r"layer 1 weight has shape \(3, 5\); expected \(B, 3, 5\)"):
        check_params(spec, wrong)

    cnn_params = init_params(CNN, 1)
    bad_kernel = [(torch.zeros(1, 3, 2, 5, 5), cnn_params[0][1])] + cnn_params[1:]
    with pytest.raises(SpecError, match=r"layer 0 weight has shape \(1, 3, 2, 5, 5\); expected \(B, 3, 2, 3, 3\)"):
        check_params(CNN, bad_kernel)

    mixed = [params[0], (params[1][0], torch.zeros(3, 3))]
    with pytest.raises(SpecError, match=r"layer 1 bias holds 3 networks but earlier tensors hold 2"):
        check_params(spec, mixed)

    with pytest.raises(SpecError, match="params must be a list of \\(weight, bias\\) pairs, got dict"):
        check_params(spec, {0: params[0]})
    with pytest.raises(SpecError, match=r"params\[1\] must be a \(weight, bias\) pair"):
        check_params(spec, [params[0], (params[1][0],)])
    with pytest.raises(SpecError, match=r"layer 0 weight must be a torch.Tensor, got ndarray"):
        check_params(spec, [(params[0][0].numpy(), params[0][1]), params[1]])


def test_check_params_finite():
    spec = NetSpec.mlp((4, 5, 3), "relu")
    params = [(w.clone(), b.clone()) for w, b in init_params(spec, 3)]
    params[1][0][2, 0, 1] = float("nan")
    assert check_params(spec, params) == 3  # shapes alone are fine
    with pytest.raises(SpecError, match=r"layer 1 weight contains NaN or inf values \(networks \[2\]\)"):
        check_params(spec, params, finite=True)
    params[1][0][2, 0, 1] = 0.0
    params[0][1][0, 3] = float("-inf")
    with pytest.raises(SpecError, match=r"layer 0 bias contains NaN or inf values \(networks \[0\]\)"):
        check_params(spec, params, finite=True)


# -- flatten / unflatten -------------------------------------------------------------------------------------------
@given(spec=net_specs(min_depth=0), n=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_flatten_unflatten_round_trip(spec, n, seed):
    params = init_params(spec, n, torch.Generator().manual_seed(seed), dtype=torch.float64)
    flat = flatten_params(params)
    assert flat.shape == (n, spec.n_params)
    assert_params_equal(unflatten_params(spec, flat), params)
    assert torch.equal(flatten_params(unflatten_params(spec, flat)), flat)
    # layout: weight then bias per layer, row-major
    pos = 0
    for w, b in params:
        for t in (w, b):
            size = t[0].numel()
            assert torch.equal(flat[:, pos : pos + size], t.reshape(n, -1))
            pos += size
    assert pos == spec.n_params


def test_unflatten_rejects_wrong_width():
    with pytest.raises(SpecError, match=rf"flat params must have shape \(B, {MLP.n_params}\), got \(2, 7\)"):
        unflatten_params(MLP, torch.zeros(2, 7))
    with pytest.raises(SpecError, match="flat params must have shape"):
        unflatten_params(MLP, torch.zeros(MLP.n_params))


# -- dropout -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [NetSpec.mlp((6, 16, 16, 3), "relu"), NetSpec.cnn(2, (6, 6), 3, 3, 1, 1, "tanh", image_size=5)],
    ids=["mlp", "cnn"],
)
def test_forward_dropout(spec):
    gen = torch.Generator().manual_seed(0)
    params = init_params(spec, 4, gen)
    x = inputs(spec, 8, gen)
    clean = forward(spec, params, x)
    assert torch.equal(forward(spec, params, x, dropout=0.0), clean)
    assert torch.equal(forward(spec, params, x, dropout=torch.zeros(4)), clean)

    rates = torch.tensor([0.0, 0.5, 0.0, 0.9])
    dropped = forward(spec, params, x, dropout=rates, generator=torch.Generator().manual_seed(1))
    assert torch.equal(dropped[0], clean[0])
    assert torch.equal(dropped[2], clean[2])
    assert not torch.allclose(dropped[1], clean[1])
    assert not torch.allclose(dropped[3], clean[3])
    again = forward(spec, params, x, dropout=rates, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, dropped)  # the generator makes dropout reproducible

    everyone = forward(spec, params, x, dropout=0.5, generator=torch.Generator().manual_seed(2))
    assert all(not torch.allclose(everyone[i], clean[i]) for i in range(4))


# -- init_params ---------------------------------------------------------------------------------------------------
def test_init_params_deterministic_by_seed():
    for spec in (MLP, CNN):
        a = init_params(spec, 3, torch.Generator().manual_seed(7))
        b = init_params(spec, 3, torch.Generator().manual_seed(7))
        c = init_params(spec, 3, torch.Generator().manual_seed(8))
        assert_params_equal(a, b)
        assert all(not torch.equal(wa, wc) for (wa, _), (wc, _) in zip(a, c))
        # different networks of one batch get different draws
        assert not torch.equal(a[0][0][0], a[0][0][1])


def test_init_params_bounds_scale_and_dtype():
    spec = CNN
    gen = torch.Generator().manual_seed(0)
    params = init_params(spec, 3, gen, init_scale=torch.tensor([1.0, 0.0, 2.0]), dtype=torch.float64)
    for layer, (w, b) in enumerate(params):
        assert w.dtype == b.dtype == torch.float64
        bound = math.sqrt(1.0 / math.prod(spec.weight_shape(layer)[1:]))
        assert w[0].abs().max() <= bound and b[0].abs().max() <= bound
        assert w[2].abs().max() <= 2 * bound and w[2].abs().max() > bound  # 2x the scale is actually used
        assert torch.equal(w[1], torch.zeros_like(w[1])) and torch.equal(b[1], torch.zeros_like(b[1]))
    with pytest.raises(SpecError, match="init_scale must be a scalar or have 3 entries, got 2"):
        init_params(spec, 3, init_scale=torch.ones(2))
