"""NFN (Neural Functional Networks, NP layers), the permutation-only peer of ScaleGMN: equivariance to hidden-neuron
permutations (whole model and NP layer, positive and negative controls), no scale/sign equivariance (its rescale
response), shapes, dtypes and failure modes of the API, training, checkpoints and the "nfn" methods of the pipeline."""
import dataclasses
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench import pipeline
from workbench.data import load_dataset
from workbench.errors import ConfigError
from workbench.metanet import (NFN, MetanetConfig, NPLinear, ScaleGMN, count_parameters, matched_hidden,
                               rescale_response)
from workbench.nets import NetSpec, SpecError, init_params, select, small_cnn_zoo_spec
from workbench.training.checkpoints import CheckpointError, load_model
from workbench.training.train_config import TrainConfig, build_model
from workbench.training.optimize import train
from workbench.run.params_rules import rule_for
from workbench.equivariance import assert_equivariant, equivariance_error
from workbench.symmetry import group_for
from workbench.zoo import default_spec, generate

from strategies import net_specs, tiny_data

SPECS = {
    "mlp-relu": NetSpec.mlp((5, 6, 4, 3), "relu"),
    "mlp-tanh": NetSpec.mlp((5, 6, 4, 3), "tanh"),
    "cnn-relu": NetSpec.cnn(2, (4, 3), 3, kernel_size=3, stride=1, padding=1, activation="relu", image_size=6),
    "cnn-tanh": NetSpec.cnn(1, (3, 4), 3, kernel_size=3, stride=2, padding=0, activation="tanh", image_size=9),
}


def scaling_group(spec):
    return group_for(spec)


def make_nfn(spec, dtype=torch.float64, seed=0, hidden=8, n_layers=2, gate=True, full_scale=True):
    torch.manual_seed(seed)
    model = NFN.for_spec(spec, hidden=hidden, n_layers=n_layers, gate=gate).to(dtype).eval()
    if full_scale:  # the update as large as the input, so errors are not hidden by the 0.01 output scale
        with torch.no_grad():
            for name in ("out_scale_w", "out_scale_b", "gate_scale_w", "gate_scale_b"):
                if hasattr(model, name):
                    getattr(model, name).fill_(1.0)
    return model


def deltas_only(model):
    """The update alone (theta' - theta): a more sensitive test target than theta'."""
    def f(params):
        return [(w1 - w0, b1 - b0) for (w0, b0), (w1, b1) in zip(params, model(params))]
    return f


