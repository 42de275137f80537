"""``l1_from_ce``: an L1 run starts from the trained CE run of the same settings, and ``prefetch_runs`` trains those
CE runs first, each once."""
import json

import pytest
import torch

from workbench import pipeline
from workbench.nets import NetSpec
from workbench.training.train_config import TrainConfig
from workbench.training.checkpoints import load_model

from recipes import tiny_recipe


# -- l1_from_ce: an L1 run starts from the trained CE run of the same settings -------------------------------------
def test_l1_from_ce_round_trips_and_means_nothing_to_a_ce_run():
    on = TrainConfig(lam=0.01, l1_from_ce=True)
    assert on.to_dict()["l1_from_ce"] is True
    assert TrainConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    recipe = pipeline.Recipe.from_values({"meta_l1_from_ce": True})
    plain = pipeline.Recipe()
    spec = NetSpec.mlp((64, 4, 10), "tanh")
    # a CE run asked for it is the plain CE run (same config, same folder), so the L1 runs and the table share it
    assert recipe.config(spec, objective="ce", lam=0.01) == plain.config(spec, objective="ce", lam=0.01)
    l1 = recipe.config(spec, objective="l1", lam=0.01)
    assert l1.l1_from_ce and l1 != plain.config(spec, objective="l1", lam=0.01)
    with pytest.raises(Exception, match="l1_from_ce"):
        TrainConfig(l1_from_ce="yes")


def test_an_l1_run_with_l1_from_ce_starts_from_the_weights_of_its_ce_run(zoo, digits, tmp_path, monkeypatch):
    seen = []
    real_train = pipeline.runs.train

    def spy(spec, train_params, val_params, data, config, *args, **kwargs):
        seen.append((config.lam, kwargs.get("init_state")))
        return real_train(spec, train_params, val_params, data, config, *args, **kwargs)

    monkeypatch.setattr(pipeline.runs, "train", spy)
    plain = tiny_recipe(epochs=1, hidden=4, n_layers=1, batch_networks=4, device="cpu", skip_untrained=True)
    recipe = plain.with_train(l1_from_ce=True)
    result = pipeline.train_metanet(tmp_path, zoo, digits, recipe, objective="l1", lam=0.01, progress=False)
    assert [lam for lam, _ in seen] == [0.0, 0.01]  # the CE run was trained first, then the L1 run from it
    assert seen[0][1] is None
    ce_folder = pipeline.run_dir(tmp_path, zoo.spec.family, "ce", recipe.config(zoo.spec, objective="ce"))
    assert (ce_folder / "result.json").is_file() and result.out_dir != ce_folder
    ce_state = load_model(ce_folder / "best.pt", spec=zoo.spec).state_dict()
    init = seen[1][1]
    assert set(init) == set(ce_state) and all(torch.equal(init[k], ce_state[k]) for k in ce_state)
    assert json.loads((result.out_dir / "result.json").read_text())["config"]["l1_from_ce"] is True
    # a second L1 run reloads the finished CE run instead of training it again
    seen.clear()
    pipeline.train_metanet(tmp_path, zoo, digits, recipe, objective="l1", lam=0.02, progress=False)
    assert [lam for lam, _ in seen] == [0.02] and seen[0][1] is not None
    # negative control: without the switch an L1 run starts from a random initialisation
    seen.clear()
    pipeline.train_metanet(tmp_path, zoo, digits, plain, objective="l1", lam=0.01, progress=False)
    assert [(lam, init) for lam, init in seen] == [(0.01, None)]


def test_prefetch_runs_with_l1_from_ce_trains_the_ce_runs_first_each_once(monkeypatch):
    calls = []

    def record(fn, jobs, **kwargs):
        calls.append([(j["family"], j["method"], j["objective"], j["lam"]) for j in jobs])
        return [{} for _ in jobs]

    monkeypatch.setattr(pipeline.runs, "run_parallel", record)
    runs = [("cnn-tanh", "scalegmn", "l1", 0, 0.01), ("cnn-tanh", "scalegmn", "l1", 0, 0.02),
            ("mlp-tanh", "nfn", "ce", 0), ("cnn-tanh", "scalegmn", "ce", 0)]
    args = dict(data=pipeline.DataRecipe(), zoo=pipeline.ZooRecipe(8, 2), lam=0.007, workers=2, progress=False)
    done = pipeline.prefetch_runs("out", runs, recipe=tiny_recipe(l1_from_ce=True), **args)
    assert calls == [[("cnn-tanh", "scalegmn", "ce", 0.007), ("mlp-tanh", "nfn", "ce", 0.007)],
                     [("cnn-tanh", "scalegmn", "l1", 0.01), ("cnn-tanh", "scalegmn", "l1", 0.02)]]
    assert len(done) == 4
    calls.clear()  # negative control: without the switch, one round in the order given
    pipeline.prefetch_runs("out", runs, recipe=tiny_recipe(), **args)
    assert calls == [[("cnn-tanh", "scalegmn", "l1", 0.01), ("cnn-tanh", "scalegmn", "l1", 0.02),
                      ("mlp-tanh", "nfn", "ce", 0.007), ("cnn-tanh", "scalegmn", "ce", 0.007)]]
