"""The ReLU one shot under a global rescale of its input: the path-norm normalisation
(workbench/metanet/global_scale.py, MetanetConfig.scale_norm) bounds the update's growth with the input's scale to
degree 1 (exactly degree 1 while the bounded scale feature is unused), keeps equivariance, and stays finite on zeros,
dead neurons and extreme weights; without it the update grows like the 8th power of the scale (the control)."""
import math

import pytest
import torch

from workbench.equivariance import assert_equivariant
from workbench.metanet import ScaleGMN
from workbench.metanet.global_scale import path_norm_scale, rescale
from workbench.nets import NetSpec, init_params
from workbench.metanet.config import MetanetConfig
from workbench.training.train_config import TrainConfig
from workbench.symmetry import act, random_element

SPECS = {
    "mlp-relu": NetSpec.mlp((5, 6, 4, 3), "relu"),
    "cnn-relu": NetSpec.cnn(2, (4, 3), 3, kernel_size=3, stride=1, padding=1, activation="relu", image_size=6),
}
#: the stated bound: between c = 1e4 and 1e6 the largest update grows at most like c ** MAX_EXPONENT
MAX_EXPONENT = 1.05


def make_model(spec, scale_norm=True, dtype=torch.float64, seed=0, scale_embed=1.0):
    torch.manual_seed(seed)
    model = ScaleGMN.for_spec(spec, hidden=8, n_layers=2, scale_norm=scale_norm).to(dtype).eval()
    with torch.no_grad():  # updates as large as the inputs: the higher-degree terms are not hidden by 0.01
        model.out_scale_w.fill_(1.0)
        model.out_scale_b.fill_(1.0)
        if scale_norm:  # the scale feature in use (it starts at 0: a trained model learns its embeddings)
            model.scale_embed.normal_(std=scale_embed)
            model.scale_embed_g.normal_(std=scale_embed)
    return model


def largest_update(model, params, c, path="dense") -> float:
    scaled = rescale(params, torch.full((params[0][0].shape[0],), c, dtype=params[0][0].dtype))
    with torch.no_grad():
        new = model(scaled, path=path)
    return max(float((t1 - t0).abs().max()) for p0, p1 in zip(scaled, new) for t0, t1 in zip(p0, p1))


def growth_exponent(model, params, low=1e4, high=1e6, path="dense") -> float:
    """d log max|update| / d log c between the scales ``low`` and ``high`` (float64)."""
    return math.log(largest_update(model, params, high, path) / largest_update(model, params, low, path)) / \
        math.log(high / low)


@pytest.mark.parametrize("family", list(SPECS))
@pytest.mark.parametrize("path", ["dense", "pyg"])
def test_the_update_is_homogeneous_of_degree_one_and_the_unnormalised_control_is_not(family, path):
    spec = SPECS[family]
    params = init_params(spec, 3, torch.Generator().manual_seed(1), dtype=torch.float64)
    bounded, control = make_model(spec), make_model(spec, scale_norm=False)
    assert 0.95 <= growth_exponent(bounded, params, path=path) <= MAX_EXPONENT
    assert growth_exponent(control, params, path=path) > 4  # 8.0 measured: products compound over 2 layers

    def updates(model, c):
        scaled = rescale(params, torch.full((3,), c, dtype=torch.float64))
        with torch.no_grad():
            return [(w1 - w0, b1 - b0) for (w0, b0), (w1, b1) in zip(scaled, model(scaled, path=path))]
    # the model sees the scale through the bounded feature: not exactly homogeneous ...
    assert any(not torch.allclose(dw10, 10 * dw, rtol=1e-3) for (dw, _), (dw10, _) in
               zip(updates(bounded, 1.0), updates(bounded, 10.0)))
    # ... and exactly homogeneous without it (the feature's embeddings at 0, as initialised), from c = 1e-3 to 1e3
    plain = make_model(spec, scale_embed=0.0)
    for c in (1e-3, 1e3):
        for (dw, db), (dwc, dbc) in zip(updates(plain, 1.0), updates(plain, c)):
            assert torch.allclose(dwc, c * dw, rtol=1e-9, atol=0) and torch.allclose(dbc, c * db, rtol=1e-9, atol=0)