# -- permutation equivariance -----------------------------------------------------------------------------------
@pytest.mark.parametrize("family", list(SPECS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_is_permutation_equivariant(family, dtype):
    spec = SPECS[family]
    model = make_nfn(spec, dtype)
    params = init_params(spec, 3, torch.Generator().manual_seed(1), dtype=dtype)
    gen = torch.Generator().manual_seed(2)
    assert_equivariant(model, spec, params, "perm", n_elements=3, generator=gen)  # 1e-4 (f32), 1e-9 (f64)
    rtol = 1e-3 if dtype == torch.float32 else None  # the update alone: one digit of cancellation in float32
    assert_equivariant(deltas_only(model), spec, params, "perm", n_elements=3, generator=gen, rtol=rtol)


@settings(max_examples=10, deadline=None)
@given(spec=net_specs(), seed=st.integers(0, 2**16), gate=st.booleans(), n_layers=st.integers(1, 2))
def test_model_is_permutation_equivariant_on_random_architectures(spec, seed, gate, n_layers):
    model = make_nfn(spec, torch.float64, seed=seed, hidden=5, n_layers=n_layers, gate=gate)
    params = init_params(spec, 2, torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert_equivariant(deltas_only(model), spec, params, "perm", n_elements=2,
                       generator=torch.Generator().manual_seed(seed + 1))


def _permute_inputs(params, perm):
    """Permute the *input* neurons of a network (not a symmetry: the inputs are pixels/features)."""
    (w, b), rest = params[0], params[1:]
    return [(w[:, :, perm], b), *rest]


def test_io_embeddings_fix_the_input_neurons_and_np_layer_alone_does_not():
    """Negative control with teeth: permuting the input neurons is not a symmetry. The NP layer alone (NP sharing)
    is equivariant to it -- it treats inputs as exchangeable -- while the NFN, with its learned input embeddings,
    is not: so the permutation test above would catch a model that mixed up which neurons it may permute."""
    spec = SPECS["mlp-relu"]
    params = init_params(spec, 2, torch.Generator().manual_seed(1), dtype=torch.float64)
    perm = torch.tensor([3, 0, 4, 1, 2])
    layer = NPLinear([1, 1, 1], [1, 1, 1], [4, 4, 4], [4, 4, 4]).double()
    feats = lambda p: ([w[..., None] for w, _ in p], [b[..., None] for _, b in p])  # noqa: E731
    out, out_p = layer(*feats(params)), layer(*feats(_permute_inputs(params, perm)))
    assert torch.allclose(out_p[0][0], out[0][0][:, :, perm], rtol=1e-12, atol=1e-12)
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(out_p[1], out[1]))
    model = make_nfn(spec).requires_grad_(False)
    new, new_p = deltas_only(model)(params), deltas_only(model)(_permute_inputs(params, perm))
    err = float((new_p[0][0] - new[0][0][:, :, perm]).abs().max() / new[0][0].abs().max())
    assert err > 1e-2, err
    # without the embeddings the NFN is NP-equivariant again (inputs exchangeable): the embeddings are the cause
    plain = NFN.for_spec(spec, hidden=8, n_layers=2, io_embed=False, gate=False).double()
    new, new_p = deltas_only(plain)(params), deltas_only(plain)(_permute_inputs(params, perm))
    assert torch.allclose(new_p[0][0], new[0][0][:, :, perm], rtol=1e-9, atol=1e-12)


def test_a_broken_np_layer_is_caught_by_the_permutation_test():
    """Negative control: replace a column mean (invariant under permutations of the output neurons) by the first
    row (not invariant) and the whole-model permutation check must fail."""
    spec = SPECS["mlp-tanh"]
    model = make_nfn(spec)
    params = init_params(spec, 2, torch.Generator().manual_seed(1), dtype=torch.float64)
    original = NPLinear.forward

    def broken(self, ws, bs):
        return original(self, [torch.cat([w[:, :1].expand_as(w)[:, :, :, :1], w[..., 1:]], -1) for w in ws], bs)
    try:
        NPLinear.forward = broken
        err = equivariance_error(deltas_only(model), spec, params, "perm", n_elements=3,
                                 generator=torch.Generator().manual_seed(2)).error
    finally:
        NPLinear.forward = original
    assert err > 1e-3, err


# -- no scaling symmetry (negative controls) ----------------------------------------------------------------------
@pytest.mark.parametrize("family", list(SPECS))
def test_model_is_not_scale_or_sign_equivariant(family):
    spec = SPECS[family]
    model = make_nfn(spec)
    params = init_params(spec, 3, torch.Generator().manual_seed(1), dtype=torch.float64)
    group = "perm+" + scaling_group(spec)
    err = equivariance_error(deltas_only(model), spec, params, group, n_elements=3,
                             generator=torch.Generator().manual_seed(3)).error
    assert err > 1e-2, f"the NFN knows no scaling symmetry, yet it looks equivariant ({family}: {err})"
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(deltas_only(model), spec, params, group, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("family", list(SPECS))
def test_rescale_response_is_large_for_nfn_and_rounding_for_scalegmn(family):
    spec = SPECS[family]
    params = init_params(spec, 6, torch.Generator().manual_seed(1), dtype=torch.float64)
    nfn = make_nfn(spec, full_scale=False).fit_normalization(params)
    torch.manual_seed(0)
    gmn = ScaleGMN.for_spec(spec, hidden=8, n_layers=2, gate=True).double().fit_normalization(params)
    r_nfn = rescale_response(nfn, spec, params, torch.Generator().manual_seed(4))
    r_gmn = rescale_response(gmn, spec, params, torch.Generator().manual_seed(4))
    for r in (r_nfn, r_gmn):
        assert r.shape == (6,) and r.dtype == torch.float64 and torch.isfinite(r).all()
    assert float(r_nfn.median()) > 0.05, r_nfn
    assert float(r_gmn.max()) < 1e-9, r_gmn
    # the same networks through the identity: no response at all (the measure compares like with like)
    r_id = rescale_response(nfn, spec, params, torch.Generator().manual_seed(4), group="identity")
    assert float(r_id.max()) < 1e-12
    # a float32 model reads float64 params in its own dtype
    r32 = rescale_response(make_nfn(spec, torch.float32, full_scale=False), spec, params)
    assert r32.dtype == torch.float64 and torch.isfinite(r32).all()


def test_rescale_response_checks_its_inputs():
    spec = SPECS["mlp-tanh"]
    model = make_nfn(spec).train()
    params = init_params(spec, 2, dtype=torch.float64)
    rescale_response(model, spec, params)
    assert model.training  # restored
    with pytest.raises(SpecError, match="built for"):
        rescale_response(model, SPECS["mlp-relu"], init_params(SPECS["mlp-relu"], 2))
    bad = [(w.clone(), b.clone()) for w, b in params]
    bad[0][1][0, 0] = float("inf")
    with pytest.raises(SpecError, match="NaN|inf|finite"):
        rescale_response(model, spec, bad)


# -- shapes, dtypes, the residual update ---------------------------------------------------------------------------
@pytest.mark.parametrize("family", list(SPECS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("gate", [False, True])
def test_forward_keeps_shapes_and_dtypes_and_starts_small(family, dtype, gate):
    spec = SPECS[family]
    params = init_params(spec, 4, torch.Generator().manual_seed(0), dtype=dtype)
    torch.manual_seed(0)
    model = NFN.for_spec(spec, hidden=8, n_layers=2, gate=gate).to(dtype).fit_normalization(params)
    with torch.no_grad():
        new = model(params)
    assert len(new) == spec.n_layers
    for (w, b), (w1, b1) in zip(params, new):
        assert w1.shape == w.shape and b1.shape == b.shape and w1.dtype == dtype and b1.dtype == dtype
        assert torch.isfinite(w1).all() and torch.isfinite(b1).all()
    rel = max(float((w1 - w).abs().max() / w.abs().max()) for (w, _), (w1, _) in zip(params, new))
    assert 0 < rel < 0.2, rel  # a residual update with a small (0.01) initial output scale
    assert model.config.model == "nfn" and model.config.gate is gate


@pytest.mark.parametrize("family", ["mlp-tanh", "cnn-relu"])
def test_gradients_are_finite_with_zero_biases(family):
    from workbench.objective import objective

    spec = SPECS[family]
    params = [(w, torch.zeros_like(b)) for w, b in init_params(spec, 4, torch.Generator().manual_seed(0))]
    model = NFN.for_spec(spec, hidden=8, n_layers=2, gate=True).fit_normalization(params)
    size = (spec.image_size,) * 2 if spec.kind == "cnn" else ()
    x, y = torch.randn(16, spec.widths[0], *size), torch.randint(0, spec.n_classes, (16,))
    objective(spec, model(params), x, y, lam=1e-3).mean().backward()
    bad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad, f"missing or non-finite gradients in {bad}"


def test_count_parameters_counts_trainable_parameters_only():
    spec = default_spec("mlp-tanh")
    model = NFN.for_spec(spec, hidden=16, n_layers=2, gate=True)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    assert count_parameters(model) < count_parameters(NFN.for_spec(spec, hidden=24, n_layers=2, gate=True))
    assert count_parameters(model) < count_parameters(NFN.for_spec(spec, hidden=16, n_layers=3, gate=True))
    gmn = ScaleGMN.for_spec(spec, hidden=16, n_layers=2, gate=False)
    assert count_parameters(gmn) == sum(p.numel() for p in gmn.parameters())
    assert "w_norm" not in dict(model.named_parameters())  # buffers are not parameters


# -- the optimize API and its failure modes (the same errors as ScaleGMN's) --------------------------------------------
def test_optimize_batches_casts_and_does_not_track_gradients():
    spec = small_cnn_zoo_spec("tanh")
    torch.manual_seed(0)
    model = NFN.for_spec(spec, hidden=8, n_layers=2, gate=False).train()
    params = init_params(spec, 5)
    full = model.optimize(spec, params)
    chunked = model.optimize(spec, params, batch_size=2)
    assert model.training  # restored after the eval-mode pass
    for (w, b), (w2, b2) in zip(full, chunked):
        assert w.shape[0] == 5 and w.dtype == torch.float32 and not w.requires_grad
        assert torch.allclose(w, w2, atol=1e-6) and torch.allclose(b, b2, atol=1e-6)
    out64 = model.double().optimize(spec, params)  # float32 input is cast to the model's dtype
    assert out64[0][0].dtype == torch.float64


def _bad_params(spec):
    params = init_params(spec, 3)
    nan = [(w.clone(), b.clone()) for w, b in params]
    nan[1][0].view(-1)[0] = float("nan")
    inf = [(w.clone(), b.clone()) for w, b in params]
    inf[0][1][1, 0] = float("-inf")
    return {
        "other architecture": (small_cnn_zoo_spec("relu"), params),
        "NaN weight": (spec, nan),
        "inf bias": (spec, inf),
        "missing layer": (spec, params[:-1]),
        "wrong weight shape": (spec, [(params[0][0][:, :, :, :2], params[0][1]), *params[1:]]),
        "wrong bias shape": (spec, [(params[0][0], params[0][1][:, :3]), *params[1:]]),
        "integer weights": (spec, [(params[0][0].long(), params[0][1]), *params[1:]]),
        "not a list": (spec, params[0][0]),
    }


@pytest.mark.parametrize("case", list(_bad_params(small_cnn_zoo_spec("tanh"))))
def test_optimize_rejects_bad_params_like_scalegmn(case):
    spec = small_cnn_zoo_spec("tanh")
    target_spec, params = _bad_params(spec)[case]
    errors = {}
    for cls in (NFN, ScaleGMN):
        with pytest.raises(SpecError) as info:
            cls.for_spec(spec, hidden=4, n_layers=1).optimize(target_spec, params)
        errors[cls.__name__] = str(info.value).replace("NFN", "<model>").replace("ScaleGMN", "<model>")
    assert errors["NFN"] == errors["ScaleGMN"], errors
    if case == "other architecture":
        assert "built for" in errors["NFN"]


# -- TrainConfig.model, training, checkpoints -----------------------------------------------------------------------
#: a flat config as checkpoints written before ``model`` existed hold it (one flat dict without the field)
OLD_FLAT = {"lam": 0.0, "epochs": 20, "batch_networks": 32, "batch_images": 128, "lr": 0.001, "weight_decay": 0.01,
            "warmup_steps": 20, "grad_clip": 10.0, "hidden": 64, "n_layers": 4, "bidirectional": True, "symmetry": None,
            "dropout": 0.0, "seed": 0, "device": "auto", "amp": True, "val_images": None, "val_networks": None,
            "noise": 0.0, "group_augment": False, "augment_scales": (0.25, 4.0), "patience": None,
            "train_eval_networks": 128, "gate": True}


def as_model(config: TrainConfig, model: str) -> TrainConfig:
    return TrainConfig.from_dict({**config.to_dict(), "model": model})


def test_model_field_round_trips_and_keeps_nfn_and_gmn_runs_apart():
    config = TrainConfig()
    assert TrainConfig.from_dict(OLD_FLAT).meta.model == "scalegmn"  # a flat form from before the field
    spec = default_spec("mlp-tanh")
    recipe = pipeline.Recipe()
    folders = {m: pipeline.run_dir("o", "mlp-tanh", "ce", recipe.config(spec, method=m)).name
               for m in ("scalegmn", "gmn", "gmn-aug", "nfn")}
    assert len(set(folders.values())) == 4
    nfn = TrainConfig(meta=MetanetConfig(model="nfn", symmetry="none", hidden=4, n_layers=1))
    assert nfn.to_dict()["model"] == "nfn"
    assert TrainConfig.from_dict(json.loads(json.dumps(nfn.to_dict()))) == nfn
    assert TrainConfig.from_dict(config.to_dict()) == config
    nfn_dir = pipeline.run_dir("o", "mlp-tanh", "ce", nfn)
    gmn_dir = pipeline.run_dir("o", "mlp-tanh", "ce", as_model(nfn, "scalegmn"))
    assert nfn_dir != gmn_dir
    with pytest.raises(ConfigError, match="MetanetConfig.model"):
        TrainConfig.from_dict({"model": "transformer"})
    with pytest.raises(ConfigError, match="no scaling"):
        TrainConfig.from_dict({"model": "nfn", "symmetry": "sign"})
    assert isinstance(build_model(spec, nfn), NFN) and isinstance(build_model(spec, config), ScaleGMN)


NFN_CONFIG = TrainConfig(epochs=6, batch_networks=8, batch_images=32, lr=0.01, warmup_steps=2, device="cpu",
                         train_eval_networks=0, meta=MetanetConfig(model="nfn", hidden=8, n_layers=2))
TINY_SPEC = NetSpec.mlp((6, 5, 3), "tanh")


def test_training_lowers_the_objective_and_reloads(tmp_path):
    data = tiny_data()
    zoo = init_params(TINY_SPEC, 40, torch.Generator().manual_seed(0), init_scale=2.0)
    result = train(TINY_SPEC, select(zoo, slice(0, 32)), select(zoo, slice(32, 40)), data, NFN_CONFIG, tmp_path,
                   progress=False)
    assert isinstance(result.model, NFN)
    losses = [h["val_loss"] for h in result.history]
    assert min(losses) < losses[0] - 1e-3, losses
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    reloaded = load_model(tmp_path / "best.pt", spec=TINY_SPEC)
    assert isinstance(reloaded, NFN) and not reloaded.training
    state = result.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in reloaded.state_dict().items())
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    assert saved["config"]["model"] == "nfn"
    # a resume with another model (or a ScaleGMN checkpoint loaded as NFN) is refused
    with pytest.raises(ValueError, match="different configuration"):
        train(TINY_SPEC, select(zoo, slice(0, 32)), select(zoo, slice(32, 40)), data,
              as_model(NFN_CONFIG, "scalegmn"), tmp_path, progress=False)


def test_load_model_refuses_nfn_weights_that_do_not_fit(tmp_path):
    config = dataclasses.replace(NFN_CONFIG, epochs=1)
    # NFN weights do not depend on the hidden widths (NP layers share across neurons), only on the input and
    # output widths and the number of layers
    same = build_model(NetSpec.mlp((6, 9, 3), "tanh"), config).state_dict()
    shapes = lambda state: {k: v.shape for k, v in state.items()}  # noqa: E731
    assert shapes(same) == shapes(build_model(TINY_SPEC, config).state_dict())
    for i, other in enumerate((NetSpec.mlp((7, 5, 3), "tanh"), NetSpec.mlp((6, 5, 5, 3), "tanh"))):
        wrong = build_model(other, config).state_dict()
        torch.save({"spec": TINY_SPEC.to_dict(), "config": config.to_dict(), "model": wrong}, tmp_path / f"a{i}.pt")
        with pytest.raises(CheckpointError, match="do not fit"):
            load_model(tmp_path / f"a{i}.pt")
    # ScaleGMN weights under an NFN config (and the reverse) are other metanetworks
    gmn = build_model(TINY_SPEC, as_model(config, "scalegmn")).state_dict()
    torch.save({"spec": TINY_SPEC.to_dict(), "config": config.to_dict(), "model": gmn}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "b.pt")
    nfn = build_model(TINY_SPEC, config).state_dict()
    torch.save({"spec": TINY_SPEC.to_dict(), "config": as_model(config, "scalegmn").to_dict(),
                "model": nfn}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "c.pt")
    # a forged enormous spec is refused from the state dict's shapes before anything is built
    torch.save({"spec": NetSpec.mlp((5000, 10000, 10), "tanh").to_dict(), "config": config.to_dict(), "model": nfn},
               tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "d.pt")


# -- the pipeline's "nfn" methods ----------------------------------------------------------------------------------
def test_methods_labels_and_params_ranges():
    assert pipeline.method_label("nfn", True) == pipeline.method_label("nfn", False) == "NFN (perm. only)"
    assert pipeline.method_label("nfn-aug", True) == "NFN + sym. aug."
    assert pipeline.method_label("scalegmn", True) == "ScaleGMN-B"  # the existing labels are unchanged
    assert pipeline.method_label("gmn", True) == "GMN-B (sym. broken)"
    assert pipeline.method_label("gmn-aug", True) == "GMN-B + sym. aug."
    assert pipeline.method_label("gmn", False) == "GMN (sym. broken)"
    for key in ("methods", "table_methods"):
        assert rule_for(key).problem(["scalegmn", "nfn", "nfn-aug"]) is None
        assert rule_for(key).problem(["nfn-b"]) is not None
    with pytest.raises(ValueError, match="unknown method"):
        pipeline.method_label("nfm", True)


def test_nfn_hidden_setting_matches_the_scalegmn_budget_and_only_touches_nfn():
    spec = default_spec("cnn-relu")
    base = dict(hidden=16, n_layers=2, bidirectional=True, gate=True)
    target = count_parameters(ScaleGMN.for_spec(spec, **base))
    recipe = pipeline.Recipe.from_values({f"meta_{k}": v for k, v in base.items()})
    nfn = recipe.config(spec, method="nfn").meta
    assert nfn.model == "nfn" and nfn.hidden == matched_hidden(spec, target, 2)
    count = lambda h: count_parameters(NFN.for_spec(spec, hidden=h, n_layers=2, gate=True))  # noqa: E731
    assert abs(count(nfn.hidden) / target - 1) < 0.1  # within a few percent of ScaleGMN-B's budget
    assert count(nfn.hidden + 1) > target > count(nfn.hidden - 1)  # the closest size, brute force
    assert dataclasses.replace(recipe, nfn_hidden=7).config(spec, method="nfn-aug").meta.hidden == 7
    for method in ("scalegmn", "gmn", "gmn-aug"):  # the other methods' settings (and run folders) are untouched
        assert (dataclasses.replace(recipe, nfn_hidden=7).config(spec, method=method)
                == recipe.config(spec, method=method))
    for bad in (0, "big", 2.5, True):
        with pytest.raises(ConfigError, match="nfn_hidden"):
            dataclasses.replace(recipe, nfn_hidden=bad)
    with pytest.raises(ValueError, match="positive"):
        matched_hidden(spec, 0, 2)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def zoo(digits):
    """12 digits MLPs (64-4-10), checkpoints 0 and 1: 6 test, 5 train, 1 validation network."""
    return generate(NetSpec.mlp((64, 4, 10), "tanh"), digits, 12, epochs=1, checkpoints=[0], seed=0, progress=False)


def test_train_metanet_trains_and_reloads_the_nfn_methods(zoo, digits, tmp_path):
    from recipes import tiny_recipe

    recipe = dataclasses.replace(tiny_recipe(epochs=2, batch_networks=4, batch_images=32, hidden=4, n_layers=1,
                                             device="cpu", train_eval_networks=0), nfn_hidden=3)
    run = dict(objective="ce", lam=0.0, seed=0)
    folders = {}
    for method in ("nfn", "nfn-aug"):
        assert not pipeline.run_exists(tmp_path, zoo, recipe, method=method, **run)
        result = pipeline.train_metanet(tmp_path, zoo, digits, recipe, method=method, progress=False, **run)
        assert isinstance(result.model, NFN) and len(result.history) == 2
        assert pipeline.run_exists(tmp_path, zoo, recipe, method=method, **run)
        saved = json.loads((result.out_dir / "result.json").read_text())["config"]
        assert saved["model"] == "nfn" and saved["group_augment"] is (method == "nfn-aug") and saved["hidden"] == 3
        folders[method] = result.out_dir
        again = pipeline.train_metanet(tmp_path, zoo, digits, recipe, method=method, progress=False,
                                       **run)  # reloaded from the run folder, not retrained
        assert isinstance(again.model, NFN) and again.history == result.history
        state = result.model.state_dict()
        assert all(torch.equal(state[k], v.to(state[k].device)) for k, v in again.model.state_dict().items())
    assert folders["nfn"] != folders["nfn-aug"]
    # the GMN run of the same settings would live elsewhere: NFN never reuses a GMN folder
    assert not pipeline.run_exists(tmp_path, zoo, recipe, method="gmn", **run)
    runs = pipeline.run_ablation(tmp_path, digits, {"mlp-tanh": zoo}, recipe, objectives=("ce",), n_seeds=1,
                                 methods=("nfn", "nfn-aug"), progress=False).runs
    assert list(runs["method"]) == ["nfn", "nfn-aug"] and runs["finite"].all()
    assert list(runs["label"]) == ["NFN (perm. only)", "NFN + sym. aug."]


def test_matching_nfn_width_first_does_not_poison_the_cached_graph_layout():
    """Counting ScaleGMN's parameters on the meta device must not leave a shape-only layout in the cache: the
    study's worker that trained NFN first for a family then failed with 'Cannot copy out of meta tensor'."""
    from workbench.graphs import _layout_cached, graph_layout

    spec = NetSpec.mlp((5, 3, 2), "relu")
    _layout_cached.cache_clear()
    pipeline.Recipe.from_values({"meta_hidden": 4, "meta_n_layers": 1}).config(spec, method="nfn")  # matches widths
    layout = graph_layout(spec)
    assert layout.edge_index.device.type == "cpu" and not layout.edge_index.is_meta
    params = init_params(spec, 2, torch.Generator().manual_seed(0))
    out = ScaleGMN.for_spec(spec, hidden=4, n_layers=1, gate=False)(params)
    assert all(torch.isfinite(w).all() for w, _ in out)
