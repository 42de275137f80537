"""``skip_untrained``: training and validation on the trained checkpoints only (epoch >= 1), in a run folder of its
own, with an error that says what to do when a zoo holds only untrained checkpoints."""
import json

import pytest
import torch

from workbench import pipeline
from workbench.nets import NetSpec
from workbench.training.train_config import TrainConfig

from recipes import tiny_recipe


def _ids(z):
    return sorted(set(z.meta["net_id"].tolist()))


# -- skip_untrained: train and validate on the trained checkpoints only ------------------------------------------
def test_skip_untrained_round_trips_and_moves_a_run_to_a_folder_of_its_own():
    on = TrainConfig(skip_untrained=True)
    assert on.to_dict()["skip_untrained"] is True
    assert TrainConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    spec = NetSpec.mlp((64, 4, 10), "tanh")
    folder = lambda c: pipeline.run_dir("out", "mlp-tanh", "ce", c).name  # noqa: E731
    assert folder(TrainConfig()) != folder(on)  # a skipping run never reuses an all-checkpoint run's folder
    recipe = pipeline.Recipe.from_values({"meta_skip_untrained": True})
    assert recipe.train.skip_untrained and recipe.config(spec).skip_untrained


def test_training_splits_leave_out_exactly_the_epoch_0_checkpoints(zoo):
    every, trained = pipeline.training_splits(zoo), pipeline.training_splits(zoo, skip_untrained=True)
    assert set(every) == set(trained) == {"train", "val"}
    for split in ("train", "val"):
        sub = zoo.subset(split=split)
        keep = torch.as_tensor((sub.meta["epoch"] > 0).to_numpy().copy())
        assert trained[split][0][0].shape[0] == int(keep.sum()) == 2 * len(_ids(sub))  # checkpoints 1 and 2
        for (w_all, b_all), (w, b) in zip(every[split], trained[split]):
            assert torch.equal(w_all[keep], w) and torch.equal(b_all[keep], b)


def test_train_metanet_with_skip_untrained_trains_on_trained_checkpoints_only(zoo, digits, tmp_path, monkeypatch):
    seen = {}
    real_train = pipeline.runs.train

    def spy(spec, train_params, val_params, *args, **kwargs):
        seen["train"], seen["val"] = train_params[0][0].shape[0], val_params[0][0].shape[0]
        return real_train(spec, train_params, val_params, *args, **kwargs)

    monkeypatch.setattr(pipeline.runs, "train", spy)
    recipe = tiny_recipe(epochs=1, hidden=4, n_layers=1, batch_networks=4, device="cpu")
    pipeline.train_metanet(tmp_path, zoo, digits, recipe, progress=False)
    assert seen == {"train": 3 * 8, "val": 3 * 2}
    result = pipeline.train_metanet(tmp_path, zoo, digits, recipe.with_train(skip_untrained=True), progress=False)
    assert seen == {"train": 2 * 8, "val": 2 * 2}
    assert json.loads((result.out_dir / "result.json").read_text())["config"]["skip_untrained"] is True


def test_skip_untrained_on_a_zoo_of_untrained_networks_only_says_what_to_do(zoo, digits, tmp_path):
    from workbench.errors import ConfigError

    untrained = zoo.subset(epoch=0)
    with pytest.raises(ConfigError, match="only epoch-0.*meta_skip_untrained: false"):
        pipeline.training_splits(untrained, skip_untrained=True)


def test_run_cost_counts_the_checkpoints_a_skipping_run_leaves_out():
    from workbench.pipeline.runs import _run_cost

    job = {"family": "mlp-tanh", "method": "scalegmn", "recipe": tiny_recipe(epochs=8, mlp_epochs=4)}
    skipping = {**job, "recipe": job["recipe"].with_train(skip_untrained=True)}
    assert _run_cost(skipping) == pytest.approx(0.75 * _run_cost(job))
    cnn = {**job, "family": "cnn-tanh"}  # the MLP epochs apply to MLP families only
    assert _run_cost(cnn) / _run_cost(job) == pytest.approx(8 * (216 + 200) / (4 * (1440 + 200)), rel=0.05)