@pytest.mark.parametrize("family", list(SPECS))
def test_the_path_norm_scale_is_invariant_and_homogeneous(family):
    spec = SPECS[family]
    params = init_params(spec, 4, torch.Generator().manual_seed(2), dtype=torch.float64)
    s = path_norm_scale(spec, params)
    assert torch.all(s > 0)
    for seed in range(3):
        g = random_element(spec, 4, "perm+scale", torch.Generator().manual_seed(seed), scale_range=(1e-3, 1e3),
                           dtype=torch.float64)
        assert torch.allclose(path_norm_scale(spec, act(spec, g, params)), s, rtol=1e-12, atol=0)
    c = torch.tensor([1e-6, 0.5, 3.0, 1e6], dtype=torch.float64)
    assert torch.allclose(path_norm_scale(spec, rescale(params, c)), c * s, rtol=1e-12, atol=0)
    # negative control: a rescale of one layer alone is no group element, and the scale sees it
    one_layer = [(w * 2 ** spec.n_layers, b) if l == 0 else (w, b) for l, (w, b) in enumerate(params)]
    assert torch.allclose(path_norm_scale(spec, one_layer), 2 * s, rtol=1e-12, atol=0)


def hostile_inputs(spec, dtype):
    """Networks the pass must survive: all zeros, a dead hidden neuron (no weight in or out), and every weight and
    bias at 1e-15 and at 1e15 times a random network's."""
    base = init_params(spec, 1, torch.Generator().manual_seed(3), dtype=dtype)
    zeros = [(torch.zeros_like(w), torch.zeros_like(b)) for w, b in base]
    dead = [(w.clone(), b.clone()) for w, b in base]
    dead[0][0][:, 0] = 0  # neuron 0 of the first hidden layer: no incoming weights
    dead[0][1][:, 0] = 0
    dead[1][0][:, :, 0] = 0  # and no outgoing ones
    tiny = rescale(base, torch.full((1,), 1e-15, dtype=dtype))
    huge = rescale(base, torch.full((1,), 1e15, dtype=dtype))
    return {"zeros": zeros, "dead neuron": dead, "1e-15": tiny, "1e15": huge}


@pytest.mark.parametrize("family", list(SPECS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zeros_dead_neurons_and_extreme_weights_stay_finite(family, dtype):
    spec = SPECS[family]
    model = make_model(spec, dtype=dtype)
    for name, params in hostile_inputs(spec, dtype).items():
        for path in ("dense", "pyg"):
            model.zero_grad()
            new = model(params, path=path)
            assert all(torch.isfinite(t).all() for pair in new for t in pair), (name, path)
            sum(((w1 - w0) ** 2).sum() + (b1 - b0).sum() for (w0, b0), (w1, b1) in zip(params, new)).backward()
            bad = [k for k, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
            assert not bad, (name, path, bad)


@pytest.mark.parametrize("family", list(SPECS))
def test_the_normalised_model_is_equivariant_far_from_unit_scale(family):
    spec = SPECS[family]
    model = make_model(spec)
    params = rescale(init_params(spec, 3, torch.Generator().manual_seed(4), dtype=torch.float64),
                     torch.tensor([1e-4, 1.0, 1e4], dtype=torch.float64))

    def update(p):
        return [(w1 - w0, b1 - b0) for (w0, b0), (w1, b1) in zip(p, model(p))]
    assert_equivariant(update, spec, params, "perm+scale", n_elements=3, generator=torch.Generator().manual_seed(5))


def test_scale_norm_round_trips_and_a_run_from_before_it_reads_as_off():
    relu = TrainConfig(meta=MetanetConfig(symmetry="scale"))
    assert relu.to_dict()["scale_norm"] is True and TrainConfig.from_dict(relu.to_dict()) == relu
    old = {k: v for k, v in relu.to_dict().items() if k != "scale_norm"}  # a ReLU run from before the field
    assert TrainConfig.from_dict(old).meta.scale_norm is False
    off = TrainConfig(meta=MetanetConfig(symmetry="scale", scale_norm=False))
    assert TrainConfig.from_dict(off.to_dict()) == off and off.digest() != relu.digest()
    # the digest leaves out fields at their default: turning the default on again names the same run
    assert relu.digest() == TrainConfig(meta=MetanetConfig(symmetry="scale", scale_norm=True)).digest()
    for other in ("sign", "none", None):  # where the field has no effect, a flat form without it stays as it was
        flat = {k: v for k, v in TrainConfig(meta=MetanetConfig(symmetry=other)).to_dict().items() if k != "scale_norm"}
        assert TrainConfig.from_dict(flat).meta.scale_norm is True


def test_a_model_without_the_normalisation_cannot_load_silently_into_one_with_it():
    spec = SPECS["mlp-relu"]
    old = make_model(spec, scale_norm=False)
    new = make_model(spec)
    with pytest.raises(RuntimeError, match="log_scale_ref"):
        new.load_state_dict(old.state_dict())
    tanh = ScaleGMN.for_spec(NetSpec.mlp((5, 6, 4, 3), "tanh"), hidden=8, n_layers=2)
    assert not tanh.scale_norm and "log_scale_ref" not in tanh.state_dict()  # the sign group: unchanged
