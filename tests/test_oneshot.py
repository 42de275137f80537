"""``workbench.OneShot`` on ordinary PyTorch networks (workbench/training/oneshot.py).

Every supported layer kind round-trips module -> one shot -> module in float32 and float64: the new module has the
input's layers, names and dtype, holds exactly the metanetwork's output and computes what the workbench's forward pass
computes with it; networks that compute the same function (related by a symmetry) get one shots that compute the same
function, and a change that is no symmetry does not (the negative control). Unsupported modules, state dicts and
architectures are refused with the workbench's own error naming the first layer (or key) that does not fit."""
import copy
import warnings

import pytest
import torch
from torch import nn

from workbench import OneShot, forward
from workbench.training.checkpoints import CheckpointError
from workbench.interop import to_module
from workbench.metanet import MetanetConfig
from workbench.nets import NetSpec, init_params
from workbench.training.oneshot import OneShotError, TransferWarning, read_module, read_state_dict
from workbench.training.transfer import check_transfer, for_architecture, variants
from workbench.symmetry import act, random_element
from workbench.training.train_config import build_model

TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def scrambled(spec: NetSpec, model: str = "scalegmn") -> OneShot:
    """An untrained metanetwork for ``spec`` with noise on every weight (at initialisation it returns its input)."""
    torch.manual_seed(0)
    config = MetanetConfig(model=model, hidden=8, n_layers=1, symmetry=None if model == "scalegmn" else "none")
    metanet = build_model(spec, config).fit_normalization(init_params(spec, 8, torch.Generator().manual_seed(1)))
    with torch.no_grad():
        for p in metanet.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return OneShot(metanet, f"scrambled {spec.family}")


def _mlp(act_cls=nn.Tanh, widths=(16, 6, 5, 3)):
    layers = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(a, b)] + ([act_cls()] if i < len(widths) - 2 else [])
    return nn.Sequential(*layers)


def _cnn(act_cls=nn.ReLU, channels=(1, 4, 3), k=3, s=2, p=1):
    layers = []
    for a, b in zip(channels[:-1], channels[1:]):
        layers += [nn.Conv2d(a, b, k, s, p), act_cls()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], 3))


ARCHITECTURES = {  # name: (module, input shape)
    "mlp tanh": (lambda: _mlp(nn.Tanh), (16,)),
    "mlp relu, no Flatten": (lambda: nn.Sequential(nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 3)), (16,)),
    "mlp, nested with Dropout": (lambda: nn.Sequential(
        nn.Flatten(), nn.Sequential(nn.Linear(16, 6), nn.Dropout(0.2), nn.Tanh()), nn.Linear(6, 3)), (1, 4, 4)),
    "cnn relu 3x3 s2 p1": (lambda: _cnn(nn.ReLU), (1, 8, 8)),
    "cnn tanh 3x3 s1 p0, pool (1, 1)": (lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Conv2d(3, 4, 3),
                                                              nn.Tanh(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                                                              nn.Linear(4, 3)), (2, 7, 7)),
    "cnn relu 2x2 s1 p1, one conv": (lambda: _cnn(nn.ReLU, (1, 5), k=2, s=1, p=1), (1, 6, 6)),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_supported_layer_kind_round_trips_through_the_one_shot(arch, dtype):
    make, shape = ARCHITECTURES[arch]
    torch.manual_seed(0)
    module = make().to(dtype).eval()
    original = copy.deepcopy(module.state_dict())
    spec, params = read_module(module)
    x = torch.randn(5, *shape, dtype=dtype)
    with torch.no_grad():  # reading is exact: the same weights compute the same function
        assert torch.allclose(to_module(spec, params)(x), module(x), rtol=0, atol=TOL[dtype])
    optimizer = scrambled(spec)
    new = optimizer(module)
    assert [type(m) for m in new.modules()] == [type(m) for m in module.modules()]
    assert list(new.state_dict()) == list(module.state_dict())
    assert all(t.dtype == dtype for t in new.state_dict().values())
    assert all(torch.equal(original[k], v) for k, v in module.state_dict().items())  # the input is left as it was
    metanet = optimizer.model if dtype == torch.float32 else copy.deepcopy(optimizer.model).double()
    expected = metanet.optimize(spec, params)
    got = read_module(new)[1]
    assert all(torch.equal(a, b) for pa, pb in zip(got, expected) for a, b in zip(pa, pb))  # exactly the one shot
    assert max(float((a - b).abs().max()) for pa, pb in zip(got, params) for a, b in zip(pa, pb)) > 1e-3  # it moved
    with torch.no_grad():
        out = new(x)
        assert torch.allclose(out, forward(spec, expected, x)[0], rtol=0, atol=TOL[dtype])
        assert not torch.allclose(out, module(x), rtol=0, atol=1e-3)  # negative control: another function now
    from_state = optimizer.state_dict(module.state_dict())  # the state-dict form: the same weights
    assert list(from_state) == list(module.state_dict())
    assert all(torch.equal(from_state[k], v) for k, v in new.state_dict().items())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_networks_of_the_same_function_get_one_shots_of_the_same_function(activation, dtype):
    spec = NetSpec.mlp((16, 6, 5, 3), activation)
    group = "perm+sign" if activation == "tanh" else "perm+scale"
    params = init_params(spec, 1, torch.Generator().manual_seed(2), dtype=dtype)
    g = random_element(spec, 1, group, torch.Generator().manual_seed(3), scale_range=(0.5, 2.0), dtype=dtype)
    twin = act(spec, g, params)
    broken = [(w.clone(), b.clone()) for w, b in params]
    broken[0] = (broken[0][0].flip(1), broken[0][1])  # inputs permuted: no symmetry, another function
    x = torch.randn(7, 16, dtype=dtype)
    optimizer, tol = scrambled(spec), {torch.float32: 1e-4, torch.float64: 1e-9}[dtype]
    with torch.no_grad():
        a, b, c = (to_module(spec, p) for p in (params, twin, broken))
        assert torch.allclose(a(x), b(x), atol=tol) and not torch.allclose(a(x), c(x), atol=1e-2)
        new_a, new_b, new_c = optimizer(a)(x), optimizer(b)(x), optimizer(c)(x)
    assert torch.allclose(new_a, new_b, rtol=0, atol=tol * float(new_a.abs().max()))
    assert not torch.allclose(new_a, new_c, atol=1e-2)
    assert not torch.allclose(new_a, a(x), atol=1e-2)  # and the one shot changed the function


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(x)


