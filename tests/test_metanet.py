"""ScaleGMN: equivariance of each block and of the whole model (positive and negative), shapes and API."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.metanet import ScaleEq, ScaleGMN, ScaleGMNConv, ScaleInv, canon
from workbench.nets import NetSpec, SpecError, init_params, small_cnn_zoo_spec
from workbench.equivariance import assert_equivariant, equivariance_error
from workbench.symmetry import act_graph, group_for, random_element
from workbench.graphs import to_graph

SPECS = {
    "mlp-relu": NetSpec.mlp((5, 6, 4, 3), "relu"),
    "mlp-tanh": NetSpec.mlp((5, 6, 4, 3), "tanh"),
    "cnn-relu": NetSpec.cnn(2, (4, 3), 3, kernel_size=3, stride=1, padding=1, activation="relu", image_size=6),
    "cnn-tanh": NetSpec.cnn(1, (3, 4), 3, kernel_size=3, stride=2, padding=0, activation="tanh", image_size=9),
}


def group_of(spec: NetSpec) -> str:
    return group_for(spec, perm=True)


def make_model(spec, dtype, bidirectional=True, symmetry=None, seed=0, hidden=12, n_layers=3):
    torch.manual_seed(seed)
    model = ScaleGMN.for_spec(spec, hidden=hidden, n_layers=n_layers, bidirectional=bidirectional,
                              symmetry=symmetry, gate=False).to(dtype).eval()
    with torch.no_grad():  # make the update as large as the input so errors are not hidden by a 0.01 scale
        model.out_scale_w.fill_(1.0)
        model.out_scale_b.fill_(1.0)
    return model


def deltas_only(model):
    """The equivariant part alone (theta' - theta), a more sensitive test target than theta'."""
    def f(params):
        new = model(params)
        return [(w1 - w0, b1 - b0) for (w0, b0), (w1, b1) in zip(params, new)]
    return f


# -- whole model ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", list(SPECS))
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_equivariant(family, bidirectional, dtype):
    spec = SPECS[family]
    model = make_model(spec, dtype, bidirectional)
    params = init_params(spec, 3, torch.Generator().manual_seed(1), dtype=dtype)
    gen = torch.Generator().manual_seed(2)
    # the model's output theta' at the default tolerance by dtype: 1e-4 (float32), 1e-9 (float64), with scales
    # spanning 1e-2..1e2
    assert_equivariant(model, spec, params, group_of(spec), n_elements=3, generator=gen)
    # the update delta alone is a small difference of large features, so cancellation costs float32 about one
    # digit there; float64 keeps the 1e-9 bar
    rtol = 1e-3 if dtype == torch.float32 else None
    assert_equivariant(deltas_only(model), spec, params, group_of(spec), n_elements=3, generator=gen, rtol=rtol)


@settings(max_examples=8, deadline=None)
@given(widths=st.lists(st.integers(1, 5), min_size=1, max_size=3), activation=st.sampled_from(["relu", "tanh"]),
       kind=st.sampled_from(["mlp", "cnn"]), seed=st.integers(0, 2**16), bidirectional=st.booleans())
def test_model_equivariant_random_architectures(widths, activation, kind, seed, bidirectional):
    if kind == "mlp":
        spec = NetSpec.mlp((3, *widths, 2), activation)
    else:
        spec = NetSpec.cnn(2, widths, 2, kernel_size=3, padding=1, activation=activation, image_size=5)
    model = make_model(spec, torch.float64, bidirectional, seed=seed, hidden=8, n_layers=2)
    params = init_params(spec, 2, torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert_equivariant(deltas_only(model), spec, params, group_of(spec), n_elements=2,
                       generator=torch.Generator().manual_seed(seed + 1))


def test_symmetry_broken_model_is_not_equivariant():
    for family in ("mlp-relu", "cnn-tanh"):
        spec = SPECS[family]
        model = make_model(spec, torch.float64, symmetry="none")
        params = init_params(spec, 3, torch.Generator().manual_seed(1), dtype=torch.float64)
        err = equivariance_error(deltas_only(model), spec, params, group_for(spec),
                                 n_elements=3, generator=torch.Generator().manual_seed(3)).error
        assert err > 1e-3, f"the symmetry-broken GMN should not be equivariant ({family}: {err})"
        with pytest.raises(AssertionError, match="not equivariant"):
            assert_equivariant(deltas_only(model), spec, params, group_for(spec),
                               generator=torch.Generator().manual_seed(3))


def test_none_model_is_still_permutation_equivariant():
    # the ablation breaks scaling symmetry only: it stays a permutation-equivariant GNN
    spec = SPECS["mlp-relu"]
    model = make_model(spec, torch.float64, symmetry="none")
    params = init_params(spec, 2, torch.Generator().manual_seed(1), dtype=torch.float64)
    assert_equivariant(deltas_only(model), spec, params, "perm", generator=torch.Generator().manual_seed(4))


def test_positive_scale_model_is_not_sign_equivariant():
    # a ReLU-net model built for positive scales must not commute with sign flips: build a relu spec and apply
    # sign flips by hand as scales of -1 through a "tanh twin" of the same widths
    spec = SPECS["mlp-relu"]
    twin = NetSpec.mlp(spec.widths, "tanh")
    model = make_model(spec, torch.float64)
    params = init_params(spec, 3, torch.Generator().manual_seed(1), dtype=torch.float64)
    err = equivariance_error(deltas_only(model), twin, params, "sign", n_elements=3,
                             generator=torch.Generator().manual_seed(5)).error
    assert err > 1e-3


def test_forward_only_reuse_of_weight_for_backward_would_break_scale_equivariance():
    """Negative control for the bidirectional design: feeding backward messages with the forward features h
    (which transform with q, not 1/q) breaks positive-scale equivariance -- the bug class of reusing w."""
    spec = SPECS["mlp-relu"]
    model = make_model(spec, torch.float64)
    for layer in model.layers:  # rewire: backward messages read h instead of g
        original = layer.forward

        def broken(h, g, e, edge_index, _orig=original):
            return _orig(h, h, e, edge_index)
        layer.forward = broken
    params = init_params(spec, 3, torch.Generator().manual_seed(1), dtype=torch.float64)
    err = equivariance_error(deltas_only(model), spec, params, "scale", n_elements=3,
                             generator=torch.Generator().manual_seed(6)).error
    assert err > 1e-3


# -- blocks ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("symmetry", ["scale", "sign"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_blocks(symmetry, dtype):
    torch.manual_seed(0)
    x = torch.randn(50, 6, dtype=dtype)
    extra = torch.randn(50, 4, dtype=dtype)
    if symmetry == "scale":
        q = torch.exp(torch.empty(50, 1, dtype=dtype).uniform_(-4.6, 4.6))
    else:
        q = torch.randint(0, 2, (50, 1)).to(dtype) * 2 - 1
    inv = ScaleInv(6, 4, 5, symmetry).to(dtype)
    eq = ScaleEq(6, 4, 5, symmetry).to(dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(canon(q * x, symmetry), canon(x, symmetry), atol=tol)
    assert torch.allclose(inv(q * x, extra), inv(x, extra), atol=tol)
    ref = q * eq(x, extra)
    assert torch.allclose(eq(q * x, extra), ref, atol=tol * ref.abs().max().item())
    # negative control: the invariant side input is not allowed to transform
    assert not torch.allclose(eq(q * x, q * extra), ref, atol=1e-3)


def test_canon_zero_has_finite_gradient():
    x = torch.zeros(3, 4, requires_grad=True)
    canon(x, "scale").sum().backward()
    assert torch.isfinite(x.grad).all()


def test_scale_inv_is_not_invariant_without_symmetry():
    x = torch.randn(20, 6, dtype=torch.float64)
    inv = ScaleInv(6, 0, 5, "none").double()
    assert not torch.allclose(inv(3.0 * x), inv(x), atol=1e-3)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_conv_layer_equivariant_on_graph(bidirectional):
    """One ScaleGMNConv on graph features transforms as the theory says: h ~ q, g ~ 1/q, e ~ q_dst / q_src."""
    spec = SPECS["cnn-relu"]
    dtype = torch.float64
    torch.manual_seed(0)
    layer = ScaleGMNConv(8, "scale", bidirectional).to(dtype)
    params = init_params(spec, 2, dtype=dtype)
    graph = to_graph(spec, params)
    g_el = random_element(spec, 2, "scale", torch.Generator().manual_seed(1), dtype=dtype)
    ones_nodes = torch.ones_like(graph.x)
    q = act_graph(spec, g_el, (ones_nodes, torch.zeros_like(graph.edge_attr)))[0]  # (N, 1): q per node
    # the bias of an input node is 0 so act_graph leaves q = 1 there: set it explicitly
    q = torch.where(graph.node_layer[:, None] == 0, torch.ones_like(q), q)
    src, dst = graph.edge_index
    h = torch.randn(graph.num_nodes, 8, dtype=dtype)
    g = torch.randn(graph.num_nodes, 8, dtype=dtype) if bidirectional else None
    e = torch.randn(graph.num_edges, 8, dtype=dtype)
    out = layer(h, g, e, graph.edge_index)
    qe = q[dst] / q[src]
    out_t = layer(q * h, g / q if g is not None else None, qe * e, graph.edge_index)
    assert torch.allclose(out_t[0], q * out[0], rtol=1e-9, atol=1e-9)
    assert torch.allclose(out_t[2], qe * out[2], rtol=1e-9, atol=1e-9)
    if bidirectional:
        assert torch.allclose(out_t[1], out[1] / q, rtol=1e-9, atol=1e-9)


# -- API ------------------------------------------------------------------------------------------------------------
def test_for_spec_defaults_and_errors():
    assert ScaleGMN.for_spec(small_cnn_zoo_spec("tanh"), hidden=8, n_layers=1).symmetry == "sign"
    assert ScaleGMN.for_spec(NetSpec.mlp((3, 4, 2), "relu"), hidden=8, n_layers=1).symmetry == "scale"
    with pytest.raises(ValueError, match="positive-scale"):
        ScaleGMN.for_spec(NetSpec.mlp((3, 4, 2), "tanh"), symmetry="scale")
    with pytest.raises(ValueError, match="not odd"):
        ScaleGMN.for_spec(NetSpec.mlp((3, 4, 2), "relu"), symmetry="sign")
    with pytest.raises(ValueError, match="unknown symmetry"):
        ScaleGMN.for_spec(NetSpec.mlp((3, 4, 2), "relu"), symmetry="rotation")


def test_optimize_api_batches_dtype_and_spec_check():
    spec = small_cnn_zoo_spec("tanh")
    model = ScaleGMN.for_spec(spec, hidden=8, n_layers=2, gate=False)
    params = init_params(spec, 5)
    full = model.optimize(spec, params)
    chunked = model.optimize(spec, params, batch_size=2)
    for (w, b), (w2, b2) in zip(full, chunked):
        assert w.shape[0] == 5 and w.dtype == torch.float32
        assert torch.allclose(w, w2, atol=1e-6) and torch.allclose(b, b2, atol=1e-6)
        assert not w.requires_grad
    single = model.optimize(spec, [(w[:1], b[:1]) for w, b in params])
    assert torch.allclose(single[0][0], full[0][0][:1], atol=1e-6)
    model64 = model.double()
    out64 = model64.optimize(spec, params)  # float32 input is cast to the model's dtype
    assert out64[0][0].dtype == torch.float64
    with pytest.raises(SpecError, match="built for"):
        model.optimize(small_cnn_zoo_spec("relu"), params)
    bad = [(w.clone(), b.clone()) for w, b in params]
    bad[1][0][0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(SpecError, match="NaN"):
        model.optimize(spec, bad)


def test_initial_model_is_near_identity_and_output_masks_dense_slots():
    spec = small_cnn_zoo_spec("relu")
    model = ScaleGMN.for_spec(spec, hidden=8, n_layers=2, gate=False).fit_normalization(init_params(spec, 8))
    params = init_params(spec, 3)
    new = model.optimize(spec, params)
    rel = max(float((w1 - w0).abs().max() / w0.abs().max()) for (w0, _), (w1, _) in zip(params, new))
    assert 0 < rel < 0.2  # residual update with a small initial output scale
    _, dw = model.deltas(params)
    graph = to_graph(spec, params)
    assert torch.all(dw[~graph.edge_mask] == 0)  # dense edges of a CNN only change their one slot


@pytest.mark.parametrize("family", list(SPECS))
@pytest.mark.parametrize("symmetry", [None, "none"])
def test_gradients_are_finite_with_zero_features(family, symmetry):
    """Hidden backward features start at exactly 0 and zero biases give zero node features: the loss gradient
    must still be finite everywhere (a NaN here silently wrecks training)."""
    from workbench.objective import objective

    spec = SPECS[family]
    params = init_params(spec, 4, torch.Generator().manual_seed(0))
    params = [(w, torch.zeros_like(b)) for w, b in params]
    model = ScaleGMN.for_spec(spec, hidden=8, n_layers=3, symmetry=symmetry, gate=False).fit_normalization(params)
    size = (spec.image_size,) * 2 if spec.kind == "cnn" else ()
    x = torch.randn(16, spec.widths[0], *size)
    y = torch.randint(0, spec.n_classes, (16,))
    objective(spec, model(params), x, y, lam=1e-3).mean().backward()
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients in {bad}"


# -- the gated (multiplicative) update -------------------------------------------------------------------------------
def make_gated(spec, dtype, symmetry=None, seed=0):
    torch.manual_seed(seed)
    model = ScaleGMN.for_spec(spec, hidden=8, n_layers=2, symmetry=symmetry, gate=True).to(dtype).eval()
    with torch.no_grad():  # only the gate contributes, at full size: a sensitive target
        model.out_scale_w.zero_()
        model.out_scale_b.zero_()
        model.gate_scale_w.fill_(1.0)
        model.gate_scale_b.fill_(1.0)
    return model


@pytest.mark.parametrize("family", list(SPECS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gated_update_is_equivariant(family, dtype):
    spec = SPECS[family]
    model = make_gated(spec, dtype)
    params = init_params(spec, 3, torch.Generator().manual_seed(1), dtype=dtype)
    rtol = 1e-3 if dtype == torch.float32 else None
    assert_equivariant(deltas_only(model), spec, params, group_of(spec), n_elements=3,
                       generator=torch.Generator().manual_seed(2), rtol=rtol)
    # the gate really acts: the update is nonzero and proportional to the input weights entrywise
    delta = deltas_only(model)(params)
    assert all(float(dw.abs().max()) > 0 for dw, _ in delta)


def test_gated_update_of_the_broken_model_is_not_scale_equivariant():
    spec = SPECS["mlp-relu"]
    model = make_gated(spec, torch.float64, symmetry="none")
    params = init_params(spec, 3, torch.Generator().manual_seed(1), dtype=torch.float64)
    err = equivariance_error(deltas_only(model), spec, params, "scale", n_elements=3,
                             generator=torch.Generator().manual_seed(3)).error
    assert err > 1e-3


def test_gate_can_zero_a_weight_exactly():
    """gamma = -1 / s_l prunes: with the additive part off and the gate's output forced to -1, theta' = 0."""
    spec = SPECS["cnn-tanh"]
    model = make_gated(spec, torch.float64)
    with torch.no_grad():
        for head in (model.head_gate_w, model.head_gate_b):
            head.out.weight.zero_()
            head.out.bias.fill_(-1.0)
    params = init_params(spec, 2, torch.Generator().manual_seed(1), dtype=torch.float64)
    new = model(params)
    assert all(float(w.abs().max()) < 1e-12 and float(b.abs().max()) < 1e-12 for w, b in new)


def test_the_model_is_built_from_one_config_with_one_set_of_defaults():
    from workbench.metanet import NFN, MetanetConfig
    from workbench.training.train_config import TrainConfig, build_model

    spec = NetSpec.mlp((3, 4, 2), "tanh")
    torch.manual_seed(0)
    a = ScaleGMN(spec, MetanetConfig(hidden=8, n_layers=2))
    torch.manual_seed(0)
    b = ScaleGMN.for_spec(spec, hidden=8, n_layers=2)
    assert a.config == b.config == MetanetConfig(hidden=8, n_layers=2, symmetry="sign")  # the group actually used
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    default = ScaleGMN(spec)
    assert (default.hidden, len(default.layers), default.gate) == (MetanetConfig.hidden, MetanetConfig.n_layers,
                                                                  MetanetConfig.gate)
    assert TrainConfig().meta == MetanetConfig() and NFN(spec).config == MetanetConfig(model="nfn")
    assert isinstance(build_model(spec, MetanetConfig(model="nfn")), NFN)
    with pytest.raises(ValueError, match="config for model 'nfn'"):
        ScaleGMN(spec, MetanetConfig(model="nfn"))
    with pytest.raises(ValueError, match="config for model 'scalegmn'"):
        NFN(spec, MetanetConfig())
