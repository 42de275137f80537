"""Weight-space augmentation of the training batch: a random symmetry-group element per network keeps each
network's function but not its weights, relative Gaussian noise has its requested scale per layer, both are
reproducible from the generator, and the settings round-trip through JSON and a checkpoint."""
import json
from dataclasses import replace

import pytest
import torch

from workbench.forward_pass import forward
from workbench.nets import NetSpec, init_params
from workbench.metanet import MetanetConfig
from workbench.training.train_config import TrainConfig, build_model
from workbench.training.optimize import augment
from workbench.training.checkpoints import load_model


MLP_TANH = NetSpec.mlp((6, 5, 3), "tanh")
MLP_RELU = NetSpec.mlp((6, 5, 4, 3), "relu")
CNN_TANH = NetSpec.cnn(2, (3, 4), 3, kernel_size=3, stride=1, padding=1, activation="tanh", image_size=5)
CNN_RELU = NetSpec.cnn(2, (3, 4), 3, kernel_size=3, stride=2, padding=1, activation="relu", image_size=5)
SPECS = [MLP_TANH, MLP_RELU, CNN_TANH, CNN_RELU]


def _inputs(spec, n=16, seed=1):
    shape = (1, 1, spec.widths[0]) if spec.kind == "mlp" else (spec.widths[0], spec.image_size, spec.image_size)
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _params(spec, n=6, seed=0):
    return init_params(spec, n, torch.Generator().manual_seed(seed), init_scale=1.5, dtype=torch.float64)


def _max_abs(a, b):
    return max(float((x - y).abs().max()) for p, q in zip(a, b) for x, y in zip(p, q))


# -- weight-space augmentation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{s.activation}")
def test_group_augment_keeps_each_networks_function_but_not_its_weights(spec):
    params, x = _params(spec), _inputs(spec)
    config = TrainConfig(group_augment=True, device="cpu")
    moved = augment(spec, params, config, torch.Generator().manual_seed(3))
    before, after = forward(spec, params, x), forward(spec, moved, x)
    assert float((before - after).abs().max()) < 1e-10
    assert _max_abs(params, moved) > 1e-2  # a real group element, not the identity
    # negative control: the same batch with noise no longer computes the same functions
    noisy = augment(spec, params, replace(config, noise=0.1), torch.Generator().manual_seed(3))
    assert float((forward(spec, noisy, x) - before).abs().max()) > 1e-3


def test_relu_scales_are_drawn_within_augment_scales():
    spec = NetSpec.mlp((6, 5, 3), "relu")  # one hidden layer: neuron i's incoming row and bias scale by q_i
    params = _params(spec, n=64)
    config = TrainConfig(group_augment=True, augment_scales=(0.5, 2.0), device="cpu")
    moved = augment(spec, params, config, torch.Generator().manual_seed(0))
    (w, b), (w2, b2) = params[0], moved[0]
    norm, norm2 = w.abs().sum(-1), w2.abs().sum(-1)  # (B, 5)
    # b_i / |w_i|_1 is invariant under the scale and moves with the permutation: it matches old and new neurons
    old, new = (b / norm).argsort(1), (b2 / norm2).argsort(1)
    q = norm2.gather(1, new) / norm.gather(1, old)  # (B, 5) the drawn scales
    assert float(q.min()) >= 0.5 - 1e-9 and float(q.max()) <= 2.0 + 1e-9
    assert float(q.min()) < 0.6 and float(q.max()) > 1.7  # spread over the range, not a fixed scale
    assert torch.allclose(b2.gather(1, new), q * b.gather(1, old), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("spec", [MLP_TANH, CNN_RELU], ids=["mlp", "cnn"])
def test_noise_has_the_requested_relative_scale_per_layer(spec):
    params = init_params(spec, 4000, torch.Generator().manual_seed(0), init_scale=1.0, dtype=torch.float64)
    config = TrainConfig(noise=0.1, device="cpu")
    noisy = augment(spec, params, config, torch.Generator().manual_seed(1))
    for (w, b), (w2, b2) in zip(params, noisy):
        for t, t2 in ((w, w2), (b, b2)):
            rms = t.reshape(t.shape[0], -1).pow(2).mean(1).sqrt()  # (B,) per network and layer
            rel = (t2 - t).reshape(t.shape[0], -1) / rms[:, None]
            assert float(rel.std()) == pytest.approx(0.1, rel=0.03)
            assert abs(float(rel.mean())) < 0.01


def test_augmentation_is_reproducible_from_the_generator_and_off_means_identity():
    spec, params = MLP_RELU, _params(MLP_RELU)
    config = TrainConfig(noise=0.05, group_augment=True, device="cpu")
    a = augment(spec, params, config, torch.Generator().manual_seed(7))
    b = augment(spec, params, config, torch.Generator().manual_seed(7))
    c = augment(spec, params, config, torch.Generator().manual_seed(8))
    assert all(torch.equal(x, y) for p, q in zip(a, b) for x, y in zip(p, q))
    assert _max_abs(a, c) > 1e-3
    off = augment(spec, params, TrainConfig(device="cpu"), torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for p, q in zip(params, off) for x, y in zip(p, q))


def test_new_settings_round_trip_through_json_and_a_checkpoint(tmp_path):
    config = TrainConfig(noise=0.05, group_augment=True, augment_scales=(0.5, 3.0), patience=4,
                         train_eval_networks=7, device="cpu", meta=MetanetConfig(hidden=4, n_layers=1))
    text = json.dumps(config.to_dict())
    assert json.loads(text)["augment_scales"] == [0.5, 3.0]  # JSON turns the tuple into a list
    assert TrainConfig.from_dict(json.loads(text)) == config
    model = build_model(MLP_TANH, config)
    torch.save({"spec": MLP_TANH.to_dict(), "config": config.to_dict(), "model": model.state_dict()},
               tmp_path / "best.pt")
    assert load_model(tmp_path / "best.pt", spec=MLP_TANH) is not None
    with pytest.raises(ValueError, match="noize"):
        TrainConfig.from_dict({**config.to_dict(), "noize": 0.1})


@pytest.mark.parametrize("scales", [(0.5, 1.0, 2.0), (4.0, 0.25)])
def test_augment_scales_must_be_a_low_high_pair(scales):
    from workbench.errors import ConfigError

    with pytest.raises(ConfigError, match="augment_scales"):
        TrainConfig(augment_scales=scales, device="cpu")