REFUSED = {  # name: (module, what the message must say)
    "batch norm": (nn.Sequential(nn.Linear(16, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)),
                   r"layer '1' \(BatchNorm1d.*is not supported. Supported: nn.Sequential"),
    "max pooling": (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(4, 3)), r"layer '2' \(MaxPool2d.*is not supported"),
    "leaky relu": (nn.Sequential(nn.Linear(16, 6), nn.LeakyReLU(), nn.Linear(6, 3)), r"layer '1' \(LeakyReLU"),
    "no bias": (nn.Sequential(nn.Linear(16, 6, bias=False), nn.Tanh(), nn.Linear(6, 3)), r"layer '0'.*no bias"),
    "grouped conv": (nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                   nn.Linear(4, 3)), r"layer '0'.*groups=1"),
    "same padding": (nn.Sequential(nn.Conv2d(1, 4, 3, padding="same"), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                   nn.Flatten(), nn.Linear(4, 3)), r"layer '0'.*zero padding given as a number"),
    "reflect padding": (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)), r"layer '0'"),
    "non-square kernel": (nn.Sequential(nn.Conv2d(1, 4, (3, 5)), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                        nn.Linear(4, 3)), r"layer '0'.*square"),
    "flatten from dim 0": (nn.Sequential(nn.Flatten(0), nn.Linear(16, 3)), r"layer '0'.*Flatten\(\) with its"),
    "pooling to 2x2": (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                     nn.Linear(16, 3)), r"layer '2'.*global average pooling"),
    "activation after the last layer": (nn.Sequential(nn.Linear(16, 6), nn.Tanh(), nn.Linear(6, 3), nn.Tanh()),
                                        r"ends after layer '3' \(Tanh\(\)\): expected a Linear layer"),
    "no activation between layers": (nn.Sequential(nn.Linear(16, 6), nn.Linear(6, 3)),
                                     r"layer '1' \(Linear.*cannot come here: expected the activation"),
    "mixed activations": (nn.Sequential(nn.Linear(16, 6), nn.Tanh(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3)),
                          r"layer '3'.*mixes Tanh and ReLU"),
    "no pooling before the dense layer": (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(),
                                                        nn.Linear(36, 3)), r"layer '2' \(Flatten.*cannot come here"),
    "ends after the pooling": (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1)),
                               r"ends after layer '2' \(AdaptiveAvgPool2d.*: expected Flatten\(\) after the pooling"),
    "empty": (nn.Sequential(), r"has no layers"),
    "a custom module": (_Custom(), r"reads nn.Sequential networks; got _Custom"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_unsupported_networks_are_refused_naming_the_first_layer_that_does_not_fit(case):
    module, message = REFUSED[case]
    optimizer = scrambled(NetSpec.mlp((16, 6, 3), "tanh"))
    with pytest.raises(OneShotError, match=message):
        optimizer(module)


def test_the_supported_list_is_in_every_layer_refusal():
    with pytest.raises(OneShotError) as err:
        read_module(REFUSED["batch norm"][0])
    for kind in ("Linear", "Conv2d", "Tanh", "ReLU", "Flatten()", "AdaptiveAvgPool2d(1)", "Dropout"):
        assert kind in str(err.value)


def test_state_dicts_are_read_by_their_keys_and_refused_when_they_hold_anything_else():
    spec = NetSpec.mlp((16, 6, 3), "tanh")
    module = _mlp(nn.Tanh, (16, 6, 3))
    got_spec, params = read_state_dict(module.state_dict(), spec)
    assert got_spec == spec and torch.equal(params[1][0][0], module[3].weight.detach())
    with_bn = nn.Sequential(nn.Linear(16, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).state_dict()
    with pytest.raises(OneShotError, match=r"holds '1.running_mean'.*BatchNorm"):
        read_state_dict(with_bn, spec)
    no_bias = {k: v for k, v in module.state_dict().items() if k != "3.bias"}
    with pytest.raises(OneShotError, match=r"layer '3' has no bias"):
        read_state_dict(no_bias, spec)
    chain = {**module.state_dict(), "3.weight": torch.zeros(3, 5)}
    with pytest.raises(OneShotError, match=r"layer 1 takes 5 inputs but the layer before gives 6"):
        read_state_dict(chain, spec)
    dense_then_conv = {"0.weight": torch.zeros(4, 16), "0.bias": torch.zeros(4), "1.weight": torch.zeros(3, 4, 3, 3),
                       "1.bias": torch.zeros(3)}
    with pytest.raises(OneShotError, match="not dense layers only"):
        read_state_dict(dense_then_conv, spec)


def _measured(spec, gain_lo, l1_lo=None, networks=4):
    out = {"widths": list(spec.widths), "networks": networks, "gain": {"estimate": gain_lo + 1.0, "lo": gain_lo,
                                                                       "hi": gain_lo + 2.0}}
    if l1_lo is not None:
        out["l1_reduction"] = {"estimate": l1_lo + 5.0, "lo": l1_lo, "hi": l1_lo + 10.0}
    return out


def test_architectures_are_taken_only_where_their_measured_transfer_worked():
    trained = NetSpec.mlp((16, 6, 5, 3), "tanh")
    refused = {NetSpec.mlp((16, 6, 5, 3), "relu"): "one activation", NetSpec.mlp((9, 6, 5, 3), "tanh"): "input size",
               NetSpec.mlp((16, 6, 5, 4), "tanh"): "class count", NetSpec.cnn(16, (6, 5), 3, activation="tanh"):
               "one kind", NetSpec.mlp((16, 18, 5, 3), "tanh"): "beyond 0.5x to 2x",
               NetSpec.mlp((16, 6, 5, 5, 5, 3), "tanh"): "only 16-6-3 or 16-6-5-5-3 .* were measured",
               NetSpec.mlp((16, 6, 5, 4, 3), "tanh"): "only 16-6-3 or 16-6-5-5-3"}
    for spec, why in refused.items():
        with pytest.raises(OneShotError, match=why):
            check_transfer(trained, spec, measured={name: _measured(v, 1.0) for name, v in variants(trained).items()})
    assert check_transfer(trained, trained) is None
    wider, deeper = NetSpec.mlp((16, 12, 7, 3), "tanh"), variants(trained)["one layer more"]
    assert deeper.widths == (16, 6, 5, 5, 3)
    for spec, variant in ((wider, "double widths"), (deeper, "one layer more")):
        with pytest.raises(OneShotError, match=rf"\({variant}\) was not measured"):
            check_transfer(trained, spec)
        good = {variant: _measured(variants(trained)[variant], 0.5)}
        note = check_transfer(trained, spec, measured=good, reference=_measured(trained, 2.0))
        assert f"{variant}, {'-'.join(map(str, variants(trained)[variant].widths))}: accuracy +1.5 [+0.5, +2.5]" in note
        assert "the training architecture on a fresh zoo: 16-6-5-3: accuracy +3.0 [+2.0, +4.0]" in note
        with pytest.raises(OneShotError, match=r"measured not to work .*accuracy -0.5 \[-1.5, \+0.5\]"):
            check_transfer(trained, spec, measured={variant: _measured(variants(trained)[variant], -1.5)})
    both = NetSpec.mlp((16, 3, 10, 3), "tanh")  # one layer narrower, one wider: both width variants must have worked
    half_only = {"half widths": _measured(variants(trained)["half widths"], 0.5)}
    with pytest.raises(OneShotError, match=r"\(double widths\) was not measured"):
        check_transfer(trained, both, measured=half_only)
    l1 = {"double widths": _measured(variants(trained)["double widths"], -4.0, l1_lo=2.0)}  # within the L1 target
    assert "L1-norm reduction 7.0 [2.0, 12.0] %" in check_transfer(trained, wider, objective="l1", measured=l1)
    for bad in (_measured(wider, -4.0, l1_lo=-1.0), _measured(wider, -6.0, l1_lo=2.0)):
        with pytest.raises(OneShotError, match="measured not to work"):
            check_transfer(trained, wider, objective="l1", measured={"double widths": bad})
    with pytest.raises(OneShotError, match="Only ScaleGMN optimizers"):
        check_transfer(trained, wider, model="nfn", measured={"double widths": _measured(wider, 1.0)})


def test_a_measured_architecture_runs_with_the_warning_and_the_training_architecture_without():
    trained = NetSpec.mlp((16, 6, 5, 3), "tanh")
    optimizer = scrambled(trained)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimizer(_mlp(nn.Tanh, trained.widths))
    wide = _mlp(nn.Tanh, (16, 12, 9, 3))
    with pytest.raises(OneShotError, match="was not measured"):  # a run's checkpoint: no measurement, no transfer
        optimizer(wide)
    optimizer.provenance = {"objective": "ce", "transfers": [{"variant": "double widths",
                                                              **_measured(variants(trained)["double widths"], 0.5)}]}
    with pytest.warns(TransferWarning, match=r"double widths, 16-12-10-3: accuracy \+1.5"):
        new = optimizer(wide)
    assert [p.shape for p in new.parameters()] == [p.shape for p in wide.parameters()]
    assert not torch.equal(new[1].weight, wide[1].weight)
    expected = for_architecture(optimizer.model, read_module(wide)[0]).optimize(*read_module(wide))
    assert all(torch.equal(a, b) for pa, pb in zip(read_module(new)[1], expected) for a, b in zip(pa, pb))


def test_for_architecture_keeps_every_weight_for_other_widths_and_maps_layers_for_other_depths():
    trained = NetSpec.mlp((16, 6, 5, 3), "relu")
    model = scrambled(trained).model
    with torch.no_grad():
        model.w_norm.copy_(torch.tensor([1.0, 2.0, 3.0]))
        model.type_mul[16:18] = torch.tensor([[7.0], [8.0]])  # the two hidden layers' node types
    wide = for_architecture(model, NetSpec.mlp((16, 9, 4, 3), "relu"))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in wide.state_dict().items())
    deeper = for_architecture(model, variants(trained)["one layer more"])  # layers 0, 1, 1, 2; hidden types 1, 2, 2
    assert deeper.w_norm.tolist() == [1.0, 2.0, 2.0, 3.0]
    assert deeper.type_mul[16:19, 0].tolist() == [7.0, 8.0, 8.0]
    assert torch.equal(deeper.type_mul[:16], model.type_mul[:16]) and torch.equal(deeper.type_mul[19:],
                                                                                    model.type_mul[18:])
    shallower = for_architecture(model, variants(trained)["one layer fewer"])  # layers 0, 2; hidden type 1
    assert shallower.w_norm.tolist() == [1.0, 3.0] and shallower.type_mul[16, 0].item() == 7.0
    same = for_architecture(model, trained)
    params = init_params(trained, 3, torch.Generator().manual_seed(4))
    assert all(torch.equal(a, b) for pa, pb in zip(same.optimize(trained, params), model.optimize(trained, params))
               for a, b in zip(pa, pb))


def test_a_cnn_state_dict_takes_stride_and_padding_from_the_optimizer():
    module = _cnn(nn.ReLU, (1, 4, 3), k=3, s=2, p=1)
    optimizer = scrambled(read_module(module)[0])
    spec, _ = read_state_dict(module.state_dict(), optimizer.spec)
    assert (spec.stride, spec.padding, spec.kernel_size) == (2, 1, 3)
    other = _cnn(nn.ReLU, (1, 4, 3), k=3, s=1, p=0)
    with pytest.raises(OneShotError, match="conv settings"):
        optimizer(other)


def test_load_takes_a_run_checkpoint_and_refuses_what_is_not_one(tmp_path):
    from tiny import checkpoint, make_zoo

    zoo = make_zoo(tmp_path / "zoo", n_networks=2)
    best = checkpoint(tmp_path / "run" / "best.pt", zoo, scramble=0.3)
    for source in (best, tmp_path / "run"):
        optimizer = OneShot.load(source)
        assert optimizer.spec == zoo.spec and "best.pt" in repr(optimizer)
    with pytest.raises(OneShotError, match="neither a shipped optimizer"):
        OneShot.load("no-such-optimizer")
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled module: loading it would run code
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        OneShot.load(tmp_path / "module.pt")
